use super::*;
use futures_util::FutureExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

/// Replies that complete in reverse order still leave in request order, a ready reply behind a
/// slow one is not written before it, and each is encoded in its own slot's protocol.
#[tokio::test]
async fn replies_leave_in_request_order() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (tx, rx, completed) = fifo::fifo(16);
    let (feeds, _pushes) = feeds();
    let writer = spawn_writer(server, rx, feeds);
    let mut senders = Vec::new();
    for _ in 0..5 {
        let (s, r) = oneshot::channel::<Frame>();
        senders.push(s);
        let fut = async move { r.await.unwrap_or(Frame::Null) };
        tx.send(slot(
            Protocol::Resp2,
            Reply::Later(Box::pin(fut.map(Answer::Built))),
        ))
        .await
        .unwrap();
    }
    tx.send(slot(Protocol::Resp3, Reply::Ready(Frame::Null)))
        .await
        .unwrap();
    for (i, s) in senders.into_iter().enumerate().rev() {
        s.send(Frame::Integer(i as i64)).unwrap();
        tokio::task::yield_now().await;
    }
    tx.send(slot(Protocol::Resp2, Reply::Close(wire::ok())))
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut client = client;
    client.read_to_end(&mut out).await.unwrap();
    writer.await.unwrap();
    assert_eq!(completed.completed(), 7);
    assert_eq!(out, b":0\r\n:1\r\n:2\r\n:3\r\n:4\r\n_\r\n+OK\r\n");
}

/// A push that arrives while a reply is awaited never splits that reply, is not held back behind
/// later replies, and replies keep their order.
#[tokio::test]
async fn pushes_go_between_replies() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (tx, rx, _completed) = fifo::fifo(16);
    let (feeds, pushes) = feeds();
    let writer = spawn_writer(server, rx, feeds);
    let (slow, slow_rx) = oneshot::channel::<Frame>();
    let fut = async move { slow_rx.await.unwrap_or(Frame::Null) };
    tx.send(slot(
        Protocol::Resp3,
        Reply::Later(Box::pin(fut.map(Answer::Built))),
    ))
    .await
    .unwrap();
    tokio::task::yield_now().await;
    let message = Frame::Push(vec![
        Frame::bulk("message"),
        Frame::bulk("c"),
        Frame::bulk("m"),
    ]);
    let mut wire = BytesMut::new();
    message.encode_in(Protocol::Resp3, &mut wire);
    pushes.send(Charged::free(wire.freeze())).await.unwrap();
    tokio::task::yield_now().await;
    slow.send(Frame::Array(vec![Frame::Integer(1), Frame::Integer(2)]))
        .unwrap();
    tokio::task::yield_now().await;
    tx.send(slot(Protocol::Resp3, Reply::Close(wire::ok())))
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut client = client;
    client.read_to_end(&mut out).await.unwrap();
    writer.await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let reply = text
        .find("*2\r\n:1\r\n:2\r\n")
        .expect("the slow reply, whole");
    let push = text.find(">3\r\n$7\r\nmessage").expect("the push");
    let ok = text.find("+OK").expect("the last reply");
    assert!(push < ok && reply < ok, "{text:?}");
}

fn output<W: AsyncWrite + Unpin>(write: W) -> Output<W> {
    Output::new(write, OutputBudget::new(None, 1, None, Default::default()))
}

fn slot(protocol: Protocol, reply: Reply) -> Slot {
    Slot {
        protocol,
        reply,
        timed: None,
    }
}

/// The writer of a session over `server`, with no MONITOR or invalidation feed.
fn spawn_writer(
    server: tokio::io::DuplexStream,
    rx: Replies<Slot>,
    feeds: Feeds,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(write_replies(output(server), rx, feeds, shared()))
}

fn shared() -> Shared {
    let cluster = Cluster::new(crate::redis::cluster::refresh::tests::config(1));
    let client = crate::redis::client::registry::register(&cluster, None, None)
        .entry
        .clone();
    Shared {
        cluster,
        client,
        board: Default::default(),
        budget: OutputBudget::new(None, 1, None, Default::default()),
    }
}

