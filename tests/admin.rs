//! The admin port against a live MongoDB-mode Puerta: `/metrics` is well-formed Prometheus text with
//! the connection, health, byte and affinity metrics; `/healthz`, `/backends` and `/affinity` tell the
//! truth about the backends and clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use puerta::redis::resp::Frame;
use puerta_tests::http::{get, parse_metrics, sample, wait_for};
use puerta_tests::memory::rss_kib;
use puerta_tests::mongo::{puerta_config, Echo, EchoBackend};
use puerta_tests::proxied_cluster::ProxiedCluster;
use puerta_tests::redis_cluster::RedisCluster;
use puerta_tests::resp_client::RespClient;
use puerta_tests::{free_port, loopback, Puerta};

const WAIT: Duration = Duration::from_secs(30);

fn start(backends: &[String], forwarding: &str) -> anyhow::Result<(Puerta, SocketAddr)> {
    let listen = loopback(free_port());
    let admin = loopback(free_port());
    let config = format!(
        "admin_addr = \"{admin}\"\n{}",
        puerta_config(
            listen,
            100,
            backends,
            &format!(
                "health_check_interval_sec = 1\nhealth_check_timeout_ms = 500\n\
                 forwarding = \"{forwarding}\""
            )
        )
    );
    let puerta = Puerta::start(&config, listen)?;
    Ok((puerta, admin))
}

fn echo_once(stream: &mut TcpStream, payload: &[u8]) -> anyhow::Result<()> {
    stream.write_all(payload)?;
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back)?;
    anyhow::ensure!(back == payload, "echo mismatch");
    Ok(())
}

#[test]
fn mongodb_admin_endpoints_report_live_state_userspace() -> anyhow::Result<()> {
    report_live_state("userspace")
}

/// `auto` forwards with splice(2); the same assertions hold for its counters.
#[test]
fn mongodb_admin_endpoints_report_live_state_auto() -> anyhow::Result<()> {
    report_live_state("auto")
}

