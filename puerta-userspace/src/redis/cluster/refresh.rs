//! Topology refresh: every `slot_refresh_interval`, soon after a MOVED or a broken node, and every
//! ~50 ms while commands are held for a failover. One task does all refreshes, so a storm of
//! redirects causes one refresh in flight plus at most one queued.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::topology::SlotMap;
use super::Cluster;
use crate::redis::node::backend::BackendConn;
use crate::redis::resp::wire;
use crate::redis::stats::Stats;

/// Pause after a refresh before the next one, so that a burst of triggers folds together.
const MIN_GAP: Duration = Duration::from_millis(100);
/// The pause while commands wait for a new master: the promotion is seen within ~50 ms of the
/// cluster making it (smart clients poll about as often while their commands fail), at one
/// CLUSTER SLOTS per gap.
const HOLD_GAP: Duration = Duration::from_millis(50);

pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let interval = cluster.config.slot_refresh_interval;
    loop {
        let wait = match cluster.holding() {
            true => Duration::ZERO,
            false => interval,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cluster.refresh_requested() => {}
            _ = shutdown.cancelled() => return,
        }
        refresh_once(&cluster).await;
        let gap = match cluster.holding() {
            true => HOLD_GAP,
            false => MIN_GAP,
        };
        tokio::time::sleep(gap).await;
    }
}

