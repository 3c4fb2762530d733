//! The pipelined connection against small fake nodes: reply matching, hang-ups, silence, garbage.

use super::*;
use crate::redis::resp::wire;
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
        reply_timeout: None,
        protocol: crate::redis::resp::Protocol::Resp2,
        tls: None,
    }
}

/// A node that accepts and reads everything but never answers.
async fn silent_node() -> Arc<str> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: Arc<str> = listener.local_addr().unwrap().to_string().into();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = vec![0u8; 64 * 1024];
                while sock.read(&mut sink).await.unwrap_or(0) > 0 {}
            });
        }
    });
    addr
}

/// A node that, once it has read anything, writes `chunks` one by one with a pause between them,
/// so that each arrives in a read of its own.
async fn chunked_node(chunks: Vec<&'static [u8]>) -> Arc<str> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: Arc<str> = listener.local_addr().unwrap().to_string().into();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = sock.read(&mut buf).await;
        for chunk in chunks {
            sock.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    addr
}

#[tokio::test]
async fn a_silent_node_times_out_every_waiting_request_and_closes() {
    let addr = silent_node().await;
    let opts = ConnectOptions {
        reply_timeout: Some(Duration::from_millis(200)),
        ..opts()
    };
    let conn = BackendConn::connect(addr.clone(), &opts).await.unwrap();
    let first = conn.send(wire::command_bytes(&["GET", "a"]), 1);
    let second = conn.send(wire::command_bytes(&["GET", "b"]), 1);
    for rx in [first, second] {
        let err = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("bounded")
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, BackendError::Timeout { ms: 200, .. }),
            "{err}"
        );
        assert!(!err.never_sent());
        assert_eq!(err.addr(), &addr);
    }
    assert!(conn.is_closed());
}

#[tokio::test]
async fn without_a_timeout_a_silent_node_keeps_the_request_waiting() {
    let addr = silent_node().await;
    let conn = BackendConn::connect(addr, &opts()).await.unwrap();
    let rx = conn.send(wire::command_bytes(&["BLPOP", "q", "0"]), 1);
    assert!(tokio::time::timeout(Duration::from_millis(500), rx)
        .await
        .is_err());
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn garbage_fails_the_request_instead_of_hanging() {
    let addr = chunked_node(vec![b"!!oops\r\n"]).await;
    let conn = BackendConn::connect(addr, &opts()).await.unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        conn.call(wire::command_bytes(&["GET", "a"]), 1),
    )
    .await
    .expect("bounded")
    .unwrap_err();
    assert!(err.to_string().contains("bad reply"), "{err}");
    assert!(conn.is_closed());
}

#[tokio::test]
async fn replies_are_matched_in_order_and_grouped() {
    let addr = counting_node(4).await;
    let conn = BackendConn::connect(addr, &opts()).await.unwrap();
    let one = conn.send(wire::command_bytes(&["A"]), 1);
    let mut two = BytesMut::new();
    crate::redis::resp::encode_command(&["B"], &mut two);
    crate::redis::resp::encode_command(&["C"], &mut two);
    let two = conn.send(two.freeze(), 2);
    let three = conn.send(wire::command_bytes(&["D"]), 1);
    assert_eq!(one.await.unwrap().unwrap().frame(), Frame::Integer(1));
    assert_eq!(
        two.await.unwrap().unwrap().frame(),
        Frame::Array(vec![Frame::Integer(2), Frame::Integer(3)])
    );
    // Passed through: the node's own bytes, not a re-encoding.
    let three = three.await.unwrap().unwrap().into_last().unwrap();
    assert_eq!(&three.bytes()[..], b":4\r\n");
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

/// A node that answers each command with `+OK` after `delay`, and reports when the proxy hangs up.
async fn slow_node(delay: Duration) -> (Arc<str>, oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: Arc<str> = listener.local_addr().unwrap().to_string().into();
    let (hung_up, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        loop {
            while let Ok(Some(_)) = resp::parse_command(&mut buf, &Limits::default()) {
                tokio::time::sleep(delay).await;
                if sock.write_all(b"+OK\r\n").await.is_err() {
                    return;
                }
            }
            if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                let _ = hung_up.send(());
                return;
            }
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn dropping_every_handle_keeps_the_connection_until_its_replies_are_in() {
    let (addr, hung_up) = slow_node(Duration::from_millis(300)).await;
    let opts = ConnectOptions {
        reply_timeout: Some(Duration::from_secs(10)),
        ..opts()
    };
    let conn = BackendConn::connect(addr, &opts).await.unwrap();
    let first = conn.send(wire::command_bytes(&["SET", "a", "1"]), 1);
    let second = conn.send(wire::command_bytes(&["SET", "b", "1"]), 1);
    tokio::task::yield_now().await;
    drop(conn);
    for rx in [first, second] {
        let reply = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("bounded")
            .unwrap()
            .expect("the reply, not a lost connection");
        assert_eq!(reply.frame(), Frame::Simple("OK".into()));
    }
    // Then the connection is closed.
    tokio::time::timeout(Duration::from_secs(30), hung_up)
        .await
        .expect("closed once the replies were in")
        .unwrap();
}

#[tokio::test]
async fn dropping_a_blocking_connection_closes_it_at_once() {
    let (addr, hung_up) = slow_node(Duration::from_secs(3600)).await;
    let conn = BackendConn::connect(addr, &opts()).await.unwrap();
    let reply = conn.send(wire::command_bytes(&["BLPOP", "l", "0"]), 1);
    tokio::task::yield_now().await;
    drop(conn);
    let err = tokio::time::timeout(Duration::from_secs(30), reply)
        .await
        .expect("bounded")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, BackendError::Lost { .. }), "{err}");
    drop(hung_up);
}

#[tokio::test]
async fn replies_of_one_request_are_gathered_across_reads_and_pushes_and_charged_once() {
    // Three replies for the first request, cut mid-line and mid-bulk, with a push frame between
    // two of them (RESP3 out-of-band data, which a pooled connection drops); then one reply for
    // the second request.
    let addr = chunked_node(vec![
        b"+O",
        b"K\r\n$5\r\nhel",
        b"lo\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n",
        b":7",
        b"\r\n:8\r\n",
    ])
    .await;
    let conn = BackendConn::connect(addr, &opts()).await.unwrap();
    let budget = OutputBudget::new(None, 1, None, Default::default());
    let mut three = BytesMut::new();
    for name in ["A", "B", "C"] {
        crate::redis::resp::encode_command(&[name], &mut three);
    }
    let first = conn.send_for(three.freeze(), 3, Some(&budget));
    let second = conn.send_for(wire::command_bytes(&["D"]), 1, Some(&budget));
    let first = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("bounded")
        .unwrap()
        .unwrap();
    let NodeReply::Many(replies) = first else {
        panic!("three replies expected");
    };
    let texts: Vec<&[u8]> = replies.iter().map(|r| &r.bytes()[..]).collect();
    assert_eq!(texts, [&b"+OK\r\n"[..], b"$5\r\nhello\r\n", b":7\r\n"]);
    let second = second.await.unwrap().unwrap().into_last().unwrap();
    assert_eq!(&second.bytes()[..], b":8\r\n");
    assert_eq!(
        budget.held(),
        5 + 11 + 4 + 4,
        "the node's bytes, the push not among them"
    );
    drop((replies, second));
    assert_eq!(budget.held(), 0);
}
