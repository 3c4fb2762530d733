//! Command → slot → node, and everything that happens when the node says "not here": MOVED updates the
//! map and retries on the owner, ASK retries once on the importing node after ASKING (same connection,
//! same write), TRYAGAIN/CLUSTERDOWN back off, a broken node triggers a refresh. After `max_redirects`
//! retries the last error goes to the client as is.
//!
//! Sending is split from waiting (`send` then `InFlight::finish`) so that a session can put a command on
//! the wire before it parses the next one: commands of one client reach each node in the order sent.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::redis::client::output::{Charged, OutputBudget};
use crate::redis::cluster::redirect::{classify_wire, Redirect};
use crate::redis::cluster::Cluster;
use crate::redis::exec::answer::Answer;
use crate::redis::node::backend::{BackendConn, BackendError, NodeResult};
use crate::redis::node::pool::Lane;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;
use crate::redis::stats::Stats;

/// A command ready for the cluster.
#[derive(Debug, Clone)]
pub struct Route {
    pub payload: Bytes,
    /// `None` for commands without keys: any master serves them.
    pub slot: Option<u16>,
    /// Safe to resend after a lost connection, and eligible for replicas.
    pub readonly: bool,
    /// Runs on its own connection (blocking commands) instead of the shared pool.
    pub dedicated: bool,
}

/// Where a sent command's reply will come from.
pub struct InFlight {
    cluster: Arc<Cluster>,
    route: Route,
    sender: Sender,
    attempt: Attempt,
}

/// Who sends: the lane of the client's pools, and the budget its replies count against.
#[derive(Clone)]
pub struct Sender {
    pub lane: Lane,
    pub budget: Option<Arc<OutputBudget>>,
}

struct Attempt {
    addr: Arc<str>,
    reply: Result<oneshot::Receiver<NodeResult>, BackendError>,
    /// Keeps a dedicated connection open until its reply is in.
    _conn: Option<BackendConn>,
}

/// Puts `route` on the wire to `addr` (from [`target`]).
/// `conn`, when given, is the pooled connection of the client's lane to `addr` (the session keeps
/// them at hand); retries after redirects look theirs up in the pools.
pub async fn send_to(
    cluster: &Arc<Cluster>,
    route: Route,
    sender: Sender,
    addr: Arc<str>,
    conn: Option<Arc<BackendConn>>,
) -> InFlight {
    let attempt = match conn {
        Some(conn) => Attempt {
            reply: Ok(conn.send_for(route.payload.clone(), 1, sender.budget.as_ref())),
            addr,
            _conn: None,
        },
        None => attempt(cluster, &route, &sender, addr, false).await,
    };
    InFlight {
        cluster: cluster.clone(),
        route,
        sender,
        attempt,
    }
}

/// The node `route` goes to now.
pub fn target(cluster: &Cluster, route: &Route) -> Result<Arc<str>, Frame> {
    let node = match route.slot {
        Some(slot) => cluster.node_for(slot, route.readonly),
        None => cluster.any_master(),
    };
    node.ok_or_else(|| {
        cluster.request_refresh();
        match route.slot {
            Some(slot) => wire::error(format!(
                "CLUSTERDOWN Hash slot {slot} is not served by any known node (Puerta's slot map is incomplete)"
            )),
            None => wire::error("CLUSTERDOWN Puerta knows no cluster node yet"),
        }
    })
}

async fn attempt(
    cluster: &Cluster,
    route: &Route,
    sender: &Sender,
    addr: Arc<str>,
    asking: bool,
) -> Attempt {
    let payload = if asking {
        let mut p = BytesMut::with_capacity(route.payload.len() + 20);
        crate::redis::resp::encode_command(&[b"ASKING"], &mut p);
        p.extend_from_slice(&route.payload);
        p.freeze()
    } else {
        route.payload.clone()
    };
    let replies = if asking { 2 } else { 1 };
    let pool = cluster.pool(&addr, sender.lane.protocol);
    let budget = sender.budget.as_ref();
    let (reply, conn) = if route.dedicated {
        match pool.blocking().await {
            Ok(conn) => (Ok(conn.send_for(payload, replies, budget)), Some(conn)),
            Err(e) => (Err(e), None),
        }
    } else {
        match pool.conn(sender.lane).await {
            Ok(conn) => (Ok(conn.send_for(payload, replies, budget)), None),
            Err(e) => (Err(e), None),
        }
    };
    Attempt {
        addr,
        reply,
        _conn: conn,
    }
}

