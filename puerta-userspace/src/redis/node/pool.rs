//! A small set of pipelined connections per node, shared by all clients. A client always uses the same
//! lane, so its commands to one node stay in order; a connect to a slow node only holds up that lane.
//! Each node has one pool per protocol: a RESP3 client's commands go over connections that said
//! `HELLO 3`, so the node's replies reach it as they were sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

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
    /// The connection for the next blocking command, made ahead once this node saw one: a BLPOP or
    /// XREAD BLOCK then leaves at once, as a pooled command does, instead of after a connect that
    /// a command another client sends right after it (the DEL or XADD it waits for) would overtake.
    spare: std::sync::Mutex<Option<Spare>>,
}

/// A connection being made, or made, ahead of time.
struct Spare {
    since: Instant,
    conn: JoinHandle<Result<BackendConn, BackendError>>,
}

/// A spare older than this is not trusted to be open still (a node's `timeout` may have closed it
/// unseen); a fresh connection is made instead.
const SPARE_MAX_AGE: Duration = Duration::from_secs(30);

impl NodePool {
    pub fn new(addr: Arc<str>, size: usize, opts: Arc<ConnectOptions>) -> NodePool {
        NodePool {
            addr,
            lanes: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            opts,
            spare: std::sync::Mutex::new(None),
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

    /// A connection of its own for one blocking command: no reply timeout, since a BLPOP may
    /// rightly wait as long as the client asked. The spare made after the previous one when it is
    /// fit, else a fresh one; either way the next spare starts connecting now.
    pub async fn blocking(&self) -> Result<BackendConn, BackendError> {
        let spare = self.next_spare();
        if let Some(spare) = spare {
            let fresh = spare.since.elapsed() < SPARE_MAX_AGE;
            if let Ok(Ok(conn)) = spare.conn.await {
                if fresh && !conn.is_closed() {
                    return Ok(conn);
                }
            }
        }
        BackendConn::connect(self.addr.clone(), &self.opts.unbounded()).await
    }

    /// Takes the spare there is and starts the next one.
    fn next_spare(&self) -> Option<Spare> {
        let (addr, opts) = (self.addr.clone(), self.opts.unbounded());
        let next = Spare {
            since: Instant::now(),
            conn: tokio::spawn(async move { BackendConn::connect(addr, &opts).await }),
        };
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        spare.replace(next)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A node that accepts (and counts) connections and never answers.
    async fn node(accepted: Arc<AtomicUsize>) -> Arc<str> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string().into();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                held.push(sock);
            }
        });
        addr
    }

    async fn until(accepted: &AtomicUsize, n: usize) {
        for _ in 0..500 {
            if accepted.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} connections never came");
    }

    /// After its first blocking command a node keeps one connection ready, so the next blocking
    /// command goes out on a connection the node accepted before it was sent.
    #[tokio::test]
    async fn the_next_blocking_command_finds_its_connection_made() {
        let accepted = Arc::new(AtomicUsize::new(0));
        let opts = Arc::new(ConnectOptions {
            timeout: Duration::from_secs(5),
            username: None,
            password: None,
            readonly: false,
            reply_timeout: Some(Duration::from_secs(5)),
            protocol: Protocol::Resp2,
            tls: None,
        });
        let pool = NodePool::new(node(accepted.clone()).await, 1, opts);
        let _first = pool.blocking().await.unwrap();
        until(&accepted, 2).await; // the first, and the spare made right after it
        let second = pool.blocking().await.unwrap();
        until(&accepted, 3).await; // the spare after the second
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            3,
            "the second used the spare: no fresh connection of its own"
        );
        assert!(!second.is_closed());
    }
}
