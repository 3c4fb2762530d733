//! MongoDB mode with a mongos that goes bad while Puerta runs: one that accepts but never answers is
//! taken out by the health checks after `health_fall` failures (logged) and new clients go to the
//! healthy one; one that resets flows mid-stream ends exactly those flows promptly (logged on the
//! userspace path), the others keep working, and no descriptor is leaked — through the userspace and
//! the kernel data path.
//!
//! A flow already connected to a mongos that stops answering stays open: Puerta forwards bytes and
//! cannot tell a slow query from a stuck server, so ending it is the client's (driver's) timeout.

use std::net::SocketAddr;
use std::time::Duration;

use puerta_tests::fake_mongos::{FakeMongos, MongosFault};
use puerta_tests::fds::Fds;
use puerta_tests::kernel::PinDir;
use puerta_tests::{free_port, loopback, Puerta};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(30);

fn config(listen: SocketAddr, backends: &[SocketAddr], forwarding: &str, pins: &PinDir) -> String {
    let endpoints: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "mode = \"mongodb\"\nlisten_addr = \"{listen}\"\nadmin_addr = \"off\"\n\
         drain_timeout_sec = 2\n\n[mongodb]\nmongos_endpoints = [{}]\n\
         session_affinity_enabled = false\nhealth_check_interval_sec = 1\n\
         health_check_timeout_ms = 500\nhealth_fall = 2\nhealth_rise = 1\n\
         forwarding = \"{forwarding}\"\nbpf_pin_dir = \"{}\"\n",
        endpoints.join(", "),
        pins.0.display()
    )
}

async fn start(backends: &[SocketAddr], forwarding: &str, pins: &PinDir) -> anyhow::Result<Puerta> {
    let listen = loopback(free_port());
    let cfg = config(listen, backends, forwarding, pins);
    tokio::task::block_in_place(|| {
        let puerta = Puerta::start_with(&cfg, listen, |cmd| {
            cmd.env("NO_COLOR", "1");
        })?;
        for backend in backends {
            puerta
                .process
                .wait_for_output(&format!("mongos {backend} is up (first check)"), PATIENCE)?;
        }
        Ok(puerta)
    })
}

async fn echo(sock: &mut TcpStream, msg: &[u8]) -> anyhow::Result<()> {
    sock.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(PATIENCE, sock.read_exact(&mut back)).await??;
    anyhow::ensure!(back == msg, "echo mismatch");
    Ok(())
}

async fn echoing_client(proxy: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut sock = TcpStream::connect(proxy).await?;
    echo(&mut sock, b"hello through puerta").await?;
    Ok(sock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongos_that_stops_answering_is_taken_out_and_others_keep_serving() -> anyhow::Result<()> {
    let good = FakeMongos::start().await?;
    let bad = FakeMongos::start().await?;
    let pins = PinDir::new("fault-hang");
    let puerta = start(&[good.addr, bad.addr], "userspace", &pins).await?;
    let pid = puerta.process.pid();
    let baseline = Fds::quiet(pid).await?;
    let mut before = Vec::new();
    for _ in 0..4 {
        before.push(echoing_client(puerta.listen).await?);
    }
    assert!(
        bad.data_connections() >= 1,
        "round-robin never used {}",
        bad.addr
    );

    bad.set_fault(MongosFault::Hang);
    let down = format!(
        "mongos {} is down after 2 failed checks: no answer within",
        bad.addr
    );
    tokio::task::block_in_place(|| puerta.process.wait_for_output(&down, PATIENCE))?;

    // New clients all go to the healthy mongos.
    let bad_flows = bad.data_connections();
    let mut after = Vec::new();
    for _ in 0..10 {
        after.push(echoing_client(puerta.listen).await?);
    }
    assert_eq!(
        bad.data_connections(),
        bad_flows,
        "a new client went to the hung mongos"
    );

    // Closing every client, the stuck ones included, frees all their descriptors.
    drop(before);
    drop(after);
    Fds::wait_back_to(pid, &baseline, PATIENCE).await?;

    bad.set_fault(MongosFault::Healthy);
    let up = format!("mongos {} is up again", bad.addr);
    tokio::task::block_in_place(|| puerta.process.wait_for_output(&up, PATIENCE))?;
    Ok(())
}

/// Sends a request and reads until the connection ends; fails if it is still open after PATIENCE.
async fn ended_after_request(proxy: SocketAddr) -> anyhow::Result<usize> {
    let mut sock = TcpStream::connect(proxy).await?;
    sock.write_all(&[7u8; 1000]).await?;
    let mut got = 0;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, sock.read(&mut buf)).await {
            Err(_) => anyhow::bail!("flow to a resetting mongos still open after {PATIENCE:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got += n,
        }
    }
}

async fn reset_mid_stream(forwarding: &str) -> anyhow::Result<()> {
    let backend = FakeMongos::start().await?;
    let pins = PinDir::new("fault-reset");
    let puerta = start(&[backend.addr], forwarding, &pins).await?;
    let pid = puerta.process.pid();
    let mut long_lived = echoing_client(puerta.listen).await?;
    let baseline = Fds::quiet(pid).await?;

    backend.set_fault(MongosFault::ResetMidStream);
    for _ in 0..20 {
        let got = ended_after_request(puerta.listen).await?;
        // Half of the request comes back at most: the rest was cut by the reset.
        assert!(
            got <= 500,
            "{got} bytes came back from a mongos that sent 500"
        );
    }
    assert_eq!(backend.resets(), 20);

    echo(&mut long_lived, b"the earlier flow is unaffected").await?;
    // Both paths see which socket failed and blame the mongos (rate-limited).
    let blamed = format!("mongos {} broke the flow of", backend.addr);
    tokio::task::block_in_place(|| puerta.process.wait_for_output(&blamed, PATIENCE))?;
    Fds::wait_back_to(pid, &baseline, PATIENCE).await?;
    backend.set_fault(MongosFault::Healthy);
    echoing_client(puerta.listen).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_stream_userspace() -> anyhow::Result<()> {
    reset_mid_stream("userspace").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_stream_kernel() -> anyhow::Result<()> {
    reset_mid_stream("kernel").await
}
