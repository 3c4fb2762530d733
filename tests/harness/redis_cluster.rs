//! A real Redis Cluster on loopback for tests and the demo: N masters with R replicas each, every node a
//! `redis-server` child in one temp dir, all killed on drop. Needs Debian's redis-server and redis-cli
//! (7.0). Ports come from [`crate::free_port`], which keeps port + 10000 (the cluster bus) free.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use testkit::redis_cluster::{self as recipe, TlsArgs};
use testkit::tls::{Issued, Pki};

use crate::{free_port, loopback, wait_for_port, Process};

pub use crate::proxied_cluster::ProxiedCluster;

pub struct RedisNode {
    pub port: u16,
    pub process: Process,
}

pub struct RedisCluster {
    pub nodes: Vec<RedisNode>,
    dir: tempfile::TempDir,
    /// `--cluster-node-timeout`: how long a node may miss the cluster bus before its replica takes over.
    node_timeout_ms: u32,
    /// A TLS-only cluster: its CA (which can issue more certificates, e.g. Puerta's) and the
    /// certificate every node uses as server and client.
    tls: Option<ClusterTls>,
}

/// A TLS cluster's CA, the nodes' certificate, and the one Puerta presents to its clients.
pub struct ClusterTls {
    pub pki: Pki,
    pub nodes: TlsArgs,
    pub puerta: Issued,
}

/// Short, so that failover tests see a failover within seconds.
const NODE_TIMEOUT_MS: u32 = 2000;

/// One key in the slots of each master of a 3-master cluster made by `redis-cli --cluster create`
/// (slots 3300, 7365, 15495).
pub const ONE_KEY_PER_MASTER: [&str; 3] = ["b", "c", "a"];

impl RedisCluster {
    /// 3 masters + 3 replicas.
    pub fn start() -> anyhow::Result<RedisCluster> {
        Self::start_with(3, 1)
    }

    pub fn start_with(masters: usize, replicas: usize) -> anyhow::Result<RedisCluster> {
        Self::start_full(masters, replicas, NODE_TIMEOUT_MS)
    }

    /// 3 masters + 3 replicas that tolerate a node busy for many seconds: for tests that keep a node's
    /// one thread busy on purpose (gigabytes of replies), where the short default timeout lets a
    /// replica take over mid-test and lose the writes the test checks (seen on a loaded machine).
    pub fn start_patient() -> anyhow::Result<RedisCluster> {
        Self::start_full(3, 1, 30_000)
    }

