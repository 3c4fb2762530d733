//! `client_output_limit_mb`: the bytes of replies that have arrived from the nodes for one client and
//! are not yet written to its socket. A client that pipelines big reads and never reads the replies
//! would otherwise make the proxy hold every one of them. Replies are charged when a node connection
//! hands them over and released when the last holder drops them (after the write), so the count is
//! exact whatever path the reply takes; crossing the limit closes that client only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::redis::client::hangup::{Hangup, Reason};
use crate::redis::resp::Frame;

/// One client's reply bytes in the proxy.
#[derive(Debug)]
pub struct OutputBudget {
    held: AtomicUsize,
    limit: Option<usize>,
    over: AtomicBool,
    /// The client's session: told once the limit was crossed, and it closes the client.
    hangup: Arc<Hangup>,
    client: u64,
    peer: Option<SocketAddr>,
}

impl OutputBudget {
    pub fn new(
        limit: Option<usize>,
        client: u64,
        peer: Option<SocketAddr>,
        hangup: Arc<Hangup>,
    ) -> Arc<OutputBudget> {
        Arc::new(OutputBudget {
            held: AtomicUsize::new(0),
            limit,
            over: AtomicBool::new(false),
            hangup,
            client,
            peer,
        })
    }

    /// Counts `bytes` against the client until the returned value is dropped.
    pub fn charge(self: &Arc<Self>, bytes: Bytes) -> Charged {
        let held = self.held.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
        if self.limit.is_some_and(|limit| held > limit) && !self.over.swap(true, Ordering::Relaxed)
        {
            self.close_for_limit(held);
        }
        Charged {
            bytes,
            budget: Some(self.clone()),
        }
    }

    /// Whether a frame still arriving, `arriving` bytes of it read so far, fits beside what is
    /// held; when it does not, the client is closed as if the frame had been charged. A pub/sub
    /// relay reads a published message whole before charging it, and a message may be as big as
    /// the node accepts (512 MiB): without this the relay would hold all of it first.
    pub fn admits(&self, arriving: usize) -> bool {
        let held = self.held() + arriving;
        if self.limit.is_none_or(|limit| held <= limit) {
            return true;
        }
        if !self.over.swap(true, Ordering::Relaxed) {
            self.close_for_limit(held);
        }
        false
    }

    fn close_for_limit(&self, held: usize) {
        metrics::counter!("puerta_redis_clients_closed_total", "reason" => "output_limit")
            .increment(1);
        tracing::warn!(
            client = self.client,
            peer = ?self.peer,
            held_bytes = held,
            limit_bytes = self.limit.unwrap_or(0),
            "closing client: replies it does not read exceed client_output_limit_mb"
        );
        self.hangup.raise(Reason::OutputLimit);
    }

    /// The session this budget closes.
    pub fn hangup(&self) -> &Arc<Hangup> {
        &self.hangup
    }

    pub fn is_exceeded(&self) -> bool {
        self.hangup.has(Reason::OutputLimit)
    }

    /// Bytes held now, for CLIENT LIST style views and tests.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// Reply bytes counted against a client's [`OutputBudget`] while they live.
#[derive(Debug)]
pub struct Charged {
    bytes: Bytes,
    budget: Option<Arc<OutputBudget>>,
}

impl Charged {
    /// Bytes owned by nobody's budget (the proxy's own queries).
    pub fn free(bytes: Bytes) -> Charged {
        Charged {
            bytes,
            budget: None,
        }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Cuts several replies read together into one each, at `ends` (the last one takes whatever
    /// is left); the pieces count against the same budget, charged once.
    pub fn split_at_ends(mut self, ends: &[usize]) -> Vec<Charged> {
        if ends.is_empty() {
            return vec![self];
        }
        let bytes = std::mem::take(&mut self.bytes);
        let budget = self.budget.take();
        let mut start = 0;
        let mut pieces = Vec::with_capacity(ends.len());
        for (i, &end) in ends.iter().enumerate() {
            let end = match i + 1 == ends.len() {
                true => bytes.len(),
                false => end.clamp(start, bytes.len()),
            };
            pieces.push(Charged {
                bytes: bytes.slice(start..end),
                budget: budget.clone(),
            });
            start = end;
        }
        pieces
    }

    /// The frame of bytes a node reader already validated; failing here would be a parser bug, which
    /// the client sees as an error reply rather than a crash.
    pub fn frame(&self) -> Frame {
        crate::redis::resp::frame_of(&self.bytes)
            .unwrap_or_else(|e| Frame::error(format!("ERR Puerta: unreadable node reply ({e})")))
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.held.fetch_sub(self.bytes.len(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_until_dropped_and_trips_once_past_the_limit() {
        let budget = OutputBudget::new(Some(10), 1, None, Default::default());
        let a = budget.charge(Bytes::from_static(b"123456"));
        assert_eq!(budget.held(), 6);
        assert!(!budget.is_exceeded());
        drop(a);
        assert_eq!(budget.held(), 0);
        let a = budget.charge(Bytes::from_static(b"123456"));
        let b = budget.charge(Bytes::from_static(b"123456"));
        assert!(budget.is_exceeded());
        drop((a, b));
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn replies_cut_apart_release_exactly_what_was_charged() {
        let budget = OutputBudget::new(Some(100), 1, None, Default::default());
        let whole = budget.charge(Bytes::from_static(b"+OK\r\n:1\r\n$1\r\nx\r\n"));
        let pieces = whole.split_at_ends(&[5, 9, 16]);
        let texts: Vec<&[u8]> = pieces.iter().map(|p| &p.bytes()[..]).collect();
        assert_eq!(texts, [&b"+OK\r\n"[..], b":1\r\n", b"$1\r\nx\r\n"]);
        assert_eq!(budget.held(), 16);
        let mut pieces = pieces.into_iter();
        drop(pieces.next());
        assert_eq!(budget.held(), 11);
        drop(pieces);
        assert_eq!(budget.held(), 0);
        // Ends short of the bytes: the last piece takes the rest, so nothing stays counted.
        let whole = budget.charge(Bytes::from_static(b"+OK\r\n+OK\r\n"));
        let pieces = whole.split_at_ends(&[5, 6]);
        assert_eq!(&pieces[1].bytes()[..], b"+OK\r\n");
        drop(pieces);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_frame_still_arriving_counts_beside_what_is_held() {
        let budget = OutputBudget::new(Some(10), 1, None, Default::default());
        let held = budget.charge(Bytes::from_static(b"123456"));
        assert!(budget.admits(4));
        assert!(!budget.is_exceeded());
        assert!(!budget.admits(5));
        assert!(budget.is_exceeded());
        drop(held);
        assert_eq!(
            budget.held(),
            0,
            "nothing is charged for a frame not yet whole"
        );
        let unlimited = OutputBudget::new(None, 1, None, Default::default());
        assert!(unlimited.admits(usize::MAX / 2));
    }

    #[test]
    fn no_limit_never_trips() {
        let budget = OutputBudget::new(None, 1, None, Default::default());
        let _big = budget.charge(Bytes::from(vec![0u8; 1 << 20]));
        assert!(!budget.is_exceeded());
        assert_eq!(Charged::free(Bytes::from_static(b"x")).bytes().len(), 1);
    }
}
