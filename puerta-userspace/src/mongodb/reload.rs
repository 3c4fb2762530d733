//! SIGHUP in MongoDB mode: a new backend list (added, removed, re-weighted), new health settings and
//! connect timeout and `client_idle_timeout_sec` take effect without dropping a connection. New flows use the new [`FlowContext`];
//! flows already running keep the one they started with, so a removed backend drains naturally.
//! Addresses that stay keep their health state and counts ([`Backends::carry_over`]).

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::flow::FlowContext;
use super::placement::router::Router;
use crate::config::{Config, MongoConfig};
use crate::log_throttle::LogThrottle;
use crate::mongodb::datapath::forward::Forwarder;
use crate::mongodb::placement::affinity::AffinityTable;
use crate::mongodb::placement::backends::{Backends, HealthMirror};

/// What new flows are served with, swappable as a whole.
pub struct Live {
    ctx: RwLock<Arc<FlowContext>>,
    /// Stops the health-check loops of the current backend list.
    checks: Mutex<CancellationToken>,
    affinity: Option<Arc<AffinityTable>>,
    forwarder: Arc<Forwarder>,
    /// Shows every backend list's health outside the process (kernel path).
    health_mirror: Option<Arc<dyn HealthMirror>>,
    /// The settings in force, to tell what a reload changes.
    config: Mutex<MongoConfig>,
}

impl Live {
    pub fn new(
        config: &MongoConfig,
        idle_timeout: Option<Duration>,
        backends: Arc<Backends>,
        affinity: Option<Arc<AffinityTable>>,
        forwarder: Arc<Forwarder>,
        health_mirror: Option<Arc<dyn HealthMirror>>,
        checks: CancellationToken,
    ) -> Live {
        let ctx = context(
            config,
            idle_timeout,
            backends,
            affinity.clone(),
            forwarder.clone(),
        );
        Live {
            ctx: RwLock::new(Arc::new(ctx)),
            checks: Mutex::new(checks),
            affinity,
            forwarder,
            health_mirror,
            config: Mutex::new(config.clone()),
        }
    }

    /// The context for a flow starting now.
    pub fn current(&self) -> Arc<FlowContext> {
        self.ctx.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn affinity(&self) -> Option<&Arc<AffinityTable>> {
        self.affinity.as_ref()
    }

    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }
}

fn context(
    config: &MongoConfig,
    idle_timeout: Option<Duration>,
    backends: Arc<Backends>,
    affinity: Option<Arc<AffinityTable>>,
    forwarder: Arc<Forwarder>,
) -> FlowContext {
    FlowContext {
        router: Router::new(backends, affinity, config.affinity),
        forwarder,
        connect_timeout: config.connect_timeout,
        idle_timeout,
        no_backend_log: LogThrottle::new(Duration::from_secs(1)),
        idle_log: LogThrottle::new(Duration::from_secs(1)),
        backend_failure_log: LogThrottle::new(Duration::from_secs(1)),
    }
}

/// Applies every configuration `main` publishes (already validated) until `stop`.
pub async fn follow(
    live: Arc<Live>,
    mut reloads: watch::Receiver<Arc<Config>>,
    stop: CancellationToken,
) {
    while let Some(config) = crate::reload::next_config(&mut reloads, &stop).await {
        match &config.mongodb {
            Some(mongo) => apply(&live, mongo, config.client_idle_timeout, &stop).await,
            None => {
                tracing::error!("reload ignored: the new configuration has no [mongodb] section")
            }
        }
    }
}

async fn apply(
    live: &Live,
    new: &MongoConfig,
    idle_timeout: Option<Duration>,
    stop: &CancellationToken,
) {
    let old_ctx = live.current();
    let old = old_ctx.router.backends();
    warn_restart_only(&live.config.lock().unwrap_or_else(|e| e.into_inner()), new);
    let backends = Arc::new(super::datapath::mirrored(
        Backends::carry_over(&new.endpoints, old),
        live.health_mirror.as_ref(),
    ));
    if let Some(kernel) = live.forwarder.kernel_path() {
        kernel.clear_backends_from(new.endpoints.len() as u32);
    }
    // The new list is checked once before any client is routed by it, as at start-up.
    let checks = stop.child_token();
    super::start_health_checks(new, backends.clone(), checks.clone()).await;
    let next = context(
        new,
        idle_timeout,
        backends.clone(),
        live.affinity.clone(),
        live.forwarder.clone(),
    );
    *live.ctx.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    let dropped = live.affinity.as_ref().map_or(0, |table| {
        table.renumber(|i| backends.position(&old.endpoint(i).address()))
    });
    let previous_checks = std::mem::replace(
        &mut *live.checks.lock().unwrap_or_else(|e| e.into_inner()),
        checks,
    );
    previous_checks.cancel();
    log_changes(old, &backends, dropped, idle_timeout);
    *live.config.lock().unwrap_or_else(|e| e.into_inner()) = new.clone();
}

fn log_changes(
    old: &Backends,
    new: &Backends,
    affinity_dropped: usize,
    idle_timeout: Option<Duration>,
) {
    let added: Vec<String> = new
        .endpoints()
        .filter(|e| old.position(&e.address()).is_none())
        .map(|e| e.to_string())
        .collect();
    let removed: Vec<String> = old
        .endpoints()
        .filter(|e| new.position(&e.address()).is_none())
        .map(|e| e.to_string())
        .collect();
    let reweighted: Vec<String> = new
        .endpoints()
        .filter_map(|e| {
            let before = old.endpoint(old.position(&e.address())?).weight;
            (before != e.weight).then(|| format!("{e} {before}->{}", e.weight))
        })
        .collect();
    tracing::info!(
        backends = new.len(),
        up = new.up_count(),
        ?added,
        ?removed,
        ?reweighted,
        affinity_dropped,
        client_idle_timeout_sec = idle_timeout.map_or(0, |t| t.as_secs()),
        "configuration reloaded (mongodb backends, health settings, idle timeout for new flows)"
    );
}

/// Settings fixed at start-up; a reload that changes them says so instead of silently ignoring them.
fn warn_restart_only(old: &MongoConfig, new: &MongoConfig) {
    let fixed = [
        ("forwarding", old.forwarding != new.forwarding),
        ("bpf_pin_dir", old.bpf_pin_dir != new.bpf_pin_dir),
        (
            "session_affinity_enabled",
            old.session_affinity_enabled != new.session_affinity_enabled,
        ),
        (
            "session_timeout_sec",
            old.session_timeout != new.session_timeout,
        ),
    ];
    for (key, changed) in fixed {
        if changed {
            tracing::warn!("mongodb.{key} changed; it takes effect only after a restart");
        }
    }
}
