//! Live spliced pairs across a hand-over (see `crate::handover`): the old instance stops
//! supervising its pairs and sends each pair's two sockets and state, and the sockhash they are in;
//! the new instance supervises them from there. Nothing is taken out of or put into a sockhash, so
//! the kernel keeps moving their bytes throughout and nothing queued in a psock is dropped.
//!
//! The sockhash must outlive the old process: it holds the verdict program those sockets run (a
//! psock keeps its programs, but the program redirects through that sockhash and looks peers up
//! in its peers map). Its descriptor goes along, held until the last of its pairs ends, and goes
//! on to the next instance again if they are still live then. A newer binary's pairs run its own
//! program beside them.
//!
//! Items: `sockhash <n>` with the sockhash's descriptor, then per pair
//! `pair sockhash=<n> backend=<address or -> written=<c>,<b> shut=<c>,<b>` with the client's and
//! the backend's sockets. `written` is what userspace wrote into each socket before insertion (the
//! PROXY header), `shut` whether the peer's FIN was already passed on to it.

use std::collections::HashMap;
use std::net::TcpStream as StdTcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::loader::{Inner, KernelPath};
use super::splice::{Pair, Side, Spliced};
use crate::handover::Item;

/// The pairs this process is handing over.
pub(super) struct Handoff {
    /// Cancelled when the next instance asks for the pairs.
    wanted: CancellationToken,
    outbox: Mutex<Outbox>,
    /// Signalled when a pair is deposited or ends.
    changed: Condvar,
}

#[derive(Default)]
struct Outbox {
    pairs: Vec<Pair>,
    /// The pairs went (or the wait for them ended): later ones stay and drain here.
    sealed: bool,
}

impl Handoff {
    pub(super) fn new() -> Handoff {
        Handoff {
            wanted: CancellationToken::new(),
            outbox: Mutex::new(Outbox::default()),
            changed: Condvar::new(),
        }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves when a pair should stop and be deposited; never, once the hand-over is sealed.
    pub(super) async fn wanted(&self) {
        self.wanted.cancelled().await;
        if self.outbox().sealed {
            std::future::pending::<()>().await;
        }
    }

    /// Takes `pair` for the next instance, or gives it back when that is too late.
    pub(super) fn deposit(&self, pair: Pair) -> Result<(), Pair> {
        let mut outbox = self.outbox();
        if outbox.sealed {
            return Err(pair);
        }
        outbox.pairs.push(pair);
        drop(outbox);
        self.changed.notify_all();
        Ok(())
    }
}

/// Counts a pair under supervision in this process; a hand-over waits until none is left.
pub(super) struct LiveGuard<'a>(&'a Inner);

impl<'a> LiveGuard<'a> {
    pub(super) fn enter(inner: &'a Inner) -> LiveGuard<'a> {
        inner.live.fetch_add(1, Ordering::Relaxed);
        LiveGuard(inner)
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        let handoff = &self.0.handoff;
        // Under the lock, so that a hand-over checking the count cannot miss this.
        let _outbox = handoff.outbox();
        self.0.live.fetch_sub(1, Ordering::Relaxed);
        handoff.changed.notify_all();
    }
}

/// A pair that came from the previous instance, ready to be supervised here.
pub struct AdoptedPair {
    pair: Pair,
    /// Its mongos, as the previous instance knew it (`None`: one its configuration no longer had).
    pub backend: Option<String>,
}

impl AdoptedPair {
    pub fn client_peer(&self) -> Option<std::net::SocketAddr> {
        self.pair.client.sock.peer_addr().ok()
    }
}

impl KernelPath {
    /// Stops every live pair (waiting at most `wait` for them to reach a stop) and turns them into
    /// items for the next instance. `address_of` names a pair's mongos by its backend index.
    pub fn hand_over_pairs(
        &self,
        wait: Duration,
        address_of: impl Fn(u32) -> Option<String>,
    ) -> Vec<Item> {
        let handoff = &self.inner.handoff;
        handoff.wanted.cancel();
        let deadline = Instant::now() + wait;
        let mut outbox = handoff.outbox();
        while self.inner.live.load(Ordering::Relaxed) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    staying = self.inner.live.load(Ordering::Relaxed),
                    "spliced pairs that did not stop in time stay here and drain"
                );
                break;
            }
            outbox = handoff
                .changed
                .wait_timeout(outbox, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        outbox.sealed = true;
        let pairs = std::mem::take(&mut outbox.pairs);
        drop(outbox);
        let count = pairs.len() as u64;
        self.inner.handed_over.fetch_add(count, Ordering::Relaxed);
        items_for(pairs, address_of)
    }

