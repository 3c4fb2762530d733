//! Load generators: bulk streams into the sink and a 64-byte ping-pong, plus CPU accounting from /proc.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Clock ticks per second of /proc CPU times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

pub struct Throughput {
    pub gbit_per_s: f64,
    /// CPU seconds of the proxy process per GiB moved (0 for direct).
    pub proxy_cpu_per_gib: f64,
    /// CPU seconds of the whole machine per GiB (client, backend, proxy, softirq, kworkers).
    pub machine_cpu_per_gib: f64,
}

/// `streams` connections write as fast as they can into the sink for `secs` (after a warm-up).
pub fn throughput(
    target: SocketAddr,
    streams: usize,
    secs: f64,
    sunk: &AtomicU64,
    proxy_pid: Option<u32>,
) -> anyhow::Result<Throughput> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..streams {
        let mut sock = TcpStream::connect(target)?;
        sock.set_nodelay(true)?;
        sock.write_all(b"S")?;
        let stop = stop.clone();
        writers.push(std::thread::spawn(move || {
            let buf = vec![0x5au8; 256 * 1024];
            while !stop.load(Ordering::Relaxed) {
                if sock.write_all(&buf).is_err() {
                    break;
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (b0, p0, m0, t0) = (
        sunk.load(Ordering::Relaxed),
        proc_cpu(proxy_pid),
        machine_busy(),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (b1, p1, m1, elapsed) = (
        sunk.load(Ordering::Relaxed),
        proc_cpu(proxy_pid),
        machine_busy(),
        t0.elapsed(),
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    let bytes = b1 - b0;
    let gib = bytes as f64 / (1u64 << 30) as f64;
    Ok(Throughput {
        gbit_per_s: bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9,

        proxy_cpu_per_gib: (p1 - p0) / gib,
        machine_cpu_per_gib: (m1 - m0) / gib,
    })
}

/// Round-trip times of `rounds` 64-byte messages on one connection, in microseconds: (p50, p99).
pub fn ping_pong(target: SocketAddr, rounds: usize) -> anyhow::Result<(f64, f64)> {
    let mut sock = TcpStream::connect(target)?;
    sock.set_nodelay(true)?;
    sock.write_all(b"E")?;
    let msg = [0x42u8; 64];
    let mut back = [0u8; 64];
    // Warm-up: the first rounds include the splice set-up.
    for _ in 0..200 {
        sock.write_all(&msg)?;
        sock.read_exact(&mut back)?;
    }
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        sock.write_all(&msg)?;
        sock.read_exact(&mut back)?;
        rtts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    rtts.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)];
    Ok((at(0.50), at(0.99)))
}

/// utime + stime of `pid` in seconds (0 without a pid).
fn proc_cpu(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(14) + field(15)) / TICKS
}

/// Busy CPU seconds of the whole machine (all but idle and iowait).
fn machine_busy() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle) / TICKS
}
