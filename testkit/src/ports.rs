//! Ports for the servers the tests and demos start. A port is picked, checked free, and bound
//! later by another process; in the kernel's ephemeral range (32768–60999 here) an outgoing
//! connection can take it in between, and the server then fails to start. So ports come from below
//! that range, where the kernel never picks one by itself: 10000–17999, each with room for its Redis
//! cluster bus port (+10000, so 20000–27999, also below it).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FIRST: u16 = 10_000;
const COUNT: u16 = 8_000;
/// Redis Cluster's bus port is the client port + 10000.
const BUS_OFFSET: u16 = 10_000;

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A port free on 127.0.0.1 a moment ago whose bus port (+10000) is free too, never handed out
/// twice by this process. Processes start their search at different places (by process id), so
/// test binaries and demos running side by side rarely even look at the same ports.
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let start = (std::process::id() % u32::from(COUNT)) as u16;
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let skip = taken.len() as u16;
    for i in 0..COUNT {
        let port = FIRST + (start + skip + i) % COUNT;
        if taken.contains(&port) {
            continue;
        }
        let free = |p: u16| TcpListener::bind(loopback(p)).is_ok();
        if free(port) && free(port + BUS_OFFSET) {
            taken.push(port);
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}–{}", FIRST + COUNT - 1);
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("nothing listening on {addr} after {within:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_with_their_bus_ports_and_never_repeat() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        for &port in &ports {
            assert!((FIRST..FIRST + COUNT).contains(&port), "{port}");
            assert!(port + BUS_OFFSET < 32_768, "{port}");
            assert!(
                TcpListener::bind(loopback(port)).is_ok(),
                "{port} still free"
            );
        }
        let mut unique = ports.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }
}
