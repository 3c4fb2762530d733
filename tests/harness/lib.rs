//! Shared test harness: free loopback ports, child processes that are always killed, and the paths of
//! the binaries and Python clients the tests drive.
//!
//! Binaries and clients are found through environment variables that `cargo xtask test` sets, with
//! fallbacks that work after a plain `cargo build` in this workspace:
//! - `PUERTA_BIN`: the daemon (default `target/debug/puerta`).
//! - `PUERTA_PYTHON`: a Python with pymongo, redis, secantusdb, mockupdb (default `target/venv/bin/python`).

pub mod fake_mongos;
pub mod fake_redis;
pub mod http;
pub mod kernel;
pub mod mongo;
pub mod mongo_echo;
pub mod pairs;
pub mod proxied_cluster;
pub mod redis_cluster;
pub mod resp_client;
pub mod stream;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

pub use testkit::{free_port, loopback, wait_for_port};

/// A child process that is killed (SIGKILL) and reaped when dropped, so a failing test never leaks
/// servers. Its stderr/stdout are captured line by line for assertions on log output.
pub struct ChildGuard {
    pub name: String,
    child: Option<Child>,
    output: Arc<Mutex<Vec<String>>>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr captured.
    pub fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<ChildGuard> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {name} ({cmd:?}): {e}"))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            collect_lines(name, out, output.clone());
        }
        if let Some(err) = child.stderr.take() {
            collect_lines(name, err, output.clone());
        }
        Ok(ChildGuard {
            name: name.to_string(),
            child: Some(child),
            output,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Waits until the output contains `needle`.
    pub fn wait_for_output(&self, needle: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!(
            "{} did not print {needle:?} within {within:?}; output:\n{}",
            self.name,
            self.output()
        )
    }

    /// Sends `signal` (e.g. `"TERM"`) without waiting.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Waits for the process to exit and returns its exit code (None if killed by a signal).
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<Option<i32>> {
        let deadline = Instant::now() + within;
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("already reaped"))?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                anyhow::bail!("{} still running after {within:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Tells a client script to finish (it watches for `stop_file`), waits for it, and checks that
    /// it exited 0 having printed `ok_line`; its output, or an error with `context()` (the proxy's
    /// log, say) appended.
    pub fn finish(
        &mut self,
        stop_file: &std::path::Path,
        ok_line: &str,
        within: Duration,
        context: impl FnOnce() -> String,
    ) -> anyhow::Result<String> {
        std::fs::write(stop_file, b"stop")?;
        let code = self.wait_exit(within)?;
        let output = self.output();
        if code != Some(0) || !output.contains(ok_line) {
            anyhow::bail!("{} failed ({code:?}):\n{output}\n{}", self.name, context());
        }
        Ok(output)
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn collect_lines(
    name: &str,
    stream: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
) {
    let echo = std::env::var_os("PUERTA_TEST_ECHO").is_some();
    let name = name.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if echo {
                eprintln!("[{name}] {line}");
            }
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
}

/// A running `puerta` with its config in a temp dir.
pub struct Puerta {
    pub process: ChildGuard,
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
        let process = ChildGuard::spawn("puerta", cmd)?;
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
