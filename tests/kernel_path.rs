//! The kernel data path through the real `puerta` binary in MongoDB mode (`forwarding = "kernel"`), in
//! front of an echo backend that answers health checks. Runs as root on a kernel with sockmap (CI).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use puerta_tests::fds::Fds;
use puerta_tests::kernel::{config, logged_u64, pinned_map_id, start, stop, wait_for, PinDir};
use puerta_tests::mongo_echo::MongoEcho;
use puerta_tests::pairs::{open_clients, pairs_per_wave, raise_nofile};
use puerta_tests::{free_port, loopback, puerta_bin, stream, Process};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_pairs_leave_no_entries_or_fds() -> anyhow::Result<()> {
    const PAIRS: u64 = 10_000;
    // Each pair costs two fds in puerta and two here (client + echo side).
    let hard = raise_nofile(4 * PAIRS + 1000);
    let per_wave = pairs_per_wave(PAIRS, hard, 2);
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
    let counts =
        || puerta::mongodb::datapath::kernel::pinned_counts(&pins.0).map_err(anyhow::Error::from);
    // Pins appear once the program is loaded, which may be just after the port opened; the baseline
    // is taken once the readiness probe's flow has finished.
    wait_for("pins present, probe flow closed", || {
        Ok(counts().is_ok_and(|c| c.peers == 0))
    })
    .await?;
    let baseline = Fds::quiet(pid).await?;

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
        Fds::wait_back_to(pid, &baseline, Duration::from_secs(30)).await?;
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
    // The readiness probe (connect, close) is a flow from 127.0.0.1 too; under load it may still be
    // counted for a moment.
    wait_for("only the test's connection counted", || {
        Ok(dump("affinity")?[0]["formatted"]["value"]["conn_count"] == 1)
    })
    .await?;
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

/// The pinned backends map follows the health checks: a live mongos shows `health: 1` (up), an
/// unreachable one `health: 2` (down), as `/backends` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bpftool_shows_backend_health() -> anyhow::Result<()> {
    let live = MongoEcho::start().await?;
    let dead = loopback(free_port());
    let pins = PinDir::new("health");
    let puerta = start(&[live.addr, dead], "kernel", &pins).await?;
    let path = pins.0.join("backends");
    let health = move || -> anyhow::Result<(u64, u64)> {
        let out = Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(&path)
            .output()?;
        anyhow::ensure!(out.status.success(), "bpftool failed: {out:?}");
        let dump: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let at = |i: usize| {
            dump[i]["formatted"]["value"]["health"]
                .as_u64()
                .unwrap_or(0)
        };
        Ok((at(0), at(1)))
    };
    // The pins appear once the program is loaded, which may be just after the port opened.
    wait_for("backends map shows the checks' verdicts", || {
        Ok(health().is_ok_and(|h| h == (1, 2)))
    })
    .await?;
    tokio::task::block_in_place(|| stop(puerta))?;
    Ok(())
}

/// Runs puerta with CAP_BPF, CAP_SYS_ADMIN and CAP_NET_ADMIN removed from its bounding set, so the
/// eBPF program cannot load even as root.
fn start_without_bpf(
    cfg: &str,
    listen: SocketAddr,
) -> anyhow::Result<(Process, tempfile::TempDir)> {
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
    let child = Process::captured("puerta(no-bpf)", cmd)?;
    let _ = listen;
    Ok((child, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bpf_capabilities_auto_still_splices_and_kernel_refuses() -> anyhow::Result<()> {
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
        log.contains("forwarding with splice(2) (forwarding = \"auto\""),
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
