//! Start-up and shutdown shared by both modes: bind, serve until a stop signal, then drain live flows up
//! to `drain_timeout` so that clients in the middle of a request are not cut off by a deploy.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::AdminSlot;
use crate::config::{Config, Mode};
use crate::front_door::{self, Serve};
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
    #[error("{0}")]
    Handover(#[from] crate::handover::HandoverError),
    #[error("redis mode: {0}")]
    Redis(#[from] crate::redis::RedisError),
}

impl AppError {
    /// A start-up refusal the operator must fix in the configuration or environment (exit code 2),
    /// e.g. `forwarding = "kernel"` where the eBPF program cannot load.
    pub fn is_config_problem(&self) -> bool {
        matches!(
            self,
            AppError::Mongo(crate::mongodb::MongoError::Forward(_))
                | AppError::Redis(crate::redis::RedisError::Tls(_))
        )
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
    let tls_listener = match (prepared.tls_listener, config.tls_listen_addr()) {
        (Some(l), Some(addr)) => {
            let l = TcpListener::from_std(l).map_err(|source| AppError::Bind { addr, source })?;
            tracing::info!(%addr, "listening for TLS clients");
            Some(l)
        }
        _ => None,
    };
    let drain_timeout = config.drain_timeout;
    let stop_accepting = shutdown.child_token();
    // The admin port goes with the listener: after a hand-over the next instance answers it.
    let admin = start_admin(prepared.admin, stop_accepting.clone());
    let mut serve = Serve {
        config: Arc::new(config),
        listener,
        tls_listener,
        shutdown: shutdown.clone(),
        stop_accepting,
        flows: TaskTracker::new(),
        offering: TaskTracker::new(),
        admin,
        reloads,
        data_path: prepared.data_path,
        handover: prepared.handover,
    };
    match serve.config.mode {
        Mode::Mongodb => {
            let mode = crate::mongodb::prepare(&mut serve).await?;
            run_mode(serve, &mode, drain_timeout).await;
        }
        Mode::Redis => {
            let mode = crate::redis::prepare(&serve).await?;
            run_mode(serve, &mode, drain_timeout).await;
        }
    }
    Ok(())
}

/// The front door for `mode` until it stops accepting, then the flows drain up to the deadline.
async fn run_mode<M: front_door::Mode>(serve: Serve, mode: &Arc<M>, drain_timeout: Duration) {
    let (flows, offering) = (serve.flows.clone(), serve.offering.clone());
    front_door::accept(serve, mode).await;
    flows.close();
    offering.close();
    let live = flows.len();
    if live > 0 {
        tracing::info!(
            live,
            deadline_sec = drain_timeout.as_secs(),
            "draining live flows"
        );
    }
    let drained = async { tokio::join!(flows.wait(), offering.wait()) };
    if tokio::time::timeout(drain_timeout, drained).await.is_err() {
        tracing::warn!(
            left = flows.len(),
            "drain deadline reached; closing remaining flows"
        );
    }
    mode.log_totals();
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
