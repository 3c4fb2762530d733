//! `client_idle_timeout_sec` in MongoDB mode, through the real binary. Compiled twice: `mongodb_idle`
//! forwards in userspace, `mongodb_idle_kernel` splices in the kernel (see `mongo::forwarding`). A flow
//! quiet both ways for the timeout is closed on both sides (silent, or stalled in the middle of a
//! message); traffic in either direction keeps it open; hundreds of idle clients neither stop service
//! nor leave fds or map entries behind; a reload applies the timeout to new flows only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use puerta_tests::fds::Fds;
use puerta_tests::kernel::{assert_spliced_and_clean, logged_u64, stop, wait_for, PinDir};
use puerta_tests::mongo::forwarding;
use puerta_tests::mongo_echo::MongoEcho;
use puerta_tests::stream::ends_within;
use puerta_tests::{free_port, http, loopback, Puerta};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE: Duration = Duration::from_secs(2);
/// How long past the timeout a close may take before the test calls it missing.
const SLACK: Duration = Duration::from_secs(20);
/// TCP's clock counts in jiffies; a close may come that much before our own clock says the timeout.
const JIFFY_SLACK: Duration = Duration::from_millis(50);

struct Proxy {
    puerta: Puerta,
    admin: SocketAddr,
    pins: PinDir,
    kernel: bool,
}

fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    backend: SocketAddr,
    idle: u64,
    pins: &PinDir,
) -> String {
    format!(
        r#"mode = "mongodb"
listen_addr = "{listen}"
admin_addr = "{admin}"
max_connections = 30000
drain_timeout_sec = 5
client_idle_timeout_sec = {idle}

[mongodb]
mongos_endpoints = ["{backend}"]
health_check_interval_sec = 1
forwarding = "{}"
bpf_pin_dir = "{}"
"#,
        forwarding(),
        pins.0.display()
    )
}

async fn start(backend: SocketAddr, idle: u64) -> anyhow::Result<Proxy> {
    let pins = PinDir::new("idle");
    let listen = loopback(free_port());
    let admin = loopback(free_port());
    let cfg = config(listen, admin, backend, idle, &pins);
    let puerta = tokio::task::block_in_place(|| {
        Puerta::start_with(&cfg, listen, |cmd| {
            cmd.env("NO_COLOR", "1");
        })
    })?;
    Ok(Proxy {
        puerta,
        admin,
        pins,
        kernel: forwarding() == "kernel",
    })
}

async fn echo_once(sock: &mut TcpStream, msg: &[u8]) -> anyhow::Result<()> {
    sock.write_all(msg).await?;
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(SLACK, sock.read_exact(&mut got))
        .await
        .context("echo within the slack")??;
    anyhow::ensure!(got == msg, "echo mismatch");
    Ok(())
}

/// The first 10 bytes of a 100-byte OP_MSG header: a message that will never be complete.
fn half_message() -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&100i32.to_le_bytes());
    header.extend_from_slice(&7i32.to_le_bytes());
    header.extend_from_slice(&[0, 0]);
    header
}

fn idle_closes_metric(admin: SocketAddr) -> anyhow::Result<f64> {
    let (status, body) = http::get(admin, "/metrics")?;
    anyhow::ensure!(status == 200, "/metrics answered {status}");
    let samples = http::parse_metrics(&body)?;
    http::sample(&samples, "puerta_client_idle_timeouts_total", &[])
        .ok_or_else(|| anyhow::anyhow!("no puerta_client_idle_timeouts_total in:\n{body}"))
}