/// A writer's feeds, and the sender of its pushes.
fn feeds() -> (Feeds, FeedSender<Charged>) {
    let bell = Arc::new(Bell::default());
    let (pushes, push_rx) = feed::channel(16, &bell);
    let feeds = Feeds {
        monitor: feed::channel(1, &bell).1,
        invalidations: feed::channel(1, &bell).1,
        bell,
        pushes: push_rx,
        held: VecDeque::new(),
    };
    (feeds, pushes)
}

/// Relayed pub/sub messages for a client that does not read stay queued, where they count against
/// its output limit: no more than [`FLUSH_AT`] of them (and what the socket takes) leave the queue
/// before the writer blocks. It used to copy everything queued into its buffer first, uncharged.
#[tokio::test]
async fn relayed_messages_for_a_client_that_does_not_read_stay_charged() {
    const SOCKET: usize = 4096;
    const MESSAGE: usize = 1024;
    const QUEUED: usize = 1000;
    let (_client, server) = tokio::io::duplex(SOCKET);
    let (tx, rx, _completed) = fifo::fifo(16);
    let (feeds, _pushes) = feeds();
    let writer = spawn_writer(server, rx, feeds);
    let budget = OutputBudget::new(None, 2, None, Default::default());
    let (messages, relayed) = mpsc::channel(QUEUED);
    let message = bytes::Bytes::from(vec![b'x'; MESSAGE]);
    for _ in 0..QUEUED {
        messages.try_send(budget.charge(message.clone())).unwrap();
    }
    tx.send(slot(Protocol::Resp2, Reply::Relay(relayed)))
        .await
        .unwrap();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let taken = QUEUED * MESSAGE - budget.held();
    assert!(
        taken > 0 && taken <= FLUSH_AT + SOCKET + MESSAGE,
        "{taken} bytes left the queue for a client that reads nothing"
    );
    writer.abort();
}

/// A reply that comes in the scheduler turn after the writer found it missing leaves in the same
/// write as the replies buffered before it, not in a write of its own (see `Output::soon`); one
/// that takes longer does not hold those back.
#[tokio::test]
async fn a_reply_that_comes_next_turn_shares_the_write_of_those_before_it() {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = CountedWrites {
        inner: server,
        writes: writes.clone(),
    };
    let (tx, rx, _completed) = fifo::fifo(16);
    let (feeds, _pushes) = feeds();
    let writer = tokio::spawn(write_replies(output(counted), rx, feeds, shared()));
    let later = |r: oneshot::Receiver<Frame>| {
        let fut = async move { r.await.unwrap_or(Frame::Null) };
        Reply::Later(Box::pin(fut.map(Answer::Built)))
    };
    let (next_turn, next_turn_rx) = oneshot::channel::<Frame>();
    let (slow, slow_rx) = oneshot::channel::<Frame>();
    for reply in [
        Reply::Ready(Frame::Integer(1)),
        later(next_turn_rx),
        later(slow_rx),
    ] {
        tx.send(slot(Protocol::Resp2, reply)).await.unwrap();
    }
    // Runs after the writer's first look, before its second.
    tokio::spawn(async move { next_turn.send(Frame::Integer(2)) });
    let mut got = [0u8; 8];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b":1\r\n:2\r\n");
    assert_eq!(writes.load(Ordering::Relaxed), 1, "one write for both");
    slow.send(Frame::Integer(3)).unwrap();
    tx.send(slot(Protocol::Resp2, Reply::Close(wire::ok())))
        .await
        .unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    writer.await.unwrap();
    assert_eq!(rest, b":3\r\n+OK\r\n");
}

/// Counts the writes that reach the socket.
struct CountedWrites<W> {
    inner: W,
    writes: Arc<AtomicUsize>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CountedWrites<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
