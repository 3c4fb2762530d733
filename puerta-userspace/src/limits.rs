//! Process limits a proxy for 10k+ connections needs before it accepts anything.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// Allocations at least this big get their own mapping, returned to the OS when freed.
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Makes big buffers (a reply of several MiB passed through to a client) go back to the OS as soon as
/// they are freed. glibc otherwise raises its mmap threshold after the first big free, and later big
/// buffers come from per-thread heaps that keep freed memory: measured with the output-limit test, a
/// proxy that never held more than ~70 MiB of replies stayed at 170–180 MiB RSS. With a fixed
/// threshold, RSS follows `client_output_limit_mb`. Returns false where the setting was refused.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn return_big_buffers_to_the_os() -> bool {
    // SAFETY: mallopt only changes allocator tunables; called before any other thread exists.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_big_buffers_to_the_os() -> bool {
    let _ = MMAP_THRESHOLD;
    true
}
