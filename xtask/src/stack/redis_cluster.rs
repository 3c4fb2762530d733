//! A 6-node Redis Cluster (3 masters, 3 replicas) on loopback, built with the stock tools exactly as an
//! operator would: `redis-server --cluster-enabled yes` per node, then `redis-cli --cluster create`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::net::{loopback, wait_for_port};
use super::process::{stop_all, Proc};
use crate::{cmd, interrupt};

pub struct RedisCluster {
    pub ports: Vec<u16>,
    procs: Vec<Proc>,
}

impl RedisCluster {
    /// Starts one node per port (each in its own sub-directory of `dir`; 6 ports give 3 masters with one
    /// replica each) and waits for `cluster_state:ok` on every node.
    pub fn start(ports: &[u16], dir: &Path) -> anyhow::Result<RedisCluster> {
        let mut procs = Vec::new();
        for &port in ports {
            let node_dir = dir.join(format!("redis-{port}"));
            std::fs::create_dir_all(&node_dir)?;
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir);
            let log = dir.join(format!("redis-{port}.log"));
            procs.push(Proc::spawn(&format!("redis-server :{port}"), cmd, &log)?);
        }
        for (proc, &port) in procs.iter_mut().zip(ports) {
            wait_for_port(loopback(port), proc, Duration::from_secs(15))?;
        }
        let mut cluster = RedisCluster {
            ports: ports.to_vec(),
            procs,
        };
        cluster.create()?;
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn create(&self) -> anyhow::Result<()> {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        cmd::output(
            "redis-cli --cluster create",
            Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(&nodes)
                .args(["--cluster-replicas", "1", "--cluster-yes"]),
        )?;
        Ok(())
    }

    /// Every node must report `cluster_state:ok` and agree on all 16384 slots.
    fn wait_ok(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            interrupt::check()?;
            self.ensure_running()?;
            if self.ports.iter().all(|&p| node_ok(p)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("redis cluster not ok after {within:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.procs.iter_mut().try_for_each(Proc::ensure_running)
    }
}

fn node_ok(port: u16) -> bool {
    let info = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "cluster",
            "info",
        ])
        .output();
    match info {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            text.contains("cluster_state:ok") && text.contains("cluster_slots_ok:16384")
        }
        Err(_) => false,
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        stop_all(&mut self.procs);
    }
}
