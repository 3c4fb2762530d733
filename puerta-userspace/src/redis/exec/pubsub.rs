//! SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE: the client gets its own backend connection, speaking its protocol.
//! To learn when a subscription command has been fully answered (and how many subscriptions are
//! left), the proxy follows it with a `PING <marker>` and swallows the marked PONG, whose arrival
//! proves all earlier replies were seen.
//!
//! RESP2: until the last subscription ends, every frame from that node is relayed to the client as
//! one long reply and every command it sends is forwarded (Redis allows only pub/sub commands then).
//! RESP3: messages are push frames that the client's writer puts between replies; each subscription
//! command's confirmations are that command's reply slot, closed by the marker; other commands keep
//! going through the cluster as usual.
//!
//! Either way what the node sent is passed on as its own bytes (the connection speaks the client's
//! protocol), charged to the client's output budget until written: a subscriber that stops reading
//! while big messages keep coming is closed at `client_output_limit_mb`, like any client whose
//! replies pile up, instead of the proxy holding a queue's worth of messages of any size.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::redis::client::feed::FeedSender;
use crate::redis::client::output::{Charged, OutputBudget};
use crate::redis::cluster::router::Route;
use crate::redis::cluster::Cluster;
use crate::redis::command::slots::key_slot;
use crate::redis::command::Command;
use crate::redis::exec::dispatch::Reply;
use crate::redis::node::backend;
use crate::redis::resp::wire;
use crate::redis::resp::{self, Decoder, Frame, Limits, Protocol, ReadBuf};
use crate::tls::{ReadHalf, WriteHalf};

const BARRIER_PREFIX: &[u8] = b"__puerta_pubsub_barrier_";

#[derive(Debug, Clone, Copy, Default)]
struct Ack {
    seq: u64,
    count: i64,
}

/// The reply slots of the RESP3 subscription commands still waiting for their marker, oldest first.
type Waiting = Arc<Mutex<VecDeque<mpsc::Sender<Charged>>>>;

/// Where the relay puts what the node sends.
enum Delivery {
    /// RESP2: everything, in order, into the client's one long relay reply.
    Stream(mpsc::Sender<Charged>),
    /// RESP3: messages to the writer's push channel, command answers into their own slots.
    Split {
        pushes: FeedSender<Charged>,
        waiting: Waiting,
    },
}

pub struct PubSub {
    write: WriteHalf,
    acks: watch::Receiver<Ack>,
    seq: u64,
    ended: CancellationToken,
    /// RESP3 only: where [`PubSub::command`] registers each command's reply slot.
    waiting: Option<Waiting>,
}

/// Frames relayed but not yet taken by the client's writer before the node connection is read
/// slower; their bytes count against the client's output budget meanwhile.
const MAX_RELAYED: usize = 1024;

/// RESP2: opens the connection, sends the first subscribe, and returns the session half plus the
/// stream of frames for the client, charged to `budget`.
pub async fn start(
    cluster: &Arc<Cluster>,
    cmd: &Command,
    budget: &Arc<OutputBudget>,
) -> Result<(PubSub, mpsc::Receiver<Charged>), Frame> {
    let (frames_tx, frames_rx) = mpsc::channel(MAX_RELAYED);
    let addr = node_for(cluster, cmd)?;
    let delivery = Delivery::Stream(frames_tx);
    let mut pubsub = open(cluster, addr, Protocol::Resp2, delivery, budget).await?;
    pubsub
        .write
        .write_all(&cmd.payload())
        .await
        .map_err(|e| wire::error(format!("ERR Puerta: pub/sub connection failed: {e}")))?;
    Ok((pubsub, frames_rx))
}

/// RESP3: opens a `HELLO 3` connection to `addr` whose messages go to `pushes`, charged to
/// `budget`; commands are then sent with [`PubSub::command`].
pub async fn start_resp3(
    cluster: &Arc<Cluster>,
    addr: Arc<str>,
    pushes: FeedSender<Charged>,
    budget: &Arc<OutputBudget>,
) -> Result<PubSub, Frame> {
    let waiting = Waiting::default();
    let delivery = Delivery::Split {
        pushes,
        waiting: waiting.clone(),
    };
    let mut pubsub = open(cluster, addr, Protocol::Resp3, delivery, budget).await?;
    pubsub.waiting = Some(waiting);
    Ok(pubsub)
}

