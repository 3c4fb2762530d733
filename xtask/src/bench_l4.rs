//! `cargo xtask bench-l4`: the MongoDB-mode data paths side by side on this machine — direct, Puerta
//! kernel splice, Puerta userspace, HAProxy (`mode tcp`) — for bulk throughput (1 and 8 streams), 64-byte
//! ping-pong latency and CPU per GiB. Not a test: it prints numbers, it asserts nothing.

mod backend;
mod load;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backend::Backend;

pub struct Options {
    pub secs: f64,
    pub rounds: usize,
}

/// A proxy process under test, killed on drop.
struct Proxy {
    name: &'static str,
    addr: SocketAddr,
    child: Option<Child>,
    _dir: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--package", "puerta-userspace"])
        .env("PUERTA_REQUIRE_EBPF", "1")
        .current_dir(&root)
        .status()?;
    anyhow::ensure!(status.success(), "release build failed");
    let puerta = root.join("target/release/puerta");
    let backend = Backend::start()?;
    let mut rows = Vec::new();
    rows.push(measure("direct", backend.addr, None, &backend, &opts)?);
    for (name, forwarding) in [
        ("puerta kernel", "kernel"),
        ("puerta userspace", "userspace"),
    ] {
        let proxy = start_puerta(&puerta, name, forwarding, backend.addr)?;
        rows.push(measure(
            proxy.name,
            proxy.addr,
            proxy.child.as_ref().map(Child::id),
            &backend,
            &opts,
        )?);
    }
    match start_haproxy(backend.addr) {
        Ok(proxy) => rows.push(measure(
            proxy.name,
            proxy.addr,
            proxy.child.as_ref().map(Child::id),
            &backend,
            &opts,
        )?),
        Err(e) => eprintln!("haproxy skipped: {e}"),
    }
    print_table(&rows);
    Ok(())
}

struct Row {
    name: &'static str,
    one: load::Throughput,
    eight: load::Throughput,
    p50_us: f64,
    p99_us: f64,
}

fn measure(
    name: &'static str,
    addr: SocketAddr,
    pid: Option<u32>,
    backend: &Backend,
    opts: &Options,
) -> anyhow::Result<Row> {
    eprintln!("measuring {name} ...");
    let one = load::throughput(addr, 1, opts.secs, &backend.sunk, pid)?;
    let eight = load::throughput(addr, 8, opts.secs, &backend.sunk, pid)?;
    let (p50_us, p99_us) = load::ping_pong(addr, opts.rounds)?;
    Ok(Row {
        name,
        one,
        eight,
        p50_us,
        p99_us,
    })
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<18} {:>10} {:>10} {:>9} {:>9} {:>13} {:>13} {:>13}",
        "path",
        "1s Gbit/s",
        "8s Gbit/s",
        "p50 us",
        "p99 us",
        "proxy CPU-s/GiB",
        "machine CPU-s/GiB",
        "(8 streams)"
    );
    for r in rows {
        println!(
            "{:<18} {:>10.2} {:>10.2} {:>9.1} {:>9.1} {:>15.3} {:>17.3}",
            r.name,
            r.one.gbit_per_s,
            r.eight.gbit_per_s,
            r.p50_us,
            r.p99_us,
            r.eight.proxy_cpu_per_gib,
            r.eight.machine_cpu_per_gib,
        );
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            // Let the first health round finish.
            std::thread::sleep(Duration::from_millis(1500));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("nothing listening on {addr}")
}

fn start_puerta(
    bin: &Path,
    name: &'static str,
    forwarding: &str,
    backend: SocketAddr,
) -> anyhow::Result<Proxy> {
    let addr = free_addr()?;
    let dir =
        std::env::temp_dir().join(format!("puerta-bench-{}-{forwarding}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("puerta.toml");
    std::fs::write(
        &config,
        format!(
            "mode = \"mongodb\"\nlisten_addr = \"{addr}\"\ndrain_timeout_sec = 2\n\n[mongodb]\nmongos_endpoints = [\"{backend}\"]\n\
             forwarding = \"{forwarding}\"\nbpf_pin_dir = \"/sys/fs/bpf/puerta-bench\"\n"
        ),
    )?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let proxy = Proxy {
        name,
        addr,
        child: Some(child),
        _dir: dir,
    };
    wait_ready(addr)?;
    Ok(proxy)
}

fn start_haproxy(backend: SocketAddr) -> anyhow::Result<Proxy> {
    let addr = free_addr()?;
    let dir = std::env::temp_dir().join(format!("puerta-bench-{}-haproxy", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  \
             timeout server 60s\nfrontend f\n  bind {addr}\n  default_backend b\nbackend b\n  server s1 {backend}\n"
        ),
    )?;
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let proxy = Proxy {
        name: "haproxy 2.6",
        addr,
        child: Some(child),
        _dir: dir,
    };
    wait_ready(addr)?;
    Ok(proxy)
}
