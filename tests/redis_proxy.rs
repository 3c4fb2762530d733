//! Puerta in Redis mode in front of a real 6-node Redis Cluster, driven by plain (non-cluster) clients.

use std::time::Duration;

use bytes::Bytes;
use puerta::redis::resp::Frame;
use puerta_tests::fake_redis::key_in;
use puerta_tests::http;
use puerta_tests::redis_cluster::{ProxiedCluster, RedisCluster};
use puerta_tests::resp_client::RespClient;

#[test]
fn redis_py_plain_client_sees_one_server() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    env.python_ok("redis_basic.py", &[])?;
    Ok(())
}

#[test]
fn redis_cli_local_commands() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    assert_eq!(env.cli(&["PING"])?.trim(), "PONG");
    assert_eq!(env.cli(&["SET", "foo", "bar"])?.trim(), "OK");
    assert_eq!(env.cli(&["GET", "foo"])?.trim(), "bar");
    // One standalone server to its clients: no cluster commands, no topology.
    for sub in [&["KEYSLOT", "foo"][..], &["INFO"], &["NODES"], &["SLOTS"]] {
        let args: Vec<&str> = std::iter::once("CLUSTER")
            .chain(sub.iter().copied())
            .collect();
        assert_eq!(
            env.cli(&args)?.trim(),
            "ERR This instance has cluster support disabled"
        );
    }
    assert_eq!(env.cli(&["DBSIZE"])?.trim(), "1");
    let info = env.cli(&["INFO"])?;
    assert!(
        info.contains("# Proxy") && info.contains("db0:keys=1"),
        "{info}"
    );
    assert!(env.cli(&["SELECT", "1"])?.contains("ERR"));
    let _ = Duration::from_secs(1);
    Ok(())
}

/// A slot caught mid-migration by hand: ASK is followed (ASKING + command on the importing node) for an
/// existing key and a new one, multi-key reads split across the two nodes get TRYAGAIN passed through
/// after `max_redirects`, and once the slot is handed over MOVED is followed.
#[test]
fn ask_tryagain_and_moved_during_a_manual_migration() -> anyhow::Result<()> {
    // No periodic refresh: only MOVED may teach the proxy about the handover.
    let env = ProxiedCluster::start("max_redirects = 3\nslot_refresh_interval_sec = 3600")?;
    let c = &env.cluster;
    let slot: u16 = c
        .cli(c.masters()?[0], &["CLUSTER", "KEYSLOT", "{mig}"])?
        .trim()
        .parse()?;
    assert_eq!(env.cli(&["SET", "{mig}old", "v1"])?.trim(), "OK");
    assert_eq!(env.cli(&["SET", "{mig}stay", "v2"])?.trim(), "OK");
    let masters = c.masters()?;
    let src = *masters
        .iter()
        .find(|p| {
            c.cli(**p, &["GET", "{mig}old"])
                .is_ok_and(|v| v.trim() == "v1")
        })
        .expect("some master owns the slot");
    let dst = *masters.iter().find(|p| **p != src).expect("another master");
    let (src_id, dst_id) = (c.node_id(src)?, c.node_id(dst)?);
    let slot_s = slot.to_string();
    c.cli(dst, &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id])?;
    c.cli(src, &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id])?;
    let dst_port = dst.to_string();
    let migrated = c.cli(
        src,
        &["MIGRATE", "127.0.0.1", &dst_port, "{mig}old", "0", "5000"],
    )?;
    assert_eq!(migrated.trim(), "OK");

    let ask_before = env.proxy_counter("ask_redirects")?;
    assert_eq!(
        env.cli(&["GET", "{mig}old"])?.trim(),
        "v1",
        "ASK to the importing node"
    );
    assert_eq!(
        env.cli(&["GET", "{mig}stay"])?.trim(),
        "v2",
        "not yet moved: source"
    );
    assert_eq!(
        env.cli(&["SET", "{mig}new", "v3"])?.trim(),
        "OK",
        "new key: ASK"
    );
    assert_eq!(c.cli(dst, &["ASKING"])?.trim(), "OK");
    assert!(env.proxy_counter("ask_redirects")? >= ask_before + 2);
    let split = env.cli(&["MGET", "{mig}old", "{mig}stay"])?;
    assert!(
        split.contains("TRYAGAIN"),
        "last error passed through: {split}"
    );

    for port in c.masters()? {
        c.cli(port, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id])?;
    }
    let moved_before = env.proxy_counter("moved_redirects")?;
    assert_eq!(env.cli(&["GET", "{mig}old"])?.trim(), "v1");
    assert_eq!(env.cli(&["GET", "{mig}new"])?.trim(), "v3");
    // `{mig}stay` was never migrated: it is gone from the owner's view, as in Redis itself.
    assert!(env.proxy_counter("moved_redirects")? > moved_before);
    Ok(())
}

