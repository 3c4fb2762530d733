//! The affinity table's and the backends' mirrors into the pinned BPF maps, so `bpftool map dump
//! pinned …/affinity` shows which mongos each client IP sticks to and `…/backends` what `/backends`
//! shows of each mongos.

use std::net::IpAddr;
use std::time::Instant;

use puerta_common::AffinityValue;

use super::{monotonic_ns, KernelPath};
use crate::config::Endpoint;
use crate::mongodb::placement::affinity::{AffinityEntry, AffinityMirror};
use crate::mongodb::placement::backends::HealthMirror;

pub struct KernelAffinityMirror {
    kernel: KernelPath,
}

impl KernelAffinityMirror {
    pub fn new(kernel: KernelPath) -> KernelAffinityMirror {
        KernelAffinityMirror { kernel }
    }
}

impl AffinityMirror for KernelAffinityMirror {
    fn upsert(&self, ip: IpAddr, entry: &AffinityEntry) {
        // Instant is CLOCK_MONOTONIC on Linux: translate by the age of the entry.
        let age = Instant::now().saturating_duration_since(entry.last_seen);
        let value = AffinityValue {
            backend: entry.backend as u32,
            conn_count: entry.live_conns,
            last_seen_ns: monotonic_ns().saturating_sub(age.as_nanos() as u64),
        };
        if let Err(e) = self.kernel.upsert_affinity(ip, value) {
            tracing::warn!(client = %ip, "cannot mirror affinity entry into the BPF map: {e}");
        }
    }

    fn remove(&self, ip: IpAddr) {
        self.kernel.remove_affinity(ip);
    }
}

pub struct KernelHealthMirror {
    kernel: KernelPath,
}

impl KernelHealthMirror {
    pub fn new(kernel: KernelPath) -> KernelHealthMirror {
        KernelHealthMirror { kernel }
    }
}

impl HealthMirror for KernelHealthMirror {
    fn show(&self, index: usize, endpoint: &Endpoint, up: Option<bool>) {
        let health = match up {
            None => puerta_common::BACKEND_UNCHECKED,
            Some(true) => puerta_common::BACKEND_UP,
            Some(false) => puerta_common::BACKEND_DOWN,
        };
        let ip = endpoint.host.parse().ok();
        let set = self
            .kernel
            .set_backend(index as u32, ip, endpoint.port, endpoint.weight, health);
        if let Err(e) = set {
            tracing::warn!(
                backend = index,
                "cannot mirror backend into the BPF map: {e}"
            );
        }
    }
}
