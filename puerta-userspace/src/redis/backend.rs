//! One pipelined connection to a cluster node. Requests from any number of clients are written in the
//! order they arrive and matched to replies through a FIFO of reply slots, because Redis answers each
//! connection strictly in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::resp::{self, Frame, Limits};
use super::wire;

/// Why a request to a node got no reply. `NotSent` is always safe to retry; `Lost` only for reads.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: Arc<str>, reason: String },
    #[error("timed out connecting to {addr} after {ms} ms")]
    ConnectTimeout { addr: Arc<str>, ms: u128 },
    #[error("handshake with {addr} failed: {reason}")]
    Handshake { addr: Arc<str>, reason: String },
    #[error("connection to {addr} closed before the command was sent")]
    NotSent { addr: Arc<str> },
    #[error(
        "connection to {addr} lost before the reply ({reason}); the command may have been applied"
    )]
    Lost { addr: Arc<str>, reason: String },
}

impl BackendError {
    /// True when the node certainly did not execute the command.
    pub fn never_sent(&self) -> bool {
        !matches!(self, BackendError::Lost { .. })
    }
}

pub type ReplyResult = Result<Frame, BackendError>;

/// How to open and authenticate a backend connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub timeout: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Send READONLY so that a replica serves reads for its slots.
    pub readonly: bool,
}

struct Request {
    payload: Bytes,
    replies: usize,
    tx: oneshot::Sender<ReplyResult>,
}

/// A reply slot: `want` replies are collected; one reply is delivered as is, several as an Array.
struct Waiting {
    want: usize,
    got: Vec<Frame>,
    tx: oneshot::Sender<ReplyResult>,
    /// When the request was queued for writing, for the per-node latency histogram.
    sent: Instant,
}

#[derive(Default)]
struct PendingQueue {
    closed: bool,
    queue: VecDeque<Waiting>,
}

/// Handle to the connection task pair. Dropping every handle closes the connection.
pub struct BackendConn {
    addr: Arc<str>,
    tx: mpsc::UnboundedSender<Request>,
    closed: Arc<AtomicBool>,
}

impl BackendConn {
    pub async fn connect(
        addr: Arc<str>,
        opts: &ConnectOptions,
    ) -> Result<BackendConn, BackendError> {
        let (stream, leftover) = open(&addr, opts).await?;
        Ok(Self::start(addr, stream, leftover))
    }

    fn start(addr: Arc<str>, stream: TcpStream, leftover: BytesMut) -> BackendConn {
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let closed = Arc::new(AtomicBool::new(false));
        let pending = Arc::new(Mutex::new(PendingQueue::default()));
        let stop = CancellationToken::new();
        tokio::spawn(write_loop(
            addr.clone(),
            write,
            rx,
            pending.clone(),
            closed.clone(),
            stop.clone(),
        ));
        tokio::spawn(read_loop(
            addr.clone(),
            read,
            leftover,
            pending,
            closed.clone(),
            stop,
        ));
        BackendConn { addr, tx, closed }
    }

    pub fn addr(&self) -> &Arc<str> {
        &self.addr
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues `payload` (holding `replies` commands) and returns where the reply will arrive. Requests
    /// sent through one handle reach the node in the order of the calls.
    pub fn send(&self, payload: Bytes, replies: usize) -> oneshot::Receiver<ReplyResult> {
        let (tx, rx) = oneshot::channel();
        let request = Request {
            payload,
            replies: replies.max(1),
            tx,
        };
        if let Err(mpsc::error::SendError(request)) = self.tx.send(request) {
            let _ = request.tx.send(Err(BackendError::NotSent {
                addr: self.addr.clone(),
            }));
        }
        rx
    }

    /// Sends and waits.
    pub async fn call(&self, payload: Bytes, replies: usize) -> ReplyResult {
        match self.send(payload, replies).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::Lost {
                addr: self.addr.clone(),
                reason: "connection task ended".into(),
            }),
        }
    }
}

