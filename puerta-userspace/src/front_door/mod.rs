//! The front door both modes share: one accept loop with admission (`max_connections`),
//! rate-limited logging of refusals and accept errors, every connection spawned on the flow tracker
//! that draining waits for, and the hand-over to the next instance. A mode only says what to do
//! with a connection it was given ([`Mode`]); `app` runs the door and is imported by nobody.

pub mod admission;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::AdminSlot;
use crate::config::Config;
use crate::handover::{CarryOver, Handover};
use crate::log_throttle::LogThrottle;
use crate::mongodb::DataPath;
use admission::Admission;

/// Which listener a client came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `listen_addr`.
    Main,
    /// Redis mode's `[redis.tls] listen_addr`: TLS beside a plain `listen_addr`.
    Tls,
}

/// What a mode does with the clients the front door lets in.
pub trait Mode: Send + Sync + 'static {
    /// Serves one admitted client until it is done (the door holds its admission permit until then).
    fn serve(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        door: Door,
    ) -> impl Future<Output = ()> + Send + 'static;

    /// A client beyond `max_connections`, before its socket is dropped: told why, where the
    /// protocol has words for it (by default it is just closed).
    fn refuse(&self, stream: TcpStream, _door: Door) -> impl Future<Output = ()> + Send + 'static {
        async move { drop(stream) }
    }

    /// Where refusals are counted.
    fn refused(&self) -> &AtomicU64;

    /// What the mode hands the next instance, and takes from the previous one (see `handover`);
    /// connections it takes over run through `intake`.
    fn carry_over(self: &Arc<Self>, _intake: &Intake) -> CarryOver {
        CarryOver::nothing()
    }

    /// Called once the door stopped accepting (shutdown or hand-over), before the flows drain.
    fn stopped_accepting(&self) {}

    /// The shutdown log's totals, once the flows drained.
    fn log_totals(&self) {}
}

/// What every mode gets: the listener, the stop signal, and a tracker that every flow task must be
/// spawned on so that draining can wait for it.
pub struct Serve {
    pub config: Arc<Config>,
    pub listener: TcpListener,
    /// Redis mode's listener for TLS alone, when `[redis.tls]` has its own `listen_addr`.
    pub tls_listener: Option<TcpListener>,
    pub shutdown: CancellationToken,
    /// Cancelled by `shutdown`, or when the next instance took the listening sockets over: the
    /// accept loop ends, flows go on (drained as on shutdown).
    pub stop_accepting: CancellationToken,
    pub flows: TaskTracker,
    /// Where the mode publishes its state for `/healthz`, `/backends`, `/affinity`.
    pub admin: AdminSlot,
    /// Validated configurations from SIGHUP reloads; the mode applies what it can change live.
    pub reloads: watch::Receiver<Arc<Config>>,
    /// MongoDB mode's data path, loaded by [`crate::startup::prepare`] before the runtime started.
    pub data_path: Option<DataPath>,
    pub handover: Option<Handover>,
    /// The offer to the next instance: waited for like the flows, since after READY it still
    /// sends the state (and, on the kernel path, the live connections themselves).
    pub offering: TaskTracker,
}

impl Serve {
    /// Called right before the accept loop: the previous instance (if this one took its sockets)
    /// may stop accepting now and send its state to `carry.merge`, and the next one may take the
    /// sockets, and `carry.snapshot`, from this one.
    fn ready(&mut self, carry: CarryOver) {
        let Some(handover) = self.handover.take() else {
            return;
        };
        if let Some(previous) = handover.previous {
            previous.serving(carry.merge, carry.takes_descriptors);
        }
        let accepting = self.stop_accepting.clone();
        self.offering.spawn(
            handover
                .offer
                .serve(carry.snapshot, accepting.clone(), accepting),
        );
    }
}

/// Accepts for `mode` on every listener until `serve.stop_accepting` fires, every connection
/// spawned on `serve.flows`, one admission limit for all. The listening sockets close on return
/// (`serve` is dropped), so that clients arriving while the flows drain are refused at once
/// instead of waiting in their queue.
pub async fn accept<M: Mode>(mut serve: Serve, mode: &Arc<M>) {
    let admission = Admission::new(serve.config.max_connections);
    let intake = Intake {
        flows: serve.flows.clone(),
        limit: admission.limit(),
    };
    serve.ready(mode.carry_over(&intake));
    let door = Entrance {
        admission,
        accept_errors: LogThrottle::new(Duration::from_secs(1)),
        serve: &serve,
    };
    let main = door.accept(&serve.listener, Door::Main, mode);
    match &serve.tls_listener {
        Some(tls) => {
            tokio::join!(main, door.accept(tls, Door::Tls, mode));
        }
        None => main.await,
    }
    mode.stopped_accepting();
}

/// What connections taken over from a previous instance run with: like the accepted ones, on
/// the flow tracker that draining waits for, and counted against `max_connections`.
#[derive(Clone)]
pub struct Intake {
    flows: TaskTracker,
    limit: admission::Limit,
}

impl Intake {
    pub fn spawn(&self, flow: impl Future<Output = ()> + Send + 'static) {
        let permit = self.limit.try_admit();
        self.flows.spawn(async move {
            flow.await;
            drop(permit);
        });
    }
}

/// What the accept loops of one front door share.
struct Entrance<'a> {
    admission: Admission,
    accept_errors: LogThrottle,
    serve: &'a Serve,
}

impl Entrance<'_> {
    async fn accept<M: Mode>(&self, listener: &TcpListener, door: Door, mode: &Arc<M>) {
        let (serve, admission, accept_errors) = (self.serve, &self.admission, &self.accept_errors);
        loop {
            let accepted = tokio::select! {
                _ = serve.stop_accepting.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    if let Some(n) = accept_errors.hit(Instant::now()) {
                        tracing::error!(errors = n, "accept failed: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(permit) = admission.try_admit() else {
                admission.refuse(peer, mode.refused());
                serve.flows.spawn(mode.refuse(stream, door));
                continue;
            };
            let served = mode.serve(stream, peer, door);
            serve.flows.spawn(async move {
                served.await;
                drop(permit);
            });
        }
    }
}
