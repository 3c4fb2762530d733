//! Where things live in the workspace, so every command agrees on them.

use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

pub fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The release daemon that demo, test and bench run.
pub fn puerta_release() -> PathBuf {
    target().join("release/puerta")
}

pub fn venv() -> PathBuf {
    target().join("venv")
}

pub fn venv_bin(name: &str) -> PathBuf {
    venv().join("bin").join(name)
}

pub fn python() -> PathBuf {
    venv_bin("python")
}

pub fn requirements() -> PathBuf {
    root().join("tools/requirements.txt")
}

/// The `cargo` that runs us, so nested builds use the same toolchain.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}
