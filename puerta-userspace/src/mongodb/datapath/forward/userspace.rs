//! The userspace data path: a fixed buffer per direction, half-close passed through (a FIN from one
//! side becomes `shutdown(SHUT_WR)` towards the other), and the pair done when both directions are.
//! Memory per flow is bounded by the two buffers whatever the peers do: a slow reader stops the copy
//! (TCP backpressure) instead of growing a queue.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::idle::idle;
use super::FlowBytes;

/// Per direction. 16 KiB keeps 10k flows at ~320 MiB worst case and still saturates loopback.
pub const DEFAULT_BUFFER_SIZE: usize = 16 * 1024;

/// Payload bytes copied through userspace by this process, all flows, both directions. The kernel path
/// must leave this at 0, which is how its tests prove the splice is really in the kernel.
static USERSPACE_BYTES: AtomicU64 = AtomicU64::new(0);

/// The same bytes split by direction, for metrics.
static CLIENT_TO_BACKEND: AtomicU64 = AtomicU64::new(0);
static BACKEND_TO_CLIENT: AtomicU64 = AtomicU64::new(0);

pub fn userspace_bytes() -> u64 {
    USERSPACE_BYTES.load(Ordering::Relaxed)
}

/// Bytes copied through userspace so far, `(client_to_backend, backend_to_client)`.
pub fn userspace_bytes_by_direction() -> (u64, u64) {
    (
        CLIENT_TO_BACKEND.load(Ordering::Relaxed),
        BACKEND_TO_CLIENT.load(Ordering::Relaxed),
    )
}

#[derive(Debug, Clone)]
pub struct UserspaceForwarder {
    buffer_size: usize,
}

impl Default for UserspaceForwarder {
    fn default() -> Self {
        UserspaceForwarder {
            buffer_size: DEFAULT_BUFFER_SIZE,
        }
    }
}

impl UserspaceForwarder {
    pub fn with_buffer_size(buffer_size: usize) -> UserspaceForwarder {
        UserspaceForwarder {
            buffer_size: buffer_size.max(1),
        }
    }

    /// Copies both directions concurrently. An error in either direction (e.g. a reset) ends the whole
    /// pair at once: both sockets are dropped, which closes them. The error says which socket failed
    /// ([`failed_side`]), so a mongos that resets flows can be told from clients that go away.
    pub async fn forward(&self, client: TcpStream, backend: TcpStream) -> io::Result<FlowBytes> {
        self.forward_until_idle(client, backend, None).await
    }

    /// Like [`UserspaceForwarder::forward`]; a client socket quiet both ways for `idle_timeout` also
    /// ends the pair (both sockets closed, `closed_idle` set).
    pub async fn forward_until_idle(
        &self,
        mut client: TcpStream,
        mut backend: TcpStream,
        idle_timeout: Option<Duration>,
    ) -> io::Result<FlowBytes> {
        let watched = client.as_raw_fd();
        let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
        let (mut client_read, mut client_write) = client.split();
        let (mut backend_read, mut backend_write) = backend.split();
        let copy = async {
            tokio::try_join!(
                copy_then_shutdown(
                    (&mut client_read, Side::Client),
                    (&mut backend_write, Side::Backend),
                    self.buffer_size,
                    [&up, &CLIENT_TO_BACKEND]
                ),
                copy_then_shutdown(
                    (&mut backend_read, Side::Backend),
                    (&mut client_write, Side::Client),
                    self.buffer_size,
                    [&down, &BACKEND_TO_CLIENT]
                ),
            )
        };
        // `watched` stays open for the whole select: `client` outlives it.
        let closed_idle = tokio::select! {
            copied = copy => {
                copied?;
                false
            }
            () = idle(watched, idle_timeout) => true,
        };
        Ok(FlowBytes {
            client_to_backend: up.into_inner(),
            backend_to_client: down.into_inner(),
            closed_idle,
            handed_over: false,
        })
    }
}

/// Which socket of a pair an I/O error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

#[derive(Debug, thiserror::Error)]
#[error("{side:?} socket: {source}")]
struct SideError {
    side: Side,
    source: io::Error,
}

fn on(side: Side) -> impl FnOnce(io::Error) -> io::Error {
    move |source| failed_on(side, source)
}

/// `source` marked as coming from `side`'s socket, for [`failed_side`] (the kernel path reports its
/// aborted pairs this way too).
pub fn failed_on(side: Side, source: io::Error) -> io::Error {
    io::Error::new(source.kind(), SideError { side, source })
}

/// The socket whose failure ended a flow, for errors from [`UserspaceForwarder::forward`].
pub fn failed_side(e: &io::Error) -> Option<Side> {
    e.get_ref()?.downcast_ref::<SideError>().map(|s| s.side)
}

/// Copies until EOF, then half-closes the writer so the peer sees the FIN. Every chunk is added to
/// `counters` (this flow's and the process-wide one for its direction) as it goes, so a flow cut short
/// still knows what it moved.
async fn copy_then_shutdown<R, W>(
    (reader, from): (&mut R, Side),
    (writer, to): (&mut W, Side),
    buffer_size: usize,
    counters: [&AtomicU64; 2],
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; buffer_size];
    loop {
        let n = reader.read(&mut buf).await.map_err(on(from))?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).await.map_err(on(to))?;
        USERSPACE_BYTES.fetch_add(n as u64, Ordering::Relaxed);
        for counter in counters {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    writer.shutdown().await.map_err(on(to))
}

#[cfg(test)]
mod tests;
