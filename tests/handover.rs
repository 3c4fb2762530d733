//! Restarts that drop nothing (`handover_socket`): clients connect and run commands in a loop, with
//! no retries, while Puerta is replaced three times; each new process takes the listening socket
//! over from the running one, which then drains. Not one connection may be refused or fail, and no
//! old process may need its drain deadline. In MongoDB mode the affinity pins come along, so a
//! client's next connections reach the mongos holding its cursors; on the kernel path the live
//! spliced connections come along too, so a cursor opened before an upgrade finishes after it on
//! the very same connection.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::block_in_place;

use puerta_tests::kernel::{self, logged_u64, PinDir};
use puerta_tests::mongo::{probe, puerta_config, seed_names, StandIn};
use puerta_tests::mongo_echo::MongoEcho;
use puerta_tests::redis_cluster::RedisCluster;
use puerta_tests::{free_port, loopback, Process, Puerta};

const RESTARTS: usize = 3;

#[test]
fn redis_mode_restarts_drop_nothing() -> anyhow::Result<()> {
    let cluster = RedisCluster::start()?;
    let dir = tempfile::tempdir()?;
    let listen = loopback(free_port());
    let config = format!(
        "handover_socket = \"{}\"\n{}",
        dir.path().join("handover.sock").display(),
        cluster.puerta_config(listen, "")
    );
    restarts_under_load("redis", &config, listen, dir.path(), |_| Ok(()))
}

#[test]
fn mongodb_mode_restarts_drop_nothing() -> anyhow::Result<()> {
    let stand_ins: Vec<StandIn> = (0..2).map(|_| StandIn::start()).collect::<Result<_, _>>()?;
    seed_names(&[(&stand_ins[0], "m0"), (&stand_ins[1], "m1")])?;
    let backends: Vec<String> = stand_ins.iter().map(|s| s.address()).collect();
    let dir = tempfile::tempdir()?;
    let listen = loopback(free_port());
    let config = format!(
        "handover_socket = \"{}\"\n{}",
        dir.path().join("handover.sock").display(),
        puerta_config(listen, 1000, &backends, "forwarding = \"auto\"")
            .replace("drain_timeout_sec = 60", "drain_timeout_sec = 10")
    );
    // Clients from six addresses, pinned by the first process (round-robin spreads them).
    let sources: Vec<String> = (61..67).map(|n| format!("127.0.0.{n}")).collect();
    let pinned = std::cell::RefCell::new(Vec::new());
    restarts_under_load("mongodb", &config, listen, dir.path(), |round| {
        if round == 0 {
            *pinned.borrow_mut() = probe(listen, &sources)?;
            return Ok(());
        }
        // The pins came along: asked in the opposite order (a fresh round-robin would place them
        // differently), every client reaches the stand-in it was pinned to.
        let reversed: Vec<String> = sources.iter().rev().cloned().collect();
        let mut now = probe(listen, &reversed)?;
        now.reverse();
        anyhow::ensure!(
            *pinned.borrow() == now,
            "round {round}: pins lost: {:?} then {now:?}",
            pinned.borrow()
        );
        Ok(())
    })
}

/// Kernel path: pymongo opens a cursor, Puerta is upgraded twice (the second time the new process
/// hands on pairs it adopted, still running on the first process's sockhash), then the cursor is
/// read to its end. The driver's pool must not have lost or replaced its one connection (its
/// monitoring connection breaking would have cleared the pool).
#[test]
fn a_spliced_cursor_survives_upgrades() -> anyhow::Result<()> {
    let stand_in = StandIn::start()?;
    let pins = PinDir::new("handover");
    let dir = tempfile::tempdir()?;
    let listen = loopback(free_port());
    let config = kernel_config(dir.path(), listen, stand_in.address().parse()?, &pins);
    let mut running = start_offering(&config, listen)?;
    let go = dir.path().join("go");
    let mut script = Command::new(puerta_tests::python());
    script
        .arg(puerta_tests::py_script("mongo_cursor_upgrade.py"))
        .arg(listen.to_string())
        .arg(&go);
    let mut client = Process::captured("cursor client", script)?;
    client.wait_for_output("OPENED", Duration::from_secs(60))?;
    let mut adopted = Vec::new();
    for round in 1..=2 {
        let (next, pairs) = upgrade_with_pairs(running, &config, listen, round)?;
        adopted.push(pairs);
        running = next;
    }
    anyhow::ensure!(
        adopted[0] == adopted[1],
        "the second upgrade adopted {} pairs, the first {}",
        adopted[1],
        adopted[0]
    );
    std::fs::write(&go, b"")?;
    let code = client.wait_exit(Duration::from_secs(60))?;
    let output = client.output();
    println!("{output}");
    anyhow::ensure!(
        code == Some(0) && output.contains("DONE created=1 closed=0 cleared=0"),
        "the driver's connection did not survive the upgrades ({code:?}):\n{output}\npuerta:\n{}",
        running.process.output()
    );
    kernel::stop(running)?;
    Ok(())
}

