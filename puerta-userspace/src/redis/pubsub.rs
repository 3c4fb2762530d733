//! SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE: the client gets its own backend connection, and until its last
//! subscription ends every frame from that node is relayed to it and every command it sends is
//! forwarded. To learn when the subscription count reaches zero, the proxy follows each UNSUBSCRIBE with
//! a `PING <marker>` and swallows the marked PONG, whose arrival proves all earlier replies were seen.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::backend;
use super::cluster::Cluster;
use super::command::Command;
use super::resp::{self, Frame, Limits};
use super::slots::key_slot;
use super::wire;

const BARRIER_PREFIX: &[u8] = b"__puerta_pubsub_barrier_";

#[derive(Debug, Clone, Copy, Default)]
struct Ack {
    seq: u64,
    count: i64,
}

pub struct PubSub {
    write: OwnedWriteHalf,
    acks: watch::Receiver<Ack>,
    seq: u64,
    ended: CancellationToken,
}

/// Opens the connection, sends the first subscribe, and returns the session half plus the stream of
/// frames for the client.
pub async fn start(
    cluster: &Arc<Cluster>,
    cmd: &Command,
) -> Result<(PubSub, mpsc::Receiver<Frame>), Frame> {
    let addr = match cmd.name.as_str() {
        "SSUBSCRIBE" => cluster.node_for(key_slot(&cmd.args[1]), false),
        _ => cluster.any_master(),
    }
    .ok_or_else(|| wire::error("CLUSTERDOWN Puerta knows no node for this subscription"))?;
    let (stream, leftover) = backend::open(&addr, cluster.connect_options())
        .await
        .map_err(|e| wire::error(format!("ERR Puerta: {e}")))?;
    let (read, write) = stream.into_split();
    let (frames_tx, frames_rx) = mpsc::channel(1024);
    let (acks_tx, acks) = watch::channel(Ack::default());
    let ended = CancellationToken::new();
    tokio::spawn(relay(
        read,
        leftover,
        frames_tx,
        acks_tx,
        ended.clone(),
        addr,
    ));
    let mut pubsub = PubSub {
        write,
        acks,
        seq: 0,
        ended,
    };
    pubsub
        .write
        .write_all(&cmd.payload())
        .await
        .map_err(|e| wire::error(format!("ERR Puerta: pub/sub connection failed: {e}")))?;
    Ok((pubsub, frames_rx))
}

impl PubSub {
    /// Forwards a command; `Ok(false)` when the client has no subscription left (pub/sub is over).
    pub async fn forward(&mut self, cmd: &Command) -> Result<bool, String> {
        self.write
            .write_all(&cmd.payload())
            .await
            .map_err(|e| e.to_string())?;
        if !matches!(
            cmd.name.as_str(),
            "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE"
        ) {
            return Ok(true);
        }
        self.seq += 1;
        let mut marker = BARRIER_PREFIX.to_vec();
        marker.extend_from_slice(self.seq.to_string().as_bytes());
        self.write
            .write_all(&wire::command_bytes(&[&b"PING"[..], &marker]))
            .await
            .map_err(|e| e.to_string())?;
        let seq = self.seq;
        let ack = tokio::time::timeout(
            Duration::from_secs(30),
            self.acks.wait_for(|a| a.seq >= seq),
        )
        .await
        .map_err(|_| "no answer to UNSUBSCRIBE".to_string())?
        .map_err(|_| "pub/sub connection lost".to_string())?;
        Ok(ack.count > 0)
    }

    /// Resolves when the node connection is gone.
    pub async fn lost(&self) {
        self.ended.cancelled().await
    }
}

async fn relay(
    mut read: OwnedReadHalf,
    mut buf: BytesMut,
    frames: mpsc::Sender<Frame>,
    acks: watch::Sender<Ack>,
    ended: CancellationToken,
    addr: Arc<str>,
) {
    let limits = Limits::default();
    let mut count = 0i64;
    'outer: loop {
        loop {
            match resp::parse_reply(&mut buf, &limits) {
                Ok(Some(frame)) => {
                    if let Some(seq) = barrier(&frame) {
                        acks.send_replace(Ack { seq, count });
                        continue;
                    }
                    if let Some(c) = subscription_count(&frame) {
                        count = c;
                    }
                    if frames.send(frame).await.is_err() {
                        break 'outer;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%addr, "bad pub/sub frame from node: {e}");
                    break 'outer;
                }
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    ended.cancel();
}

/// The sequence number of one of our marked PONGs (`[pong, marker]` or, once unsubscribed, `marker`).
fn barrier(frame: &Frame) -> Option<u64> {
    let marker = match frame {
        Frame::Bulk(m) => m,
        Frame::Array(items) if items.len() == 2 => match (&items[0], &items[1]) {
            (Frame::Bulk(kind), Frame::Bulk(m)) if kind.eq_ignore_ascii_case(b"pong") => m,
            _ => return None,
        },
        _ => return None,
    };
    let rest = marker.strip_prefix(BARRIER_PREFIX)?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// The count in a (un)subscribe confirmation: `[kind, channel, count]`.
fn subscription_count(frame: &Frame) -> Option<i64> {
    let Frame::Array(items) = frame else {
        return None;
    };
    let [Frame::Bulk(kind), _, Frame::Integer(count)] = items.as_slice() else {
        return None;
    };
    let kind = kind.to_ascii_lowercase();
    let confirmation = matches!(
        kind.as_slice(),
        b"subscribe"
            | b"unsubscribe"
            | b"psubscribe"
            | b"punsubscribe"
            | b"ssubscribe"
            | b"sunsubscribe"
    );
    confirmation.then_some(*count)
}

/// UNSUBSCRIBE family outside pub/sub mode: Redis answers one confirmation with count 0.
pub fn unsubscribed_reply(cmd: &Command) -> Frame {
    let kind = Bytes::from(cmd.name.to_ascii_lowercase());
    let channel = cmd
        .args
        .get(1)
        .cloned()
        .map(Frame::Bulk)
        .unwrap_or(Frame::Null);
    Frame::Array(vec![Frame::Bulk(kind), channel, Frame::Integer(0)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_barriers_and_confirmations() {
        let marker = Bytes::from(format!("{}42", String::from_utf8_lossy(BARRIER_PREFIX)));
        assert_eq!(barrier(&Frame::Bulk(marker.clone())), Some(42));
        let pong = Frame::Array(vec![wire::bulk("pong"), Frame::Bulk(marker)]);
        assert_eq!(barrier(&pong), Some(42));
        assert_eq!(barrier(&wire::bulk("hello")), None);
        let confirm = Frame::Array(vec![
            wire::bulk("unsubscribe"),
            wire::bulk("ch"),
            Frame::Integer(2),
        ]);
        assert_eq!(subscription_count(&confirm), Some(2));
        let message = Frame::Array(vec![
            wire::bulk("message"),
            wire::bulk("ch"),
            wire::bulk("x"),
        ]);
        assert_eq!(subscription_count(&message), None);
    }
}
