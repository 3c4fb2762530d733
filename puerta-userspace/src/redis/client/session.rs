//! One client connection. The reader parses commands and dispatches each one (putting it on the wire to
//! its node); the reply slot goes into a bounded FIFO. The writer resolves the FIFO in order, so replies
//! leave in exactly the order the commands came, whatever node answered first. The FIFO bound is the
//! client's in-flight limit: a client that pipelines faster than the cluster answers is read slower.
//! RESP3 push frames (pub/sub messages) come through a second channel and are written between
//! replies, never inside one, so they cannot change the order of replies.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::redis::client::board::ReplyBoard;
use crate::redis::client::feed::{self, FeedSender};
use crate::redis::client::fifo::{self, NotQueued, Replies, Slots, WriterGone};
use crate::redis::client::hangup::{Hangup, Reason};
use crate::redis::client::inflight::InFlightBytes;
use crate::redis::client::monitor::{self, Monitoring};
use crate::redis::client::output::{Charged, OutputBudget};
use crate::redis::client::registry::{Entry, Inbox};
use crate::redis::client::slowlog::Timed;
use crate::redis::client::tracking::{self, Invalidation};
use crate::redis::cluster::router::{InFlight, Ticketed};
use crate::redis::cluster::Cluster;
use crate::redis::command::spec::{Kind, Local};
use crate::redis::command::Command;
use crate::redis::exec::answer::Answer;
use crate::redis::exec::dispatch::{dispatch, ClientState, Reply};
use crate::redis::exec::pubsub::PubSub;
use crate::redis::exec::subscriptions::Subscriptions;
use crate::redis::resp::wire;
use crate::redis::resp::{Decoder, Frame, Limits, Protocol, RawCommand, ReadBuf};
use crate::redis::signal::Bell;
use crate::redis::stats::Stats;
use crate::tls::{ReadHalf, Stream};

mod monitoring;
mod subscribed;

use subscribed::{idle_limit, lost};

/// Commands a client may have in flight before the proxy stops reading from it.
const MAX_IN_FLIGHT: usize = 1024;
/// How long replies may still be written after the client stopped sending.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);
/// Replies are flushed once this much is buffered even if more are ready.
const FLUSH_AT: usize = 64 * 1024;
/// Push frames waiting for the writer before the node connection that sends them is read slower
/// (their bytes count against the client's output limit meanwhile).
const MAX_PUSHES: usize = 1024;
/// Bytes of a client's commands in flight before the proxy stops reading from it.
const MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

pub async fn run(
    cluster: Arc<Cluster>,
    stream: Stream,
    client: Arc<Entry>,
    shutdown: CancellationToken,
) {
    let id = client.id;
    let hangup = client.hangup.clone();
    // The registry tells every client it lists when the proxy stops; one that registered just
    // after that learns it here.
    if shutdown.is_cancelled() {
        hangup.raise(Reason::Shutdown);
    }
    let _ = stream.tcp().set_nodelay(true);
    let budget = OutputBudget::new(
        cluster.config.client_output_limit,
        id,
        stream.tcp().peer_addr().ok(),
        hangup.clone(),
    );
    let (read, write) = stream.into_split();
    let (tx, rx, completed) = fifo::fifo::<Slot>(MAX_IN_FLIGHT);
    let bell = Arc::new(Bell::default());
    let (pushes, push_rx) = feed::channel(MAX_PUSHES, &bell);
    let (monitor_lines, monitor_rx) = feed::channel(monitor::MAX_LINES, &bell);
    let (invalidations, invalidations_rx) = feed::channel(tracking::MAX_PENDING, &bell);
    let output = Output::new(write, budget.clone());
    let board = Arc::new(ReplyBoard::default());
    let shared = Shared {
        cluster: cluster.clone(),
        client: client.clone(),
        board: board.clone(),
        budget: budget.clone(),
    };
    let feeds = Feeds {
        bell,
        pushes: push_rx,
        monitor: monitor_rx,
        invalidations: invalidations_rx,
        held: VecDeque::new(),
    };
    let writer = tokio::spawn(write_replies(output, rx, feeds, shared));
    let inflight = InFlightBytes::new(MAX_IN_FLIGHT_BYTES, completed.clone());
    let state = ClientState::new(client, &cluster, completed, budget, board);
    state.client.set_inbox(Inbox {
        sink: invalidations,
        budget: state.budget.clone(),
    });
    let mut reader = Reader {
        inflight,
        state,
        cluster,
        read,
        buf: ReadBuf::new(BytesMut::with_capacity(16 * 1024)),
        arrived: std::time::Instant::now(),
        decoder: Decoder::new(Limits::default()),
        tx,
        pushes,
        monitor_lines,
        monitoring: None,
        pubsub: None,
        subscriptions: Subscriptions::default(),
    };
    // CLIENT KILL cuts through anything the reader waits for (a full FIFO included).
    tokio::select! {
        biased;
        _ = reader.run() => {}
        _ = hangup.killed() => {}
    }
    reader.cluster.tracking.disable(id);
    drop(reader);
    if hangup.has(Reason::Killed) {
        // CLIENT KILL: closed now, like Redis, with nothing more written.
        writer.abort();
        return;
    }
    // Replies already on their way are still delivered (a client may half-close after its last
    // command), but a reply that never comes (a BLPOP with no timeout for a client that left) must not
    // hold the session and its dedicated backend connection forever.
    let mut writer = writer;
    if tokio::time::timeout(LINGER, &mut writer).await.is_err() {
        writer.abort();
    }
}

