//! The MongoDB / L4 suite: the same workloads against every target, interleaved round by round
//! (A/B/A/B) so that a noisy moment on the machine hits every target alike.

mod backend;
mod targets;
mod work;

use std::path::Path;
use std::time::Duration;

use super::procstat;
use super::report::{Column, Row, Table};
use super::short_reason;
use super::stats::median;
use crate::interrupt;
use targets::Target;

const GIB: f64 = (1u64 << 30) as f64;

pub struct Sizes {
    pub rounds: usize,
    pub bulk_bytes: u64,
    pub round_trips: usize,
    pub connections: usize,
    pub idle: usize,
    /// The most connections a proxy can hold within the descriptor limit.
    pub max_conns: usize,
    /// How long clients push toward a stalled backend, and how many at once in the second step.
    pub stall_for: Duration,
    pub stalled_flows: usize,
}

impl Sizes {
    /// `nofile`: our descriptor limit, which the proxies inherit. A proxy needs two descriptors per
    /// connection, and so do we (client and backend ends), which caps the idle count.
    pub fn new(quick: bool, nofile: u64) -> Sizes {
        let mut sizes = Self::wanted(quick);
        let fd_cap = (nofile.saturating_sub(200) / 2) as usize;
        sizes.idle = sizes.idle.min(fd_cap);
        sizes.max_conns = (nofile.saturating_sub(20) / 2) as usize;
        sizes
    }

    fn wanted(quick: bool) -> Sizes {
        if quick {
            Sizes {
                rounds: 3,
                bulk_bytes: 64 << 20,
                round_trips: 2_000,
                connections: 200,
                idle: 500,
                max_conns: 0,
                stall_for: Duration::from_secs(1),
                stalled_flows: 10,
            }
        } else {
            Sizes {
                rounds: 3,
                bulk_bytes: 1 << 30,
                round_trips: 100_000,
                connections: 3_000,
                idle: 10_000,
                max_conns: 0,
                stall_for: Duration::from_secs(4),
                stalled_flows: 100,
            }
        }
    }
}

/// Everything measured for one target; one entry per round where it applies.
#[derive(Default)]
struct Measured {
    bulk1: Vec<f64>,
    bulk8: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    p999: Vec<f64>,
    conn_rate: Vec<f64>,
    rss_per_conn: Option<f64>,
    kernel_per_conn: Option<f64>,
    bulk_cpu: f64,
    bulk_machine_cpu: f64,
    bulk_bytes: f64,
    ping_cpu: f64,
    ping_round_trips: f64,
    /// MiB one client pushed toward a backend that stopped reading.
    stalled_one_mib: Option<f64>,
    /// MemAvailable drop, MiB, with `Sizes::stalled_flows` such clients at once.
    stalled_many_mem_mib: Option<f64>,
}

/// What one stalled client may push at most: the kernel path holds nobody back, and the bench must
/// not take the machine's memory with it.
const STALL_CAP_ONE: u64 = 1 << 30;
const STALL_CAP_EACH: u64 = 32 << 20;

pub fn run(dir: &Path, sizes: &Sizes) -> anyhow::Result<Table> {
    let backend = backend::Backend::start()?;
    eprintln!("==> L4 targets (backend on {})", backend.addr);
    let mut targets = targets::start_all(backend.addr, dir, sizes.max_conns);
    let mut measured: Vec<Measured> = targets.iter().map(|_| Measured::default()).collect();

    eprintln!(
        "==> stalled backends (1 flow, then {} at once)",
        sizes.stalled_flows
    );
    for (t, m) in targets.iter_mut().zip(&mut measured) {
        attempt(t, |addr, _| stalled(addr, &backend, sizes, m))?;
    }
    eprintln!("==> {} idle connections per target", sizes.idle);
    for (t, m) in targets.iter_mut().zip(&mut measured) {
        // A target configured for fewer connections (HAProxy's forced splice reserves pipes) is
        // measured with what it holds, a few short of its limit; per-connection figures compare.
        let n = match t.max_conns {
            Some(max) if max.saturating_sub(16) < sizes.idle => {
                let n = max.saturating_sub(16);
                t.name = format!("{} ({n} idle)", t.name);
                n
            }
            _ => sizes.idle,
        };
        attempt(t, |addr, pid| idle(addr, pid, n, m))?;
    }
    for round in 1..=sizes.rounds {
        eprintln!("==> round {round}/{}", sizes.rounds);
        for (t, m) in targets.iter_mut().zip(&mut measured) {
            attempt(t, |addr, pid| bulk(addr, pid, sizes.bulk_bytes, m))?;
        }
        for (t, m) in targets.iter_mut().zip(&mut measured) {
            attempt(t, |addr, pid| ping(addr, pid, sizes.round_trips, m))?;
        }
        for (t, m) in targets.iter_mut().zip(&mut measured) {
            attempt(t, |addr, _| {
                m.conn_rate
                    .push(work::connect_rate(addr, sizes.connections)?);
                Ok(())
            })?;
        }
    }
    Ok(table(&targets, &measured, sizes))
}

