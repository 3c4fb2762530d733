//! Active health checks of the mongos routers: every interval, all endpoints in parallel, TCP connect
//! plus an OP_MSG `hello` within a timeout; rise/fall hysteresis decides when a backend changes state.
//!
//! Start state: [`Checker::round`] is run once before the listener accepts anything, and that first
//! result sets each backend's state directly. Starting "all healthy" would send the first clients to a
//! dead router (then to retry); starting "all down" would refuse clients for `rise` intervals.

pub mod bson;
pub mod hello;
mod state;

use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Endpoint;
use crate::mongodb::connect::connect;
use crate::mongodb::datapath::proxy_protocol;
use crate::mongodb::placement::backends::Backends;
pub use hello::{HelloError, HelloReply};
pub use state::{Hysteresis, Transition};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("hello: {0}")]
    Hello(#[from] HelloError),
}

/// One probe of one endpoint. The seam for other kinds of checks (and for tests); the checker applies
/// the timeout, so an implementation may simply await.
pub trait HealthCheck: Send + Sync + 'static {
    fn check(
        &self,
        endpoint: &Endpoint,
    ) -> impl Future<Output = Result<HelloReply, CheckError>> + Send;
}

/// The MongoDB check: connect, (PROXY header when the endpoint wants one), `hello`, validate reply.
#[derive(Debug, Default)]
pub struct HelloCheck {
    next_request_id: AtomicI32,
}

impl HealthCheck for HelloCheck {
    async fn check(&self, endpoint: &Endpoint) -> Result<HelloReply, CheckError> {
        let mut stream = connect(endpoint).await.map_err(CheckError::Connect)?;
        let _ = stream.set_nodelay(true);
        // A `loadBalancerPort` expects a PROXY header first; a check has no client, so it says LOCAL.
        if let Some(header) = proxy_protocol::local_header(endpoint.proxy_protocol) {
            stream
                .write_all(&header)
                .await
                .map_err(|e| CheckError::Hello(e.into()))?;
        }
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        Ok(hello::exchange(&mut stream, id).await?)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
}

/// What the checker remembers per backend, beyond the shared up/down flag.
#[derive(Debug)]
struct Tracked {
    hysteresis: Hysteresis,
    is_mongos: Option<bool>,
}

/// What a probe needs, shared by the per-backend loops.
struct Prober<C> {
    backends: Arc<Backends>,
    check: C,
    settings: HealthSettings,
}

impl<C: HealthCheck> Prober<C> {
    /// One check of backend `index`, bounded by the timeout.
    async fn probe(&self, index: usize) -> Result<HelloReply, CheckError> {
        let endpoint = self.backends.endpoint(index);
        let timeout = self.settings.timeout;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(timeout, self.check.check(endpoint))
            .await
            .unwrap_or(Err(CheckError::Timeout(timeout)));
        crate::admin::record_health_check(endpoint, started.elapsed(), result.is_ok());
        result
    }
}

/// Runs the checks and writes the results into [`Backends`].
pub struct Checker<C> {
    prober: Arc<Prober<C>>,
    tracked: Vec<Tracked>,
}

impl<C: HealthCheck> Checker<C> {
    pub fn new(backends: Arc<Backends>, check: C, settings: HealthSettings) -> Checker<C> {
        let tracked = (0..backends.len())
            .map(|i| Tracked {
                hysteresis: Hysteresis::resume(
                    settings.fall,
                    settings.rise,
                    backends.checked_state(i),
                ),
                is_mongos: None,
            })
            .collect();
        Checker {
            prober: Arc::new(Prober {
                backends,
                check,
                settings,
            }),
            tracked,
        }
    }

    /// Checks every endpoint once, in parallel, and applies the results.
    pub async fn round(&mut self) {
        let mut probes = JoinSet::new();
        for index in 0..self.tracked.len() {
            let prober = self.prober.clone();
            probes.spawn(async move { (index, prober.probe(index).await) });
        }
        while let Some(joined) = probes.join_next().await {
            match joined {
                Ok((index, result)) => apply(
                    &self.prober.backends,
                    index,
                    &mut self.tracked[index],
                    result,
                ),
                Err(e) => tracing::error!("health probe task failed: {e}"),
            }
        }
    }

    /// Checks every `interval` until `stop` fires. Each backend has its own schedule, so a router that
    /// hangs until the timeout never delays noticing that another one died.
    pub async fn run(self, stop: CancellationToken) {
        let mut loops = JoinSet::new();
        for (index, tracked) in self.tracked.into_iter().enumerate() {
            loops.spawn(check_loop(self.prober.clone(), index, tracked));
        }
        stop.cancelled().await;
        loops.shutdown().await;
    }
}

async fn check_loop<C: HealthCheck>(prober: Arc<Prober<C>>, index: usize, mut tracked: Tracked) {
    let mut tick = tokio::time::interval(prober.settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the start-up round already ran
    loop {
        tick.tick().await;
        let result = prober.probe(index).await;
        apply(&prober.backends, index, &mut tracked, result);
    }
}

fn apply(
    backends: &Backends,
    index: usize,
    tracked: &mut Tracked,
    result: Result<HelloReply, CheckError>,
) {
    let endpoint = backends.endpoint(index);
    if let Ok(reply) = &result {
        note_kind(endpoint, &mut tracked.is_mongos, reply.is_mongos);
    }
    let transition = tracked.hysteresis.record(result.is_ok());
    if let Some(up) = tracked.hysteresis.is_up() {
        backends.set_up(index, up);
    }
    match (transition, &result) {
        (Some(t), _) => log_transition(endpoint, t, result.as_ref().err()),
        (None, Err(e)) => tracing::debug!(backend = %endpoint, "health check failed: {e}"),
        (None, Ok(_)) => {}
    }
}

fn note_kind(endpoint: &Endpoint, known: &mut Option<bool>, is_mongos: bool) {
    if *known == Some(is_mongos) {
        return;
    }
    *known = Some(is_mongos);
    if is_mongos {
        tracing::info!(backend = %endpoint, "mongos {endpoint} is a mongos router (msg: isdbgrid)");
    } else {
        tracing::info!(
            backend = %endpoint,
            "mongos {endpoint} answers hello but is not a mongos router (no msg: isdbgrid)"
        );
    }
}

fn log_transition(endpoint: &Endpoint, transition: Transition, error: Option<&CheckError>) {
    let error = error.map(|e| e.to_string()).unwrap_or_default();
    match transition {
        Transition::Initial { up: true } => {
            tracing::info!(backend = %endpoint, "mongos {endpoint} is up (first check)")
        }
        Transition::Initial { up: false } => tracing::warn!(
            backend = %endpoint,
            "mongos {endpoint} is down (first check failed: {error})"
        ),
        Transition::Changed { up: true, streak } => tracing::info!(
            backend = %endpoint,
            "mongos {endpoint} is up again after {streak} good checks"
        ),
        Transition::Changed { up: false, streak } => tracing::warn!(
            backend = %endpoint,
            "mongos {endpoint} is down after {streak} failed checks: {error}"
        ),
    }
}

#[cfg(test)]
mod tests;