/// A reply slot and the protocol the client spoke when it sent the command (HELLO's own reply is
/// already in the protocol it chose, as in Redis).
struct Slot {
    protocol: Protocol,
    reply: Reply,
    /// For the slow log, once the reply is ready.
    timed: Option<Timed>,
}

/// What the writer puts between replies: RESP3 pushes, MONITOR lines, and cache invalidations.
struct Feeds {
    /// Rung by every feed's sender (see `client::feed`).
    bell: Arc<Bell>,
    pushes: mpsc::Receiver<Charged>,
    monitor: mpsc::Receiver<Charged>,
    invalidations: mpsc::Receiver<Invalidation>,
    /// Invalidations waiting for the reply they must follow.
    held: VecDeque<Invalidation>,
}

impl Feeds {
    /// Holds `invalidation` until its reply is written. Past `MAX_PENDING` held (a slow reply with
    /// many writes behind it), they all become one flush: the cache starts over, and memory stays
    /// bounded whatever the client's output limit. A pub/sub message form is for a subscribed
    /// RESP2 client (see `write_relayed`): outside that it is dropped, as Redis drops it.
    fn hold(&mut self, invalidation: Invalidation) {
        if invalidation.message {
            return;
        }
        if self.held.len() >= tracking::MAX_PENDING {
            self.held.clear();
            self.held.push_back(Invalidation::flush(invalidation.after));
            return;
        }
        self.held.push_back(invalidation);
    }

    /// Takes what every feed holds now: pushes, then invalidations (held until their reply is
    /// out), then MONITOR lines. At most a FIFO's worth of each, so that a busy feed cannot keep
    /// the writer from its replies, and no more pushes or lines once `out` holds [`FLUSH_AT`]:
    /// queued, they count against the client's output limit; copied into `out` they would not.
    /// What is left rings the bell again for the next turn.
    fn drain(&mut self, done: u64, out: &mut BytesMut) {
        for _ in 0..MAX_PUSHES {
            if out.len() >= FLUSH_AT {
                break;
            }
            let Ok(push) = self.pushes.try_recv() else {
                break;
            };
            out.extend_from_slice(push.bytes());
        }
        for _ in 0..tracking::MAX_PENDING {
            let Ok(invalidation) = self.invalidations.try_recv() else {
                break;
            };
            self.hold(invalidation);
        }
        self.release(done, out);
        for _ in 0..monitor::MAX_LINES {
            if out.len() >= FLUSH_AT {
                break;
            }
            let Ok(line) = self.monitor.try_recv() else {
                break;
            };
            out.extend_from_slice(line.bytes());
        }
        if !(self.pushes.is_empty() && self.invalidations.is_empty() && self.monitor.is_empty()) {
            self.bell.keep();
        }
    }

    /// Writes the invalidations due once `done` replies are written, in order.
    fn release(&mut self, done: u64, out: &mut BytesMut) {
        while self.held.front().is_some_and(|i| i.after <= done) {
            if let Some(due) = self.held.pop_front() {
                out.extend_from_slice(due.push.bytes());
            }
        }
    }
}

/// What the writer shares with the rest of the session: where it logs slow commands, and where
/// it takes posted replies (and retries one that is a redirect, as the client's own).
struct Shared {
    cluster: Arc<Cluster>,
    client: Arc<Entry>,
    board: Arc<ReplyBoard>,
    budget: Arc<OutputBudget>,
}

