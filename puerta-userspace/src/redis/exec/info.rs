//! INFO as the proxy answers it: the sections of a standalone Redis, about the one server the
//! proxy stands for. `server` (with the cluster's `redis_version`), `clients` and `cpu` are the
//! proxy's; the sections about the data (`memory`, `persistence`, `stats`, `replication`,
//! `commandstats`, `errorstats`, `latencystats`, `keyspace`) are every master's, merged
//! (`node_info`), with the proxy's own client counters in `stats` and its RSS in `memory`; the
//! replication view is a master without replicas, and `cluster` says what a standalone server says.
//! `proxy` has Puerta's own counters. Like Redis, no argument or `default` gives the default
//! sections, `all` / `everything` adds `commandstats` and `latencystats`, several section names may
//! be given (any case), and unknown ones add nothing.

use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;

use crate::redis::cluster::version;
use crate::redis::cluster::Cluster;
use crate::redis::exec::broadcast::to_masters;
use crate::redis::exec::node_info;
use crate::redis::node::pool::Lane;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;
use crate::redis::stats::Stats;

/// Every section in the order Redis prints them, and whether a plain INFO (or `default`) shows it.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("proxy", true),
    ("commandstats", false),
    ("errorstats", true),
    ("latencystats", false),
    ("cluster", true),
    ("keyspace", true),
];

/// The sections about the data, asked of every master.
const NODE_SECTIONS: &[&str] = &[
    "memory",
    "persistence",
    "stats",
    "replication",
    "commandstats",
    "errorstats",
    "latencystats",
    "keyspace",
];

pub async fn info(cluster: Arc<Cluster>, args: Vec<Bytes>, lane: Lane) -> Frame {
    let wanted = wanted_sections(&args);
    let from_nodes: Vec<&[u8]> = std::iter::once(&b"INFO"[..])
        .chain(
            wanted
                .iter()
                .filter(|s| NODE_SECTIONS.contains(s))
                .map(|s| s.as_bytes()),
        )
        .collect();
    // The proxy reads these replies itself: RESP2, whatever the client speaks. With no master
    // known yet, INFO still answers (from the proxy's side: `role:master` is what valkey-glide
    // reads on connect); the nodes' sections are then empty.
    let replies = match from_nodes.len() > 1 {
        true => {
            let payload = wire::command_bytes(&from_nodes);
            to_masters(&cluster, payload, Lane::resp2(lane.index))
                .await
                .unwrap_or_default()
        }
        false => Vec::new(),
    };
    let mut text = String::new();
    for section in wanted {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        match section {
            "server" => server_section(&cluster, &mut text).await,
            "clients" => clients_section(&cluster, &mut text),
            "memory" => memory_section(&replies, &mut text),
            "stats" => stats_section(&cluster, &replies, &mut text),
            "cpu" => cpu_section(&mut text),
            "replication" => replication_section(&replies, &mut text),
            "proxy" => proxy_section(&cluster, &mut text),
            "cluster" => text.push_str("# Cluster\r\ncluster_enabled:0\r\n"),
            "keyspace" => keyspace_section(&replies, &mut text),
            other => {
                let mut fields = node_info::merged(&replies, other).unwrap_or_default();
                fields.retain(|(name, _)| !node_info::proxys_own(name));
                node_info::write(&mut text, title(other), &fields);
            }
        }
    }
    Frame::verbatim_text(Bytes::from(text))
}

/// A section's header as Redis prints it.
fn title(section: &str) -> &'static str {
    match section {
        "persistence" => "Persistence",
        "commandstats" => "Commandstats",
        "errorstats" => "Errorstats",
        _ => "Latencystats",
    }
}

/// The known sections named by INFO's arguments (`args[0]` is INFO), in Redis' order.
fn wanted_sections(args: &[Bytes]) -> Vec<&'static str> {
    let names: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = names
        .iter()
        .any(|n| matches!(n.as_str(), "all" | "everything"));
    let default = names.is_empty() || names.iter().any(|n| n == "default");
    SECTIONS
        .iter()
        .filter(|(s, in_default)| all || (default && *in_default) || names.iter().any(|n| n == s))
        .map(|(s, _)| *s)
        .collect()
}

async fn server_section(cluster: &Cluster, out: &mut String) {
    let version = version::redis_version(cluster).await;
    let uptime = cluster.stats.started.elapsed().as_secs();
    let _ = write!(
        out,
        "# Server\r\nredis_version:{version}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\n\
         redis_mode:standalone\r\nos:{}\r\narch_bits:{}\r\nmultiplexing_api:epoll\r\n\
         process_id:{}\r\nrun_id:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\n\
         proxy:puerta\r\npuerta_version:{}\r\n",
        std::env::consts::OS,
        usize::BITS,
        std::process::id(),
        run_id(),
        uptime / 86400,
        env!("CARGO_PKG_VERSION"),
    );
}

