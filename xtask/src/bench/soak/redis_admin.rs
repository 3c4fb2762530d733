//! Asking the Redis Cluster nodes how they are, directly (not through Puerta): a minimal RESP client
//! for the few admin commands the soak needs, and the health rule a kill must wait for.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::stack::net::loopback;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Sends one command to the node on `port`; a simple or bulk string reply comes back as text, an error
/// reply as an error.
pub fn command(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&loopback(port), TIMEOUT)
        .with_context(|| format!("connect to redis :{port}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut request = format!("*{}\r\n", args.len());
    for a in args {
        request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    match line.split_at_checked(1) {
        Some(("+", text)) => Ok(text.to_string()),
        Some(("-", text)) => bail!("redis :{port} {}: {text}", args.join(" ")),
        Some(("$", len)) => {
            let len: usize = len
                .parse()
                .with_context(|| format!("bad bulk length {len}"))?;
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len);
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        _ => bail!("redis :{port}: unexpected reply {line:?}"),
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, PartialEq)]
pub struct NodeLine {
    pub port: u16,
    pub master: bool,
    /// Flagged `fail` or `fail?` by the node we asked.
    pub failing: bool,
    pub connected: bool,
    pub has_slots: bool,
}

pub fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> [slots...]
            let address = f.get(1)?;
            let port = address
                .split('@')
                .next()?
                .rsplit_once(':')?
                .1
                .parse()
                .ok()?;
            let flags: Vec<&str> = f.get(2)?.split(',').collect();
            Some(NodeLine {
                port,
                master: flags.contains(&"master"),
                failing: flags.iter().any(|fl| fl.starts_with("fail")),
                connected: f.get(7) == Some(&"connected"),
                has_slots: f.len() > 8,
            })
        })
        .collect()
}

/// Healthy: every node in `ports` answers, says `cluster_state:ok` with all slots, sees 3 masters with
/// slots and 3 replicas, none failing and all links up, and every replica's replication link is up.
/// Returns why not, for the log.
pub fn check_healthy(ports: &[u16]) -> Result<(), String> {
    for &port in ports {
        let info = command(port, &["CLUSTER", "INFO"]).map_err(|e| format!("{e:#}"))?;
        if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
            return Err(format!(":{port} reports the cluster not ok"));
        }
        let text = command(port, &["CLUSTER", "NODES"]).map_err(|e| format!("{e:#}"))?;
        view_is_healthy(&parse_nodes(&text), ports.len())
            .map_err(|why| format!("as :{port} sees it: {why}"))?;
    }
    for &port in ports {
        let role = command(port, &["INFO", "replication"]).map_err(|e| format!("{e:#}"))?;
        if role.contains("role:slave") && !role.contains("master_link_status:up") {
            return Err(format!(
                "replica :{port} has not synced with its master yet"
            ));
        }
    }
    Ok(())
}

fn view_is_healthy(nodes: &[NodeLine], expected: usize) -> Result<(), String> {
    if nodes.len() != expected {
        return Err(format!("{} nodes known, {expected} expected", nodes.len()));
    }
    if let Some(n) = nodes.iter().find(|n| n.failing || !n.connected) {
        return Err(format!(":{} is failing or disconnected", n.port));
    }
    let masters = nodes.iter().filter(|n| n.master && n.has_slots).count();
    if masters * 2 != expected {
        return Err(format!("{masters} masters with slots"));
    }
    Ok(())
}

/// The masters (with slots) as the node on `port` sees them, sorted by port.
pub fn masters(port: u16) -> anyhow::Result<Vec<u16>> {
    let mut ports: Vec<u16> = parse_nodes(&command(port, &["CLUSTER", "NODES"])?)
        .into_iter()
        .filter(|n| n.master && n.has_slots && !n.failing)
        .map(|n| n.port)
        .collect();
    ports.sort_unstable();
    Ok(ports)
}

/// True once the node on `asked` sees the killed node `gone` as failed and slot-less (its replica took
/// over) and reports the cluster ok again.
pub fn failed_over(asked: u16, gone: u16) -> bool {
    let ok = command(asked, &["CLUSTER", "INFO"]).is_ok_and(|i| i.contains("cluster_state:ok"));
    ok && command(asked, &["CLUSTER", "NODES"]).is_ok_and(|text| {
        parse_nodes(&text)
            .iter()
            .any(|n| n.port == gone && n.failing && !n.has_slots)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 1700000000000 2 connected 5461-10922
c3 127.0.0.1:7002@17002,host master,fail - 1 1700000000000 3 disconnected
d4 127.0.0.1:7003@17003 slave a1 0 1700000000000 1 connected
";

    #[test]
    fn parses_flags_links_and_slots() {
        let nodes = parse_nodes(NODES);
        assert_eq!(nodes.len(), 4);
        assert_eq!(
            nodes[0],
            NodeLine {
                port: 7000,
                master: true,
                failing: false,
                connected: true,
                has_slots: true
            }
        );
        assert!(nodes[2].failing && !nodes[2].connected && !nodes[2].has_slots);
        assert_eq!(nodes[2].port, 7002);
        assert!(!nodes[3].master && !nodes[3].has_slots);
    }

    #[test]
    fn a_failing_node_or_missing_master_is_unhealthy() {
        assert!(view_is_healthy(&parse_nodes(NODES), 4).is_err());
        let healthy = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191
b2 127.0.0.1:7001@17001 master - 0 1 2 connected 8192-16383
c3 127.0.0.1:7002@17002 slave a1 0 1 1 connected
d4 127.0.0.1:7003@17003 slave b2 0 1 2 connected
";
        assert_eq!(view_is_healthy(&parse_nodes(healthy), 4), Ok(()));
        assert!(view_is_healthy(&parse_nodes(healthy), 6).is_err());
    }
}
