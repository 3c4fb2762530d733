//! A Redis Cluster on loopback, built with the stock tools exactly as an operator would: one
//! `redis-server --cluster-enabled yes` per node, then `redis-cli --cluster create`. The recipe
//! (node command line, creation, what "healthy" means) is here once; the tests and xtask each run
//! the processes their own way (captured output and kill-on-drop there, log files and restarts
//! here).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
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

/// The files of a cluster whose nodes speak only TLS, among themselves too (`--tls-cluster`,
/// `--tls-replication`), and require client certificates: one certificate serves every node as
/// server and as client.
#[derive(Debug, Clone)]
pub struct TlsArgs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsArgs {
    /// What turns [`node_command`]'s node on `port` into a TLS-only one (later arguments win).
    pub fn server(&self, port: u16) -> Vec<OsString> {
        let mut args: Vec<OsString> = ["--port", "0", "--tls-port"]
            .into_iter()
            .map(Into::into)
            .collect();
        args.push(port.to_string().into());
        args.extend(self.files("--tls-cert-file", "--tls-key-file", "--tls-ca-cert-file"));
        for flag in ["--tls-cluster", "--tls-replication"] {
            args.extend([flag.into(), "yes".into()]);
        }
        args
    }

    /// `redis-cli`'s arguments to reach such a node.
    pub fn client(&self) -> Vec<OsString> {
        let mut args = vec![OsString::from("--tls")];
        args.extend(self.files("--cert", "--key", "--cacert"));
        args
    }

    fn files(&self, cert: &str, key: &str, ca: &str) -> Vec<OsString> {
        vec![
            cert.into(),
            self.cert.clone().into(),
            key.into(),
            self.key.clone().into(),
            ca.into(),
            self.ca.clone().into(),
        ]
    }
}

/// `redis-cli` (with `tls`'s arguments when the cluster speaks TLS).
fn redis_cli(tls: Option<&TlsArgs>) -> Command {
    let mut cmd = Command::new("redis-cli");
    if let Some(tls) = tls {
        cmd.args(tls.client());
    }
    cmd
}

/// `redis-cli --cluster create` over `ports` with `replicas` replicas per master.
pub fn create(ports: &[u16], replicas: usize) -> anyhow::Result<()> {
    create_with(ports, replicas, None)
}

/// [`create`] for a cluster that may speak TLS.
pub fn create_with(ports: &[u16], replicas: usize, tls: Option<&TlsArgs>) -> anyhow::Result<()> {
    let out = redis_cli(tls)
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
    cli_with(port, None, args)
}

/// [`cli`] towards a node that may speak TLS.
pub fn cli_with(port: u16, tls: Option<&TlsArgs>, args: &[&str]) -> anyhow::Result<String> {
    let out = redis_cli(tls)
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
    health_with(ports, None)
}

/// [`health`] of a cluster that may speak TLS.
pub fn health_with(ports: &[u16], tls: Option<&TlsArgs>) -> anyhow::Result<()> {
    let cli = |port, args: &[&str]| cli_with(port, tls, args);
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