/// 40 hex digits, new for every process, as Redis' `run_id` (clients compare it to notice a restart).
fn run_id() -> &'static str {
    static RUN_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN_ID.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let state = std::collections::hash_map::RandomState::new();
        (0..3u64)
            .map(|i| {
                let mut h = state.build_hasher();
                h.write_u64(i ^ u64::from(std::process::id()));
                format!("{:016x}", h.finish())
            })
            .collect::<String>()[..40]
            .to_string()
    })
}

/// The masters' memory, merged, and the proxy's own RSS; the proxy's alone when no master answered.
fn memory_section(replies: &[Frame], out: &mut String) {
    let rss = resident_bytes().unwrap_or(0);
    if let Some(mut fields) = node_info::merged(replies, "memory") {
        fields.push(("puerta_used_memory_rss".into(), rss.to_string()));
        node_info::write(out, "Memory", &fields);
        return;
    }
    proxy_memory_section(rss, out);
}

/// The proxy process's memory, in the fields clients and dashboards read.
fn proxy_memory_section(rss: u64, out: &mut String) {
    let _ = write!(
        out,
        "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\
         used_memory_rss_human:{}\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n\
         mem_allocator:libc\r\n",
        human(rss),
        human(rss)
    );
}

/// Resident set size of this process (`/proc/self/statm`).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Redis' `…_human` form: 917.36K, 11.86M.
pub(super) fn human(bytes: u64) -> String {
    let units = [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)];
    for (unit, size) in units {
        if bytes >= size {
            return format!("{:.2}{unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes}B")
}

/// The masters' stats, merged, with the proxy's own client counters in place of theirs (the nodes'
/// clients are the proxy's pooled connections) and the proxy's routing counters after them.
fn stats_section(cluster: &Cluster, replies: &[Frame], out: &mut String) {
    let s = &cluster.stats;
    let own = [
        ("total_connections_received", Stats::get(&s.clients_total)),
        (
            "total_commands_processed",
            cluster.workers.commands().iter().sum(),
        ),
        ("rejected_connections", Stats::get(&s.clients_rejected)),
        ("moved_redirects", Stats::get(&s.moved)),
        ("ask_redirects", Stats::get(&s.ask)),
        ("tryagain_retries", Stats::get(&s.tryagain)),
        ("backend_errors", Stats::get(&s.backend_errors)),
        ("protocol_errors", Stats::get(&s.protocol_errors)),
        (
            "tracking_total_keys",
            cluster.tracking.tracked_keys() as u64,
        ),
    ];
    let mut fields = node_info::merged(replies, "stats").unwrap_or_default();
    for (name, value) in own {
        match fields.iter_mut().find(|(have, _)| have == name) {
            Some((_, have)) => *have = value.to_string(),
            None => fields.push((name.to_string(), value.to_string())),
        }
    }
    node_info::write(out, "Stats", &fields);
}

/// A master without replicas, as one server standing for the cluster: the masters' replication
/// offsets and backlog merged, their replicas left out (they are the cluster's, not the proxy's).
fn replication_section(replies: &[Frame], out: &mut String) {
    let mut fields = node_info::merged(replies, "replication").unwrap_or_default();
    fields.retain(|(name, _)| {
        !(name.starts_with("slave") && name[5..].bytes().all(|b| b.is_ascii_digit()))
            && name != "role"
            && name != "connected_slaves"
    });
    fields.insert(0, ("connected_slaves".into(), "0".into()));
    fields.insert(0, ("role".into(), "master".into()));
    node_info::write(out, "Replication", &fields);
}

/// CPU the proxy process used (`getrusage`), in seconds.
fn cpu_section(out: &mut String) {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let _ = write!(
        out,
        "# CPU\r\nused_cpu_sys:{:.6}\r\nused_cpu_user:{:.6}\r\n",
        secs(usage.ru_stime),
        secs(usage.ru_utime)
    );
}

fn clients_section(cluster: &Cluster, out: &mut String) {
    let _ = write!(
        out,
        "# Clients\r\nconnected_clients:{}\r\nblocked_clients:{}\r\ntracking_clients:{}\r\n",
        Stats::get(&cluster.stats.clients_connected),
        cluster.clients.blocked(),
        cluster.tracking.tracking_clients()
    );
}

fn proxy_section(cluster: &Cluster, out: &mut String) {
    let s = &cluster.stats;
    let lines = [
        ("connected_clients", Stats::get(&s.clients_connected)),
        ("total_connections_received", Stats::get(&s.clients_total)),
        ("rejected_connections", Stats::get(&s.clients_rejected)),
        (
            "total_commands_processed",
            cluster.workers.commands().iter().sum(),
        ),
        ("cluster_masters", cluster.masters().len() as u64),
        ("cluster_replicas", cluster.replica_count() as u64),
        ("cluster_slots_covered", cluster.covered_slots() as u64),
        (
            "backend_connections",
            cluster.live_backend_connections() as u64,
        ),
        ("moved_redirects", Stats::get(&s.moved)),
        ("ask_redirects", Stats::get(&s.ask)),
        ("tryagain_retries", Stats::get(&s.tryagain)),
        ("backend_errors", Stats::get(&s.backend_errors)),
        ("failover_held", Stats::get(&s.failover_held)),
        ("failover_holding", Stats::get(&s.failover_holding)),
        ("topology_refreshes", Stats::get(&s.refreshes)),
        ("protocol_errors", Stats::get(&s.protocol_errors)),
    ];
    out.push_str("# Proxy\r\n");
    for (name, value) in lines {
        let _ = write!(out, "{name}:{value}\r\n");
    }
    let per_worker: Vec<String> = cluster
        .workers
        .clients()
        .iter()
        .map(usize::to_string)
        .collect();
    let _ = write!(out, "worker_clients:{}\r\n", per_worker.join(","));
}

/// Adds up `dbN:keys=..,expires=..` lines of every master's `INFO keyspace`.
fn keyspace_section(replies: &[Frame], out: &mut String) {
    let mut dbs: Vec<(String, u64, u64)> = Vec::new();
    for reply in replies {
        let Frame::Bulk(text) = reply else { continue };
        for line in String::from_utf8_lossy(text).lines() {
            let Some((db, fields)) = line.split_once(':') else {
                continue;
            };
            if !db.starts_with("db") {
                continue;
            }
            let (keys, expires) = parse_db_fields(fields);
            match dbs.iter_mut().find(|(name, _, _)| name == db) {
                Some(entry) => {
                    entry.1 += keys;
                    entry.2 += expires;
                }
                None => dbs.push((db.to_string(), keys, expires)),
            }
        }
    }
    out.push_str("# Keyspace\r\n");
    for (db, keys, expires) in dbs {
        let _ = write!(out, "{db}:keys={keys},expires={expires},avg_ttl=0\r\n");
    }
}

fn parse_db_fields(fields: &str) -> (u64, u64) {
    let mut keys = 0;
    let mut expires = 0;
    for field in fields.split(',') {
        match field.split_once('=') {
            Some(("keys", v)) => keys = v.trim().parse().unwrap_or(0),
            Some(("expires", v)) => expires = v.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    (keys, expires)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(words: &[&'static str]) -> Vec<&'static str> {
        let args: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::from_static(w.as_bytes()))
            .collect();
        wanted_sections(&args)
    }

    #[test]
    fn sections_follow_the_arguments() {
        let all: Vec<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
        assert_eq!(sections(&["INFO", "everything"]), all);
        assert_eq!(sections(&["INFO", "all"]), all);
        let default = sections(&["INFO"]);
        assert_eq!(sections(&["INFO", "default"]), default);
        assert!(default.contains(&"persistence") && default.contains(&"errorstats"));
        assert!(!default.contains(&"commandstats") && !default.contains(&"latencystats"));
        assert_eq!(sections(&["info", "Replication"]), ["replication"]);
        assert_eq!(
            sections(&["INFO", "MEMORY", "cpu", "stats"]),
            ["memory", "stats", "cpu"]
        );
        assert_eq!(
            sections(&["INFO", "keyspace", "server"]),
            ["server", "keyspace"]
        );
        assert_eq!(sections(&["INFO", "commandstats"]), ["commandstats"]);
        assert!(sections(&["INFO", "nosuch"]).is_empty());
    }

    #[test]
    fn memory_and_server_fields_look_like_redis() {
        assert_eq!(human(939_376), "917.36K");
        assert_eq!(human(12_431_360), "11.86M");
        assert_eq!(human(12), "12B");
        assert_eq!(run_id().len(), 40);
        assert!(run_id().bytes().all(|b| b.is_ascii_hexdigit()));
        let mut out = String::new();
        memory_section(&[], &mut out);
        assert!(out.contains("mem_allocator:libc\r\n"), "{out}");
        assert!(!out.contains("used_memory:0\r\n"), "{out}");
    }

    /// Before any master is known (nodes unreachable at start), INFO still answers as a master.
    #[tokio::test]
    async fn answers_before_the_topology_is_known() {
        let cluster = Cluster::new(crate::redis::cluster::refresh::tests::config(1));
        let args = vec![
            Bytes::from_static(b"INFO"),
            Bytes::from_static(b"replication"),
        ];
        let Frame::Verbatim { text, .. } = info(cluster, args, Lane::resp2(0)).await else {
            panic!("INFO answers text");
        };
        let text = String::from_utf8_lossy(&text).into_owned();
        assert!(
            text.contains("role:master\r\nconnected_slaves:0\r\n"),
            "{text}"
        );
    }

    #[test]
    fn sums_keyspace_over_masters() {
        let replies = vec![
            wire::bulk("# Keyspace\r\ndb0:keys=10,expires=1,avg_ttl=5\r\n"),
            wire::bulk("# Keyspace\r\n"),
            wire::bulk("# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n"),
            wire::error("ERR down"),
        ];
        let mut out = String::new();
        keyspace_section(&replies, &mut out);
        assert_eq!(out, "# Keyspace\r\ndb0:keys=15,expires=1,avg_ttl=0\r\n");
    }
}
