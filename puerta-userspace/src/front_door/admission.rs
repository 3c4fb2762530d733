//! `max_connections`: a client beyond the limit is refused at once (before any backend work),
//! counted in its mode's counter, and reported by a rate-limited log line, so a flood of clients
//! cannot flood the log too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::log_throttle::LogThrottle;

pub struct Admission {
    limit: Limit,
    max: usize,
    refusal_log: LogThrottle,
}

impl Admission {
    pub fn new(max: usize) -> Admission {
        Admission {
            limit: Limit(Arc::new(Semaphore::new(max))),
            max,
            refusal_log: LogThrottle::new(Duration::from_secs(1)),
        }
    }

    /// A permit the connection holds for its lifetime, or `None` at the limit.
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.limit.try_admit()
    }

    /// The same limit, for connections that do not come through the accept loop.
    pub fn limit(&self) -> Limit {
        self.limit.clone()
    }

    /// Counts a refusal in `refused` and logs it (rate-limited).
    pub fn refuse(&self, peer: SocketAddr, refused: &AtomicU64) {
        let total = refused.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(n) = self.refusal_log.hit(Instant::now()) {
            tracing::warn!(
                max_connections = self.max,
                refused_since_last_line = n,
                total_refused = total,
                "refused connection from {peer}: max_connections ({}) reached",
                self.max
            );
        }
    }
}

/// `max_connections` for connections taken over from a previous instance: they hold a permit
/// while one is free, so that new clients are refused while they fill the limit. They are never
/// refused themselves (they are live already), so with a lower limit than before they may run
/// over it until they end.
#[derive(Clone)]
pub struct Limit(Arc<Semaphore>);

impl Limit {
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}
