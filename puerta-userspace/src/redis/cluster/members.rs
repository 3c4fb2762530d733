//! Every node of the cluster, from `CLUSTER NODES`. `CLUSTER SLOTS` (the slot map) leaves out replicas
//! that have not yet reported a replication offset, such as one that has just joined; a change meant
//! for every node (CONFIG SET, SCRIPT FLUSH) must reach those too, or a later failover promotes a node
//! that never got it.

use std::sync::Arc;

/// The addresses in a `CLUSTER NODES` answer, leaving out nodes the cluster has marked failed, is still
/// meeting, or knows no address for. `queried_host` replaces the empty IP a node may report for itself.
pub fn parse_cluster_nodes(text: &str, queried_host: &str) -> Vec<Arc<str>> {
    text.lines()
        .filter_map(|line| member(line, queried_host))
        .collect()
}

fn member(line: &str, queried_host: &str) -> Option<Arc<str>> {
    let mut fields = line.split_whitespace();
    let (_id, address, flags) = (fields.next()?, fields.next()?, fields.next()?);
    let unusable = flags
        .split(',')
        .any(|flag| matches!(flag, "fail" | "handshake" | "noaddr"));
    if unusable {
        return None;
    }
    // ip:port@cport[,hostname]
    let endpoint = address.split(['@', ',']).next()?;
    let (ip, port) = endpoint.rsplit_once(':')?;
    port.parse::<u16>().ok().filter(|&p| p != 0)?;
    let ip = if ip.is_empty() { queried_host } else { ip };
    Some(format!("{ip}:{port}").into())
}

/// `known` (the slot map's nodes, masters first) followed by the members it does not hold yet.
pub fn with_members(mut known: Vec<Arc<str>>, members: Vec<Arc<str>>) -> Vec<Arc<str>> {
    for member in members {
        if !known.contains(&member) {
            known.push(member);
        }
    }
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002,host-b master - 0 1426238316232 2 connected 5461-10922
292f :30003@40003 myself,master - 0 0 3 connected 10923-16383
6ec2 127.0.0.1:30005@40005 slave,fail 67ed 0 1426238316232 5 connected
824f 127.0.0.1:30006@40006 handshake - 0 0 0 disconnected
9a1b :0@0 noaddr - 0 0 0 disconnected
e7d1 127.0.0.1:30001@40001 master,fail? - 0 1426238317741 1 connected 0-5460
";

    #[test]
    fn lists_reachable_members_and_fills_in_the_queried_host() {
        let members: Vec<String> = parse_cluster_nodes(NODES, "10.0.0.3")
            .iter()
            .map(|m| m.to_string())
            .collect();
        assert_eq!(
            members,
            [
                "127.0.0.1:30004",
                "127.0.0.1:30002",
                "10.0.0.3:30003",
                "127.0.0.1:30001"
            ]
        );
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(parse_cluster_nodes("x\n\nid nocolon master\nid a:b master\n", "h").is_empty());
    }

    #[test]
    fn members_missing_from_the_map_come_after_it() {
        let known: Vec<Arc<str>> = vec!["m:1".into(), "r:2".into()];
        let members: Vec<Arc<str>> = vec!["r:2".into(), "new:3".into(), "m:1".into()];
        let all = with_members(known, members);
        let all: Vec<&str> = all.iter().map(|a| &**a).collect();
        assert_eq!(all, ["m:1", "r:2", "new:3"]);
    }
}
