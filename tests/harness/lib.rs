//! Shared test harness: free loopback ports, child processes that are always killed, and the paths of
//! the binaries and Python clients the tests drive.
//!
//! Binaries and clients are found through environment variables that `cargo xtask test` sets, with
//! fallbacks that work after a plain `cargo build` in this workspace:
//! - `PUERTA_BIN`: the daemon (default `target/debug/puerta`).
//! - `PUERTA_PYTHON`: a Python with pymongo, redis, secantusdb, mockupdb (default `target/venv/bin/python`).

pub mod accept;
pub mod fake_mongos;
pub mod fake_redis;
pub mod fds;
pub mod http;
pub mod kernel;
pub mod memory;
pub mod mongo;
pub mod mongo_echo;
pub mod pairs;
pub mod proxied_cluster;
pub mod redis_cluster;
pub mod resp_client;
pub mod stream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

/// The `puerta` daemon under test.
pub fn puerta_bin() -> PathBuf {
    std::env::var_os("PUERTA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/puerta"))
}

/// The Python interpreter of the test venv (pymongo, redis, secantusdb, mockupdb).
pub fn python() -> PathBuf {
    std::env::var_os("PUERTA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/venv/bin/python"))
}

/// A script under `tests/py/`.
pub fn py_script(name: &str) -> PathBuf {
    workspace_root().join("tests/py").join(name)
}

pub use testkit::process::Process;
pub use testkit::{free_port, loopback, wait_for_port};

/// A running `puerta` with its config in a temp dir.
pub struct Puerta {
    pub process: Process,
    pub listen: SocketAddr,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Puerta {
    /// Writes `config` (TOML) to a temp file and starts `puerta --config` on it; waits until `listen`
    /// accepts connections. `RUST_LOG` defaults to `info` unless the caller's environment sets it.
    pub fn start(config: &str, listen: SocketAddr) -> anyhow::Result<Puerta> {
        Self::start_with(config, listen, |_| {})
    }

    /// Like [`Puerta::start`], with a hook to adjust the command (env, capsh wrapper, ...).
    pub fn start_with(
        config: &str,
        listen: SocketAddr,
        adjust: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Puerta> {
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("puerta.toml");
        std::fs::write(&config_path, config)?;
        let mut cmd = Command::new(puerta_bin());
        cmd.arg("--config").arg(&config_path);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        adjust(&mut cmd);
        let process = Process::captured("puerta", cmd)?;
        if let Err(e) = wait_for_port(listen, Duration::from_secs(15)) {
            anyhow::bail!("{e}; puerta output:\n{}", process.output());
        }
        Ok(Puerta {
            process,
            listen,
            config_path,
            _dir: dir,
        })
    }
}
