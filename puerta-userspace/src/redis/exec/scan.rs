//! Cluster-wide SCAN: the masters are walked one after another (sorted by address), and the cursor the
//! client sees carries both the master's index and that master's own cursor:
//! `client cursor = node cursor * 1024 + node index`. Cursor 0 starts at the first master and is
//! returned after the last one. Like SCAN itself, keys present for the whole scan are returned at least
//! once; a topology change during the scan may repeat or (for slots that moved) miss keys.

use std::sync::Arc;

use bytes::Bytes;

use crate::redis::cluster::Cluster;
use crate::redis::command::Command;
use crate::redis::exec::broadcast::call_node;
use crate::redis::node::pool::Lane;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

const MAX_NODES: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub node: usize,
    pub node_cursor: u64,
}

pub fn decode(text: &[u8]) -> Option<Cursor> {
    let value: u64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    Some(Cursor {
        node: (value % MAX_NODES) as usize,
        node_cursor: value / MAX_NODES,
    })
}

/// `None` if the node cursor is too large to carry (a node table far beyond any real size).
pub fn encode(cursor: Cursor) -> Option<u64> {
    cursor
        .node_cursor
        .checked_mul(MAX_NODES)?
        .checked_add(cursor.node as u64)
}

/// The client cursor after `node` answered `node_next`: the same node while it has more, else the
/// start of the next node, else 0 (done).
pub fn next(node: usize, node_next: u64, nodes: usize) -> Option<u64> {
    if node_next != 0 {
        return encode(Cursor {
            node,
            node_cursor: node_next,
        });
    }
    if node + 1 < nodes {
        return encode(Cursor {
            node: node + 1,
            node_cursor: 0,
        });
    }
    Some(0)
}

pub async fn scan(cluster: Arc<Cluster>, cmd: Command, lane: Lane) -> Frame {
    let Some(cursor) = decode(&cmd.args()[1]) else {
        return wire::error("ERR invalid cursor");
    };
    let masters = cluster.masters();
    if masters.len() as u64 > MAX_NODES {
        return wire::error("ERR Puerta: SCAN supports at most 1024 masters");
    }
    let Some(addr) = masters.get(cursor.node) else {
        return wire::error(
            "ERR invalid cursor (the cluster has fewer masters than this cursor names)",
        );
    };
    let mut args: Vec<Bytes> = cmd.args().to_vec();
    args[1] = Bytes::from(cursor.node_cursor.to_string());
    let reply = call_node(&cluster, addr, wire::command_bytes(&args), lane).await;
    let Frame::Array(mut parts) = reply else {
        return reply;
    };
    if parts.len() != 2 {
        return wire::error("ERR Puerta: unexpected SCAN reply from a node");
    }
    let keys = parts.pop().unwrap_or(Frame::Array(Vec::new()));
    let node_next = match &parts[0] {
        Frame::Bulk(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok()),
        _ => None,
    };
    let Some(node_next) = node_next else {
        return wire::error("ERR Puerta: unexpected SCAN cursor from a node");
    };
    match next(cursor.node, node_next, masters.len()) {
        Some(c) => Frame::Array(vec![wire::bulk(c.to_string()), keys]),
        None => wire::error("ERR Puerta: node cursor too large to encode"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        for (node, node_cursor) in [(0, 0), (1, 0), (2, 17), (1023, 1 << 40)] {
            let c = Cursor { node, node_cursor };
            let text = encode(c).unwrap().to_string();
            assert_eq!(decode(text.as_bytes()), Some(c));
        }
        assert_eq!(
            decode(b"0"),
            Some(Cursor {
                node: 0,
                node_cursor: 0
            })
        );
        assert_eq!(decode(b"-1"), None);
        assert_eq!(decode(b"abc"), None);
        assert_eq!(
            encode(Cursor {
                node: 0,
                node_cursor: u64::MAX
            }),
            None
        );
    }

    #[test]
    fn walks_nodes_in_order_and_ends_with_zero() {
        assert_eq!(next(0, 5, 3), Some(5 * 1024));
        assert_eq!(next(0, 0, 3), Some(1));
        assert_eq!(next(1, 0, 3), Some(2));
        assert_eq!(next(2, 0, 3), Some(0));
        // Only the very end is 0: the start of a later node never is.
        for node in 0..3 {
            for node_next in [0u64, 1, 99] {
                let c = next(node, node_next, 3).unwrap();
                assert_eq!(c == 0, node == 2 && node_next == 0);
            }
        }
    }
}
