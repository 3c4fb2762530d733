//! Restarts and upgrades that drop nothing. A Puerta with `handover_socket` set offers its listening
//! sockets on that Unix socket. The next Puerta started with the same setting (a new binary, a new
//! configuration) connects there before binding anything and receives the listening sockets
//! themselves over SCM_RIGHTS: the same kernel sockets with their accept queues, not new ones on the
//! same port. Once it serves it says READY; only then does the old one stop accepting and drain (its
//! connections go on until they end or `drain_timeout_sec`). Connections arriving meanwhile wait in
//! the one accept queue for whichever process accepts next, so none is refused or reset. A new
//! process that fails before READY changes nothing: the old one keeps serving and offering.
//!
//! Two listeners with `SO_REUSEPORT` would not do: closing one resets the connections waiting in
//! its own queue (unless `net.ipv4.tcp_migrate_req` is set on the host).
//!
//! The exchange: the new process sends `TAKEOVER <pid>`; the old one answers one line,
//! `PUERTA-HANDOVER 1 pid=<pid> listen=<addr> admin=<addr or -> tls=<addr or -> state=framed`,
//! carrying the listener's, the admin listener's and Redis mode's TLS listener's descriptors
//! (`tls=` may be missing: none; `state=framed`, missing before Puerta could hand connections
//! over, says it can send descriptors with its state); the new one sends `READY` once it serves,
//! or hangs up (`READY fds` if it also takes descriptors, which it may only say after
//! `state=framed`). Fields an instance does not know are ignored, so a binary and the one
//! before it take over from each other either way (an upgrade or a rollback). After READY the
//! old one stops accepting and sends the mode's state worth keeping ([`CarryOver`], see `items`): MongoDB's
//! affinity pins, so that a client's new connections reach the mongos holding its cursors, and
//! its live kernel-path pairs, whose sockets go over so that a binary upgrade keeps even
//! long-running cursors and change streams open.

mod items;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

const PROTOCOL: &str = "PUERTA-HANDOVER 1";
/// How long either side waits for the other's line, READY aside.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the old process waits for the new one to serve: its start-up (the cluster topology,
/// the first health checks, loading the eBPF program) happens in between.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("hand-over over {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("hand-over over {path}: {why}")]
    Protocol { path: PathBuf, why: String },
}

/// Listening sockets taken over from the running instance.
pub struct Taken {
    pub listener: TcpListener,
    /// The admin listener, when the running instance had one on the address this one wants.
    pub admin: Option<TcpListener>,
    /// Redis mode's TLS listener (`[redis.tls] listen_addr`), likewise.
    pub tls: Option<TcpListener>,
    pub ready: Ready,
}

pub use items::Item;

/// The line back to the instance whose sockets were taken.
pub struct Ready {
    from_pid: u32,
    /// The old instance can send its state framed, with descriptors (`state=framed`).
    framed: bool,
    stream: UnixStream,
}

impl Ready {
    /// Tells the old instance that this one serves: it stops accepting, drains, and sends its state,
    /// which `merge` gets (in the background). With `takes_descriptors` (and an old instance that
    /// can send them) the state includes items with descriptors.
    pub fn serving(mut self, merge: Merge, takes_descriptors: bool) {
        let framed = takes_descriptors && self.framed;
        let ready: &[u8] = if framed { b"READY fds\n" } else { b"READY\n" };
        if let Err(e) = self.stream.write_all(ready) {
            tracing::warn!(
                from_pid = self.from_pid,
                "could not tell pid {} that this instance serves ({e}); both accept until it stops",
                self.from_pid
            );
            return;
        }
        tracing::info!(
            from_pid = self.from_pid,
            "took over the listening sockets of pid {}; it drains now",
            self.from_pid
        );
        let from_pid = self.from_pid;
        tokio::task::spawn_blocking(move || match read_state(self.stream, framed) {
            Ok(items) => {
                tracing::info!(
                    from_pid,
                    entries = items.len(),
                    "state carried over from pid {from_pid}"
                );
                merge(items);
            }
            Err(e) => tracing::warn!(from_pid, "no state carried over from pid {from_pid}: {e}"),
        });
    }
}

/// What a mode keeps across a hand-over: `snapshot` gives the items to send the next instance
/// (no line may contain a newline; items with descriptors only when it is called with `true`, the
/// next instance takes them), `merge` takes those the previous one sent.
pub struct CarryOver {
    pub snapshot: Snapshot,
    pub merge: Merge,
    /// Whether `merge` takes items with descriptors (else the previous instance keeps those).
    pub takes_descriptors: bool,
}

pub type Snapshot = std::sync::Arc<dyn Fn(bool) -> Vec<Item> + Send + Sync>;
pub type Merge = Box<dyn FnOnce(Vec<Item>) + Send>;

