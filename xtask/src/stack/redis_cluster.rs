//! A 6-node Redis Cluster (3 masters, 3 replicas) on loopback, built with the stock tools exactly as an
//! operator would: `redis-server --cluster-enabled yes` per node, then `redis-cli --cluster create`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::redis_cluster::TlsArgs;

use super::net::{loopback, wait_for_port};
use crate::interrupt;
use testkit::process::{stop_all, Process};

pub struct RedisCluster {
    pub ports: Vec<u16>,
    dir: PathBuf,
    extra_args: Vec<String>,
    /// A TLS-only cluster (`--tls-port`, `--tls-cluster`, `--tls-replication`).
    tls: Option<TlsArgs>,
    nodes: Vec<Node>,
}

struct Node {
    port: u16,
    /// `None` while killed on purpose (soak), so that it is not reported as dead.
    proc: Option<Process>,
    restarts: usize,
}

impl RedisCluster {
    /// Starts one node per port (each in its own sub-directory of `dir`; 6 ports give 3 masters with one
    /// replica each) and waits for `cluster_state:ok` on every node.
    pub fn start(ports: &[u16], dir: &Path) -> anyhow::Result<RedisCluster> {
        Self::start_with(ports, dir, &[])
    }

    /// As [`RedisCluster::start`], with extra `redis-server` arguments for every node (such as a
    /// shorter `--cluster-node-timeout`).
    pub fn start_with(
        ports: &[u16],
        dir: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<RedisCluster> {
        Self::start_full(ports, dir, extra_args, None)
    }

    /// As [`RedisCluster::start`], the nodes speaking only TLS with `tls`'s files.
    pub fn start_tls(ports: &[u16], dir: &Path, tls: TlsArgs) -> anyhow::Result<RedisCluster> {
        Self::start_full(ports, dir, &[], Some(tls))
    }

    fn start_full(
        ports: &[u16],
        dir: &Path,
        extra_args: &[&str],
        tls: Option<TlsArgs>,
    ) -> anyhow::Result<RedisCluster> {
        let mut cluster = RedisCluster {
            ports: ports.to_vec(),
            dir: dir.to_path_buf(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            tls,
            nodes: Vec::new(),
        };
        for &port in ports {
            let proc = cluster.spawn(port, 0)?;
            cluster.nodes.push(Node {
                port,
                proc: Some(proc),
                restarts: 0,
            });
        }
        for node in &mut cluster.nodes {
            if let Some(proc) = node.proc.as_mut() {
                wait_for_port(loopback(node.port), proc, Duration::from_secs(15))?;
            }
        }
        cluster.create()?;
        cluster.wait_ok(Duration::from_secs(60))?;
        Ok(cluster)
    }

    /// A restarted node keeps its directory (and so its `nodes.conf`: it rejoins as itself) but logs to
    /// a file of its own, so the killed one's last words stay readable.
    fn spawn(&self, port: u16, restarts: usize) -> anyhow::Result<Process> {
        let node_dir = self.dir.join(format!("redis-{port}"));
        std::fs::create_dir_all(&node_dir)?;
        let mut args = self.extra_args.clone();
        if let Some(tls) = &self.tls {
            args.extend(
                tls.server(port)
                    .into_iter()
                    .filter_map(|a| a.into_string().ok()),
            );
        }
        let cmd = testkit::redis_cluster::node_command(port, &node_dir, &args);
        let log = match restarts {
            0 => self.dir.join(format!("redis-{port}.log")),
            n => self.dir.join(format!("redis-{port}-restart{n}.log")),
        };
        Process::logged(&format!("redis-server :{port}"), cmd, &log)
    }

    fn create(&self) -> anyhow::Result<()> {
        testkit::redis_cluster::create_with(&self.ports, 1, self.tls.as_ref())
    }

    /// Every node must report `cluster_state:ok`, know its peers, and every replica be in sync.
    fn wait_ok(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            interrupt::check()?;
            self.ensure_running()?;
            let health = testkit::redis_cluster::health_with(&self.ports, self.tls.as_ref());
            if health.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("redis cluster not ok after {within:?}: {health:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILLs the node on `port`, as a crashed server.
    pub fn kill(&mut self, port: u16) {
        if let Some(mut proc) = self.node(port).and_then(|n| n.proc.take()) {
            proc.kill();
        }
    }

    /// Starts the killed node on `port` again and waits until it accepts connections; rejoining the
    /// cluster (as a replica, if it was failed over) is the cluster's business.
    pub fn restart(&mut self, port: u16) -> anyhow::Result<()> {
        let restarts = match self.node(port) {
            None => anyhow::bail!("no redis node on port {port}"),
            Some(node) if node.proc.is_some() => return Ok(()),
            Some(node) => node.restarts + 1,
        };
        let mut proc = self.spawn(port, restarts)?;
        wait_for_port(loopback(port), &mut proc, Duration::from_secs(15))?;
        if let Some(node) = self.node(port) {
            node.proc = Some(proc);
            node.restarts = restarts;
        }
        Ok(())
    }

    /// Fails if any node has died (other than one killed on purpose).
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.proc.as_mut())
            .try_for_each(Process::ensure_running)
    }

    fn node(&mut self, port: u16) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.port == port)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let mut procs: Vec<Process> = self.nodes.drain(..).filter_map(|n| n.proc).collect();
        stop_all(&mut procs);
    }
}