/// Runs one workload on `target` unless it already failed; a failure marks it n/a from then on.
fn attempt(
    target: &mut Target,
    work: impl FnOnce(std::net::SocketAddr, Option<u32>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    interrupt::check()?;
    let Ok(addr) = target.addr else {
        return Ok(());
    };
    if let Err(e) = work(addr, target.pid) {
        target.fail(short_reason(&e));
    }
    Ok(())
}

fn cpu(pid: Option<u32>) -> f64 {
    pid.and_then(|p| procstat::cpu_seconds(p).ok())
        .unwrap_or(0.0)
}

fn bulk(
    addr: std::net::SocketAddr,
    pid: Option<u32>,
    bytes: u64,
    m: &mut Measured,
) -> anyhow::Result<()> {
    let before = cpu(pid);
    let machine_before = procstat::machine_busy_seconds()?;
    m.bulk1.push(work::bulk(addr, 1, bytes)?);
    m.bulk8.push(work::bulk(addr, 8, bytes)?);
    m.bulk_cpu += cpu(pid) - before;
    m.bulk_machine_cpu += procstat::machine_busy_seconds()? - machine_before;
    m.bulk_bytes += 2.0 * bytes as f64;
    Ok(())
}

fn ping(
    addr: std::net::SocketAddr,
    pid: Option<u32>,
    n: usize,
    m: &mut Measured,
) -> anyhow::Result<()> {
    let before = cpu(pid);
    let lat = work::ping_pong(addr, n)?;
    m.ping_cpu += cpu(pid) - before;
    m.ping_round_trips += n as f64;
    m.p50.push(lat.p50_us);
    m.p99.push(lat.p99_us);
    m.p999.push(lat.p999_us);
    Ok(())
}

/// Pushes toward a backend that reads nothing: what one client gets in, and what a hundred
/// cost the machine. Each step ends with the clients closed and the backend letting go, so the
/// memory is back before the next target.
fn stalled(
    addr: std::net::SocketAddr,
    backend: &backend::Backend,
    sizes: &Sizes,
    m: &mut Measured,
) -> anyhow::Result<()> {
    let (one, conns) = work::push_to_stalled(addr, 1, STALL_CAP_ONE, sizes.stall_for)?;
    m.stalled_one_mib = Some(one as f64 / (1u64 << 20) as f64);
    let let_go = |conns: Vec<std::net::TcpStream>| {
        drop(conns);
        backend.release_stalled();
        std::thread::sleep(Duration::from_secs(2));
    };
    let_go(conns);
    let before = procstat::mem_available_kib()?;
    let flows = sizes.stalled_flows;
    let (_, conns) = work::push_to_stalled(addr, flows, STALL_CAP_EACH, sizes.stall_for)?;
    let after = procstat::mem_available_kib()?;
    m.stalled_many_mem_mib = Some((before - after) / 1024.0);
    let_go(conns);
    Ok(())
}

/// Once per target, before any other load, so that the proxy's allocator starts from the same state.
fn idle(
    addr: std::net::SocketAddr,
    pid: Option<u32>,
    n: usize,
    m: &mut Measured,
) -> anyhow::Result<()> {
    let rss = |pid: Option<u32>| pid.and_then(|p| procstat::rss_kib(p).ok());
    let (rss_before, kernel_before) = (rss(pid), procstat::kernel_kib()?);
    let conns = work::open_idle(addr, n)?;
    std::thread::sleep(Duration::from_millis(500));
    let (rss_after, kernel_after) = (rss(pid), procstat::kernel_kib()?);
    drop(conns);
    std::thread::sleep(Duration::from_millis(500));
    m.rss_per_conn = rss_before.zip(rss_after).map(|(b, a)| (a - b) / n as f64);
    m.kernel_per_conn = Some((kernel_after - kernel_before) / n as f64);
    Ok(())
}

fn table(targets: &[Target], measured: &[Measured], sizes: &Sizes) -> Table {
    let columns = vec![
        Column::new("1 stream Gbit/s", 2, true),
        Column::new("8 streams Gbit/s", 2, true),
        Column::new("ping-pong p50 µs", 1, true),
        Column::new("p99 µs", 1, true),
        Column::new("p99.9 µs", 1, true),
        Column::new("connect+hello+close /s", 0, true),
        Column::new(
            &format!("proxy RSS KiB/conn ({} idle)", sizes.idle),
            2,
            false,
        ),
        Column::new("kernel KiB/conn", 2, true),
        Column::new("proxy CPU s/GiB", 3, false),
        Column::new("machine CPU s/GiB", 3, true),
        Column::new("proxy CPU s/100k RT", 3, false),
        Column::new(
            &format!(
                "stalled backend: MiB one client pushes in {} s (cap {})",
                sizes.stall_for.as_secs(),
                STALL_CAP_ONE >> 20
            ),
            1,
            false,
        ),
        Column::new(
            &format!(
                "MemAvailable drop MiB, {} stalled (cap {} each)",
                sizes.stalled_flows,
                STALL_CAP_EACH >> 20
            ),
            1,
            false,
        ),
    ];
    let rows = targets
        .iter()
        .zip(measured)
        .map(|(t, m)| Row {
            target: t.name.clone(),
            values: t.addr.as_ref().map_err(Clone::clone).map(|_| {
                let proxy = t.pid.is_some();
                vec![
                    median(&m.bulk1),
                    median(&m.bulk8),
                    median(&m.p50),
                    median(&m.p99),
                    median(&m.p999),
                    median(&m.conn_rate),
                    m.rss_per_conn,
                    m.kernel_per_conn,
                    (proxy && m.bulk_bytes > 0.0).then(|| m.bulk_cpu / (m.bulk_bytes / GIB)),
                    (m.bulk_bytes > 0.0).then(|| m.bulk_machine_cpu / (m.bulk_bytes / GIB)),
                    (proxy && m.ping_round_trips > 0.0)
                        .then(|| m.ping_cpu / (m.ping_round_trips / 100_000.0)),
                    m.stalled_one_mib,
                    m.stalled_many_mem_mib,
                ]
            }),
        })
        .collect();
    Table {
        title: format!(
            "MongoDB / L4 (bulk {} MiB per run, {} round trips, {} connects, median of {} rounds)",
            sizes.bulk_bytes >> 20,
            sizes.round_trips,
            sizes.connections,
            sizes.rounds
        ),
        columns,
        rows,
    }
}
