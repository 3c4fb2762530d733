//! A Redis Cluster on loopback, built with the stock tools exactly as an operator would: one
//! `redis-server --cluster-enabled yes` per node, then `redis-cli --cluster create`. The recipe
//! (node command line, creation, what "healthy" means) is here once; the tests and xtask each run
//! the processes their own way (captured output and kill-on-drop there, log files and restarts
//! here).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

/// The `redis-server` command of the cluster node on `port`, keeping its state in `dir` (its
/// `nodes-<port>.conf` there), with `extra` arguments (a shorter `--cluster-node-timeout`, ...).
/// DEBUG works from loopback, where Puerta connects, as on Redis' own test servers.
pub fn node_command(port: u16, dir: &Path, extra: &[String]) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes"])
        .arg("--cluster-config-file")
        .arg(format!("nodes-{port}.conf"))
        .args(["--save", "", "--appendonly", "no"])
        .args(["--enable-debug-command", "local"])
        .args(extra)
        .arg("--dir")
        .arg(dir);
    cmd
}

/// `redis-cli --cluster create` over `ports` with `replicas` replicas per master.
pub fn create(ports: &[u16], replicas: usize) -> anyhow::Result<()> {
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .output()
        .context("run redis-cli --cluster create")?;
    if !out.status.success() {
        bail!(
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `redis-cli -p port args...`; stdout on success.
pub fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .context("run redis-cli")?;
    if !out.status.success() {
        bail!(
            "redis-cli -p {port} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the nodes on `ports` form a healthy cluster: each reports `cluster_state:ok` with all
/// 16384 slots assigned, knows every live peer and each replica's master (or its `CLUSTER SLOTS`
/// would still omit replicas), and every replica's link to its master is up. `Err` says what is
/// not there yet.
pub fn health(ports: &[u16]) -> anyhow::Result<()> {
    for &node in ports {
        let info = cli(node, &["CLUSTER", "INFO"])?;
        if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_assigned:16384") {
            bail!("node {node} not ok yet");
        }
        for line in cli(node, &["CLUSTER", "NODES"])?.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || fields[2].contains("fail") {
                continue;
            }
            let replica_without_master = fields[2].contains("slave") && fields[3] == "-";
            if fields[2].contains("handshake") || fields[7] != "connected" || replica_without_master
            {
                bail!("node {node} does not fully know its peers yet: {line}");
            }
        }
        let replication = cli(node, &["INFO", "replication"])?;
        if replication.contains("role:slave") && !replication.contains("master_link_status:up") {
            bail!("replica {node} not in sync yet");
        }
    }
    Ok(())
}
