//! Bulk integrity checks without holding GiBs in memory: the sender regenerates a seeded PRNG stream,
//! both sides hash what they saw (xxh3), and only the hashes are compared.

use rand::{rngs::SmallRng, RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xxhash_rust::xxh3::Xxh3;

const CHUNK: usize = 256 * 1024;

/// Writes `len` seeded random bytes to `sock` and concurrently reads back exactly `len` bytes (an echo
/// is expected). Returns (hash sent, hash received); then shuts down writing and expects EOF.
pub async fn echo_roundtrip(sock: TcpStream, len: u64, seed: u64) -> anyhow::Result<(u64, u64)> {
    let (mut rd, mut wr) = sock.into_split();
    let writer = tokio::spawn(async move {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut hash = Xxh3::new();
        let mut buf = vec![0u8; CHUNK];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            rng.fill_bytes(&mut buf[..n]);
            hash.update(&buf[..n]);
            wr.write_all(&buf[..n]).await?;
            left -= n as u64;
        }
        wr.shutdown().await?;
        anyhow::Ok(hash.digest())
    });
    let (got, received) = drain_hashing(&mut rd).await?;
    let sent = writer.await??;
    anyhow::ensure!(got == len, "received {got} bytes, sent {len}");
    Ok((sent, received))
}

/// Reads until EOF or error and returns what was read; fails if the socket is still open after
/// `within` (how tests see that Puerta closed a flow).
pub async fn ends_within(
    sock: &mut TcpStream,
    within: std::time::Duration,
) -> anyhow::Result<Vec<u8>> {
    let started = std::time::Instant::now();
    let mut got = Vec::new();
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

/// What [`push_until_stalled`] saw: bytes the writer got into the path before it stopped moving,
/// and the hash of everything it is going to write once the reader resumes.
pub struct Stalled {
    pub pushed_when_blocked: u64,
    pub writer: tokio::task::JoinHandle<anyhow::Result<u64>>,
}

/// Starts writing `len` seeded bytes to `wr` and waits until no byte has gone in for `quiet`: the
/// path in between is holding the writer back. Fails if all `len` bytes went in without a stall (the
/// path buffered everything: no backpressure). The writer task keeps going once the far end reads;
/// it returns the hash of all it wrote and then shuts down its side.
pub async fn push_until_stalled(
    mut wr: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    len: u64,
    seed: u64,
    quiet: std::time::Duration,
) -> anyhow::Result<Stalled> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let pushed = Arc::new(AtomicU64::new(0));
    let counter = pushed.clone();
    let writer = tokio::spawn(async move {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut hash = Xxh3::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rng.fill_bytes(&mut buf[..n]);
            hash.update(&buf[..n]);
            let mut sent = 0;
            while sent < n {
                sent += wr.write(&buf[sent..n]).await?;
                counter.store(len - left + sent as u64, Ordering::Relaxed);
            }
            left -= n as u64;
        }
        wr.shutdown().await?;
        anyhow::Ok(hash.digest())
    });
    let mut last = (0u64, std::time::Instant::now());
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = pushed.load(Ordering::Relaxed);
        anyhow::ensure!(
            now < len && !writer.is_finished(),
            "all {len} bytes went in without the writer ever being held back"
        );
        if now != last.0 {
            last = (now, std::time::Instant::now());
        } else if last.1.elapsed() >= quiet {
            return Ok(Stalled {
                pushed_when_blocked: now,
                writer,
            });
        }
    }
}

/// Reads `rd` to EOF and returns (bytes, hash).
pub async fn drain_hashing(
    mut rd: impl tokio::io::AsyncRead + Unpin,
) -> anyhow::Result<(u64, u64)> {
    let mut hash = Xxh3::new();
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Ok((got, hash.digest()));
        }
        hash.update(&buf[..n]);
        got += n as u64;
    }
}
