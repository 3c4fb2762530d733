//! The operator's window: Prometheus `/metrics`, `/healthz`, `/backends` and `/affinity` on one port
//! (`admin_addr`, loopback by default). Modes publish what they know through [`AdminView`]; this module
//! only serves it, so the HTTP side never reaches into a mode's internals.

mod histogram;
mod metrics;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

pub use self::histogram::{label_value, LatencyHistogram, Snapshot};
pub use self::metrics::{install_recorder, record_health_check, MetricsError};

/// What a mode exposes to operators.
pub trait AdminView: Send + Sync + 'static {
    /// Listening and at least one backend usable.
    fn ready(&self) -> bool;
    /// One JSON object per backend: address, weight, health, active connections, ...
    fn backends(&self) -> serde_json::Value;
    /// The session affinity table, where the mode has one.
    fn affinity(&self) -> Option<serde_json::Value> {
        None
    }
    /// Sets the gauges that are read from state at scrape time (health, map sizes, BPF counters)
    /// rather than counted as events happen.
    fn refresh_metrics(&self) {}
    /// Appends the series the mode keeps outside the recorder (see [`LatencyHistogram`]), in the
    /// Prometheus text format.
    fn render_own_metrics(&self, _out: &mut String) {}
}

/// Filled by the mode once its state exists; empty means "starting" (`/healthz` answers 503).
#[derive(Clone, Default)]
pub struct AdminSlot(Arc<OnceLock<Arc<dyn AdminView>>>);

impl AdminSlot {
    pub fn publish(&self, view: Arc<dyn AdminView>) {
        let _ = self.0.set(view);
    }

    fn view(&self) -> Option<&Arc<dyn AdminView>> {
        self.0.get()
    }
}

#[derive(Clone)]
struct AdminState {
    slot: AdminSlot,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
}

/// Serves on `listener` (bound and non-blocking; bound before the runtime so that privileges can be
/// dropped first) until `shutdown`. An error is returned so the caller can decide how loud to be; the
/// proxy itself keeps working without its admin port.
pub async fn serve(
    listener: std::net::TcpListener,
    slot: AdminSlot,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "admin endpoints: /metrics /healthz /backends /affinity");
    tokio::spawn(metrics::upkeep(prometheus.clone(), shutdown.clone()));
    let router = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .route("/backends", get(backends))
        .route("/affinity", get(affinity))
        .with_state(AdminState { slot, prometheus });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics_page(State(state): State<AdminState>) -> String {
    let view = state.slot.view();
    if let Some(view) = view {
        view.refresh_metrics();
    }
    let mut text = state.prometheus.render();
    if let Some(view) = view {
        view.render_own_metrics(&mut text);
    }
    text
}

async fn healthz(State(state): State<AdminState>) -> Response {
    match state.slot.view() {
        Some(view) if view.ready() => (StatusCode::OK, "ok\n").into_response(),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "no backend up\n").into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
    }
}

async fn backends(State(state): State<AdminState>) -> Response {
    match state.slot.view() {
        Some(view) => Json(view.backends()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
    }
}

async fn affinity(State(state): State<AdminState>) -> Response {
    match state.slot.view().map(|v| v.affinity()) {
        Some(Some(table)) => Json(table).into_response(),
        Some(None) => (StatusCode::NOT_FOUND, "this mode has no affinity table\n").into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
    }
}
