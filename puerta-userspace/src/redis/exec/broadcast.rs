//! Commands that concern the whole data set (DBSIZE, KEYS, FLUSHALL, SCRIPT, INFO keyspace) go to every
//! master in parallel; the caller merges the answers.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;

use tokio::sync::oneshot;

use crate::redis::cluster::Cluster;
use crate::redis::node::backend::{frame_result, BackendError, NodeResult};
use crate::redis::node::pool::Lane;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

/// A command already on the wire to one node.
pub struct Sent {
    reply: Result<oneshot::Receiver<NodeResult>, BackendError>,
}

impl Sent {
    pub async fn reply(self) -> Frame {
        let result = match self.reply {
            Ok(rx) => frame_result(rx.await.unwrap_or_else(|_| {
                Err(BackendError::Lost {
                    addr: "?".into(),
                    reason: "connection task ended".into(),
                })
            })),
            Err(e) => Err(e),
        };
        result.unwrap_or_else(|e| wire::error(format!("ERR Puerta: {e}")))
    }
}

/// Puts one command on the wire to one node (no redirects: the node is chosen, not the slot).
pub async fn send_node(cluster: &Cluster, addr: &Arc<str>, payload: Bytes, lane: Lane) -> Sent {
    let reply = match cluster.pool(addr, lane.protocol).conn(lane).await {
        Ok(conn) => Ok(conn.send(payload, 1)),
        Err(e) => Err(e),
    };
    Sent { reply }
}

pub async fn call_node(cluster: &Cluster, addr: &Arc<str>, payload: Bytes, lane: Lane) -> Frame {
    send_node(cluster, addr, payload, lane).await.reply().await
}

/// Puts `payload` on the wire to every master, in master order. Errors if no master is known.
pub async fn send_masters(
    cluster: &Cluster,
    payload: Bytes,
    lane: Lane,
) -> Result<Vec<Sent>, Frame> {
    let masters = cluster.masters();
    if masters.is_empty() {
        cluster.request_refresh();
        return Err(wire::error("CLUSTERDOWN Puerta knows no cluster node yet"));
    }
    let mut sent = Vec::with_capacity(masters.len());
    for addr in &masters {
        sent.push(send_node(cluster, addr, payload.clone(), lane).await);
    }
    Ok(sent)
}

/// The answers of [`send_masters`], in master order.
pub async fn replies(sent: Vec<Sent>) -> Vec<Frame> {
    join_all(sent.into_iter().map(Sent::reply)).await
}

/// `payload` to every master; answers in master order.
pub async fn to_masters(
    cluster: &Cluster,
    payload: Bytes,
    lane: Lane,
) -> Result<Vec<Frame>, Frame> {
    Ok(replies(send_masters(cluster, payload, lane).await?).await)
}
