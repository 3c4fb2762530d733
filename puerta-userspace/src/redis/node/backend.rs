//! One pipelined connection to a cluster node. Requests from any number of clients are written in the
//! order they arrive and matched to replies through a FIFO of reply slots, because Redis answers each
//! connection strictly in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::admin::LatencyHistogram;
use crate::redis::client::board::Ticket;
use crate::redis::client::output::{Charged, OutputBudget};
pub use crate::redis::node::connect::{open, ConnectOptions};
use crate::redis::node::fault::{self, FaultKind};
use crate::redis::node::outbox::Outbox;
use crate::redis::resp::{self, Decoder, Frame, Limits, ReadBuf};
use crate::tls::{ReadHalf, Stream, WriteHalf};

use crate::redis::signal::{Flags, Task};

/// The one flag of a connection's [`Flags`]: either task ended, so both end and the connection is
/// closed (see [`crate::redis::signal`] for why this is not a cancellation token).
const STOPPED: u8 = 1;

/// Why a request to a node got no reply. `NotSent` is always safe to retry; `Lost` only for reads.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: Arc<str>, reason: String },
    #[error("timed out connecting to {addr} after {ms} ms")]
    ConnectTimeout { addr: Arc<str>, ms: u128 },
    #[error("handshake with {addr} failed: {reason}")]
    Handshake { addr: Arc<str>, reason: String },
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls { addr: Arc<str>, reason: String },
    #[error("connection to {addr} closed before the command was sent")]
    NotSent { addr: Arc<str> },
    #[error(
        "connection to {addr} lost before the reply ({reason}); the command may have been applied"
    )]
    Lost { addr: Arc<str>, reason: String },
    #[error(
        "{addr} did not answer within {ms} ms (connection closed); the command may have been applied"
    )]
    Timeout { addr: Arc<str>, ms: u128 },
}

impl BackendError {
    /// True when the node certainly did not execute the command.
    pub fn never_sent(&self) -> bool {
        !matches!(
            self,
            BackendError::Lost { .. } | BackendError::Timeout { .. }
        )
    }

    /// The node the error is about.
    pub fn addr(&self) -> &Arc<str> {
        match self {
            BackendError::Connect { addr, .. }
            | BackendError::ConnectTimeout { addr, .. }
            | BackendError::Handshake { addr, .. }
            | BackendError::Tls { addr, .. }
            | BackendError::NotSent { addr }
            | BackendError::Lost { addr, .. }
            | BackendError::Timeout { addr, .. } => addr,
        }
    }
}

pub type ReplyResult = Result<Frame, BackendError>;

/// What a node sent for one request, as the bytes it sent: passed through to a client as they are,
/// parsed only by whoever must look inside.
#[derive(Debug)]
pub enum NodeReply {
    One(Charged),
    /// A request of several commands (ASKING + command, MULTI … EXEC): one reply each.
    Many(Vec<Charged>),
}

pub type NodeResult = Result<NodeReply, BackendError>;

impl NodeReply {
    /// The reply as a frame; several replies as an array of them.
    pub fn frame(&self) -> Frame {
        match self {
            NodeReply::One(raw) => raw.frame(),
            NodeReply::Many(raws) => Frame::Array(raws.iter().map(Charged::frame).collect()),
        }
    }

    /// The last reply (the command's own after ASKING).
    pub fn into_last(self) -> Option<Charged> {
        match self {
            NodeReply::One(raw) => Some(raw),
            NodeReply::Many(raws) => raws.into_iter().last(),
        }
    }
}

/// The frame of a node result, for the proxy's own use of a reply.
pub fn frame_result(result: NodeResult) -> ReplyResult {
    result.map(|reply| reply.frame())
}

struct Request {
    payload: Bytes,
    replies: usize,
    budget: Option<Arc<OutputBudget>>,
    tx: ReplyTo,
}

/// Where a request's reply goes: a client's reply board for a routed command (the common case,
/// nothing allocated per command), else a oneshot channel.
enum ReplyTo {
    Board(Ticket),
    Channel(oneshot::Sender<NodeResult>),
}

