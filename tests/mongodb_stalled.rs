//! A peer that stops reading, through the real binary on the path `mongo::forwarding` picks (this
//! file also runs as `mongodb_stalled_splice`): the other peer is held back by TCP after a bounded
//! number of bytes, and once the reader resumes every byte arrives, in order. (The kernel path cannot
//! hold a sender back; see docs/kernel.md.) The tests run one at a time: buffers autotune to the
//! load, so a stalled flow next to a hundred others is not the same measurement.

use std::time::Duration;

use puerta_tests::kernel::{start, stop, PinDir};
use puerta_tests::mongo::forwarding;
use puerta_tests::mongo_echo::MongoEcho;
use puerta_tests::stream::{drain_hashing, push_until_stalled};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOTAL: u64 = 256 << 20;
const QUIET: Duration = Duration::from_secs(2);

/// Held by each test for its whole run (tokio's mutex works across the tests' runtimes).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The most one value of `/proc/sys/net/ipv4/{name}` (its third field) lets a socket buffer grow to.
fn buffer_max(name: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))?;
    let max = text
        .split_whitespace()
        .nth(2)
        .ok_or_else(|| anyhow::anyhow!("{name}: {text}"))?;
    Ok(max.parse()?)
}

/// What a writer may get into a stalled path: the buffers on the way as this host's sysctls let them
/// grow — the writer's send buffer, Puerta's receive and send buffers, the reader's receive buffer
/// (plus what Puerta itself holds, well under one buffer). With Linux's defaults (4 MiB, 6 MiB)
/// that is 20 MiB.
fn stall_bound() -> anyhow::Result<u64> {
    Ok(2 * buffer_max("tcp_wmem")? + 2 * buffer_max("tcp_rmem")?)
}

async fn connected_pair(
    backend: &mut MongoEcho,
    puerta: &puerta_tests::Puerta,
) -> anyhow::Result<(TcpStream, TcpStream)> {
    let mut client = TcpStream::connect(puerta.listen).await?;
    client.write_all(b"ping").await?;
    let rx = backend.accepted.as_mut().expect("handing-over backend");
    let mut server = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("backend stopped"))?;
    let mut ping = [0u8; 4];
    server.read_exact(&mut ping).await?;
    anyhow::ensure!(&ping == b"ping", "first bytes differ");
    Ok((client, server))
}

/// Which peer stops reading; the other one writes.
#[derive(Clone, Copy)]
enum Stalls {
    Backend,
    Client,
}

/// The writer is held back within [`stall_bound`], then the reader drains every byte in order.
async fn stalled_peer_holds_the_writer_back(stalls: Stalls) -> anyhow::Result<()> {
    let _serial = ONE_AT_A_TIME.lock().await;
    let bound = stall_bound()?;
    let mut backend = MongoEcho::start_handing_over().await?;
    let pins = PinDir::new("stall");
    let puerta = start(&[backend.addr], &forwarding(), &pins).await?;
    let (client, server) = connected_pair(&mut backend, &puerta).await?;
    let (reader, writer) = match stalls {
        Stalls::Backend => (server, client),
        Stalls::Client => (client, server),
    };
    let (_writer_rd, writer_wr) = writer.into_split();
    let stalled = push_until_stalled(writer_wr, TOTAL, 7, QUIET).await?;
    let pushed = stalled.pushed_when_blocked;
    eprintln!("{}: writer held back after {pushed} bytes", forwarding());
    assert!(
        pushed <= bound,
        "{pushed} bytes went into a path whose reader stopped (bound {bound})"
    );
    let (got, got_hash) = drain_hashing(reader).await?;
    let sent_hash = stalled.writer.await??;
    assert_eq!(got, TOTAL, "bytes lost or added");
    assert_eq!(got_hash, sent_hash, "bytes reordered or changed");
    stop(puerta)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_reading_holds_the_client_back_and_loses_nothing() -> anyhow::Result<()>
{
    stalled_peer_holds_the_writer_back(Stalls::Backend).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_the_backend_back_and_loses_nothing() -> anyhow::Result<()>
{
    stalled_peer_holds_the_writer_back(Stalls::Client).await
}

fn mem_available() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .ok_or_else(|| anyhow::anyhow!("no MemAvailable"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("bad MemAvailable line"))?
        .parse()?;
    Ok(kib * 1024)
}

/// Many stalled flows at once: what the host loses is what the buffers on the way hold, about what
/// one stalled flow pushed each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_stalled_backends_cost_bounded_memory() -> anyhow::Result<()> {
    let _serial = ONE_AT_A_TIME.lock().await;
    let bound = stall_bound()?;
    const FLOWS: usize = 100;
    let mut backend = MongoEcho::start_handing_over().await?;
    let pins = PinDir::new("stall-100");
    let puerta = start(&[backend.addr], &forwarding(), &pins).await?;
    let before = mem_available()?;
    let mut stalled = Vec::new();
    let mut servers = Vec::new();
    for i in 0..FLOWS {
        let (client, server) = connected_pair(&mut backend, &puerta).await?;
        let (_rd, wr) = client.into_split();
        stalled.push(tokio::spawn(push_until_stalled(wr, TOTAL, i as u64, QUIET)));
        servers.push(server);
    }
    let mut pushed = 0;
    let mut writers = Vec::new();
    for s in stalled {
        let s = s.await??;
        pushed += s.pushed_when_blocked;
        writers.push(s.writer);
    }
    let after = mem_available()?;
    let drop_bytes = before.saturating_sub(after);
    eprintln!(
        "{}: {FLOWS} stalled flows pushed {pushed} bytes; MemAvailable fell by {drop_bytes}",
        forwarding()
    );
    assert!(pushed <= FLOWS as u64 * bound, "pushed {pushed}");
    assert!(
        drop_bytes <= FLOWS as u64 * bound,
        "MemAvailable fell by {drop_bytes} for {FLOWS} stalled flows"
    );
    for w in writers {
        w.abort();
    }
    drop(servers);
    stop(puerta)?;
    Ok(())
}
