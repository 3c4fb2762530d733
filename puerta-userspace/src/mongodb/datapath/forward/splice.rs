//! The splice(2) data path: each direction moves socket → pipe → socket inside the kernel, so payload
//! is never copied into userspace, yet every byte is still bound by ordinary TCP backpressure (a pipe
//! holds at most [`PIPE_SIZE`], and the source socket is only read when its pipe is empty). Needs no
//! eBPF and no capability, unlike the sockmap path, at the cost of two syscalls per chunk.
//!
//! One nonblocking pipe per direction, sized with `F_SETPIPE_SZ`; readiness comes from tokio's own
//! registration of the two sockets (`TcpStream::try_io`), so EAGAIN clears the right interest. A
//! splice out of the source is only tried while the pipe is empty: its EAGAIN then always means "no
//! data on the socket", never "pipe full", which would otherwise spin. The design follows HAProxy's
//! `raw_sock.c` (`SPLICE_F_MOVE | SPLICE_F_NONBLOCK`, drain the pipe before refilling it).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::idle::idle;
use super::userspace::{failed_on, Side, DEFAULT_BUFFER_SIZE};
use super::FlowBytes;
use crate::log_throttle::LogThrottle;

/// Per direction. 256 KiB per pipe keeps 10k flows under 5 GiB of pipe pages in the worst case
/// (pages are only held while data waits) and lets one splice move a full TSO burst on loopback.
pub const PIPE_SIZE: usize = 256 * 1024;

/// Payload bytes moved by splice, process-wide, by direction (for `/metrics`).
static CLIENT_TO_BACKEND: AtomicU64 = AtomicU64::new(0);
static BACKEND_TO_CLIENT: AtomicU64 = AtomicU64::new(0);

/// Bytes spliced so far, `(client_to_backend, backend_to_client)`.
pub fn splice_bytes_by_direction() -> (u64, u64) {
    (
        CLIENT_TO_BACKEND.load(Ordering::Relaxed),
        BACKEND_TO_CLIENT.load(Ordering::Relaxed),
    )
}

#[derive(Debug, Clone, Default)]
pub struct SpliceForwarder;

impl SpliceForwarder {
    /// Fails only when the kernel refuses pipes or splice on TCP sockets, which `auto` uses to choose.
    pub fn probe() -> io::Result<SpliceForwarder> {
        Pipe::new().map(|_| SpliceForwarder)
    }

    /// Splices both directions until both have ended (a FIN becomes `shutdown(SHUT_WR)` on the other
    /// socket). An error on either socket ends the pair at once and says which socket failed; a client
    /// quiet both ways for `idle_timeout` ends it too (`closed_idle`).
    pub async fn forward(
        &self,
        client: TcpStream,
        backend: TcpStream,
        idle_timeout: Option<Duration>,
    ) -> io::Result<FlowBytes> {
        let _claim = FlowClaim::new();
        let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
        let copy = async {
            tokio::try_join!(
                splice_then_shutdown(
                    (&client, Side::Client),
                    (&backend, Side::Backend),
                    [&up, &CLIENT_TO_BACKEND]
                ),
                splice_then_shutdown(
                    (&backend, Side::Backend),
                    (&client, Side::Client),
                    [&down, &BACKEND_TO_CLIENT]
                ),
            )
        };
        let closed_idle = tokio::select! {
            copied = copy => {
                copied?;
                false
            }
            () = idle(client.as_raw_fd(), idle_timeout) => true,
        };
        Ok(FlowBytes {
            client_to_backend: up.into_inner(),
            backend_to_client: down.into_inner(),
            closed_idle,
            handed_over: false,
        })
    }
}

/// One direction until `from`'s EOF, then half-close `to`. Each burst (bytes until `from` has
/// nothing more right now) borrows an empty pipe from [`PIPES`], refills it from `from` only when it
/// is empty, drains it fully into `to`, and gives it back: an idle connection holds no pipe, only its
/// two sockets. When no pipe can be had (descriptor limit) the burst is copied in userspace instead of
/// failing the flow.
async fn splice_then_shutdown(
    (from, from_side): (&TcpStream, Side),
    (to, to_side): (&TcpStream, Side),
    counters: [&AtomicU64; 2],
) -> io::Result<()> {
    loop {
        from.readable().await.map_err(|e| failed_on(from_side, e))?;
        let burst = match PIPES.take() {
            Ok(pipe) => {
                let burst = splice_burst(&pipe, (from, from_side), (to, to_side), counters).await?;
                // Empty on every way out but an error: a pipe that may still hold this flow's bytes
                // is closed (dropped), never handed to another flow.
                PIPES.give(pipe);
                burst
            }
            Err(e) => {
                if let Some(flows) = NO_PIPE_LOG.hit(std::time::Instant::now()) {
                    tracing::warn!(flows, "no pipe for splice(2) ({e}); copying in userspace");
                }
                copy_burst((from, from_side), (to, to_side), counters).await?
            }
        };
        if burst == Burst::Eof {
            break;
        }
    }
    socket2::SockRef::from(to)
        .shutdown(std::net::Shutdown::Write)
        .or_else(ignore_not_connected)
        .map_err(|e| failed_on(to_side, e))
}

