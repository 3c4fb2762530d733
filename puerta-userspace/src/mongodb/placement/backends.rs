//! The configured backends and whether each is currently healthy. Health checks write the flags; routing
//! reads them on every new connection, so they are lock-free atomics.
//!
//! A backend's live state (health, active flows) sits behind an `Arc` so that a config reload can build
//! a new list that shares it with the old one for every address that stays: health is not re-learned
//! and flows that started before the reload keep being counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::Endpoint;

#[derive(Debug, Default)]
pub struct BackendState {
    up: AtomicBool,
    /// A health check has decided `up` at least once.
    checked: AtomicBool,
    /// Client flows currently connected to this backend (for `/backends` and metrics).
    active: AtomicU64,
}

#[derive(Debug)]
pub struct Backend {
    pub endpoint: Endpoint,
    state: Arc<BackendState>,
}

/// Backends in config order; the index is the backend's identity everywhere (balancer, affinity table,
/// BPF maps).
/// Something outside the process that shows backend health (the kernel path's pinned backends map),
/// told of every change the health checks or connect failures make.
pub trait HealthMirror: Send + Sync {
    /// `up` is `None` until a check has decided.
    fn show(&self, index: usize, endpoint: &Endpoint, up: Option<bool>);
}

pub struct Backends {
    list: Vec<Backend>,
    mirror: Option<Arc<dyn HealthMirror>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("list", &self.list)
            .finish()
    }
}

impl Backends {
    pub fn new(endpoints: &[Endpoint], initially_up: bool) -> Backends {
        let list = endpoints
            .iter()
            .map(|e| Backend {
                endpoint: e.clone(),
                state: Arc::new(BackendState {
                    up: AtomicBool::new(initially_up),
                    ..BackendState::default()
                }),
            })
            .collect();
        Backends { list, mirror: None }
    }

    /// Shows every backend's current state through `mirror`, and every later change.
    pub fn mirrored(mut self, mirror: Arc<dyn HealthMirror>) -> Backends {
        for index in 0..self.len() {
            mirror.show(index, self.endpoint(index), self.checked_state(index));
        }
        self.mirror = Some(mirror);
        self
    }

    /// The list for a reloaded config: an address already in `previous` keeps its state (weight and
    /// other endpoint settings come from the new config); a new one starts down and unchecked.
    pub fn carry_over(endpoints: &[Endpoint], previous: &Backends) -> Backends {
        let list = endpoints
            .iter()
            .map(|e| Backend {
                endpoint: e.clone(),
                state: previous
                    .position(&e.address())
                    .map(|i| previous.list[i].state.clone())
                    .unwrap_or_default(),
            })
            .collect();
        Backends { list, mirror: None }
    }

    /// Index of the backend at `address` (`host:port`).
    pub fn position(&self, address: &str) -> Option<usize> {
        self.list
            .iter()
            .position(|b| b.endpoint.address() == address)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn endpoint(&self, index: usize) -> &Endpoint {
        &self.list[index].endpoint
    }

    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.list.iter().map(|b| &b.endpoint)
    }

    /// False for indexes out of range, so a stale index can never route traffic.
    pub fn is_up(&self, index: usize) -> bool {
        self.list
            .get(index)
            .is_some_and(|b| b.state.up.load(Ordering::Acquire))
    }

    /// The health state if a check has decided it, `None` before the first check.
    pub fn checked_state(&self, index: usize) -> Option<bool> {
        let b = self.list.get(index)?;
        b.state
            .checked
            .load(Ordering::Acquire)
            .then(|| b.state.up.load(Ordering::Acquire))
    }

    pub fn set_up(&self, index: usize, up: bool) {
        let before = self.checked_state(index);
        if let Some(b) = self.list.get(index) {
            b.state.up.store(up, Ordering::Release);
            b.state.checked.store(true, Ordering::Release);
            if let Some(mirror) = self.mirror.as_ref().filter(|_| before != Some(up)) {
                mirror.show(index, &b.endpoint, Some(up));
            }
        }
    }

    pub fn up_count(&self) -> usize {
        (0..self.len()).filter(|&i| self.is_up(i)).count()
    }

    /// Counts a flow connected to backend `index` until the returned guard drops.
    pub fn track(&self, index: usize) -> ActiveConnection<'_> {
        if let Some(b) = self.list.get(index) {
            b.state.active.fetch_add(1, Ordering::Relaxed);
        }
        ActiveConnection {
            backends: self,
            index,
        }
    }

    /// Flows currently connected to backend `index`.
    pub fn active(&self, index: usize) -> u64 {
        self.list
            .get(index)
            .map_or(0, |b| b.state.active.load(Ordering::Relaxed))
    }

    /// Weights in index order, for the balancer.
    pub fn weights(&self) -> Vec<u32> {
        self.list.iter().map(|b| b.endpoint.weight).collect()
    }
}

/// A flow's claim on its backend's active-connection count.
pub struct ActiveConnection<'a> {
    backends: &'a Backends,
    index: usize,
}

impl Drop for ActiveConnection<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.backends.list.get(self.index) {
            b.state.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(list: &[&str]) -> Vec<Endpoint> {
        list.iter().map(|a| Endpoint::parse(a).unwrap()).collect()
    }

    #[test]
    fn carry_over_keeps_state_of_addresses_that_stay() {
        let old = Backends::new(&endpoints(&["127.0.0.1:1", "127.0.0.1:2"]), false);
        old.set_up(1, true);
        let flow = old.track(1);
        let new = Backends::carry_over(&endpoints(&["127.0.0.1:2", "127.0.0.1:3"]), &old);
        assert_eq!(new.checked_state(0), Some(true));
        assert_eq!(new.active(0), 1);
        assert_eq!(new.checked_state(1), None);
        assert!(!new.is_up(1));
        drop(flow);
        assert_eq!(new.active(0), 0);
    }

    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<(usize, Option<bool>)>>);

    impl HealthMirror for Seen {
        fn show(&self, index: usize, _endpoint: &Endpoint, up: Option<bool>) {
            self.0.lock().unwrap().push((index, up));
        }
    }

    #[test]
    fn the_mirror_sees_the_start_state_and_every_change_once() {
        let seen = Arc::new(Seen::default());
        let list = Backends::new(&endpoints(&["127.0.0.1:1", "127.0.0.1:2"]), false)
            .mirrored(seen.clone());
        list.set_up(0, true);
        list.set_up(0, true);
        list.set_up(1, false);
        list.set_up(0, false);
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (0, None),
                (1, None),
                (0, Some(true)),
                (1, Some(false)),
                (0, Some(false))
            ]
        );
    }
}
