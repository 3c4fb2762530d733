//! `cargo xtask setup`: installs what the build, the tests, the demo and the benchmarks need, and
//! nothing that is already there. Run by `demo`, `test` and `bench` first, so it must be quick and
//! quiet when the machine is ready.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use crate::cmd::{self, run, succeeds};
use crate::paths;

/// Debian packages and why we need them (the README repeats this list).
pub const APT_PACKAGES: &[(&str, &str)] = &[
    (
        "redis-server",
        "Redis Cluster nodes for Redis-mode tests, demo and bench",
    ),
    (
        "redis-tools",
        "redis-cli (cluster creation) and redis-benchmark",
    ),
    ("bpftool", "inspecting the pinned BPF maps"),
    ("haproxy", "the L4 peer in the benchmarks"),
    ("iperf3", "a reference bulk-throughput tool"),
    ("socat", "ad-hoc TCP plumbing in tests"),
    ("python3-venv", "the venv with the Python clients"),
    (
        "libcap2-bin",
        "capsh, to run Puerta without CAP_BPF (fallback tests)",
    ),
    ("iproute2", "ss and ip, to inspect sockets and namespaces"),
    ("llvm-22-dev", "LLVM 22 that bpf-linker links against"),
    (
        "libpolly-22-dev",
        "needed to link bpf-linker against LLVM 22",
    ),
    ("libzstd-dev", "needed to link bpf-linker against LLVM 22"),
    ("zlib1g-dev", "needed to link bpf-linker against LLVM 22"),
    ("libxml2-dev", "needed to link bpf-linker against LLVM 22"),
];

/// Python modules that must import in the venv (see tools/requirements.txt).
const PY_IMPORTS: &str = "import secantus, pymongo, redis, mockupdb, glide";

/// Node.js modules that must load from tests/ (see tests/package.json).
const NODE_REQUIRES: &str = "require('redis'); require('ioredis')";

pub fn run_setup() -> anyhow::Result<()> {
    apt_packages()?;
    rust_src()?;
    bpf_linker()?;
    bpffs();
    venv()?;
    node_clients()?;
    eprintln!("==> setup: everything is in place");
    Ok(())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !dpkg_installed(name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {0}. Run as root: apt-get update && apt-get install -y {0}",
            missing.join(" ")
        );
    }
    let apt = || {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run("apt-get update", apt().arg("update"))?;
    run(
        &format!("apt-get install {}", missing.join(" ")),
        apt()
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok installed"))
        .unwrap_or(false)
}

/// The eBPF crate is built by nightly with `-Z build-std=core`, which needs the standard library source.
fn rust_src() -> anyhow::Result<()> {
    let installed = cmd::output(
        "rustup component list",
        Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]),
    )
    .context(
        "the nightly toolchain is needed for the eBPF build (rustup toolchain install nightly)",
    )?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    run(
        "rustup component add rust-src --toolchain nightly",
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
    )
}

/// bpf-linker must link against Debian's LLVM 22; without LLVM_PREFIX its build finds llvm-14.
fn bpf_linker() -> anyhow::Result<()> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    run(
        "cargo install bpf-linker (against LLVM 22)",
        Command::new(paths::cargo())
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ]),
    )
}

/// Pinned maps live in bpffs. Not fatal: Puerta falls back to userspace forwarding without it.
fn bpffs() {
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| m.lines().any(|l| l.split(' ').nth(2) == Some("bpf")))
        .unwrap_or(false);
    if mounted {
        return;
    }
    if !is_root() {
        eprintln!(
            "warning: bpffs is not mounted and we are not root: mount -t bpf bpf /sys/fs/bpf"
        );
        return;
    }
    if let Err(e) = run(
        "mount bpffs at /sys/fs/bpf",
        Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]),
    ) {
        eprintln!("warning: {e:#}");
    }
}

fn venv() -> anyhow::Result<()> {
    let python = paths::python();
    if python_ready(&python) {
        return Ok(());
    }
    if !python.exists() {
        let dir = paths::venv();
        // A dangling symlink or a half-made directory would make `venv` fail confusingly.
        let _ = std::fs::remove_file(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        run(
            "python3 -m venv target/venv",
            Command::new("python3").args(["-m", "venv"]).arg(&dir),
        )?;
    }
    run(
        "pip install -r tools/requirements.txt",
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(paths::requirements()),
    )?;
    if !python_ready(&python) {
        bail!(
            "the venv at {} still cannot `{PY_IMPORTS}`",
            paths::venv().display()
        );
    }
    Ok(())
}

fn python_ready(python: &Path) -> bool {
    succeeds(Command::new(python).args(["-c", PY_IMPORTS]))
}

/// `npm ci` from tests/package-lock.json, unless the clients already load. Node.js 20 and npm come
/// with the machine (Debian's nodejs is 18, older than node-redis 6 and ioredis 6 accept).
fn node_clients() -> anyhow::Result<()> {
    let tests = paths::root().join("tests");
    let ready = || {
        succeeds(
            Command::new("node")
                .args(["-e", NODE_REQUIRES])
                .current_dir(&tests),
        )
    };
    if ready() {
        return Ok(());
    }
    if !succeeds(Command::new("npm").arg("--version")) {
        bail!("Node.js 20 or newer with npm is needed for the Node.js client tests (tests/package.json)");
    }
    run(
        "npm ci (tests/package.json)",
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&tests),
    )?;
    if !ready() {
        bail!("tests/node_modules still cannot `{NODE_REQUIRES}`");
    }
    Ok(())
}
