//! Fixtures for the kernel data path tests: a pin dir per test, a `forwarding = "kernel"` Puerta in
//! front of given backends, its shutdown log, and the pinned maps as bpftool sees them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{free_port, loopback, Puerta};

/// A pin dir of its own per test (tests run in parallel), removed afterwards.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new(tag: &str) -> PinDir {
        PinDir(PathBuf::from(format!(
            "/sys/fs/bpf/puerta-test-{tag}-{}-{}",
            std::process::id(),
            free_port()
        )))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn config(
    listen: SocketAddr,
    backends: &[SocketAddr],
    forwarding: &str,
    pins: &Path,
) -> String {
    let endpoints: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        r#"mode = "mongodb"
listen_addr = "{listen}"
max_connections = 30000
drain_timeout_sec = 5

[mongodb]
mongos_endpoints = [{}]
session_affinity_enabled = true
session_timeout_sec = 1
health_check_interval_sec = 1
forwarding = "{forwarding}"
bpf_pin_dir = "{}"
"#,
        endpoints.join(", "),
        pins.display()
    )
}

pub async fn start(
    backends: &[SocketAddr],
    forwarding: &str,
    pins: &PinDir,
) -> anyhow::Result<Puerta> {
    let listen = loopback(free_port());
    let cfg = config(listen, backends, forwarding, &pins.0);
    tokio::task::block_in_place(|| {
        Puerta::start_with(&cfg, listen, |cmd| {
            cmd.env("NO_COLOR", "1");
        })
    })
}

/// SIGTERM, wait for a clean exit, return everything it logged.
pub fn stop(mut puerta: Puerta) -> anyhow::Result<String> {
    puerta.process.signal("TERM");
    let code = puerta.process.wait_exit(Duration::from_secs(20))?;
    anyhow::ensure!(
        code == Some(0),
        "puerta exited with {code:?}:\n{}",
        puerta.process.output()
    );
    Ok(puerta.process.output())
}

/// The shutdown totals of a kernel-mode Puerta show every flow was spliced (no payload byte through
/// userspace) and torn down (no PEERS entry left).
pub fn assert_spliced_and_clean(log: &str) {
    assert_eq!(
        logged_u64(log, "kernel path totals", "peer_entries"),
        Some(0),
        "PEERS entries left:\n{log}"
    );
    assert_eq!(
        logged_u64(log, "mongodb mode totals", "userspace_bytes"),
        Some(0),
        "spliced, not forwarded in userspace:\n{log}"
    );
}

/// `key=value` from the last log line containing `line`.
pub fn logged_u64(output: &str, line: &str, key: &str) -> Option<u64> {
    let l = output.lines().rev().find(|l| l.contains(line))?;
    let at = l.find(&format!("{key}="))? + key.len() + 1;
    l[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

pub async fn wait_for(
    what: &str,
    mut cond: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if cond()? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: not reached within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kernel id of the map pinned at `path`, or None if nothing is pinned there.
pub fn pinned_map_id(path: &Path) -> anyhow::Result<Option<u64>> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "show", "pinned"])
        .arg(path)
        .output()?;
    if !out.status.success() {
        return Ok(None);
    }
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(info["id"].as_u64())
}
