//! `max_connections`: a client beyond the limit is closed at once (before any backend work), counted,
//! and reported by a rate-limited log line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::stats::{stats, MongoStats};
use crate::log_throttle::LogThrottle;

pub struct Admission {
    permits: Arc<Semaphore>,
    max: usize,
    refusal_log: LogThrottle,
}

impl Admission {
    pub fn new(max: usize) -> Admission {
        Admission {
            permits: Arc::new(Semaphore::new(max)),
            max,
            refusal_log: LogThrottle::new(Duration::from_secs(1)),
        }
    }

    /// A permit the flow holds for its lifetime, or `None` at the limit.
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Counts and (rate-limited) logs a refusal; the caller drops the socket.
    pub fn refuse(&self, peer: SocketAddr) {
        MongoStats::count(&stats().refused);
        if let Some(n) = self.refusal_log.hit(Instant::now()) {
            tracing::warn!(
                max_connections = self.max,
                refused_since_last_line = n,
                total_refused = MongoStats::get(&stats().refused),
                "refused connection from {peer}: max_connections ({}) reached",
                self.max
            );
        }
    }
}
