//! MongoDB mode: an L4 balancer in front of mongos routers. New clients are placed by smooth weighted
//! round-robin over healthy routers and then stick to theirs (session affinity); health comes from
//! OP_MSG `hello` checks; payload moves through a [`Forwarder`](crate::mongodb::datapath::forward::Forwarder).

mod admin_view;
mod carry_over;
pub mod connect;
pub mod datapath;
mod flow;
pub mod health;
pub mod placement;
mod reload;
mod stats;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::MongoConfig;
use crate::front_door::{Door, Intake, Mode, Serve};
use crate::handover::CarryOver;
use crate::mongodb::datapath::forward::ForwardError;
use crate::mongodb::health::{Checker, HealthSettings, HelloCheck};
use crate::mongodb::placement::affinity::{self, AffinityTable};
use crate::mongodb::placement::backends::Backends;
pub use datapath::{data_path, DataPath};
pub use placement::router::{Route, Router};
use reload::Live;
pub use stats::{stats, MongoStats};

#[derive(Debug, thiserror::Error)]
pub enum MongoError {
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

/// MongoDB mode behind the front door: the live configuration every flow starts from.
pub struct MongoMode {
    live: Arc<Live>,
    /// Health checks, affinity clean-up and reloads run until the door stops accepting.
    background: Mutex<Option<DropGuard>>,
}

/// Loads the data path (unless start-up did), runs the first health check round (no client is
/// placed before backends are known), and starts the background tasks.
pub async fn prepare(serve: &mut Serve) -> Result<Arc<MongoMode>, MongoError> {
    let config = serve.config.mongodb();
    let path = match serve.data_path.take() {
        Some(path) => path,
        None => data_path(config)?,
    };
    let backends = Arc::new(datapath::mirrored(
        Backends::new(&config.endpoints, false),
        path.health_mirror.as_ref(),
    ));
    let background = serve.shutdown.child_token();
    let checks = background.child_token();
    start_health_checks(config, backends.clone(), checks.clone()).await;
    let affinity = config.session_affinity_enabled.then(|| {
        let table = Arc::new(AffinityTable::new(
            config.session_timeout,
            path.affinity_mirror.clone(),
        ));
        tokio::spawn(affinity::cleanup_task(table.clone(), background.clone()));
        table
    });
    let live = Arc::new(Live::new(
        config,
        serve.config.client_idle_timeout,
        backends,
        affinity,
        Arc::new(path.forwarder),
        path.health_mirror,
        checks,
    ));
    serve
        .admin
        .publish(Arc::new(admin_view::MongoAdminView { live: live.clone() }));
    tokio::spawn(reload::follow(
        live.clone(),
        serve.reloads.clone(),
        background.clone(),
    ));
    Ok(Arc::new(MongoMode {
        live,
        background: Mutex::new(Some(background.drop_guard())),
    }))
}

impl Mode for MongoMode {
    fn serve(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        _door: Door,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        flow::run(self.live.current(), stream, peer)
    }

    fn refused(&self) -> &AtomicU64 {
        &stats().refused
    }

    fn carry_over(self: &Arc<Self>, intake: &Intake) -> CarryOver {
        carry_over::carry_over(&self.live, intake)
    }

    fn stopped_accepting(&self) {
        self.background
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        tracing::info!("stopped accepting MongoDB clients");
    }

    fn log_totals(&self) {
        log_totals();
    }
}

/// Runs the first round before returning, so no client is accepted before backends are known, then
/// keeps checking in the background.
pub(crate) async fn start_health_checks(
    config: &MongoConfig,
    backends: Arc<Backends>,
    stop: CancellationToken,
) {
    let settings = HealthSettings {
        interval: config.health_check_interval,
        timeout: config.health_check_timeout,
        fall: config.health_fall,
        rise: config.health_rise,
    };
    let mut checker = Checker::new(backends.clone(), HelloCheck::default(), settings);
    checker.round().await;
    tracing::info!(
        up = backends.up_count(),
        total = backends.len(),
        "initial health check done"
    );
    tokio::spawn(checker.run(stop));
}

/// One line with the totals, for the shutdown log.
fn log_totals() {
    crate::mongodb::datapath::kernel::finish_active();
    let s = stats();
    tracing::info!(
        accepted = MongoStats::get(&s.accepted),
        refused = MongoStats::get(&s.refused),
        connect_failures = MongoStats::get(&s.connect_failures),
        no_backend = MongoStats::get(&s.no_backend),
        closed_idle = MongoStats::get(&s.closed_idle),
        userspace_bytes = crate::mongodb::datapath::forward::userspace_bytes(),
        "mongodb mode totals"
    );
}
