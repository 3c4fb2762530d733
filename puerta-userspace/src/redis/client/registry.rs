//! The proxy's own clients, as a Redis server knows its clients: for `CLIENT LIST/INFO/KILL` and
//! INFO's client counts. A session updates its entry with relaxed atomic stores (the last command,
//! the time of its last read); names and users change rarely and sit behind a mutex.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::redis::client::feed::FeedSender;
use crate::redis::client::hangup::{Hangup, Reason};
use crate::redis::client::output::OutputBudget;
use crate::redis::client::tracking::Invalidation;
use crate::redis::cluster::Cluster;
use crate::redis::command::spec;
use crate::redis::stats::Stats;

/// Bits of [`Entry`]'s flags, shown in `CLIENT LIST` like Redis' own.
pub mod flag {
    /// In MULTI (`x`).
    pub const MULTI: u8 = 1 << 0;
    /// Subscribed (`P`).
    pub const PUBSUB: u8 = 1 << 1;
    /// In MONITOR mode (`O`).
    pub const MONITOR: u8 = 1 << 2;
    /// CLIENT TRACKING on (`t`), in BCAST mode (`B`).
    pub const TRACKING: u8 = 1 << 3;
    pub const BCAST: u8 = 1 << 4;
    /// Closed once its current reply is written (`c`): it killed itself (`CLIENT KILL … SKIPME no`).
    pub const CLOSE_AFTER_REPLY: u8 = 1 << 5;
}

#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<Entry>>>,
    /// Clients waiting for a blocking command, for INFO's `blocked_clients`.
    blocked: AtomicU64,
}

/// One connected client.
pub struct Entry {
    pub id: u64,
    pub addr: Option<SocketAddr>,
    pub laddr: Option<SocketAddr>,
    created: Instant,
    /// Why the session must end (CLIENT KILL, the output limit, shutdown), and its tasks' wake-ups.
    pub hangup: Arc<Hangup>,
    last_read_ms: AtomicU64,
    /// The table index of the last command (`u16::MAX`: none yet).
    last_command: AtomicU16,
    /// The subcommand of the last command with subcommands (lower case), written only for those.
    last_sub: Mutex<Option<Box<str>>>,
    resp: AtomicU8,
    flags: AtomicU8,
    /// Blocking commands in flight (`b` in CLIENT LIST while any is).
    blocking: AtomicU32,
    name: Mutex<Option<Bytes>>,
    user: Mutex<Arc<str>>,
    /// Where invalidations for this client go, set once its writer runs: what another client's
    /// `CLIENT TRACKING ON REDIRECT <this id>` sends to.
    inbox: OnceLock<Inbox>,
}

/// A client's writer, as the tracking table reaches it.
#[derive(Clone)]
pub struct Inbox {
    pub sink: FeedSender<Invalidation>,
    /// What the pushes count against until written.
    pub budget: Arc<OutputBudget>,
}

/// A registered client; dropping it (the session ended, or its task panicked) removes the entry and
/// its count.
pub struct Registered {
    pub entry: Arc<Entry>,
    cluster: Arc<Cluster>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.cluster.clients.clients).remove(&self.entry.id);
        let stats = &self.cluster.stats;
        stats.clients_connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Enters a new client in `cluster`'s registry.
pub fn register(
    cluster: &Arc<Cluster>,
    addr: Option<SocketAddr>,
    laddr: Option<SocketAddr>,
) -> Registered {
    cluster.clients.add(cluster, addr, laddr)
}

impl Registry {
    /// Raises `reason` for every client registered now.
    pub fn hang_up_all(&self, reason: Reason) {
        for entry in lock(&self.clients).values() {
            entry.hangup.raise(reason);
        }
    }

    fn add(
        &self,
        cluster: &Arc<Cluster>,
        addr: Option<SocketAddr>,
        laddr: Option<SocketAddr>,
    ) -> Registered {
        let stats = &cluster.stats;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(Entry {
            id,
            addr,
            laddr,
            created: Instant::now(),
            hangup: Arc::default(),
            last_read_ms: AtomicU64::new(0),
            last_command: AtomicU16::new(u16::MAX),
            last_sub: Mutex::new(None),
            resp: AtomicU8::new(2),
            flags: AtomicU8::new(0),
            blocking: AtomicU32::new(0),
            name: Mutex::new(None),
            user: Mutex::new("default".into()),
            inbox: OnceLock::new(),
        });
        lock(&self.clients).insert(id, entry.clone());
        Stats::bump(&stats.clients_total);
        Stats::bump(&stats.clients_connected);
        Registered {
            entry,
            cluster: cluster.clone(),
        }
    }

    /// Every client, oldest first.
    pub fn list(&self) -> Vec<Arc<Entry>> {
        lock(&self.clients).values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        lock(&self.clients).get(&id).cloned()
    }

    pub fn blocked(&self) -> u64 {
        self.blocked.load(Ordering::Relaxed)
    }
}

impl Entry {
    pub fn age_secs(&self) -> u64 {
        self.created.elapsed().as_secs()
    }

    /// CLIENT KILL: the session ends at once.
    pub fn kill(&self) {
        self.hangup.raise(Reason::Killed);
    }

