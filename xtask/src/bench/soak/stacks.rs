//! The two stacks a soak runs side by side, each with its admin port on a free port so the daemon's
//! own metrics can be sampled: MongoDB mode (`forwarding = "auto"`, i.e. splice(2))
//! in front of three secantusd-py stand-ins, and Redis mode in front of a 6-node cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::redis_admin::command;
use super::sample::{metric_where, scrape};
use crate::interrupt;
use crate::stack::mongos::MongosStandIns;
use crate::stack::net::{free_port, loopback};
use crate::stack::puerta::Puerta;
use crate::stack::redis_cluster::RedisCluster;

/// Fields drop in order: the daemon stops before its backends, and its BPF pins go last.
pub struct MongoStack {
    pub puerta: Puerta,
    pub admin: SocketAddr,
    pub standins: MongosStandIns,
    _pins: PinDir,
}

pub struct RedisStack {
    pub puerta: Puerta,
    pub admin: SocketAddr,
    pub cluster: RedisCluster,
}

/// A BPF pin directory of this run's own (the default one may be in use by another daemon).
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl MongoStack {
    pub fn start(dir: &Path) -> anyhow::Result<MongoStack> {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
        eprintln!("==> MongoDB mode: 3 secantusd-py stand-ins on {ports:?}");
        let standins = MongosStandIns::start(&ports, dir)?;
        let (listen, admin) = (loopback(free_port()?), loopback(free_port()?));
        let pins = PinDir(PathBuf::from(format!(
            "/sys/fs/bpf/puerta-soak-{}-{}",
            std::process::id(),
            listen.port()
        )));
        let endpoints: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        // Short affinity timeout and health interval: entries expire and backends flap many times in
        // a run, so their clean-up paths are exercised, not just the steady state.
        let config = format!(
            "mode = \"mongodb\"\nlisten_addr = \"{listen}\"\nadmin_addr = \"{admin}\"\n\
             max_connections = 10000\ndrain_timeout_sec = 1\n\n[mongodb]\n\
             mongos_endpoints = [{}]\nsession_affinity_enabled = true\nsession_timeout_sec = 30\n\
             health_check_interval_sec = 1\nforwarding = \"auto\"\nbpf_pin_dir = \"{}\"\n",
            endpoints.join(", "),
            pins.0.display()
        );
        eprintln!("==> MongoDB mode: puerta on {listen}, admin on {admin}");
        let puerta = Puerta::start("puerta-mongodb", &config, listen, dir)?;
        let mut stack = MongoStack {
            puerta,
            admin,
            standins,
            _pins: pins,
        };
        for port in ports {
            stack.wait_backend_up(port)?;
        }
        Ok(stack)
    }

    /// True when the daemon's health checks have `port` up again (`puerta_backend_up`).
    pub fn backend_up(&self, port: u16) -> bool {
        scrape(self.admin).is_some_and(|text| {
            metric_where(&text, "puerta_backend_up", &format!("\"127.0.0.1:{port}\"")) == Some(1.0)
        })
    }

    fn wait_backend_up(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.backend_up(port) {
            interrupt::check()?;
            self.puerta.proc.ensure_running()?;
            if Instant::now() > deadline {
                anyhow::bail!("puerta never reported backend :{port} up on {}", self.admin);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Which data path the daemon ended up on: its "forwarding in ..." log line, without the prefix.
    pub fn forwarding(&self) -> String {
        let log = self.puerta.proc.output();
        log.lines()
            .find_map(|l| l.find("forwarding in").map(|i| l[i..].trim().to_string()))
            .unwrap_or_else(|| "unknown (no \"forwarding in\" line in the log)".to_string())
    }
}

impl RedisStack {
    pub fn start(dir: &Path) -> anyhow::Result<RedisStack> {
        let ports: Vec<u16> = (0..6).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
        eprintln!("==> Redis mode: 6-node cluster on {ports:?}");
        // A 2 s node timeout (default 15 s) makes a failover take seconds, so a kill every minute
        // leaves most of the minute healthy; validity factor 0: a replica always may take over.
        let cluster = RedisCluster::start_with(
            &ports,
            dir,
            &[
                "--cluster-node-timeout",
                "2000",
                "--cluster-replica-validity-factor",
                "0",
            ],
        )?;
        let (listen, admin) = (loopback(free_port()?), loopback(free_port()?));
        let seeds: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        let config = format!(
            "mode = \"redis\"\nlisten_addr = \"{listen}\"\nadmin_addr = \"{admin}\"\n\
             max_connections = 10000\ndrain_timeout_sec = 1\n\n[redis]\ncluster_nodes = [{}]\n\
             slot_refresh_interval_sec = 5\nconnection_timeout_ms = 1000\n",
            seeds.join(", ")
        );
        eprintln!("==> Redis mode: puerta on {listen}, admin on {admin}");
        let mut puerta = Puerta::start("puerta-redis", &config, listen, dir)?;
        wait_serving(&mut puerta)?;
        Ok(RedisStack {
            puerta,
            admin,
            cluster,
        })
    }
}

/// Accepting is not serving: the daemon answers only once it has loaded the slot map.
fn wait_serving(puerta: &mut Puerta) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        interrupt::check()?;
        puerta.proc.ensure_running()?;
        match command(puerta.listen.port(), &["SET", "soak:probe", "1"]) {
            Ok(reply) if reply == "OK" => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                anyhow::bail!("puerta (redis) does not answer SET: {e:#}")
            }
            _ if Instant::now() > deadline => anyhow::bail!("puerta (redis) does not answer SET"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
