//! Client-side caching through the proxy (`CLIENT TRACKING`, RESP3 or REDIRECT): invalidations reach
//! exactly the clients that read a key (or whose BCAST prefixes match), or the client they redirect
//! to, OPTIN counts only reads after `CLIENT CACHING YES`, a node's FLUSHALL flushes every cache, and
//! redis-py 8's `cache_config` and node-redis's `clientSideCache` stay coherent when another client
//! writes.

use puerta::redis::resp::Frame;
use puerta_tests::proxied_cluster::ProxiedCluster;
use puerta_tests::redis_cluster::ONE_KEY_PER_MASTER;
use puerta_tests::resp_client::RespClient;

/// The keys of an `invalidate` push (`None` for "flush everything"); panics on anything else.
fn invalidated(frame: Frame) -> Option<Vec<String>> {
    let Frame::Push(items) = frame else {
        panic!("expected an invalidation push, got {frame:?}");
    };
    assert_eq!(items[0], Frame::bulk("invalidate"));
    match &items[1] {
        Frame::Array(keys) => Some(
            keys.iter()
                .map(|k| String::from_utf8_lossy(k.as_bytes().expect("a key")).into_owned())
                .collect(),
        ),
        Frame::Null => None,
        other => panic!("invalidate with {other:?}"),
    }
}

/// A RESP3 client with tracking on (`options` after `CLIENT TRACKING ON`). The flushes the feed sends
/// as it connects are read, up to a PING's answer.
fn tracking(port: u16, options: &[&str]) -> anyhow::Result<RespClient> {
    let mut c = RespClient::connect(port)?;
    assert!(matches!(c.command(&["HELLO", "3"])?, Frame::Map(_)));
    let mut on = vec!["CLIENT", "TRACKING", "ON"];
    on.extend_from_slice(options);
    assert_eq!(c.command(&on)?, Frame::Simple("OK".into()));
    quiet(&mut c)?;
    Ok(c)
}

/// Reads up to a PING's answer; every push before it must be a flush.
fn quiet(c: &mut RespClient) -> anyhow::Result<()> {
    let mut frame = c.command(&["PING"])?;
    while matches!(frame, Frame::Push(_)) {
        assert_eq!(invalidated(frame), None, "only flushes before the PONG");
        frame = c.read_reply()?;
    }
    assert_eq!(frame, Frame::Simple("PONG".into()));
    Ok(())
}

#[test]
fn invalidations_reach_the_clients_that_read_the_key() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let mut writer = RespClient::connect(env.port())?;
    let mut reader = tracking(env.port(), &[])?;
    let mut bystander = tracking(env.port(), &[])?;
    for key in ONE_KEY_PER_MASTER {
        writer.command(&["SET", key, "1"])?;
        assert_eq!(reader.command(&["GET", key])?, Frame::bulk("1"));
        writer.command(&["SET", key, "2"])?;
        assert_eq!(
            invalidated(reader.read_reply()?),
            Some(vec![key.to_string()])
        );
        // Forgotten once invalidated: the next write is not announced until the key is read again.
        writer.command(&["SET", key, "3"])?;
    }
    // Neither the bystander (read nothing) nor the reader (after its invalidations) hears more.
    for key in ONE_KEY_PER_MASTER {
        writer.command(&["SET", key, "4"])?;
    }
    quiet(&mut reader)?;
    let pong = bystander.command(&["PING"])?;
    assert_eq!(
        pong,
        Frame::Simple("PONG".into()),
        "the bystander read no key"
    );
    // A node's FLUSHALL flushes every tracking client's cache.
    let mut node = RespClient::connect(env.cluster.masters()?[0])?;
    node.command(&["FLUSHALL"])?;
    assert_eq!(invalidated(reader.read_reply()?), None);
    assert_eq!(invalidated(bystander.read_reply()?), None);
    Ok(())
}

