//! The client side of each L4 workload, with blocking sockets and one thread per stream so that the
//! client's own overhead stays small and predictable.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::backend::{preamble, MODE_ECHO, MODE_SINK, MODE_STALL};
use crate::bench::stats;
use testkit::opmsg;

const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// `bytes` split over `streams` connections into the sink; returns Gbit/s. Every stream checks that the
/// backend counted exactly what it sent.
pub fn bulk(addr: SocketAddr, streams: usize, bytes: u64) -> anyhow::Result<f64> {
    let per_stream = bytes / streams as u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..streams)
        .map(|_| std::thread::spawn(move || send_to_sink(addr, per_stream)))
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("bulk stream panicked"))??;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((per_stream * streams as u64) as f64 * 8.0 / secs / 1e9)
}

fn send_to_sink(addr: SocketAddr, bytes: u64) -> anyhow::Result<()> {
    let mut s = connect(addr)?;
    s.write_all(&preamble(MODE_SINK))?;
    let chunk = vec![0x5au8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count)
        .context("waiting for the sink's byte count")?;
    let got = u64::from_le_bytes(count);
    if got != bytes {
        bail!("sink counted {got} bytes, sent {bytes}");
    }
    Ok(())
}

/// `flows` connections to a backend that reads nothing: each pushes until a write stays blocked
/// for `BLOCKED` (held back), `cap` bytes went in, or `within` passed. Returns the bytes the
/// proxy accepted in all, and the connections, still open (the caller measures, then closes them
/// and releases the backend).
pub fn push_to_stalled(
    addr: SocketAddr,
    flows: usize,
    cap: u64,
    within: Duration,
) -> anyhow::Result<(u64, Vec<TcpStream>)> {
    let deadline = Instant::now() + within;
    let handles: Vec<_> = (0..flows)
        .map(|_| std::thread::spawn(move || push_until_blocked(addr, cap, deadline)))
        .collect();
    let mut total = 0;
    let mut conns = Vec::with_capacity(flows);
    for h in handles {
        let (pushed, conn) = h
            .join()
            .map_err(|_| anyhow::anyhow!("stalled stream panicked"))??;
        total += pushed;
        conns.push(conn);
    }
    Ok((total, conns))
}

/// A write blocked this long means the proxy holds the sender back.
const BLOCKED: Duration = Duration::from_millis(500);

fn push_until_blocked(
    addr: SocketAddr,
    cap: u64,
    deadline: Instant,
) -> anyhow::Result<(u64, TcpStream)> {
    let mut s = connect(addr)?;
    s.write_all(&preamble(MODE_STALL))?;
    s.set_write_timeout(Some(BLOCKED))?;
    let chunk = vec![0x5au8; 256 * 1024];
    let mut pushed = 0u64;
    while pushed < cap && Instant::now() < deadline {
        let n = (cap - pushed).min(chunk.len() as u64) as usize;
        match s.write(&chunk[..n]) {
            Ok(n) => pushed += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e).context("pushing to a stalled backend"),
        }
    }
    Ok((pushed, s))
}

pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

/// 64-byte request, 64-byte echo, `round_trips` times on one connection (after a short warm-up).
pub fn ping_pong(addr: SocketAddr, round_trips: usize) -> anyhow::Result<Latency> {
    let mut s = connect(addr)?;
    s.write_all(&preamble(MODE_ECHO))?;
    let request = [0x42u8; 64];
    let mut reply = [0u8; 64];
    let warm_up = (round_trips / 10).min(1000);
    let mut samples = Vec::with_capacity(round_trips);
    for i in 0..warm_up + round_trips {
        let t = Instant::now();
        s.write_all(&request)?;
        s.read_exact(&mut reply)?;
        if i >= warm_up {
            samples.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
    }
    if reply != request {
        bail!("echo returned different bytes");
    }
    Ok(Latency {
        p50_us: stats::percentile(&mut samples, 0.50),
        p99_us: stats::percentile(&mut samples, 0.99),
        p999_us: stats::percentile(&mut samples, 0.999),
    })
}

/// Connect, send a MongoDB hello, read the whole reply, close; returns connections per second.
pub fn connect_rate(addr: SocketAddr, connections: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    for i in 0..connections {
        let mut s = connect(addr)?;
        s.write_all(&opmsg::hello_request(i as i32))?;
        let mut header = [0u8; opmsg::HEADER_LEN];
        s.read_exact(&mut header).context("hello reply")?;
        let (len, _, opcode) = opmsg::parse_header(&header);
        if opcode != opmsg::OP_MSG || len < opmsg::HEADER_LEN {
            bail!("hello reply is not an OP_MSG");
        }
        let mut body = vec![0u8; len - opmsg::HEADER_LEN];
        s.read_exact(&mut body)?;
    }
    Ok(connections as f64 / start.elapsed().as_secs_f64())
}

/// Opens `count` connections, each proven end-to-end by a one-byte echo, and keeps them open.
pub fn open_idle(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        let mut s = connect(addr).with_context(|| format!("idle connection {i}"))?;
        s.write_all(&preamble(MODE_ECHO))?;
        s.write_all(b"x")?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
            .with_context(|| format!("idle connection {i}: echo"))?;
        conns.push(s);
    }
    Ok(conns)
}

/// One echo round trip; used to wait until a freshly started proxy forwards.
pub fn probe(addr: SocketAddr) -> anyhow::Result<()> {
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(&preamble(MODE_ECHO))?;
    s.write_all(b"?")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(())
}
