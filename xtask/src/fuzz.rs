//! `cargo xtask fuzz`: every cargo-fuzz target in `fuzz/` for a bounded time, one line of numbers per
//! target, and a loud failure on a crash, a leak or a target that does not build. `cargo xtask test`
//! runs it for 60 s a target; longer runs are the same command with `--seconds`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::cmd::{self, run, succeeds};
use crate::{interrupt, paths};

/// The cargo-fuzz release we know works with the nightly installed here; pinned so CI is repeatable.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub struct Options {
    /// Upper bound per target.
    pub seconds: u64,
    /// Stop a target after this many executions (long runs aim at a count, not a time).
    pub runs: Option<u64>,
    /// `address` (cargo-fuzz's default) or `none`: several times faster, still catches panics and
    /// overflow (debug assertions stay on), for long runs over code without `unsafe`.
    pub sanitizer: String,
    /// Empty means every target `cargo fuzz list` knows.
    pub targets: Vec<String>,
}

/// What one target's run reported in libFuzzer's final stats.
struct Outcome {
    target: String,
    executions: u64,
    peak_rss_mb: u64,
}

pub fn run_all(options: &Options) -> anyhow::Result<()> {
    install_cargo_fuzz()?;
    let targets = if options.targets.is_empty() {
        list_targets()?
    } else {
        options.targets.clone()
    };
    let mut outcomes = Vec::new();
    for target in &targets {
        interrupt::check()?;
        outcomes.push(run_target(target, options)?);
    }
    print_table(&outcomes, options);
    Ok(())
}

fn install_cargo_fuzz() -> anyhow::Result<()> {
    if succeeds(Command::new(paths::cargo()).args(["fuzz", "--version"])) {
        return Ok(());
    }
    run(
        &format!("cargo install cargo-fuzz {CARGO_FUZZ_VERSION}"),
        Command::new(paths::cargo()).args([
            "install",
            "--locked",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
        ]),
    )
}

fn fuzz_dir() -> PathBuf {
    paths::root().join("fuzz")
}

/// `cargo +nightly …` run from `fuzz/`, without the variables the outer (stable) cargo set for us:
/// with `CARGO` or `RUSTUP_TOOLCHAIN` inherited, cargo-fuzz would build with stable and fail on `-Z`.
fn nightly_cargo() -> Command {
    let mut command = Command::new("cargo");
    command
        .arg("+nightly")
        .current_dir(fuzz_dir())
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    command
}

fn list_targets() -> anyhow::Result<Vec<String>> {
    let listed = cmd::output("cargo fuzz list", nightly_cargo().args(["fuzz", "list"]))?;
    let targets: Vec<String> = listed.lines().map(str::trim).map(String::from).collect();
    if targets.is_empty() {
        bail!(
            "cargo fuzz list found no targets in {}",
            fuzz_dir().display()
        );
    }
    Ok(targets)
}

fn run_target(target: &str, options: &Options) -> anyhow::Result<Outcome> {
    let seconds = options.seconds;
    let corpus = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    cmd::step(&format!("fuzz {target} for at most {seconds} s"));
    let mut command = nightly_cargo();
    command
        .args(["fuzz", "run", "--sanitizer", &options.sanitizer, target])
        .arg(&corpus);
    if let Some(seeds) = seed_dir(target) {
        command.arg(seeds);
    }
    command.args([
        "--".to_string(),
        format!("-max_total_time={seconds}"),
        "-rss_limit_mb=2048".to_string(),
        "-print_final_stats=1".to_string(),
    ]);
    if let Some(runs) = options.runs {
        command.arg(format!("-runs={runs}"));
    }
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start cargo fuzz for {target}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprintln!("{}", tail(&log, 60));
        bail!(
            "fuzz target {target} failed ({}); reproducer (if any) in {}",
            out.status,
            fuzz_dir().join("artifacts").join(target).display()
        );
    }
    let outcome = Outcome {
        target: target.to_string(),
        executions: final_stat(&log, "stat::number_of_executed_units").with_context(|| {
            format!(
                "{target}: no final stats in libFuzzer output:\n{}",
                tail(&log, 30)
            )
        })?,
        peak_rss_mb: final_stat(&log, "stat::peak_rss_mb").unwrap_or(0),
    };
    eprintln!(
        "    {target}: {} executions, peak RSS {} MB, no crash",
        outcome.executions, outcome.peak_rss_mb
    );
    Ok(outcome)
}

/// Inputs worth starting from that live elsewhere in the repository: the example configs are valid
/// configs, so the config fuzzer mutates real structure instead of rediscovering TOML.
fn seed_dir(target: &str) -> Option<PathBuf> {
    let dir = match target {
        "config_load" => paths::root().join("config"),
        _ => return None,
    };
    dir.is_dir().then_some(dir)
}

fn final_stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter_map(|line| line.strip_prefix(name))
        .find_map(|rest| rest.trim_start_matches(':').trim().parse().ok())
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn print_table(outcomes: &[Outcome], options: &Options) {
    println!(
        "\nfuzz: at most {} s per target, sanitizer {}, 0 crashes",
        options.seconds, options.sanitizer
    );
    println!(
        "{:<16} {:>14} {:>12}",
        "target", "executions", "peak RSS MB"
    );
    for o in outcomes {
        println!(
            "{:<16} {:>14} {:>12}",
            o.target, o.executions, o.peak_rss_mb
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_final_stat() {
        let log = "INFO: seed\nstat::number_of_executed_units: 12\nstat::peak_rss_mb: 40\n\
                   stat::number_of_executed_units: 535334\n";
        assert_eq!(
            final_stat(log, "stat::number_of_executed_units"),
            Some(535334)
        );
        assert_eq!(final_stat(log, "stat::peak_rss_mb"), Some(40));
        assert_eq!(final_stat(log, "stat::slowest_unit_time_sec"), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
