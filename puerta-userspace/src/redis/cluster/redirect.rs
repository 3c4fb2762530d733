//! Reading cluster error replies that are instructions for the proxy rather than answers for the
//! client: MOVED, ASK, TRYAGAIN, CLUSTERDOWN.

use std::sync::Arc;

use crate::redis::resp::Frame;

#[derive(Debug, PartialEq, Eq)]
pub enum Redirect {
    /// The slot moved for good: update the map and retry there.
    Moved { slot: u16, addr: Arc<str> },
    /// The key is being migrated: retry once on `addr` after ASKING, without touching the map.
    Ask { slot: u16, addr: Arc<str> },
    /// Multi-key command during a migration with keys split between nodes: retry shortly.
    TryAgain,
    /// The cluster is failing over or missing slots: refresh and retry shortly.
    ClusterDown,
}

/// Classifies `reply` from `node` (whose host fills in an empty host in the redirect target).
pub fn classify(reply: &Frame, node: &str) -> Option<Redirect> {
    let Frame::Error(text) = reply else {
        return None;
    };
    classify_error(text, node)
}

/// Like [`classify`], for the wire bytes of a reply: only an error reply (`-`) is looked at, and only
/// its first line, so a reply passed through costs one byte comparison.
pub fn classify_wire(reply: &[u8], node: &str) -> Option<Redirect> {
    let text = reply.strip_prefix(b"-")?;
    classify_error(text.strip_suffix(b"\r\n").unwrap_or(text), node)
}

fn classify_error(text: &[u8], node: &str) -> Option<Redirect> {
    let text = std::str::from_utf8(text).ok()?;
    let mut words = text.split(' ');
    match words.next()? {
        "MOVED" | "ASK" => {
            let slot = words.next()?.parse().ok()?;
            let addr = target_address(words.next()?, node)?;
            if text.starts_with("MOVED") {
                Some(Redirect::Moved { slot, addr })
            } else {
                Some(Redirect::Ask { slot, addr })
            }
        }
        "TRYAGAIN" => Some(Redirect::TryAgain),
        "CLUSTERDOWN" => Some(Redirect::ClusterDown),
        _ => None,
    }
}

/// `host:port`; an empty host (`:6380`) means "the host of the node that answered".
fn target_address(target: &str, node: &str) -> Option<Arc<str>> {
    let (host, port) = target.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    if !host.is_empty() {
        return Some(target.into());
    }
    let (node_host, _) = node.rsplit_once(':')?;
    Some(format!("{node_host}:{port}").into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn err(s: &'static str) -> Frame {
        Frame::Error(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn reads_redirects() {
        assert_eq!(
            classify(&err("MOVED 3999 127.0.0.1:6381"), "127.0.0.1:6380"),
            Some(Redirect::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            classify(&err("ASK 12 10.0.0.2:7000"), "x:1"),
            Some(Redirect::Ask {
                slot: 12,
                addr: "10.0.0.2:7000".into()
            })
        );
        assert_eq!(
            classify(&err("MOVED 1 :7002"), "10.1.1.1:7000"),
            Some(Redirect::Moved {
                slot: 1,
                addr: "10.1.1.1:7002".into()
            })
        );
        assert_eq!(
            classify(
                &err("TRYAGAIN Multiple keys request during rehashing of slot"),
                "x:1"
            ),
            Some(Redirect::TryAgain)
        );
        assert_eq!(
            classify(&err("CLUSTERDOWN The cluster is down"), "x:1"),
            Some(Redirect::ClusterDown)
        );
    }

    #[test]
    fn reads_redirects_from_wire_bytes() {
        assert_eq!(
            classify_wire(b"-MOVED 3999 127.0.0.1:6381\r\n", "x:1"),
            Some(Redirect::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            classify_wire(b"-TRYAGAIN x\r\n", "x:1"),
            Some(Redirect::TryAgain)
        );
        assert_eq!(classify_wire(b"$5\r\nMOVED\r\n", "x:1"), None);
        assert_eq!(classify_wire(b"-ERR MOVED\r\n", "x:1"), None);
    }

    #[test]
    fn leaves_other_replies_alone() {
        assert_eq!(classify(&err("ERR unknown command"), "x:1"), None);
        assert_eq!(classify(&err("MOVED nonsense"), "x:1"), None);
        assert_eq!(
            classify(&Frame::Simple(Bytes::from_static(b"MOVED 1 a:1")), "x:1"),
            None
        );
    }
}
