use super::*;
use std::sync::Arc;

fn offer_for(listener: &TcpListener, path: &Path) -> Offer {
    Offer {
        path: path.to_path_buf(),
        listener: listener.try_clone().unwrap().into(),
        listen: listener.local_addr().unwrap(),
        admin: None,
        tls: None,
    }
}

#[test]
fn the_header_says_what_it_carries() {
    let header = Header {
        pid: 42,
        listen: "127.0.0.1:6379".parse().unwrap(),
        admin: Some("127.0.0.1:9090".parse().unwrap()),
        tls: Some("127.0.0.1:6380".parse().unwrap()),
        framed: true,
    };
    assert_eq!(Header::parse(header.line().trim_end()), Some(header));
    let before_tls = Header::parse("PUERTA-HANDOVER 1 pid=1 listen=1.2.3.4:5 admin=-").unwrap();
    assert_eq!(
        before_tls.tls, None,
        "an instance without a TLS listener says nothing"
    );
    let no_admin = Header {
        admin: None,
        ..Header::parse("PUERTA-HANDOVER 1 pid=1 listen=[::1]:7 admin=-").unwrap()
    };
    assert_eq!(no_admin.listen, "[::1]:7".parse().unwrap());
    assert!(
        !before_tls.framed,
        "an instance from before framed state sends lines only"
    );
    let later = Header::parse("PUERTA-HANDOVER 1 pid=1 listen=1.2.3.4:5 admin=- future=x").unwrap();
    assert_eq!(later.pid, 1, "fields a later instance adds are ignored");
    assert_eq!(
        Header::parse("PUERTA-HANDOVER 2 pid=1 listen=1.2.3.4:5 admin=-"),
        None
    );
    assert_eq!(Header::parse("PUERTA-HANDOVER 1 pid=1 admin=-"), None);
}

#[tokio::test]
async fn the_next_instance_gets_the_same_listening_socket_and_the_old_one_stops_after_ready() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handover.sock");
    let old = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = old.local_addr().unwrap();
    // One token for both, as the front door passes them: READY stops the accepting, and that
    // must not cut the exchange short before the state went over.
    let accepting = CancellationToken::new();
    let (handed_over, stop) = (accepting.clone(), accepting);
    // Big enough that cutting the exchange short at READY would truncate it.
    let lines =
        |n: u32| (0..n).map(|i| format!("10.{}.{}.{} a:1", i >> 16, (i >> 8) & 255, i & 255));
    let snapshot: Snapshot = std::sync::Arc::new(move |_| lines(100_000).map(Item::line).collect());
    let offer = offer_for(&old, &path).serve(snapshot, handed_over.clone(), stop.clone());
    let offering = tokio::spawn(offer);
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A client that connects before the new instance serves waits in the shared queue.
    let early = std::net::TcpStream::connect(addr).unwrap();
    let asking = path.clone();
    let taken = tokio::task::spawn_blocking(move || take_over(&asking, addr, None, None))
        .await
        .unwrap()
        .unwrap()
        .expect("the running instance offers");
    assert_eq!(taken.listener.local_addr().unwrap(), addr);
    let (_, peer) = taken.listener.accept().unwrap();
    assert_eq!(
        peer,
        early.local_addr().unwrap(),
        "the very connection queued before"
    );
    assert!(
        !handed_over.is_cancelled(),
        "the old one accepts until READY"
    );
    let (merged, carried) = tokio::sync::oneshot::channel();
    taken.ready.serving(
        Box::new(move |items: Vec<Item>| {
            let _ = merged.send(items.into_iter().map(|i| i.line).collect::<Vec<_>>());
        }),
        false,
    );
    tokio::time::timeout(Duration::from_secs(10), handed_over.cancelled())
        .await
        .expect("READY makes the old instance stop accepting");
    let carried = tokio::time::timeout(Duration::from_secs(10), carried)
        .await
        .expect("the state follows READY")
        .unwrap();
    assert_eq!(carried, lines(100_000).collect::<Vec<_>>());
    offering.await.unwrap();
}

#[tokio::test]
async fn nobody_offering_and_a_failed_take_over_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handover.sock");
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let none = take_over(&path, addr, None, None).unwrap();
    assert!(none.is_none(), "no socket: bind afresh");

    let old = TcpListener::bind("127.0.0.1:0").unwrap();
    let (handed_over, stop) = (CancellationToken::new(), CancellationToken::new());
    let offer =
        offer_for(&old, &path).serve(Arc::new(|_| Vec::new()), handed_over.clone(), stop.clone());
    let offering = tokio::spawn(offer);
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another listen address: refused with a clear error, and the old instance goes on.
    let asking = path.clone();
    let refused = tokio::task::spawn_blocking(move || take_over(&asking, addr, None, None))
        .await
        .unwrap();
    let Err(e) = refused else {
        panic!("a take-over for another address must fail")
    };
    assert!(e.to_string().contains("listens on"), "{e}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!handed_over.is_cancelled());
    // A new instance that hangs up before READY (it failed to start) changes nothing either.
    let right = old.local_addr().unwrap();
    let asking = path.clone();
    let taken = tokio::task::spawn_blocking(move || take_over(&asking, right, None, None))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    drop(taken);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!handed_over.is_cancelled());
    stop.cancel();
    offering.await.unwrap();
}

