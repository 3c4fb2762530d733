//! One spliced pair from insertion to release.
//!
//! The kernel moves payload but not FIN: a bare FIN skb is dropped by the verdict, so userspace notices
//! it (RDHUP on the watcher), waits until the peer socket has *taken* every byte that arrived (bytes
//! still in the psock's redirect queue would otherwise be cut off by an early FIN), and then shuts the
//! peer's write side. A RST or hard error on either side aborts both (close with linger 0 sends RST).
//! A client socket with no payload either way for the idle timeout closes both (FIN), through the same
//! teardown as every other end.
//!
//! A live pair can also leave this process whole: on a hand-over its supervision stops where it
//! is and its sockets and state go to the next instance (see `handoff`), which supervises it from
//! there; the sockets stay in the sockhash they are in, so not a byte stops moving.

use std::io;
use std::net::{Shutdown, TcpStream as StdTcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::handoff::LiveGuard;
use super::loader::KernelPath;
use super::sockopt::{self, TcpCounters, TCP_STATE_CLOSE};
use crate::mongodb::datapath::forward::idle::idle;
/// Which socket of the pair; `Side` below is this module's per-socket state.
use crate::mongodb::datapath::forward::Side as PairSide;

/// How long a FIN may wait without the peer taking any more queued bytes before the pair is aborted.
const FIN_DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Safety net against a missed edge (epoll reports RDHUP/HUP/ERR reliably, so this is rare work even
/// with 10k idle pairs).
const RECHECK: Duration = Duration::from_secs(10);

/// What a finished pair moved, counted by TCP itself (userspace never saw the bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spliced {
    pub client_to_backend: u64,
    pub backend_to_client: u64,
    /// Ended by a RST/error: the socket it came from and what it was (both sides were then reset).
    pub aborted_by: Option<(PairSide, io::ErrorKind)>,
    /// Closed by the idle timeout: nothing moved either way for that long.
    pub closed_idle: bool,
    /// Not ended: handed over, live, to the next instance (the counts are what moved so far).
    pub handed_over: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    /// The pair could not enter the maps: a socket already closed (EOPNOTSUPP, `closed`), or the
    /// maps are full. Nothing was redirected; the streams are handed back so the caller can finish the
    /// flow in userspace without losing what is still queued.
    #[error("not spliced: {reason}")]
    NotSpliced {
        client: TcpStream,
        backend: TcpStream,
        closed: bool,
        reason: String,
    },
    #[error("splice: {0}")]
    Io(#[from] io::Error),
}

/// One side of the pair and where its bytes go.
pub(super) struct Side {
    pub(super) sock: StdTcpStream,
    /// Bytes userspace wrote to this socket before insertion (e.g. the PROXY header); not part of
    /// what the kernel forwarded into it.
    pub(super) written_before: u64,
    /// The peer's FIN was propagated to this socket (its write side is shut).
    pub(super) write_shut: bool,
}

/// A spliced pair under supervision, whichever process inserted it.
pub(super) struct Pair {
    pub(super) client: Side,
    pub(super) backend: Side,
    pub(super) backend_index: u32,
    /// The sockhash the two sockets are in: this process's, or one that came with pairs from a
    /// previous instance. Its descriptor is held until the last of its pairs ends: the sockhash
    /// keeps the verdict program (and through it the peers map) those pairs run on.
    pub(super) sockhash: Arc<OwnedFd>,
}

impl KernelPath {
    /// Splices `client` and `backend` and returns when the pair is finished. Both must be connected,
    /// everything userspace had to write (PROXY header) must be written, and userspace must not have
    /// read payload from either socket: the FIN hand-off compares what each socket received with what
    /// its peer took, counted from the start of the connection.
    pub async fn splice(
        &self,
        client: TcpStream,
        backend: TcpStream,
        backend_index: u32,
        idle_timeout: Option<Duration>,
    ) -> Result<Spliced, SpliceError> {
        let written_client = sent_so_far(&client)?;
        let written_backend = sent_so_far(&backend)?;
        let cookies = (sockopt::cookie(&client)?, sockopt::cookie(&backend)?);
        let maps = &self.inner.maps;
        let inserted = maps.insert_pair(
            (cookies.0, client.as_raw_fd()),
            (cookies.1, backend.as_raw_fd()),
            backend_index,
        );
        if let Err(e) = inserted {
            maps.remove_pair(cookies.0, cookies.1);
            return Err(SpliceError::NotSpliced {
                client,
                backend,
                closed: is_not_established(&e),
                reason: e.to_string(),
            });
        }
        let _live = LiveGuard::enter(&self.inner);
        self.inner.total.fetch_add(1, Ordering::Relaxed);
        let result = self
            .start_pair(
                client,
                backend,
                (written_client, written_backend),
                backend_index,
                idle_timeout,
            )
            .await;
        // A pair handed over stays in the maps: the next instance supervises it there.
        if !matches!(
            result,
            Ok(Spliced {
                handed_over: true,
                ..
            })
        ) {
            maps.remove_pair(cookies.0, cookies.1);
        }
        result
    }

    async fn start_pair(
        &self,
        client: TcpStream,
        backend: TcpStream,
        (written_client, written_backend): (u64, u64),
        backend_index: u32,
        idle_timeout: Option<Duration>,
    ) -> Result<Spliced, SpliceError> {
        // Out of tokio's reactor: it would wake on every skb. The watcher reports only RDHUP/HUP/ERR.
        let pair = Pair {
            client: Side::new(client.into_std()?, written_client),
            backend: Side::new(backend.into_std()?, written_backend),
            backend_index,
            sockhash: self.inner.sockhash.clone(),
        };
        // Bytes that arrived before insertion are still queued: run the verdict over them now.
        kick(&pair.client.sock)?;
        kick(&pair.backend.sock)?;
        Ok(self.run_pair(pair, idle_timeout).await?)
    }

    /// Supervises `pair` until it ends, or until it is handed over to the next instance.
    pub(super) async fn run_pair(
        &self,
        mut pair: Pair,
        idle_timeout: Option<Duration>,
    ) -> io::Result<Spliced> {
        let notify = Arc::new(Notify::new());
        let watcher = &self.inner.watcher;
        let handoff = &self.inner.handoff;
        let outcome = loop {
            let watches = (
                watcher.watch(pair.client.sock.as_raw_fd(), notify.clone())?,
                watcher.watch(pair.backend.sock.as_raw_fd(), notify.clone())?,
            );
            // Stopping at any await point is safe: a side's state changes only after what it
            // records is done (see `propagate_fin`), and the next supervisor starts by looking.
            tokio::select! {
                biased;
                outcome = supervise(&mut pair.client, &mut pair.backend, &notify, idle_timeout) => {
                    break outcome;
                }
                () = handoff.wanted() => {}
            }
            drop(watches);
            let moved = (received(&pair.client.sock), received(&pair.backend.sock));
            match handoff.deposit(pair) {
                Ok(()) => {
                    return Ok(Spliced {
                        client_to_backend: moved.0,
                        backend_to_client: moved.1,
                        handed_over: true,
                        ..Spliced::default()
                    })
                }
                // Too late for this hand-over: the pair stays and drains here.
                Err(back) => pair = back,
            }
        };
        let (client, backend) = (&pair.client.sock, &pair.backend.sock);
        let spliced = Spliced {
            client_to_backend: received(client),
            backend_to_client: received(backend),
            aborted_by: outcome.as_ref().err().map(|a| (a.side, a.kind)),
            closed_idle: matches!(outcome, Ok(Ended::Idle)),
            handed_over: false,
        };
        if outcome.is_err() {
            let _ = sockopt::set_linger_zero(client);
            let _ = sockopt::set_linger_zero(backend);
        }
        Ok(spliced)
    }
}

impl Side {
    pub(super) fn new(sock: StdTcpStream, written_before: u64) -> Side {
        Side {
            sock,
            written_before,
            write_shut: false,
        }
    }
}

/// Why a pair was aborted rather than closed in order: which socket failed, and how.
struct Aborted {
    side: PairSide,
    kind: io::ErrorKind,
}

impl Aborted {
    fn on(side: PairSide) -> impl FnOnce(io::Error) -> Aborted {
        move |e| Aborted {
            side,
            kind: e.kind(),
        }
    }
}

/// How a pair that was not aborted ended; either way both sockets are simply closed (FIN).
enum Ended {
    /// Both directions finished.
    Closed,
    /// The client socket carried nothing either way for the idle timeout.
    Idle,
}

/// Waits for close events until both directions have ended or the client is idle (Ok) or one side
/// reset (Err).
async fn supervise(
    client: &mut Side,
    backend: &mut Side,
    notify: &Notify,
    idle_timeout: Option<Duration>,
) -> Result<Ended, Aborted> {
    let client_fd = client.sock.as_raw_fd();
    loop {
        let c = state_of(&client.sock).map_err(Aborted::on(PairSide::Client))?;
        let b = state_of(&backend.sock).map_err(Aborted::on(PairSide::Backend))?;
        if got_fin(c.state) && !backend.write_shut {
            propagate_fin(&client.sock, backend)
                .await
                .map_err(Aborted::on(PairSide::Backend))?;
        }
        if got_fin(b.state) && !client.write_shut {
            propagate_fin(&backend.sock, client)
                .await
                .map_err(Aborted::on(PairSide::Client))?;
        }
        if client.write_shut && backend.write_shut {
            return Ok(Ended::Closed);
        }
        // `client_fd` stays open: `client` outlives this loop.
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(RECHECK) => {}
            () = idle(client_fd, idle_timeout) => return Ok(Ended::Idle),
        }
    }
}

/// Queued bytes above this mean the sender may be stopped by a full receive window.
const WINDOW_LIMITED: u32 = 64 * 1024;
/// The receive buffer while a window-limited socket is kicked: too small for any window.
const KICK_RCVBUF: u32 = 4096;

/// Runs the verdict over bytes queued before insertion. The kick (`SO_RCVLOWAT`) runs it without the
/// socket lock, so a segment arriving meanwhile has it run twice over the same skb, which is then
/// delivered twice (seen as one 65 483-byte skb too many in a 1 GiB stream). A sender that is waiting
/// for an answer sends nothing meanwhile. One stopped by a full window would be woken by the kick
/// itself: each skb the verdict takes frees buffer space and TCP announces the larger window at once.
/// So a socket with a full queue gets a receive buffer too small for any window during the kick, and
/// its own back after it; the sender then learns of the open window from its next probe.
fn kick(sock: &StdTcpStream) -> io::Result<()> {
    let queued = sockopt::receive_queue_memory(sock)?;
    if queued == 0 {
        return Ok(());
    }
    if queued < WINDOW_LIMITED {
        return sockopt::kick_data_ready(sock);
    }
    with_receive_buffer(sock, KICK_RCVBUF, || sockopt::kick_data_ready(sock))
}

/// Runs `during` with the receive buffer at `size`, then restores the buffer *and* the window clamp.
/// A segment that arrives meanwhile can make TCP lower the clamp to what `size` allows, and nothing
/// raises it again: the flow would then crawl at a 4 KiB window for good (seen once in CI, a 1 GiB
/// test that never finished).
fn with_receive_buffer(
    sock: &StdTcpStream,
    size: u32,
    during: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let kept = (sockopt::receive_buffer(sock)?, sockopt::window_clamp(sock)?);
    sockopt::set_receive_buffer(sock, size)?;
    let done = during();
    sockopt::set_receive_buffer(sock, kept.0)?;
    sockopt::set_window_clamp(sock, kept.1)?;
    done
}

/// The socket's TCP counters; a reset or errored socket (the error returned) aborts the pair.
fn state_of(sock: &StdTcpStream) -> io::Result<TcpCounters> {
    match sockopt::take_error(sock) {
        Ok(None) => sockopt::tcp_counters(sock),
        Ok(Some(e)) | Err(e) => {
            tracing::debug!("spliced socket error: {e}; aborting pair");
            Err(e)
        }
    }
}

/// TCP states in which the remote's FIN has been received. A reset socket is also in CLOSE, but it
/// carries `ECONNRESET` in `SO_ERROR`, which [`state_of`] checks first; without an error, CLOSE is the
/// state a socket is left in after an orderly close (it moved to TIME_WAIT or finished LAST_ACK).
fn got_fin(state: u8) -> bool {
    const TIME_WAIT: u8 = 6;
    const CLOSE_WAIT: u8 = 8;
    const LAST_ACK: u8 = 9;
    const CLOSING: u8 = 11;
    matches!(
        state,
        TIME_WAIT | TCP_STATE_CLOSE | CLOSE_WAIT | LAST_ACK | CLOSING
    )
}

/// `from` got a FIN: once `to` has taken everything `from` received, shut `to`'s write side.
/// An error aborts the pair; it is `to`'s fault (it did not take the bytes, or cannot be shut down).
async fn propagate_fin(from: &StdTcpStream, to: &mut Side) -> io::Result<()> {
    let mut progress_at = Instant::now();
    let mut last_taken = 0;
    let mut pause = Duration::from_micros(200);
    loop {
        let arrived = received(from);
        let taken = taken_by(to).ok_or(io::ErrorKind::NotConnected)?;
        if taken >= arrived {
            break;
        }
        if taken > last_taken {
            last_taken = taken;
            progress_at = Instant::now();
        }
        if progress_at.elapsed() > FIN_DRAIN_LIMIT {
            tracing::warn!(
                arrived,
                taken,
                "peer did not take queued bytes in time; aborting pair"
            );
            return Err(io::ErrorKind::TimedOut.into());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    to.write_shut = true;
    match to.sock.shutdown(Shutdown::Write) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        Err(e) => Err(e),
    }
}

/// Payload bytes received by `sock` (its FIN, counted as one by TCP, excluded).
fn received(sock: &StdTcpStream) -> u64 {
    sockopt::tcp_counters(sock)
        .map(|c| c.bytes_received.saturating_sub(u64::from(got_fin(c.state))))
        .unwrap_or(0)
}

/// Bytes the kernel has placed in `to`'s send path (acknowledged or still queued) since insertion;
/// `None` when `to` is gone.
fn taken_by(to: &Side) -> Option<u64> {
    let state = state_of(&to.sock).ok()?;
    let queued = sockopt::unacked(&to.sock).ok()?;
    Some((state.bytes_acked + queued).saturating_sub(to.written_before))
}

/// Everything userspace wrote to `sock` so far (acknowledged or queued).
fn sent_so_far(sock: &TcpStream) -> io::Result<u64> {
    Ok(sockopt::tcp_counters(sock)?.bytes_acked + sockopt::unacked(sock)?)
}

fn is_not_established(e: &aya::maps::MapError) -> bool {
    let text = e.to_string();
    matches!(e, aya::maps::MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EOPNOTSUPP))
        || text.contains("Operation not supported")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_after_a_received_fin() {
        // ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2: no FIN from the remote yet.
        for state in 1..=5 {
            assert!(!got_fin(state), "state {state}");
        }
        // TIME_WAIT, CLOSE (orderly), CLOSE_WAIT, LAST_ACK, CLOSING.
        for state in [6, 7, 8, 9, 11] {
            assert!(got_fin(state), "state {state}");
        }
    }

    /// Sends `len` bytes and reads them on the other side: one segment on loopback.
    fn pass(from: &mut StdTcpStream, to: &mut StdTcpStream, len: usize) {
        use std::io::{Read, Write};
        from.write_all(&vec![7u8; len]).unwrap();
        let mut got = vec![0u8; len];
        to.read_exact(&mut got).unwrap();
    }

    #[test]
    fn a_shrunk_receive_buffer_leaves_the_window_clamp_as_it_was() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sender = StdTcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut receiver, _) = listener.accept().unwrap();
        pass(&mut sender, &mut receiver, 500);
        let before = sockopt::window_clamp(&receiver).unwrap();
        let mut lowered = before;
        with_receive_buffer(&receiver.try_clone().unwrap(), KICK_RCVBUF, || {
            // Ever larger segments make TCP re-estimate and clamp to the 4 KiB buffer.
            for len in [1000, 3000, 60_000] {
                pass(&mut sender, &mut receiver, len);
            }
            lowered = sockopt::window_clamp(&receiver)?;
            Ok(())
        })
        .unwrap();
        assert!(
            lowered < before,
            "TCP kept the clamp at {before} (now {lowered}); this test no longer shows the fix"
        );
        assert_eq!(sockopt::window_clamp(&receiver).unwrap(), before);
    }
}
