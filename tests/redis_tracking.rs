//! Client-side caching through the proxy (`CLIENT TRACKING`, RESP3): invalidations reach exactly the
//! clients that read a key (or whose BCAST prefixes match), OPTIN counts only reads after `CLIENT
//! CACHING YES`, a node's FLUSHALL flushes every cache, and redis-py 8's `cache_config` and node-redis's
//! `clientSideCache` stay coherent when another client writes.

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

    // RESP2 has no pushes, and REDIRECT is not offered: both refused with a reason.
    let mut resp2 = RespClient::connect(env.port())?;
    for refused in [
        &["CLIENT", "TRACKING", "ON"][..],
        &["CLIENT", "TRACKING", "ON", "REDIRECT", "1"],
    ] {
        match resp2.command(refused)? {
            Frame::Error(e) => {
                assert!(e.starts_with(b"ERR Puerta") && e.windows(5).any(|w| w == b"RESP3"))
            }
            other => panic!("{refused:?}: {other:?}"),
        }
    }
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