impl InFlight {
    /// Waits for the reply, following redirects until a final answer or `max_redirects`.
    pub async fn finish(mut self) -> Answer {
        let max = self.cluster.config.max_redirects;
        let mut retries = 0u32;
        loop {
            let outcome = wait(&mut self.attempt).await;
            let next = match &outcome {
                Ok(raw) => match classify_wire(raw.bytes(), &self.attempt.addr) {
                    None => return final_answer(outcome),
                    Some(redirect) => self.follow(redirect, retries).await,
                },
                Err(e) => self.after_backend_error(e, retries).await,
            };
            let Some((addr, asking)) = next else {
                return final_answer(outcome);
            };
            if retries >= max {
                return final_answer(outcome);
            }
            retries += 1;
            self.attempt = attempt(&self.cluster, &self.route, &self.sender, addr, asking).await;
        }
    }

    /// Where to retry after a redirect; `None` to give up.
    async fn follow(&self, redirect: Redirect, retries: u32) -> Option<(Arc<str>, bool)> {
        let stats = &self.cluster.stats;
        match redirect {
            Redirect::Moved { slot, addr } => {
                Stats::bump(&stats.moved);
                self.cluster.apply_moved(slot, &addr);
                Some((addr, false))
            }
            Redirect::Ask { addr, .. } => {
                Stats::bump(&stats.ask);
                Some((addr, true))
            }
            Redirect::TryAgain => {
                Stats::bump(&stats.tryagain);
                tokio::time::sleep(backoff(retries)).await;
                target(&self.cluster, &self.route).ok().map(|a| (a, false))
            }
            Redirect::ClusterDown => {
                tokio::time::sleep(backoff(retries)).await;
                self.cluster.refresh_and_wait(self.refresh_wait()).await;
                target(&self.cluster, &self.route).ok().map(|a| (a, false))
            }
        }
    }

    async fn after_backend_error(
        &self,
        e: &BackendError,
        retries: u32,
    ) -> Option<(Arc<str>, bool)> {
        Stats::bump(&self.cluster.stats.backend_errors);
        tracing::debug!("backend error: {e}");
        // A write whose reply was lost may have been applied: resending could apply it twice.
        let retry = e.never_sent() || self.route.readonly;
        self.cluster.refresh_and_wait(self.refresh_wait()).await;
        if !retry {
            return None;
        }
        tokio::time::sleep(backoff(retries)).await;
        let next = target(&self.cluster, &self.route).ok()?;
        // A node that let a command time out would most likely do it again: another full timeout
        // for nothing. Only a new owner (failover, resharding) is worth the retry.
        if matches!(e, BackendError::Timeout { .. }) && &next == e.addr() {
            return None;
        }
        Some((next, false))
    }

    fn refresh_wait(&self) -> Duration {
        self.cluster.config.connection_timeout * 2 + Duration::from_millis(500)
    }
}

/// The command's reply (after ASKING, the second of the two).
async fn wait(attempt: &mut Attempt) -> Result<Charged, BackendError> {
    let lost = || BackendError::Lost {
        addr: attempt.addr.clone(),
        reason: "connection task ended".into(),
    };
    let rx = match &mut attempt.reply {
        Ok(rx) => rx,
        Err(e) => return Err(e.clone()),
    };
    let reply = rx.await.unwrap_or_else(|_| Err(lost()))?;
    reply.into_last().ok_or_else(lost)
}

fn final_answer(outcome: Result<Charged, BackendError>) -> Answer {
    match outcome {
        Ok(raw) => Answer::Node(raw),
        Err(e) => Answer::Built(wire::error(format!("ERR Puerta: {e}"))),
    }
}

/// 20 ms, 40 ms, ... capped at 500 ms.
fn backoff(retries: u32) -> Duration {
    Duration::from_millis((20u64 << retries.min(5)).min(500))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(20));
        assert_eq!(backoff(1), Duration::from_millis(40));
        assert_eq!(backoff(30), Duration::from_millis(500));
    }
}
