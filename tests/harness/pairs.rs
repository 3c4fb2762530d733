//! Many proxied connections at once: the descriptor limit they need, and clients that prove each got
//! its own pair (an echo of a per-client tag).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raises this process's RLIMIT_NOFILE (inherited by the puerta it starts) towards `want`; returns
/// the hard limit in effect. Without CAP_SYS_RESOURCE the hard limit cannot grow.
pub fn raise_nofile(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with valid pointers.
    unsafe {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_max
}

/// How many of `pairs` can be open at once when each costs `fds_per_pair` descriptors in the
/// process that holds the most of them, under the hard limit `hard`. A thousand are left for
/// everything else that process holds: the tests of one binary run alongside each other, and a
/// backend that hits EMFILE would stall what the test watches.
pub fn pairs_per_wave(pairs: u64, hard: u64, fds_per_pair: u64) -> u64 {
    pairs.min(hard.saturating_sub(1000) / fds_per_pair)
}

/// One client: send its index, expect it echoed, keep the socket open.
pub async fn tagged_client(proxy: SocketAddr, index: u64) -> anyhow::Result<TcpStream> {
    let mut sock = TcpStream::connect(proxy).await?;
    let tag = index.to_le_bytes();
    sock.write_all(&tag).await?;
    let mut back = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(30), sock.read_exact(&mut back)).await??;
    anyhow::ensure!(back == tag, "client {index} got another client's bytes");
    Ok(sock)
}

/// Opens `count` tagged clients through `proxy`, a few hundred connects at a time, and keeps them
/// open.
pub async fn open_clients(
    proxy: SocketAddr,
    first: u64,
    count: u64,
) -> anyhow::Result<Vec<TcpStream>> {
    const PARALLEL_CONNECTS: u64 = 200;
    let mut open = Vec::with_capacity(count as usize);
    for batch in (first..first + count).step_by(PARALLEL_CONNECTS as usize) {
        let mut set = tokio::task::JoinSet::new();
        for index in batch..(batch + PARALLEL_CONNECTS).min(first + count) {
            set.spawn(tagged_client(proxy, index));
        }
        while let Some(sock) = set.join_next().await {
            open.push(sock??);
        }
    }
    Ok(open)
}
