//! Flow control for spliced pairs: the kernel path's answer to a peer that stops reading.
//!
//! A redirected skb is off its source's receive queue (TCP has reopened the source's window) and is
//! charged to no socket while it waits in the target's psock queue, so nothing in the kernel ever
//! slows the sender. Per direction, userspace therefore keeps the *backlog* — bytes redirected from
//! the source that the target's peer has not acknowledged yet (psock queue plus send queue) — under
//! `kernel_backlog_kib`: the verdict reports a source when it reaches a check point; if the backlog
//! is then over the limit the source leaves `SOCKS` (it stays in `TARGETS`, so what is queued *to* it
//! survives), its bytes pile up in its own receive queue and TCP closes its window. Once the backlog
//! has halved, the source goes back and the bytes that waited are run through the verdict in order.

use std::io;
use std::net::TcpStream as StdTcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use puerta_common::PeerEntry;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::maps::Maps;
use super::sockopt;

/// First re-check of a held source's backlog; doubles up to [`HELD_POLL_MAX`].
pub const HELD_POLL_MIN: Duration = Duration::from_micros(500);
pub const HELD_POLL_MAX: Duration = Duration::from_millis(50);

/// One direction of a pair, named by its source socket.
pub struct Direction {
    pub cookie: u64,
    pub fd: RawFd,
    /// The source's peer entry as last written (its `check_at` moves).
    pub entry: PeerEntry,
    /// Out of `SOCKS` because the target's backlog is over the limit.
    pub held: bool,
    /// Could not go back into `SOCKS` (the socket left ESTABLISHED): the rest of this direction is
    /// copied in userspace.
    pub needs_copy: bool,
    /// Re-check interval while held.
    pub poll: Duration,
}

impl Direction {
    pub fn new(cookie: u64, fd: RawFd, entry: PeerEntry) -> Direction {
        Direction {
            cookie,
            fd,
            entry,
            held: false,
            needs_copy: false,
            poll: HELD_POLL_MIN,
        }
    }

    /// Measures the backlog toward `target` (whose first `written_before` bytes were userspace's) and
    /// holds, releases or re-arms the source. Map errors mean the pair is being torn down.
    pub fn regulate(
        &mut self,
        maps: &Maps,
        target: &StdTcpStream,
        written_before: u64,
        limit: u64,
    ) -> io::Result<()> {
        if self.needs_copy {
            return Ok(());
        }
        let redirected = maps.redirected(self.cookie).map_err(io::Error::other)?;
        let acked = sockopt::tcp_counters(target)?
            .bytes_acked
            .saturating_sub(written_before);
        let backlog = redirected.saturating_sub(acked);
        if self.held {
            if backlog > limit / 2 {
                self.poll = (self.poll * 2).min(HELD_POLL_MAX);
                return Ok(());
            }
            if maps.release_source((self.cookie, self.fd)).is_err() {
                self.needs_copy = true;
                return Ok(());
            }
            self.held = false;
            self.poll = HELD_POLL_MIN;
            // What queued while held has no delivery to run the verdict over it (the window is
            // closed, nothing arrives): start it here.
            sockopt::kick_data_ready(&self.fd)?;
        } else if backlog > limit {
            maps.hold_source(self.cookie).map_err(io::Error::other)?;
            self.held = true;
            return Ok(());
        }
        // Strictly past what was redirected, so the verdict reports this source again.
        self.entry.check_at = redirected + limit.saturating_sub(backlog).max(1);
        maps.set_peer(self.cookie, self.entry)
            .map_err(io::Error::other)
    }
}

/// Copies what `from` still sends to `to` in userspace until `from`'s EOF: the end of a direction
/// whose source could not be put back into `SOCKS`. Called only once `to` has taken every byte the
/// kernel redirected, so the order holds.
pub async fn copy_rest(from: RawFd, to: RawFd) -> io::Result<u64> {
    // SAFETY: both sockets belong to the pair, which outlives this call and the AsyncFds in it.
    let reader = unsafe { AsyncFd::register_with_interest(from, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    // SAFETY: as above.
    let writer = unsafe { AsyncFd::register_with_interest(to, Interest::WRITABLE) }
        .map_err(|e| e.into_parts().1)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    loop {
        let n = loop {
            let mut guard = reader.readable().await?;
            match guard.try_io(|fd| recv(fd.as_raw_fd(), &mut buf)) {
                Ok(result) => break result?,
                Err(_would_block) => continue,
            }
        };
        if n == 0 {
            return Ok(copied);
        }
        let mut sent = 0;
        while sent < n {
            let mut guard = writer.writable().await?;
            match guard.try_io(|fd| send(fd.as_raw_fd(), &buf[sent..n])) {
                Ok(result) => sent += result?,
                Err(_would_block) => continue,
            }
        }
        copied += n as u64;
    }
}

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
