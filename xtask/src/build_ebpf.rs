//! `cargo xtask build-ebpf`: builds the eBPF object through the same path a plain `cargo build` uses —
//! puerta-userspace's build.rs (aya-build) — with `PUERTA_REQUIRE_EBPF=1`, so a missing bpf-linker or
//! nightly rust-src is an error here instead of a warning and an empty object.

use std::process::Command;

pub fn run(release: bool) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--package", "puerta-userspace"])
        .env("PUERTA_REQUIRE_EBPF", "1");
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status()?;
    anyhow::ensure!(
        status.success(),
        "building the eBPF object failed ({status})"
    );
    println!(
        "eBPF object built and embedded in target/{}/puerta",
        profile(release)
    );
    Ok(())
}

fn profile(release: bool) -> &'static str {
    if release {
        "release"
    } else {
        "debug"
    }
}