/// The slot whose master holds every global subscription of the proxy's clients, and answers
/// their PUBLISH and PUBSUB. Redis Cluster delivers a PUBLISH on every node, but counts (PUBLISH's
/// answer, PUBSUB NUMSUB/NUMPAT/CHANNELS) only the subscribers of the node that runs it: on one
/// node, the proxy's clients count as they would on one Redis. A failover of that master moves the
/// home with the slot (live subscriptions on the old one are told their connection was lost).
pub const HOME_SLOT: u16 = 0;

/// The node a subscription command goes to: the shard channel's master for the sharded family, the
/// home of global subscriptions for the others.
pub fn node_for(cluster: &Cluster, cmd: &Command) -> Result<Arc<str>, Frame> {
    let sharded = cmd.subscription().is_some_and(|s| s.sharded);
    let slot = match cmd.args().get(1) {
        Some(channel) if sharded => key_slot(channel),
        _ => HOME_SLOT,
    };
    cluster
        .node_for(slot, false)
        .ok_or_else(|| wire::error("CLUSTERDOWN Puerta knows no node for this subscription"))
}

/// PUBLISH and PUBSUB, to the home of global subscriptions.
pub fn home_route(cmd: &Command) -> Route {
    Route {
        payload: cmd.payload(),
        slot: Some(HOME_SLOT),
        readonly: false,
        dedicated: false,
        scripted: false,
    }
}

/// Connects to `addr` and starts the relay.
async fn open(
    cluster: &Arc<Cluster>,
    addr: Arc<str>,
    protocol: Protocol,
    delivery: Delivery,
    budget: &Arc<OutputBudget>,
) -> Result<PubSub, Frame> {
    let opts = cluster.connect_options().speaking(protocol);
    let (stream, leftover) = backend::open(&addr, &opts)
        .await
        .map_err(|e| wire::error(format!("ERR Puerta: {e}")))?;
    let (read, write) = stream.into_split();
    let (acks_tx, acks) = watch::channel(Ack::default());
    let ended = CancellationToken::new();
    tokio::spawn(relay(
        Relay {
            read,
            buf: ReadBuf::new(leftover),
            delivery,
            budget: budget.clone(),
            acks: acks_tx,
            addr,
        },
        ended.clone(),
    ));
    Ok(PubSub {
        write,
        acks,
        seq: 0,
        ended,
        waiting: None,
    })
}

impl PubSub {
    /// RESP2: forwards a command; `Ok(false)` when the client has no subscription left (pub/sub is
    /// over).
    pub async fn forward(&mut self, cmd: &Command) -> Result<bool, String> {
        self.send(&cmd.payload()).await?;
        if cmd.subscription().is_some_and(|s| !s.unsubscribe) {
            return Ok(true);
        }
        let seq = self.barrier().await?;
        Ok(self.subscriptions_after(seq).await? > 0)
    }

    /// RESP3: sends a subscription command; returns its reply slot (closed once all its answers are
    /// in) and the sequence number to pass to [`PubSub::subscriptions_after`].
    pub async fn command(
        &mut self,
        cmd: &Command,
    ) -> Result<(mpsc::Receiver<Charged>, u64), String> {
        let (slot, answers) = mpsc::channel(64);
        if let Some(waiting) = &self.waiting {
            waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(slot);
        }
        self.send(&cmd.payload()).await?;
        let seq = self.barrier().await?;
        Ok((answers, seq))
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let sent = async {
            self.write.write_all(bytes).await?;
            self.write.flush().await
        };
        sent.await.map_err(|e| e.to_string())
    }

    /// Sends the next marked PING; returns its sequence number.
    async fn barrier(&mut self) -> Result<u64, String> {
        self.seq += 1;
        let mut marker = BARRIER_PREFIX.to_vec();
        marker.extend_from_slice(self.seq.to_string().as_bytes());
        self.send(&wire::command_bytes(&[&b"PING"[..], &marker]))
            .await?;
        Ok(self.seq)
    }