#[test]
fn transactions_blocking_pubsub_scan_and_local_commands() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    env.python_ok("redis_features.py", &[])?;
    Ok(())
}

#[test]
fn frontend_auth_with_password_and_users() -> anyhow::Result<()> {
    let env = ProxiedCluster::start(
        "password = \"s3cret\"\nusers = [{ name = \"app\", password = \"apppw\" }]",
    )?;
    env.python_ok("redis_auth.py", &[])?;
    Ok(())
}

/// With `read_from_replicas`, reads are served by replicas (their GET counters move) and are right.
#[test]
fn read_from_replicas_serves_reads_from_replicas() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("read_from_replicas = true")?;
    env.python_ok("redis_replicas.py", &["write"])?;
    // Redis leaves replicas out of CLUSTER SLOTS until their replication offset is non-zero (after the
    // first writes): wait for a periodic refresh to pick them up.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while env.proxy_counter("cluster_replicas")? < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "replicas never showed up"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    env.python_ok("redis_replicas.py", &["read"])?;
    let mut replica_gets = 0u64;
    for (replica, _) in env.cluster.replicas()? {
        let stats = env.cluster.cli(replica, &["INFO", "commandstats"])?;
        replica_gets += stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    assert!(
        replica_gets >= 300,
        "replicas served {replica_gets} GETs; replicas {:?}; proxy INFO {}",
        env.cluster.replicas()?,
        env.cli(&["INFO", "proxy"])?
    );
    Ok(())
}

/// `max_connections` refuses extra clients with an error and a close, and frees the slot on disconnect.
#[test]
fn max_connections_refuses_cleanly() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let env = ProxiedCluster::start("")?;
    drop(env.puerta);
    let listen = puerta_tests::loopback(puerta_tests::free_port());
    let config = env.cluster.puerta_config(listen, "").replace(
        "drain_timeout_sec = 2",
        "drain_timeout_sec = 2\nmax_connections = 2",
    );
    let puerta = puerta_tests::Puerta::start(&config, listen)?;
    // `Puerta::start` probed the port with a connection: wait until that slot is free again.
    std::thread::sleep(Duration::from_millis(500));
    let ping = |conn: &mut std::net::TcpStream| -> anyhow::Result<String> {
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        conn.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 128];
        let n = conn.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let mut first = std::net::TcpStream::connect(listen)?;
    let mut second = std::net::TcpStream::connect(listen)?;
    assert_eq!(ping(&mut first)?, "+PONG\r\n");
    assert_eq!(ping(&mut second)?, "+PONG\r\n");
    let mut third = std::net::TcpStream::connect(listen)?;
    third.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut refused = String::new();
    third.read_to_string(&mut refused)?;
    assert_eq!(refused, "-ERR max number of clients reached\r\n");
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut again = std::net::TcpStream::connect(listen)?;
        match ping(&mut again) {
            Ok(reply) if reply == "+PONG\r\n" => break,
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => panic!("slot never freed: {other:?}"),
        }
    }
    drop(puerta);
    Ok(())
}

/// SIGTERM: Puerta stops accepting, answers what clients already sent, closes them and exits 0;
/// the clients of both worker threads alike (the first thread stops the second's).
#[test]
fn sigterm_drains_and_exits_cleanly() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let (mut env, admin) =
        ProxiedCluster::with_admin_and(RedisCluster::start()?, "worker_threads = 2", "")?;
    let mut conns = Vec::new();
    for i in 0..4 {
        let mut conn = std::net::TcpStream::connect(env.puerta.listen)?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        conn.write_all(format!("SET drain{i} ok\r\n").as_bytes())?;
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf)?;
        assert_eq!(&buf[..n], b"+OK\r\n");
        conns.push(conn);
    }
    let (_, metrics) = http::get(admin, "/metrics")?;
    let samples = http::parse_metrics(&metrics)?;
    for worker in ["worker=\"0\"", "worker=\"1\""] {
        let clients = http::sample(&samples, "puerta_redis_worker_clients", &[worker]);
        assert_eq!(clients, Some(2.0), "{worker}: {metrics}");
    }
    env.puerta.process.signal("TERM");
    for conn in &mut conns {
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest)?;
        assert!(rest.is_empty(), "{rest:?}");
    }
    let code = env.puerta.process.wait_exit(Duration::from_secs(30))?;
    assert_eq!(code, Some(0), "{}", env.puerta.process.output());
    Ok(())
}