    pub fn is_killed(&self) -> bool {
        self.hangup.has(Reason::Killed)
    }

    /// A read from the client at `now`: what `idle` counts from.
    pub fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.created).as_millis() as u64;
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    /// The command now running, and its first argument (the subcommand, for a command that has
    /// them).
    pub fn command(&self, spec: Option<&'static spec::CommandSpec>, sub: Option<&[u8]>) {
        let Some(spec) = spec else { return };
        if let Some(index) = spec::index(spec) {
            self.last_command.store(index as u16, Ordering::Relaxed);
        }
        if spec.flags & spec::flag::CONTAINER != 0 {
            let sub = sub.map(|s| String::from_utf8_lossy(&s[..s.len().min(32)]).to_lowercase());
            *lock(&self.last_sub) = sub.map(String::into_boxed_str);
        }
    }

    pub fn set_resp(&self, resp: u8) {
        self.resp.store(resp, Ordering::Relaxed);
    }

    /// The protocol the client speaks now: 2 or 3.
    pub fn resp(&self) -> u8 {
        self.resp.load(Ordering::Relaxed)
    }

    /// Called once, when the client's writer starts.
    pub fn set_inbox(&self, inbox: Inbox) {
        let _ = self.inbox.set(inbox);
    }

    pub fn inbox(&self) -> Option<&Inbox> {
        self.inbox.get()
    }

    pub fn set_name(&self, name: Option<Bytes>) {
        *lock(&self.name) = name;
    }

    pub fn name(&self) -> Option<Bytes> {
        lock(&self.name).clone()
    }

    pub fn set_user(&self, user: &str) {
        *lock(&self.user) = user.into();
    }

    pub fn user(&self) -> Arc<str> {
        lock(&self.user).clone()
    }

    pub fn has_flag(&self, bit: u8) -> bool {
        self.flags.load(Ordering::Relaxed) & bit != 0
    }

    /// Sets or clears `bit`.
    pub fn set_flag(&self, bit: u8, on: bool) {
        match on {
            true => self.flags.fetch_or(bit, Ordering::Relaxed),
            false => self.flags.fetch_and(!bit, Ordering::Relaxed),
        };
    }

    /// This client as a line of `CLIENT LIST` (Redis 7.0's fields; memory fields are the proxy's
    /// and left 0), without the final newline. `qbuf`: the bytes of the command being run, for the
    /// client asking (Redis still holds it in the query buffer), else 0.
    pub fn line(&self, qbuf: usize) -> String {
        let age = self.created.elapsed();
        let idle = age.as_millis() as u64
            - self
                .last_read_ms
                .load(Ordering::Relaxed)
                .min(age.as_millis() as u64);
        let mut flags = String::new();
        for (bit, letter) in [
            (flag::MULTI, 'x'),
            (flag::PUBSUB, 'P'),
            (flag::MONITOR, 'O'),
            (flag::CLOSE_AFTER_REPLY, 'c'),
        ] {
            if self.has_flag(bit) {
                flags.push(letter);
            }
        }
        if self.blocking.load(Ordering::Relaxed) > 0 {
            flags.push('b');
        }
        // After `b`, in Redis' order.
        for (bit, letter) in [(flag::TRACKING, 't'), (flag::BCAST, 'B')] {
            if self.has_flag(bit) {
                flags.push(letter);
            }
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let spec = match self.last_command.load(Ordering::Relaxed) {
            u16::MAX => None,
            index => spec::all().get(index as usize),
        };
        let cmd = match spec {
            None => "NULL".to_string(),
            Some(spec) if spec.flags & spec::flag::CONTAINER != 0 => match &*lock(&self.last_sub) {
                Some(sub) => format!("{}|{sub}", spec.name),
                None => spec.name.to_string(),
            },
            Some(spec) => spec.name.to_string(),
        };
        let name = self
            .name()
            .map(|n| String::from_utf8_lossy(&n).into_owned());
        let mut line = String::with_capacity(256);
        let _ = write!(
            line,
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={flags} db=0 sub=0 psub=0 \
             ssub=0 multi=-1 qbuf={qbuf} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 \
             omem=0 tot-mem=0 events=r cmd={cmd} user={} redir=-1 resp={}",
            self.id,
            show(self.addr),
            show(self.laddr),
            name.unwrap_or_default(),
            age.as_secs(),
            idle / 1000,
            self.user(),
            self.resp.load(Ordering::Relaxed),
        );
        line
    }
}

/// A blocking command in flight: its client counts as blocked until this is dropped (the reply came,
/// or the client left).
pub struct Blocked {
    cluster: Arc<Cluster>,
    entry: Arc<Entry>,
}

impl Blocked {
    pub fn new(cluster: &Arc<Cluster>, entry: &Arc<Entry>) -> Blocked {
        if entry.blocking.fetch_add(1, Ordering::Relaxed) == 0 {
            cluster.clients.blocked.fetch_add(1, Ordering::Relaxed);
        }
        Blocked {
            cluster: cluster.clone(),
            entry: entry.clone(),
        }
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        if self.entry.blocking.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.cluster.clients.blocked.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn show(addr: Option<SocketAddr>) -> String {
    addr.map(|a| a.to_string()).unwrap_or_default()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