    /// Supervises a pair the previous instance handed over, until it ends or is handed on.
    pub async fn run_adopted(
        &self,
        adopted: AdoptedPair,
        idle_timeout: Option<Duration>,
    ) -> std::io::Result<Spliced> {
        let _live = LiveGuard::enter(&self.inner);
        self.run_pair(adopted.pair, idle_timeout).await
    }
}

/// Each sockhash once, before its pairs.
fn items_for(pairs: Vec<Pair>, address_of: impl Fn(u32) -> Option<String>) -> Vec<Item> {
    let mut numbers: HashMap<*const OwnedFd, usize> = HashMap::new();
    let mut items = Vec::new();
    for pair in pairs {
        let key = Arc::as_ptr(&pair.sockhash);
        let next = numbers.len();
        let number = *numbers.entry(key).or_insert(next);
        if number == next {
            match pair.sockhash.as_fd().try_clone_to_owned() {
                Ok(fd) => items.push(Item {
                    line: format!("sockhash {number}"),
                    fds: vec![fd],
                }),
                Err(e) => tracing::warn!("cannot hand the sockhash over: {e}"),
            }
        }
        let backend = address_of(pair.backend_index).unwrap_or_else(|| "-".to_string());
        let (c, b) = (&pair.client, &pair.backend);
        items.push(Item {
            line: format!(
                "pair sockhash={number} backend={backend} written={},{} shut={},{}",
                c.written_before,
                b.written_before,
                u8::from(c.write_shut),
                u8::from(b.write_shut)
            ),
            fds: vec![pair.client.sock.into(), pair.backend.sock.into()],
        });
    }
    items
}

#[derive(Debug, thiserror::Error)]
#[error("handed-over pair {line:?}: {why}")]
pub struct AdoptError {
    line: String,
    why: &'static str,
}

/// Takes the pairs out of `items` (leaving the other items), in the order they came. A line this
/// instance cannot read is an error, and its sockets close.
pub fn adopt_pairs(
    items: &mut Vec<Item>,
    backend_index: impl Fn(&str) -> Option<u32>,
) -> (Vec<AdoptedPair>, Vec<AdoptError>) {
    let mut sockhashes: HashMap<String, Arc<OwnedFd>> = HashMap::new();
    let (mut adopted, mut errors) = (Vec::new(), Vec::new());
    let mut rest = Vec::new();
    for item in items.drain(..) {
        if let Some(number) = item.line.strip_prefix("sockhash ") {
            match <[OwnedFd; 1]>::try_from(item.fds) {
                Ok([fd]) => {
                    sockhashes.insert(number.to_string(), Arc::new(fd));
                }
                Err(_) => errors.push(AdoptError {
                    line: item.line,
                    why: "not one descriptor",
                }),
            }
        } else if item.line.starts_with("pair ") {
            match adopt_one(item, &sockhashes, &backend_index) {
                Ok(pair) => adopted.push(pair),
                Err(e) => errors.push(e),
            }
        } else {
            rest.push(item);
        }
    }
    *items = rest;
    (adopted, errors)
}

