//! Mainstream Redis clients, each with its default constructor (RESP3 for all of them now) and once
//! with RESP2 forced, through Puerta in front of a real cluster: connect, SET/GET, MSET/MGET across
//! slots, HGETALL, ZSCORE, a 1000-command pipeline, MULTI/EXEC on one hash tag, a pub/sub round trip
//! and a SCAN over all keys (the scripts under tests/py and tests/js). Then one RESP2 and one RESP3
//! client on the same keys at once.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use puerta_tests::redis_cluster::ProxiedCluster;

const MODES: [&str; 2] = ["default", "resp2"];

fn every_mode(run: impl Fn(&str) -> anyhow::Result<String>) -> anyhow::Result<()> {
    for mode in MODES {
        run(mode).with_context(|| format!("mode {mode}"))?;
    }
    Ok(())
}

#[test]
fn redis_py_sync_and_asyncio() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    every_mode(|mode| env.python_ok("redis_clients.py", &[mode]))
}

#[test]
fn node_redis() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    every_mode(|mode| env.node_ok("node_redis.mjs", &[mode]))
}

#[test]
fn ioredis() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    every_mode(|mode| env.node_ok("ioredis.mjs", &[mode]))
}

#[test]
fn valkey_glide() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    every_mode(|mode| env.python_ok("glide_clients.py", &[mode]))
}

#[test]
fn resp2_and_resp3_clients_on_the_same_keys_at_once() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    env.python_ok("redis_mixed_protocols.py", &[])?;
    Ok(())
}

/// `redis-cli -3` (and `-2`): `--no-raw` output shows the reply types, so a map, a double and a RESP3
/// null are told apart from their RESP2 shapes.
#[test]
fn redis_cli_in_both_protocols() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    for (flag, resp3) in [("-3", true), ("-2", false)] {
        let cli = |args: &[&str]| cli(&env, flag, args, None);
        let k = |name: &str| format!("cli{flag}:{name}");
        assert_eq!(cli(&["SET", &k("a"), "1"])?, "OK");
        assert_eq!(cli(&["GET", &k("a")])?, "\"1\"");
        assert_eq!(
            cli(&["MSET", &k("m1"), "x", &k("m2"), "y", &k("m3"), "z"])?,
            "OK"
        );
        let mget = cli(&["MGET", &k("m1"), &k("m2"), &k("missing"), &k("m3")])?;
        assert_eq!(mget, "1) \"x\"\n2) \"y\"\n3) (nil)\n4) \"z\"");
        cli(&["HSET", &k("h"), "f", "v"])?;
        let hgetall = cli(&["HGETALL", &k("h")])?;
        let expected = if resp3 {
            "1# \"f\" => \"v\""
        } else {
            "1) \"f\"\n2) \"v\""
        };
        assert_eq!(hgetall, expected);
        cli(&["ZADD", &k("z"), "2.5", "m"])?;
        let score = cli(&["ZSCORE", &k("z"), "m"])?;
        assert_eq!(score, if resp3 { "(double) 2.5" } else { "\"2.5\"" });
        let hello = cli(&["HELLO"])?;
        let proto = if resp3 {
            "\"proto\" => (integer) 3"
        } else {
            "(integer) 2"
        };
        assert!(hello.contains(proto), "{hello}");

        let script: String = (0..1000)
            .map(|_| format!("INCR {}\n", k("counter")))
            .collect();
        let counted = cli_stdin(&env, flag, &script)?;
        let expected: Vec<String> = (1..=1000).map(|i| format!("(integer) {i}")).collect();
        assert_eq!(counted.lines().collect::<Vec<_>>(), expected);
        let tx = format!("MULTI\nSET {0} 5\nINCRBY {0} 2\nEXEC\n", k("{tx}a"));
        assert!(
            cli_stdin(&env, flag, &tx)?.ends_with("1) OK\n2) (integer) 7"),
            "transaction"
        );

        let scanned = cli(&["--scan", "--pattern", &format!("cli{flag}:*")])?;
        let mut keys: Vec<&str> = scanned.lines().map(|l| l.trim_matches('"')).collect();
        keys.sort();
        let mut written = ["a", "m1", "m2", "m3", "h", "z", "counter", "{tx}a"].map(k);
        written.sort();
        assert_eq!(keys, written);
        redis_cli_pubsub(&env, flag)?;
    }
    Ok(())
}

/// A `redis-cli SUBSCRIBE` in the background gets a message published through the proxy.
fn redis_cli_pubsub(env: &ProxiedCluster, flag: &str) -> anyhow::Result<()> {
    let channel = format!("cli{flag}-news");
    let mut command = Command::new("redis-cli");
    command.args([flag, "-p", &env.port().to_string(), "SUBSCRIBE", &channel]);
    let subscriber = puerta_tests::Process::captured("redis-cli SUBSCRIBE", command)?;
    let mut delivered = false;
    for _ in 0..100 {
        let published = cli(env, flag, &["PUBLISH", &channel, "hello"], None)?;
        let receivers: i64 = published.trim_start_matches("(integer) ").parse()?;
        if receivers > 0 {
            delivered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        delivered,
        "no subscriber ever counted; redis-cli printed:\n{}",
        subscriber.output()
    );
    // PUBLISH counts the subscriber once the node queued the message for it; the message itself
    // still travels through Puerta's relay to redis-cli.
    subscriber.wait_for_output("hello", std::time::Duration::from_secs(10))?;
    let text = subscriber.output();
    assert!(text.contains("message"), "{text}");
    Ok(())
}

fn cli(
    env: &ProxiedCluster,
    flag: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<String> {
    let mut command = Command::new("redis-cli");
    command
        .args([flag, "--no-raw", "-p", &env.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("spawn redis-cli")?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.unwrap_or("").as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.is_empty() {
        bail!("redis-cli {flag} {args:?}: {stderr}");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// Commands fed one per line on redis-cli's standard input, all over one connection.
fn cli_stdin(env: &ProxiedCluster, flag: &str, script: &str) -> anyhow::Result<String> {
    cli(env, flag, &[], Some(script))
}
