//! Shared cluster state: the slot map, one connection pool per node, and the refresh trigger. Every
//! client session holds an `Arc<Cluster>`.

pub mod hold;
pub mod members;
pub mod redirect;
pub mod refresh;
pub mod retry;
pub mod router;
pub mod routes;
pub mod topology;
pub mod version;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::config::RedisConfig;
use crate::redis::client::monitor::Monitors;
use crate::redis::client::pause::Pause;
use crate::redis::client::registry::Registry;
use crate::redis::client::slowlog::SlowLog;
use crate::redis::client::tracking::Tracking;
use crate::redis::client::worker::Workers;
use crate::redis::node::backend::ConnectOptions;
use crate::redis::node::pool::NodePool;
use crate::redis::resp::Protocol;
use crate::redis::stats::Stats;
use crate::tls::client::Connector;
use routes::Routes;
use topology::{Shard, SlotMap};

/// One pool per node and protocol.
type PoolKey = (Arc<str>, Protocol);

pub struct Cluster {
    pub config: RedisConfig,
    pub stats: Stats,
    /// The proxy's clients (CLIENT LIST/KILL, INFO clients).
    pub clients: Registry,
    /// CLIENT PAUSE, held here for every client.
    pub pause: Pause,
    pub slowlog: SlowLog,
    pub monitors: Arc<Monitors>,
    /// `CLIENT TRACKING`: who read which key, and the nodes' invalidation feed.
    pub tracking: Tracking,
    map: RwLock<SlotMap>,
    /// Bumped on every change of `map` (masters or replicas), while it is still locked for
    /// writing and before `epoch`.
    map_changes: AtomicU64,
    /// Each worker's copy of `map`, which commands are routed by.
    routes: Routes,
    /// Bumped whenever a slot's master changes, always while `map` is still locked for writing (a
    /// reader that saw the new map then sees the new epoch): a session compares it to learn that a
    /// slot may have moved under its commands in flight (see `order`), and drops its cached
    /// connections.
    epoch: AtomicU64,
    /// Bumped after every refresh attempt, so a caller can wait for "the next refresh".
    refreshed: watch::Sender<u64>,
    refresh_wanted: Notify,
    pools: Mutex<HashMap<PoolKey, Arc<NodePool>>>,
    opts: Arc<ConnectOptions>,
    rotation: AtomicUsize,
    /// `cluster_nodes`, replaceable by a config reload.
    seeds: RwLock<Vec<Arc<str>>>,
    /// Nodes whose last topology query failed: asked last, so that a node that hangs does not make
    /// every refresh wait for its timeout while others could answer at once.
    refresh_suspects: Mutex<HashSet<Arc<str>>>,
    /// The nodes' `redis_version`, once one told it (see `version`).
    version: Mutex<Option<Arc<str>>>,
    /// The threads clients are served on; each has lanes of its own in every pool.
    pub workers: Arc<Workers>,
}

impl Cluster {
    pub fn new(config: RedisConfig) -> Arc<Cluster> {
        Self::with_backend_tls(config, None, Arc::new(Workers::one()))
    }

