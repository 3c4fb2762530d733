//! Start-up and shutdown shared by both modes: bind, serve until a stop signal, then drain live flows up
//! to `drain_timeout` so that clients in the middle of a request are not cut off by a deploy.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::AdminSlot;
use crate::config::{Config, Mode};
use crate::handover::{CarryOver, Handover};
use crate::mongodb::DataPath;
use crate::startup::{AdminListener, Prepared};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("mongodb mode: {0}")]
    Mongo(#[from] crate::mongodb::MongoError),
    #[error("redis mode: {0}")]
    Redis(#[from] crate::redis::RedisError),
    #[error("{0}")]
    Handover(#[from] crate::handover::HandoverError),
}

impl AppError {
    /// A start-up refusal the operator must fix in the configuration or environment (exit code 2),
    /// e.g. `forwarding = "kernel"` where the eBPF program cannot load.
    pub fn is_config_problem(&self) -> bool {
        matches!(
            self,
            AppError::Mongo(crate::mongodb::MongoError::Forward(_))
        )
    }
}

/// What every mode gets: the listener, the stop signal, and a tracker that every flow task must be
/// spawned on so that draining can wait for it.
pub struct Serve {
    pub config: Arc<Config>,
    pub listener: TcpListener,
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
    handover: Option<Handover>,
}

impl Serve {
    /// Called by the mode right before its accept loop: the previous instance (if this one took its
    /// sockets) may stop accepting now and send its state to `carry.merge`, and the next one may take
    /// the sockets, and `carry.snapshot`, from this one.
    pub fn ready(&mut self, carry: CarryOver) {
        let Some(handover) = self.handover.take() else {
            return;
        };
        if let Some(previous) = handover.previous {
            previous.serving(carry.merge);
        }
        let accepting = self.stop_accepting.clone();
        tokio::spawn(
            handover
                .offer
                .serve(carry.snapshot, accepting.clone(), accepting),
        );
    }
}

/// Runs the configured mode until `shutdown` fires, then waits for flows up to the drain deadline.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    let (_no_reloads, reloads) = watch::channel(Arc::new(config.clone()));
    let prepared = crate::startup::prepare(&config)?;
    run_prepared(config, prepared, shutdown, reloads).await
}

/// [`run`] with the privileged steps already done by [`crate::startup::prepare`] (`main` drops
/// capabilities in between), also applying every configuration published on `reloads` (see `main`'s
/// SIGHUP handler).
pub async fn run_prepared(
    config: Config,
    prepared: Prepared,
    shutdown: CancellationToken,
    reloads: watch::Receiver<Arc<Config>>,
) -> Result<(), AppError> {
    let addr = config.listen_addr;
    let listener = TcpListener::from_std(prepared.listener)
        .map_err(|source| AppError::Bind { addr, source })?;
    tracing::info!(%addr, mode = ?config.mode, "listening");
    let drain_timeout = config.drain_timeout;
    let serve_mode = config.mode;
    let stop_accepting = shutdown.child_token();
    // The admin port goes with the listener: after a hand-over the next instance answers it.
    let admin = start_admin(prepared.admin, stop_accepting.clone());
    let flows = TaskTracker::new();
    let serve = Serve {
        config: Arc::new(config),
        listener,
        shutdown: shutdown.clone(),
        stop_accepting,
        flows: flows.clone(),
        admin,
        reloads,
        data_path: prepared.data_path,
        handover: prepared.handover,
    };
    match serve.config.mode {
        Mode::Mongodb => crate::mongodb::serve(serve).await?,
        Mode::Redis => crate::redis::serve(serve).await?,
    }
    flows.close();
    let live = flows.len();
    if live > 0 {
        tracing::info!(
            live,
            deadline_sec = drain_timeout.as_secs(),
            "draining live flows"
        );
    }
    if tokio::time::timeout(drain_timeout, flows.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = flows.len(),
            "drain deadline reached; closing remaining flows"
        );
    }
    if serve_mode == Mode::Mongodb {
        crate::mongodb::log_totals();
    }
    Ok(())
}

/// Starts the admin listener in the background. It is an operator aid, not part of the data path: if it
/// cannot start, the proxy still serves and the log says why.
fn start_admin(listener: AdminListener, shutdown: CancellationToken) -> AdminSlot {
    let slot = AdminSlot::default();
    let listener = match listener {
        AdminListener::Off => {
            tracing::info!("admin endpoints disabled (admin_addr = \"off\")");
            return slot;
        }
        AdminListener::Failed { addr, error } => {
            tracing::error!(%addr, "admin endpoints unavailable: {error}");
            return slot;
        }
        AdminListener::Bound(listener) => listener,
    };
    let prometheus = match crate::admin::install_recorder() {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!("admin endpoints disabled: {e}");
            return slot;
        }
    };
    let served = slot.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::admin::serve(listener, served, prometheus, shutdown).await {
            tracing::error!("admin endpoints unavailable: {e}");
        }
    });
    slot
}