impl CarryOver {
    /// Nothing to keep (Redis mode: clients reconnect to the same cluster).
    pub fn nothing() -> CarryOver {
        CarryOver {
            snapshot: std::sync::Arc::new(|_| Vec::new()),
            merge: Box::new(|_| {}),
            takes_descriptors: false,
        }
    }
}

fn read_state(stream: UnixStream, framed: bool) -> io::Result<Vec<Item>> {
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    items::receive(stream, framed)
}

/// Asks the instance offering at `path` for its sockets. `None` when nobody offers (no socket, or a
/// stale one): this instance binds its own. Must run before other threads start, like every bind.
pub fn take_over(
    path: &Path,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    tls: Option<SocketAddr>,
) -> Result<Option<Taken>, HandoverError> {
    let io_error = |source| HandoverError::Io {
        path: path.to_path_buf(),
        source,
    };
    let protocol = |why: String| HandoverError::Protocol {
        path: path.to_path_buf(),
        why,
    };
    let mut stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(io_error(e)),
    };
    stream
        .set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .map_err(io_error)?;
    stream
        .set_write_timeout(Some(EXCHANGE_TIMEOUT))
        .map_err(io_error)?;
    writeln!(stream, "TAKEOVER {}", std::process::id()).map_err(io_error)?;
    let (line, fds) = receive(&stream).map_err(io_error)?;
    let offer =
        Header::parse(&line).ok_or_else(|| protocol(format!("unexpected answer {line:?}")))?;
    let expected = 1 + usize::from(offer.admin.is_some()) + usize::from(offer.tls.is_some());
    if fds.len() != expected {
        return Err(protocol(format!("{} descriptors for {line:?}", fds.len())));
    }
    let mut fds = fds.into_iter();
    let listener = fds.next().map(TcpListener::from);
    if offer.listen != listen {
        return Err(protocol(format!(
            "the running instance (pid {}) listens on {}, this configuration on {listen}; stop it instead",
            offer.pid, offer.listen
        )));
    }
    // An extra address that changed is bound afresh; the old one's closes with it.
    let mut next_if_same = |offered: Option<SocketAddr>, wanted: Option<SocketAddr>| {
        let fd = offered.and_then(|_| fds.next());
        fd.filter(|_| offered == wanted).map(TcpListener::from)
    };
    let admin = next_if_same(offer.admin, admin);
    let tls = next_if_same(offer.tls, tls);
    let Some(listener) = listener else {
        return Err(protocol(format!("no descriptor for {line:?}")));
    };
    Ok(Some(Taken {
        listener,
        admin,
        tls,
        ready: Ready {
            from_pid: offer.pid,
            framed: offer.framed,
            stream,
        },
    }))
}

/// One line and the descriptors that came with it.
fn receive(stream: &UnixStream) -> io::Result<(String, Vec<OwnedFd>)> {
    let mut buf = [0u8; 512];
    let mut fds = Vec::new();
    let n = items::receive_rights(stream, &mut buf, &mut fds)?;
    let line = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
    Ok((line, fds))
}

/// The old instance's answer line.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    pid: u32,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    /// `state=framed`: the state can come framed, with descriptors.
    framed: bool,
}

impl Header {
    fn line(&self) -> String {
        let show = |a: Option<SocketAddr>| a.map_or("-".to_string(), |a| a.to_string());
        format!(
            "{PROTOCOL} pid={} listen={} admin={} tls={}{}\n",
            self.pid,
            self.listen,
            show(self.admin),
            show(self.tls),
            if self.framed { " state=framed" } else { "" }
        )
    }

    fn parse(line: &str) -> Option<Header> {
        let rest = line.strip_prefix(PROTOCOL)?.trim();
        let mut framed = false;
        let mut pid = None;
        let mut listen = None;
        let mut admin = None;
        let mut tls = None;
        for field in rest.split_whitespace() {
            match field.split_once('=')? {
                ("pid", v) => pid = v.parse().ok(),
                ("listen", v) => listen = v.parse().ok(),
                ("admin", "-") => admin = Some(None),
                ("admin", v) => admin = Some(Some(v.parse().ok()?)),
                ("tls", "-") => tls = None,
                ("tls", v) => tls = Some(v.parse().ok()?),
                ("state", "framed") => framed = true,
                _ => {}
            }
        }
        Some(Header {
            pid: pid?,
            listen: listen?,
            admin: admin?,
            tls,
            framed,
        })
    }
}

/// A hand-over to finish once this instance serves: tell the previous one, offer to the next.
pub struct Handover {
    pub previous: Option<Ready>,
    pub offer: Offer,
}

/// What this instance offers to the next one: copies of its listening descriptors (the sockets stay
/// open for the next process even after this one stops accepting).
pub struct Offer {
    pub path: PathBuf,
    pub listener: OwnedFd,
    pub listen: SocketAddr,
    pub admin: Option<(OwnedFd, SocketAddr)>,
    pub tls: Option<(OwnedFd, SocketAddr)>,
}

