//! What a process's descriptors are, so that a leak test can say *which* descriptors stayed, not only
//! how many: a socket is named by its TCP endpoints and state (from `/proc/PID/net/tcp*`), anything
//! else by its link target (`pipe`, `anon_inode:[eventpoll]`, `anon_inode:bpf-map`, a path).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A process's open descriptors at one moment, counted by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fds {
    pub total: usize,
    kinds: BTreeMap<String, usize>,
}

impl Fds {
    pub fn of(pid: u32) -> anyhow::Result<Fds> {
        let sockets = tcp_sockets(pid);
        let mut kinds = BTreeMap::new();
        let mut total = 0;
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
            // A descriptor closed between the listing and the readlink is simply not counted.
            let Ok(target) = std::fs::read_link(entry?.path()) else {
                continue;
            };
            let kind = kind_of(&target.to_string_lossy(), &sockets);
            *kinds.entry(kind).or_insert(0) += 1;
            total += 1;
        }
        Ok(Fds { total, kinds })
    }

    /// The fewest descriptors over 1.5 s, longer than the tests' 1 s health-check interval (health
    /// checks and probes open sockets briefly), with what they were at that moment.
    pub async fn quiet(pid: u32) -> anyhow::Result<Fds> {
        let until = Instant::now() + Duration::from_millis(1500);
        let mut least = Fds::of(pid)?;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = Fds::of(pid)?;
            if now.total < least.total {
                least = now;
            }
        }
        Ok(least)
    }

    /// Waits up to `patience` for the count to fall to `baseline`'s; the error names every kind of
    /// descriptor there is more of than in the baseline.
    pub async fn wait_back_to(pid: u32, baseline: &Fds, patience: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            let now = Fds::of(pid)?;
            if now.total <= baseline.total {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "puerta holds {} descriptors after {patience:?}, {} before; more than before: {}",
                now.total,
                baseline.total,
                now.more_than(baseline)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn more_than(&self, baseline: &Fds) -> String {
        let extra: Vec<String> = self
            .kinds
            .iter()
            .filter_map(|(kind, &n)| {
                let before = baseline.kinds.get(kind).copied().unwrap_or(0);
                (n > before).then(|| format!("{} × {kind}", n - before))
            })
            .collect();
        extra.join("; ")
    }
}

/// A descriptor's kind: sockets by endpoints and state, pipes and sockets of other families without
/// their inode (they would all differ), everything else by its target.
fn kind_of(target: &str, tcp: &HashMap<String, String>) -> String {
    if let Some(inode) = target
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
    {
        return match tcp.get(inode) {
            Some(tcp) => tcp.clone(),
            None => "socket (not TCP)".to_string(),
        };
    }
    if target.starts_with("pipe:") {
        return "pipe".to_string();
    }
    target.to_string()
}

/// The process's TCP sockets by inode, each as `tcp LOCAL -> REMOTE STATE`. A listener's and a
/// connected socket's remote differ, so a leaked pair shows which peer it was for.
fn tcp_sockets(pid: u32) -> HashMap<String, String> {
    let mut sockets = HashMap::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 {
                continue;
            }
            let state = tcp_state(cols[3]);
            sockets.insert(
                cols[9].to_string(),
                format!("tcp {} -> {} {state}", endpoint(cols[1]), endpoint(cols[2])),
            );
        }
    }
    sockets
}

/// `0100007F:1F90` (IPv4, host order hex) as `127.0.0.1:8080`; other forms as they are.
fn endpoint(hex: &str) -> String {
    let Some((ip, port)) = hex.split_once(':') else {
        return hex.to_string();
    };
    let port = u16::from_str_radix(port, 16).unwrap_or(0);
    match u32::from_str_radix(ip, 16) {
        Ok(ip) if ip_is_v4(hex) => {
            format!("{}:{port}", std::net::Ipv4Addr::from(ip.swap_bytes()))
        }
        _ => format!("{ip}:{port}"),
    }
}

fn ip_is_v4(hex: &str) -> bool {
    hex.find(':') == Some(8)
}

fn tcp_state(hex: &str) -> &'static str {
    match hex {
        "01" => "ESTABLISHED",
        "02" => "SYN_SENT",
        "03" => "SYN_RECV",
        "04" => "FIN_WAIT1",
        "05" => "FIN_WAIT2",
        "06" => "TIME_WAIT",
        "07" => "CLOSE",
        "08" => "CLOSE_WAIT",
        "09" => "LAST_ACK",
        "0A" => "LISTEN",
        "0B" => "CLOSING",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_endpoints_read_in_host_order() {
        assert_eq!(endpoint("0100007F:1F90"), "127.0.0.1:8080");
    }

    #[tokio::test]
    async fn a_socket_left_open_is_named_with_its_peer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let pid = std::process::id();
        let before = Fds::of(pid).unwrap();
        let _kept = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let err = Fds::wait_back_to(pid, &before, Duration::from_millis(100))
            .await
            .unwrap_err()
            .to_string();
        let peer = format!("-> {} ESTABLISHED", listener.local_addr().unwrap());
        assert!(err.contains(&peer), "{err}");
    }
}
