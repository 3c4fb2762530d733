//! RESP3 on the wire through Puerta, byte for byte: connect-time commands get exactly what a
//! standalone redis-server 7 sends, replies Puerta builds itself use RESP3 types, and a subscribed
//! RESP3 connection gets push frames between the replies of the commands it keeps sending.

use bytes::Bytes;
use puerta::redis::resp::Frame;
use puerta_tests::redis_cluster::ProxiedCluster;
use puerta_tests::resp_client::{start_redis_server, RespClient};

/// Commands clients send on connect (and a few they get wrong), after `HELLO 3`. READONLY is left
/// out on purpose: a standalone Redis refuses it, Puerta says OK because cluster-aware clients
/// (go-redis, node-redis) must get OK to go on.
const CONNECT_TIME: &[&[&str]] = &[
    &["PING"],
    &["ECHO", "hi"],
    &["SELECT", "0"],
    &["AUTH", "default", "any"],
    &["AUTH", "bob", "x"],
    &["AUTH", "x"],
    &["CLIENT", "GETNAME"],
    &["CLIENT", "SETNAME", "app-1"],
    &["CLIENT", "GETNAME"],
    &["CLIENT", "SETNAME", "bad name"],
    &[
        "CLIENT",
        "MAINT_NOTIFICATIONS",
        "on",
        "moving-endpoint-type",
        "none",
    ],
    &["CLUSTER", "INFO"],
    &["CLUSTER", "SLOTS"],
    &["CLUSTER", "KEYSLOT", "foo"],
    &["HELLO", "4"],
    &["HELLO", "x"],
    &["HELLO", "3", "AUTH", "u"],
    &["HELLO", "3", "SETNAME", "a b"],
    &["GET", "nothing-here"],
    &["HGETALL", "nothing-here"],
    &["ZSCORE", "nothing-here", "m"],
    &["UNSUBSCRIBE", "nothing"],
];

#[test]
fn connect_time_commands_answer_like_a_standalone_redis() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let dir = tempfile::tempdir()?;
    let (_server, redis_port) = start_redis_server(dir.path(), &[])?;
    let mut proxy = RespClient::connect(env.port())?;
    let mut redis = RespClient::connect(redis_port)?;
    for client in [&mut proxy, &mut redis] {
        let hello = client.call_raw(&["HELLO", "3"])?;
        assert!(
            hello.starts_with(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
            "{hello:?}"
        );
    }
    for command in CONNECT_TIME {
        let ours = proxy.call_raw(command)?;
        let theirs = redis.call_raw(command)?;
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "{command:?}"
        );
    }
    Ok(())
}

#[test]
fn replies_built_by_the_proxy_use_resp3_types() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let mut c = RespClient::connect(env.port())?;
    c.call_raw(&["HELLO", "3"])?;
    c.call_raw(&["MSET", "{a}1", "x", "{b}2", "y"])?;
    let merged = c.call_raw(&["MGET", "{a}1", "missing", "{b}2"])?;
    assert_eq!(&merged[..], b"*3\r\n$1\r\nx\r\n_\r\n$1\r\ny\r\n");
    let info = c.call_raw(&["INFO", "replication"])?;
    let text = String::from_utf8_lossy(&info);
    assert!(
        text.starts_with('=')
            && text.contains("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"),
        "{info:?}"
    );
    let server = c.call_raw(&["INFO", "server"])?;
    assert!(
        String::from_utf8_lossy(&server).contains("redis_version:7."),
        "{server:?}"
    );
    assert_eq!(&c.call_raw(&["DBSIZE"])?[..], b":2\r\n");
    // Back to RESP2 on the same connection: the same merge with a RESP2 null.
    c.call_raw(&["HELLO", "2"])?;
    let merged = c.call_raw(&["MGET", "{a}1", "missing"])?;
    assert_eq!(&merged[..], b"*2\r\n$1\r\nx\r\n$-1\r\n");
    Ok(())
}

/// Writes pipelined before a HELLO that switches protocols are seen by the reads after it, although
/// those go over the other protocol's backend connections.
#[test]
fn commands_keep_their_order_across_a_protocol_switch() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let mut c = RespClient::connect(env.port())?;
    let words = |line: &str| -> Vec<Bytes> {
        line.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    };
    for round in 0..50 {
        let (hello, value) = (["HELLO 3", "HELLO 2"][round % 2], round.to_string());
        let replies = c.pipeline(&[
            words(&format!("SET switch {value}")),
            words(hello),
            words("GET switch"),
        ])?;
        assert_eq!(replies[2], Frame::bulk(value), "round {round}");
    }
    Ok(())
}

#[test]
fn a_subscribed_resp3_connection_gets_pushes_and_keeps_running_commands() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let mut sub = RespClient::connect(env.port())?;
    let mut publisher = RespClient::connect(env.port())?;
    sub.call_raw(&["HELLO", "3"])?;
    assert_eq!(
        &sub.call_raw(&["SUBSCRIBE", "news"])?[..],
        b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    // Ordinary commands still go to the cluster, in order, with their own replies.
    assert_eq!(&sub.call_raw(&["SET", "{n}k", "v"])?[..], b"+OK\r\n");
    assert_eq!(&sub.call_raw(&["GET", "{n}k"])?[..], b"$1\r\nv\r\n");
    assert_eq!(&sub.call_raw(&["PING"])?[..], b"+PONG\r\n");
    publisher.call_raw(&["PUBLISH", "news", "hello"])?;
    assert_eq!(
        &sub.read_raw()?[..],
        b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
    // A shard channel on the same client connection (Puerta subscribes it on the channel's master).
    assert_eq!(
        &sub.call_raw(&["SSUBSCRIBE", "orders"])?[..],
        b">3\r\n$10\r\nssubscribe\r\n$6\r\norders\r\n:1\r\n"
    );
    assert_eq!(
        &publisher.call_raw(&["SPUBLISH", "orders", "o1"])?[..],
        b":1\r\n"
    );
    assert_eq!(
        &sub.read_raw()?[..],
        b">3\r\n$8\r\nsmessage\r\n$6\r\norders\r\n$2\r\no1\r\n"
    );
    // Counts as Redis 7 keeps them: channels and patterns apart from shard channels.
    assert_eq!(
        &sub.call_raw(&["UNSUBSCRIBE", "news"])?[..],
        b">3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:0\r\n"
    );
    assert_eq!(
        &sub.call_raw(&["SUNSUBSCRIBE", "orders"])?[..],
        b">3\r\n$12\r\nsunsubscribe\r\n$6\r\norders\r\n:0\r\n"
    );
    assert_eq!(
        &sub.call_raw(&["SUNSUBSCRIBE"])?[..],
        b">3\r\n$12\r\nsunsubscribe\r\n_\r\n:0\r\n"
    );
    assert_eq!(&sub.call_raw(&["GET", "{n}k"])?[..], b"$1\r\nv\r\n");
    Ok(())
}
