//! The kernel data path through the real `puerta` binary in MongoDB mode (`forwarding = "kernel"`), in
//! front of an echo backend that answers health checks. Runs as root on a kernel with sockmap (CI).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use puerta_tests::mongo_echo::MongoEcho;
use puerta_tests::{free_port, loopback, stream, Puerta};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A pin dir of its own per test (tests run in parallel), removed afterwards.
struct PinDir(PathBuf);

impl PinDir {
    fn new(tag: &str) -> PinDir {
        PinDir(PathBuf::from(format!(
            "/sys/fs/bpf/puerta-test-{tag}-{}-{}",
            std::process::id(),
            free_port()
        )))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(listen: SocketAddr, backends: &[SocketAddr], forwarding: &str, pins: &Path) -> String {
    let endpoints: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        r#"mode = "mongodb"
listen_addr = "{listen}"
max_connections = 30000
drain_timeout_sec = 5

[mongodb]
mongos_endpoints = [{}]
session_affinity_enabled = true
session_timeout_sec = 1
health_check_interval_sec = 1
forwarding = "{forwarding}"
bpf_pin_dir = "{}"
"#,
        endpoints.join(", "),
        pins.display()
    )
}

async fn start(backends: &[SocketAddr], forwarding: &str, pins: &PinDir) -> anyhow::Result<Puerta> {
    let listen = loopback(free_port());
    let cfg = config(listen, backends, forwarding, &pins.0);
    tokio::task::block_in_place(|| {
        Puerta::start_with(&cfg, listen, |cmd| {
            cmd.env("NO_COLOR", "1");
        })
    })
}

/// SIGTERM, wait for a clean exit, return everything it logged.
fn stop(mut puerta: Puerta) -> anyhow::Result<String> {
    puerta.process.signal("TERM");
    let code = puerta.process.wait_exit(Duration::from_secs(20))?;
    anyhow::ensure!(
        code == Some(0),
        "puerta exited with {code:?}:\n{}",
        puerta.process.output()
    );
    Ok(puerta.process.output())
}

/// `key=value` from the last log line containing `line`.
fn logged_u64(output: &str, line: &str, key: &str) -> Option<u64> {
    let l = output.lines().rev().find(|l| l.contains(line))?;
    let at = l.find(&format!("{key}="))? + key.len() + 1;
    l[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gib_each_way_is_identical_and_never_enters_userspace() -> anyhow::Result<()> {
    let backend = MongoEcho::start().await?;
    let pins = PinDir::new("gib");
    let puerta = start(&[backend.addr], "kernel", &pins).await?;
    let len = 1u64 << 30;
    let sock = TcpStream::connect(puerta.listen).await?;
    let (sent, got) = stream::echo_roundtrip(sock, len, 42).await?;
    assert_eq!(sent, got, "bytes came back different");
    let log = tokio::task::block_in_place(|| stop(puerta))?;
    assert_eq!(
        logged_u64(&log, "kernel path totals", "kernel_bytes_client_to_backend"),
        Some(len),
        "{log}"
    );
    assert_eq!(
        logged_u64(&log, "kernel path totals", "kernel_bytes_backend_to_client"),
        Some(len),
        "{log}"
    );
    assert_eq!(
        logged_u64(&log, "mongodb mode totals", "userspace_bytes"),
        Some(0),
        "{log}"
    );
    assert!(
        !pins.0.join("affinity").exists(),
        "pins left behind after clean shutdown"
    );
    Ok(())
}

async fn handed_pair(
    backend: &mut MongoEcho,
    proxy: SocketAddr,
) -> anyhow::Result<(TcpStream, TcpStream)> {
    let mut client = TcpStream::connect(proxy).await?;
    // The backend only sees the connection once Puerta connected; the first bytes prove the splice.
    client.write_all(b"ping").await?;
    let rx = backend.accepted.as_mut().expect("handing-over backend");
    let mut server = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("backend stopped"))?;
    let mut buf = [0u8; 4];
    server
        .read_exact(&mut buf)
        .await
        .context("backend reads ping")?;
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").await?;
    client
        .read_exact(&mut buf)
        .await
        .context("client reads pong")?;
    assert_eq!(&buf, b"pong");
    Ok((client, server))
}

/// Reads until EOF or error; returns what was read and whether it ended within `within`.
async fn ends_within(sock: &mut TcpStream, within: Duration) -> anyhow::Result<Vec<u8>> {
    let mut got = Vec::new();
    let started = Instant::now();
    let mut buf = [0u8; 65536];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Err(_) => anyhow::bail!("still open after {within:?} ({} bytes read)", got.len()),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn reset(sock: TcpStream) -> anyhow::Result<()> {
    sock.set_zero_linger()?;
    drop(sock);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_and_reset_end_the_pair_within_a_second() -> anyhow::Result<()> {
    let mut backend = MongoEcho::start_handing_over().await?;
    let pins = PinDir::new("close");
    let puerta = start(&[backend.addr], "kernel", &pins).await?;
    let second = Duration::from_secs(1);

    // Client half-closes: the backend gets everything then EOF, and can still answer.
    let (mut client, mut server) = handed_pair(&mut backend, puerta.listen).await?;
    let payload = vec![7u8; 2 << 20];
    client.write_all(&payload).await?;
    client.shutdown().await?;
    let got = ends_within(&mut server, Duration::from_secs(10)).await?;
    assert_eq!(got.len(), payload.len());
    server.write_all(b"late reply").await?;
    server.shutdown().await?;
    assert_eq!(ends_within(&mut client, second).await?, b"late reply");

    // Backend half-closes: mirror image.
    let (mut client, mut server) = handed_pair(&mut backend, puerta.listen).await?;
    server.write_all(&payload).await?;
    server.shutdown().await?;
    assert_eq!(
        ends_within(&mut client, Duration::from_secs(10))
            .await?
            .len(),
        payload.len()
    );
    client.write_all(b"late request").await?;
    client.shutdown().await?;
    assert_eq!(ends_within(&mut server, second).await?, b"late request");

    // RST from the client ends the backend side, and RST from the backend ends the client side.
    let (client, mut server) = handed_pair(&mut backend, puerta.listen).await?;
    reset(client)?;
    ends_within(&mut server, second).await?;
    let (mut client, server) = handed_pair(&mut backend, puerta.listen).await?;
    reset(server)?;
    ends_within(&mut client, second).await?;
    let log = tokio::task::block_in_place(|| stop(puerta))?;
    assert_eq!(
        logged_u64(&log, "kernel path totals", "peer_entries"),
        Some(0),
        "{log}"
    );
    assert_eq!(
        logged_u64(&log, "mongodb mode totals", "userspace_bytes"),
        Some(0),
        "{log}"
    );
    Ok(())
}
