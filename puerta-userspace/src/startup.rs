//! The start-up steps that may need a capability, done synchronously on the main thread before the
//! tokio runtime (and so any other thread) exists: binding the listener (CAP_NET_BIND_SERVICE below
//! port 1024) and the admin port, and loading the eBPF program and pinning its maps (CAP_BPF,
//! CAP_NET_ADMIN). After [`prepare`], `main` drops every capability the running proxy does not need
//! ([`Prepared::capabilities_needed_later`]); see [`crate::privileges`].

use std::io;
use std::net::SocketAddr;

use caps::Capability;
use socket2::{Domain, Protocol, Socket, Type};

use crate::app::AppError;
use crate::config::{Config, Mode};
use crate::mongodb::{data_path, DataPath, MongoError};

/// Listen backlog, as tokio's `TcpListener::bind` uses: bursts of 10k+ clients must not be refused.
const BACKLOG: i32 = 1024;

/// Everything privileged, ready for the runtime to take over.
pub struct Prepared {
    /// Bound, listening and non-blocking.
    pub listener: std::net::TcpListener,
    pub admin: AdminListener,
    /// MongoDB mode's data path (kernel or userspace), already loaded.
    pub data_path: Option<DataPath>,
}

/// The admin port is an operator aid: a bind failure is logged later and the proxy still serves.
pub enum AdminListener {
    Off,
    Bound(std::net::TcpListener),
    Failed { addr: SocketAddr, error: io::Error },
}

/// Binds the listener and admin port and loads MongoDB mode's data path. Must run before any thread
/// is started, so that dropping capabilities afterwards covers the whole process.
pub fn prepare(config: &Config) -> Result<Prepared, AppError> {
    let addr = config.listen_addr;
    let listener = bind(addr).map_err(|source| AppError::Bind { addr, source })?;
    let admin = match config.admin_addr {
        None => AdminListener::Off,
        Some(addr) => match bind(addr) {
            Ok(l) => AdminListener::Bound(l),
            Err(error) => AdminListener::Failed { addr, error },
        },
    };
    let data_path = match config.mode {
        Mode::Mongodb => Some(data_path(config.mongodb()).map_err(MongoError::from)?),
        Mode::Redis => None,
    };
    Ok(Prepared {
        listener,
        admin,
        data_path,
    })
}

impl Prepared {
    /// Capabilities the proxy needs once serving. None on current kernels: sockhash inserts, map
    /// updates and lookups act on map file descriptors loaded at start-up and need no capability.
    /// Kernels before 6.5 with `kernel.unprivileged_bpf_disabled` set refuse every `bpf()` call without
    /// CAP_BPF, even on a held descriptor; there the kernel path keeps CAP_BPF (found by probing a map
    /// read on a thread without capabilities) and nothing else.
    pub fn capabilities_needed_later(&self) -> Vec<Capability> {
        let kernel = self
            .data_path
            .as_ref()
            .and_then(|p| p.forwarder.kernel_path());
        match kernel {
            Some(kernel) if !kernel.maps_usable_without_capabilities() => {
                tracing::warn!(
                    "this kernel refuses BPF map access without CAP_BPF; keeping CAP_BPF"
                );
                vec![Capability::CAP_BPF]
            }
            _ => Vec::new(),
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
