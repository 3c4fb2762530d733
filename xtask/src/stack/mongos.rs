//! Three (or N) `secantusd-py` servers: MongoDB-wire-protocol stand-ins for mongos routers. They do not
//! share data, which makes session affinity visible: a client's documents live on exactly one of them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::net::{loopback, wait_for_port};
use super::process::{stop_all, Proc};
use crate::paths;

pub struct MongosStandIns {
    procs: Vec<Proc>,
}

impl MongosStandIns {
    /// Starts one server per port (logs in `dir`) and waits until all accept connections.
    pub fn start(ports: &[u16], dir: &Path) -> anyhow::Result<MongosStandIns> {
        let mut procs = Vec::new();
        for &port in ports {
            let mut cmd = Command::new(paths::venv_bin("secantusd-py"));
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--storage-path", ":memory:", "--standalone"]);
            let log = dir.join(format!("secantusd-{port}.log"));
            procs.push(Proc::spawn(&format!("secantusd-py :{port}"), cmd, &log)?);
        }
        for (proc, &port) in procs.iter_mut().zip(ports) {
            wait_for_port(loopback(port), proc, Duration::from_secs(30))?;
        }
        Ok(MongosStandIns { procs })
    }

    /// Fails if any server has died.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.procs.iter_mut().try_for_each(Proc::ensure_running)
    }
}

impl Drop for MongosStandIns {
    fn drop(&mut self) {
        stop_all(&mut self.procs);
    }
}