fn adopt_one(
    item: Item,
    sockhashes: &HashMap<String, Arc<OwnedFd>>,
    backend_index: impl Fn(&str) -> Option<u32>,
) -> Result<AdoptedPair, AdoptError> {
    let fields = PairLine::parse(&item.line);
    let error = |why| AdoptError {
        line: item.line.clone(),
        why,
    };
    let fields = fields.ok_or_else(|| error("unreadable"))?;
    let sockhash = sockhashes
        .get(fields.sockhash)
        .ok_or_else(|| error("no such sockhash"))?
        .clone();
    let [client, backend] =
        <[OwnedFd; 2]>::try_from(item.fds).map_err(|_| error("not two descriptors"))?;
    let address = (fields.backend != "-").then(|| fields.backend.to_string());
    let index = address.as_deref().and_then(&backend_index);
    let side = |fd: OwnedFd, written, shut| Side {
        write_shut: shut,
        ..Side::new(StdTcpStream::from(fd), written)
    };
    Ok(AdoptedPair {
        pair: Pair {
            client: side(client, fields.written.0, fields.shut.0),
            backend: side(backend, fields.written.1, fields.shut.1),
            backend_index: index.unwrap_or(u32::MAX),
            sockhash,
        },
        backend: address,
    })
}

struct PairLine<'a> {
    sockhash: &'a str,
    backend: &'a str,
    written: (u64, u64),
    shut: (bool, bool),
}

impl<'a> PairLine<'a> {
    fn parse(line: &'a str) -> Option<PairLine<'a>> {
        let (mut sockhash, mut backend, mut written, mut shut) = (None, None, None, None);
        for field in line.strip_prefix("pair ")?.split_whitespace() {
            match field.split_once('=')? {
                ("sockhash", v) => sockhash = Some(v),
                ("backend", v) => backend = Some(v),
                ("written", v) => written = both(v, |s| s.parse::<u64>().ok()),
                ("shut", v) => shut = both(v, |s| matches!(s, "0" | "1").then_some(s == "1")),
                _ => {}
            }
        }
        Some(PairLine {
            sockhash: sockhash?,
            backend: backend?,
            written: written?,
            shut: shut?,
        })
    }
}

fn both<T>(value: &str, one: impl Fn(&str) -> Option<T>) -> Option<(T, T)> {
    let (a, b) = value.split_once(',')?;
    Some((one(a)?, one(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_line_reads_back() {
        let line = "pair sockhash=0 backend=127.0.0.1:27017 written=0,38 shut=0,1";
        let p = PairLine::parse(line).unwrap();
        assert_eq!(p.sockhash, "0");
        assert_eq!(p.backend, "127.0.0.1:27017");
        assert_eq!(p.written, (0, 38));
        assert_eq!(p.shut, (false, true));
        assert!(PairLine::parse("pair sockhash=0 backend=- written=0 shut=0,0").is_none());
        assert!(PairLine::parse("pair sockhash=0 backend=- written=0,0 shut=2,0").is_none());
    }

    #[test]
    fn pairs_come_out_of_the_items_and_the_rest_stays() {
        let sockets = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let a = StdTcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (b, _) = l.accept().unwrap();
            (a, b)
        };
        let ((c, _c_peer), (b, _b_peer)) = (sockets(), sockets());
        let map = tempfile::tempfile().unwrap();
        let mut items = vec![
            Item::line("10.0.0.1 a:1".into()),
            Item {
                line: "sockhash 0".into(),
                fds: vec![map.into()],
            },
            Item {
                line: "pair sockhash=0 backend=a:1 written=0,12 shut=1,0".into(),
                fds: vec![c.into(), b.into()],
            },
            Item {
                line: "pair sockhash=1 backend=a:1 written=0,0 shut=0,0".into(),
                fds: Vec::new(),
            },
        ];
        let (adopted, errors) = adopt_pairs(&mut items, |a| (a == "a:1").then_some(3));
        assert_eq!(items.len(), 1, "the affinity pin stays");
        assert_eq!(adopted.len(), 1);
        let pair = &adopted[0].pair;
        assert_eq!(pair.backend_index, 3);
        assert_eq!(adopted[0].backend.as_deref(), Some("a:1"));
        assert!(pair.client.write_shut && !pair.backend.write_shut);
        assert_eq!(pair.backend.written_before, 12);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().contains("no such sockhash"),
            "{}",
            errors[0]
        );
    }
}
