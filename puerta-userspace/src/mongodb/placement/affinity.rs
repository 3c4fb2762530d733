//! Session affinity: a client IP keeps going to the same mongos. Cursors and sessions live on one mongos,
//! so a client whose `getMore` lands elsewhere gets `CursorNotFound`; pinning by IP avoids that without
//! reading the protocol.
//!
//! An entry lives while the client has connections and for `session_timeout` after the last one closed.
//! Every change is also handed to an [`AffinityMirror`], so the kernel path can keep a pinned BPF map in
//! step with this table (the table here stays the source of truth).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AffinityEntry {
    /// Index into the configured backends.
    pub backend: usize,
    /// When a connection of this client last opened or closed.
    pub last_seen: Instant,
    /// Connections of this client currently open through Puerta.
    pub live_conns: u32,
}

impl AffinityEntry {
    fn expired(&self, now: Instant, timeout: Duration) -> bool {
        self.live_conns == 0 && now.saturating_duration_since(self.last_seen) >= timeout
    }
}

/// Receives every change of the table, e.g. to mirror it into a BPF hash map. Calls happen under the
/// table's lock, in order, so a mirror sees the same sequence of states; keep them quick.
pub trait AffinityMirror: Send + Sync {
    fn upsert(&self, ip: IpAddr, entry: &AffinityEntry) {
        let _ = (ip, entry);
    }
    fn remove(&self, ip: IpAddr) {
        let _ = ip;
    }
}

/// The default mirror: nothing outside the process follows the table.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMirror;

impl AffinityMirror for NoMirror {}

/// How a connection got its backend, so the caller can log moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The client was pinned to a healthy backend and stays there.
    Pinned,
    /// First connection (or the previous entry expired): placed by the balancer.
    New,
    /// The pinned backend is down; the client was moved.
    Moved { from: usize },
}

pub struct AffinityTable {
    entries: Mutex<HashMap<IpAddr, AffinityEntry>>,
    timeout: Duration,
    mirror: Arc<dyn AffinityMirror>,
}

impl AffinityTable {
    pub fn new(timeout: Duration, mirror: Arc<dyn AffinityMirror>) -> AffinityTable {
        AffinityTable {
            entries: Mutex::new(HashMap::new()),
            timeout,
            mirror,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, AffinityEntry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Chooses the backend for a new connection from `ip` and counts the connection. Keeps the pinned
    /// backend while `is_up` says it is healthy, otherwise asks `place` (the balancer) for one. The
    /// decision happens under the lock, so two simultaneous first connections of one client cannot be
    /// placed on different backends. `None` when `place` finds nothing.
    pub fn acquire(
        &self,
        ip: IpAddr,
        now: Instant,
        is_up: impl Fn(usize) -> bool,
        place: impl FnOnce() -> Option<usize>,
    ) -> Option<(usize, Placement)> {
        let mut entries = self.lock();
        let previous = entries
            .get(&ip)
            .filter(|e| !e.expired(now, self.timeout))
            .copied();
        let (backend, placement, live_conns) = match previous {
            Some(e) if is_up(e.backend) => (e.backend, Placement::Pinned, e.live_conns),
            Some(e) => (place()?, Placement::Moved { from: e.backend }, e.live_conns),
            None => (place()?, Placement::New, 0),
        };
        let entry = AffinityEntry {
            backend,
            last_seen: now,
            live_conns: live_conns + 1,
        };
        entries.insert(ip, entry);
        self.mirror.upsert(ip, &entry);
        Some((backend, placement))
    }

    /// Moves `ip` to `backend` (its connection went there after the chosen one failed to connect).
    /// Returns the previous backend if it changed.
    pub fn repin(&self, ip: IpAddr, backend: usize, now: Instant) -> Option<usize> {
        let mut entries = self.lock();
        let entry = entries.get_mut(&ip)?;
        let from = entry.backend;
        if from == backend {
            return None;
        }
        entry.backend = backend;
        entry.last_seen = now;
        let copy = *entry;
        self.mirror.upsert(ip, &copy);
        Some(from)
    }

    /// Pins `ip` to `backend` unless it has a pin already (one made here wins over one carried over
    /// from the previous instance). The pin has no connection here yet, so it expires after
    /// `timeout` unless the client comes. True when added.
    pub fn seed(&self, ip: IpAddr, backend: usize, now: Instant) -> bool {
        let mut entries = self.lock();
        if entries.contains_key(&ip) {
            return false;
        }
        let entry = AffinityEntry {
            backend,
            last_seen: now,
            live_conns: 0,
        };
        entries.insert(ip, entry);
        self.mirror.upsert(ip, &entry);
        true
    }

    /// One connection of `ip` closed; the expiry clock starts when the last one does.
    pub fn release(&self, ip: IpAddr, now: Instant) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(&ip) {
            entry.live_conns = entry.live_conns.saturating_sub(1);
            entry.last_seen = now;
            let copy = *entry;
            self.mirror.upsert(ip, &copy);
        }
    }

    /// Removes entries idle for `timeout`; returns how many went.
    pub fn expire(&self, now: Instant) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|ip, e| {
            let keep = !e.expired(now, self.timeout);
            if !keep {
                self.mirror.remove(*ip);
            }
            keep
        });
        before - entries.len()
    }

    pub fn get(&self, ip: IpAddr) -> Option<AffinityEntry> {
        self.lock().get(&ip).copied()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// After a reload renumbered the backends: `renumber(old)` is the new index, or `None` when the
    /// backend was removed, which drops the entry (its client is placed afresh next time; its live
    /// flows drain on the old backend). Returns how many entries were dropped.
    pub fn renumber(&self, renumber: impl Fn(usize) -> Option<usize>) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|ip, e| match renumber(e.backend) {
            Some(new) => {
                e.backend = new;
                self.mirror.upsert(*ip, e);
                true
            }
            None => {
                self.mirror.remove(*ip);
                false
            }
        });
        before - entries.len()
    }

    /// A copy of every entry, for the admin endpoint.
    pub fn snapshot(&self) -> Vec<(IpAddr, AffinityEntry)> {
        self.lock().iter().map(|(ip, e)| (*ip, *e)).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Releases the connection's count when the flow ends, whatever way it ends.
pub struct Lease {
    table: Arc<AffinityTable>,
    ip: IpAddr,
}

impl Lease {
    pub fn new(table: Arc<AffinityTable>, ip: IpAddr) -> Lease {
        Lease { table, ip }
    }

    pub fn table(&self) -> &AffinityTable {
        &self.table
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.table.release(self.ip, Instant::now());
    }
}

/// Removes expired entries until `stop` fires. Runs often enough that an entry outlives its timeout by
/// at most a few seconds, and rarely enough to cost nothing.
pub async fn cleanup_task(table: Arc<AffinityTable>, stop: tokio_util::sync::CancellationToken) {
    let period = (table.timeout() / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let removed = table.expire(Instant::now());
                if removed > 0 {
                    tracing::debug!(removed, left = table.len(), "expired session affinity entries");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