    /// [`Cluster::new`], with every node connection made through `tls`.
    pub fn with_backend_tls(
        config: RedisConfig,
        tls: Option<Arc<Connector>>,
        workers: Arc<Workers>,
    ) -> Arc<Cluster> {
        let opts = Arc::new(ConnectOptions {
            timeout: config.connection_timeout,
            username: config.backend_username.clone(),
            password: config.backend_password.clone(),
            readonly: config.read_from_replicas,
            reply_timeout: config.command_timeout,
            protocol: Protocol::Resp2,
            tls,
        });
        let seeds = config
            .cluster_nodes
            .iter()
            .map(|s| s.address().into())
            .collect();
        let slowlog = SlowLog::new(config.slowlog_log_slower_than_us, config.slowlog_max_len);
        Arc::new(Cluster {
            seeds: RwLock::new(seeds),
            config,
            stats: Stats::default(),
            clients: Registry::default(),
            pause: Pause::default(),
            slowlog,
            monitors: Arc::default(),
            tracking: Tracking::default(),
            map: RwLock::new(SlotMap::default()),
            map_changes: AtomicU64::new(0),
            routes: Routes::new(workers.count()),
            epoch: AtomicU64::new(1),
            refreshed: watch::channel(0).0,
            refresh_wanted: Notify::new(),
            pools: Mutex::new(HashMap::new()),
            opts,
            rotation: AtomicUsize::new(0),
            refresh_suspects: Mutex::new(HashSet::new()),
            version: Mutex::new(None),
            workers,
        })
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, SlotMap> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, SlotMap> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The node for `slot`: its master, or with `read_from_replicas` and a read-only command, one of its
    /// replicas in rotation.
    pub fn node_for(&self, slot: u16, readonly: bool) -> Option<Arc<str>> {
        self.with_routes(|map| Some(self.pick(map.shard(slot)?, readonly).clone()))
    }

    /// [`Cluster::node_for`] of each of `slots` in turn, handed to `each`, under one read of the
    /// slot map (a split command's parts). The first slot without a node ends the walk.
    pub fn each_node_for(
        &self,
        slots: impl IntoIterator<Item = u16>,
        readonly: bool,
        mut each: impl FnMut(&Arc<str>),
    ) -> Result<(), u16> {
        self.with_routes(|map| {
            for slot in slots {
                each(self.pick(map.shard(slot).ok_or(slot)?, readonly));
            }
            Ok(())
        })
    }

    /// `read` applied to the calling thread's worker's copy of the slot map (see `routes`).
    fn with_routes<R>(&self, read: impl FnOnce(&SlotMap) -> R) -> R {
        let changes = self.map_changes.load(Ordering::Acquire);
        let worker = self.workers.current();
        self.routes
            .read(worker, changes, || self.read_map().detached(), read)
    }

    fn pick<'a>(&self, shard: &'a Shard, readonly: bool) -> &'a Arc<str> {
        if readonly && self.config.read_from_replicas && !shard.replicas.is_empty() {
            let i = self.rotation.fetch_add(1, Ordering::Relaxed);
            return &shard.replicas[i % shard.replicas.len()];
        }
        &shard.master
    }

    /// Some master, in rotation, for commands without keys.
    pub fn any_master(&self) -> Option<Arc<str>> {
        let masters = self.masters();
        if masters.is_empty() {
            return None;
        }
        let i = self.rotation.fetch_add(1, Ordering::Relaxed);
        Some(masters[i % masters.len()].clone())
    }

    pub fn masters(&self) -> Vec<Arc<str>> {
        self.read_map().masters()
    }

    pub fn replica_count(&self) -> usize {
        self.read_map().replica_count()
    }

    /// Every node of the map, masters first.
    pub fn nodes(&self) -> Vec<Arc<str>> {
        self.read_map().nodes()
    }

    /// A copy of the slot map, for the admin endpoint.
    pub fn slot_map(&self) -> SlotMap {
        self.read_map().clone()
    }

    pub fn covered_slots(&self) -> usize {
        self.read_map().covered()
    }

    /// Nodes to ask for the topology: the known ones first, then the configured seeds; nodes whose
    /// last answer failed go last.
    pub fn refresh_candidates(&self) -> Vec<Arc<str>> {
        let mut nodes = self.read_map().nodes();
        for seed in self.seeds.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if !nodes.contains(seed) {
                nodes.push(seed.clone());
            }
        }
        let suspects = self
            .refresh_suspects
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Stable: the order among the good (and among the suspect) nodes is kept.
        nodes.sort_by_key(|n| suspects.contains(n));
        nodes
    }

    /// Records whether `node` answered a topology query.
    pub fn note_refresh_answer(&self, node: &Arc<str>, answered: bool) {
        let mut suspects = self
            .refresh_suspects
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if answered {
            suspects.remove(node);
        } else {
            suspects.insert(node.clone());
        }
    }

    /// New seeds from a reload; used from the next refresh on.
    pub fn set_seeds(&self, seeds: Vec<Arc<str>>) {
        *self.seeds.write().unwrap_or_else(|e| e.into_inner()) = seeds;
    }

    /// The pool of connections to `addr` that speak `protocol`.
    pub fn pool(&self, addr: &Arc<str>, protocol: Protocol) -> Arc<NodePool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry((addr.clone(), protocol))
            .or_insert_with(|| {
                Arc::new(NodePool::new(
                    addr.clone(),
                    self.config.pool_size * self.workers.count(),
                    Arc::new(self.opts.speaking(protocol)),
                ))
            })
            .clone()
    }

    /// Live pooled connections to `addr`, of both protocols (without creating pools).
    pub fn live_connections(&self, addr: &Arc<str>) -> usize {
        let pools: Vec<Arc<NodePool>> = self
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((node, _), _)| node == addr)
            .map(|(_, pool)| pool.clone())
            .collect();
        pools.iter().map(|p| p.live()).sum()
    }

    /// How to open a RESP2 connection outside the pools (topology queries).
    pub fn connect_options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// Pooled backend connections that are up, for INFO.
    pub fn live_backend_connections(&self) -> usize {
        let pools: Vec<Arc<NodePool>> = self
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        pools.iter().map(|p| p.live()).sum()
    }

    /// A MOVED reply is authoritative for one slot right away; the full refresh follows. The epoch
    /// moves before the map's lock is released, as in `install`: a session that read the new map
    /// must also see the new epoch, or it would send under the old one without waiting for its
    /// commands still on their way to the old owner (`client::order`).
    pub fn apply_moved(&self, slot: u16, addr: &Arc<str>) {
        let mut map = self.write_map();
        map.set_master(slot, addr);
        self.map_changes.fetch_add(1, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::Release);
        drop(map);
        self.request_refresh();
    }

    /// The slot map's version; see the field.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Installs a new slot map and closes the pools of nodes it no longer routes to: nodes that left,
    /// and (unless reads go to replicas) old masters that a failover made replicas. Otherwise a cluster
    /// whose nodes come back on new addresses keeps one idle pool per address ever seen. Sessions still
    /// holding a dropped pool finish with it; a later redirect to the node makes a new one.
    pub fn install(&self, map: SlotMap) {
        let routed = if self.config.read_from_replicas {
            map.nodes()
        } else {
            map.masters()
        };
        let nodes: HashSet<Arc<str>> = routed.into_iter().collect();
        {
            let mut current = self.write_map();
            for (old, new) in current.replaced_masters(&map) {
                match new {
                    Some(new) => {
                        tracing::info!(%old, %new, "failover: {old} is no longer a master; its slots are served by {new}")
                    }
                    None => {
                        tracing::info!(%old, "failover: {old} is no longer a master; its slots have no master")
                    }
                }
            }
            let moved = !current.same_masters(&map);
            *current = map;
            self.map_changes.fetch_add(1, Ordering::Release);
            if moved {
                self.epoch.fetch_add(1, Ordering::Release);
            }
        }
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let before = pools.len();
        pools.retain(|(addr, _), _| nodes.contains(addr));
        if pools.len() < before {
            tracing::debug!(
                closed = before - pools.len(),
                "pools of nodes gone from the slot map dropped"
            );
        }
    }

    #[cfg(test)]
    pub(crate) fn pooled_nodes(&self) -> Vec<Arc<str>> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let mut nodes: Vec<Arc<str>> = pools.keys().map(|(addr, _)| addr.clone()).collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    pub fn known_version(&self) -> Option<Arc<str>> {
        self.version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn remember_version(&self, version: Arc<str>) {
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = Some(version);
    }

    /// Whether any command waits for a failover: the refresh then runs back to back (see `refresh`).
    pub fn holding(&self) -> bool {
        Stats::get(&self.stats.failover_holding) > 0
    }

    /// Asks for a refresh; requests that arrive while one runs fold into a single follow-up.
    pub fn request_refresh(&self) {
        self.refresh_wanted.notify_one();
    }

    /// Requests a refresh and waits (at most `within`) until the next refresh attempt has finished.
    pub async fn refresh_and_wait(&self, within: Duration) {
        let mut rx = self.refreshed.subscribe();
        rx.mark_unchanged();
        self.request_refresh();
        let _ = tokio::time::timeout(within, rx.changed()).await;
    }

    pub(crate) fn refresh_requested(&self) -> tokio::sync::futures::Notified<'_> {
        self.refresh_wanted.notified()
    }

    pub(crate) fn mark_refreshed(&self) {
        self.refreshed.send_modify(|g| *g += 1);
    }
}

#[cfg(test)]
mod tests;
