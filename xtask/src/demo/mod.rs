//! `cargo xtask demo [mongodb|redis]`: the README's first command. Sets up, builds, starts local
//! backends and Puerta in front of them, shows a real client workload, then stays up until Ctrl-C.
//! Everything it starts lives in guards, so Ctrl-C or any error stops the processes and removes the
//! temp dir.

mod mongodb;
mod redis;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::stack::puerta;
use crate::{cmd, interrupt, paths, setup};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Mode {
    Mongodb,
    Redis,
}

pub fn run(mode: Mode) -> anyhow::Result<()> {
    setup::run_setup()?;
    puerta::build_release()?;
    let dir = tempfile::Builder::new().prefix("puerta-demo-").tempdir()?;
    eprintln!("==> logs and configs in {}", dir.path().display());
    let result = match mode {
        Mode::Mongodb => mongodb::run(dir.path()),
        Mode::Redis => redis::run(dir.path()),
    };
    eprintln!("==> stopped everything; removing {}", dir.path().display());
    result
}

/// A config from `config/` to model the demo's on.
fn template(name: &str) -> anyhow::Result<toml::Table> {
    let path = paths::root().join("config").join(name);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parse {}", path.display()))
}

/// The port of a `host:port` string.
fn port_of(address: &str) -> anyhow::Result<u16> {
    address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("`{address}` is not host:port"))
}

/// Runs a demo client script from `tools/demo/` with the venv's Python.
fn run_script(what: &str, script: &str, args: &[String]) -> anyhow::Result<()> {
    cmd::run(
        what,
        Command::new(paths::python())
            .arg(paths::root().join("tools/demo").join(script))
            .args(args),
    )
}

/// Blocks until Ctrl-C, failing if `alive` reports that a process died.
fn stay_up(mut alive: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
    eprintln!("\nPress Ctrl-C to stop everything and clean up.");
    while !interrupt::requested() {
        alive()?;
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("\n==> Ctrl-C: stopping");
    Ok(())
}

/// Prints where the logs are, for when something looks wrong.
fn print_logs(dir: &Path) {
    eprintln!("Logs: {}/*.log (removed on exit)", dir.display());
}
