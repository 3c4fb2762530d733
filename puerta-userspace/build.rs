//! Compiles `puerta-ebpf` for the BPF target with aya-build and leaves the object at
//! `$OUT_DIR/puerta-ebpf.o` for `include_bytes_aligned!`. This is the only way the object gets built:
//! `cargo xtask build-ebpf` runs this same script (by building this package) with
//! `PUERTA_REQUIRE_EBPF=1`.
//!
//! Without bpf-linker or a nightly toolchain with rust-src, a plain `cargo build` still works: the object
//! is left empty, a cargo warning says why, and at runtime `forwarding = "auto"` falls back to userspace.

use std::path::{Path, PathBuf};
use std::process::Command;

const REQUIRE: &str = "PUERTA_REQUIRE_EBPF";
const OBJECT: &str = "puerta-ebpf.o";

fn main() {
    println!("cargo:rerun-if-env-changed={REQUIRE}");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    println!(
        "cargo:rerun-if-changed={}",
        root.join("puerta-common").display()
    );
    let required = std::env::var(REQUIRE).is_ok_and(|v| v == "1");
    match build(&root, &out_dir) {
        Ok(()) => {}
        Err(reason) if required => {
            panic!("{REQUIRE}=1 but the eBPF object cannot be built: {reason}")
        }
        Err(reason) => {
            println!("cargo:warning=eBPF object not built ({reason}); kernel forwarding disabled in this binary");
            std::fs::write(out_dir.join(OBJECT), []).expect("write empty eBPF object");
        }
    }
}

fn build(root: &Path, out_dir: &Path) -> Result<(), String> {
    preflight()?;
    let ebpf_dir = root.join("puerta-ebpf");
    let package = aya_build::Package {
        name: "puerta-ebpf",
        root_dir: ebpf_dir.to_str().ok_or("non-UTF-8 path")?,
        ..Default::default()
    };
    // aya-build passes `-Cdebuginfo=2 -Clink-arg=--btf` itself (CARGO_ENCODED_RUSTFLAGS of the nested
    // cargo), which is what gives the maps BTF so bpftool prints field names.
    aya_build::build_ebpf([package], aya_build::Toolchain::Nightly)
        .map_err(|e| format!("{e:#}"))?;
    // aya-build copies each binary target of puerta-ebpf to OUT_DIR/<bin name>.
    std::fs::rename(out_dir.join("puerta-ebpf"), out_dir.join(OBJECT))
        .map_err(|e| format!("eBPF object missing after build: {e}"))
}

/// Checks the tools first so a missing one gives a one-line reason instead of a wall of cargo output.
fn preflight() -> Result<(), String> {
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !linker.is_ok_and(|o| o.status.success()) {
        return Err("bpf-linker not found in PATH (cargo install bpf-linker)".into());
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustup not runnable: {e}"))?;
    if !sysroot.status.success() {
        return Err("no nightly toolchain (rustup toolchain install nightly)".into());
    }
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let core_src = Path::new(&sysroot).join("lib/rustlib/src/rust/library/core");
    if !core_src.exists() {
        return Err(
            "nightly has no rust-src (rustup component add rust-src --toolchain nightly)".into(),
        );
    }
    Ok(())
}
