//! Client-side caching through the proxy (`CLIENT TRACKING`, RESP3). The nodes cannot track Puerta's
//! clients: their reads arrive on shared pooled connections. So Puerta keeps one `CLIENT TRACKING ON
//! BCAST` connection to every master while any client tracks ([`feed`]), which tells it of every key
//! written, and remembers itself which client read which key. An invalidation goes to exactly the
//! clients that read the key since their last invalidation (or, in BCAST mode, whose prefixes match).
//!
//! Two races are closed here. A read is remembered before it is sent, so a write that lands after it
//! always invalidates. And an invalidation is written to the client only after the replies of every
//! command it had sent when the invalidation arrived ([`Invalidation::after`]): otherwise a read's
//! stale reply, sent by the node before the write, could reach the client after the invalidation and
//! be cached for good. Whenever Puerta may have missed writes (a feed connection opened or lost), it
//! tells every tracking client to flush everything, as Redis does when the tracking table is reset.

pub mod feed;
pub mod options;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::redis::client::registry::Entry;
use crate::redis::resp::Frame;

pub use options::Mode;

/// Invalidations waiting for one client's writer before it is closed (it must not miss one).
pub const MAX_PENDING: usize = 4096;
/// Keys remembered for all clients; past it the oldest are invalidated and forgotten, like Redis'
/// `tracking-table-max-keys`.
const MAX_KEYS: usize = 1_000_000;
/// Bytes of those keys.
const MAX_KEY_BYTES: usize = 64 * 1024 * 1024;

/// A push for one client, to be written once its writer has finished the reply of command number
/// `after` (counted from 1 in the order the client sent them).
#[derive(Debug)]
pub struct Invalidation {
    pub after: u64,
    pub frame: Frame,
}

impl Invalidation {
    /// `>2 invalidate [keys]`; `None` = flush everything.
    fn push(keys: Option<Vec<Bytes>>, after: u64) -> Invalidation {
        let keys = match keys {
            Some(keys) => Frame::Array(keys.into_iter().map(Frame::Bulk).collect()),
            None => Frame::Null,
        };
        Invalidation {
            after,
            frame: Frame::Push(vec![Frame::bulk("invalidate"), keys]),
        }
    }
}

struct Tracker {
    mode: Mode,
    sink: mpsc::Sender<Invalidation>,
    entry: Arc<Entry>,
    /// The number of the client's latest command sent while it tracked.
    latest: u64,
}

#[derive(Default)]
struct Table {
    clients: HashMap<u64, Tracker>,
    /// Key → clients that read it since its last invalidation (ids of clients gone are skipped).
    keys: HashMap<Bytes, Vec<u64>>,
    /// Keys in the order first remembered, for eviction past the bounds.
    order: std::collections::VecDeque<Bytes>,
    key_bytes: usize,
    /// The feed's supervisor while any client tracks.
    feed: Option<CancellationToken>,
}

#[derive(Default)]
pub struct Tracking {
    table: Mutex<Table>,
    /// Masters whose feed connection is up.
    pub(crate) connected: Mutex<std::collections::HashSet<Arc<str>>>,
}

impl Tracking {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking for a client whose `CLIENT TRACKING ON` is command number `at`. Returns the
    /// token of a feed to start when this is the first tracking client.
    pub fn enable(
        &self,
        entry: &Arc<Entry>,
        mode: Mode,
        sink: mpsc::Sender<Invalidation>,
        at: u64,
    ) -> Option<CancellationToken> {
        let mut table = self.table();
        table.clients.insert(
            entry.id,
            Tracker {
                mode,
                sink,
                entry: entry.clone(),
                latest: at,
            },
        );
        if table.feed.is_some() {
            return None;
        }
        let token = CancellationToken::new();
        table.feed = Some(token.clone());
        Some(token)
    }

    /// Stops tracking for a client (OFF, RESET, disconnect); the feed stops with the last one.
    pub fn disable(&self, id: u64) {
        let mut table = self.table();
        if table.clients.remove(&id).is_some() && table.clients.is_empty() {
            table.keys.clear();
            table.order.clear();
            table.key_bytes = 0;
            if let Some(feed) = table.feed.take() {
                feed.cancel();
            }
        }
    }

    pub fn tracking_clients(&self) -> usize {
        self.table().clients.len()
    }

    pub fn tracked_keys(&self) -> usize {
        self.table().keys.len()
    }

    /// Command number `at` of client `id` is about to be sent; `keys` are those it reads that are
    /// to be remembered (empty for a write or an untracked read).
    pub fn sending(&self, id: u64, at: u64, keys: &[Bytes]) {
        let mut table = self.table();
        let Some(tracker) = table.clients.get_mut(&id) else {
            return;
        };
        tracker.latest = at;
        if tracker.mode.bcast {
            return;
        }
        for key in keys {
            table.remember(id, key);
        }
    }

    /// The nodes wrote `keys` (`None`: everything may have changed, e.g. FLUSHALL or a lost feed).
    pub fn invalidate(&self, keys: Option<Vec<Bytes>>) {
        let mut table = self.table();
        let Some(keys) = keys else {
            table.keys.clear();
            table.order.clear();
            table.key_bytes = 0;
            let all: Vec<u64> = table.clients.keys().copied().collect();
            for id in all {
                table.send(id, None);
            }
            return;
        };
        let mut per_client: HashMap<u64, Vec<Bytes>> = HashMap::new();
        for key in keys {
            if let Some(readers) = table.keys.remove(&key) {
                table.key_bytes -= key.len();
                for id in readers {
                    per_client.entry(id).or_default().push(key.clone());
                }
            }
            for (id, tracker) in &table.clients {
                if tracker.mode.bcast && tracker.mode.matches(&key) {
                    per_client.entry(*id).or_default().push(key.clone());
                }
            }
        }
        for (id, keys) in per_client {
            table.send(id, Some(keys));
        }
    }
}

impl Table {
    fn remember(&mut self, id: u64, key: &Bytes) {
        if let Some(readers) = self.keys.get_mut(key) {
            if !readers.contains(&id) {
                readers.push(id);
            }
            return;
        }
        while self.keys.len() >= MAX_KEYS || self.key_bytes + key.len() > MAX_KEY_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(readers) = self.keys.remove(&oldest) {
                self.key_bytes -= oldest.len();
                for reader in readers {
                    self.send(reader, Some(vec![oldest.clone()]));
                }
            }
        }
        self.keys.insert(key.clone(), vec![id]);
        self.order.push_back(key.clone());
        self.key_bytes += key.len();
        // Invalidated keys leave stale entries behind; drop them once they outnumber live ones.
        if self.order.len() > 2 * self.keys.len() + 1024 {
            let mut seen = std::collections::HashSet::new();
            let keys = &self.keys;
            self.order
                .retain(|k| keys.contains_key(k) && seen.insert(k.clone()));
        }
    }

    /// Queues an invalidation for client `id`; a client too far behind to take it is closed, since
    /// a missed invalidation would leave its cache wrong for good.
    fn send(&mut self, id: u64, keys: Option<Vec<Bytes>>) {
        let Some(tracker) = self.clients.get(&id) else {
            return;
        };
        let push = Invalidation::push(keys, tracker.latest);
        if tracker.sink.try_send(push).is_err() {
            tracing::warn!(
                client = id,
                "closing client: it does not read its cache invalidations"
            );
            tracker.entry.killed.cancel();
            self.clients.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests;