    /// How many subscriptions the connection has once the node answered everything before the
    /// marker `seq`.
    pub async fn subscriptions_after(&mut self, seq: u64) -> Result<i64, String> {
        let ack = tokio::time::timeout(
            Duration::from_secs(30),
            self.acks.wait_for(|a| a.seq >= seq),
        )
        .await
        .map_err(|_| "no answer to UNSUBSCRIBE".to_string())?
        .map_err(|_| "pub/sub connection lost".to_string())?;
        Ok(ack.count)
    }

    /// Resolves when the node connection is gone.
    pub async fn lost(&self) {
        self.ended.cancelled().await
    }
}

/// The reading half of a subscribed connection and where its frames go.
struct Relay {
    read: ReadHalf,
    buf: ReadBuf,
    delivery: Delivery,
    /// The subscriber's: what is relayed counts against it until written.
    budget: Arc<OutputBudget>,
    acks: watch::Sender<Ack>,
    addr: Arc<str>,
}

async fn relay(mut r: Relay, ended: CancellationToken) {
    let mut decoder = Decoder::new(Limits::default());
    let mut count = 0i64;
    'outer: loop {
        loop {
            match decoder.reply_bytes(&mut r.buf) {
                Ok(Some(raw)) => {
                    let seen = Seen::of(&raw);
                    match seen {
                        Seen::Barrier(seq) => {
                            r.delivery.close_oldest_slot();
                            r.acks.send_replace(Ack { seq, count });
                            continue;
                        }
                        Seen::Confirmation(c) => count = c,
                        Seen::Message | Seen::Answer => {}
                    }
                    // An error answer (a RESP2 subscriber's command Redis refuses there).
                    crate::redis::metrics::reply_error(resp::error_text(&raw));
                    r.buf.took(raw.len());
                    let message = seen == Seen::Message;
                    if !r.delivery.deliver(message, r.budget.charge(raw)).await {
                        break 'outer;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(addr = %r.addr, "bad pub/sub frame from node: {e}");
                    break 'outer;
                }
            }
        }
        // What is left is the start of a frame, which counts against the client before it is whole.
        if !r.budget.admits(r.buf.len()) {
            break;
        }
        r.buf.make_room();
        match r.read.read_buf(&mut *r.buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    ended.cancel();
}

impl Delivery {
    /// Passes on one frame, a published `message` or not; false once the client is gone.
    async fn deliver(&self, message: bool, frame: Charged) -> bool {
        match self {
            Delivery::Stream(frames) => frames.send(frame).await.is_ok(),
            Delivery::Split { pushes, waiting } => {
                let slot = match message {
                    true => None,
                    false => waiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .front()
                        .cloned(),
                };
                match slot {
                    // A slot whose reply the client will never read is no reason to stop.
                    Some(slot) => {
                        let _ = slot.send(frame).await;
                        true
                    }
                    None => pushes.send(frame).await.is_ok(),
                }
            }
        }
    }

    /// The oldest command's answers are complete: closing its slot lets the writer move on.
    fn close_oldest_slot(&self) {
        if let Delivery::Split { waiting, .. } = self {
            waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
        }
    }
}

/// What the relay must know of a frame from the subscribed connection, read off its bytes: at
/// most a scalar or an aggregate's first three elements are built, never a message passed on.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// One of our marked PONGs (`[pong, marker]` or, once unsubscribed, `marker`): the node has
    /// answered everything sent before marker `n`.
    Barrier(u64),
    /// A (un)subscribe confirmation, `[kind, channel, count]` (a push in RESP3): the connection's
    /// subscriptions after it.
    Confirmation(i64),
    /// A published message: `message`, `pmessage` or `smessage`.
    Message,
    /// Any other answer.
    Answer,
}

impl Seen {
    fn of(raw: &Bytes) -> Seen {
        if raw.first() == Some(&b'$') {
            return match resp::frame_of(raw) {
                Ok(Frame::Bulk(marker)) => barrier(&marker).map_or(Seen::Answer, Seen::Barrier),
                _ => Seen::Answer,
            };
        }
        let mut head: [Option<Frame>; 3] = Default::default();
        let mut next = head.iter_mut();
        let Some(count) = resp::elements(raw, |element| {
            if let Some(place) = next.next() {
                *place = resp::frame_of(&element).ok();
            }
        }) else {
            return Seen::Answer;
        };
        let Some(Frame::Bulk(kind)) = &head[0] else {
            return Seen::Answer;
        };
        let is = |names: &[&[u8]]| names.iter().any(|name| kind.eq_ignore_ascii_case(name));
        match (count, &head[1], &head[2]) {
            (2, Some(Frame::Bulk(marker)), _) if is(&[b"pong"]) => {
                barrier(marker).map_or(Seen::Answer, Seen::Barrier)
            }
            (3, _, Some(Frame::Integer(n))) if is(CONFIRMATIONS) => Seen::Confirmation(*n),
            _ if is(&[b"message", b"pmessage", b"smessage"]) => Seen::Message,
            _ => Seen::Answer,
        }
    }
}

const CONFIRMATIONS: &[&[u8]] = &[
    b"subscribe",
    b"unsubscribe",
    b"psubscribe",
    b"punsubscribe",
    b"ssubscribe",
    b"sunsubscribe",
];

/// The sequence number in one of our PING markers.
fn barrier(marker: &[u8]) -> Option<u64> {
    let rest = marker.strip_prefix(BARRIER_PREFIX)?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// What Redis answers an unsubscribe from a client without such subscriptions: one confirmation per
/// channel named, each with a count of 0, or one with a null channel when none is named. A client
/// waits for one per channel.
pub fn unsubscribed_reply(cmd: &Command) -> Reply {
    let kind = Bytes::from(cmd.name.to_ascii_lowercase());
    let confirm =
        |channel| Frame::Push(vec![Frame::Bulk(kind.clone()), channel, Frame::Integer(0)]);
    match cmd.args().len() {
        1 => Reply::Ready(confirm(Frame::Null)),
        _ => Reply::Many(
            cmd.args()[1..]
                .iter()
                .map(|channel| confirm(Frame::Bulk(channel.clone())))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(wire: &str) -> Seen {
        Seen::of(&Bytes::copy_from_slice(wire.as_bytes()))
    }

    #[test]
    fn recognises_barriers_confirmations_and_messages_from_their_bytes() {
        let marker = format!("{}42", String::from_utf8_lossy(BARRIER_PREFIX));
        let bulk = format!("${}\r\n{marker}\r\n", marker.len());
        assert_eq!(seen(&bulk), Seen::Barrier(42));
        assert_eq!(
            seen(&format!("*2\r\n$4\r\npong\r\n{bulk}")),
            Seen::Barrier(42)
        );
        assert_eq!(
            seen(&format!(">2\r\n$4\r\nPONG\r\n{bulk}")),
            Seen::Barrier(42)
        );
        assert_eq!(seen("$5\r\nhello\r\n"), Seen::Answer);
        assert_eq!(seen("*2\r\n$4\r\npong\r\n$0\r\n\r\n"), Seen::Answer);
        let confirm = "*3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:2\r\n";
        assert_eq!(seen(confirm), Seen::Confirmation(2));
        let resp3 = ">3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n";
        assert_eq!(seen(resp3), Seen::Confirmation(1));
        let null_channel = ">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n";
        assert_eq!(seen(null_channel), Seen::Confirmation(0));
        assert_eq!(
            seen("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"),
            Seen::Message
        );
        let pmessage = ">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$1\r\nx\r\n";
        assert_eq!(seen(pmessage), Seen::Message);
        // A message whose payload looks like a count is still a message.
        assert_eq!(
            seen(">3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n:1\r\n"),
            Seen::Message
        );
        assert_eq!(seen("-ERR only (P|S)SUBSCRIBE allowed\r\n"), Seen::Answer);
        assert_eq!(seen("*0\r\n"), Seen::Answer);
        assert_eq!(seen("*-1\r\n"), Seen::Answer);
    }
}
