//! `cargo xtask test`: the whole suite, set-up included, stopping loudly at the first failing step.
//! `.ci/run` calls exactly this, so what passes here passes in CI.

use std::process::Command;

use crate::cmd::run;
use crate::{bench, fuzz, paths, setup};

pub fn run_all() -> anyhow::Result<()> {
    setup::run_setup()?;
    let cargo = || Command::new(paths::cargo());
    run(
        "build the release daemon (eBPF object required)",
        cargo()
            .args(["build", "--release", "-p", "puerta-userspace"])
            .env("PUERTA_REQUIRE_EBPF", "1"),
    )?;
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run(
        "cargo clippy -D warnings",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        "cargo test --workspace",
        cargo()
            // Report every failing test, not just those of the first failing test binary.
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("PUERTA_BIN", paths::puerta_release())
            .env("PUERTA_PYTHON", paths::python()),
    )?;
    fuzz::run_all(&fuzz::Options {
        seconds: 60,
        runs: None,
        sanitizer: "address".to_string(),
        targets: Vec::new(),
    })?;
    crate::cmd::step("cargo xtask bench --quick (checks the harness, no thresholds)");
    bench::run(bench::Suite::All, true, bench::SoakArgs::default())?;
    eprintln!("==> test: all steps passed");
    Ok(())
}
