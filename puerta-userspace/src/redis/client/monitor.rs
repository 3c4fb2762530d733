//! `MONITOR`: every command that passes through the proxy, from every client, as a Redis server
//! shows them (`+<unix time>.<micros> [0 <client addr>] "arg" ...`). The nodes' own MONITOR would
//! show the proxy's pooled connections, not its clients.
//!
//! Feeding costs one atomic load per command while nobody monitors. A monitor that does not read
//! is bounded like any client: its lines are charged to its `client_output_limit_mb` and at most
//! [`MAX_LINES`] wait for its writer; past either it is closed, as Redis closes a monitor at its
//! output-buffer limit. The commands it watches are never slowed down by it.
//!
//! A monitor is registered when its reader sees MONITOR, but shown nothing until its writer puts
//! the `+OK` in its turn ([`Monitoring::starter`]): no line may come before the OK, and a command
//! another client sends after the monitor saw the OK must be shown, as in Redis, where both happen
//! at once. (Registering once the OK was written left a moment in which a client on another
//! worker thread could send a command the monitor never saw.)

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::redis::client::feed::FeedSender;
use crate::redis::client::output::{Charged, OutputBudget};
use crate::redis::client::registry::{flag, Entry};
use crate::redis::command::spec::{Kind, Local};
use crate::redis::command::Command;

/// Monitor lines waiting for one monitor's writer.
pub const MAX_LINES: usize = 4096;

#[derive(Default)]
pub struct Monitors {
    count: AtomicUsize,
    watching: Mutex<Vec<Watcher>>,
}

struct Watcher {
    client: Arc<Entry>,
    budget: Arc<OutputBudget>,
    lines: FeedSender<Charged>,
    started: Arc<AtomicBool>,
}

/// A client in monitor mode; dropping it (RESET, or the session ended) stops the feed.
pub struct Monitoring {
    monitors: Arc<Monitors>,
    id: u64,
    started: Arc<AtomicBool>,
}

impl Monitoring {
    /// What starts the feed, for the writer to call as it writes MONITOR's `+OK`.
    pub fn starter(&self) -> impl FnOnce() + Send + 'static {
        let started = self.started.clone();
        move || started.store(true, Ordering::Release)
    }
}

impl Drop for Monitoring {
    fn drop(&mut self) {
        self.monitors.remove(self.id);
    }
}

impl Monitors {
    /// Registers `client` as a monitor whose `lines` are fed once [`Monitoring::starter`] ran.
    pub fn add(
        self: &Arc<Self>,
        client: &Arc<Entry>,
        budget: &Arc<OutputBudget>,
        lines: FeedSender<Charged>,
    ) -> Monitoring {
        let started = Arc::new(AtomicBool::new(false));
        let mut watching = self.lock();
        watching.push(Watcher {
            client: client.clone(),
            budget: budget.clone(),
            lines,
            started: started.clone(),
        });
        self.count.store(watching.len(), Ordering::Relaxed);
        client.set_flag(flag::MONITOR, true);
        Monitoring {
            monitors: self.clone(),
            id: client.id,
            started,
        }
    }

    fn remove(&self, id: u64) {
        let mut watching = self.lock();
        watching.retain(|w| {
            if w.client.id == id {
                w.client.set_flag(flag::MONITOR, false);
            }
            w.client.id != id
        });
        self.count.store(watching.len(), Ordering::Relaxed);
    }

