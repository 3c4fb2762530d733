//! What Redis mode shows on the admin port: the cluster nodes as the slot map knows them (role, slots
//! served, pooled connections), and readiness = listening with a master for at least one slot.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::admin::AdminView;
use crate::redis::cluster::Cluster;
use crate::redis::command::slots::SLOT_COUNT;

pub struct RedisAdminView {
    pub cluster: Arc<Cluster>,
}

#[derive(Default)]
struct NodeSummary {
    role: &'static str,
    slots: usize,
    replica_of: Option<Arc<str>>,
}

impl RedisAdminView {
    /// Every node in the slot map, with how many slots it serves as master.
    fn nodes(&self) -> BTreeMap<Arc<str>, NodeSummary> {
        let mut nodes: BTreeMap<Arc<str>, NodeSummary> = BTreeMap::new();
        let map = self.cluster.slot_map();
        for slot in 0..SLOT_COUNT {
            let Some(shard) = map.shard(slot) else {
                continue;
            };
            let master = nodes.entry(shard.master.clone()).or_default();
            master.role = "master";
            master.slots += 1;
            for replica in &shard.replicas {
                let entry = nodes.entry(replica.clone()).or_default();
                entry.role = "replica";
                entry.replica_of = Some(shard.master.clone());
            }
        }
        nodes
    }
}

impl AdminView for RedisAdminView {
    fn ready(&self) -> bool {
        self.cluster.covered_slots() > 0
    }

    fn backends(&self) -> Value {
        let list: Vec<Value> = self
            .nodes()
            .into_iter()
            .map(|(addr, node)| {
                json!({
                    "address": &*addr,
                    "role": node.role,
                    "slots": node.slots,
                    "replica_of": node.replica_of.as_deref(),
                    "active_connections": self.cluster.live_connections(&addr),
                })
            })
            .collect();
        Value::Array(list)
    }

    fn refresh_metrics(&self) {
        crate::redis::metrics::refresh_from_stats(&self.cluster.stats);
        crate::redis::metrics::publish_commands(&self.cluster.workers.commands());
        metrics::gauge!("puerta_redis_covered_slots").set(self.cluster.covered_slots() as f64);
        for (worker, clients) in self.cluster.workers.clients().into_iter().enumerate() {
            metrics::gauge!("puerta_redis_worker_clients", "worker" => worker.to_string())
                .set(clients as f64);
        }
    }

    fn render_own_metrics(&self, out: &mut String) {
        crate::redis::metrics::render_node_latency(out);
    }
}
