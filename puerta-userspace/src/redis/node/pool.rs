//! A small set of pipelined connections per node, shared by all clients. A client always uses the same
//! lane, so its commands to one node stay in order; a connect to a slow node only holds up that lane.
//! Each node has one pool per protocol: a RESP3 client's commands go over connections that said
//! `HELLO 3`, so the node's replies reach it as they were sent.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::redis::cluster::Cluster;
use crate::redis::node::backend::{BackendConn, BackendError, ConnectOptions};
use crate::redis::node::fault::FaultKind;
use crate::redis::resp::Protocol;

/// Which pooled connection a client uses: the pool of its protocol, the connection `index` (modulo
/// the pool size) within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    pub index: usize,
    pub protocol: Protocol,
}

impl Lane {
    /// A RESP2 lane, for the proxy's own queries whose replies it reads itself.
    pub fn resp2(index: usize) -> Lane {
        Lane {
            index,
            protocol: Protocol::Resp2,
        }
    }
}

pub struct NodePool {
    addr: Arc<str>,
    lanes: Vec<Mutex<Option<Arc<BackendConn>>>>,
    opts: Arc<ConnectOptions>,
}

impl NodePool {
    pub fn new(addr: Arc<str>, size: usize, opts: Arc<ConnectOptions>) -> NodePool {
        NodePool {
            addr,
            lanes: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            opts,
        }
    }

    pub fn addr(&self) -> &Arc<str> {
        &self.addr
    }

    /// The live connection of `lane`, reconnecting it if it broke.
    pub async fn conn(&self, lane: Lane) -> Result<Arc<BackendConn>, BackendError> {
        let mut slot = self.lanes[lane.index % self.lanes.len()].lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
        }
        *slot = None;
        let conn = BackendConn::connect(self.addr.clone(), &self.opts)
            .await
            .inspect_err(|e| {
                crate::redis::node::fault::report(&self.addr, FaultKind::Connect, &e.to_string(), 0)
            })?;
        let conn = Arc::new(conn);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// A fresh connection owned by one client (WATCH ... EXEC); not pooled.
    pub async fn dedicated(&self) -> Result<BackendConn, BackendError> {
        BackendConn::connect(self.addr.clone(), &self.opts).await
    }

    /// A fresh connection for one blocking command: no reply timeout, since a BLPOP may rightly wait
    /// as long as the client asked.
    pub async fn blocking(&self) -> Result<BackendConn, BackendError> {
        BackendConn::connect(self.addr.clone(), &self.opts.unbounded()).await
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// Live pooled connections, for INFO.
    pub fn live(&self) -> usize {
        self.lanes
            .iter()
            .filter(|l| {
                l.try_lock()
                    .map(|c| c.as_ref().is_some_and(|c| !c.is_closed()))
                    .unwrap_or(true)
            })
            .count()
    }
}

/// One client's shortcut to its lane's connection of each node it talks to: per command an epoch
/// compare and a short scan, instead of the cluster's pool map (a lock and a string hash) and the
/// lane's lock. Emptied when the slot map changes, since pools of nodes that left are dropped then.
#[derive(Default)]
pub struct LaneCache {
    epoch: u64,
    conns: Vec<(Arc<str>, Protocol, Arc<BackendConn>)>,
}

impl LaneCache {
    /// The client's connection to `addr`; from the pool (connecting if needed) on a miss.
    pub async fn conn(
        &mut self,
        cluster: &Cluster,
        addr: &Arc<str>,
        lane: Lane,
    ) -> Result<Arc<BackendConn>, BackendError> {
        let epoch = cluster.epoch();
        if epoch != self.epoch {
            self.conns.clear();
            self.epoch = epoch;
        }
        let cached = self.conns.iter().position(|(node, protocol, _)| {
            *protocol == lane.protocol && (Arc::ptr_eq(node, addr) || node == addr)
        });
        if let Some(i) = cached {
            if !self.conns[i].2.is_closed() {
                return Ok(self.conns[i].2.clone());
            }
            self.conns.swap_remove(i);
        }
        let conn = cluster.pool(addr, lane.protocol).conn(lane).await?;
        self.conns.push((addr.clone(), lane.protocol, conn.clone()));
        Ok(conn)
    }
}