impl Offer {
    /// Serves the hand-over socket until an instance took over (then `handed_over` is cancelled:
    /// stop accepting, and `snapshot` goes to the new instance) or `stop` fires.
    pub async fn serve(
        self,
        snapshot: Snapshot,
        handed_over: CancellationToken,
        stop: CancellationToken,
    ) {
        let listener = match bind(&self.path) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(path = %self.path.display(), "hand-over socket unavailable: {e}");
                return;
            }
        };
        tracing::info!(path = %self.path.display(), "offering the listening sockets for hand-over");
        let offer = std::sync::Arc::new(self);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => return,
            };
            let stream = match accepted.and_then(|(s, _)| s.into_std()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("hand-over socket: {e}");
                    continue;
                }
            };
            // A stop must not wait for an exchange in progress (up to READY_TIMEOUT for a new
            // instance that never says READY): shutting the socket down ends its blocking read.
            let control = stream.try_clone();
            let offer = offer.clone();
            let (snapshot, handed) = (snapshot.clone(), handed_over.clone());
            let mut exchanging =
                tokio::task::spawn_blocking(move || offer.exchange(stream, &snapshot, &handed));
            let exchange = tokio::select! {
                e = &mut exchanging => e,
                _ = stop.cancelled() => {
                    // The front door passes one token for both: READY itself stops the
                    // accepting, and the state must still go over then.
                    if !handed_over.is_cancelled() {
                        if let Ok(control) = control {
                            let _ = control.shutdown(std::net::Shutdown::Both);
                        }
                        let _ = exchanging.await;
                        tracing::info!("hand-over in progress abandoned: stopping");
                        return;
                    }
                    exchanging.await
                }
            };
            match exchange {
                Ok(Ok(pid)) => {
                    tracing::info!(
                        to_pid = pid,
                        "handed the listening sockets over to pid {pid}; draining"
                    );
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!("hand-over failed, still serving: {e}");
                }
                Err(e) => tracing::warn!("hand-over failed, still serving: {e}"),
            }
        }
    }

    /// One exchange, blocking: the new process's pid once it said READY (accepting stops then,
    /// before the snapshot is taken, so that it misses no placement).
    fn exchange(
        &self,
        stream: UnixStream,
        snapshot: &Snapshot,
        handed_over: &CancellationToken,
    ) -> io::Result<u32> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
        stream.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.by_ref().take(128).read_line(&mut line)?;
        let pid: u32 = line
            .trim()
            .strip_prefix("TAKEOVER ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected request {line:?}")))?;
        let header = Header {
            pid: std::process::id(),
            listen: self.listen,
            admin: self.admin.as_ref().map(|(_, at)| *at),
            tls: self.tls.as_ref().map(|(_, at)| *at),
            framed: true,
        }
        .line();
        let mut fds = vec![self.listener.as_raw_fd()];
        fds.extend(self.admin.as_ref().map(|(fd, _)| fd.as_raw_fd()));
        fds.extend(self.tls.as_ref().map(|(fd, _)| fd.as_raw_fd()));
        items::send_rights(&stream, header.as_bytes(), &fds)?;
        tracing::info!(
            to_pid = pid,
            "pid {pid} asks for the listening sockets; waiting until it serves"
        );
        stream.set_read_timeout(Some(READY_TIMEOUT))?;
        let mut ready = String::new();
        reader.take(16).read_line(&mut ready)?;
        let framed = match ready.trim() {
            "READY" => false,
            "READY fds" => true,
            "" => {
                let why = format!("pid {pid} hung up before it served");
                return Err(io::Error::other(why));
            }
            other => return Err(io::Error::other(format!("pid {pid} said {other:?}"))),
        };
        handed_over.cancel();
        let state = snapshot(framed);
        let descriptors: usize = state.iter().map(|item| item.fds.len()).sum();
        // The new instance serves already: a state it misses costs pins, and descriptors lost
        // here close their connections, but the hand-over stands.
        match items::send(&stream, state, framed) {
            Ok(()) if descriptors > 0 => tracing::info!(
                to_pid = pid,
                descriptors,
                "handed {descriptors} descriptors of live connections over to pid {pid}"
            ),
            Ok(()) => {}
            Err(e) => tracing::warn!(
                to_pid = pid,
                "could not send the state to pid {pid}: {e} ({descriptors} descriptors of live \
                 connections were in it; those that did not go over are closed)"
            ),
        }
        Ok(pid)
    }
}

/// The hand-over socket, replacing a stale one (or the previous instance's, which took its turn),
/// reachable by this user only: whoever connects gets the listening sockets.
fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

#[cfg(test)]
mod tests;
