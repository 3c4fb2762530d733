//! The kernel data path behind the [`Forwarder`](super::Forwarder) seam: both sockets go into the
//! sockmap and payload never reaches userspace. A pair whose client closed before it could be
//! inserted (the kernel refuses non-established sockets) finishes in userspace instead, so nothing
//! already queued is lost.

use std::io;

use tokio::net::TcpStream;

use super::{FlowBytes, UserspaceForwarder};
use crate::kernel::{KernelPath, SpliceError};

#[derive(Clone)]
pub struct KernelForwarder {
    kernel: KernelPath,
    fallback: UserspaceForwarder,
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
    ) -> io::Result<FlowBytes> {
        match self
            .kernel
            .splice(client, backend, backend_index as u32)
            .await
        {
            Ok(spliced) => Ok(FlowBytes {
                client_to_backend: spliced.client_to_backend,
                backend_to_client: spliced.backend_to_client,
            }),
            Err(SpliceError::NotEstablished { client, backend }) => {
                tracing::debug!("socket closed before splicing; finishing the flow in userspace");
                self.fallback.forward(client, backend).await
            }
            Err(SpliceError::Io(e)) => Err(e),
        }
    }
}
