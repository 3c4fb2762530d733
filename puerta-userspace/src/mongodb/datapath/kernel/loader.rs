//! Loading: embedded object → maps and program in the kernel → verdict attached to the sockhash →
//! user-facing maps pinned. Any failure here is a reason for `auto` to fall back to userspace.

use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use aya::maps::{Array, HashMap, IterableMap as _, Map, PerCpuArray, SockHash};
use aya::programs::SkSkb;
use aya::Ebpf;
use puerta_common::{
    AFFINITY_MAP, BACKENDS_MAP, COUNTERS_MAP, PEERS_MAP, SOCKS_MAP, VERDICT_PROGRAM,
};

use super::handoff::Handoff;
use super::maps::Maps;
use super::pins::{prepare_dir, Pins};
use super::watcher::Watcher;
use super::{object_bytes, KernelError};

/// A loaded kernel path, shared by all flows. Dropping the last handle detaches the program, closes
/// the maps and removes the pins.
#[derive(Clone)]
pub struct KernelPath {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) maps: Maps,
    pub(super) watcher: Watcher,
    /// Pairs currently spliced.
    pub(super) live: AtomicU64,
    /// Pairs spliced since start.
    pub(super) total: AtomicU64,
    /// Pairs handed over, live, to the next instance: their entries stay in the maps.
    pub(super) handed_over: AtomicU64,
    /// This process's sockhash, for pairs that go to the next instance.
    pub(super) sockhash: Arc<OwnedFd>,
    pub(super) handoff: Handoff,
    pin_dir: PathBuf,
    // Field order matters for drop: pins go before the program and maps they refer to.
    pins: Mutex<Option<Pins>>,
    finished: std::sync::atomic::AtomicBool,
    _ebpf: Mutex<Ebpf>,
}