#[tokio::test]
async fn the_tls_listener_goes_along_unless_its_address_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handover.sock");
    let (main, tls) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let (addr, tls_addr) = (main.local_addr().unwrap(), tls.local_addr().unwrap());
    let mut offer = offer_for(&main, &path);
    offer.tls = Some((tls.try_clone().unwrap().into(), tls_addr));
    let stop = CancellationToken::new();
    let offering = tokio::spawn(offer.serve(
        Arc::new(|_| Vec::new()),
        CancellationToken::new(),
        stop.clone(),
    ));
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asking = path.clone();
    let moved: SocketAddr = "127.0.0.1:2".parse().unwrap();
    let elsewhere =
        tokio::task::spawn_blocking(move || take_over(&asking, addr, None, Some(moved)))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    assert!(
        elsewhere.tls.is_none(),
        "another TLS address is bound afresh"
    );
    assert!(elsewhere.admin.is_none());
    drop(elsewhere);
    let asking = path.clone();
    let same = tokio::task::spawn_blocking(move || take_over(&asking, addr, None, Some(tls_addr)))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(same.listener.local_addr().unwrap(), addr);
    assert_eq!(
        same.tls.expect("the TLS listener").local_addr().unwrap(),
        tls_addr
    );
    // Hanging up ends the exchange (the old instance would otherwise wait for READY).
    drop(same.ready);
    stop.cancel();
    offering.await.unwrap();
}

/// A stop ends the offer at once, even in the middle of an exchange with a new instance that
/// never says READY (the old one would otherwise wait READY_TIMEOUT before it could exit).
#[tokio::test]
async fn a_stop_does_not_wait_for_an_exchange_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handover.sock");
    let old = TcpListener::bind("127.0.0.1:0").unwrap();
    let stop = CancellationToken::new();
    let offer = offer_for(&old, &path).serve(
        Arc::new(|_| Vec::new()),
        CancellationToken::new(),
        stop.clone(),
    );
    let offering = tokio::spawn(offer);
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asking = path.clone();
    let addr = old.local_addr().unwrap();
    // Took the sockets, and holds on to them without READY.
    let taken = tokio::task::spawn_blocking(move || take_over(&asking, addr, None, None))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!offering.is_finished(), "waiting for READY");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), offering)
        .await
        .expect("the stop ends the exchange well before EXCHANGE_TIMEOUT and READY_TIMEOUT")
        .unwrap();
    drop(taken);
}

/// A new instance that takes descriptors gets them (the same open file); one that does not gets
/// the lines alone, and the old instance's snapshot is asked for no descriptors.
#[tokio::test]
async fn descriptors_go_over_only_to_an_instance_that_takes_them() {
    for takes in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handover.sock");
        let old = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = old.local_addr().unwrap();
        let file = tempfile::tempfile().unwrap();
        let inode = |fd: &OwnedFd| nix::sys::stat::fstat(fd.as_raw_fd()).unwrap().st_ino;
        let expected = inode(&file.try_clone().unwrap().into());
        let snapshot: Snapshot = Arc::new(move |descriptors| {
            let mut items = vec![Item::line("10.0.0.1 a:1".into())];
            if descriptors {
                items.push(Item {
                    line: "pair".into(),
                    fds: vec![file.try_clone().unwrap().into()],
                });
            }
            items
        });
        let accepting = CancellationToken::new();
        let offer = offer_for(&old, &path).serve(snapshot, accepting.clone(), accepting.clone());
        let offering = tokio::spawn(offer);
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let taken = tokio::task::spawn_blocking(move || take_over(&path, addr, None, None))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let (merged, carried) = tokio::sync::oneshot::channel();
        taken.ready.serving(
            Box::new(move |items: Vec<Item>| {
                let _ = merged.send(items);
            }),
            takes,
        );
        let items = tokio::time::timeout(Duration::from_secs(10), carried)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(items[0].line, "10.0.0.1 a:1");
        if takes {
            assert_eq!(items.len(), 2);
            assert_eq!(items[1].line, "pair");
            assert_eq!(inode(&items[1].fds[0]), expected);
        } else {
            assert_eq!(items.len(), 1, "lines only");
        }
        offering.await.unwrap();
    }
}
