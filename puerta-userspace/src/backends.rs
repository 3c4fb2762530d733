//! The configured backends and whether each is currently healthy. Health checks write the flags; routing
//! reads them on every new connection, so they are lock-free atomics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::config::Endpoint;

#[derive(Debug)]
pub struct Backend {
    pub endpoint: Endpoint,
    up: AtomicBool,
    /// Client flows currently connected to this backend (for `/backends` and metrics).
    active: AtomicU64,
}

/// Backends in config order; the index is the backend's identity everywhere (balancer, affinity table,
/// BPF maps).
#[derive(Debug)]
pub struct Backends {
    list: Vec<Backend>,
}

impl Backends {
    pub fn new(endpoints: &[Endpoint], initially_up: bool) -> Backends {
        let list = endpoints
            .iter()
            .map(|e| Backend {
                endpoint: e.clone(),
                up: AtomicBool::new(initially_up),
                active: AtomicU64::new(0),
            })
            .collect();
        Backends { list }
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
            .is_some_and(|b| b.up.load(Ordering::Acquire))
    }

    pub fn set_up(&self, index: usize, up: bool) {
        if let Some(b) = self.list.get(index) {
            b.up.store(up, Ordering::Release);
        }
    }

    pub fn up_count(&self) -> usize {
        (0..self.len()).filter(|&i| self.is_up(i)).count()
    }

    /// Counts a flow connected to backend `index` until the returned guard drops.
    pub fn track(&self, index: usize) -> ActiveConnection<'_> {
        if let Some(b) = self.list.get(index) {
            b.active.fetch_add(1, Ordering::Relaxed);
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
            .map_or(0, |b| b.active.load(Ordering::Relaxed))
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
            b.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
