//! Running external commands with one clear line of what is happening and a loud error when it fails.

use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// Prints `==> what`, runs `cmd` with inherited stdio, and fails naming `what` if it exits non-zero.
pub fn run(what: &str, cmd: &mut Command) -> anyhow::Result<()> {
    step(what);
    let status = cmd
        .status()
        .with_context(|| format!("{what}: cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status}): {cmd:?}");
    }
    Ok(())
}

/// True when `cmd` runs and exits 0; its output is discarded. For "is this already installed" probes.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs `cmd` and returns its stdout; fails with its stderr when it exits non-zero.
pub fn output(what: &str, cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn step(what: &str) {
    eprintln!("==> {what}");
}
