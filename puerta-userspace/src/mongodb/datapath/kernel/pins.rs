//! The bpffs pins (`affinity`, `backends`, `counters`) operators inspect with bpftool.
//!
//! Replacing on restart is atomic: each map is pinned under a temporary name and renamed over the old
//! pin, so a reader never sees a missing or half-set-up map. On clean shutdown a pin is removed only if
//! it still names our map (a newer instance may already have replaced it).

use std::path::{Path, PathBuf};

use aya::maps::MapData;

use super::KernelError;

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// Pins this process owns; removed on drop.
pub struct Pins {
    owned: Vec<(PathBuf, u32)>,
}

/// Makes sure `dir` exists on a bpf filesystem, mounting bpffs at /sys/fs/bpf if that is where `dir`
/// lives and nothing is mounted there yet.
pub fn prepare_dir(dir: &Path) -> Result<(), KernelError> {
    let bpffs = Path::new(DEFAULT_BPFFS);
    if dir.starts_with(bpffs) && !is_bpffs(bpffs) {
        mount_bpffs(bpffs)?;
    }
    std::fs::create_dir_all(dir).map_err(|source| KernelError::PinDir {
        path: dir.to_path_buf(),
        source,
    })?;
    if !is_bpffs(dir) {
        return Err(KernelError::NotBpffs(dir.to_path_buf()));
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
}

fn mount_bpffs(at: &Path) -> Result<(), KernelError> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(at).map_err(|source| KernelError::PinDir {
        path: at.to_path_buf(),
        source,
    })?;
    mount(Some("bpf"), at, Some("bpf"), MsFlags::empty(), None::<&str>).map_err(|e| {
        KernelError::MountBpffs {
            path: at.to_path_buf(),
            source: e.into(),
        }
    })?;
    tracing::info!(path = %at.display(), "mounted bpffs");
    Ok(())
}

impl Pins {
    pub fn new() -> Pins {
        Pins { owned: Vec::new() }
    }

    /// Pins `map` at `dir/name`, replacing whatever was there.
    pub fn pin(&mut self, map: &MapData, dir: &Path, name: &str) -> Result<(), KernelError> {
        let path = dir.join(name);
        // bpffs refuses names with dots.
        let tmp = dir.join(format!("{name}_{}_tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let pin_err = |reason: String| KernelError::Pin {
            path: path.clone(),
            reason,
        };
        map.pin(&tmp)
            .map_err(|e| pin_err(crate::error_line::one_line(&e)))?;
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(pin_err(e.to_string()));
        }
        let id = map.info().map_err(|e| pin_err(e.to_string()))?.id();
        self.owned.push((path, id));
        Ok(())
    }
}

impl Default for Pins {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for (path, id) in &self.owned {
            let still_ours = MapData::from_pin(path)
                .ok()
                .and_then(|m| m.info().ok())
                .is_some_and(|info| info.id() == *id);
            if still_ours {
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!(path = %path.display(), "cannot remove pin: {e}");
                }
            }
        }
    }
}
