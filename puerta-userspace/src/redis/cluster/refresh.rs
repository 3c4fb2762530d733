//! Topology refresh: every `slot_refresh_interval`, and soon after a MOVED or a broken node. One task
//! does all refreshes, so a storm of redirects causes one refresh in flight plus at most one queued.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::topology::SlotMap;
use super::Cluster;
use crate::redis::backend::BackendConn;
use crate::redis::stats::Stats;
use crate::redis::wire;

/// Pause after a refresh before the next one, so that a burst of triggers folds together.
const MIN_GAP: Duration = Duration::from_millis(100);

pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let interval = cluster.config.slot_refresh_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cluster.refresh_requested() => {}
            _ = shutdown.cancelled() => return,
        }
        refresh_once(&cluster).await;
        tokio::time::sleep(MIN_GAP).await;
    }
}

/// Asks the known nodes, then the seeds, for `CLUSTER SLOTS`; installs the first map that covers every
/// slot, or the most complete one. Keeps the old map when nobody answers. True when a map was installed.
pub async fn refresh_once(cluster: &Cluster) -> bool {
    Stats::bump(&cluster.stats.refreshes);
    let mut best: Option<SlotMap> = None;
    let mut failures = Vec::new();
    for addr in cluster.refresh_candidates() {
        match fetch(cluster, &addr).await {
            Ok(map) => {
                let covered = map.covered();
                if best.as_ref().is_none_or(|b| covered > b.covered()) {
                    best = Some(map);
                }
                if covered == crate::redis::slots::SLOT_COUNT as usize {
                    break;
                }
            }
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    let installed = match best {
        Some(map) => {
            let covered = map.covered();
            if covered < crate::redis::slots::SLOT_COUNT as usize {
                tracing::warn!(covered, "cluster does not cover all slots");
            }
            tracing::debug!(covered, masters = map.masters().len(), "slot map refreshed");
            cluster.install(map);
            true
        }
        None => {
            tracing::warn!(
                "topology refresh failed, keeping the previous slot map: {}",
                failures.join("; ")
            );
            false
        }
    };
    cluster.mark_refreshed();
    installed
}

async fn fetch(cluster: &Cluster, addr: &Arc<str>) -> Result<SlotMap, String> {
    let conn = BackendConn::connect(addr.clone(), cluster.connect_options())
        .await
        .map_err(|e| e.to_string())?;
    let query = wire::command_bytes(&[&b"CLUSTER"[..], b"SLOTS"]);
    let reply = tokio::time::timeout(cluster.config.connection_timeout * 5, conn.call(query, 1))
        .await
        .map_err(|_| "no CLUSTER SLOTS reply in time".to_string())?
        .map_err(|e| e.to_string())?;
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(addr);
    SlotMap::from_cluster_slots(&reply, host).map_err(|e| e.to_string())
}
