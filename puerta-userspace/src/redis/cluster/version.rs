//! The Redis version the proxy reports in HELLO and INFO: the cluster's own, because clients switch
//! features on it (and should see what they will really get). Asked once from a master, then kept.

use std::sync::Arc;

use crate::redis::cluster::Cluster;
use crate::redis::exec::broadcast::call_node;
use crate::redis::node::pool::Lane;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

/// Reported while no master has answered yet; the oldest Redis the proxy is tested against.
pub const FALLBACK: &str = "7.0.0";

pub async fn redis_version(cluster: &Cluster) -> Arc<str> {
    if let Some(known) = cluster.known_version() {
        return known;
    }
    let Some(addr) = cluster.any_master() else {
        return FALLBACK.into();
    };
    let query = wire::command_bytes(&[&b"INFO"[..], b"server"]);
    let within = cluster.config.connection_timeout * 2;
    let asked =
        tokio::time::timeout(within, call_node(cluster, &addr, query, Lane::resp2(0))).await;
    match asked.ok().as_ref().and_then(version_in) {
        Some(version) => {
            cluster.remember_version(version.clone());
            version
        }
        None => FALLBACK.into(),
    }
}

/// `redis_version:` out of an `INFO server` reply.
fn version_in(info: &Frame) -> Option<Arc<str>> {
    let text = String::from_utf8_lossy(info.as_bytes()?).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|v| v.trim().into())
        .filter(|v: &Arc<str>| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_line() {
        let info = wire::bulk("# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\n");
        assert_eq!(version_in(&info).as_deref(), Some("7.0.15"));
        assert_eq!(version_in(&wire::bulk("# Server\r\n")), None);
        assert_eq!(version_in(&wire::error("ERR x")).as_deref(), None);
    }
}
