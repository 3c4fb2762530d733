//! The configured backends and whether each is currently healthy. Health checks write the flags; routing
//! reads them on every new connection, so they are lock-free atomics.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Endpoint;

#[derive(Debug)]
pub struct Backend {
    pub endpoint: Endpoint,
    up: AtomicBool,
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

    /// Weights in index order, for the balancer.
    pub fn weights(&self) -> Vec<u32> {
        self.list.iter().map(|b| b.endpoint.weight).collect()
    }
}
