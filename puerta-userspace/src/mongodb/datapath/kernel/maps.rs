//! Typed handles on the loaded maps. Map syscalls are thread-safe, but aya's mutators take `&mut`, so
//! each map sits behind a short, never-awaited mutex.

use std::net::IpAddr;
use std::sync::Mutex;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, SockHash};
use puerta_common::{
    counter_index, AffinityKey, AffinityValue, BackendValue, Counter, PeerEntry, AF_INET, AF_INET6,
    COUNTER_EMPTY_DROPPED, COUNTER_PASSED, COUNTER_REDIRECT_FAILED, DIR_BACKEND_TO_CLIENT,
    DIR_CLIENT_TO_BACKEND, MAX_BACKENDS,
};

use super::KernelError;

pub struct Maps {
    pub(super) socks: Mutex<SockHash<MapData, u64>>,
    pub(super) peers: Mutex<HashMap<MapData, u64, PeerEntry>>,
    pub(super) counters: PerCpuArray<MapData, Counter>,
    pub(super) affinity: Mutex<HashMap<MapData, AffinityKey, AffinityValue>>,
    pub(super) backends: Mutex<Array<MapData, BackendValue>>,
}

/// Totals of the per-CPU counters: what the verdict program did with the bytes it saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterTotals {
    pub redirected_client_to_backend: Counter,
    pub redirected_backend_to_client: Counter,
    /// Non-empty skbs left on their own socket (no peer entry, or peer gone).
    pub passed: Counter,
    pub empty_dropped: Counter,
    pub redirect_failed: Counter,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Maps {
    /// Registers the pair's peer entries, then both sockets (backend first: it is silent until the
    /// client's first bytes reach it, so nothing it receives can miss its not-yet-inserted peer).
    pub fn insert_pair(
        &self,
        client: (u64, i32),
        backend: (u64, i32),
        backend_index: u32,
    ) -> Result<(), aya::maps::MapError> {
        let to_backend = PeerEntry {
            peer_cookie: backend.0,
            backend: backend_index,
            direction: DIR_CLIENT_TO_BACKEND,
        };
        let to_client = PeerEntry {
            peer_cookie: client.0,
            backend: backend_index,
            direction: DIR_BACKEND_TO_CLIENT,
        };
        {
            let mut peers = lock(&self.peers);
            peers.insert(client.0, to_backend, 0)?;
            peers.insert(backend.0, to_client, 0)?;
        }
        let mut socks = lock(&self.socks);
        socks.insert(backend.0, backend.1, 0)?;
        socks.insert(client.0, client.1, 0)
    }

    /// Removes both sockets and their peer entries; missing entries are fine (the kernel drops a
    /// socket from the sockhash by itself when it is closed).
    pub fn remove_pair(&self, client: u64, backend: u64) {
        {
            let mut socks = lock(&self.socks);
            let _ = socks.remove(&client);
            let _ = socks.remove(&backend);
        }
        let mut peers = lock(&self.peers);
        let _ = peers.remove(&client);
        let _ = peers.remove(&backend);
    }

    /// Sockets currently in the sockhash.
    pub fn socket_count(&self) -> usize {
        lock(&self.socks).keys().filter(|k| k.is_ok()).count()
    }

    pub fn peer_count(&self) -> usize {
        lock(&self.peers).keys().filter(|k| k.is_ok()).count()
    }

    pub fn affinity_count(&self) -> usize {
        lock(&self.affinity).keys().filter(|k| k.is_ok()).count()
    }

    pub fn counters(&self) -> Result<CounterTotals, KernelError> {
        let sum = |slot: u32| -> Result<Counter, KernelError> {
            let values = self.counters.get(&slot, 0)?;
            Ok(values.iter().fold(Counter::default(), |acc, c| Counter {
                bytes: acc.bytes + c.bytes,
                packets: acc.packets + c.packets,
            }))
        };
        let mut totals = CounterTotals {
            passed: sum(COUNTER_PASSED)?,
            empty_dropped: sum(COUNTER_EMPTY_DROPPED)?,
            redirect_failed: sum(COUNTER_REDIRECT_FAILED)?,
            ..CounterTotals::default()
        };
        for backend in 0..MAX_BACKENDS {
            let c2b = sum(counter_index(backend, DIR_CLIENT_TO_BACKEND))?;
            let b2c = sum(counter_index(backend, DIR_BACKEND_TO_CLIENT))?;
            add(&mut totals.redirected_client_to_backend, c2b);
            add(&mut totals.redirected_backend_to_client, b2c);
        }
        Ok(totals)
    }

    pub fn upsert_affinity(&self, ip: IpAddr, value: AffinityValue) -> Result<(), KernelError> {
        lock(&self.affinity).insert(affinity_key(ip), value, 0)?;
        Ok(())
    }

    pub fn remove_affinity(&self, ip: IpAddr) {
        let _ = lock(&self.affinity).remove(&affinity_key(ip));
    }

    pub fn set_backend(&self, index: u32, value: BackendValue) -> Result<(), KernelError> {
        lock(&self.backends).set(index, value, 0)?;
        Ok(())
    }
}

fn add(total: &mut Counter, c: Counter) {
    total.bytes += c.bytes;
    total.packets += c.packets;
}

/// IPv4 goes in the first four bytes so bpftool shows `127,0,0,1,0,...`.
pub fn affinity_key(ip: IpAddr) -> AffinityKey {
    let (family, addr) = ip_bytes(ip);
    AffinityKey {
        family,
        _pad: [0; 2],
        addr,
    }
}

pub fn ip_bytes(ip: IpAddr) -> (u16, [u8; 16]) {
    let mut addr = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            (AF_INET, addr)
        }
        IpAddr::V6(v6) => (AF_INET6, v6.octets()),
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the clock `bpf_ktime_get_ns` reads, for `last_seen_ns`.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_key_is_family_and_first_four_bytes() {
        let key = affinity_key("127.0.0.1".parse().expect("ip"));
        assert_eq!(key.family, AF_INET);
        assert_eq!(key.addr[..4], [127, 0, 0, 1]);
        assert!(key.addr[4..].iter().all(|b| *b == 0));
        assert_eq!(key._pad, [0, 0]);
    }

    #[test]
    fn ipv6_key_uses_all_sixteen_bytes() {
        let key = affinity_key("::1".parse().expect("ip"));
        assert_eq!(key.family, AF_INET6);
        assert_eq!(key.addr[15], 1);
    }

    #[test]
    fn equal_addresses_give_byte_identical_keys() {
        // The kernel hashes keys byte for byte: padding must never differ.
        let a = affinity_key("10.1.2.3".parse().expect("ip"));
        let b = affinity_key("10.1.2.3".parse().expect("ip"));
        // SAFETY: AffinityKey is repr(C) plain data of known size.
        let bytes = |k: &AffinityKey| unsafe {
            std::slice::from_raw_parts(
                (k as *const AffinityKey).cast::<u8>(),
                size_of::<AffinityKey>(),
            )
            .to_vec()
        };
        assert_eq!(bytes(&a), bytes(&b));
    }
}