/// A pipelined client's commands for a slot keep their order when the slot moves under them: the
/// first INCR is redirected (MOVED), and commands the client sends while the rest of the first batch
/// is still being redirected must not overtake it. Every INCR reply must be the next integer.
#[test]
fn pipelined_commands_keep_their_order_across_a_slot_move() -> anyhow::Result<()> {
    use bytes::BytesMut;
    use puerta::redis::resp::{encode_command, parse_reply, Frame, Limits};
    use std::io::{Read, Write};

    let env = ProxiedCluster::start("slot_refresh_interval_sec = 3600")?;
    let c = &env.cluster;
    let slot = c
        .cli(c.masters()?[0], &["CLUSTER", "KEYSLOT", "{ord}c"])?
        .trim()
        .to_string();
    let masters = c.masters()?;
    let src = *masters
        .iter()
        .find(|p| {
            c.cli(**p, &["CLUSTER", "COUNTKEYSINSLOT", &slot]).is_ok()
                && c.cli(**p, &["GET", "{ord}c"])
                    .is_ok_and(|v| !v.contains("MOVED"))
        })
        .expect("owner");
    let dst = *masters.iter().find(|p| **p != src).expect("another master");
    // The proxy learns the owner now, then the slot (still empty) moves behind its back.
    assert_eq!(env.cli(&["GET", "{ord}c"])?.trim(), "");
    let dst_id = c.node_id(dst)?;
    c.cli(dst, &["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id])?;
    for port in masters.iter().filter(|p| **p != dst) {
        c.cli(*port, &["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id])?;
    }

    let incr = |n: usize| {
        let mut out = BytesMut::new();
        for _ in 0..n {
            encode_command(
                &[
                    bytes::Bytes::from_static(b"INCR"),
                    bytes::Bytes::from_static(b"{ord}c"),
                ],
                &mut out,
            );
        }
        out
    };
    let mut conn = std::net::TcpStream::connect(env.puerta.listen)?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (first, second) = (2000, 500);
    conn.write_all(&incr(first))?;
    let mut input = BytesMut::new();
    let mut replies = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while replies.len() < first + second {
        while let Some(frame) = parse_reply(&mut input, &Limits::default())? {
            replies.push(frame);
            if replies.len() == 1 {
                // The first reply means the MOVED was seen; the rest of the batch is still being
                // redirected while these arrive.
                conn.write_all(&incr(second))?;
            }
        }
        if replies.len() >= first + second {
            break;
        }
        let n = conn.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "proxy closed after {} replies", replies.len());
        input.extend_from_slice(&chunk[..n]);
    }
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(
            reply,
            &Frame::Integer(i as i64 + 1),
            "reply {i} out of order"
        );
    }
    assert!(env.proxy_counter("moved_redirects")? >= 1);
    Ok(())
}

/// Connection-state commands answered as one Redis answers them: an unsubscribe from a client with no
/// subscriptions confirms every channel it names (a client waits for each), RESET leaves subscriber
/// mode and ends a MULTI (it is never queued), and RESET needs no authentication. What the proxy
/// answers itself is refused inside MULTI rather than sent to a node.
#[test]
fn connection_state_commands_answer_like_one_redis() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("password = \"pw\"")?;
    let mut c = RespClient::connect(env.port())?;
    assert_eq!(c.call("RESET")?, Frame::Simple("RESET".into()));
    assert!(matches!(c.call("GET k")?, Frame::Error(e) if e.starts_with(b"NOAUTH")));
    assert_eq!(c.call("AUTH pw")?, Frame::Simple("OK".into()));

    let confirm = |channel: &str| {
        Frame::Array(vec![
            Frame::bulk("unsubscribe"),
            Frame::bulk(channel.to_string()),
            Frame::Integer(0),
        ])
    };
    assert_eq!(c.call("UNSUBSCRIBE a b c")?, confirm("a"));
    assert_eq!(c.read_reply()?, confirm("b"));
    assert_eq!(c.read_reply()?, confirm("c"));
    assert_eq!(c.call("PING")?, Frame::Simple("PONG".into()));

    assert_eq!(c.call("MULTI")?, Frame::Simple("OK".into()));
    assert_eq!(c.call("SET {t}k 1")?, Frame::Simple("QUEUED".into()));
    assert_eq!(c.call("RESET")?, Frame::Simple("RESET".into()));
    // RESET logged the client out again and ended the transaction.
    assert_eq!(c.call("AUTH pw")?, Frame::Simple("OK".into()));
    assert!(matches!(c.call("EXEC")?, Frame::Error(e) if e.starts_with(b"ERR EXEC without MULTI")));
    assert_eq!(
        c.call("GET {t}k")?,
        Frame::Null,
        "the transaction must not have run"
    );
    // CLIENT PAUSE inside MULTI must not reach a node (it would pause it for every client): the
    // writes below would then time out.
    assert_eq!(c.call("MULTI")?, Frame::Simple("OK".into()));
    let pause = c.call("CLIENT PAUSE 60000")?;
    assert!(
        matches!(&pause, Frame::Error(e) if e.starts_with(b"ERR Puerta")),
        "{pause:?}"
    );
    let exec = c.call("EXEC")?;
    assert!(
        matches!(&exec, Frame::Error(e) if e.starts_with(b"EXECABORT")),
        "{exec:?}"
    );

    let subscribed = c.call("SUBSCRIBE news")?;
    assert_eq!(
        subscribed,
        Frame::Array(vec![
            Frame::bulk("subscribe"),
            Frame::bulk("news"),
            Frame::Integer(1)
        ])
    );
    assert_eq!(c.call("RESET")?, Frame::Simple("RESET".into()));
    assert_eq!(c.call("AUTH pw")?, Frame::Simple("OK".into()));
    // Back on ordinary commands, routed by key: keys of every master answer, no MOVED leaks.
    for i in 0..50 {
        let key = format!("after-reset-{i}");
        assert_eq!(
            c.call(&format!("SET {key} v{i}"))?,
            Frame::Simple("OK".into())
        );
        assert_eq!(c.call(&format!("GET {key}"))?, Frame::bulk(format!("v{i}")));
    }
    Ok(())
}

/// A script may return tables nested thousands of levels deep (Redis stops at its Lua stack limit,
/// ~8000 levels, with an error as the innermost element). The reply passes through as the node sent
/// it and the connections stay in sync; inside a transaction, where the proxy must read the EXEC
/// reply, a reply too deep to read becomes an error reply, not a lost connection.
#[test]
fn deeply_nested_script_replies_pass_through() -> anyhow::Result<()> {
    use std::io::Write;
    let env = ProxiedCluster::start("")?;
    let recursive = "local a = {}; local b = {a}; a[1] = b; return a";
    let direct = env.cluster.masters()?[0];
    let theirs = raw_exchange(direct, &["EVAL", recursive, "0"], b"+PONG\r\n")?;
    let ours = raw_exchange(env.port(), &["EVAL", recursive, "0"], b"+PONG\r\n")?;
    assert!(theirs.ends_with(b"-ERR reached lua stack limit\r\n+PONG\r\n"));
    assert_eq!(
        ours, theirs,
        "the proxy must pass the reply through unchanged"
    );

    let mut c = RespClient::connect(env.port())?;
    let deep = "local t = {}; local cur = t; for i = 1, 300 do local n = {}; cur[1] = n; cur = n end; return t";
    assert_eq!(c.call("MULTI")?, Frame::Simple("OK".into()));
    let queued = c.pipeline(&[["EVAL", deep, "0"]
        .map(|w| w.as_bytes().to_vec().into())
        .to_vec()])?;
    assert_eq!(queued, vec![Frame::Simple("QUEUED".into())]);
    let exec = c.call("EXEC")?;
    assert!(
        matches!(&exec, Frame::Error(e) if e.windows(13).any(|w| w == b"nesting depth")),
        "{exec:?}"
    );
    assert_eq!(c.call("PING")?, Frame::Simple("PONG".into()));

    /// `args` then PING on a fresh connection; everything read until the PING's reply.
    fn raw_exchange(port: u16, args: &[&str], until: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        conn.write_all(&resp_commands(&[args, &["PING"]]))?;
        read_until(&mut conn, until)
    }
    Ok(())
}

/// CLIENT LIST/INFO/KILL and INFO's client counts describe the proxy's own clients, as a Redis server
/// describes its clients: names, blocked clients, and a killed client's connection closed at once.
#[test]
fn client_list_info_and_kill_see_the_proxy_clients() -> anyhow::Result<()> {
    use std::io::Read;
    let env = ProxiedCluster::start("")?;
    let mut admin = RespClient::connect(env.port())?;
    let mut worker = RespClient::connect(env.port())?;
    assert_eq!(
        worker.call("CLIENT SETNAME worker")?,
        Frame::Simple("OK".into())
    );
    let Frame::Integer(worker_id) = worker.call("CLIENT ID")? else {
        anyhow::bail!("CLIENT ID is not an integer");
    };
    let text = |frame: Frame| match frame {
        Frame::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        other => Err(anyhow::anyhow!("not text: {other:?}")),
    };
    let list = text(admin.call("CLIENT LIST")?)?;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let worker_line = lines
        .iter()
        .find(|l| l.starts_with(&format!("id={worker_id} ")))
        .ok_or_else(|| anyhow::anyhow!("worker missing: {list}"))?;
    assert!(
        worker_line.contains(" name=worker ") && worker_line.contains(" cmd=client|id "),
        "{worker_line}"
    );
    // Its own line as Redis 7 shows it: the subcommand, and the command in the query buffer.
    let own = text(admin.call("CLIENT INFO")?)?;
    assert!(
        own.contains(" qbuf=26 ") && own.contains(" cmd=client|info ") && own.ends_with('\n'),
        "{own}"
    );

    // A client waiting in BLPOP counts as blocked until its reply comes.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", env.port()))?;
    std::io::Write::write_all(
        &mut raw,
        b"*3\r\n$5\r\nBLPOP\r\n$8\r\n{q}empty\r\n$1\r\n0\r\n",
    )?;
    let info = |c: &mut RespClient| -> anyhow::Result<String> { text(c.call("INFO clients")?) };
    let mut until = |wanted: &str| -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = info(&mut admin)?;
            if now.contains(wanted) {
                return Ok(());
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "no {wanted}: {now}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    until("blocked_clients:1")?;
    until("connected_clients:3")?;
    let mut pusher = RespClient::connect(env.port())?;
    assert_eq!(pusher.call("RPUSH {q}empty x")?, Frame::Integer(1));
    drop(pusher);
    until("blocked_clients:0")?;
    let mut popped = [0u8; 64];
    let n = raw.read(&mut popped)?;
    assert!(
        popped[..n].starts_with(b"*2\r\n"),
        "{:?}",
        String::from_utf8_lossy(&popped[..n])
    );
    drop(raw);

    // A client shown as blocked has its command at the node already: a write made only once it
    // shows (XADD after XREAD BLOCK $, as Redis' own stream tests do) wakes it, never overtakes it.
    let mut reader = RespClient::connect(env.port())?;
    let mut writer = RespClient::connect(env.port())?;
    for round in 0..30 {
        let stream = format!("{{x}}stream-{round}");
        reader.send(&["XREAD", "BLOCK", "0", "STREAMS", &stream, "$"])?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !info(&mut admin)?.contains("blocked_clients:1") {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "round {round}: never blocked"
            );
        }
        writer.command(&["XADD", &stream, "*", "f", "v"])?;
        let woke = reader
            .read_reply()
            .map_err(|e| anyhow::anyhow!("round {round}: XREAD never woke: {e}"))?;
        assert!(
            matches!(&woke, Frame::Array(a) if a.len() == 1),
            "round {round}: {woke:?}"
        );
    }
    drop((reader, writer));

    // CLIENT KILL closes the worker's connection; the caller is never killed by default.
    let kill = format!("CLIENT KILL ID {worker_id}");
    assert_eq!(admin.call(&kill)?, Frame::Integer(1));
    assert_eq!(admin.call(&kill)?, Frame::Integer(0));
    assert!(
        worker.call("PING").is_err(),
        "the killed client's connection must be closed"
    );
    assert_eq!(admin.call("PING")?, Frame::Simple("PONG".into()));
    Ok(())
}

/// CLIENT REPLY OFF|ON|SKIP as Redis: silenced replies are not sent, the others keep their order.
#[test]
fn client_reply_off_on_and_skip() -> anyhow::Result<()> {
    use std::io::Write;
    let env = ProxiedCluster::start("")?;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", env.port()))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let commands: &[&[&str]] = &[
        &["CLIENT", "REPLY", "OFF"],
        &["SET", "{r}a", "1"],
        &["GET", "{r}a"],
        &["CLIENT", "REPLY", "ON"],
        &["GET", "{r}a"],
        &["CLIENT", "REPLY", "SKIP"],
        &["SET", "{r}b", "2"],
        &["GET", "{r}b"],
        &["MGET", "{r}a", "other-slot"],
        &["PING"],
    ];
    conn.write_all(&resp_commands(commands))?;
    let expected: &[u8] = b"+OK\r\n$1\r\n1\r\n$1\r\n2\r\n*2\r\n$1\r\n1\r\n$-1\r\n+PONG\r\n";
    let got = read_until(&mut conn, b"+PONG\r\n")?;
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
    Ok(())
}

