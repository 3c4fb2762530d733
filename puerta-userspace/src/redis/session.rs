//! One client connection. The reader parses commands and dispatches each one (putting it on the wire to
//! its node); the reply slot goes into a bounded FIFO. The writer resolves the FIFO in order, so replies
//! leave in exactly the order the commands came, whatever node answered first. The FIFO bound is the
//! client's in-flight limit: a client that pipelines faster than the cluster answers is read slower.
//! RESP3 push frames (pub/sub messages) come through a second channel and are written between
//! replies, never inside one, so they cannot change the order of replies.

use std::sync::Arc;

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;
use super::command::Command;
use super::dispatch::{dispatch, ClientState, Reply};
use super::pubsub::{self, PubSub};
use super::resp::{self, Frame, Limits, Protocol};
use super::stats::Stats;
use super::subscriptions::Subscriptions;
use super::wire;

mod subscribed;

use subscribed::{idle_limit, lost};

/// Commands a client may have in flight before the proxy stops reading from it.
const MAX_IN_FLIGHT: usize = 1024;
/// How long replies may still be written after the client stopped sending.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);
/// Replies are flushed once this much is buffered even if more are ready.
const FLUSH_AT: usize = 64 * 1024;
/// Push frames waiting for the writer before the node connection that sends them is read slower.
const MAX_PUSHES: usize = 1024;

pub async fn run(cluster: Arc<Cluster>, stream: TcpStream, id: u64, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Slot>(MAX_IN_FLIGHT);
    let (pushes, push_rx) = mpsc::channel(MAX_PUSHES);
    let (progress, completed) = watch::channel(0u64);
    let writer = tokio::spawn(write_replies(write, rx, push_rx, progress));
    let mut reader = Reader {
        state: ClientState::new(id, &cluster, completed),
        cluster,
        read,
        buf: BytesMut::with_capacity(16 * 1024),
        tx,
        pushes,
        pubsub: None,
        subscriptions: Subscriptions::default(),
    };
    reader.run(shutdown).await;
    drop(reader);
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
type Slot = (Protocol, Reply);

struct Reader {
    cluster: Arc<Cluster>,
    state: ClientState,
    read: OwnedReadHalf,
    buf: BytesMut,
    tx: mpsc::Sender<Slot>,
    /// For the RESP3 pub/sub relay: messages to write between replies.
    pushes: mpsc::Sender<Frame>,
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
    async fn run(&mut self, shutdown: CancellationToken) {
        let limits = Limits::default();
        loop {
            loop {
                match resp::parse_command(&mut self.buf, &limits) {
                    Ok(Some(frame)) => {
                        if let Flow::Stop = self.command(frame).await {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        Stats::bump(&self.cluster.stats.protocol_errors);
                        tracing::debug!(client = self.state.id, "protocol error: {e}");
                        let _ = self
                            .send(Reply::Close(wire::error(format!("ERR {e}"))))
                            .await;
                        return;
                    }
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            let idle = idle_limit(&self.cluster, self.subscribed());
            let read = tokio::select! {
                r = super::idle::read_buf(&mut self.read, &mut self.buf, idle) => r,
                _ = shutdown.cancelled() => return,
                _ = lost(&self.pubsub, &self.subscriptions) => {
                    let msg = "ERR Puerta: the pub/sub connection to the cluster node was lost";
                    let _ = self.send(Reply::Close(wire::error(msg))).await;
                    return;
                }
            };
            match read {
                Ok(0) => return,
                Err(e) => {
                    super::idle::log_close(self.state.id, &e);
                    return;
                }
                Ok(_) => {}
            }
        }
    }

    async fn command(&mut self, frame: Frame) -> Flow {
        let cmd = match Command::from_frame(frame) {
            Ok(Some(cmd)) => cmd,
            Ok(None) => return Flow::Continue,
            Err(e) => {
                let _ = self.send(Reply::Close(e)).await;
                return Flow::Stop;
            }
        };
        let resp3 = self.state.protocol() == Protocol::Resp3;
        if self.pubsub.is_some() && !resp3 {
            return self.in_pubsub(cmd).await;
        }
        let may_subscribe = self.state.authed && !self.state.txn.in_multi();
        let subscription = pubsub::is_subscription(&cmd);
        if resp3 && may_subscribe && subscription {
            return self.resp3_subscription(cmd).await;
        }
        if cmd.name == "RESET" {
            self.pubsub = None;
            self.subscriptions.clear();
        }
        if matches!(cmd.name.as_str(), "HELLO" | "RESET") {
            self.state.order.all_answered().await;
        }
        let reply = if may_subscribe && subscription && !pubsub::is_unsubscribe(&cmd) {
            self.subscribe(cmd).await
        } else {
            dispatch(&self.cluster, &mut self.state, cmd).await
        };
        self.queue(reply).await
    }

    /// Puts a reply slot in the FIFO.
    async fn queue(&mut self, reply: Reply) -> Flow {
        let close = matches!(reply, Reply::Close(_));
        if self.send(reply).await.is_err() || close {
            return Flow::Stop;
        }
        self.state.order.pushed();
        Flow::Continue
    }

    async fn send(&self, reply: Reply) -> Result<(), mpsc::error::SendError<Slot>> {
        self.tx.send((self.state.protocol(), reply)).await
    }
}

async fn write_replies<W: AsyncWrite + Unpin>(
    mut write: W,
    mut rx: mpsc::Receiver<Slot>,
    mut pushes: mpsc::Receiver<Frame>,
    progress: watch::Sender<u64>,
) {
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let slot = tokio::select! {
            slot = rx.recv() => slot,
            Some(push) = pushes.recv() => {
                push.encode_in(Protocol::Resp3, &mut out);
                if rx.is_empty() && pushes.is_empty() && flush(&mut write, &mut out).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let Some((protocol, reply)) = slot else {
            break;
        };
        if let Reply::Ready(frame) | Reply::Close(frame) = &reply {
            super::metrics::reply(frame);
        }
        let close = match reply {
            Reply::Ready(frame) => {
                frame.encode_in(protocol, &mut out);
                false
            }
            Reply::Later(mut fut) => {
                let frame = match (&mut fut).now_or_never() {
                    Some(frame) => frame,
                    None => {
                        // Do not hold finished replies back while waiting for a slow one.
                        if flush(&mut write, &mut out).await.is_err() {
                            return;
                        }
                        fut.await
                    }
                };
                super::metrics::reply(&frame);
                frame.encode_in(protocol, &mut out);
                false
            }
            Reply::Relay(mut frames) => {
                while let Some(frame) = frames.recv().await {
                    frame.encode_in(protocol, &mut out);
                    if frames.is_empty() && flush(&mut write, &mut out).await.is_err() {
                        return;
                    }
                }
                false
            }
            Reply::Close(frame) => {
                frame.encode_in(protocol, &mut out);
                true
            }
        };
        progress.send_modify(|done| *done += 1);
        if close {
            let _ = flush(&mut write, &mut out).await;
            let _ = write.shutdown().await;
            return;
        }
        if (rx.is_empty() || out.len() >= FLUSH_AT) && flush(&mut write, &mut out).await.is_err() {
            return;
        }
    }
    let _ = flush(&mut write, &mut out).await;
}

async fn flush<W: AsyncWrite + Unpin>(write: &mut W, out: &mut BytesMut) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    write.write_all(out).await?;
    out.clear();
    Ok(())
}

#[cfg(test)]
mod tests;
