//! Three (or N) `secantusd-py` servers: MongoDB-wire-protocol stand-ins for mongos routers. They do not
//! share data, which makes session affinity visible: a client's documents live on exactly one of them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::{loopback, wait_for_port};
use crate::paths;
use testkit::process::{stop_all, Process};

pub struct MongosStandIns {
    dir: PathBuf,
    servers: Vec<Server>,
}

struct Server {
    port: u16,
    /// `None` while killed on purpose (soak), so that it is not reported as dead.
    proc: Option<Process>,
    restarts: usize,
}

impl MongosStandIns {
    /// Starts one server per port (logs in `dir`) and waits until all accept connections.
    pub fn start(ports: &[u16], dir: &Path) -> anyhow::Result<MongosStandIns> {
        let mut servers = Vec::new();
        for &port in ports {
            servers.push(Server {
                port,
                proc: Some(spawn(dir, port, 0)?),
                restarts: 0,
            });
        }
        for s in &mut servers {
            if let Some(proc) = s.proc.as_mut() {
                wait_for_port(loopback(s.port), proc, Duration::from_secs(30))?;
            }
        }
        Ok(MongosStandIns {
            dir: dir.to_path_buf(),
            servers,
        })
    }

    pub fn ports(&self) -> Vec<u16> {
        self.servers.iter().map(|s| s.port).collect()
    }

    /// SIGKILLs the server on `port`, as a crashed mongos.
    pub fn kill(&mut self, port: u16) {
        if let Some(mut proc) = self.server(port).and_then(|s| s.proc.take()) {
            proc.kill();
        }
    }

    /// Starts the killed server on `port` again (empty: storage is in memory) and waits until it
    /// accepts connections.
    pub fn restart(&mut self, port: u16) -> anyhow::Result<()> {
        let dir = self.dir.clone();
        let server = self
            .server(port)
            .ok_or_else(|| anyhow::anyhow!("no stand-in on port {port}"))?;
        if server.proc.is_some() {
            return Ok(());
        }
        server.restarts += 1;
        let mut proc = spawn(&dir, port, server.restarts)?;
        wait_for_port(loopback(port), &mut proc, Duration::from_secs(30))?;
        server.proc = Some(proc);
        Ok(())
    }

    /// Fails if any server has died (other than one killed on purpose).
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.servers
            .iter_mut()
            .filter_map(|s| s.proc.as_mut())
            .try_for_each(Process::ensure_running)
    }

    fn server(&mut self, port: u16) -> Option<&mut Server> {
        self.servers.iter_mut().find(|s| s.port == port)
    }
}

/// A restarted server logs to a file of its own, so the killed one's last words stay readable.
fn spawn(dir: &Path, port: u16, restarts: usize) -> anyhow::Result<Process> {
    let mut cmd = Command::new(paths::venv_bin("secantusd-py"));
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--storage-path", ":memory:", "--standalone"]);
    let log = match restarts {
        0 => dir.join(format!("secantusd-{port}.log")),
        n => dir.join(format!("secantusd-{port}-restart{n}.log")),
    };
    Process::logged(&format!("secantusd-py :{port}"), cmd, &log)
}

impl Drop for MongosStandIns {
    fn drop(&mut self) {
        let mut procs: Vec<Process> = self.servers.drain(..).filter_map(|s| s.proc).collect();
        stop_all(&mut procs);
    }
}
