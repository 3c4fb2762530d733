//! MongoDB mode: an L4 balancer in front of mongos routers. New clients are placed by smooth weighted
//! round-robin over healthy routers and then stick to theirs (session affinity); health comes from
//! OP_MSG `hello` checks; payload moves through a [`Forwarder`](crate::forward::Forwarder).

mod admin_view;
mod admission;
mod carry_over;
mod datapath;
mod flow;
mod reload;
mod rendezvous;
mod router;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::affinity::{self, AffinityTable};
use crate::app::Serve;
use crate::backends::Backends;
use crate::config::MongoConfig;
use crate::forward::ForwardError;
use crate::health::{Checker, HealthSettings, HelloCheck};
use crate::log_throttle::LogThrottle;
use admission::Admission;
pub use datapath::{data_path, DataPath};
use reload::Live;
pub use router::{Route, Router};
pub use stats::{stats, MongoStats};

#[derive(Debug, thiserror::Error)]
pub enum MongoError {
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

/// Accepts until `serve.stop_accepting` fires, spawning every flow on `serve.flows`.
pub async fn serve(mut serve: Serve) -> Result<(), MongoError> {
    let config = serve.config.mongodb();
    let path = match serve.data_path.take() {
        Some(path) => path,
        None => data_path(config)?,
    };
    let backends = Arc::new(datapath::mirrored(
        Backends::new(&config.endpoints, false),
        path.health_mirror.as_ref(),
    ));
    // Background tasks end with serve(), whichever way it returns.
    let background = serve.shutdown.child_token();
    let _stop_background = background.clone().drop_guard();
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
    let admission = Admission::new(serve.config.max_connections);
    serve.ready(carry_over::affinity(&live));
    accept_loop(&serve, &serve.listener, &admission, &live).await;
    tracing::info!("stopped accepting MongoDB clients");
    Ok(())
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

async fn accept_loop(serve: &Serve, listener: &TcpListener, admission: &Admission, live: &Live) {
    let accept_errors = LogThrottle::new(Duration::from_secs(1));
    loop {
        let accepted = tokio::select! {
            _ = serve.stop_accepting.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (client, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                if let Some(n) = accept_errors.hit(std::time::Instant::now()) {
                    tracing::error!(errors = n, "accept failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = admission.try_admit() else {
            admission.refuse(peer);
            drop(client);
            continue;
        };
        serve
            .flows
            .spawn(flow::run(live.current(), client, peer, permit));
    }
}

/// One line with the totals, for the shutdown log.
pub fn log_totals() {
    crate::kernel::finish_active();
    let s = stats();
    tracing::info!(
        accepted = MongoStats::get(&s.accepted),
        refused = MongoStats::get(&s.refused),
        connect_failures = MongoStats::get(&s.connect_failures),
        no_backend = MongoStats::get(&s.no_backend),
        closed_idle = MongoStats::get(&s.closed_idle),
        userspace_bytes = crate::forward::userspace_bytes(),
        "mongodb mode totals"
    );
}
