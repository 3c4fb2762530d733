//! Loopback ports for the servers we start.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::interrupt;
use testkit::process::Process;

pub use testkit::loopback;

/// A free loopback port (with its cluster bus port) below the ephemeral range (see `testkit`).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(testkit::free_port())
}

/// `wanted` if every port in it (and its +10000 bus port when `with_bus`) is free, else fresh free ports.
pub fn ports_or_free(wanted: &[u16], with_bus: bool) -> anyhow::Result<Vec<u16>> {
    let free = |p: u16| TcpListener::bind(loopback(p)).is_ok();
    let all_free = wanted
        .iter()
        .all(|&p| free(p) && (!with_bus || p.checked_add(10_000).is_some_and(free)));
    if all_free {
        return Ok(wanted.to_vec());
    }
    wanted.iter().map(|_| free_port()).collect()
}

/// Waits until `addr` accepts connections, failing early if `proc` exits or Ctrl-C is pressed.
pub fn wait_for_port(addr: SocketAddr, proc: &mut Process, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        interrupt::check()?;
        proc.ensure_running()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{} is not listening on {addr} after {within:?}; last log lines:\n{}",
                proc.name,
                proc.output_tail(15)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
