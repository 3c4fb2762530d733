//! A server or client process started by a test or by xtask, never left running: stopped when
//! dropped, whatever way the caller ends. Its output is either kept in memory line by line
//! ([`Process::captured`]: tests assert on it) or appended to a log file ([`Process::logged`]:
//! xtask's demo, bench and soak keep the logs of long runs and of restarted servers).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub struct Process {
    pub name: String,
    child: Option<Child>,
    output: Output,
}

enum Output {
    /// Every line of stdout and stderr; dropping the process kills it (SIGKILL).
    Captured(Arc<Mutex<Vec<String>>>),
    /// Appended to this file; dropping the process stops it (SIGTERM, then SIGKILL after 3 s).
    Logged(PathBuf),
}

impl Process {
    /// Starts `cmd` with stdout and stderr captured in memory (and echoed to stderr with
    /// `PUERTA_TEST_ECHO` set).
    pub fn captured(name: &str, mut cmd: Command) -> anyhow::Result<Process> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {name} ({cmd:?}): {e}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            collect_lines(name, out, lines.clone());
        }
        if let Some(err) = child.stderr.take() {
            collect_lines(name, err, lines.clone());
        }
        Ok(Process {
            name: name.to_string(),
            child: Some(child),
            output: Output::Captured(lines),
        })
    }

    /// Starts `cmd` in its own process group (so a terminal Ctrl-C reaches only the caller, which
    /// then stops its servers in order) with stdout and stderr appended to `log`. If the caller is
    /// killed, the kernel kills the process too (PR_SET_PDEATHSIG).
    pub fn logged(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Process> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        Ok(Process {
            name: name.to_string(),
            child: Some(child),
            output: Output::Logged(log.to_path_buf()),
        })
    }

    /// 0 once reaped.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The log file of a [`Process::logged`] one.
    pub fn log_path(&self) -> Option<&Path> {
        match &self.output {
            Output::Logged(path) => Some(path),
            Output::Captured(_) => None,
        }
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        match &self.output {
            Output::Captured(lines) => lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n"),
            Output::Logged(path) => std::fs::read_to_string(path).unwrap_or_default(),
        }
    }

    /// The last `lines` lines of the output, for error messages.
    pub fn output_tail(&self, lines: usize) -> String {
        let text = self.output();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
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

    /// Sends `signal` (e.g. `"TERM"`, `"HUP"`) without waiting.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// None while running; the exit description once it has stopped.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// Fails with the output's tail if the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "{} exited ({status}){}; last output lines:\n{}",
                self.name,
                self.log_path()
                    .map(|p| format!(", log {}", p.display()))
                    .unwrap_or_default(),
                self.output_tail(15)
            ),
        }
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
        stop_file: &Path,
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

    /// Sends SIGTERM without waiting, so that a group of servers can shut down in parallel.
    pub fn terminate(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            }
        }
    }

    /// SIGKILL and reap at once: a crash as an operator would see it (no graceful shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; always reaps.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        if matches!(child.try_wait(), Ok(None)) {
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Stops a group of processes in parallel: SIGTERM to all, then each is waited for (and killed if
/// needed).
pub fn stop_all(procs: &mut [Process]) {
    procs.iter_mut().for_each(Process::terminate);
    for p in procs {
        p.stop(Duration::from_secs(3));
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        match self.output {
            Output::Captured(_) => self.kill(),
            Output::Logged(_) => self.stop(Duration::from_secs(3)),
        }
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