impl KernelPath {
    /// Loads the embedded program and pins the user-facing maps under `pin_dir`. Needs no tokio runtime,
    /// so `main` can do it before any thread starts and then drop the capabilities it took.
    pub fn load(pin_dir: &Path) -> Result<KernelPath, KernelError> {
        let object = object_bytes().ok_or(KernelError::NotBuilt)?;
        raise_memlock();
        let mut ebpf = Ebpf::load(object)?;
        let socks: SockHash<_, u64> = SockHash::try_from(take(&mut ebpf, SOCKS_MAP)?)?;
        let program: &mut SkSkb = ebpf
            .program_mut(VERDICT_PROGRAM)
            .ok_or(KernelError::MissingProgram(VERDICT_PROGRAM))?
            .try_into()?;
        program.load()?;
        program.attach(socks.fd())?;
        let sockhash = socks
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| KernelError::Map(format!("cannot duplicate the sockhash: {e}")))?;
        let peers = HashMap::try_from(take(&mut ebpf, PEERS_MAP)?)?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, COUNTERS_MAP)?)?;
        let affinity = HashMap::try_from(take(&mut ebpf, AFFINITY_MAP)?)?;
        let backends = Array::try_from(take(&mut ebpf, BACKENDS_MAP)?)?;
        prepare_dir(pin_dir)?;
        let mut pins = Pins::new();
        pins.pin(affinity.map(), pin_dir, "affinity")?;
        pins.pin(backends.map(), pin_dir, "backends")?;
        pins.pin(counters.map(), pin_dir, "counters")?;
        pins.pin(peers.map(), pin_dir, "peers")?;
        pins.pin(socks.map(), pin_dir, "socks")?;
        let maps = Maps {
            socks: Mutex::new(socks),
            peers: Mutex::new(peers),
            counters,
            affinity: Mutex::new(affinity),
            backends: Mutex::new(backends),
        };
        let watcher = Watcher::new().map_err(KernelError::Watcher)?;
        let inner = Arc::new(Inner {
            maps,
            watcher,
            live: AtomicU64::new(0),
            total: AtomicU64::new(0),
            handed_over: AtomicU64::new(0),
            sockhash: Arc::new(sockhash),
            handoff: Handoff::new(),
            pin_dir: pin_dir.to_path_buf(),
            pins: Mutex::new(Some(pins)),
            finished: std::sync::atomic::AtomicBool::new(false),
            _ebpf: Mutex::new(ebpf),
        });
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&inner));
        Ok(KernelPath { inner })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.inner.pin_dir
    }

    /// What the verdict program counted so far (summed over CPUs).
    pub fn counters(&self) -> Result<super::CounterTotals, KernelError> {
        self.inner.maps.counters()
    }

    /// Entries in the sockhash / peers / affinity maps, for leak checks and shutdown logs.
    pub fn map_entries(&self) -> (usize, usize, usize) {
        let m = &self.inner.maps;
        (m.socket_count(), m.peer_count(), m.affinity_count())
    }

    /// Whether a thread without any capability can still use the maps (read the counters), i.e.
    /// whether the process may drop CAP_BPF after loading. See [`crate::privileges::works_unprivileged`].
    pub fn maps_usable_without_capabilities(&self) -> bool {
        crate::privileges::works_unprivileged(|| self.counters().is_ok()).unwrap_or(false)
    }

    pub fn live_pairs(&self) -> u64 {
        self.inner.live.load(Ordering::Relaxed)
    }

    pub fn total_pairs(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    pub fn upsert_affinity(
        &self,
        ip: std::net::IpAddr,
        value: puerta_common::AffinityValue,
    ) -> Result<(), KernelError> {
        self.inner.maps.upsert_affinity(ip, value)
    }

    pub fn remove_affinity(&self, ip: std::net::IpAddr) {
        self.inner.maps.remove_affinity(ip)
    }

    /// Describes backend `index` in the pinned backends map (`ip` is `None` for a host name;
    /// `health` is one of `puerta_common::BACKEND_*`).
    pub fn set_backend(
        &self,
        index: u32,
        ip: Option<std::net::IpAddr>,
        port: u16,
        weight: u32,
        health: u32,
    ) -> Result<(), KernelError> {
        let (family, bytes) = ip.map(super::maps::ip_bytes).unwrap_or_default();
        let value = puerta_common::BackendValue {
            family,
            port,
            addr: bytes,
            weight,
            health,
        };
        self.inner.maps.set_backend(index, value)
    }
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, KernelError> {
    ebpf.take_map(name).ok_or(KernelError::MissingMap(name))
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones use memcg and ignore it.
fn raise_memlock() {
    use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
    if let Err(e) = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY) {
        tracing::debug!("cannot raise RLIMIT_MEMLOCK: {e}");
    }
}

/// The kernel path of this process, for the shutdown report (flows hold the strong references).
static ACTIVE: Mutex<Option<Weak<Inner>>> = Mutex::new(None);

/// Clean shutdown, after flows drained: logs what the kernel moved (the userspace byte counter is
/// logged separately and stays 0 for spliced flows) and removes the pins. Later drops are no-ops.
pub fn finish_active() {
    let Some(active) = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    match active.upgrade() {
        Some(inner) => inner.finish(),
        // The last flow is dropping the path on another thread right now (a flow that was closing
        // when shutdown began): its report is on the way; the process must not exit before it.
        None => FINISHED.wait_for_report(Duration::from_secs(2)),
    }
}

/// Set once the shutdown report was logged, whichever thread logged it.
static FINISHED: Reported = Reported::new();

struct Reported {
    done: Mutex<bool>,
    changed: Condvar,
}

impl Reported {
    const fn new() -> Reported {
        Reported {
            done: Mutex::new(false),
            changed: Condvar::new(),
        }
    }

    fn set(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }

    fn wait_for_report(&self, limit: Duration) {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.changed.wait_timeout_while(done, limit, |done| !*done);
    }
}

impl Inner {
    fn finish(&self) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        let maps = &self.maps;
        let (sockets, peers, affinity) = (
            maps.socket_count(),
            maps.peer_count(),
            maps.affinity_count(),
        );
        match maps.counters() {
            Ok(c) => tracing::info!(
                pairs = self.total.load(Ordering::Relaxed),
                live_pairs = self.live.load(Ordering::Relaxed),
                handed_over_pairs = self.handed_over.load(Ordering::Relaxed),
                kernel_bytes_client_to_backend = c.redirected_client_to_backend.bytes,
                kernel_bytes_backend_to_client = c.redirected_backend_to_client.bytes,
                kernel_passed_bytes = c.passed.bytes,
                kernel_empty_dropped = c.empty_dropped.packets,
                sockhash_entries = sockets,
                peer_entries = peers,
                affinity_entries = affinity,
                "kernel path totals"
            ),
            Err(e) => tracing::warn!("cannot read kernel counters: {e}"),
        }
        drop(self.pins.lock().unwrap_or_else(|e| e.into_inner()).take());
        FINISHED.set();
    }
}

/// The last flow may release the path before the app's shutdown report runs.
impl Drop for Inner {
    fn drop(&mut self) {
        self.finish();
    }
}

impl KernelPath {
    /// Empties backend slots `from..` (backends a reload removed).
    pub fn clear_backends_from(&self, from: u32) {
        for index in from..puerta_common::MAX_BACKENDS {
            let _ = self
                .inner
                .maps
                .set_backend(index, puerta_common::BackendValue::default());
        }
    }
}
