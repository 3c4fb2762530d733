//! `cargo xtask bench [mongodb|redis|all] [--quick]`: Puerta next to its peers on loopback, one
//! markdown table per suite on stdout and the same data as JSON under `target/bench/`.
//! `cargo xtask bench soak --minutes N`: both modes under load with backend kills, RSS and descriptors
//! over time (see `soak/`).

mod l4;
mod machine;
mod procstat;
mod redis;
mod report;
mod soak;
mod stats;
mod syscalls;

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::paths;
use crate::stack::puerta;
use report::Table;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    Mongodb,
    Redis,
    All,
    /// Not part of `all`: minutes of load with backend kills, for leaks rather than speed.
    Soak,
}

pub use soak::SoakArgs;

pub fn run(suite: Suite, quick: bool, soak_args: SoakArgs) -> anyhow::Result<()> {
    if suite == Suite::Soak {
        if quick {
            anyhow::bail!("--quick does not apply to soak; use --minutes 0.5 for a quick check");
        }
        return soak::run(soak_args);
    }
    if soak_args.given() {
        anyhow::bail!("--minutes, --kill-every and --sample-every apply only to `bench soak`");
    }
    let nofile = raise_nofile();
    puerta::build_release()?;
    let dir = tempfile::Builder::new().prefix("puerta-bench-").tempdir()?;
    let machine = machine::Machine::detect();
    let mut tables = Vec::new();
    if matches!(suite, Suite::Mongodb | Suite::All) {
        tables.push(l4::run(dir.path(), &l4::Sizes::new(quick, nofile))?);
    }
    if matches!(suite, Suite::Redis | Suite::All) {
        tables.extend(redis::run(dir.path(), &redis::Sizes::new(quick))?);
    }
    let command = format!(
        "cargo xtask bench {}{}",
        match suite {
            Suite::Mongodb => "mongodb",
            Suite::Redis => "redis",
            Suite::All | Suite::Soak => "all",
        },
        if quick { " --quick" } else { "" }
    );
    println!(
        "\n## Puerta benchmarks\n\nMachine: {}. Command: `{command}`.\n",
        machine.describe()
    );
    for t in &tables {
        println!("{}", t.markdown());
    }
    let json = write_json(&machine, &command, quick, &tables)?;
    println!("JSON: {}", json.display());
    for t in &tables {
        if let Some(Err(reason)) = t.rows.first().map(|r| &r.values) {
            anyhow::bail!("the reference row of \"{}\" failed: {reason}", t.title);
        }
    }
    Ok(())
}

fn write_json(
    machine: &machine::Machine,
    command: &str,
    quick: bool,
    tables: &[Table],
) -> anyhow::Result<std::path::PathBuf> {
    let dir = paths::target().join("bench");
    std::fs::create_dir_all(&dir)?;
    let doc = serde_json::json!({
        "machine": machine,
        "command": command,
        "quick": quick,
        "tables": tables,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    let path = dir.join(format!("bench-{}.json", machine.unix_time));
    std::fs::write(&path, &text)?;
    std::fs::write(dir.join("latest.json"), &text)?;
    Ok(path)
}

/// 10k idle connections through a proxy need ~20k descriptors in this process (client and backend
/// ends) and as many in the proxy, which inherits our limit. Raising the hard limit needs
/// CAP_SYS_RESOURCE (containers often lack it); returns the soft limit we end up with.
pub fn raise_nofile() -> u64 {
    const WANT: u64 = 200_000;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    let hard = if hard < WANT && setrlimit(Resource::RLIMIT_NOFILE, soft, WANT).is_ok() {
        WANT
    } else {
        hard
    };
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(_) => soft,
    }
}

/// The most telling line of an error (the last one: usually the process's own last words), short
/// enough for a table cell.
pub fn short_reason(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed")
        .trim();
    let mut reason: String = line.chars().take(140).collect();
    if reason.len() < line.len() {
        reason.push('…');
    }
    reason
}
