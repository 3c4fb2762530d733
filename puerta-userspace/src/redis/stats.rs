//! Counters shown by INFO, so operators can see redirects and refreshes without a debugger.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub struct Stats {
    pub started: Instant,
    pub clients_connected: AtomicU64,
    pub clients_total: AtomicU64,
    pub clients_rejected: AtomicU64,
    pub moved: AtomicU64,
    pub ask: AtomicU64,
    pub tryagain: AtomicU64,
    pub backend_errors: AtomicU64,
    pub refreshes: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Commands that waited for a new master (`failover_hold_ms`), and how many wait now.
    pub failover_held: AtomicU64,
    pub failover_holding: Arc<AtomicU64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            clients_connected: AtomicU64::new(0),
            clients_total: AtomicU64::new(0),
            clients_rejected: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            ask: AtomicU64::new(0),
            tryagain: AtomicU64::new(0),
            backend_errors: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            failover_held: AtomicU64::new(0),
            failover_holding: Arc::default(),
        }
    }
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
