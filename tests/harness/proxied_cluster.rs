//! Puerta in front of a [`RedisCluster`]: what the Redis-mode integration tests (and the demo) run.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::redis_cluster::RedisCluster;
use crate::{free_port, loopback, Process};

/// A cluster with Puerta in front of it.
pub struct ProxiedCluster {
    pub cluster: RedisCluster,
    pub puerta: crate::Puerta,
}

impl ProxiedCluster {
    /// 3 masters + 3 replicas and Puerta; `extra` lines go into `[redis]`.
    pub fn start(extra: &str) -> anyhow::Result<ProxiedCluster> {
        Self::start_on(loopback(free_port()), extra)
    }

    /// A TLS cluster behind Puerta speaking TLS on both legs (see `RedisCluster::start_tls`), with
    /// the admin endpoint, like [`ProxiedCluster::start_with_admin`].
    pub fn start_tls(extra: &str) -> anyhow::Result<(ProxiedCluster, SocketAddr)> {
        Self::with_admin(RedisCluster::start_tls()?, extra)
    }

    /// Like [`ProxiedCluster::start`], with Puerta listening on `listen` (e.g. a fixed demo port).
    pub fn start_on(listen: SocketAddr, extra: &str) -> anyhow::Result<ProxiedCluster> {
        let cluster = RedisCluster::start()?;
        let puerta = crate::Puerta::start(&cluster.puerta_config(listen, extra), listen)?;
        Ok(ProxiedCluster { cluster, puerta })
    }

    /// Like [`ProxiedCluster::start`], with the admin endpoint (`/metrics`) on a free port, returned
    /// second: the default `127.0.0.1:9090` would be shared by every test running at once, and all but
    /// one Puerta would serve without metrics.
    pub fn start_with_admin(extra: &str) -> anyhow::Result<(ProxiedCluster, SocketAddr)> {
        Self::with_admin(RedisCluster::start()?, extra)
    }

    /// [`ProxiedCluster::start_with_admin`] in front of `cluster`.
    pub fn with_admin(
        cluster: RedisCluster,
        extra: &str,
    ) -> anyhow::Result<(ProxiedCluster, SocketAddr)> {
        Self::with_admin_and(cluster, "", extra)
    }

    /// [`ProxiedCluster::with_admin`], with `top` lines before the `[redis]` section (e.g.
    /// `worker_threads`).
    pub fn with_admin_and(
        cluster: RedisCluster,
        top: &str,
        extra: &str,
    ) -> anyhow::Result<(ProxiedCluster, SocketAddr)> {
        let (listen, admin) = (loopback(free_port()), loopback(free_port()));
        let config = format!(
            "admin_addr = \"{admin}\"\n{top}\n{}",
            cluster.puerta_config(listen, extra)
        );
        let puerta = crate::Puerta::start(&config, listen)?;
        Ok((ProxiedCluster { cluster, puerta }, admin))
    }

    pub fn port(&self) -> u16 {
        self.puerta.listen.port()
    }

    /// Runs `tests/py/<script>` with the proxy's host and port as the first two arguments, then
    /// `args`; fails with the script's output unless it exits 0.
    pub fn python(&self, script: &str, args: &[&str]) -> anyhow::Result<String> {
        self.run_client(
            Command::new(crate::python()).arg(crate::py_script(script)),
            script,
            args,
        )
    }

    /// [`ProxiedCluster::python`], failing unless the script printed `ALL OK` (the scripts' way of
    /// saying every check passed).
    pub fn python_ok(&self, script: &str, args: &[&str]) -> anyhow::Result<String> {
        all_ok(self.python(script, args)?)
    }

    /// [`ProxiedCluster::node`], failing unless the script printed `ALL OK`.
    pub fn node_ok(&self, script: &str, args: &[&str]) -> anyhow::Result<String> {
        all_ok(self.node(script, args)?)
    }

    /// Runs `tests/js/<script>` with Node.js (clients from `tests/node_modules`, installed by
    /// `cargo xtask setup`), like [`ProxiedCluster::python`].
    pub fn node(&self, script: &str, args: &[&str]) -> anyhow::Result<String> {
        let path = crate::workspace_root().join("tests/js").join(script);
        self.run_client(Command::new("node").arg(path), script, args)
    }

    /// `client HOST PORT args...`; its output, or an error with it (and Puerta's) unless it exits 0.
    fn run_client(
        &self,
        client: &mut Command,
        script: &str,
        args: &[&str],
    ) -> anyhow::Result<String> {
        if let Some(tls) = self.cluster.tls() {
            client.envs(tls.client_env());
        }
        let out = client
            .arg("127.0.0.1")
            .arg(self.port().to_string())
            .args(args)
            .output()
            .with_context(|| format!("run {script}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!(
                "{script} failed ({}):\n{text}\npuerta output:\n{}",
                out.status,
                self.puerta.process.output()
            );
        }
        Ok(text)
    }

    /// `redis-cli -p <proxy> args...` (stdout).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        self.cluster.cli(self.port(), args)
    }
}

impl ProxiedCluster {
    /// Starts `tests/py/redis_workload.py` with `clients` threads; returns once they run. The workload
    /// stops when `stop_file` exists.
    pub fn workload(
        &self,
        stop_file: &std::path::Path,
        clients: usize,
        mode: &str,
    ) -> anyhow::Result<Process> {
        let mut cmd = Command::new(crate::python());
        if let Some(tls) = self.cluster.tls() {
            cmd.envs(tls.client_env());
        }
        cmd.arg(crate::py_script("redis_workload.py"))
            .arg("127.0.0.1")
            .arg(self.port().to_string())
            .arg(stop_file)
            .arg(clients.to_string())
            .arg(mode);
        let child = Process::captured("workload", cmd)?;
        child.wait_for_output("STARTED", Duration::from_secs(60))?;
        Ok(child)
    }

    /// Signals the workload to stop and waits for its verdict; its full output on failure.
    pub fn finish_workload(
        &self,
        mut workload: Process,
        stop_file: &std::path::Path,
    ) -> anyhow::Result<String> {
        let puerta = || {
            format!(
                "puerta output (tail):\n{}",
                tail(&self.puerta.process.output(), 40)
            )
        };
        workload.finish(stop_file, "WORKLOAD OK", Duration::from_secs(300), puerta)
    }

    /// A counter from the `# Proxy` section of the proxy's INFO.
    pub fn proxy_counter(&self, name: &str) -> anyhow::Result<u64> {
        let info = self.cli(&["INFO", "proxy"])?;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {name} in INFO:\n{info}"))
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn all_ok(out: String) -> anyhow::Result<String> {
    anyhow::ensure!(out.contains("ALL OK"), "{out}");
    Ok(out)
}