#[test]
fn bcast_prefixes_optin_and_the_tracking_subcommands() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let mut writer = RespClient::connect(env.port())?;
    let mut bcast = tracking(env.port(), &["BCAST", "PREFIX", "user:"])?;
    writer.command(&["SET", "order:1", "x"])?;
    writer.command(&["SET", "user:1", "x"])?;
    assert_eq!(
        invalidated(bcast.read_reply()?),
        Some(vec!["user:1".into()])
    );
    let Frame::Map(info) = bcast.command(&["CLIENT", "TRACKINGINFO"])? else {
        panic!("TRACKINGINFO answers a map");
    };
    assert_eq!(
        info,
        vec![
            (
                Frame::bulk("flags"),
                Frame::Array(vec![Frame::bulk("on"), Frame::bulk("bcast")])
            ),
            (Frame::bulk("redirect"), Frame::Integer(0)),
            (
                Frame::bulk("prefixes"),
                Frame::Array(vec![Frame::bulk("user:")])
            ),
        ]
    );
    assert_eq!(bcast.command(&["CLIENT", "GETREDIR"])?, Frame::Integer(0));
    assert_eq!(
        bcast.command(&["CLIENT", "TRACKING", "OFF"])?,
        Frame::Simple("OK".into())
    );
    assert_eq!(bcast.command(&["CLIENT", "GETREDIR"])?, Frame::Integer(-1));

    // OPTIN: only the read right after CLIENT CACHING YES is remembered.
    let mut optin = tracking(env.port(), &["OPTIN"])?;
    optin.command(&["GET", "a"])?;
    assert_eq!(
        optin.command(&["CLIENT", "CACHING", "YES"])?,
        Frame::Simple("OK".into())
    );
    optin.command(&["GET", "b"])?;
    writer.command(&["SET", "a", "x"])?;
    writer.command(&["SET", "b", "x"])?;
    assert_eq!(invalidated(optin.read_reply()?), Some(vec!["b".into()]));
    let text = match optin.command(&["CLIENT", "CACHING", "NO"])? {
        Frame::Error(e) => String::from_utf8_lossy(&e).into_owned(),
        other => panic!("{other:?}"),
    };
    assert!(text.contains("OPTOUT"), "{text}");

    // RESP2 has no pushes: tracking on the connection itself is accepted, as Redis accepts it, and
    // nothing is ever written to it; REDIRECT names a client that must exist, with Redis' error.
    let mut resp2 = RespClient::connect(env.port())?;
    assert_eq!(
        resp2.command(&["CLIENT", "TRACKING", "ON"])?,
        Frame::Simple("OK".into())
    );
    assert_eq!(resp2.command(&["GET", "resp2:k"])?, Frame::Null);
    writer.command(&["SET", "resp2:k", "x"])?;
    assert_eq!(resp2.command(&["PING"])?, Frame::Simple("PONG".into()));
    assert_eq!(resp2.command(&["CLIENT", "GETREDIR"])?, Frame::Integer(0));
    assert_eq!(
        resp2.command(&["CLIENT", "TRACKING", "OFF"])?,
        Frame::Simple("OK".into())
    );
    assert_eq!(
        resp2.command(&["CLIENT", "TRACKING", "ON", "REDIRECT", "999999"])?,
        Frame::Error("ERR The client ID you want redirect to does not exist".into())
    );
    // Every tracking client gone: the table is empty and the feed stops.
    drop((bcast, optin));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let Frame::Bulk(info) = writer.command(&["INFO", "clients"])? else {
            panic!("INFO answers text");
        };
        if String::from_utf8_lossy(&info).contains("tracking_clients:0\r\n") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tracking clients left behind"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// The keys of a RESP2 `__redis__:invalidate` message, skipping flushes (`None` keys).
