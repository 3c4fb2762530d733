//! The kernel data path through the real `puerta` binary in MongoDB mode (`forwarding = "kernel"`), in
//! front of an echo backend that answers health checks. Runs as root on a kernel with sockmap (CI).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use puerta_tests::mongo_echo::MongoEcho;
use std::process::Command;

use puerta_tests::{free_port, loopback, puerta_bin, stream, ChildGuard, Puerta};
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

/// Raises this process's RLIMIT_NOFILE (inherited by the puerta it starts) towards `want`; returns
/// the hard limit in effect. Without CAP_SYS_RESOURCE the hard limit cannot grow.
fn raise_nofile(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with valid pointers.
    unsafe {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_max
}

fn fd_count(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

async fn wait_for(
    what: &str,
    mut cond: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if cond()? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: not reached within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One client: send its index, expect it echoed, keep the socket open.
async fn tagged_client(proxy: SocketAddr, index: u64) -> anyhow::Result<TcpStream> {
    let mut sock = TcpStream::connect(proxy).await?;
    let tag = index.to_le_bytes();
    sock.write_all(&tag).await?;
    let mut back = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(30), sock.read_exact(&mut back)).await??;
    anyhow::ensure!(back == tag, "client {index} got another client's bytes");
    Ok(sock)
}

/// Opens `count` tagged clients through `proxy`, `parallel` connects at a time, and keeps them open.
async fn open_clients(proxy: SocketAddr, first: u64, count: u64) -> anyhow::Result<Vec<TcpStream>> {
    const PARALLEL_CONNECTS: u64 = 200;
    let mut open = Vec::with_capacity(count as usize);
    for batch in (first..first + count).step_by(PARALLEL_CONNECTS as usize) {
        let mut set = tokio::task::JoinSet::new();
        for index in batch..(batch + PARALLEL_CONNECTS).min(first + count) {
            set.spawn(tagged_client(proxy, index));
        }
        while let Some(sock) = set.join_next().await {
            open.push(sock??);
        }
    }
    Ok(open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_pairs_leave_no_entries_or_fds() -> anyhow::Result<()> {
    const PAIRS: u64 = 10_000;
    // Each pair costs two fds in puerta and two here (client + echo side).
    let hard = raise_nofile(4 * PAIRS + 1000);
    let per_wave = PAIRS.min(hard.saturating_sub(400) / 2);
    if per_wave < PAIRS {
        eprintln!(
            "RLIMIT_NOFILE hard limit {hard} (no CAP_SYS_RESOURCE): {per_wave} concurrent pairs per \
             wave, {PAIRS} in total"
        );
    }
    let backend = MongoEcho::start().await?;
    let pins = PinDir::new("10k");
    let puerta = start(&[backend.addr], "kernel", &pins).await?;
    let pid = puerta.process.pid();
    let counts = || puerta::kernel::pinned_counts(&pins.0).map_err(anyhow::Error::from);
    // Pins appear once the program is loaded, which may be just after the port opened; the baseline
    // is taken once the readiness probe's flow has finished.
    wait_for("pins present, probe flow closed", || {
        Ok(counts().is_ok_and(|c| c.peers == 0))
    })
    .await?;
    let baseline = fd_count(pid)?;

    let mut done = 0;
    while done < PAIRS {
        let wave = per_wave.min(PAIRS - done);
        let open = open_clients(puerta.listen, done, wave).await?;
        // All pairs of the wave alive at once, all in the sockhash.
        let c = counts()?;
        assert_eq!(c.sockets, 2 * wave as usize, "{c:?}");
        assert_eq!(c.peers, 2 * wave as usize, "{c:?}");
        assert_eq!(c.affinity, 1, "one client IP: {c:?}");
        drop(open);
        wait_for("sockhash and peers empty", || {
            let c = counts()?;
            Ok(c.sockets == 0 && c.peers == 0)
        })
        .await?;
        wait_for("fd count back to baseline", || {
            Ok(fd_count(pid)? <= baseline)
        })
        .await?;
        done += wave;
    }
    wait_for("affinity entry expired", || Ok(counts()?.affinity == 0)).await?;
    let log = tokio::task::block_in_place(|| stop(puerta))?;
    // The readiness probe's flow may or may not have been spliced before it closed.
    let pairs = logged_u64(&log, "kernel path totals", "pairs").unwrap_or(0);
    assert!(pairs >= PAIRS, "{pairs} pairs spliced:\n{log}");
    assert_eq!(
        logged_u64(&log, "mongodb mode totals", "userspace_bytes"),
        Some(0),
        "{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bpftool_shows_client_ip_and_its_backend() -> anyhow::Result<()> {
    let mut first = MongoEcho::start_handing_over().await?;
    let mut second = MongoEcho::start_handing_over().await?;
    let pins = PinDir::new("bpftool");
    let puerta = start(&[first.addr, second.addr], "kernel", &pins).await?;
    let mut client = TcpStream::connect(puerta.listen).await?;
    client.write_all(b"hi").await?;
    // Which backend got the client decides the index bpftool must show.
    let (index, _server) = tokio::select! {
        Some(s) = first.accepted.as_mut().expect("hand-over").recv() => (0, s),
        Some(s) = second.accepted.as_mut().expect("hand-over").recv() => (1, s),
    };
    let dump = |name: &str| -> anyhow::Result<serde_json::Value> {
        let out = Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(pins.0.join(name))
            .output()?;
        anyhow::ensure!(out.status.success(), "bpftool failed: {out:?}");
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let affinity = dump("affinity")?;
    let entry = &affinity[0]["formatted"];
    let addr: Vec<u64> = (0..4)
        .filter_map(|i| entry["key"]["addr"][i].as_u64())
        .collect();
    assert_eq!(addr, [127, 0, 0, 1], "{affinity}");
    assert_eq!(entry["key"]["family"], 2, "{affinity}");
    assert_eq!(entry["value"]["backend"], index, "{affinity}");
    assert_eq!(entry["value"]["conn_count"], 1, "{affinity}");
    let backends = dump("backends")?;
    let port = [first.addr, second.addr][index as usize].port();
    assert_eq!(
        backends[index as usize]["formatted"]["value"]["port"], port,
        "{backends}"
    );
    Ok(())
}

/// Runs puerta with CAP_BPF, CAP_SYS_ADMIN and CAP_NET_ADMIN removed from its bounding set, so the
/// eBPF program cannot load even as root.
fn start_without_bpf(
    cfg: &str,
    listen: SocketAddr,
) -> anyhow::Result<(ChildGuard, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("puerta.toml");
    std::fs::write(&path, cfg)?;
    let mut cmd = Command::new("capsh");
    cmd.arg("--drop=cap_bpf,cap_sys_admin,cap_net_admin,cap_perfmon")
        .arg("--")
        .arg("-c")
        .arg("exec \"$0\" --config \"$1\"")
        .arg(puerta_bin())
        .arg(&path)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info");
    let child = ChildGuard::spawn("puerta(no-bpf)", cmd)?;
    let _ = listen;
    Ok((child, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bpf_capabilities_auto_falls_back_and_kernel_refuses() -> anyhow::Result<()> {
    let backend = MongoEcho::start().await?;
    let pins = PinDir::new("nocap");

    let listen = loopback(free_port());
    let cfg = config(listen, &[backend.addr], "auto", &pins.0);
    let (child, _dir) = start_without_bpf(&cfg, listen)?;
    tokio::task::block_in_place(|| {
        puerta_tests::wait_for_port(listen, Duration::from_secs(15)).with_context(|| child.output())
    })?;
    let sock = TcpStream::connect(listen).await?;
    let (sent, got) = stream::echo_roundtrip(sock, 4 << 20, 3).await?;
    assert_eq!(sent, got);
    let log = child.output();
    assert!(
        log.contains("kernel forwarding unavailable, forwarding in userspace: cannot load"),
        "{log}"
    );
    drop(child);

    let listen = loopback(free_port());
    let cfg = config(listen, &[backend.addr], "kernel", &pins.0);
    let (mut child, _dir) = start_without_bpf(&cfg, listen)?;
    let code = tokio::task::block_in_place(|| child.wait_exit(Duration::from_secs(15)))?;
    assert_eq!(code, Some(2), "{}", child.output());
    assert!(
        child
            .output()
            .contains("forwarding = \"kernel\" was requested, but cannot load"),
        "{}",
        child.output()
    );
    Ok(())
}

/// The kernel id of the map pinned at `path`, or None if nothing is pinned there.
fn pinned_map_id(path: &Path) -> anyhow::Result<Option<u64>> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "show", "pinned"])
        .arg(path)
        .output()?;
    if !out.status.success() {
        return Ok(None);
    }
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(info["id"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replaces_pins_and_only_the_owner_removes_them() -> anyhow::Result<()> {
    let backend = MongoEcho::start().await?;
    let pins = PinDir::new("restart");
    let affinity = pins.0.join("affinity");
    let first = start(&[backend.addr], "kernel", &pins).await?;
    wait_for("first pins", || Ok(pinned_map_id(&affinity)?.is_some())).await?;
    let first_id = pinned_map_id(&affinity)?;

    // A second instance (a restart overlapping the old one) takes the pins over.
    let second = start(&[backend.addr], "kernel", &pins).await?;
    wait_for(
        "pins replaced",
        || Ok(pinned_map_id(&affinity)? != first_id),
    )
    .await?;
    let second_id = pinned_map_id(&affinity)?;
    assert!(second_id.is_some());

    // The old instance stopping must not remove the new instance's pins.
    tokio::task::block_in_place(|| stop(first))?;
    assert_eq!(pinned_map_id(&affinity)?, second_id);
    tokio::task::block_in_place(|| stop(second))?;
    assert_eq!(
        pinned_map_id(&affinity)?,
        None,
        "pins left after clean shutdown"
    );
    Ok(())
}
