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
//!
//! With `REDIRECT id` a client's invalidations go to another client instead, as Redis sends them:
//! a push to a RESP3 one, a `__redis__:invalidate` message to a subscribed RESP2 one (written only
//! while it is subscribed). They are written at once there: Redis orders them with nothing on
//! another connection either.

pub mod feed;
pub mod options;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::redis::client::output::{Charged, OutputBudget};
use crate::redis::client::registry::{flag, Entry, Inbox};
use crate::redis::resp::{Frame, Protocol};

pub use options::Mode;

/// Invalidations waiting for one client's writer: past this in the channel the client is closed (it
/// must not miss one); past this held behind a slow reply they collapse into one flush.
pub const MAX_PENDING: usize = 4096;
/// Keys remembered for all clients; past it the oldest are invalidated and forgotten, like Redis'
/// `tracking-table-max-keys`.
const MAX_KEYS: usize = 1_000_000;
/// Bytes the table may hold (keys, the readers of each, the eviction order), however many clients
/// read however many keys.
const MAX_TABLE_BYTES: usize = 64 * 1024 * 1024;
/// What one remembered key costs beyond its bytes (map entry, order entry).
const KEY_OVERHEAD: usize = 64;
/// What one more reader of a key costs.
const READER_BYTES: usize = std::mem::size_of::<u64>();

/// What a remembered key with `readers` readers is charged in `Table::bytes`.
fn entry_bytes(key: &[u8], readers: usize) -> usize {
    key.len() + KEY_OVERHEAD + READER_BYTES * readers
}

/// A push for one client, to be written once its writer has finished the reply of command number
/// `after` (counted from 1 in the order the client sent them). Its bytes count against the client's
/// `client_output_limit_mb` until written, like any reply.
#[derive(Debug)]
pub struct Invalidation {
    pub after: u64,
    pub push: Charged,
    /// A RESP2 pub/sub message (a redirected invalidation): written only while the client is
    /// subscribed, dropped otherwise, as Redis does.
    pub message: bool,
}

impl Invalidation {
    /// `>2 invalidate [keys]` (or its RESP2 message form); `None` = flush everything.
    fn charged(
        keys: Option<Vec<Bytes>>,
        after: u64,
        budget: &Arc<OutputBudget>,
        message: bool,
    ) -> Invalidation {
        Invalidation {
            after,
            push: budget.charge(encode(keys, message)),
            message,
        }
    }

    /// A flush that stands for every invalidation held before it (it is never charged: a few bytes).
    pub fn flush(after: u64) -> Invalidation {
        Invalidation {
            after,
            push: Charged::free(encode(None, false)),
            message: false,
        }
    }
}

/// Redis' two forms: `>2 invalidate keys` on RESP3, `*3 message __redis__:invalidate keys` for a
/// subscribed RESP2 client.
fn encode(keys: Option<Vec<Bytes>>, message: bool) -> Bytes {
    let keys = match keys {
        Some(keys) => Frame::Array(keys.into_iter().map(Frame::Bulk).collect()),
        // `_-1`/`$-1`, as Redis writes a flush in each form.
        None => Frame::Null,
    };
    let mut out = BytesMut::new();
    match message {
        true => Frame::Array(vec![
            Frame::bulk("message"),
            Frame::bulk("__redis__:invalidate"),
            keys,
        ])
        .encode_in(Protocol::Resp2, &mut out),
        false => {
            Frame::Push(vec![Frame::bulk("invalidate"), keys]).encode_in(Protocol::Resp3, &mut out)
        }
    }
    out.freeze()
}

struct Tracker {
    mode: Mode,
    /// The tracking client's own writer, or the one it redirects to.
    inbox: Inbox,
    entry: Arc<Entry>,
    /// `REDIRECT`: the client that gets the invalidations.
    redirect: Option<Arc<Entry>>,
    /// The number of the client's latest command sent while it tracked.
    latest: u64,
}

/// The table's bounds: the constants above, smaller in tests.
struct Limits {
    keys: usize,
    bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            keys: MAX_KEYS,
            bytes: MAX_TABLE_BYTES,
        }
    }
}

#[derive(Default)]
struct Table {
    clients: HashMap<u64, Tracker>,
    /// How many of them are in BCAST mode: without any, a write costs one map lookup.
    bcast: usize,
    /// Key → clients that read it since its last invalidation (ids of clients gone are skipped).
    keys: HashMap<Bytes, Vec<u64>>,
    /// Keys in the order first remembered, for eviction past the bounds.
    order: VecDeque<Bytes>,
    /// What `keys` and `order` hold, by the costs above.
    bytes: usize,
    limits: Limits,
    /// The feed's supervisor while any client tracks, and its generation.
    feed: Option<(CancellationToken, u64)>,
    generations: u64,
}

#[derive(Default)]
pub struct Tracking {
    table: Mutex<Table>,
    /// Masters whose feed connection is up, with the feed generation that connected them: the
    /// tasks of a stopped feed may still be winding down while the next one starts, and must not
    /// count (or uncount) for it.
    pub(crate) connected: Mutex<HashMap<Arc<str>, u64>>,
}

/// A feed to start: it runs until `stop`, and marks what it connects with `generation`.
pub struct FeedStart {
    pub stop: CancellationToken,
    pub generation: u64,
}

/// Who is starting to track.
pub struct NewTracker {
    pub entry: Arc<Entry>,
    /// Where its invalidations go: its own writer, or that of `redirect`.
    pub inbox: Inbox,
    pub redirect: Option<Arc<Entry>>,
    pub mode: Mode,
}

