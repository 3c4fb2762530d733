//! The L4 targets side by side: the backend itself, Puerta (kernel, splice and userspace paths) and
//! HAProxy (with and without forced splice).
//! A target that cannot start is kept in the list with the reason, so the table shows it as n/a.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::work;
use crate::bench::short_reason;
use crate::stack::net::{free_port, loopback, wait_for_port};
use crate::stack::puerta::Puerta;
use testkit::process::Process;

pub struct Target {
    pub name: String,
    /// Where clients connect, or why this target is not available.
    pub addr: Result<SocketAddr, String>,
    /// The proxy process whose CPU and memory we account (None for direct).
    pub pid: Option<u32>,
    /// The most connections it was configured to hold, when that is below what the descriptor
    /// limit allows (HAProxy with forced splice reserves pipes up front).
    pub max_conns: Option<usize>,
    _keep: Option<Box<dyn std::any::Any>>,
}

impl Target {
    pub fn fail(&mut self, reason: String) {
        eprintln!("    {}: {reason}", self.name);
        self.addr = Err(reason);
    }
}

/// Starts one row's proxy when called.
type StartTarget<'a> = Box<dyn Fn() -> Target + 'a>;

/// `max_conns`: what a proxy can hold within the descriptor limit it inherits from us.
/// `PUERTA_BENCH_TARGETS` (comma-separated parts of row names) keeps only matching rows besides the
/// direct one, for a quick look at one path; `PUERTA_BENCH_MONGODB_EXTRA` is appended to Puerta's
/// `[mongodb]` section (e.g. `kernel_backlog_kib = 1024`) to measure a setting.
pub fn start_all(backend: SocketAddr, dir: &Path, max_conns: usize) -> Vec<Target> {
    let only: Vec<String> = std::env::var("PUERTA_BENCH_TARGETS")
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let wanted =
        |name: &str| only.is_empty() || only.iter().any(|part| name.contains(part.as_str()));
    let all: Vec<(&str, StartTarget<'_>)> = vec![
        (
            "puerta kernel path",
            Box::new(|| puerta("puerta kernel path", "kernel", backend, dir)),
        ),
        (
            "puerta splice path",
            Box::new(|| puerta("puerta splice path", "splice", backend, dir)),
        ),
        (
            "puerta userspace path",
            Box::new(|| puerta("puerta userspace path", "userspace", backend, dir)),
        ),
        (
            "haproxy mode tcp, nbthread 1",
            Box::new(|| haproxy(1, HaproxySplice::Off, backend, dir, max_conns)),
        ),
        (
            "haproxy mode tcp, nbthread 1, forced splice",
            Box::new(|| haproxy(1, HaproxySplice::Forced, backend, dir, max_conns)),
        ),
        (
            "haproxy mode tcp, nbthread 2",
            Box::new(|| haproxy(2, HaproxySplice::Off, backend, dir, max_conns)),
        ),
    ];
    let direct = Target {
        name: "direct to backend".into(),
        addr: Ok(backend),
        pid: None,
        max_conns: None,
        _keep: None,
    };
    std::iter::once(direct)
        .chain(
            all.into_iter()
                .filter(|(name, _)| wanted(name))
                .map(|(_, start)| start()),
        )
        .collect()
}

fn puerta(name: &str, forwarding: &str, backend: SocketAddr, dir: &Path) -> Target {
    let started = (|| {
        let listen = loopback(free_port()?);
        let config = format!(
            "mode = \"mongodb\"\nlisten_addr = \"{listen}\"\nmax_connections = 50000\n\
             drain_timeout_sec = 1\n\n[mongodb]\nmongos_endpoints = [\"{backend}\"]\n\
             session_affinity_enabled = true\nhealth_check_interval_sec = 2\n\
             forwarding = \"{forwarding}\"\n{}",
            std::env::var("PUERTA_BENCH_MONGODB_EXTRA").unwrap_or_default()
        );
        let file = format!("puerta-{forwarding}");
        let mut p = Puerta::start(&file, &config, listen, dir)?;
        wait_until_forwarding(listen, &mut p.proc)?;
        Ok::<_, anyhow::Error>(p)
    })();
    match started {
        Ok(p) => Target {
            name: name.into(),
            addr: Ok(p.listen),
            pid: Some(p.proc.pid()),
            max_conns: None,
            _keep: Some(Box::new(p)),
        },
        Err(e) => not_available(name, &e),
    }
}

/// HAProxy's own splice(2) use: off by default in `mode tcp`; `Forced` turns on
/// `option splice-request` and `option splice-response`, the peer a zero-copy path must beat.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HaproxySplice {
    Off,
    Forced,
}

fn haproxy(
    threads: u32,
    splice: HaproxySplice,
    backend: SocketAddr,
    dir: &Path,
    max_conns: usize,
) -> Target {
    let (suffix, options) = match splice {
        HaproxySplice::Off => ("", ""),
        HaproxySplice::Forced => (
            ", forced splice",
            "    option splice-request\n    option splice-response\n",
        ),
    };
    // Each spliced flow may hold a pipe (two descriptors; `maxpipes` defaults to maxconn/4), which
    // HAProxy reserves up front: 3/4 of the connections keep it inside the same descriptor limit.
    let max_conns = match splice {
        HaproxySplice::Off => max_conns,
        HaproxySplice::Forced => max_conns * 3 / 4,
    };
    let name = format!("haproxy mode tcp, nbthread {threads}{suffix}");
    let file = format!(
        "haproxy-{threads}{}",
        if suffix.is_empty() { "" } else { "-splice" }
    );
    let started = (|| {
        let listen = loopback(free_port()?);
        let config = format!(
            "global\n    nbthread {threads}\n    maxconn {max_conns}\n\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 5m\n    timeout server 5m\n\n\
             listen bench\n    bind {listen}\n{options}    server backend {backend}\n"
        );
        let cfg = dir.join(format!("{file}.cfg"));
        std::fs::write(&cfg, config)?;
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db").arg("-f").arg(&cfg);
        let mut proc = Process::logged(&name, cmd, &dir.join(format!("{file}.log")))?;
        wait_for_port(listen, &mut proc, Duration::from_secs(10))?;
        wait_until_forwarding(listen, &mut proc)?;
        Ok::<_, anyhow::Error>((listen, proc))
    })();
    match started {
        Ok((listen, proc)) => Target {
            name,
            addr: Ok(listen),
            pid: Some(proc.pid()),
            max_conns: (splice == HaproxySplice::Forced).then_some(max_conns),
            _keep: Some(Box::new(proc)),
        },
        Err(e) => not_available(&name, &e),
    }
}

/// A proxy may accept before its first health check passed; wait until an echo goes through.
fn wait_until_forwarding(addr: SocketAddr, proc: &mut Process) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        crate::interrupt::check()?;
        proc.ensure_running()?;
        match work::probe(addr) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                anyhow::bail!("accepts on {addr} but does not forward: {e:#}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn not_available(name: &str, error: &anyhow::Error) -> Target {
    let reason = short_reason(error);
    eprintln!("    {name}: not available: {reason}");
    Target {
        name: name.into(),
        addr: Err(reason),
        pid: None,
        max_conns: None,
        _keep: None,
    }
}