impl Drop for Shared {
    /// The writer ended (or was aborted): nothing posted from now on has a reader.
    fn drop(&mut self) {
        self.board.close();
    }
}

struct Reader {
    cluster: Arc<Cluster>,
    state: ClientState,
    read: ReadHalf,
    buf: ReadBuf,
    /// When the bytes being parsed were read: the slow log times a command from its arrival, and
    /// one clock read per read serves every command of a pipeline.
    arrived: std::time::Instant,
    decoder: Decoder,
    inflight: InFlightBytes,
    tx: Slots<Slot>,
    /// For the RESP3 pub/sub relay: messages to write between replies.
    pushes: FeedSender<Charged>,
    /// MONITOR: where other clients' commands are shown, between replies.
    monitor_lines: FeedSender<Charged>,
    monitoring: Option<Monitoring>,
    /// RESP2: the client's subscribed connection, if it has subscriptions (or is getting its first).
    pubsub: Option<PubSub>,
    /// RESP3: the client's subscribed connections.
    subscriptions: Subscriptions,
}

/// Whether the reader continues after a command.
enum Flow {
    Continue,
    Stop,
}

impl Reader {
    async fn run(&mut self) {
        loop {
            loop {
                match self.decoder.command_args(&mut self.buf) {
                    Ok(Some(raw)) => {
                        self.buf
                            .took(raw.wire.as_ref().map_or(0, bytes::Bytes::len));
                        if let Flow::Stop = self.command(raw).await {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        Stats::bump(&self.cluster.stats.protocol_errors);
                        tracing::debug!(client = self.state.id, "protocol error: {e}");
                        let _ = self.send(Reply::Close(e.to_frame())).await;
                        return;
                    }
                }
            }
            self.buf.make_room();
            let idle = idle_limit(&self.cluster, self.subscribed());
            // The rare events are checked here, where it costs two loads: the select below polls
            // the read first (an unbiased select draws a random number per poll and registers with
            // every branch ahead of the ready one), so a client that always has bytes ready would
            // never let it see them.
            if self.state.client.hangup.any() {
                return;
            }
            let read = tokio::select! {
                biased;
                r = crate::redis::client::idle::read_buf(&mut self.read, &mut self.buf, idle) => r,
                _ = self.state.client.hangup.for_reader() => return,
                _ = lost(&self.pubsub, &self.subscriptions) => {
                    let msg = "ERR Puerta: the pub/sub connection to the cluster node was lost";
                    let _ = self.send(Reply::Close(wire::error(msg))).await;
                    return;
                }
            };
            self.arrived = std::time::Instant::now();
            self.state.client.touch(self.arrived);
            match read {
                Ok(0) => return,
                Err(e) => {
                    crate::redis::client::idle::log_close(self.state.id, &e);
                    return;
                }
                Ok(_) => {}
            }
        }
    }

    async fn command(&mut self, raw: RawCommand) -> Flow {
        let subscribed = self.subscribed();
        let flow = self.serve(raw).await;
        if self.subscribed() != subscribed {
            let flag = crate::redis::client::registry::flag::PUBSUB;
            self.state.client.set_flag(flag, !subscribed);
        }
        flow
    }

    async fn serve(&mut self, raw: RawCommand) -> Flow {
        let cmd = Command::from_raw(raw);
        self.state.client.command(cmd.spec, cmd.arg(1));
        let local = match cmd.kind() {
            Some(Kind::Local(local)) => Some(local),
            _ => None,
        };
        // A monitor's RESET ends its monitoring before Redis would show it: no line of its own.
        let ends_monitor = self.monitoring.is_some() && local == Some(Local::Reset);
        if self.state.authed && !ends_monitor {
            self.cluster.monitors.feed(&cmd, &self.state.client);
        }
        if local == Some(Local::Reset) {
            // Dropping the RESP2 subscriber connection ends its relay: the writer moves on to
            // RESET's own reply.
            self.pubsub = None;
            self.subscriptions.clear();
            self.monitoring = None;
        }
        if let Some(refused) = self.refused_while_monitoring(&cmd) {
            return self.queue(Reply::Ready(refused)).await;
        }
        if local == Some(Local::Monitor) && self.state.authed && !self.state.txn.in_multi() {
            return self.monitor().await;
        }
        let resp3 = self.state.protocol() == Protocol::Resp3;
        if self.pubsub.is_some() && !resp3 {
            return self.in_pubsub(cmd).await;
        }
        let may_subscribe = self.state.authed && !self.state.txn.in_multi();
        let subscription = cmd.subscription();
        if resp3 && may_subscribe && subscription.is_some() {
            return self.resp3_subscription(cmd).await;
        }
        if matches!(local, Some(Local::Hello | Local::Reset)) {
            self.state.order.all_answered().await;
        }
        let reply = if may_subscribe && subscription.is_some_and(|s| !s.unsubscribe) {
            self.subscribe(cmd).await
        } else {
            // Subscribed connections are bounded by their own channels; only here does a reply
            // slot stand for the command's bytes.
            let index = self.state.order.queued();
            self.inflight.admit(index, cmd.size()).await;
            let timed = match timed_kind(&cmd) {
                true => self.cluster.slowlog.start(self.arrived, || cmd.payload()),
                false => None,
            };
            self.track(&cmd);
            let reply = dispatch(&self.cluster, &mut self.state, cmd).await;
            let reply = match self.state.reply_mode.sends() {
                true => reply,
                false => Reply::Silent(Box::new(reply)),
            };
            return self.queue_timed(reply, timed).await;
        };
        self.queue(reply).await
    }

    /// A tracking client's command is about to be sent: its invalidations from now on follow its
    /// reply, and the keys it reads are remembered first. `CLIENT CACHING` counts for one command.
    fn track(&mut self, cmd: &Command) {
        let caching = self.state.caching.take();
        let Some(mode) = &self.state.tracking else {
            return;
        };
        let keys: Vec<bytes::Bytes> = match cmd.readonly() && mode.remembers(caching) {
            true => cmd
                .key_slots()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|k| cmd.args().get(k.arg as usize).cloned())
                .collect(),
            false => Vec::new(),
        };
        let at = self.state.order.queued() + 1;
        self.cluster.tracking.sending(self.state.id, at, &keys);
    }