    /// Shows `cmd`, sent by `from`, to every monitor.
    pub fn feed(&self, cmd: &Command, from: &Entry) {
        if self.count.load(Ordering::Relaxed) == 0 || !shown(cmd) {
            return;
        }
        let line = Bytes::from(line(cmd, from));
        for watcher in self.lock().iter() {
            if !watcher.started.load(Ordering::Acquire) {
                continue;
            }
            let charged = watcher.budget.charge(line.clone());
            if watcher.lines.try_send(charged).is_err() {
                tracing::info!(
                    client = watcher.client.id,
                    "closing a MONITOR client that does not keep up"
                );
                watcher.client.kill();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watcher>> {
        self.watching.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Redis does not show administration commands, nor AUTH and HELLO (their passwords).
fn shown(cmd: &Command) -> bool {
    !matches!(
        cmd.kind(),
        None | Some(Kind::Admin | Kind::Local(Local::Auth | Local::Hello))
    )
}

fn line(cmd: &Command, from: &Entry) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut line = String::with_capacity(64 + cmd.size() * 2);
    let addr = from.addr.map(|a| a.to_string()).unwrap_or_default();
    let _ = write!(
        line,
        "+{}.{:06} [0 {addr}]",
        now.as_secs(),
        now.subsec_micros()
    );
    for arg in cmd.args() {
        line.push(' ');
        quote(&mut line, arg);
    }
    line.push_str("\r\n");
    line
}

/// Redis' `sdscatrepr`: a quoted string with escapes for quotes, backslashes and non-printable
/// bytes (so a line can never contain CR or LF).
fn quote(out: &mut String, arg: &[u8]) {
    out.push('"');
    for &b in arg {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            7 => out.push_str("\\a"),
            8 => out.push_str("\\b"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::client::registry::register;
    use crate::redis::cluster::refresh::tests::config;
    use crate::redis::cluster::Cluster;

    #[test]
    fn lines_quote_like_redis() {
        let mut out = String::new();
        quote(&mut out, b"a \"b\"\\\r\n\x01\xff");
        assert_eq!(out, r#""a \"b\"\\\r\n\x01\xff""#);
    }

    #[tokio::test]
    async fn monitors_see_commands_until_they_stop() {
        let cluster = Cluster::new(config(1));
        let addr = "127.0.0.1:5000".parse().ok();
        let watcher = register(&cluster, addr, None);
        let sender = register(&cluster, addr, None);
        let budget = OutputBudget::new(None, 1, None, Default::default());
        let monitors = Arc::new(Monitors::default());
        let (tx, mut rx) = crate::redis::client::feed::unwatched(8);
        let monitoring = monitors.add(&watcher.entry, &budget, tx);
        assert!(watcher.entry.has_flag(flag::MONITOR));
        monitors.feed(&Command::from_words(&["get", "before"]), &sender.entry);
        assert!(rx.try_recv().is_err(), "nothing before the OK is written");
        monitoring.starter()();
        monitors.feed(&Command::from_words(&["set", "k", "v w"]), &sender.entry);
        monitors.feed(&Command::from_words(&["auth", "secret"]), &sender.entry);
        monitors.feed(
            &Command::from_words(&["config", "set", "x", "y"]),
            &sender.entry,
        );
        let line = rx.try_recv().expect("a line");
        let text = String::from_utf8_lossy(line.bytes()).into_owned();
        assert!(
            text.starts_with('+')
                && text.ends_with(" [0 127.0.0.1:5000] \"set\" \"k\" \"v w\"\r\n"),
            "{text:?}"
        );
        assert!(rx.try_recv().is_err(), "AUTH and CONFIG are not shown");
        drop(monitoring);
        assert!(!watcher.entry.has_flag(flag::MONITOR));
        monitors.feed(&Command::from_words(&["get", "k"]), &sender.entry);
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_monitor_that_does_not_read_is_closed() {
        let cluster = Cluster::new(config(1));
        let watcher = register(&cluster, None, None);
        let budget = OutputBudget::new(None, 1, None, Default::default());
        let monitors = Arc::new(Monitors::default());
        let (tx, _rx) = crate::redis::client::feed::unwatched(1);
        let monitoring = monitors.add(&watcher.entry, &budget, tx);
        monitoring.starter()();
        let get = Command::from_words(&["get", "k"]);
        monitors.feed(&get, &watcher.entry);
        assert!(!watcher.entry.is_killed());
        monitors.feed(&get, &watcher.entry);
        assert!(watcher.entry.is_killed());
    }
}