    /// 3 masters + 3 replicas that speak only TLS, to clients and among themselves, and require
    /// client certificates (`tls-auth-clients yes`), certificates from a CA made for the cluster.
    pub fn start_tls() -> anyhow::Result<RedisCluster> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::new(dir.path(), "cluster")?;
        let node = pki.issue("node")?;
        let nodes = TlsArgs {
            ca: pki.ca_file(),
            cert: node.cert,
            key: node.key,
        };
        let puerta = pki.issue("puerta")?;
        let tls = ClusterTls { pki, nodes, puerta };
        Self::start_in(dir, 3, 1, NODE_TIMEOUT_MS, Some(tls))
    }

    fn start_full(
        masters: usize,
        replicas: usize,
        node_timeout_ms: u32,
    ) -> anyhow::Result<RedisCluster> {
        Self::start_in(
            tempfile::tempdir()?,
            masters,
            replicas,
            node_timeout_ms,
            None,
        )
    }

    fn start_in(
        dir: tempfile::TempDir,
        masters: usize,
        replicas: usize,
        node_timeout_ms: u32,
        tls: Option<ClusterTls>,
    ) -> anyhow::Result<RedisCluster> {
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
            node_timeout_ms,
            tls,
        };
        for _ in 0..masters * (1 + replicas) {
            cluster.spawn_node()?;
        }
        for node in &cluster.nodes {
            if let Err(e) = wait_for_port(loopback(node.port), Duration::from_secs(20)) {
                bail!("{e}; redis output:\n{}", node.process.output());
            }
        }
        recipe::create_with(&cluster.ports(), replicas, cluster.tls_args())?;
        cluster.wait_healthy(Duration::from_secs(60))?;
        Ok(cluster)
    }

    fn spawn_node(&mut self) -> anyhow::Result<()> {
        let port = free_port();
        let mut extra = vec![
            "--cluster-node-timeout".to_string(),
            self.node_timeout_ms.to_string(),
        ];
        if let Some(tls) = self.tls_args() {
            extra.extend(
                tls.server(port)
                    .into_iter()
                    .filter_map(|a| a.into_string().ok()),
            );
        }
        let cmd = recipe::node_command(port, self.dir.path(), &extra);
        let process = Process::captured(&format!("redis-{port}"), cmd)?;
        self.nodes.push(RedisNode { port, process });
        Ok(())
    }

    /// `redis-cli`'s TLS files, for a TLS cluster.
    pub fn tls_args(&self) -> Option<&TlsArgs> {
        self.tls.as_ref().map(|t| &t.nodes)
    }

    pub fn tls(&self) -> Option<&ClusterTls> {
        self.tls.as_ref()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `["127.0.0.1:P", ...]` for Puerta's `cluster_nodes`.
    pub fn seeds(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// A Puerta TOML config in Redis mode in front of this cluster; `extra` is appended to `[redis]`.
    pub fn puerta_config(&self, listen: SocketAddr, extra: &str) -> String {
        let seeds: Vec<String> = self.seeds().iter().map(|s| format!("\"{s}\"")).collect();
        let refresh = if extra.contains("slot_refresh_interval_sec") {
            ""
        } else {
            "slot_refresh_interval_sec = 5\n"
        };
        let tls = self
            .tls
            .as_ref()
            .map(|t| t.puerta_sections(extra))
            .unwrap_or_default();
        format!(
            "mode = \"redis\"\nlisten_addr = \"{listen}\"\ndrain_timeout_sec = 2\n\n[redis]\n\
             cluster_nodes = [{}]\n{refresh}connection_timeout_ms = 2000\n{extra}\n{tls}",
            seeds.join(", ")
        )
    }

    /// `redis-cli -p port args...`; stdout on success.
    pub fn cli(&self, port: u16, args: &[&str]) -> anyhow::Result<String> {
        recipe::cli_with(port, self.tls_args(), args)
    }

    /// Ports of the live nodes that are masters owning slots, per `CLUSTER NODES` of any live node.
    pub fn masters(&self) -> anyhow::Result<Vec<u16>> {
        Ok(self
            .cluster_nodes()?
            .into_iter()
            .filter(|n| n.master && n.has_slots && !n.failed)
            .map(|n| n.port)
            .collect())
    }

    /// Live replicas and the port of their master.
    pub fn replicas(&self) -> anyhow::Result<Vec<(u16, u16)>> {
        let nodes = self.cluster_nodes()?;
        Ok(nodes
            .iter()
            .filter(|n| !n.master && !n.failed)
            .filter_map(|n| {
                let master = nodes.iter().find(|m| Some(&m.id) == n.master_id.as_ref())?;
                Some((n.port, master.port))
            })
            .collect())
    }

    /// The node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> anyhow::Result<String> {
        Ok(self.cli(port, &["CLUSTER", "MYID"])?.trim().to_string())
    }

    fn cluster_nodes(&self) -> anyhow::Result<Vec<NodeLine>> {
        let mut last_err = None;
        for node in &self.nodes {
            match self.cli(node.port, &["CLUSTER", "NODES"]) {
                Ok(text) if !text.trim().is_empty() => {
                    return Ok(text.lines().filter_map(NodeLine::parse).collect())
                }
                Ok(_) => {}
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no node answered CLUSTER NODES")))
    }

    /// Waits until every live node reports `cluster_state:ok`, all slots are assigned and every
    /// replica's link to its master is up.
    pub fn wait_healthy(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.health() {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("cluster not healthy after {within:?}: {last}")
    }

    fn health(&self) -> anyhow::Result<()> {
        recipe::health_with(&self.live_nodes(), self.tls_args())
    }

    /// Nodes whose process is still running (not killed by a test).
    pub fn live_nodes(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.process.pid() != 0)
            .map(|n| n.port)
            .collect()
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.process.kill();
        }
    }
}

impl ClusterTls {
    /// TLS on both of Puerta's legs, mutual on both: clients need a certificate from the cluster's
    /// CA (the nodes' one will do), and Puerta shows the nodes theirs. A section `extra` already
    /// has is left to it.
    fn puerta_sections(&self, extra: &str) -> String {
        let mut out = String::new();
        let ca = self.pki.ca_file();
        if !extra.contains("[redis.tls]") {
            out += &format!(
                "[redis.tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {ca:?}\n",
                self.puerta.cert, self.puerta.key
            );
        }
        if !extra.contains("[redis.backend_tls]") {
            out += &format!(
                "[redis.backend_tls]\nca_file = {ca:?}\ncert_file = {:?}\nkey_file = {:?}\n",
                self.nodes.cert, self.nodes.key
            );
        }
        out
    }

    /// What a client of Puerta gives to redis-py, node-redis, ...: `REDIS_TLS_CA`,
    /// `REDIS_TLS_CERT` and `REDIS_TLS_KEY` (the scripts under tests/py and tests/js read them).
    pub fn client_env(&self) -> [(&'static str, std::path::PathBuf); 3] {
        [
            ("REDIS_TLS_CA", self.nodes.ca.clone()),
            ("REDIS_TLS_CERT", self.nodes.cert.clone()),
            ("REDIS_TLS_KEY", self.nodes.key.clone()),
        ]
    }
}

struct NodeLine {
    id: String,
    port: u16,
    master: bool,
    master_id: Option<String>,
    failed: bool,
    has_slots: bool,
}

impl NodeLine {
    /// `<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
    fn parse(line: &str) -> Option<NodeLine> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return None;
        }
        let addr = fields[1].split('@').next()?;
        let port = addr.rsplit_once(':')?.1.parse().ok()?;
        let flags = fields[2];
        Some(NodeLine {
            id: fields[0].to_string(),
            port,
            master: flags.contains("master"),
            master_id: (fields[3] != "-").then(|| fields[3].to_string()),
            failed: flags.contains("fail") && !flags.contains("fail?") || flags.contains("noaddr"),
            has_slots: fields.len() > 8,
        })
    }
}

impl RedisCluster {
    /// Moves `slots` slots from master `from` to master `to` (ports) with `redis-cli --cluster reshard`.
    pub fn reshard(&self, from: u16, to: u16, slots: usize) -> anyhow::Result<String> {
        let from_id = self.node_id(from)?;
        let to_id = self.node_id(to)?;
        let mut cli = Command::new("redis-cli");
        if let Some(tls) = self.tls_args() {
            cli.args(tls.client());
        }
        let out = cli
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{from}"))
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .output()
            .context("run redis-cli --cluster reshard")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || text.contains("[ERR]") {
            bail!(
                "reshard failed: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    }
}