/// Connects within the timeout and authenticates. Returns bytes read past the handshake replies.
pub async fn open(
    addr: &Arc<str>,
    opts: &ConnectOptions,
) -> Result<(TcpStream, BytesMut), BackendError> {
    match tokio::time::timeout(opts.timeout, open_unbounded(addr, opts)).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::ConnectTimeout {
            addr: addr.clone(),
            ms: opts.timeout.as_millis(),
        }),
    }
}

async fn open_unbounded(
    addr: &Arc<str>,
    opts: &ConnectOptions,
) -> Result<(TcpStream, BytesMut), BackendError> {
    let mut stream = TcpStream::connect(&**addr)
        .await
        .map_err(|e| BackendError::Connect {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let _ = stream.set_nodelay(true);
    set_keepalive(&stream);
    let mut hello = BytesMut::new();
    let mut expected = 0;
    if let Some(password) = &opts.password {
        match &opts.username {
            Some(user) => {
                wire::encode_command(&mut hello, &[b"AUTH", user.as_bytes(), password.as_bytes()])
            }
            None => wire::encode_command(&mut hello, &[b"AUTH", password.as_bytes()]),
        }
        expected += 1;
    }
    if opts.readonly {
        wire::encode_command(&mut hello, &[b"READONLY"]);
        expected += 1;
    }
    let mut buf = BytesMut::new();
    if expected == 0 {
        return Ok((stream, buf));
    }
    let handshake = |reason: String| BackendError::Handshake {
        addr: addr.clone(),
        reason,
    };
    stream
        .write_all(&hello)
        .await
        .map_err(|e| handshake(e.to_string()))?;
    let limits = Limits::default();
    while expected > 0 {
        match resp::parse_reply(&mut buf, &limits).map_err(|e| handshake(e.to_string()))? {
            Some(Frame::Error(e)) => {
                return Err(handshake(String::from_utf8_lossy(&e).into_owned()))
            }
            Some(_) => expected -= 1,
            None => {
                let n = stream
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| handshake(e.to_string()))?;
                if n == 0 {
                    return Err(handshake("connection closed".into()));
                }
            }
        }
    }
    Ok((stream, buf))
}

/// A node that vanishes without closing (power loss, partition) is noticed by TCP keepalive, so the
/// commands waiting on it fail (and are retried elsewhere) instead of waiting forever.
fn set_keepalive(stream: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(5))
        .with_retries(4);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!("cannot enable TCP keepalive: {e}");
    }
}

async fn write_loop(
    addr: Arc<str>,
    mut write: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Request>,
    pending: Arc<Mutex<PendingQueue>>,
    closed: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while out.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            for r in batch {
                if p.closed {
                    let _ = r.tx.send(Err(BackendError::NotSent { addr: addr.clone() }));
                    continue;
                }
                out.extend_from_slice(&r.payload);
                p.queue.push_back(Waiting {
                    want: r.replies,
                    got: Vec::new(),
                    tx: r.tx,
                    sent: Instant::now(),
                });
            }
        }
        if out.is_empty() {
            break;
        }
        if let Err(e) = write.write_all(&out).await {
            tracing::debug!(%addr, "backend write failed: {e}");
            break;
        }
        out.clear();
    }
    closed.store(true, Ordering::Release);
    stop.cancel();
    rx.close();
    while let Ok(r) = rx.try_recv() {
        let _ = r.tx.send(Err(BackendError::NotSent { addr: addr.clone() }));
    }
}

