//! Commands that concern the whole data set (DBSIZE, KEYS, FLUSHALL, SCRIPT, INFO keyspace) go to every
//! master in parallel, and SCAN to one chosen master; the caller merges the answers.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;

use tokio::sync::oneshot;

use crate::redis::cluster::retry::{Retry, Target};
use crate::redis::cluster::Cluster;
use crate::redis::node::backend::{frame_result, BackendError, NodeResult};
use crate::redis::node::pool::Lane;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

/// A command already on the wire to one node.
pub struct Sent {
    addr: Arc<str>,
    payload: Bytes,
    lane: Lane,
    /// Sending it again is harmless (the reads: KEYS, DBSIZE, INFO, SCAN).
    idempotent: bool,
    reply: Result<oneshot::Receiver<NodeResult>, BackendError>,
}

impl Sent {
    /// The node's answer. The node was chosen, not a slot: a redirect is its answer, and a failed
    /// connection is retried by the one policy, on the same node while it is still a master.
    pub async fn reply(mut self, cluster: &Cluster) -> Frame {
        let mut retry = Retry::new(Target::Node(self.addr.clone()), self.idempotent, false);
        loop {
            let result = match self.reply {
                Ok(rx) => frame_result(rx.await.unwrap_or_else(|_| {
                    Err(BackendError::Lost {
                        addr: self.addr.clone(),
                        reason: "connection task ended".into(),
                    })
                })),
                Err(e) => Err(e),
            };
            if let Err(answer) = retry.after(cluster, &self.addr, result).await {
                return answer;
            }
            self.reply = put(cluster, &self.addr, self.payload.clone(), self.lane).await;
        }
    }
}

async fn put(
    cluster: &Cluster,
    addr: &Arc<str>,
    payload: Bytes,
    lane: Lane,
) -> Result<oneshot::Receiver<NodeResult>, BackendError> {
    let conn = cluster.pool(addr, lane.protocol).conn(lane).await?;
    Ok(conn.send(payload, 1))
}

/// Puts one command on the wire to one node.
pub async fn send_node(
    cluster: &Cluster,
    addr: &Arc<str>,
    payload: Bytes,
    lane: Lane,
    idempotent: bool,
) -> Sent {
    Sent {
        reply: put(cluster, addr, payload.clone(), lane).await,
        addr: addr.clone(),
        payload,
        lane,
        idempotent,
    }
}

/// A read on one chosen node, and its answer.
pub async fn call_node(cluster: &Cluster, addr: &Arc<str>, payload: Bytes, lane: Lane) -> Frame {
    send_node(cluster, addr, payload, lane, true)
        .await
        .reply(cluster)
        .await
}

/// Puts `payload` on the wire to every master, in master order. Errors if no master is known.
pub async fn send_masters(
    cluster: &Cluster,
    payload: Bytes,
    lane: Lane,
    idempotent: bool,
) -> Result<Vec<Sent>, Frame> {
    send_each(cluster, &cluster.masters(), payload, lane, idempotent).await
}

/// Puts `payload` on the wire to each of `nodes`, in order. Errors if there is none.
pub async fn send_each(
    cluster: &Cluster,
    nodes: &[Arc<str>],
    payload: Bytes,
    lane: Lane,
    idempotent: bool,
) -> Result<Vec<Sent>, Frame> {
    if nodes.is_empty() {
        cluster.request_refresh();
        return Err(wire::error("CLUSTERDOWN Puerta knows no cluster node yet"));
    }
    let mut sent = Vec::with_capacity(nodes.len());
    for addr in nodes {
        sent.push(send_node(cluster, addr, payload.clone(), lane, idempotent).await);
    }
    Ok(sent)
}

/// The answers of [`send_masters`], in master order.
pub async fn replies(cluster: &Cluster, sent: Vec<Sent>) -> Vec<Frame> {
    join_all(sent.into_iter().map(|s| s.reply(cluster))).await
}

/// A read on every master; answers in master order.
pub async fn to_masters(
    cluster: &Cluster,
    payload: Bytes,
    lane: Lane,
) -> Result<Vec<Frame>, Frame> {
    let sent = send_masters(cluster, payload, lane, true).await?;
    Ok(replies(cluster, sent).await)
}