/// Stops Puerta; in kernel mode, checks that the flows really were spliced and left no peers entry.
fn stop_checked(proxy: Proxy) -> anyhow::Result<String> {
    let kernel = proxy.kernel;
    let log = stop(proxy.puerta)?;
    if kernel {
        assert_spliced_and_clean(&log);
    }
    Ok(log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_closed_after_the_timeout() -> anyhow::Result<()> {
    let backend = MongoEcho::start().await?;
    let proxy = start(backend.addr, IDLE.as_secs()).await?;
    let started = Instant::now();
    let mut client = TcpStream::connect(proxy.puerta.listen).await?;
    let got = ends_within(&mut client, IDLE + SLACK).await?;
    assert!(got.is_empty());
    assert!(
        started.elapsed() + JIFFY_SLACK >= IDLE,
        "closed after {:?}, before the timeout",
        started.elapsed()
    );
    let closes = tokio::task::block_in_place(|| idle_closes_metric(proxy.admin))?;
    assert!(closes >= 1.0, "{closes} idle closes counted");
    let log = tokio::task::block_in_place(|| stop_checked(proxy))?;
    assert!(log.contains("closed idle client 127.0.0.1:"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_stalled_in_the_middle_of_a_message_is_closed() -> anyhow::Result<()> {
    let backend = MongoEcho::start().await?;
    let proxy = start(backend.addr, IDLE.as_secs()).await?;
    let mut client = TcpStream::connect(proxy.puerta.listen).await?;
    let half = half_message();
    client.write_all(&half).await?;
    // The echo returns the fragment (the flow is through), then nothing moves until the close.
    let got = ends_within(&mut client, IDLE + SLACK).await?;
    assert_eq!(got, half);
    tokio::task::block_in_place(|| stop_checked(proxy))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talking_client_stays_open_past_the_timeout() -> anyhow::Result<()> {
    let backend = MongoEcho::start().await?;
    let proxy = start(backend.addr, IDLE.as_secs()).await?;
    let mut client = TcpStream::connect(proxy.puerta.listen).await?;
    // A round trip every timeout/4 for 4 timeouts: never quiet for a whole timeout.
    let rounds = 16;
    for round in 0..rounds {
        echo_once(&mut client, format!("round {round:02}").as_bytes())
            .await
            .with_context(|| format!("round {round}"))?;
        tokio::time::sleep(IDLE / 4).await;
    }
    // Then it goes quiet, and the timeout applies.
    ends_within(&mut client, IDLE + SLACK).await?;
    tokio::task::block_in_place(|| stop_checked(proxy))?;
    Ok(())
}

/// A client waiting on a server that streams (a tailing cursor, a big reply) is not idle: server bytes
/// count too. Once both are quiet, both sides are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_traffic_alone_keeps_the_flow_open_then_both_sides_close() -> anyhow::Result<()> {
    let mut backend = MongoEcho::start_handing_over().await?;
    let proxy = start(backend.addr, IDLE.as_secs()).await?;
    let mut client = TcpStream::connect(proxy.puerta.listen).await?;
    client.write_all(b"ping").await?;
    let rx = backend.accepted.as_mut().expect("handing-over backend");
    let mut server = tokio::time::timeout(SLACK, rx.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("backend stopped"))?;
    let mut ping = [0u8; 4];
    server.read_exact(&mut ping).await?;
    for round in 0..16u64 {
        server.write_all(&round.to_le_bytes()).await?;
        let mut got = [0u8; 8];
        tokio::time::timeout(SLACK, client.read_exact(&mut got))
            .await
            .context("push within the slack")?
            .with_context(|| format!("push {round}"))?;
        assert_eq!(u64::from_le_bytes(got), round);
        tokio::time::sleep(IDLE / 4).await;
    }
    assert!(ends_within(&mut client, IDLE + SLACK).await?.is_empty());
    assert!(ends_within(&mut server, SLACK).await?.is_empty());
    tokio::task::block_in_place(|| stop_checked(proxy))?;
    Ok(())
}

/// Raises the soft fd limit (this process and the Puerta it starts) so a few hundred pairs fit.
async fn stalled_client(proxy: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut sock = TcpStream::connect(proxy).await?;
    let half = half_message();
    sock.write_all(&half).await?;
    let mut got = vec![0u8; half.len()];
    tokio::time::timeout(SLACK, sock.read_exact(&mut got))
        .await
        .context("fragment echoed")??;
    Ok(sock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_clients_do_not_stop_service_and_leave_nothing_behind() -> anyhow::Result<()> {
    const IDLE_CLIENTS: usize = 500;
    puerta_tests::pairs::raise_nofile(8192);
    let backend = MongoEcho::start().await?;
    let proxy = start(backend.addr, IDLE.as_secs()).await?;
    let pid = proxy.puerta.process.pid();
    let pins = proxy.pins.0.clone();
    let kernel = proxy.kernel;
    let entries = move || -> anyhow::Result<usize> {
        if !kernel {
            return Ok(0);
        }
        let c = puerta::mongodb::datapath::kernel::pinned_counts(&pins)?;
        Ok(c.sockets + c.peers)
    };
    // The readiness probe's flow closes on its own; the baseline is taken after it.
    wait_for("probe flow closed", || {
        Ok(entries().is_ok_and(|n| n == 0)
            && open_connections(proxy.admin).is_ok_and(|open| open == 0.0))
    })
    .await?;
    let baseline = Fds::quiet(pid).await?;

    let mut stalled = Vec::with_capacity(IDLE_CLIENTS);
    for batch in 0..IDLE_CLIENTS / 100 {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..100 {
            set.spawn(stalled_client(proxy.puerta.listen));
        }
        while let Some(sock) = set.join_next().await {
            stalled.push(sock?.with_context(|| format!("batch {batch}"))?);
        }
    }
    // A well-behaved client keeps being served while the stalled ones wait for, and get, their close.
    let mut good = TcpStream::connect(proxy.puerta.listen).await?;
    for round in 0..16 {
        echo_once(&mut good, format!("good {round:02}").as_bytes())
            .await
            .with_context(|| format!("well-behaved client, round {round}"))?;
        tokio::time::sleep(IDLE / 4).await;
    }
    let mut closes = tokio::task::JoinSet::new();
    for mut sock in stalled {
        closes.spawn(async move { ends_within(&mut sock, IDLE + SLACK).await.map(drop) });
    }
    while let Some(closed) = closes.join_next().await {
        closed??;
    }
    echo_once(&mut good, b"still served").await?;
    drop(good);
    wait_for("map entries gone", || Ok(entries()? == 0)).await?;
    Fds::wait_back_to(pid, &baseline, Duration::from_secs(30)).await?;
    let log = tokio::task::block_in_place(|| stop_checked(proxy))?;
    let closed_idle = logged_u64(&log, "mongodb mode totals", "closed_idle").unwrap_or(0);
    assert!(
        closed_idle >= IDLE_CLIENTS as u64,
        "{closed_idle} idle closes:\n{log}"
    );
    Ok(())
}

/// `puerta_connections_open` from the admin port.
fn open_connections(admin: SocketAddr) -> anyhow::Result<f64> {
    let (_, body) = http::get(admin, "/metrics")?;
    let samples = http::parse_metrics(&body)?;
    http::sample(&samples, "puerta_connections_open", &[])
        .ok_or_else(|| anyhow::anyhow!("no puerta_connections_open"))
}

/// SIGHUP changes the timeout for flows that start afterwards; a flow already open keeps the one it
/// started with (here: none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_the_timeout_to_new_flows() -> anyhow::Result<()> {
    let backend = MongoEcho::start().await?;
    let proxy = start(backend.addr, 0).await?;
    let mut before = TcpStream::connect(proxy.puerta.listen).await?;
    echo_once(&mut before, b"before reload").await?;
    let listen = proxy.puerta.listen;
    let cfg = config(
        listen,
        proxy.admin,
        backend.addr,
        IDLE.as_secs(),
        &proxy.pins,
    );
    std::fs::write(&proxy.puerta.config_path, cfg)?;
    proxy.puerta.process.signal("HUP");
    tokio::task::block_in_place(|| {
        proxy
            .puerta
            .process
            .wait_for_output("client_idle_timeout_sec=2", SLACK)
    })?;
    let mut after = TcpStream::connect(listen).await?;
    ends_within(&mut after, IDLE + SLACK).await?;
    // `before` has now been quiet for longer than the new timeout, and is still served.
    echo_once(&mut before, b"still open").await?;
    before.shutdown().await?;
    ends_within(&mut before, SLACK).await?;
    let admin = proxy.admin;
    wait_for("flows finished", || Ok(open_connections(admin)? == 0.0)).await?;
    tokio::task::block_in_place(|| stop_checked(proxy))?;
    Ok(())
}
