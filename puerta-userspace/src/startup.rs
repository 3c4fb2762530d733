//! The start-up steps that may need a capability, done synchronously on the main thread before the
//! tokio runtime (and so any other thread) exists: binding the listeners (CAP_NET_BIND_SERVICE below
//! port 1024) and the admin port, and loading the eBPF program and pinning its maps (CAP_BPF,
//! CAP_NET_ADMIN). After [`prepare`], `main` drops every capability the running proxy does not need
//! ([`Prepared::capabilities_needed_later`]); see [`crate::privileges`].

use std::io;
use std::net::SocketAddr;

use caps::Capability;
use socket2::{Domain, Protocol, Socket, Type};

use crate::app::AppError;
use crate::config::{Config, Mode};
use crate::handover::{Handover, Offer};
use crate::mongodb::{data_path, DataPath, MongoError};

/// Listen backlog, as tokio's `TcpListener::bind` uses: bursts of 10k+ clients must not be refused.
const BACKLOG: i32 = 1024;

/// Everything privileged, ready for the runtime to take over.
pub struct Prepared {
    /// Bound, listening and non-blocking.
    pub listener: std::net::TcpListener,
    /// Redis mode's listener for TLS alone (`[redis.tls] listen_addr`), likewise.
    pub tls_listener: Option<std::net::TcpListener>,
    pub admin: AdminListener,
    /// MongoDB mode's data path (kernel or userspace), already loaded.
    pub data_path: Option<DataPath>,
    /// With `handover_socket`: what to offer the next instance, and the previous one to release.
    pub handover: Option<Handover>,
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
    let tls_addr = config.tls_listen_addr();
    let taken = match &config.handover_socket {
        Some(path) => take_over(path, addr, config.admin_addr, tls_addr)?,
        None => None,
    };
    let (listener, taken_admin, taken_tls, previous) = match taken {
        Some(t) => (t.listener, t.admin, t.tls, Some(t.ready)),
        None => (
            bind(addr).map_err(|source| AppError::Bind { addr, source })?,
            None,
            None,
            None,
        ),
    };
    listener
        .set_nonblocking(true)
        .map_err(|source| AppError::Bind { addr, source })?;
    let tls_listener = match (tls_addr, taken_tls) {
        (None, _) => None,
        (Some(_), Some(l)) => Some(l),
        (Some(addr), None) => Some(bind(addr).map_err(|source| AppError::Bind { addr, source })?),
    };
    if let (Some(l), Some(addr)) = (&tls_listener, tls_addr) {
        l.set_nonblocking(true)
            .map_err(|source| AppError::Bind { addr, source })?;
    }
    let admin = match (config.admin_addr, taken_admin) {
        (None, _) => AdminListener::Off,
        (Some(_), Some(l)) => AdminListener::Bound(l),
        (Some(addr), None) => match bind(addr) {
            Ok(l) => AdminListener::Bound(l),
            Err(error) => AdminListener::Failed { addr, error },
        },
    };
    let handover = match &config.handover_socket {
        Some(path) => Some(Handover {
            previous,
            offer: offer(path, &listener, addr, &admin, tls_listener.as_ref())
                .map_err(|source| AppError::Bind { addr, source })?,
        }),
        None => None,
    };
    let data_path = match config.mode {
        Mode::Mongodb => Some(data_path(config.mongodb()).map_err(MongoError::from)?),
        Mode::Redis => None,
    };
    Ok(Prepared {
        listener,
        tls_listener,
        admin,
        data_path,
        handover,
    })
}

fn take_over(
    path: &std::path::Path,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    tls: Option<SocketAddr>,
) -> Result<Option<crate::handover::Taken>, AppError> {
    let taken = crate::handover::take_over(path, addr, admin, tls)?;
    if taken.is_none() {
        tracing::info!(path = %path.display(), "no running instance offers its sockets; binding afresh");
    }
    Ok(taken)
}

/// Copies of the listening descriptors for the next instance.
fn offer(
    path: &std::path::Path,
    listener: &std::net::TcpListener,
    listen: SocketAddr,
    admin: &AdminListener,
    tls: Option<&std::net::TcpListener>,
) -> io::Result<Offer> {
    let tls = match tls {
        Some(l) => Some((l.try_clone()?.into(), l.local_addr()?)),
        None => None,
    };
    let admin = match admin {
        AdminListener::Bound(l) => Some((l.try_clone()?.into(), l.local_addr()?)),
        _ => None,
    };
    Ok(Offer {
        path: path.to_path_buf(),
        listener: listener.try_clone()?.into(),
        listen,
        admin,
        tls,
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
