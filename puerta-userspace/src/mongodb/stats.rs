//! Process-wide MongoDB-mode counters, readable from anywhere (logs at shutdown, a future metrics
//! endpoint) without threading a handle through every task.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct MongoStats {
    /// Client connections admitted.
    pub accepted: AtomicU64,
    /// Client connections closed at once because `max_connections` flows were live.
    pub refused: AtomicU64,
    /// Flows currently open.
    pub active: AtomicU64,
    /// Backend connect attempts that failed (each retry counts).
    pub connect_failures: AtomicU64,
    /// Clients closed because no healthy mongos would take them.
    pub no_backend: AtomicU64,
    /// Flows closed by `client_idle_timeout_sec`.
    pub closed_idle: AtomicU64,
}

static STATS: MongoStats = MongoStats {
    accepted: AtomicU64::new(0),
    refused: AtomicU64::new(0),
    active: AtomicU64::new(0),
    connect_failures: AtomicU64::new(0),
    no_backend: AtomicU64::new(0),
    closed_idle: AtomicU64::new(0),
};

pub fn stats() -> &'static MongoStats {
    &STATS
}

impl MongoStats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Counts a flow as active for as long as it lives.
pub struct ActiveFlow;

impl ActiveFlow {
    pub fn start() -> ActiveFlow {
        STATS.active.fetch_add(1, Ordering::Relaxed);
        ActiveFlow
    }
}

impl Drop for ActiveFlow {
    fn drop(&mut self) {
        STATS.active.fetch_sub(1, Ordering::Relaxed);
    }
}
