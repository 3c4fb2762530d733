use std::path::PathBuf;

/// Why the kernel path cannot be used. The message is what `forwarding = "auto"` logs when it falls back.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("eBPF object not built into this binary (bpf-linker or nightly rust-src missing at build time; see `cargo xtask build-ebpf`)")]
    NotBuilt,
    #[error("cannot load the eBPF program: {0} (needs CAP_BPF + CAP_NET_ADMIN, or root, and a kernel with sockmap)")]
    Load(String),
    #[error("cannot load/attach the stream verdict program: {0} (needs CAP_BPF + CAP_NET_ADMIN)")]
    Program(String),
    #[error("eBPF map error: {0}")]
    Map(String),
    #[error("map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("program {0} missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("cannot create pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot mount bpffs at {path}: {source}")]
    MountBpffs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pin directory {0} is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs(PathBuf),
    #[error("cannot pin map at {path}: {reason}")]
    Pin { path: PathBuf, reason: String },
    #[error("close watcher: {0}")]
    Watcher(std::io::Error),
}

// aya keeps the errno in `source()`; flatten the chain so the one log line carries it.
impl From<aya::EbpfError> for KernelError {
    fn from(e: aya::EbpfError) -> Self {
        KernelError::Load(crate::error_line::one_line(&e))
    }
}

impl From<aya::programs::ProgramError> for KernelError {
    fn from(e: aya::programs::ProgramError) -> Self {
        KernelError::Program(crate::error_line::one_line(&e))
    }
}

impl From<aya::maps::MapError> for KernelError {
    fn from(e: aya::maps::MapError) -> Self {
        KernelError::Map(crate::error_line::one_line(&e))
    }
}
