//! INFO as the proxy answers it: the sections clients read to learn what server they talk to
//! (`server` with the cluster's `redis_version`, `clients`, `replication` where the proxy is a master
//! without replicas, `keyspace` summed over all masters) and `proxy` with Puerta's own counters, so
//! that the cluster looks like one standalone server. Like Redis, no argument or `default` / `all` /
//! `everything` gives every section, several section names may be given, and unknown ones add nothing.

use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;

use crate::redis::cluster::version;
use crate::redis::cluster::Cluster;
use crate::redis::exec::broadcast::to_masters;
use crate::redis::node::pool::Lane;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;
use crate::redis::stats::Stats;

/// Every section, in the order Redis prints them.
const SECTIONS: &[&str] = &["server", "clients", "replication", "proxy", "keyspace"];

pub async fn info(cluster: Arc<Cluster>, args: Vec<Bytes>, lane: Lane) -> Frame {
    let wanted = wanted_sections(&args);
    let mut text = String::new();
    for section in wanted {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        match section {
            "server" => server_section(&cluster, &mut text).await,
            "clients" => clients_section(&cluster, &mut text),
            "replication" => {
                text.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n")
            }
            "proxy" => proxy_section(&cluster, &mut text),
            _ => {
                // The proxy reads these replies itself: RESP2, whatever the client speaks.
                let payload = wire::command_bytes(&[&b"INFO"[..], b"keyspace"]);
                match to_masters(&cluster, payload, Lane::resp2(lane.index)).await {
                    Ok(replies) => keyspace_section(&replies, &mut text),
                    Err(e) => return e,
                }
            }
        }
    }
    Frame::verbatim_text(Bytes::from(text))
}

/// The known sections named by INFO's arguments (`args[0]` is INFO), in Redis' order.
fn wanted_sections(args: &[Bytes]) -> Vec<&'static str> {
    let names: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let everything = names.is_empty()
        || names
            .iter()
            .any(|n| matches!(n.as_str(), "all" | "everything" | "default"));
    SECTIONS
        .iter()
        .copied()
        .filter(|s| everything || names.iter().any(|n| n == s))
        .collect()
}

async fn server_section(cluster: &Cluster, out: &mut String) {
    let version = version::redis_version(cluster).await;
    let uptime = cluster.stats.started.elapsed().as_secs();
    let _ = write!(
        out,
        "# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\nproxy:puerta\r\n\
         puerta_version:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        uptime / 86400
    );
}

fn clients_section(cluster: &Cluster, out: &mut String) {
    let _ = write!(
        out,
        "# Clients\r\nconnected_clients:{}\r\nblocked_clients:{}\r\n",
        Stats::get(&cluster.stats.clients_connected),
        cluster.clients.blocked()
    );
}

fn proxy_section(cluster: &Cluster, out: &mut String) {
    let s = &cluster.stats;
    let lines = [
        ("connected_clients", Stats::get(&s.clients_connected)),
        ("total_connections_received", Stats::get(&s.clients_total)),
        ("rejected_connections", Stats::get(&s.clients_rejected)),
        ("total_commands_processed", Stats::get(&s.commands)),
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
        ("topology_refreshes", Stats::get(&s.refreshes)),
        ("protocol_errors", Stats::get(&s.protocol_errors)),
    ];
    out.push_str("# Proxy\r\n");
    for (name, value) in lines {
        let _ = write!(out, "{name}:{value}\r\n");
    }
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
        assert_eq!(sections(&["INFO"]), SECTIONS);
        assert_eq!(sections(&["INFO", "everything"]), SECTIONS);
        assert_eq!(sections(&["info", "Replication"]), ["replication"]);
        assert_eq!(
            sections(&["INFO", "keyspace", "server"]),
            ["server", "keyspace"]
        );
        assert!(sections(&["INFO", "commandstats"]).is_empty());
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
