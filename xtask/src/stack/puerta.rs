//! The `puerta` daemon as demo and bench run it: release build, config written to a temp dir and
//! validated with `--check` first (so a config mistake is reported as such), then started.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::wait_for_port;
use crate::{cmd, paths};
use testkit::process::Process;

/// `cargo build --release -p puerta-userspace`; cargo makes it a no-op when nothing changed.
pub fn build_release() -> anyhow::Result<PathBuf> {
    cmd::run(
        "cargo build --release -p puerta-userspace",
        Command::new(paths::cargo()).args(["build", "--release", "-p", "puerta-userspace"]),
    )?;
    Ok(paths::puerta_release())
}

pub struct Puerta {
    pub listen: SocketAddr,
    pub config_path: PathBuf,
    pub proc: Process,
}

impl Puerta {
    /// Writes `config` to `dir/<name>.toml`, checks it, starts the daemon and waits for `listen`.
    pub fn start(
        name: &str,
        config: &str,
        listen: SocketAddr,
        dir: &Path,
    ) -> anyhow::Result<Puerta> {
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config)?;
        let bin = paths::puerta_release();
        let check = Command::new(&bin)
            .arg("--check")
            .arg("--config")
            .arg(&config_path)
            .output()?;
        if !check.status.success() {
            anyhow::bail!(
                "{name}: puerta --check rejected {} ({}): {}",
                config_path.display(),
                check.status,
                String::from_utf8_lossy(&check.stderr).trim()
            );
        }
        let mut cmd = Command::new(&bin);
        // Plain text in the log file, not terminal colours.
        cmd.arg("--config").arg(&config_path).env("NO_COLOR", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let mut proc = Process::logged(name, cmd, &dir.join(format!("{name}.log")))?;
        wait_for_port(listen, &mut proc, Duration::from_secs(15))?;
        Ok(Puerta {
            listen,
            config_path,
            proc,
        })
    }
}
