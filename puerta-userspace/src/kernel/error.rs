use std::path::PathBuf;

/// Why the kernel path cannot be used. The message is what `forwarding = "auto"` logs when it falls back.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("eBPF object not built into this binary (bpf-linker or nightly rust-src missing at build time; see `cargo xtask build-ebpf`)")]
    NotBuilt,
    #[error("cannot load the eBPF program: {0} (needs CAP_BPF + CAP_NET_ADMIN, or root, and a kernel with sockmap)")]
    Load(#[from] aya::EbpfError),
    #[error("cannot load/attach the stream verdict program: {0} (needs CAP_BPF + CAP_NET_ADMIN)")]
    Program(#[from] aya::programs::ProgramError),
    #[error("eBPF map error: {0}")]
    Map(#[from] aya::maps::MapError),
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