fn report_live_state(forwarding: &str) -> anyhow::Result<()> {
    let echo = EchoBackend::start(Echo::Stream)?;
    let dead = format!("127.0.0.1:{}", free_port());
    let (puerta, admin) = start(&[echo.address(), dead.clone()], forwarding)?;
    wait_for(admin, "/healthz", WAIT, |status, _| status == 200)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", puerta.process.output()))?;

    // Puerta::start's readiness probe was a flow too: count from after it ended. The listener is
    // bound before the accept loop starts, so the probe may still be queued: wait until it was
    // accepted and closed.
    let before = wait_for(admin, "/metrics", WAIT, |_, body| {
        let accepted = parse_metrics(body)
            .ok()
            .and_then(|m| sample(&m, "puerta_connections_accepted_total", &[]));
        body.contains("puerta_connections_open 0") && accepted.is_some_and(|n| n >= 1.0)
    })?;
    let accepted_before = sample(
        &parse_metrics(&before)?,
        "puerta_connections_accepted_total",
        &[],
    )
    .expect("accepted counter");

    let mut client = TcpStream::connect(puerta.listen)?;
    client.set_read_timeout(Some(WAIT))?;
    let payload = vec![7u8; 10_000];
    echo_once(&mut client, &payload)?;

    let backends: serde_json::Value = serde_json::from_str(&get(admin, "/backends")?.1)?;
    let list = backends.as_array().expect("array of backends");
    assert_eq!(list.len(), 2, "{backends}");
    let live = &list[0];
    assert_eq!(live["address"], echo.address());
    assert_eq!(live["weight"], 1);
    assert_eq!(live["health"], "up");
    assert_eq!(live["active_connections"], 1, "{backends}");
    assert_eq!(list[1]["address"], dead);
    assert_eq!(list[1]["health"], "down");
    assert_eq!(list[1]["active_connections"], 0);

    let affinity: serde_json::Value = serde_json::from_str(&get(admin, "/affinity")?.1)?;
    let entries = affinity["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{affinity}");
    assert_eq!(entries[0]["client"], "127.0.0.1");
    // The readiness probe came from the same IP and has closed; this client is the one live.
    assert_eq!(entries[0]["backend"], echo.address());
    assert_eq!(entries[0]["live_connections"], 1);

    let (status, text) = get(admin, "/metrics")?;
    assert_eq!(status, 200);
    let samples = parse_metrics(&text)?;
    let value = |name: &str, labels: &[&str]| {
        sample(&samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(
        value("puerta_connections_accepted_total", &[]),
        accepted_before + 1.0
    );
    assert_eq!(value("puerta_connections_open", &[]), 1.0);
    assert_eq!(value("puerta_connections_refused_total", &[]), 0.0);
    let live_label = format!("backend=\"{}\"", echo.address());
    let dead_label = format!("backend=\"{dead}\"");
    assert_eq!(value("puerta_backend_up", &[&live_label]), 1.0);
    assert_eq!(value("puerta_backend_up", &[&dead_label]), 0.0);
    assert_eq!(
        value("puerta_backend_active_connections", &[&live_label]),
        1.0
    );
    assert_eq!(value("puerta_affinity_entries", &[]), 1.0);
    // Whichever path forwarded (auto is splice).
    let bytes = |direction: &str| {
        let label = format!("direction=\"{direction}\"");
        ["path=\"userspace\"", "path=\"kernel\"", "path=\"splice\""]
            .iter()
            .filter_map(|path| sample(&samples, "puerta_bytes_total", &[path, &label]))
            .sum::<f64>()
    };
    let (up, down) = (bytes("client_to_backend"), bytes("backend_to_client"));
    if forwarding == "userspace" {
        let userspace = sample(
            &samples,
            "puerta_bytes_total",
            &["path=\"userspace\"", "direction=\"client_to_backend\""],
        );
        assert_eq!(userspace, Some(10_000.0));
    }
    assert_eq!((up, down), (10_000.0, 10_000.0));
    assert!(
        value(
            "puerta_health_check_duration_seconds_count",
            &[&live_label, "result=\"ok\""]
        ) >= 1.0
    );
    assert!(
        value(
            "puerta_health_check_duration_seconds_count",
            &[&dead_label, "result=\"failed\""]
        ) >= 1.0
    );
    assert!(text.contains("# TYPE puerta_health_check_duration_seconds histogram"));
    dashboard_metrics_exist(Mode::Mongodb, &samples)?;

    drop(client);
    wait_for(admin, "/backends", WAIT, |_, body| {
        body.contains("\"active_connections\":0") && !body.contains("\"active_connections\":1")
    })?;
    Ok(())
}

#[test]
fn healthz_is_unavailable_while_no_backend_is_up() -> anyhow::Result<()> {
    let dead = format!("127.0.0.1:{}", free_port());
    let (_puerta, admin) = start(&[dead], "userspace")?;
    // 503 "starting" until the first health round is done, then 503 "no backend up".
    wait_for(admin, "/healthz", WAIT, |status, body| {
        status == 503 && body.contains("no backend up")
    })?;
    let (status, backends) = get(admin, "/backends")?;
    assert_eq!(status, 200);
    assert!(backends.contains("\"health\":\"down\""), "{backends}");
    Ok(())
}

#[test]
fn admin_addr_off_serves_nothing() -> anyhow::Result<()> {
    let echo = EchoBackend::start(Echo::Stream)?;
    let listen = loopback(free_port());
    let admin = loopback(free_port());
    let config = format!(
        "admin_addr = \"off\"\n{}",
        puerta_config(listen, 10, &[echo.address()], "")
    );
    let puerta = Puerta::start(&config, listen)?;
    puerta
        .process
        .wait_for_output("admin endpoints disabled", WAIT)?;
    assert!(get(admin, "/healthz").is_err());
    Ok(())
}

/// Redis mode: `/backends` lists the cluster nodes with role and slot counts, and `/metrics` counts
/// commands by name, errors by code, redirects, refreshes and per-node latency.
#[test]
fn redis_admin_endpoints_and_metrics() -> anyhow::Result<()> {
    let cluster = RedisCluster::start()?;
    let listen = loopback(free_port());
    let admin = loopback(free_port());
    let config = format!(
        "admin_addr = \"{admin}\"\n{}",
        cluster.puerta_config(listen, "")
    );
    let puerta = Puerta::start(&config, listen)?;
    wait_for(admin, "/healthz", WAIT, |status, _| status == 200)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", puerta.process.output()))?;

    let mut client = RespClient::connect(listen.port())?;
    for i in 0..5 {
        assert_eq!(
            client.call(&format!("SET admin-key-{i} v"))?,
            Frame::Simple("OK".into())
        );
    }
    client.call("LPUSH admin-list x")?;
    let wrong = client.call("GET admin-list")?;
    assert!(
        matches!(&wrong, Frame::Error(e) if e.starts_with(b"WRONGTYPE")),
        "{wrong:?}"
    );

    // Replicas show up in CLUSTER SLOTS once they synced; the periodic refresh picks them up.
    let body = wait_for(admin, "/backends", Duration::from_secs(60), |_, body| {
        body.matches("\"role\":\"replica\"").count() == 3
    })?;
    let backends: serde_json::Value = serde_json::from_str(&body)?;
    let nodes = backends.as_array().expect("array of nodes");
    assert_eq!(nodes.len(), 6, "{backends}");
    let masters: Vec<_> = nodes.iter().filter(|n| n["role"] == "master").collect();
    assert_eq!(masters.len(), 3, "{backends}");
    let slots: u64 = masters.iter().filter_map(|n| n["slots"].as_u64()).sum();
    assert_eq!(slots, 16384, "{backends}");
    let replicas = nodes.iter().filter(|n| n["role"] == "replica");
    assert!(
        replicas
            .clone()
            .all(|r| r["slots"] == 0 && r["replica_of"].is_string()),
        "{backends}"
    );
    assert_eq!(replicas.count(), 3);
    assert_eq!(get(admin, "/affinity")?.0, 404);

    // A client picks the error a script replies with; 32 codes Redis does not use get series of
    // their own, later ones count as OTHER.
    for i in 0..40u8 {
        let code = format!(
            "SCRIPTED_{}{}",
            (b'A' + i / 26) as char,
            (b'A' + i % 26) as char
        );
        let script = format!("return redis.error_reply('{code} from a script')");
        let reply = client.command(&["EVAL", &script, "0"])?;
        assert!(
            matches!(&reply, Frame::Error(e) if e.starts_with(code.as_bytes())),
            "{reply:?}"
        );
    }

    let (status, text) = get(admin, "/metrics")?;
    assert_eq!(status, 200);
    let samples = parse_metrics(&text)?;
    let scripted = samples
        .iter()
        .filter(|s| s.name == "puerta_redis_errors_total" && s.labels.contains("SCRIPTED_"))
        .count();
    assert_eq!(scripted, 32, "{text}");
    let value = |name: &str, labels: &[&str]| {
        sample(&samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(
        value("puerta_redis_commands_total", &["command=\"set\""]),
        5.0
    );
    assert_eq!(
        value("puerta_redis_commands_total", &["command=\"get\""]),
        1.0
    );
    assert_eq!(
        value("puerta_redis_errors_total", &["kind=\"WRONGTYPE\""]),
        1.0
    );
    assert_eq!(value("puerta_redis_errors_total", &["kind=\"OTHER\""]), 8.0);
    assert!(value("puerta_redis_topology_refreshes_total", &[]) >= 1.0);
    for kind in ["moved", "ask", "tryagain"] {
        let label = format!("kind=\"{kind}\"");
        assert_eq!(value("puerta_redis_redirects_total", &[&label]), 0.0);
    }
    let replies: f64 = samples
        .iter()
        .filter(|s| s.name == "puerta_redis_node_latency_seconds_count")
        .map(|s| s.value)
        .sum();
    assert!(replies >= 7.0, "node replies counted: {replies}\n{text}");
    assert_eq!(value("puerta_connections_open", &[]), 1.0);
    dashboard_metrics_exist(Mode::Redis, &samples)?;
    Ok(())
}

/// Nobody scrapes `/metrics`, and what the metrics hold must not grow with the commands served:
/// the node latency histogram kept every sample until a scrape (about 17 bytes a command, so 25
/// MiB over this test's 1.5 million commands).
#[test]
fn unscraped_metrics_do_not_grow_with_commands() -> anyhow::Result<()> {
    let (env, _admin) = ProxiedCluster::start_with_admin("")?;
    let pid = env.puerta.process.pid();
    let bench = |requests: u32| -> anyhow::Result<()> {
        let out = std::process::Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &env.port().to_string()])
            .args(["-t", "get", "-P", "16", "-c", "20", "-r", "100000", "-q"])
            .args(["-n", &requests.to_string()])
            .output()?;
        anyhow::ensure!(out.status.success(), "redis-benchmark: {out:?}");
        Ok(())
    };
    // Buffers and pools reach their working size first.
    bench(300_000)?;
    let before = rss_kib(pid)?;
    bench(1_500_000)?;
    let after = rss_kib(pid)?;
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} to {after} KiB over 1.5 million commands"
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Mongodb,
    Redis,
}

/// Every metric `contrib/grafana/puerta.json` queries for `mode` is on a running Puerta's
/// `/metrics`: a dashboard panel over a renamed or never-exported metric would stay empty unnoticed.
fn dashboard_metrics_exist(
    mode: Mode,
    samples: &[puerta_tests::http::Sample],
) -> anyhow::Result<()> {
    let path = puerta_tests::workspace_root().join("contrib/grafana/puerta.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    let mut queried: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    queried.sort();
    queried.dedup();
    let shared =
        |m: &str| m.starts_with("puerta_connections_") || m == "puerta_client_idle_timeouts_total";
    let for_mode: Vec<&String> = queried
        .iter()
        .filter(|m| shared(m) || (m.starts_with("puerta_redis_") == (mode == Mode::Redis)))
        .collect();
    anyhow::ensure!(
        for_mode.len() >= 8,
        "the dashboard queries little for {mode:?}: {queried:?}"
    );
    let missing: Vec<&&String> = for_mode
        .iter()
        .filter(|m| !samples.iter().any(|s| s.name == ***m))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{mode:?}: the dashboard queries metrics /metrics lacks: {missing:?}"
    );
    Ok(())
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The `puerta_…` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("puerta_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}
