//! System calls a process makes while a workload runs, counted by `perf stat` on the
//! `raw_syscalls:sys_enter` tracepoint (every thread of the process). CPU seconds say how much a proxy
//! costs; syscalls per operation say where batching works (one read or write for many commands) and
//! where it does not. Optional: without perf, or where it may not attach, there is simply no count.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use testkit::process::Process;

/// A running `perf stat -p PID`.
pub struct SyscallCount {
    perf: Process,
    out: PathBuf,
}

impl SyscallCount {
    /// Starts counting `pid`'s syscalls, with perf's output under `dir`. Returns once perf has opened
    /// its counters, so the workload started next is counted from its first call. `None` (and one
    /// note on stderr per bench run) when perf is missing or cannot attach.
    pub fn start(pid: u32, dir: &Path) -> Option<SyscallCount> {
        match Self::try_start(pid, dir) {
            Ok(count) => Some(count),
            Err(e) => {
                note(&e);
                None
            }
        }
    }

    fn try_start(pid: u32, dir: &Path) -> anyhow::Result<SyscallCount> {
        let out = dir.join(format!("perf-stat-{pid}.csv"));
        let _ = std::fs::remove_file(&out);
        let mut cmd = Command::new("perf");
        cmd.args(["stat", "-e", "raw_syscalls:sys_enter", "-x,", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&out);
        let mut perf = Process::logged("perf", cmd, &dir.join(format!("perf-{pid}.log")))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !has_perf_event_fd(perf.pid()) {
            perf.ensure_running()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "perf opened no counter within 5 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(SyscallCount { perf, out })
    }

    /// Stops perf the way it prints its counts (SIGINT; SIGTERM would kill it silently) and returns
    /// the number of syscalls since [`SyscallCount::start`].
    pub fn stop(mut self) -> Option<u64> {
        let result = (|| {
            kill(Pid::from_raw(self.perf.pid() as i32), Signal::SIGINT)?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.perf.exited().is_none() {
                anyhow::ensure!(Instant::now() < deadline, "perf did not stop on SIGINT");
                std::thread::sleep(Duration::from_millis(10));
            }
            parse(&std::fs::read_to_string(&self.out)?).ok_or_else(|| {
                anyhow::anyhow!(
                    "no count in perf's output; its log: {}",
                    self.perf.output_tail(3)
                )
            })
        })();
        result.map_err(|e| note(&e)).ok()
    }
}

/// The first thing a bench run must know about a missing column is why; the same reason for every
/// later run would only be noise.
fn note(e: &anyhow::Error) {
    static NOTED: AtomicBool = AtomicBool::new(false);
    if !NOTED.swap(true, Ordering::Relaxed) {
        eprintln!("    syscall counts unavailable: {}", super::short_reason(e));
    }
}

/// Whether `pid` has a perf event open: perf stat opens and enables its counters together, so this is
/// the moment counting starts.
fn has_perf_event_fd(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(Result::ok).any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.as_os_str() == "anon_inode:[perf_event]")
            })
        })
        .unwrap_or(false)
}

/// The count from `perf stat -x,` output (`7360,,raw_syscalls:sys_enter,99762985,100.00,,`);
/// `None` for `<not counted>` / `<not supported>` or no such line.
fn parse(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.contains("raw_syscalls:sys_enter"))
        .and_then(|l| l.split(',').next())
        .and_then(|count| count.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_perf_stat_csv() {
        let text = "# started on Wed Dec  2 20:34:43 2026\n\n\
                    7360,,raw_syscalls:sys_enter,99762985,100.00,,\n";
        assert_eq!(parse(text), Some(7360));
        assert_eq!(
            parse("<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n"),
            None
        );
        assert_eq!(parse(""), None);
    }
}