/// Asks the known nodes, then the seeds, for `CLUSTER SLOTS`; installs the first map that covers every
/// slot, or the most complete one. Keeps the old map when nobody answers. True when a map was installed.
pub async fn refresh_once(cluster: &Cluster) -> bool {
    Stats::bump(&cluster.stats.refreshes);
    let mut best: Option<SlotMap> = None;
    let mut failures = Vec::new();
    for addr in cluster.refresh_candidates() {
        let fetched = fetch(cluster, &addr).await;
        cluster.note_refresh_answer(&addr, fetched.is_ok());
        match fetched {
            Ok(map) => {
                let covered = map.covered();
                if best.as_ref().is_none_or(|b| covered > b.covered()) {
                    best = Some(map);
                }
                if covered == crate::redis::command::slots::SLOT_COUNT as usize {
                    break;
                }
            }
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    let installed = match best {
        Some(map) => {
            let covered = map.covered();
            if covered < crate::redis::command::slots::SLOT_COUNT as usize {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Endpoint, RedisConfig};
    use crate::redis::resp::{self, Frame, Limits};
    use bytes::BytesMut;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A fake node that answers every CLUSTER SLOTS with "all slots are mine" and counts the queries.
    async fn fake_node(queries: Arc<AtomicUsize>) -> u16 {
        fake_node_sharing_with(queries, None).await
    }

    /// Like [`fake_node`]; with `other`, slots 0-8191 are said to belong to that port instead.
    async fn fake_node_sharing_with(queries: Arc<AtomicUsize>, other: Option<u16>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let node = |first: u16, last: u16, port: u16| {
            format!("*3\r\n:{first}\r\n:{last}\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$2\r\nid\r\n")
        };
        let reply = match other {
            None => format!("*1\r\n{}", node(0, 16383, port)),
            Some(o) => format!("*2\r\n{}{}", node(0, 8191, o), node(8192, 16383, port)),
        };
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let queries = queries.clone();
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut buf = BytesMut::new();
                    loop {
                        while let Ok(Some(_)) = resp::parse_command(&mut buf, &Limits::default()) {
                            queries.fetch_add(1, Ordering::SeqCst);
                            // Slow enough that a burst of triggers lands while one refresh runs.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            if sock.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    pub(crate) fn config(port: u16) -> RedisConfig {
        RedisConfig {
            cluster_nodes: vec![Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap()],
            slot_refresh_interval: Duration::from_secs(3600),
            max_redirects: 5,
            connection_timeout: Duration::from_secs(5),
            command_timeout: Some(Duration::from_secs(5)),
            failover_hold: Duration::ZERO,
            pool_size: 1,
            read_from_replicas: false,
            password: None,
            users: vec![],
            backend_username: None,
            backend_password: None,
            client_idle_timeout: None,
            client_output_limit: None,
            admin_commands: false,
            slowlog_log_slower_than_us: 10_000,
            slowlog_max_len: 128,
            tls: None,
            backend_tls: None,
        }
    }

    /// A node that accepts and reads but never answers; counts its connections.
    async fn silent_node(connections: Arc<AtomicUsize>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut sink = [0u8; 1024];
                    while sock.read(&mut sink).await.unwrap_or(0) > 0 {}
                });
            }
        });
        port
    }

    /// `CLUSTER SLOTS` with one shard over every slot: `master` and its `replica`.
    pub(crate) fn one_shard(master: u16, replica: u16) -> SlotMap {
        let node = |port: u16| {
            Frame::Array(vec![
                Frame::Bulk(bytes::Bytes::from_static(b"127.0.0.1")),
                Frame::Integer(port.into()),
                Frame::Bulk(bytes::Bytes::from_static(b"id")),
            ])
        };
        let reply = Frame::Array(vec![Frame::Array(vec![
            Frame::Integer(0),
            Frame::Integer(16383),
            node(master),
            node(replica),
        ])]);
        SlotMap::from_cluster_slots(&reply, "127.0.0.1").unwrap()
    }

    #[test]
    fn installing_a_map_drops_the_pools_of_nodes_it_no_longer_routes_to() {
        let cluster = Cluster::new(config(1));
        let [promoted, demoted, gone]: [Arc<str>; 3] = [
            "127.0.0.1:7001".into(),
            "127.0.0.1:7002".into(),
            "127.0.0.1:7003".into(),
        ];
        for addr in [&promoted, &demoted, &gone] {
            cluster.pool(addr, crate::redis::resp::Protocol::Resp2);
        }
        // After a failover: 7001 is master, 7002 its replica, 7003 left the cluster.
        cluster.install(one_shard(7001, 7002));
        assert_eq!(cluster.pooled_nodes(), vec![promoted.clone()]);

        // Reading from replicas keeps the replica's pool.
        let mut replicas_read = config(1);
        replicas_read.read_from_replicas = true;
        let cluster = Cluster::new(replicas_read);
        for addr in [&promoted, &demoted, &gone] {
            cluster.pool(addr, crate::redis::resp::Protocol::Resp2);
        }
        cluster.install(one_shard(7001, 7002));
        let mut pooled = cluster.pooled_nodes();
        pooled.sort();
        assert_eq!(pooled, vec![promoted, demoted]);
    }

    #[tokio::test]
    async fn a_node_that_did_not_answer_is_asked_last() {
        // The good node says the silent one is a master: a stuck master. Masters are asked in address
        // order, so pick ports that put the silent one first.
        let (silent, silent_port, good_port) = loop {
            let silent = Arc::new(AtomicUsize::new(0));
            let silent_port = silent_node(silent.clone()).await;
            let good_port =
                fake_node_sharing_with(Arc::new(AtomicUsize::new(0)), Some(silent_port)).await;
            if silent_port.to_string() < good_port.to_string() {
                break (silent, silent_port, good_port);
            }
        };
        let mut config = config(good_port);
        config.command_timeout = Some(Duration::from_millis(200));
        let cluster = Cluster::new(config);
        assert!(refresh_once(&cluster).await);
        assert_eq!(silent.load(Ordering::SeqCst), 0);
        // Next refresh: the known masters are asked in map order, the silent one first; it times out
        // and the good one answers.
        assert_eq!(
            &*cluster.refresh_candidates()[0],
            format!("127.0.0.1:{silent_port}")
        );
        assert!(refresh_once(&cluster).await);
        assert_eq!(silent.load(Ordering::SeqCst), 1);
        // From now on the silent node comes after the good one, which covers every slot.
        for _ in 0..3 {
            assert!(refresh_once(&cluster).await);
        }
        assert_eq!(silent.load(Ordering::SeqCst), 1);
        let last = cluster.refresh_candidates().pop().unwrap();
        assert_eq!(&*last, format!("127.0.0.1:{silent_port}"));
    }

    #[tokio::test]
    async fn a_storm_of_triggers_causes_few_refreshes() {
        let queries = Arc::new(AtomicUsize::new(0));
        let port = fake_node(queries.clone()).await;
        let cluster = Cluster::new(config(port));
        assert!(refresh_once(&cluster).await);
        assert_eq!(cluster.covered_slots(), 16384);
        assert_eq!(cluster.masters().len(), 1);
        let shutdown = CancellationToken::new();
        tokio::spawn(run(cluster.clone(), shutdown.clone()));
        let before = queries.load(Ordering::SeqCst);
        for _ in 0..1000 {
            cluster.request_refresh();
        }
        cluster.refresh_and_wait(Duration::from_secs(10)).await;
        for _ in 0..1000 {
            cluster.request_refresh();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let refreshes = queries.load(Ordering::SeqCst) - before;
        assert!(
            (1..=4).contains(&refreshes),
            "2000 triggers caused {refreshes} refreshes"
        );
        shutdown.cancel();
    }
}