/// CLIENT PAUSE is held at the proxy, never forwarded: WRITE holds writes of every client (reads go
/// on), the nodes themselves are not paused, and CLIENT UNPAUSE releases the held commands in order.
#[test]
fn client_pause_is_held_at_the_proxy() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let mut admin = RespClient::connect(env.port())?;
    let mut writer = RespClient::connect(env.port())?;
    assert_eq!(writer.call("SET {p}k before")?, Frame::Simple("OK".into()));
    assert_eq!(
        admin.call("CLIENT PAUSE 60000 WRITE")?,
        Frame::Simple("OK".into())
    );
    assert_eq!(
        writer.call("GET {p}k")?,
        Frame::bulk("before"),
        "reads are not held"
    );
    // A write is held: its reply does not come while the pause lasts.
    let mut held = std::net::TcpStream::connect(("127.0.0.1", env.port()))?;
    std::io::Write::write_all(
        &mut held,
        b"*3\r\n$3\r\nSET\r\n$4\r\n{p}k\r\n$5\r\nafter\r\n*1\r\n$4\r\nPING\r\n",
    )?;
    held.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 64];
    let early = std::io::Read::read(&mut held, &mut buf);
    assert!(
        early.is_err(),
        "a write answered during the pause: {early:?}"
    );
    // PFCOUNT reads, but may write (its cached count): held too, as in Redis.
    let mut pfcount = std::net::TcpStream::connect(("127.0.0.1", env.port()))?;
    std::io::Write::write_all(&mut pfcount, b"*2\r\n$7\r\nPFCOUNT\r\n$4\r\n{p}h\r\n")?;
    pfcount.set_read_timeout(Some(Duration::from_millis(300)))?;
    let early = std::io::Read::read(&mut pfcount, &mut buf);
    assert!(
        early.is_err(),
        "PFCOUNT answered during the pause: {early:?}"
    );
    // The nodes were not paused: a write straight to every master is answered (OK by the slot's
    // owner, MOVED by the others), none is held.
    for master in env.cluster.masters()? {
        let reply = RespClient::connect(master)?.call("SET {p}direct x")?;
        let answered = match &reply {
            Frame::Simple(ok) => &ok[..] == b"OK",
            Frame::Error(e) => e.starts_with(b"MOVED"),
            _ => false,
        };
        assert!(answered, "{master}: {reply:?}");
    }
    assert_eq!(writer.call("GET {p}k")?, Frame::bulk("before"));
    // The held client counts as blocked, as a paused client does in Redis.
    let Frame::Bulk(clients) = admin.call("INFO clients")? else {
        anyhow::bail!("INFO answers text");
    };
    let clients = String::from_utf8_lossy(&clients).into_owned();
    assert!(clients.contains("\r\nblocked_clients:2\r\n"), "{clients}");
    assert_eq!(admin.call("CLIENT UNPAUSE")?, Frame::Simple("OK".into()));
    held.set_read_timeout(Some(Duration::from_secs(30)))?;
    let got = read_until(&mut held, b"+PONG\r\n")?;
    assert_eq!(&got[..], b"+OK\r\n+PONG\r\n");
    pfcount.set_read_timeout(Some(Duration::from_secs(30)))?;
    assert_eq!(&read_until(&mut pfcount, b"\r\n")?[..], b":0\r\n");
    assert_eq!(writer.call("GET {p}k")?, Frame::bulk("after"));
    assert!(
        matches!(admin.call("CLIENT PAUSE -1")?, Frame::Error(e) if e.starts_with(b"ERR timeout is negative"))
    );
    Ok(())
}

