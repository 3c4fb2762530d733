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
    let mut hash = Xxh3::new();
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        got += n as u64;
    }
    let sent = writer.await??;
    anyhow::ensure!(got == len, "received {got} bytes, sent {len}");
    Ok((sent, hash.digest()))
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
