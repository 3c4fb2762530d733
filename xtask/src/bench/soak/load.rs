//! The soak's clients: Python processes from `tools/soak/` (pymongo and redis-py, real drivers with
//! their own connection handling), each writing its counters to a JSON file about once a second.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::timeline::Stack;
use crate::paths;
use testkit::process::Process;

/// MongoDB clients, one per loopback source address: Puerta places and pins clients by IP, so several
/// addresses spread the load over the stand-ins.
const MONGO_SOURCES: &[&str] = &["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
/// Redis client processes (each with a few connections).
const REDIS_PROCESSES: usize = 2;

/// What a client process has counted so far (the file `tools/soak/soakstats.py` writes).
#[derive(Deserialize, Serialize, Clone, Default)]
#[serde(default)]
pub struct ClientTotals {
    pub ops: u64,
    pub errors: u64,
    pub mismatches: u64,
    pub connections: u64,
    #[serde(skip_serializing)]
    pub error_kinds: BTreeMap<String, u64>,
    /// Errors per unix second.
    #[serde(skip_serializing)]
    pub error_seconds: BTreeMap<u64, u64>,
}

impl ClientTotals {
    fn add(&mut self, other: ClientTotals) {
        self.ops += other.ops;
        self.errors += other.errors;
        self.mismatches += other.mismatches;
        self.connections += other.connections;
        for (kind, n) in other.error_kinds {
            *self.error_kinds.entry(kind).or_default() += n;
        }
        for (second, n) in other.error_seconds {
            *self.error_seconds.entry(second).or_default() += n;
        }
    }
}

struct Client {
    stack: Stack,
    stats: PathBuf,
    proc: Process,
}

pub struct Clients {
    clients: Vec<Client>,
}

impl Clients {
    pub fn start(dir: &Path, mongo: SocketAddr, redis: SocketAddr) -> anyhow::Result<Clients> {
        let mut clients = Vec::new();
        for source in MONGO_SOURCES {
            let stats = dir.join(format!("client-mongodb-{source}.json"));
            let mut cmd = script("mongo_load.py");
            cmd.args(["--puerta", &mongo.to_string(), "--source", source])
                .arg("--stats")
                .arg(&stats);
            let log = dir.join(format!("client-mongodb-{source}.log"));
            let proc = Process::logged(&format!("mongodb client {source}"), cmd, &log)?;
            clients.push(Client {
                stack: Stack::Mongodb,
                stats,
                proc,
            });
        }
        for i in 0..REDIS_PROCESSES {
            let stats = dir.join(format!("client-redis-{i}.json"));
            let mut cmd = script("redis_load.py");
            cmd.args(["--puerta", &redis.to_string(), "--name", &format!("c{i}")])
                .arg("--stats")
                .arg(&stats);
            let log = dir.join(format!("client-redis-{i}.log"));
            let proc = Process::logged(&format!("redis client {i}"), cmd, &log)?;
            clients.push(Client {
                stack: Stack::Redis,
                stats,
                proc,
            });
        }
        eprintln!(
            "==> load: {} pymongo clients (sources {}), {REDIS_PROCESSES} redis-py processes",
            MONGO_SOURCES.len(),
            MONGO_SOURCES.join(", ")
        );
        Ok(Clients { clients })
    }

    /// The sum over `stack`'s clients of what their files say now (a missing or half-read file counts
    /// as nothing yet).
    pub fn totals(&self, stack: Stack) -> ClientTotals {
        let mut sum = ClientTotals::default();
        for c in self.clients.iter().filter(|c| c.stack == stack) {
            if let Some(t) = std::fs::read(&c.stats)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                sum.add(t);
            }
        }
        sum
    }

    /// A client that died is a harness failure: its errors would otherwise go uncounted.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.clients
            .iter_mut()
            .try_for_each(|c| c.proc.ensure_running())
    }
}

fn script(name: &str) -> Command {
    let mut cmd = Command::new(paths::python());
    cmd.arg(paths::root().join("tools/soak").join(name))
        .env("PYTHONUNBUFFERED", "1");
    cmd
}
