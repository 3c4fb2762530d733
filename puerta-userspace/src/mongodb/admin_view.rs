//! What MongoDB mode shows on the admin port: backends with health and load, the affinity table, and
//! the gauges read at scrape time (including the kernel path's BPF byte counters, which only the
//! kernel knows and which are read, not pushed).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::reload::Live;
use super::stats::{stats, MongoStats};
use crate::admin::AdminView;

pub struct MongoAdminView {
    pub live: Arc<Live>,
}

impl AdminView for MongoAdminView {
    fn ready(&self) -> bool {
        self.live.current().router.backends().up_count() > 0
    }

    fn backends(&self) -> Value {
        let ctx = self.live.current();
        let backends = ctx.router.backends();
        let list: Vec<Value> = (0..backends.len())
            .map(|i| {
                let endpoint = backends.endpoint(i);
                json!({
                    "address": endpoint.to_string(),
                    "weight": endpoint.weight,
                    "health": if backends.is_up(i) { "up" } else { "down" },
                    "active_connections": backends.active(i),
                })
            })
            .collect();
        Value::Array(list)
    }

    fn affinity(&self) -> Option<Value> {
        let table = self.live.affinity()?;
        let ctx = self.live.current();
        let backends = ctx.router.backends();
        let now = Instant::now();
        let entries: Vec<Value> = table
            .snapshot()
            .into_iter()
            .map(|(ip, entry)| {
                json!({
                    "client": ip.to_string(),
                    "backend": (entry.backend < backends.len())
                        .then(|| backends.endpoint(entry.backend).to_string()),
                    "live_connections": entry.live_conns,
                    "idle_sec": now.saturating_duration_since(entry.last_seen).as_secs(),
                })
            })
            .collect();
        Some(json!({
            "session_timeout_sec": table.timeout().as_secs(),
            "entries": entries,
        }))
    }

    fn refresh_metrics(&self) {
        refresh_connection_counters();
        let ctx = self.live.current();
        let backends = ctx.router.backends();
        for i in 0..backends.len() {
            let label = backends.endpoint(i).to_string();
            let up = if backends.is_up(i) { 1.0 } else { 0.0 };
            metrics::gauge!("puerta_backend_up", "backend" => label.clone()).set(up);
            metrics::gauge!("puerta_backend_active_connections", "backend" => label.clone())
                .set(backends.active(i) as f64);
            metrics::gauge!("puerta_backend_weight", "backend" => label)
                .set(f64::from(backends.endpoint(i).weight));
        }
        let entries = self.live.affinity().map_or(0, |t| t.len());
        metrics::gauge!("puerta_affinity_entries").set(entries as f64);
        let (up, down) = crate::mongodb::datapath::forward::userspace_bytes_by_direction();
        set_bytes("userspace", up, down);
        let (up, down) = crate::mongodb::datapath::forward::splice_bytes_by_direction();
        set_bytes("splice", up, down);
        if let Some(kernel) = self.live.forwarder().kernel_path() {
            match kernel.counters() {
                Ok(c) => set_bytes(
                    "kernel",
                    c.redirected_client_to_backend.bytes,
                    c.redirected_backend_to_client.bytes,
                ),
                Err(e) => tracing::debug!("cannot read the BPF counters: {e}"),
            }
        }
    }
}

/// The process-wide counters flows already keep, copied into the recorder.
fn refresh_connection_counters() {
    let s = stats();
    let set = |name: &'static str, value: u64| metrics::counter!(name).absolute(value);
    set(
        "puerta_connections_accepted_total",
        MongoStats::get(&s.accepted),
    );
    set(
        "puerta_connections_refused_total",
        MongoStats::get(&s.refused),
    );
    set(
        "puerta_backend_connect_failures_total",
        MongoStats::get(&s.connect_failures),
    );
    set("puerta_no_backend_total", MongoStats::get(&s.no_backend));
    set(
        "puerta_client_idle_timeouts_total",
        MongoStats::get(&s.closed_idle),
    );
    metrics::gauge!("puerta_connections_open").set(MongoStats::get(&s.active) as f64);
}

fn set_bytes(path: &'static str, client_to_backend: u64, backend_to_client: u64) {
    metrics::counter!("puerta_bytes_total", "path" => path, "direction" => "client_to_backend")
        .absolute(client_to_backend);
    metrics::counter!("puerta_bytes_total", "path" => path, "direction" => "backend_to_client")
        .absolute(backend_to_client);
}
