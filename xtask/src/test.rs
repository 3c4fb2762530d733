//! `cargo xtask test`: the whole suite, set-up included, stopping loudly at the first failing step.
//! `.ci/run` calls exactly this, so what passes here passes in CI.

use std::process::Command;

use crate::cmd::run;
use crate::{bench, fuzz, paths, setup};

/// What a clean clone's build, test binaries, venv and fuzz corpora take, with room to spare.
const DISK_NEEDED_GIB: u64 = 12;

pub fn run_all() -> anyhow::Result<()> {
    check_free_disk()?;
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

/// A full disk shows up deep inside a build as a linker killed by SIGBUS (seen in CI), so say
/// it plainly before starting. Only a warning: an earlier build of this tree is reused, and the
/// estimate is not exact enough to refuse a run that might fit.
fn check_free_disk() -> anyhow::Result<()> {
    let target = paths::target();
    let probe = if target.exists() {
        target
    } else {
        paths::root()
    };
    let stat = nix::sys::statvfs::statvfs(&probe)?;
    let free_gib = (stat.blocks_available() as u64 * stat.fragment_size() as u64) >> 30;
    eprintln!("==> free disk at {}: {free_gib} GiB", probe.display());
    if free_gib < DISK_NEEDED_GIB {
        eprintln!(
            "WARNING: a clean build and test run needs about {DISK_NEEDED_GIB} GiB; \
             a build that runs out shows up as a linker killed by SIGBUS"
        );
    }
    Ok(())
}
