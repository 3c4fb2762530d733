//! How a connected client/backend pair moves its payload. This is the seam between the userspace copy
//! loop and the kernel (eBPF sockmap) splice: the MongoDB mode only ever calls [`Forwarder::forward`]
//! with two connected sockets that have nothing pending (the PROXY header is already written).

pub(crate) mod idle;
mod kernel;
mod splice;
#[cfg(test)]
mod test_pairs;
mod userspace;

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::{Forwarding, MongoConfig};
use crate::mongodb::datapath::kernel::KernelPath;
pub use kernel::KernelForwarder;
pub use splice::{splice_bytes_by_direction, SpliceForwarder, PIPE_SIZE};
pub use userspace::{
    failed_on, failed_side, userspace_bytes, userspace_bytes_by_direction, Side,
    UserspaceForwarder, DEFAULT_BUFFER_SIZE,
};

/// Payload bytes a finished flow moved, per direction, and how it ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlowBytes {
    pub client_to_backend: u64,
    pub backend_to_client: u64,
    /// Closed by `client_idle_timeout_sec`, not by either peer.
    pub closed_idle: bool,
    /// Not closed: its sockets went, live, to the next instance (kernel path only).
    pub handed_over: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("forwarding = \"kernel\" was requested, but {0}")]
    KernelUnavailable(String),
    #[error(
        "forwarding = \"splice\" was requested, but this kernel refuses pipes for splice(2): {0}"
    )]
    SpliceUnavailable(std::io::Error),
}

/// The data path chosen at start-up for all flows.
#[derive(Debug)]
pub enum Forwarder {
    Userspace(UserspaceForwarder),
    Splice(SpliceForwarder),
    Kernel(KernelForwarder),
}

impl Forwarder {
    /// Picks the data path for `forwarding`, logging the choice once. `auto` picks splice(2), else
    /// userspace (see `Forwarder::auto`); `kernel` and `splice` fail when they cannot work.
    pub fn from_config(config: &MongoConfig) -> Result<Forwarder, ForwardError> {
        match config.forwarding {
            Forwarding::Userspace => {
                tracing::info!("forwarding in userspace (forwarding = \"userspace\")");
                Ok(Forwarder::Userspace(UserspaceForwarder::default()))
            }
            Forwarding::Splice => {
                let splice = SpliceForwarder::probe().map_err(ForwardError::SpliceUnavailable)?;
                tracing::info!("forwarding with splice(2) (forwarding = \"splice\")");
                Ok(Forwarder::Splice(splice))
            }
            Forwarding::Kernel => match KernelPath::load(&config.bpf_pin_dir) {
                Ok(kernel) => Ok(Forwarder::kernel(kernel, "forwarding = \"kernel\"")),
                Err(e) => Err(ForwardError::KernelUnavailable(e.to_string())),
            },
            Forwarding::Auto => Ok(Forwarder::auto()),
        }
    }

    /// `auto`: splice(2) where the kernel gives pipes for it, else userspace. The kernel path is
    /// not chosen by itself: on the benchmark it moves no more than splice for one stream and far less
    /// for eight (its redirect queue is drained by a worker that retries a full send buffer only after
    /// a jiffy), and splice is bounded by TCP itself with no eBPF and no capability. See
    /// docs/kernel.md for when to ask for the kernel path anyway (CPU per byte, no payload syscalls).
    fn auto() -> Forwarder {
        match SpliceForwarder::probe() {
            Ok(splice) => {
                tracing::info!(
                    "forwarding with splice(2) (forwarding = \"auto\": the fastest bounded path \
                     measured; forwarding = \"kernel\" selects the eBPF sockmap path)"
                );
                Forwarder::Splice(splice)
            }
            Err(e) => {
                tracing::warn!("splice(2) unavailable, forwarding in userspace: {e}");
                Forwarder::Userspace(UserspaceForwarder::default())
            }
        }
    }

    fn kernel(kernel: KernelPath, why: &str) -> Forwarder {
        tracing::info!(
            pin_dir = %kernel.pin_dir().display(),
            "forwarding in the kernel (eBPF sockmap; {why})"
        );
        tracing::warn!(
            "the kernel path cannot hold back a sender whose peer stops reading: its redirect \
             queue is charged to no socket (see docs/kernel.md); forwarding = \"auto\" (splice) \
             is bounded by TCP"
        );
        Forwarder::Kernel(KernelForwarder::new(kernel))
    }

    /// The loaded kernel path, if this forwarder uses it (for the affinity mirror and backends map).
    pub fn kernel_path(&self) -> Option<&KernelPath> {
        match self {
            Forwarder::Kernel(k) => Some(k.kernel()),
            Forwarder::Userspace(_) | Forwarder::Splice(_) => None,
        }
    }

    /// Moves bytes both ways until both directions have ended, then closes both sockets.
    pub async fn forward(&self, client: TcpStream, backend: TcpStream) -> io::Result<FlowBytes> {
        self.forward_to(client, backend, 0, None).await
    }

    /// Like [`Forwarder::forward`]; `backend_index` (into the configured endpoints) labels the
    /// kernel's per-backend byte counters, and a client socket that carries no payload either way for
    /// `idle_timeout` ends the flow early (both sockets closed, `closed_idle` set).
    pub async fn forward_to(
        &self,
        client: TcpStream,
        backend: TcpStream,
        backend_index: usize,
        idle_timeout: Option<Duration>,
    ) -> io::Result<FlowBytes> {
        match self {
            Forwarder::Userspace(u) => u.forward_until_idle(client, backend, idle_timeout).await,
            Forwarder::Splice(s) => s.forward(client, backend, idle_timeout).await,
            Forwarder::Kernel(k) => {
                k.forward(client, backend, backend_index, idle_timeout)
                    .await
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Forwarder::Userspace(_) => "userspace",
            Forwarder::Splice(_) => "splice",
            Forwarder::Kernel(_) => "kernel",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn mongo(forwarding: &str) -> MongoConfig {
        // A pin dir of its own, so a running Puerta's pins are never touched.
        let pins = format!("/sys/fs/bpf/puerta-unit-{}", std::process::id());
        let text = format!(
            "mode = \"mongodb\"\nlisten_addr = \"127.0.0.1:1\"\n[mongodb]\n\
             mongos_endpoints = [\"a:1\"]\nforwarding = \"{forwarding}\"\nbpf_pin_dir = \"{pins}\"\n"
        );
        Config::parse(&text, Path::new("t.toml"))
            .unwrap()
            .mongodb()
            .clone()
    }

    /// `auto` is splice wherever splice works (every Linux this runs on); whether `kernel` loads
    /// depends on the machine (root + sockmap, and an eBPF object built in).
    #[tokio::test]
    async fn forwarding_choice() {
        assert_eq!(
            Forwarder::from_config(&mongo("userspace")).unwrap().name(),
            "userspace"
        );
        assert_eq!(
            Forwarder::from_config(&mongo("splice")).unwrap().name(),
            "splice"
        );
        assert_eq!(
            Forwarder::from_config(&mongo("auto")).unwrap().name(),
            "splice"
        );
        match Forwarder::from_config(&mongo("kernel")) {
            Ok(kernel) => assert_eq!(kernel.name(), "kernel"),
            Err(err) => assert!(err.to_string().contains("kernel"), "{err}"),
        }
        let _ = std::fs::remove_dir(format!("/sys/fs/bpf/puerta-unit-{}", std::process::id()));
    }
}
