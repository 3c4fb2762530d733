//! Holding a command through a failover (`failover_hold_ms`). When a slot's master is unreachable
//! or the cluster says CLUSTERDOWN, a command that is safe to send again waits, instead of failing,
//! until the slot map names a master that may answer, for at most `failover_hold_ms` from its first
//! failure. Meanwhile the refresh task runs back to back (`Cluster::holding`), so a promotion is
//! seen within about 50 ms of the cluster making it; a client sees a pause, not errors.
//!
//! The held command stays where it was: in its client's reply queue, whose writer waits for it
//! before any later reply, and under the client's output limit like every other reply. Later
//! commands of the client for the moved slot wait for it too (see `client::order`), so the
//! client's order is kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::redis::cluster::Cluster;
use crate::redis::stats::Stats;

/// How long a held command leaves the failed node alone while it is still the slot's owner: a
/// node that restarts gets its commands back soon, a dead one costs a refused connect per period.
const REPROBE: Duration = Duration::from_millis(500);
#[cfg(test)]
pub const REPROBE_FOR_TESTS: Duration = REPROBE;

/// One command's hold: counted in `failover_holding` while it lasts (also when the client leaves
/// meanwhile), timed when it ends.
pub struct Held {
    since: Instant,
    deadline: Instant,
    /// Times the command was held again after a retry failed.
    rounds: u32,
    holding: Arc<AtomicU64>,
}

impl Held {
    pub fn start(cluster: &Cluster) -> Held {
        Stats::bump(&cluster.stats.failover_held);
        Stats::bump(&cluster.stats.failover_holding);
        cluster.request_refresh();
        let since = Instant::now();
        Held {
            since,
            deadline: since + cluster.config.failover_hold,
            rounds: 0,
            holding: cluster.stats.failover_holding.clone(),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.holding.fetch_sub(1, Ordering::Relaxed);
        crate::redis::metrics::failover_hold(self.since.elapsed());
    }
}

/// Waits until `owner()` names a node worth trying: another node than the one that `failed`
/// (`None` for CLUSTERDOWN, the cluster's answer rather than a node's), or the same one right after
/// the first refresh (a connection reset on a healthy node costs no more than before) and then
/// every `REPROBE`. `None` once the hold is over: the client gets the last error.
pub async fn until_owner(
    cluster: &Cluster,
    held: &mut Held,
    failed: Option<&Arc<str>>,
    owner: impl Fn() -> Option<Arc<str>>,
) -> Option<Arc<str>> {
    let failed_at = Instant::now();
    let first = held.rounds == 0;
    held.rounds += 1;
    loop {
        let left = held.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        cluster.refresh_and_wait(left.min(REPROBE)).await;
        let Some(next) = owner() else { continue };
        let other = failed.is_none_or(|failed| *failed != next);
        if other || first || failed_at.elapsed() >= REPROBE {
            return Some(next);
        }
    }
}