/// A thousand clients at once, each sending UNSUBSCRIBE (and PUNSUBSCRIBE with channels) without
/// any subscription: every one gets Redis' confirmations, none waits forever.
#[test]
fn a_thousand_unsubscribes_without_subscriptions_are_all_answered() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    const CLIENTS: usize = 1000;
    puerta_tests::pairs::raise_nofile(4 * CLIENTS as u64 + 1024);
    let env = ProxiedCluster::start("")?;
    let mut conns = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", env.port()))?;
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        c.write_all(
            b"*1\r\n$11\r\nUNSUBSCRIBE\r\n*3\r\n$12\r\nPUNSUBSCRIBE\r\n$2\r\na*\r\n$2\r\nb*\r\n",
        )?;
        conns.push(c);
    }
    let expected: &[u8] = b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n\
        *3\r\n$12\r\npunsubscribe\r\n$2\r\na*\r\n:0\r\n\
        *3\r\n$12\r\npunsubscribe\r\n$2\r\nb*\r\n:0\r\n";
    for (i, c) in conns.iter_mut().enumerate() {
        let mut got = vec![0u8; expected.len()];
        c.read_exact(&mut got)
            .map_err(|e| anyhow::anyhow!("client {i}: {e}"))?;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "client {i}"
        );
    }
    Ok(())
}