fn invalidate_message(c: &mut RespClient) -> anyhow::Result<Vec<String>> {
    loop {
        let frame = c.read_reply()?;
        let Frame::Array(items) = &frame else {
            panic!("expected a pub/sub message, got {frame:?}");
        };
        assert_eq!(
            items[..2],
            [Frame::bulk("message"), Frame::bulk("__redis__:invalidate")]
        );
        if let Frame::Array(keys) = &items[2] {
            return Ok(keys
                .iter()
                .map(|k| String::from_utf8_lossy(k.as_bytes().expect("a key")).into_owned())
                .collect());
        }
        assert_eq!(items[2], Frame::Null, "a flush");
    }
}

/// `CLIENT TRACKING ON REDIRECT id`, as Redis' own tests use it: the reads of one connection, the
/// invalidations on another, a RESP2 one subscribed to `__redis__:invalidate` or a RESP3 one as
/// pushes. A redirecting client may itself speak RESP2.
#[test]
fn redirected_invalidations_reach_the_other_connection() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let mut writer = RespClient::connect(env.port())?;
    let mut inbox = RespClient::connect(env.port())?;
    let Frame::Integer(inbox_id) = inbox.command(&["CLIENT", "ID"])? else {
        panic!("CLIENT ID answers an integer");
    };
    let subscribed = inbox.command(&["SUBSCRIBE", "__redis__:invalidate"])?;
    assert_eq!(
        subscribed,
        Frame::Array(vec![
            Frame::bulk("subscribe"),
            Frame::bulk("__redis__:invalidate"),
            Frame::Integer(1)
        ])
    );
    let id = inbox_id.to_string();
    let mut reader = RespClient::connect(env.port())?;
    assert_eq!(
        reader.command(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id])?,
        Frame::Simple("OK".into())
    );
    assert_eq!(
        reader.command(&["CLIENT", "GETREDIR"])?,
        Frame::Integer(inbox_id)
    );
    for key in ONE_KEY_PER_MASTER {
        writer.command(&["SET", key, "1"])?;
        assert_eq!(reader.command(&["GET", key])?, Frame::bulk("1"));
        writer.command(&["SET", key, "2"])?;
        assert_eq!(invalidate_message(&mut inbox)?, vec![key.to_string()]);
    }

    // A RESP3 target gets pushes, for a BCAST tracker.
    let mut pushes = RespClient::connect(env.port())?;
    assert!(matches!(pushes.command(&["HELLO", "3"])?, Frame::Map(_)));
    let Frame::Integer(pushes_id) = pushes.command(&["CLIENT", "ID"])? else {
        panic!("CLIENT ID answers an integer");
    };
    let mut bcast = RespClient::connect(env.port())?;
    let on = [
        "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "r:", "REDIRECT",
    ];
    let mut on = on.to_vec();
    let pushes_id = pushes_id.to_string();
    on.push(&pushes_id);
    assert_eq!(bcast.command(&on)?, Frame::Simple("OK".into()));
    writer.command(&["SET", "r:1", "x"])?;
    let mut frame = pushes.read_reply()?;
    while invalidated(frame.clone()).is_none() {
        frame = pushes.read_reply()?;
    }
    assert_eq!(invalidated(frame), Some(vec!["r:1".into()]));

    // The target gone: the tracker goes on (its invalidations are lost, as in Redis).
    drop(inbox);
    writer.command(&["SET", ONE_KEY_PER_MASTER[0], "3"])?;
    reader.command(&["GET", ONE_KEY_PER_MASTER[0]])?;
    writer.command(&["SET", ONE_KEY_PER_MASTER[0], "4"])?;
    assert_eq!(
        reader.command(&["GET", ONE_KEY_PER_MASTER[0]])?,
        Frame::bulk("4")
    );
    assert_eq!(
        reader.command(&["CLIENT", "GETREDIR"])?,
        Frame::Integer(inbox_id)
    );
    Ok(())
}

#[test]
fn redis_py_cache_config_stays_coherent_through_the_proxy() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    env.python_ok("redis_tracking.py", &[])?;
    Ok(())
}

#[test]
fn node_redis_client_side_cache_stays_coherent_through_the_proxy() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    env.node_ok("node_redis_cache.mjs", &[])?;
    Ok(())
}