    /// Puts a reply slot in the FIFO.
    async fn queue(&mut self, reply: Reply) -> Flow {
        self.queue_timed(reply, None).await
    }

    async fn queue_timed(&mut self, reply: Reply, timed: Option<Timed>) -> Flow {
        let close = match &reply {
            Reply::Close(_) => true,
            Reply::Silent(inner) => matches!(**inner, Reply::Close(_)),
            _ => false,
        };
        let slot = Slot {
            protocol: self.state.protocol(),
            reply,
            timed,
        };
        let sent = match self.tx.try_send(slot) {
            Ok(()) => true,
            Err(NotQueued::Full(slot)) => self.tx.send(slot).await.is_ok(),
            Err(NotQueued::WriterGone(_)) => false,
        };
        if !sent || close {
            return Flow::Stop;
        }
        self.state.order.pushed();
        Flow::Continue
    }

    async fn send(&self, reply: Reply) -> Result<(), WriterGone<Slot>> {
        let slot = Slot {
            protocol: self.state.protocol(),
            reply,
            timed: None,
        };
        self.tx.send(slot).await
    }
}

/// Commands the slow log times. Not AUTH and HELLO (they carry passwords), nor blocking commands:
/// their time is the wait the client asked for, which Redis does not count either.
fn timed_kind(cmd: &Command) -> bool {
    !matches!(cmd.kind(), Some(Kind::Local(Local::Auth | Local::Hello))) && !cmd.blocking()
}

/// The client socket's write side: replies are gathered into one buffer and written once per turn;
/// a node's reply too big to be worth copying is written from its own bytes.
struct Output<W> {
    write: W,
    out: BytesMut,
    /// Crossing the output limit ends the writer at its next wait.
    hangup: Arc<Hangup>,
}

/// The client is gone, or was closed for its output limit: the writer stops.
struct Gone;

impl<W: AsyncWrite + Unpin> Output<W> {
    fn new(write: W, budget: Arc<OutputBudget>) -> Output<W> {
        Output {
            write,
            out: BytesMut::with_capacity(16 * 1024),
            hangup: budget.hangup().clone(),
        }
    }

    async fn answer(&mut self, protocol: Protocol, answer: Answer) -> Result<(), Gone> {
        crate::redis::metrics::reply_error(answer.error_text());
        match answer {
            Answer::Node(raw) => self.add_encoded(&raw).await,
            answer => {
                answer.encode_in(protocol, &mut self.out);
                Ok(())
            }
        }
    }