/// Kernel path: four streams echo seeded random bytes as fast as they can while Puerta is
/// upgraded twice, then half-close. Every byte must come back once and in order (hashes), and the
/// FIN each way is passed on by the process that adopted the pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spliced_streams_keep_every_byte_across_upgrades() -> anyhow::Result<()> {
    let echo = MongoEcho::start().await?;
    let pins = PinDir::new("handover-streams");
    let dir = tempfile::tempdir()?;
    let listen = loopback(free_port());
    let config = kernel_config(dir.path(), listen, echo.addr, &pins);
    let mut running = block_in_place(|| start_offering(&config, listen))?;
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = (0..4)
        .map(|seed| tokio::spawn(echo_until(listen, seed, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 1..=2 {
        let (next, pairs) = block_in_place(|| upgrade_with_pairs(running, &config, listen, round))?;
        anyhow::ensure!(pairs >= 4, "round {round}: {pairs} pairs adopted");
        running = next;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for stream in streams {
        let (moved, sent, received) = tokio::time::timeout(Duration::from_secs(60), stream)
            .await
            .map_err(|_| anyhow::anyhow!("a stream did not end"))???;
        println!("{moved} bytes each way");
        anyhow::ensure!(
            moved > 0 && sent == received,
            "{moved} bytes, hashes differ"
        );
    }
    block_in_place(|| kernel::stop(running))?;
    Ok(())
}

/// Kernel path: a thousand idle spliced connections move in one upgrade, each still its own pair
/// afterwards (a tag sent after the upgrade comes back to the client that sent it). They count
/// against the new process's `max_connections` (a thousand here): one more client is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_spliced_pairs_move_in_one_upgrade() -> anyhow::Result<()> {
    const CLIENTS: u64 = 1000;
    puerta_tests::pairs::raise_nofile(8 * CLIENTS + 1000);
    let echo = MongoEcho::start().await?;
    let pins = PinDir::new("handover-many");
    let dir = tempfile::tempdir()?;
    let listen = loopback(free_port());
    let config = kernel_config(dir.path(), listen, echo.addr, &pins).replace(
        "max_connections = 30000",
        &format!("max_connections = {CLIENTS}"),
    );
    let running = block_in_place(|| start_offering(&config, listen))?;
    let mut clients = puerta_tests::pairs::open_clients(listen, 0, CLIENTS).await?;
    let (next, adopted) = block_in_place(|| upgrade_with_pairs(running, &config, listen, 1))?;
    anyhow::ensure!(adopted == CLIENTS, "{adopted} of {CLIENTS} pairs adopted");
    for (index, client) in clients.iter_mut().enumerate() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tag = (index as u64 + 1_000_000).to_le_bytes();
        client.write_all(&tag).await?;
        let mut back = [0u8; 8];
        tokio::time::timeout(Duration::from_secs(30), client.read_exact(&mut back)).await??;
        anyhow::ensure!(
            back == tag,
            "client {index} got another client's bytes after the upgrade"
        );
    }
    let refused = puerta_tests::pairs::tagged_client(listen, CLIENTS).await;
    anyhow::ensure!(
        refused.is_err(),
        "a client beyond max_connections was served after the upgrade"
    );
    anyhow::ensure!(
        next.process
            .output()
            .contains("max_connections (1000) reached"),
        "no refusal logged:\n{}",
        next.process.output()
    );
    drop(clients);
    block_in_place(|| kernel::stop(next))?;
    Ok(())
}

/// Writes seeded random bytes until `stop`, then half-closes; reads the echo to EOF. Returns the
/// bytes written and the hashes of what was written and read.
async fn echo_until(
    proxy: std::net::SocketAddr,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(u64, u64, u64)> {
    use rand::{rngs::SmallRng, RngCore, SeedableRng};
    use tokio::io::AsyncWriteExt;
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(proxy).await?.into_split();
    let writer = tokio::spawn(async move {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        while !stop.load(Ordering::Relaxed) {
            rng.fill_bytes(&mut buf);
            hash.update(&buf);
            wr.write_all(&buf).await?;
            written += buf.len() as u64;
        }
        wr.shutdown().await?;
        anyhow::Ok((written, hash.digest()))
    });
    let (read, received) = puerta_tests::stream::drain_hashing(&mut rd).await?;
    let (written, sent) = writer.await??;
    anyhow::ensure!(read == written, "read {read} bytes back of {written}");
    Ok((written, sent, received))
}

fn kernel_config(
    dir: &Path,
    listen: std::net::SocketAddr,
    backend: std::net::SocketAddr,
    pins: &PinDir,
) -> String {
    format!(
        "handover_socket = \"{}\"\n{}",
        dir.join("handover.sock").display(),
        kernel::config(listen, &[backend], "kernel", &pins.0)
    )
}

fn start_offering(config: &str, listen: std::net::SocketAddr) -> anyhow::Result<Puerta> {
    let puerta = Puerta::start(config, listen)?;
    puerta
        .process
        .wait_for_output("offering the listening sockets", Duration::from_secs(60))?;
    Ok(puerta)
}

/// Starts the next Puerta, which takes over from `running`; checks that the old one handed its
/// spliced pairs over and exited at once (nothing left to drain), and that the new one adopted
/// them all. Returns the new one and how many pairs it adopted.
fn upgrade_with_pairs(
    mut running: Puerta,
    config: &str,
    listen: std::net::SocketAddr,
    round: usize,
) -> anyhow::Result<(Puerta, u64)> {
    let next = Puerta::start(config, listen)?;
    let old_pid = running.process.pid();
    let carried = next
        .process
        .wait_for_output("spliced pairs carried over", Duration::from_secs(60));
    if let Err(e) = carried {
        let old_log = running.process.output();
        anyhow::bail!("round {round}: {e}\nthe old process (pid {old_pid}):\n{old_log}");
    }
    let old_log = old_exits_cleanly(&mut running, round)?;
    anyhow::ensure!(
        old_log.contains("descriptors of live connections over to pid")
            && !old_log.contains("drain deadline reached"),
        "round {round}: the old process (pid {old_pid}) did not hand its pairs over:\n{old_log}"
    );
    let log = next.process.output();
    let adopted = logged_u64(&log, "spliced pairs carried over", "adopted");
    let refused = logged_u64(&log, "spliced pairs carried over", "refused");
    let Some(adopted) = adopted.filter(|&n| n >= 1 && refused == Some(0)) else {
        anyhow::bail!("round {round}: {adopted:?} adopted, {refused:?} refused:\n{log}");
    };
    let handed = logged_u64(&old_log, "kernel path totals", "handed_over_pairs");
    anyhow::ensure!(
        handed == Some(adopted),
        "round {round}: the old process says {handed:?} pairs handed over, {adopted} adopted"
    );
    println!("round {round}: {adopted} pairs adopted from pid {old_pid}");
    Ok((next, adopted))
}

fn restarts_under_load(
    mode: &str,
    config: &str,
    listen: std::net::SocketAddr,
    dir: &Path,
    after_round: impl Fn(usize) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut running = Puerta::start(config, listen)?;
    running
        .process
        .wait_for_output("offering the listening sockets", Duration::from_secs(60))?;
    let stop = dir.join("stop");
    let mut clients = Command::new(puerta_tests::python());
    clients
        .arg(puerta_tests::py_script("restart_clients.py"))
        .arg(mode)
        .arg("127.0.0.1")
        .arg(listen.port().to_string())
        .arg(&stop)
        .arg("6");
    let mut clients = Process::captured("restart clients", clients)?;
    clients.wait_for_output("STARTED", Duration::from_secs(60))?;
    after_round(0)?;
    std::thread::sleep(Duration::from_secs(1));
    for round in 1..=RESTARTS {
        let mut next = Puerta::start(config, listen)?;
        let old_pid = running.process.pid();
        next.process.wait_for_output(
            &format!("took over the listening sockets of pid {old_pid}"),
            Duration::from_secs(60),
        )?;
        next.process
            .wait_for_output("offering the listening sockets", Duration::from_secs(60))?;
        let old_log = old_exits_cleanly(&mut running, round)?;
        anyhow::ensure!(
            old_log.contains(&format!(
                "handed the listening sockets over to pid {}",
                next.process.pid()
            )),
            "round {round}:\n{old_log}"
        );
        anyhow::ensure!(
            !old_log.contains("drain deadline reached"),
            "round {round}: flows were cut at the drain deadline:\n{old_log}"
        );
        std::mem::swap(&mut running, &mut next);
        if mode == "mongodb" {
            let carried = Duration::from_secs(30);
            running
                .process
                .wait_for_output("affinity pins carried over", carried)?;
        }
        after_round(round)?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let puerta = || format!("last puerta:\n{}", running.process.output());
    let output = clients.finish(&stop, "ALL OK", Duration::from_secs(120), puerta)?;
    println!("{output}");
    Ok(())
}

/// Waits for the old process to exit after a hand-over; its log, if it exited 0.
fn old_exits_cleanly(old: &mut Puerta, round: usize) -> anyhow::Result<String> {
    let code = old.process.wait_exit(Duration::from_secs(60))?;
    let log = old.process.output();
    anyhow::ensure!(
        code == Some(0),
        "round {round}: the old process exited {code:?}:\n{log}"
    );
    Ok(log)
}
