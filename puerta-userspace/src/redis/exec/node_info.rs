//! INFO sections about the data, which live on the nodes: each master's section, merged into what
//! one server holding all of the data would print. Clients and test suites wait on these fields
//! (`aof_rewrite_in_progress`, `rdb_changes_since_last_save`, `lazyfree_pending_objects`) and read
//! the per-command counters (`cmdstat_*`, `errorstat_*`), so a missing one is worse than a merged
//! one.
//!
//! How a field merges: counts add up (calls, keys, bytes, memory, changes, errors, hits); anything
//! else (flags, states, timestamps, ratios, percentiles) takes the largest value across masters, so
//! "in progress" anywhere reads as in progress. `usec_per_call` is worked out again from the summed
//! `usec` and `calls`, a `…_human` field again from its summed bytes. Text takes the first master's
//! value, unless another master reports something else than `ok`.

use std::fmt::Write;

use crate::redis::resp::Frame;

/// One section of one node's INFO, in the node's field order.
type Fields = Vec<(String, String)>;

/// Splits each master's INFO reply into its sections (lower-case names) and merges `section`.
/// `None` when no master printed it.
pub fn merged(replies: &[Frame], section: &str) -> Option<Fields> {
    let mut merged: Option<Fields> = None;
    for reply in replies {
        let Frame::Bulk(text) = reply else { continue };
        let text = String::from_utf8_lossy(text);
        let Some(fields) = section_fields(&text, section) else {
            continue;
        };
        match &mut merged {
            None => merged = Some(fields),
            Some(all) => add(all, fields),
        }
    }
    let mut merged = merged?;
    finish(&mut merged);
    Some(merged)
}

/// Whether a per-command field (`cmdstat_<command>` of commandstats,
/// `latency_percentiles_usec_<command>` of latencystats) counts only what the proxy itself sends the
/// nodes: its clients' CLUSTER, CLIENT, HELLO, INFO, PING and ASKING/READONLY are answered by the
/// proxy and never reach a node, so on the nodes these are the proxy's topology queries, handshakes,
/// barriers and tracking feeds, which one Redis would not show.
pub fn proxys_own(field: &str) -> bool {
    let command = field
        .strip_prefix("cmdstat_")
        .or_else(|| field.strip_prefix("latency_percentiles_usec_"));
    command.is_some_and(|c| {
        c.starts_with("cluster|")
            || c.starts_with("client|")
            || matches!(
                c,
                "hello" | "info" | "ping" | "asking" | "readonly" | "auth"
            )
    })
}

/// Writes `# Title` and the fields, as Redis does.
pub fn write(out: &mut String, title: &str, fields: &[(String, String)]) {
    let _ = write!(out, "# {title}\r\n");
    for (name, value) in fields {
        let _ = write!(out, "{name}:{value}\r\n");
    }
}

fn section_fields(text: &str, section: &str) -> Option<Fields> {
    let mut fields = None;
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("# ") {
            if fields.is_some() {
                break;
            }
            if title.trim().eq_ignore_ascii_case(section) {
                fields = Some(Vec::new());
            }
            continue;
        }
        if let (Some(fields), Some((name, value))) = (&mut fields, line.split_once(':')) {
            fields.push((name.to_string(), value.trim_end().to_string()));
        }
    }
    fields
}

fn add(all: &mut Fields, fields: Fields) {
    for (name, value) in fields {
        match all.iter_mut().find(|(have, _)| *have == name) {
            Some((_, have)) => *have = merge_value(&name, have, &value),
            None => all.push((name, value)),
        }
    }
}

/// `a` and `b` of field `name`: a plain value, or a `k=v,k=v` list merged key by key.
fn merge_value(name: &str, a: &str, b: &str) -> String {
    if a.contains('=') && b.contains('=') {
        let mut parts: Vec<(String, String)> = pairs(a);
        for (key, value) in pairs(b) {
            match parts.iter_mut().find(|(have, _)| *have == key) {
                Some((_, have)) => *have = merge_scalar(&key, have, &value),
                None => parts.push((key, value)),
            }
        }
        return join(&parts);
    }
    merge_scalar(name, a, b)
}

fn merge_scalar(name: &str, a: &str, b: &str) -> String {
    if let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) {
        return match is_count(name) {
            true => (x + y).to_string(),
            false => x.max(y).to_string(),
        };
    }
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return if y > x { b.to_string() } else { a.to_string() };
    }
    match a {
        "ok" if b != "ok" => b.to_string(),
        _ => a.to_string(),
    }
}

