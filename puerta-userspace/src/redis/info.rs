//! INFO as the proxy answers it: a `# Proxy` section with Puerta's own counters, and a `# Keyspace`
//! section summed over all masters, so that the cluster looks like one server.

use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;

use super::broadcast::to_masters;
use super::cluster::Cluster;
use super::resp::Frame;
use super::stats::Stats;
use super::wire;

pub async fn info(cluster: Arc<Cluster>, section: Option<String>, lane: usize) -> Frame {
    let section = section.map(|s| s.to_ascii_lowercase());
    let (proxy, keyspace) = match section.as_deref() {
        None | Some("all") | Some("everything") | Some("default") => (true, true),
        Some("server") | Some("proxy") | Some("stats") | Some("clients") => (true, false),
        Some("keyspace") => (false, true),
        Some(_) => (false, false),
    };
    let mut text = String::new();
    if proxy {
        proxy_section(&cluster, &mut text);
    }
    if keyspace {
        let payload = wire::command_bytes(&[&b"INFO"[..], b"keyspace"]);
        match to_masters(&cluster, payload, lane).await {
            Ok(replies) => keyspace_section(&replies, &mut text),
            Err(e) => return e,
        }
    }
    Frame::Bulk(Bytes::from(text))
}

fn proxy_section(cluster: &Cluster, out: &mut String) {
    let s = &cluster.stats;
    let _ = write!(
        out,
        "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\nproxy:puerta\r\n\
         puerta_version:{}\r\nuptime_in_seconds:{}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        s.started.elapsed().as_secs()
    );
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
    out.push_str("\r\n");
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
