//! The process-wide metrics recorder. Code anywhere records with the `metrics` macros
//! (`metrics::counter!("puerta_connections_accepted_total").increment(1)`); this renders them in the
//! Prometheus text format.

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot install the metrics recorder: {0}")]
    Install(#[from] BuildError),
}

/// The buckets of every latency histogram, the recorder's and [`super::LatencyHistogram`]'s: 50 µs
/// to 10 s.
pub(super) const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// How often the recorder's histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the global recorder once.
pub fn install_recorder() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// Folds the recorder's histogram samples into their buckets every [`UPKEEP_EVERY`] until
/// `shutdown`. The recorder keeps each sample until then, and without this only a scrape would
/// fold them: a Puerta that nobody scrapes grew without bound (a health probe's sample every
/// interval, for as long as it runs).
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}

/// Times one health probe. A no-op until a recorder is installed (admin off, unit tests).
pub fn record_health_check(
    endpoint: &crate::config::Endpoint,
    took: std::time::Duration,
    ok: bool,
) {
    let result = if ok { "ok" } else { "failed" };
    metrics::histogram!(
        "puerta_health_check_duration_seconds",
        "backend" => endpoint.to_string(),
        "result" => result
    )
    .record(took.as_secs_f64());
}

/// Help texts for the metrics every mode shares.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "puerta_health_check_duration_seconds",
        "Duration of health probes (connect + hello), by backend and result"
    );
    describe_gauge!(
        "puerta_backend_up",
        "1 while the backend passes health checks, 0 while it is down"
    );
    describe_gauge!(
        "puerta_backend_active_connections",
        "Client flows currently connected to the backend"
    );
    describe_gauge!("puerta_backend_weight", "Configured weight of the backend");
    describe_counter!(
        "puerta_bytes_total",
        "Payload bytes forwarded, by data path (userspace or kernel) and direction"
    );
    describe_gauge!(
        "puerta_affinity_entries",
        "Client IPs in the session affinity table"
    );
    describe_counter!(
        "puerta_backend_connect_failures_total",
        "Backend connect attempts that failed"
    );
    describe_counter!(
        "puerta_no_backend_total",
        "Clients closed because no healthy backend would take them"
    );
    describe_counter!(
        "puerta_connections_accepted_total",
        "Client connections accepted"
    );
    describe_counter!(
        "puerta_connections_refused_total",
        "Client connections refused because max_connections was reached"
    );
    describe_gauge!(
        "puerta_connections_open",
        "Client connections currently open"
    );
}
