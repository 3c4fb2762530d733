//! Dropping capabilities once start-up is done. Loading the eBPF program, pinning maps and binding
//! privileged ports need capabilities; serving flows does not (map updates and lookups go through file
//! descriptors the process already holds). A proxy facing untrusted clients should not keep
//! CAP_BPF/CAP_NET_ADMIN — or all of root's capabilities — for its whole life.
//!
//! Linux keeps capabilities per thread: `capset` changes only the calling thread, and a new thread
//! copies its creator's sets. [`drop_process`] therefore refuses to run while other threads exist;
//! `main` calls it before the tokio runtime starts, so every later thread starts with nothing.

use std::time::{Duration, Instant};

use caps::errors::CapsError;
use caps::{CapSet, Capability, CapsHashSet};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot read the {set:?} capability set: {source}")]
    Read { set: CapSet, source: CapsError },
    #[error("cannot drop {cap} from the bounding set: {source}")]
    Bounding { cap: Capability, source: CapsError },
    #[error("cannot lower the {set:?} capability set: {source}")]
    Lower { set: CapSet, source: CapsError },
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("{0} threads are running; capabilities are per thread, so they must be dropped before any other thread starts")]
    OtherThreads(usize),
}

/// What [`drop_process`] changed, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Capabilities the thread had permitted and no longer has, by number.
    pub dropped: Vec<Capability>,
    /// Capabilities still permitted and effective (those asked to be kept that the thread had).
    pub kept: Vec<Capability>,
    /// Whether the bounding set was emptied too (needs CAP_SETPCAP, which a systemd unit usually lacks;
    /// `no_new_privs` already keeps `execve` from granting anything back).
    pub bounding_cleared: bool,
}

impl Dropped {
    /// One log line: `dropped`, `kept` and `bounding_set` fields in the `cap_bpf,cap_net_admin` form.
    pub fn log(&self) {
        tracing::info!(
            dropped = %names(&self.dropped),
            kept = %names(&self.kept),
            bounding_set = if self.bounding_cleared { "cleared" } else { "unchanged (no CAP_SETPCAP)" },
            no_new_privs = true,
            "capabilities dropped"
        );
    }
}

fn names(caps: &[Capability]) -> String {
    if caps.is_empty() {
        return "none".into();
    }
    caps.iter()
        .map(|c| c.to_string().to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

/// Drops every capability but `keep` for the whole process, which must have no other thread yet.
/// A process without capabilities (an ordinary user) gets a no-op that succeeds.
pub fn drop_process(keep: &[Capability]) -> Result<Dropped, PrivilegeError> {
    let threads = settled_thread_count();
    if threads > 1 {
        return Err(PrivilegeError::OtherThreads(threads));
    }
    drop_this_thread(keep)
}

/// Drops every capability but `keep` from the calling thread only: clears the bounding set where
/// CAP_SETPCAP allows it, the ambient and inheritable sets, lowers permitted and effective to `keep`,
/// and sets `no_new_privs` so that no `execve` can bring privileges back.
pub fn drop_this_thread(keep: &[Capability]) -> Result<Dropped, PrivilegeError> {
    let permitted = read(CapSet::Permitted)?;
    let effective = read(CapSet::Effective)?;
    let kept: CapsHashSet = keep
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    // The bounding set goes first: dropping from it needs CAP_SETPCAP, which is about to go.
    let bounding_cleared = effective.contains(&Capability::CAP_SETPCAP);
    if bounding_cleared {
        clear_bounding(&kept)?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|source| PrivilegeError::Lower {
        set: CapSet::Ambient,
        source,
    })?;
    // Effective before permitted: the kernel refuses an effective set that permitted lacks.
    let none = CapsHashSet::new();
    for (set, target) in [
        (CapSet::Inheritable, &none),
        (CapSet::Effective, &kept),
        (CapSet::Permitted, &kept),
    ] {
        caps::set(None, set, target).map_err(|source| PrivilegeError::Lower { set, source })?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)?;
    Ok(Dropped {
        dropped: by_number(permitted.difference(&kept).copied()),
        kept: by_number(kept),
        bounding_cleared,
    })
}

fn by_number(caps: impl IntoIterator<Item = Capability>) -> Vec<Capability> {
    let mut list: Vec<Capability> = caps.into_iter().collect();
    list.sort_by_key(|c| c.index());
    list
}

fn read(set: CapSet) -> Result<CapsHashSet, PrivilegeError> {
    caps::read(None, set).map_err(|source| PrivilegeError::Read { set, source })
}

fn clear_bounding(keep: &CapsHashSet) -> Result<(), PrivilegeError> {
    let bounding = read(CapSet::Bounding)?;
    for cap in bounding.difference(keep) {
        caps::drop(None, CapSet::Bounding, *cap)
            .map_err(|source| PrivilegeError::Bounding { cap: *cap, source })?;
    }
    Ok(())
}

/// How long a thread that is already joined may still be listed in `/proc/self/task`. `join` returns
/// when the kernel clears the thread's tid futex (in `mm_release`), which is before `exit_notify` takes
/// the task out of the thread group; on a loaded machine the exiting thread can wait for a CPU in
/// between. A thread that is really running stays listed, so the check still refuses it.
const THREAD_EXIT_SETTLE: Duration = Duration::from_secs(2);

/// [`thread_count`], re-read until it is 1 or [`THREAD_EXIT_SETTLE`] has passed.
fn settled_thread_count() -> usize {
    settle(thread_count, THREAD_EXIT_SETTLE)
}

/// Calls `count` until it returns at most 1 or `within` has passed, and returns its last answer.
fn settle(mut count: impl FnMut() -> usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let threads = count();
        if threads <= 1 || Instant::now() >= deadline {
            return threads;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Threads of this process (1 if /proc is unreadable: the drop then relies on `main`'s ordering).
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |dir| dir.count())
}

/// Runs `probe` on a short-lived thread that has dropped every capability, to learn whether something
/// still works without them (e.g. BPF map access on kernels that gate the whole `bpf()` syscall on
/// CAP_BPF). The thread is joined before returning, so the process is single-threaded again.
pub fn works_unprivileged(probe: impl FnOnce() -> bool + Send) -> Result<bool, PrivilegeError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| drop_this_thread(&[]).map(|_| probe()))
            .join()
            .unwrap_or(Ok(false))
    })
}

#[cfg(test)]
mod tests;