/// How a burst ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Burst {
    /// `from` has nothing more right now.
    Drained,
    /// `from` reached EOF.
    Eof,
}

/// Pipe failures come in bursts (a descriptor limit): one line per period.
static NO_PIPE_LOG: LazyLock<LogThrottle> =
    LazyLock::new(|| LogThrottle::new(Duration::from_secs(1)));

/// Splices until `from` has nothing more right now or reached EOF; leaves the pipe empty.
async fn splice_burst(
    pipe: &Pipe,
    (from, from_side): (&TcpStream, Side),
    (to, to_side): (&TcpStream, Side),
    counters: [&AtomicU64; 2],
) -> io::Result<Burst> {
    loop {
        let filled = match from.try_io(Interest::READABLE, || {
            splice(from.as_raw_fd(), pipe.write.as_raw_fd(), PIPE_SIZE)
        }) {
            Ok(0) => return Ok(Burst::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Burst::Drained),
            Err(e) => return Err(failed_on(from_side, e)),
        };
        let mut left = filled;
        while left > 0 {
            let sent = to
                .async_io(Interest::WRITABLE, || {
                    splice(pipe.read.as_raw_fd(), to.as_raw_fd(), left)
                })
                .await
                .map_err(|e| failed_on(to_side, e))?;
            if sent == 0 {
                return Err(failed_on(to_side, io::ErrorKind::WriteZero.into()));
            }
            left -= sent;
        }
        for counter in counters {
            counter.fetch_add(filled as u64, Ordering::Relaxed);
        }
    }
}

/// Copies through a userspace buffer until `from` has nothing more right now or reached EOF: a
/// burst's fallback without a pipe.
async fn copy_burst(
    (from, from_side): (&TcpStream, Side),
    (to, to_side): (&TcpStream, Side),
    counters: [&AtomicU64; 2],
) -> io::Result<Burst> {
    let mut buf = vec![0u8; DEFAULT_BUFFER_SIZE];
    loop {
        let n = match from.try_read(&mut buf) {
            Ok(0) => return Ok(Burst::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Burst::Drained),
            Err(e) => return Err(failed_on(from_side, e)),
        };
        let mut sent = 0;
        while sent < n {
            sent += to
                .async_io(Interest::WRITABLE, || to.try_write(&buf[sent..n]))
                .await
                .map_err(|e| failed_on(to_side, e))?;
        }
        for counter in counters {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// Empty pipes kept for the next burst, process-wide, so a burst costs no pipe syscalls. At most
/// [`SPARE_PIPES`], and never more than two per live flow: when the flows are gone, so are the spares.
static PIPES: PipePool = PipePool {
    spare: Mutex::new(Vec::new()),
    flows: AtomicU64::new(0),
};
const SPARE_PIPES: usize = 256;

struct PipePool {
    spare: Mutex<Vec<Pipe>>,
    flows: AtomicU64,
}

/// A live flow's claim on spare pipes; its drop trims the spares to what the remaining flows may keep.
struct FlowClaim;

impl FlowClaim {
    fn new() -> FlowClaim {
        PIPES.flows.fetch_add(1, Ordering::Relaxed);
        FlowClaim
    }
}

impl Drop for FlowClaim {
    fn drop(&mut self) {
        PIPES.flows.fetch_sub(1, Ordering::Relaxed);
        let keep = PIPES.keep();
        let mut spare = PIPES.spare.lock().unwrap_or_else(|e| e.into_inner());
        spare.truncate(keep);
    }
}

impl PipePool {
    fn keep(&self) -> usize {
        let flows = self.flows.load(Ordering::Relaxed) as usize;
        SPARE_PIPES.min(2 * flows)
    }

    fn take(&self) -> io::Result<Pipe> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        spare.map_or_else(Pipe::new, Ok)
    }

    fn give(&self, pipe: Pipe) {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < self.keep() {
            spare.push(pipe);
        }
    }
}

/// A peer that already reset or closed both ways makes `shutdown` fail with ENOTCONN: the FIN has
/// nowhere to go, which is not an error of this flow.
fn ignore_not_connected(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotConnected {
        Ok(())
    } else {
        Err(e)
    }
}

/// Moves up to `len` bytes between two descriptors without copying them to userspace. EAGAIN comes
/// back as `WouldBlock`, which `async_io` turns into waiting for readiness.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: both descriptors are open for the duration of the call (owned by the caller's stream
    // and pipe); null offsets mean "current position", as splice requires for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A nonblocking pipe of [`PIPE_SIZE`] (or the system's default if `F_SETPIPE_SZ` is refused, e.g. over
/// `pipe-max-size` for an unprivileged user: splicing still works, in smaller chunks).
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are fresh descriptors owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ takes an int size on an open pipe descriptor.
        let resized =
            unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as i32) };
        if resized < 0 {
            tracing::debug!(
                "F_SETPIPE_SZ {PIPE_SIZE} refused ({}); splicing through a default-sized pipe",
                io::Error::last_os_error()
            );
        }
        Ok(Pipe { read, write })
    }
}

#[cfg(test)]
mod tests;