impl ReplyTo {
    fn send(self, result: NodeResult) {
        match self {
            ReplyTo::Board(ticket) => ticket.post(result),
            ReplyTo::Channel(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// A reply slot: `want` replies are delivered together (one as is).
struct Waiting {
    want: usize,
    /// The output budget of the client the replies are for; `None` for the proxy's own queries.
    budget: Option<Arc<OutputBudget>>,
    tx: ReplyTo,
    /// When the request was queued for writing, for the per-node latency histogram.
    sent: Instant,
}

#[derive(Default)]
struct PendingQueue {
    closed: bool,
    /// Every handle is gone but replies are still due: the reader closes once the last is in.
    released: bool,
    queue: VecDeque<Waiting>,
}

impl PendingQueue {
    /// Called when every handle is gone: true (and `released` set) when replies are still due.
    /// The pool of a master that a failover demoted is dropped while its commands wait there (a
    /// manual failover pauses them, then answers MOVED): closing now would lose them.
    fn release(&mut self) -> bool {
        self.released = !self.queue.is_empty();
        self.released
    }
}

/// What a reply did to the queue.
#[derive(PartialEq, Eq)]
enum Delivery {
    /// With how many replies the next request wants, if one is queued.
    Delivered(Option<usize>),
    /// The last one due after every handle is gone: the connection can close.
    LastAfterRelease,
    /// Nobody asked for it.
    Unexpected,
}

/// Handle to the connection task pair. Dropping every handle closes the connection.
pub struct BackendConn {
    addr: Arc<str>,
    outbox: Arc<Outbox<Request>>,
    /// Raised when either task ends: the connection is closed.
    stop: Arc<Flags>,
}

impl Drop for BackendConn {
    fn drop(&mut self) {
        self.outbox.release();
    }
}

impl BackendConn {
    pub async fn connect(
        addr: Arc<str>,
        opts: &ConnectOptions,
    ) -> Result<BackendConn, BackendError> {
        let (stream, leftover) = open(&addr, opts).await?;
        Ok(Self::start(addr, stream, leftover, opts.reply_timeout))
    }

    fn start(
        addr: Arc<str>,
        stream: Stream,
        leftover: BytesMut,
        reply_timeout: Option<Duration>,
    ) -> BackendConn {
        let (read, write) = stream.into_split();
        let outbox = Arc::new(Outbox::default());
        let pending = Arc::new(Mutex::new(PendingQueue::default()));
        let stop = Arc::new(Flags::default());
        tokio::spawn(write_loop(
            Writing {
                addr: addr.clone(),
                write,
                outbox: outbox.clone(),
                pending: pending.clone(),
                drain_on_release: reply_timeout.is_some(),
            },
            stop.clone(),
        ));
        tokio::spawn(read_loop(
            Reading {
                addr: addr.clone(),
                read,
                buf: ReadBuf::new(leftover),
                pending,
                reply_timeout,
            },
            stop.clone(),
        ));
        BackendConn { addr, outbox, stop }
    }

    pub fn addr(&self) -> &Arc<str> {
        &self.addr
    }

    pub fn is_closed(&self) -> bool {
        self.stop.has(STOPPED)
    }

    /// Queues `payload` (holding `replies` commands) and returns where the reply will arrive. Requests
    /// sent through one handle reach the node in the order of the calls.
    pub fn send(&self, payload: Bytes, replies: usize) -> oneshot::Receiver<NodeResult> {
        self.send_for(payload, replies, None)
    }

    /// [`BackendConn::send`] for a client: its replies count against `budget` from the moment they
    /// are read until the client's writer is done with them.
    pub fn send_for(
        &self,
        payload: Bytes,
        replies: usize,
        budget: Option<&Arc<OutputBudget>>,
    ) -> oneshot::Receiver<NodeResult> {
        let (tx, rx) = oneshot::channel();
        self.queue(payload, replies, budget, ReplyTo::Channel(tx));
        rx
    }

    /// [`BackendConn::send_for`] for a client, its reply posted under `ticket`.
    pub fn post_for(
        &self,
        payload: Bytes,
        replies: usize,
        budget: Option<&Arc<OutputBudget>>,
        ticket: Ticket,
    ) {
        self.queue(payload, replies, budget, ReplyTo::Board(ticket));
    }

    fn queue(
        &self,
        payload: Bytes,
        replies: usize,
        budget: Option<&Arc<OutputBudget>>,
        tx: ReplyTo,
    ) {
        let request = Request {
            payload,
            replies: replies.max(1),
            budget: budget.cloned(),
            tx,
        };
        if let Err(request) = self.outbox.push(request) {
            request.tx.send(Err(BackendError::NotSent {
                addr: self.addr.clone(),
            }));
        }
    }

    /// Sends and waits.
    pub async fn call(&self, payload: Bytes, replies: usize) -> ReplyResult {
        match self.send(payload, replies).await {
            Ok(result) => frame_result(result),
            Err(_) => Err(BackendError::Lost {
                addr: self.addr.clone(),
                reason: "connection task ended".into(),
            }),
        }
    }
}

/// The writing half and what it needs.
struct Writing {
    addr: Arc<str>,
    write: WriteHalf,
    outbox: Arc<Outbox<Request>>,
    pending: Arc<Mutex<PendingQueue>>,
    /// When every handle is gone, wait for the replies still due before closing. Only where a
    /// reply timeout bounds that wait: a blocking command's connection closes at once.
    drain_on_release: bool,
}

/// Requests a writer's idle batch buffer may keep room for (about 72 KiB).
const MAX_KEPT_BATCH: usize = 1024;

/// Bytes a writer's idle output buffer may keep: a full batch (256 KiB) and room.
const MAX_KEPT_OUT: usize = 1024 * 1024;

async fn write_loop(w: Writing, stop: Arc<Flags>) {
    let Writing {
        addr,
        mut write,
        outbox,
        pending,
        drain_on_release,
    } = w;
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut batch = Vec::new();
    loop {
        // Checked here with a load; the selects poll their main branch first (see the client
        // session's reader).
        if stop.has(STOPPED) {
            break;
        }
        if batch.is_empty() {
            let open = tokio::select! {
                biased;
                open = outbox.ready() => open,
                _ = stop.wait(Task::Writer, STOPPED) => break,
            };
            if !open {
                let due =
                    drain_on_release && pending.lock().unwrap_or_else(|e| e.into_inner()).release();
                if due {
                    // The write half stays open (dropping it would send FIN, and Redis drops a
                    // client on EOF with its replies) until the reader has them all, or times out.
                    stop.wait(Task::Writer, STOPPED).await;
                }
                break;
            }
            // Let every task that is ready in this scheduler turn queue its request first, so
            // they leave in one write: without this the runtime runs this task right after the
            // first sender (its LIFO slot). Measured at -P 1: a fifth fewer writes to the nodes
            // (each one wakes a node), for more, cheap, empty polls of the reactor.
            tokio::task::yield_now().await;
            outbox.take_all(&mut batch);
        }
        // Everything queued by now goes out in this one write, up to a bound; the rest in the
        // next.
        let mut queued = 0;
        let take = batch
            .iter()
            .take_while(|r| {
                let within = queued < 256 * 1024;
                queued += r.payload.len();
                within
            })
            .count();
        {
            let sent = Instant::now();
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            for r in batch.drain(..take) {
                if p.closed {
                    r.tx.send(Err(BackendError::NotSent { addr: addr.clone() }));
                    continue;
                }
                out.extend_from_slice(&r.payload);
                p.queue.push_back(Waiting {
                    want: r.replies,
                    budget: r.budget,
                    tx: r.tx,
                    sent,
                });
            }
        }
        if out.is_empty() {
            break;
        }
        // The batch buffers (this one and the outbox's, which trade places) keep the capacity of
        // the biggest burst they carried; past a bound it is given back.
        if batch.is_empty() && batch.capacity() > MAX_KEPT_BATCH {
            batch = Vec::new();
        }
        // A node that stops reading fills the socket buffer; the reader's timeout must still be
        // able to end this write.
        let written = tokio::select! {
            biased;
            r = write_out(&mut write, &out) => r,
            _ = stop.wait(Task::Writer, STOPPED) => break,
        };
        if let Err(e) = written {
            fault::report(
                &addr,
                FaultKind::of_io(&e),
                &format!("write failed: {e}"),
                0,
            );
            break;
        }
        out.clear();
        // One huge command (a 500 MB SET) must not leave its size behind for the connection's
        // life.
        if out.capacity() > MAX_KEPT_OUT {
            out = BytesMut::with_capacity(16 * 1024);
        }
    }
    stop.raise(STOPPED);
    for r in batch.into_iter().chain(outbox.close()) {
        r.tx.send(Err(BackendError::NotSent { addr: addr.clone() }));
    }
}

/// One coalesced write; the flush pushes out what TLS may still hold (nothing on plain TCP).
async fn write_out(write: &mut WriteHalf, out: &[u8]) -> std::io::Result<()> {
    write.write_all(out).await?;
    write.flush().await
}

/// The reading half and what it needs to match replies to requests.
struct Reading {
    addr: Arc<str>,
    read: ReadHalf,
    buf: ReadBuf,
    pending: Arc<Mutex<PendingQueue>>,
    reply_timeout: Option<Duration>,
}

/// Why a connection's reading ended.
struct Ended {
    /// `None` when the connection ended normally (the last handle was dropped, or an idle connection
    /// was closed by the node), which is not worth a warning.
    fault: Option<FaultKind>,
    reason: String,
}

impl Ended {
    fn fault(kind: FaultKind, reason: impl Into<String>) -> Ended {
        Ended {
            fault: Some(kind),
            reason: reason.into(),
        }
    }
}

async fn read_loop(mut r: Reading, stop: Arc<Flags>) {
    let ended = read_replies(&mut r, &stop).await;
    stop.raise(STOPPED);
    let waiting = {
        let mut p = r.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.closed = true;
        std::mem::take(&mut p.queue)
    };
    let addr = r.addr;
    // The node closing a connection nobody waits on (its `timeout` setting, a restart) is routine.
    let fault = match ended.fault {
        Some(FaultKind::Closed) if waiting.is_empty() => None,
        other => other,
    };
    match fault {
        Some(kind) => fault::report(&addr, kind, &ended.reason, waiting.len()),
        None => {
            tracing::debug!(%addr, lost = waiting.len(), "backend connection ended: {}", ended.reason)
        }
    }
    for w in waiting {
        let error = match (fault, r.reply_timeout) {
            (Some(FaultKind::Timeout), Some(t)) => BackendError::Timeout {
                addr: addr.clone(),
                ms: t.as_millis(),
            },
            _ => BackendError::Lost {
                addr: addr.clone(),
                reason: ended.reason.clone(),
            },
        };
        w.tx.send(Err(error));
    }
}

async fn read_replies(r: &mut Reading, stop: &Flags) -> Ended {
    let mut decoder = Decoder::new(Limits::node());
    let latency = crate::redis::metrics::node_latency(&r.addr);
    // Re-armed only when the oldest waiting request changes, not on every read.
    let overdue = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(overdue);
    // When the bytes being parsed were read: every reply of one read arrived then, and reading
    // the clock once per read instead of once per reply is measurable at -P 16.
    let mut read_at = Instant::now();
    // How many replies the oldest request wants, once known: told by each delivery (under the
    // lock it takes anyway), else looked up when its first reply is in.
    let mut want = None;
    let mut gathered = Gathered::default();
    loop {
        let at = gathered.len();
        match decoder.reply_len(&r.buf[at..]) {
            Ok(Some(len)) if r.buf[at] == b'>' => {
                // Out-of-band data is no reply: pooled connections never subscribe or track keys,
                // so there is nobody to give it to, and counting it would shift every reply after it.
                tracing::debug!(addr = %r.addr, "dropped a push frame on a pooled connection");
                cut(&mut r.buf, at..at + len);
                continue;
            }
            Ok(Some(len)) => {
                let Some(wanted) = want.or_else(|| front_want(&r.pending)) else {
                    return unexpected();
                };
                want = Some(wanted);
                gathered.ends.push(at + len);
                if gathered.ends.len() < wanted {
                    continue;
                }
                let replies = r.buf.take(at + len);
                let delivered = deliver(&r.pending, replies, &gathered.ends, &latency, read_at);
                gathered.clear();
                match delivered {
                    Delivery::Delivered(next) => {
                        want = next;
                        continue;
                    }
                    Delivery::LastAfterRelease => {
                        return Ended {
                            fault: None,
                            reason: "released once its replies were in".into(),
                        }
                    }
                    Delivery::Unexpected => return unexpected(),
                }
            }
            Ok(None) => {}
            Err(e) => return Ended::fault(FaultKind::BadReply, format!("sent a bad reply: {e}")),
        }
        let deadline = r.reply_timeout.map(|t| reply_deadline(&r.pending, t));
        if let Some(d) = deadline {
            if overdue.deadline() != d {
                overdue.as_mut().reset(d);
            }
        }
        size_for_big_bulk(&mut r.buf, gathered.len());
        r.buf.make_room();
        if stop.has(STOPPED) {
            return Ended {
                fault: None,
                reason: "connection closed".into(),
            };
        }
        let n = tokio::select! {
            biased;
            n = r.read.read_buf(&mut *r.buf) => n,
            _ = stop.wait(Task::Reader, STOPPED) => {
                return Ended { fault: None, reason: "connection closed".into() };
            }
            _ = &mut overdue, if deadline.is_some() => {
                if let Some(t) = r.reply_timeout.filter(|t| is_overdue(&r.pending, *t)) {
                    return Ended::fault(
                        FaultKind::Timeout,
                        format!("no reply within {} ms (command_timeout_ms); closing the connection", t.as_millis()),
                    );
                }
                continue;
            }
        };
        match n {
            Ok(0) => return Ended::fault(FaultKind::Closed, "closed the connection"),
            Ok(_) => read_at = Instant::now(),
            Err(e) => return Ended::fault(FaultKind::of_io(&e), format!("connection error: {e}")),
        }
    }
}

/// Bulk replies at least this big get a read buffer of their own size.
const BIG_BULK: usize = 64 * 1024;

/// A reply passed through is a slice of the read buffer and keeps the buffer's whole allocation
/// alive. Grown by doubling while a big value arrives, that allocation can be twice the reply, and
/// the client's output limit (which counts reply bytes) would understate what it holds. So when a
/// big bulk reply starts, the buffer is replaced by one that fits it exactly plus one read; the bytes
/// already read move over at the same offsets, which keeps the decoder's progress valid.
///
/// The reply being read starts at `at` (after replies gathered for the same request).
fn size_for_big_bulk(buf: &mut BytesMut, at: usize) {
    let Some(size) = buf.get(at..).and_then(bulk_size) else {
        return;
    };
    let size = at + size;
    if size < at + BIG_BULK || buf.capacity() >= size {
        return;
    }
    resp::move_to_fresh(buf, size + 16 * 1024);
}

/// The whole wire size of a bulk reply (`$len\r\n…\r\n`) whose header starts `buf`.
fn bulk_size(buf: &[u8]) -> Option<usize> {
    let rest = buf.strip_prefix(b"$")?;
    let digits = rest.iter().take(20).position(|&b| b == b'\r')?;
    let len: usize = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    len.checked_add(digits + 5)
}

/// When the oldest waiting request times out; with nothing waiting, one timeout from now (a request
/// queued meanwhile is then noticed at its own deadline by the re-check).
fn reply_deadline(pending: &Mutex<PendingQueue>, timeout: Duration) -> tokio::time::Instant {
    let p = pending.lock().unwrap_or_else(|e| e.into_inner());
    let since = p.queue.front().map_or_else(Instant::now, |w| w.sent);
    tokio::time::Instant::from_std(since + timeout)
}

fn is_overdue(pending: &Mutex<PendingQueue>, timeout: Duration) -> bool {
    let p = pending.lock().unwrap_or_else(|e| e.into_inner());
    p.queue.front().is_some_and(|w| w.sent.elapsed() >= timeout)
}

/// Replies read for the oldest request while it wants more (a split's batch, ASKING and its
/// command, MULTI … EXEC): they stay in the read buffer until the last is in, then leave it
/// together, with one charge and one delivery instead of one each.
#[derive(Default)]
struct Gathered {
    /// Where each reply ends in the read buffer.
    ends: SmallVec<[usize; 8]>,
}

impl Gathered {
    /// The bytes the gathered replies take at the start of the buffer.
    fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Ready for the next request; a list grown for a long MULTI is given back.
    fn clear(&mut self) {
        match self.ends.spilled() {
            true => self.ends = SmallVec::new(),
            false => self.ends.clear(),
        }
    }
}

/// Takes `range` out of the middle of `buf`.
fn cut(buf: &mut BytesMut, range: std::ops::Range<usize>) {
    if range.start == 0 {
        return buf.advance(range.end);
    }
    let len = range.len();
    buf.copy_within(range.end.., range.start);
    buf.truncate(buf.len() - len);
}

/// How many replies the oldest waiting request wants.
fn front_want(pending: &Mutex<PendingQueue>) -> Option<usize> {
    let p = pending.lock().unwrap_or_else(|e| e.into_inner());
    p.queue.front().map(|w| w.want)
}

fn unexpected() -> Ended {
    Ended::fault(
        FaultKind::BadReply,
        "sent a reply nobody asked for (stream out of sync)",
    )
}

/// Hands `replies` (ending at `ends`) to the oldest waiting request. `Unexpected` when nobody
/// waits: the stream is out of sync.
fn deliver(
    pending: &Mutex<PendingQueue>,
    replies: Bytes,
    ends: &[usize],
    latency: &LatencyHistogram,
    read_at: Instant,
) -> Delivery {
    let (w, last, next) = {
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = p.queue.pop_front() else {
            return Delivery::Unexpected;
        };
        let next = p.queue.front().map(|w| w.want);
        (w, p.released && p.queue.is_empty(), next)
    };
    let charged = match &w.budget {
        Some(budget) => budget.charge(replies),
        None => Charged::free(replies),
    };
    let reply = match ends.len() {
        1 => NodeReply::One(charged),
        _ => NodeReply::Many(charged.split_at_ends(ends)),
    };
    latency.record(read_at.saturating_duration_since(w.sent));
    w.tx.send(Ok(reply));
    match last {
        true => Delivery::LastAfterRelease,
        false => Delivery::Delivered(next),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sizing_tests {
    use super::*;

    #[test]
    fn a_big_bulk_gets_a_buffer_of_its_size_and_keeps_its_bytes() {
        assert_eq!(bulk_size(b"$5\r\nhel"), Some(11));
        assert_eq!(bulk_size(b"$-1\r\n"), None);
        assert_eq!(bulk_size(b"+OK\r\n"), None);
        assert_eq!(bulk_size(b"$12"), None);
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"$1000000\r\nab");
        size_for_big_bulk(&mut buf, 0);
        assert!(buf.capacity() >= 1_000_010 && buf.capacity() < 1_000_010 + 20 * 1024);
        assert_eq!(&buf[..], b"$1000000\r\nab");
        // Behind replies gathered for the same request: sized for them and the bulk.
        let mut behind = BytesMut::with_capacity(64);
        behind.extend_from_slice(b"+OK\r\n$1000000\r\nab");
        size_for_big_bulk(&mut behind, 5);
        assert!(behind.capacity() >= 1_000_015 && behind.capacity() < 1_000_015 + 20 * 1024);
        assert_eq!(&behind[..], b"+OK\r\n$1000000\r\nab");
        let mut small = BytesMut::from(&b"$10\r\nab"[..]);
        let before = small.capacity();
        size_for_big_bulk(&mut small, 0);
        assert_eq!(small.capacity(), before);
    }
}