/// `commands` in RESP, one buffer, for tests that must see the exact bytes that come back.
fn resp_commands(commands: &[&[&str]]) -> Vec<u8> {
    let mut out = Vec::new();
    for args in commands {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in *args {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    out
}

/// Everything `conn` sends until what was read ends with `suffix`.
fn read_until(conn: &mut std::net::TcpStream, suffix: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut got = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while !got.ends_with(suffix) {
        let n = conn.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    Ok(got)
}

/// What Redis' own test suite trips on, answered as one Redis answers: a malformed key count in the
/// node's words (each command words it its own way), subcommand arity errors, HyperLogLog's self
/// test, and PUBLISH/PUBSUB counting every subscriber of the proxy's clients (Redis Cluster counts
/// only the subscribers of the node that runs them). Each reply is compared with a standalone
/// redis-server's.
#[test]
fn answers_in_redis_own_words() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let dir = tempfile::tempdir()?;
    let (_server, standalone) = puerta_tests::resp_client::start_redis_server(dir.path(), &[])?;
    let mut redis = RespClient::connect(standalone)?;
    let mut proxy = RespClient::connect(env.port())?;
    for call in [
        &["SINTERCARD", "a{t}", "b{t}"][..],
        &["ZMPOP", "x", "a{t}", "MIN"],
        &["EVAL", "return 1", "-1"],
        &["EVAL", "return 1", "x"],
        &["FCALL", "f", "x"],
        &["CLIENT", "KILL"],
        &["CLIENT", "PAUSE"],
        &["PFSELFTEST"],
    ] {
        assert_eq!(proxy.command(call)?, redis.command(call)?, "{call:?}");
    }

    // Two RESP2 subscribers and a RESP3 one, on different connections of the proxy.
    let mut subscribers = Vec::new();
    for resp3 in [false, false, true] {
        let mut s = RespClient::connect(env.port())?;
        if resp3 {
            assert!(matches!(s.command(&["HELLO", "3"])?, Frame::Map(_)));
        }
        s.command(&["SUBSCRIBE", "news"])?;
        subscribers.push(s);
    }
    let mut patterns = RespClient::connect(env.port())?;
    patterns.command(&["PSUBSCRIBE", "n*"])?;
    assert_eq!(
        proxy.command(&["PUBLISH", "news", "hi"])?,
        Frame::Integer(4)
    );
    assert_eq!(
        proxy.command(&["PUBSUB", "NUMSUB", "news"])?,
        Frame::Array(vec![Frame::bulk("news"), Frame::Integer(3)])
    );
    assert_eq!(proxy.command(&["PUBSUB", "NUMPAT"])?, Frame::Integer(1));
    // INFO's sections about the data are the masters', merged: default ones and `all` ones.
    proxy.command(&["SET", "info{a}", "1"])?;
    proxy.command(&["SET", "info{b}", "1"])?;
    let info = |c: &mut RespClient, args: &[&str]| -> anyhow::Result<String> {
        match c.command(args)? {
            Frame::Bulk(text) => Ok(String::from_utf8_lossy(&text).into_owned()),
            other => anyhow::bail!("INFO answered {other:?}"),
        }
    };
    let default = info(&mut proxy, &["INFO"])?;
    for field in [
        "# Persistence\r\n",
        "\r\nrdb_changes_since_last_save:",
        "\r\naof_rewrite_in_progress:0\r\n",
        "# Errorstats\r\n",
        "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n",
        "\r\nmaster_repl_offset:",
        "# Cluster\r\ncluster_enabled:0\r\n",
        "\r\nlazyfree_pending_objects:",
        "\r\npuerta_used_memory_rss:",
    ] {
        assert!(default.contains(field), "{field:?} missing from {default}");
    }
    assert!(!default.contains("# Commandstats"), "{default}");
    let commands = info(&mut proxy, &["INFO", "commandstats"])?;
    let set_calls: u64 = commands
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_set:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no cmdstat_set in {commands}"))?;
    assert!(set_calls >= 2, "the SETs of both masters: {commands}");
    assert!(
        !commands.contains("cmdstat_cluster|") && !commands.contains("cmdstat_hello:"),
        "the proxy's own topology queries and handshakes are not the client's: {commands}"
    );

    // CLIENT KILL of itself: the count first, then the connection closes.
    let mut suicidal = RespClient::connect(env.port())?;
    let Frame::Integer(own) = suicidal.command(&["CLIENT", "ID"])? else {
        anyhow::bail!("CLIENT ID answers an integer");
    };
    let own = own.to_string();
    assert_eq!(
        suicidal.command(&["CLIENT", "KILL", "ID", &own, "SKIPME", "no"])?,
        Frame::Integer(1)
    );
    assert!(
        suicidal.command(&["PING"]).is_err(),
        "closed after the reply"
    );

    for s in &mut subscribers {
        let message = s.read_reply()?;
        let items = match message {
            Frame::Array(items) | Frame::Push(items) => items,
            other => panic!("expected a message, got {other:?}"),
        };
        assert_eq!(items[0], Frame::bulk("message"));
        assert_eq!(items[2], Frame::bulk("hi"));
    }
    Ok(())
}

/// With three worker threads the clients are spread over them (`/metrics` and INFO count four on
/// each)
/// and each thread's node connections carry its own clients' commands: twelve clients at once,
/// each pipelining writes to every master and reading them back, each read their own values.
#[test]
fn clients_on_three_worker_threads_each_read_their_own_writes() -> anyhow::Result<()> {
    let (env, admin) =
        ProxiedCluster::with_admin_and(RedisCluster::start()?, "worker_threads = 3", "")?;
    let mut clients = Vec::new();
    for _ in 0..12 {
        let mut client = RespClient::connect(env.port())?;
        assert_eq!(client.command(&["PING"])?, Frame::simple("PONG"));
        clients.push(client);
    }
    let (status, body) = http::get(admin, "/metrics")?;
    anyhow::ensure!(status == 200, "/metrics answered {status}");
    let samples = http::parse_metrics(&body)?;
    let on = |worker: usize| {
        let label = format!("worker=\"{worker}\"");
        http::sample(&samples, "puerta_redis_worker_clients", &[&label])
    };
    assert_eq!(
        (0..4).map(on).collect::<Vec<_>>(),
        [Some(4.0), Some(4.0), Some(4.0), None],
        "{body}"
    );
    let Frame::Bulk(info) = clients[0].command(&["INFO"])? else {
        anyhow::bail!("INFO answers a bulk string");
    };
    let info = String::from_utf8_lossy(&info);
    assert!(info.contains("\r\nworker_clients:4,4,4\r\n"), "{info}");
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, client)| std::thread::spawn(move || own_writes_read_back(n, client)))
        .collect();
    for worker in workers {
        worker.join().expect("client thread")?;
    }
    Ok(())
}

/// Fifty rounds of: SET a key on each master, then MGET them (split over the three), pipelined.
fn own_writes_read_back(n: usize, mut client: RespClient) -> anyhow::Result<()> {
    let masters = [(0, 5460), (5461, 10922), (10923, 16383)];
    for round in 0..50 {
        let keys: Vec<String> = masters
            .iter()
            .map(|&(first, last)| key_in(first, last, n * 1000 + round))
            .collect();
        let value = |key: &str| format!("{key}@client{n}");
        let mut commands: Vec<Vec<Bytes>> = keys
            .iter()
            .map(|k| vec!["SET".into(), k.clone().into(), value(k).into()])
            .collect();
        commands.push(
            std::iter::once(Bytes::from("MGET"))
                .chain(keys.iter().map(|k| Bytes::from(k.clone())))
                .collect(),
        );
        let replies = client.pipeline(&commands)?;
        assert_eq!(
            replies[..3],
            [
                Frame::simple("OK"),
                Frame::simple("OK"),
                Frame::simple("OK")
            ]
        );
        let expected = keys.iter().map(|k| Frame::bulk(value(k))).collect();
        assert_eq!(
            replies[3],
            Frame::Array(expected),
            "client {n}, round {round}"
        );
    }
    Ok(())
}