/// Fields that count something, and so add up over the masters.
fn is_count(name: &str) -> bool {
    const COUNTS: &[&str] = &[
        "calls", "usec", "count", "changes", "keys", "objects", "memory", "bytes", "size", "hits",
        "misses", "errors", "replies", "sockets", "total", "fork", "offset", "pending", "buffer",
    ];
    let name = name.to_ascii_lowercase();
    !name.ends_with("_human") && COUNTS.iter().any(|c| name.contains(c))
        || name.starts_with("errorstat_")
}

fn pairs(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn join(parts: &[(String, String)]) -> String {
    parts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What cannot be merged field by field: averages and human-readable sizes, from the merged sums.
fn finish(fields: &mut Fields) {
    for i in 0..fields.len() {
        let (name, value) = &fields[i];
        if value.contains("usec_per_call=") {
            let mut parts = pairs(value);
            let number = |key: &str| {
                parts
                    .iter()
                    .find(|(k, _)| k == key)
                    .and_then(|(_, v)| v.parse::<f64>().ok())
            };
            if let (Some(usec), Some(calls)) = (number("usec"), number("calls")) {
                let per_call = if calls > 0.0 { usec / calls } else { 0.0 };
                for (k, v) in &mut parts {
                    if k == "usec_per_call" {
                        *v = format!("{per_call:.2}");
                    }
                }
            }
            fields[i].1 = join(&parts);
        } else if let Some(base) = name.strip_suffix("_human") {
            let bytes = fields
                .iter()
                .find(|(n, _)| n == base)
                .and_then(|(_, v)| v.parse::<u64>().ok());
            if let Some(bytes) = bytes {
                fields[i].1 = super::info::human(bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::resp::wire;

    #[test]
    fn counts_add_up_and_states_take_the_largest() {
        let replies = vec![
            wire::bulk(
                "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:3\r\n\
                 aof_rewrite_in_progress:0\r\nrdb_last_bgsave_status:ok\r\n\
                 rdb_last_save_time:100\r\n# Stats\r\nexpired_keys:1\r\n",
            ),
            wire::bulk(
                "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:4\r\n\
                 aof_rewrite_in_progress:1\r\nrdb_last_bgsave_status:err\r\n\
                 rdb_last_save_time:90\r\n",
            ),
            wire::error("ERR down"),
        ];
        let persistence = merged(&replies, "persistence").expect("printed");
        let field = |name: &str| {
            persistence
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(field("rdb_changes_since_last_save"), Some("7"));
        assert_eq!(field("aof_rewrite_in_progress"), Some("1"));
        assert_eq!(field("loading"), Some("0"));
        assert_eq!(field("rdb_last_bgsave_status"), Some("err"));
        assert_eq!(field("rdb_last_save_time"), Some("100"));
        assert_eq!(merged(&replies, "stats").map(|f| f.len()), Some(1));
        assert_eq!(merged(&replies, "cluster"), None);
    }

    #[test]
    fn command_stats_merge_per_command_and_recompute_the_average() {
        let replies = vec![
            wire::bulk(
                "# Commandstats\r\n\
                 cmdstat_set:calls=2,usec=10,usec_per_call=5.00,rejected_calls=0,failed_calls=1\r\n",
            ),
            wire::bulk(
                "# Commandstats\r\n\
                 cmdstat_set:calls=3,usec=5,usec_per_call=1.67,rejected_calls=1,failed_calls=0\r\n\
                 cmdstat_get:calls=1,usec=1,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n",
            ),
        ];
        let stats = merged(&replies, "commandstats").expect("printed");
        assert_eq!(
            stats,
            vec![
                (
                    "cmdstat_set".to_string(),
                    "calls=5,usec=15,usec_per_call=3.00,rejected_calls=1,failed_calls=1"
                        .to_string()
                ),
                (
                    "cmdstat_get".to_string(),
                    "calls=1,usec=1,usec_per_call=1.00,rejected_calls=0,failed_calls=0".to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_proxys_own_commands_are_told_apart() {
        assert!(proxys_own("cmdstat_cluster|slots"));
        assert!(proxys_own("cmdstat_hello"));
        assert!(proxys_own("latency_percentiles_usec_client|tracking"));
        assert!(!proxys_own("cmdstat_set"));
        assert!(!proxys_own("cmdstat_infox"));
        assert!(!proxys_own("used_memory"));
    }

    #[test]
    fn memory_adds_up_and_human_sizes_follow() {
        let replies = vec![
            wire::bulk("# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmem_fragmentation_ratio:1.5\r\n"),
            wire::bulk("# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmem_fragmentation_ratio:2.5\r\n"),
        ];
        let memory = merged(&replies, "memory").expect("printed");
        assert_eq!(
            memory,
            vec![
                ("used_memory".to_string(), "2097152".to_string()),
                ("used_memory_human".to_string(), "2.00M".to_string()),
                ("mem_fragmentation_ratio".to_string(), "2.5".to_string()),
            ]
        );
    }
}