    /// Bytes already in the client's protocol (a node's reply, a relayed message, a MONITOR
    /// line). One too big to be worth copying is written from its own bytes, while still charged
    /// to the client: it is in memory until written. Copied ones are written once `out` holds
    /// [`FLUSH_AT`], so that a stream of them with no pause (a busy channel, a busy monitor) is not
    /// gathered, uncharged, without end for a client that does not read.
    async fn add_encoded(&mut self, raw: &Charged) -> Result<(), Gone> {
        if raw.bytes().len() >= FLUSH_AT {
            self.flush().await?;
            return self.write_all(raw.bytes()).await;
        }
        self.out.extend_from_slice(raw.bytes());
        if self.out.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    fn frame(&mut self, protocol: Protocol, frame: &Frame) {
        crate::redis::metrics::reply(frame);
        frame.encode_in(protocol, &mut self.out);
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let written = self.write_all(&out).await;
        self.out = out;
        self.out.clear();
        written
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Gone> {
        let write = async {
            self.write.write_all(bytes).await?;
            // TLS may hold back what did not fit the socket (plain TCP: nothing to do).
            self.write.flush().await
        };
        tokio::select! {
            biased;
            r = write => r.map_err(|_| Gone),
            _ = self.hangup.for_writer() => Err(Gone),
        }
    }

    /// What `ready` gives, if it gives it soon; else `None`, once what is buffered has gone out,
    /// so that finished replies are not held back while a slow one is awaited. "Soon" is this
    /// scheduler turn or, with replies buffered, the next: the node readers that are ready then
    /// post their replies first, and the buffered replies leave with those in one write instead
    /// of two (each write wakes the client). A pipeline spread over several nodes answers in
    /// pieces: measured with `redis-benchmark -P 16`, 6–8 % fewer sends per command (GET 0.108–0.113
    /// → 0.101–0.103, SET 0.114 → 0.106), for a few more empty polls of the reactor.
    async fn soon<T>(&mut self, mut ready: impl FnMut() -> Option<T>) -> Result<Option<T>, Gone> {
        if let Some(value) = ready() {
            return Ok(Some(value));
        }
        if !self.out.is_empty() {
            tokio::task::yield_now().await;
            if let Some(value) = ready() {
                return Ok(Some(value));
            }
        }
        self.flush().await?;
        Ok(None)
    }

    /// The answer of `fut` (see [`Output::soon`]).
    async fn resolve<F: std::future::Future<Output = Answer>>(
        &mut self,
        fut: F,
    ) -> Result<Answer, Gone> {
        tokio::pin!(fut);
        match self.soon(|| (&mut fut).now_or_never()).await? {
            Some(answer) => Ok(answer),
            None => self.wait(fut).await,
        }
    }

    /// The answer of a command whose reply is posted to the board (see [`Output::soon`]); the
    /// retry policy runs only for a redirect or a failed connection.
    async fn posted(&mut self, ticketed: Ticketed, shared: &Shared) -> Result<Answer, Gone> {
        let number = ticketed.number();
        let posted = match self.soon(|| shared.board.take(number)).await? {
            Some(posted) => posted,
            None => self.wait(shared.board.wait(number)).await?,
        };
        match ticketed.settle(posted, &shared.cluster, &shared.budget) {
            Ok(answer) => Ok(answer),
            Err(inflight) => self.wait(inflight.finish()).await,
        }
    }

    /// The answer of a command sent through the pools (see [`Output::soon`]); the retry policy's
    /// future is built only for a redirect or a failed connection.
    async fn routed(&mut self, mut inflight: InFlight) -> Result<Answer, Gone> {
        if let Some(answer) = self.soon(|| inflight.ready_answer()).await? {
            return Ok(answer);
        }
        self.wait(inflight.first_reply()).await?;
        match inflight.ready_answer() {
            Some(answer) => Ok(answer),
            None => self.wait(inflight.finish()).await,
        }
    }

    /// Waits for `fut`, unless the client is closed for its output limit meanwhile.
    async fn wait<F: std::future::Future>(&mut self, fut: F) -> Result<F::Output, Gone> {
        tokio::select! {
            biased;
            v = fut => Ok(v),
            _ = self.hangup.for_writer() => Err(Gone),
        }
    }
}

async fn write_replies<W: AsyncWrite + Unpin>(
    mut output: Output<W>,
    mut rx: Replies<Slot>,
    mut feeds: Feeds,
    shared: Shared,
) {
    if write_loop(&mut output, &mut rx, &mut feeds, &shared)
        .await
        .is_ok()
    {
        let _ = output.flush().await;
        let _ = output.write.shutdown().await;
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    output: &mut Output<W>,
    rx: &mut Replies<Slot>,
    feeds: &mut Feeds,
    shared: &Shared,
) -> Result<(), Gone> {
    loop {
        // What the feeds hold goes out first: a push that came while a reply was awaited is written
        // before the replies queued behind that one (as in Redis, where it enters the output
        // buffer at once).
        if feeds.bell.take() {
            feeds.drain(rx.completed(), &mut output.out);
        }
        let slot = match rx.try_recv() {
            Some(slot) => Some(slot),
            None => {
                output.flush().await?;
                // Parked. The FIFO is polled first: a wake-up for a slot, the common one, polls
                // nothing else (an unbiased select would draw a random number every poll).
                tokio::select! {
                    biased;
                    slot = rx.recv() => slot,
                    () = feeds.bell.rung() => {
                        feeds.drain(rx.completed(), &mut output.out);
                        continue;
                    }
                    _ = output.hangup.for_writer() => return Err(Gone),
                }
            }
        };
        let Some(Slot {
            protocol,
            reply,
            timed,
        }) = slot
        else {
            return Ok(());
        };
        // A monitor's lines for commands dispatched before this one, its own included, come
        // before this reply, as in Redis where both go through one output buffer. (They were
        // queued before the slot was, so the emptiness check, cheaper than a receive, sees them.)
        if !feeds.monitor.is_empty() {
            for _ in 0..monitor::MAX_LINES {
                let Ok(line) = feeds.monitor.try_recv() else {
                    break;
                };
                output.add_encoded(&line).await?;
            }
        }
        let close = match reply {
            Reply::Ready(frame) => {
                output.frame(protocol, &frame);
                false
            }
            Reply::Many(frames) => {
                frames
                    .iter()
                    .for_each(|frame| output.frame(protocol, frame));
                false
            }
            Reply::Posted(ticketed) => {
                let answer = output.posted(ticketed, shared).await?;
                output.answer(protocol, answer).await?;
                false
            }
            Reply::Routed(inflight) => {
                let answer = output.routed(inflight).await?;
                output.answer(protocol, answer).await?;
                false
            }
            Reply::Later(fut) => {
                let answer = output.resolve(fut).await?;
                output.answer(protocol, answer).await?;
                false
            }
            Reply::Relay(frames) => {
                write_relayed(output, frames, feeds).await?;
                false
            }
            Reply::Close(frame) => {
                output.frame(protocol, &frame);
                true
            }
            Reply::Silent(reply) => silence(output, *reply, shared).await?,
        };
        if let Some(timed) = timed {
            shared.cluster.slowlog.finish(timed, &shared.client);
        }
        rx.finished_one();
        if !feeds.held.is_empty() {
            feeds.release(rx.completed(), &mut output.out);
        }
        if close {
            // The caller flushes and shuts the socket down.
            return Ok(());
        }
        if rx.is_empty() || output.out.len() >= FLUSH_AT {
            output.flush().await?;
        }
    }
}

/// A RESP2 subscriber's messages from its node, and the invalidations another client redirects to
/// it (`CLIENT TRACKING … REDIRECT`), until the subscription ends.
async fn write_relayed<W: AsyncWrite + Unpin>(
    output: &mut Output<W>,
    mut frames: mpsc::Receiver<Charged>,
    feeds: &mut Feeds,
) -> Result<(), Gone> {
    loop {
        tokio::select! {
            frame = output.wait(frames.recv()) => match frame? {
                Some(frame) => output.add_encoded(&frame).await?,
                None => return Ok(()),
            },
            Some(invalidation) = feeds.invalidations.recv() => {
                output.add_encoded(&invalidation.push).await?;
            }
        }
        if frames.is_empty() && feeds.invalidations.is_empty() {
            output.flush().await?;
        }
    }
}

/// A reply the client asked not to get (`CLIENT REPLY`): waited for in its turn, so that later
/// replies keep their order and what it holds is released, then dropped. Whether to close after it.
async fn silence<W: AsyncWrite + Unpin>(
    output: &mut Output<W>,
    reply: Reply,
    shared: &Shared,
) -> Result<bool, Gone> {
    match reply {
        Reply::Ready(_) | Reply::Many(_) => {}
        Reply::Posted(ticketed) => drop(output.posted(ticketed, shared).await?),
        Reply::Routed(inflight) => drop(output.wait(inflight.finish()).await?),
        Reply::Later(fut) => drop(output.wait(fut).await?),
        Reply::Relay(mut frames) => while output.wait(frames.recv()).await?.is_some() {},
        Reply::Close(_) => return Ok(true),
        Reply::Silent(inner) => return Box::pin(silence(output, *inner, shared)).await,
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