async fn read_loop(
    addr: Arc<str>,
    mut read: OwnedReadHalf,
    mut buf: BytesMut,
    pending: Arc<Mutex<PendingQueue>>,
    closed: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let limits = Limits::default();
    let latency = super::metrics::node_latency(&addr);
    let reason = loop {
        match resp::parse_reply(&mut buf, &limits) {
            Ok(Some(frame)) => {
                if !deliver(&pending, frame, &latency) {
                    break "reply without a request (stream out of sync)".to_string();
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break format!("bad reply: {e}"),
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let n = tokio::select! {
            r = read.read_buf(&mut buf) => r,
            _ = stop.cancelled() => break "connection closed".to_string(),
        };
        match n {
            Ok(0) => break "closed by the node".to_string(),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    closed.store(true, Ordering::Release);
    stop.cancel();
    let waiting = {
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        p.closed = true;
        std::mem::take(&mut p.queue)
    };
    if !waiting.is_empty() {
        tracing::debug!(%addr, lost = waiting.len(), "backend connection ended: {reason}");
    }
    for w in waiting {
        let _ = w.tx.send(Err(BackendError::Lost {
            addr: addr.clone(),
            reason: reason.clone(),
        }));
    }
}

/// Hands `frame` to the oldest waiting request. False when nobody waits: the stream is out of sync.
fn deliver(pending: &Mutex<PendingQueue>, frame: Frame, latency: &metrics::Histogram) -> bool {
    let done = {
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(front) = p.queue.front_mut() else {
            return false;
        };
        front.got.push(frame);
        if front.got.len() < front.want {
            return true;
        }
        p.queue.pop_front()
    };
    if let Some(mut w) = done {
        super::metrics::record_latency(latency, w.sent.elapsed());
        let frame = if w.want == 1 {
            w.got.pop().unwrap_or(Frame::Null)
        } else {
            Frame::Array(w.got)
        };
        let _ = w.tx.send(Ok(frame));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A fake node that answers every command with an increasing integer, then hangs up after `n`.
    async fn counting_node(n: usize) -> Arc<str> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: Arc<str> = listener.local_addr().unwrap().to_string().into();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = BytesMut::new();
            let mut answered = 0;
            while answered < n {
                while let Ok(Some(_)) = resp::parse_command(&mut buf, &Limits::default()) {
                    answered += 1;
                    let reply = format!(":{answered}\r\n");
                    sock.write_all(reply.as_bytes()).await.unwrap();
                }
                if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        });
        addr
    }

    fn opts() -> ConnectOptions {
        ConnectOptions {
            timeout: Duration::from_secs(5),
            username: None,
            password: None,
            readonly: false,
        }
    }

    #[tokio::test]
    async fn replies_are_matched_in_order_and_grouped() {
        let addr = counting_node(4).await;
        let conn = BackendConn::connect(addr, &opts()).await.unwrap();
        let one = conn.send(wire::command_bytes(&["A"]), 1);
        let mut two = BytesMut::new();
        wire::encode_command(&mut two, &["B"]);
        wire::encode_command(&mut two, &["C"]);
        let two = conn.send(two.freeze(), 2);
        let three = conn.send(wire::command_bytes(&["D"]), 1);
        assert_eq!(one.await.unwrap().unwrap(), Frame::Integer(1));
        assert_eq!(
            two.await.unwrap().unwrap(),
            Frame::Array(vec![Frame::Integer(2), Frame::Integer(3)])
        );
        assert_eq!(three.await.unwrap().unwrap(), Frame::Integer(4));
        // The node hung up: the next request fails instead of hanging, and the handle says so.
        let err = conn.call(wire::command_bytes(&["E"]), 1).await.unwrap_err();
        assert!(matches!(
            err,
            BackendError::Lost { .. } | BackendError::NotSent { .. }
        ));
        assert!(conn.is_closed());
    }

    #[tokio::test]
    async fn refused_connect_is_a_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: Arc<str> = listener.local_addr().unwrap().to_string().into();
        drop(listener);
        let err = BackendConn::connect(addr.clone(), &opts())
            .await
            .err()
            .unwrap();
        assert!(err.never_sent());
        assert!(err
            .to_string()
            .starts_with(&format!("cannot connect to {addr}")));
    }
}