impl Tracking {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking for a client whose `CLIENT TRACKING ON` is command number `at`. Returns the
    /// token of a feed to start when this is the first tracking client.
    pub fn enable(&self, new: NewTracker, at: u64) -> Option<FeedStart> {
        let mut table = self.table();
        let tracker = Tracker {
            mode: new.mode,
            inbox: new.inbox,
            entry: new.entry,
            redirect: new.redirect,
            latest: at,
        };
        table.bcast += usize::from(tracker.mode.bcast);
        tracker.entry.set_flag(flag::TRACKING, true);
        tracker.entry.set_flag(flag::BCAST, tracker.mode.bcast);
        if let Some(old) = table.clients.insert(tracker.entry.id, tracker) {
            table.bcast -= usize::from(old.mode.bcast);
        }
        if table.feed.is_some() {
            return None;
        }
        let stop = CancellationToken::new();
        table.generations += 1;
        let generation = table.generations;
        table.feed = Some((stop.clone(), generation));
        Some(FeedStart { stop, generation })
    }

    /// The running feed's generation (`None` while nobody tracks).
    pub fn feed_generation(&self) -> Option<u64> {
        self.table()
            .feed
            .as_ref()
            .map(|(_, generation)| *generation)
    }

    /// Stops tracking for a client (OFF, RESET, disconnect); the feed stops with the last one.
    pub fn disable(&self, id: u64) {
        self.table().remove(id);
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
            table.forget_all();
            let all: Vec<u64> = table.clients.keys().copied().collect();
            for id in all {
                table.send(id, None);
            }
            return;
        };
        let mut per_client: HashMap<u64, Vec<Bytes>> = HashMap::new();
        for key in &keys {
            if let Some(readers) = table.keys.remove(key) {
                table.bytes -= entry_bytes(key, readers.len());
                for id in readers {
                    per_client.entry(id).or_default().push(key.clone());
                }
            }
        }
        // BCAST: one message per prefix, with the keys it matches, as Redis sends them.
        let mut per_prefix: Vec<(u64, Vec<Bytes>)> = Vec::new();
        if table.bcast > 0 {
            for (id, tracker) in table.clients.iter().filter(|(_, t)| t.mode.bcast) {
                for group in tracker.mode.by_prefix(&keys) {
                    per_prefix.push((*id, group));
                }
            }
        }
        for (id, keys) in per_client.into_iter().chain(per_prefix) {
            table.send(id, Some(keys));
        }
    }
}

impl Table {
    fn remove(&mut self, id: u64) {
        let Some(old) = self.clients.remove(&id) else {
            return;
        };
        self.bcast -= usize::from(old.mode.bcast);
        old.entry.set_flag(flag::TRACKING, false);
        old.entry.set_flag(flag::BCAST, false);
        if self.clients.is_empty() {
            self.forget_all();
            if let Some((feed, _)) = self.feed.take() {
                feed.cancel();
            }
        }
    }

    fn forget_all(&mut self) {
        self.keys.clear();
        self.order.clear();
        self.bytes = 0;
    }

    fn remember(&mut self, id: u64, key: &Bytes) {
        if let Some(readers) = self.keys.get(key) {
            if readers.contains(&id) {
                return;
            }
        }
        let cost = match self.keys.contains_key(key) {
            true => READER_BYTES,
            false => entry_bytes(key, 1),
        };
        self.make_room(cost);
        // make_room may have evicted this very key: charge what is actually added.
        self.bytes += match self.keys.get_mut(key) {
            Some(readers) => {
                readers.push(id);
                READER_BYTES
            }
            None => {
                self.keys.insert(key.clone(), vec![id]);
                self.order.push_back(key.clone());
                entry_bytes(key, 1)
            }
        };
        // Invalidated keys leave stale entries behind; drop them once they outnumber live ones.
        if self.order.len() > 2 * self.keys.len() + 1024 {
            let mut seen = HashSet::new();
            let keys = &self.keys;
            self.order
                .retain(|k| keys.contains_key(k) && seen.insert(k.clone()));
        }
    }

    /// Invalidates and forgets the oldest keys until `cost` more fits in the bounds.
    fn make_room(&mut self, cost: usize) {
        while self.keys.len() >= self.limits.keys || self.bytes + cost > self.limits.bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(readers) = self.keys.remove(&oldest) {
                self.bytes -= entry_bytes(&oldest, readers.len());
                for reader in readers {
                    self.send(reader, Some(vec![oldest.clone()]));
                }
            }
        }
    }

    /// Queues an invalidation for client `id`; a client too far behind to take it is closed, since
    /// a missed invalidation would leave its cache wrong for good. Redirected ones go to their
    /// target at once; one the target cannot take closes the target, one whose target is gone is
    /// lost, as in Redis.
    fn send(&mut self, id: u64, keys: Option<Vec<Bytes>>) {
        let Some(tracker) = self.clients.get(&id) else {
            return;
        };
        let (after, message, reader) = match &tracker.redirect {
            // RESP2 has no pushes: Redis accepts the tracking and sends such a client nothing.
            None if tracker.entry.resp() == 2 => return,
            None => (tracker.latest, false, &tracker.entry),
            Some(target) => (0, target.resp() == 2, target),
        };
        let push = Invalidation::charged(keys, after, &tracker.inbox.budget, message);
        match tracker.inbox.sink.try_send(push) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) if tracker.redirect.is_some() => {}
            Err(_) => {
                tracing::warn!(
                    client = reader.id,
                    "closing client: it does not read its cache invalidations"
                );
                reader.kill();
                if tracker.redirect.is_none() {
                    self.remove(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
