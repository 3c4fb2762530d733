//! The kernel data path behind the [`Forwarder`](super::Forwarder) seam: both sockets go into the
//! sockmap and payload never reaches userspace. A pair that cannot be inserted — a client that closed
//! first (the kernel refuses non-established sockets) or full maps — finishes in userspace instead, so
//! nothing already queued is lost and no client is dropped.

use std::io;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::{failed_on, FlowBytes, UserspaceForwarder};
use crate::log_throttle::LogThrottle;
use crate::mongodb::datapath::kernel::{KernelPath, SpliceError, Spliced};

pub struct KernelForwarder {
    kernel: KernelPath,
    fallback: UserspaceForwarder,
    /// Map-full fallbacks can come in bursts: one line per period.
    not_spliced_log: LogThrottle,
}

impl std::fmt::Debug for KernelForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelForwarder")
            .field("live_pairs", &self.kernel.live_pairs())
            .finish()
    }
}

impl KernelForwarder {
    pub fn new(kernel: KernelPath) -> KernelForwarder {
        KernelForwarder {
            kernel,
            fallback: UserspaceForwarder::default(),
            not_spliced_log: LogThrottle::new(Duration::from_secs(1)),
        }
    }

    pub fn kernel(&self) -> &KernelPath {
        &self.kernel
    }

    pub async fn forward(
        &self,
        client: TcpStream,
        backend: TcpStream,
        backend_index: usize,
        idle_timeout: Option<Duration>,
    ) -> io::Result<FlowBytes> {
        match self
            .kernel
            .splice(client, backend, backend_index as u32, idle_timeout)
            .await
        {
            Ok(spliced) => Self::flow_bytes(spliced),
            Err(SpliceError::NotSpliced {
                client,
                backend,
                closed,
                reason,
            }) => {
                if closed {
                    tracing::debug!(
                        "socket closed before splicing; finishing the flow in userspace"
                    );
                } else if let Some(n) = self.not_spliced_log.hit(Instant::now()) {
                    tracing::warn!(
                        flows = n,
                        "cannot splice ({reason}); forwarding in userspace"
                    );
                }
                self.fallback
                    .forward_until_idle(client, backend, idle_timeout)
                    .await
            }
            Err(SpliceError::Io(e)) => Err(e),
        }
    }

    /// How a spliced pair ended, told like the userspace path's ends, so that the flow can blame
    /// a mongos that resets.
    pub fn flow_bytes(spliced: Spliced) -> io::Result<FlowBytes> {
        match spliced.aborted_by {
            Some((side, kind)) => Err(failed_on(
                side,
                io::Error::new(kind, format!("{kind} (spliced pair aborted)")),
            )),
            None => Ok(FlowBytes {
                client_to_backend: spliced.client_to_backend,
                backend_to_client: spliced.backend_to_client,
                closed_idle: spliced.closed_idle,
                handed_over: spliced.handed_over,
            }),
        }
    }
}
