//! Where node replies for one client's routed commands land: the node connection that read a reply
//! posts it under the command's ticket, and the client's writer takes it when that command's turn
//! comes. This replaces a oneshot channel per command (an allocation, and a shared state with its
//! own atomics on both ends) with one board per client that lives as long as the client.
//!
//! Replies arrive in any order across nodes, while the writer takes them in command order, so the
//! board is a short list searched by ticket: it holds only the replies that came back before their
//! turn (at most the client's commands in flight, usually a handful).

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::task::AtomicWaker;

use crate::redis::signal::check_or_park;

use crate::redis::node::backend::NodeResult;

/// A reply, or `None` when its ticket was dropped unanswered (the connection task ended without
/// it: a oneshot sender dropped without sending, in the terms this replaces).
pub type Posted = Option<NodeResult>;

pub struct ReplyBoard {
    posts: Mutex<Posts>,
    /// The client's writer, parked for the reply whose turn it is.
    writer: AtomicWaker,
    /// The ticket the writer parked for: a reply for a later ticket does not wake it (at `-P 16`
    /// replies of one client come back from several nodes while the writer waits for an earlier
    /// one).
    awaited: AtomicU64,
}

impl Default for ReplyBoard {
    fn default() -> ReplyBoard {
        ReplyBoard {
            posts: Mutex::default(),
            writer: AtomicWaker::new(),
            awaited: AtomicU64::new(NONE),
        }
    }
}

/// No ticket awaited.
const NONE: u64 = u64::MAX;

#[derive(Default)]
struct Posts {
    posted: Vec<(u64, Posted)>,
    /// The writer is gone: a reply posted now is dropped at once (and its bytes stop counting
    /// against the client), not kept until the last command in flight is answered.
    closed: bool,
}

impl ReplyBoard {
    fn lock(&self) -> MutexGuard<'_, Posts> {
        self.posts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn post(&self, number: u64, posted: Posted) {
        let mut posts = self.lock();
        if posts.closed {
            // Dropped with the lock released: a reply may be big.
            drop(posts);
            drop(posted);
            return;
        }
        posts.posted.push((number, posted));
        drop(posts);
        // Read after the push is published by the unlock; the writer stores it before its
        // checking take locks, so one of the two sees the other.
        if self.awaited.load(Ordering::SeqCst) == number {
            self.writer.wake();
        }
    }

    /// The reply posted under ticket `number`, if it is in.
    pub fn take(&self, number: u64) -> Option<Posted> {
        let mut posts = self.lock();
        let i = posts.posted.iter().position(|(n, _)| *n == number)?;
        Some(posts.posted.swap_remove(i).1)
    }

    /// The writer is done: what is posted and what will be is dropped.
    pub fn close(&self) {
        let left = {
            let mut posts = self.lock();
            posts.closed = true;
            std::mem::take(&mut posts.posted)
        };
        drop(left);
    }

    /// Waits for the reply of ticket `number`. Only the client's writer waits on a board.
    pub async fn wait(&self, number: u64) -> Posted {
        // `awaited` is stored before each look, so a post after the look sees it and wakes the
        // writer. (`awaited` may keep a taken ticket's number: tickets are never reused.)
        poll_fn(|cx| {
            check_or_park(cx, &self.writer, || {
                self.awaited.store(number, Ordering::SeqCst);
                self.take(number)
            })
        })
        .await
    }
}

/// The right to post one reply: held by the node connection's queue until the reply is read.
/// Dropped unused, it posts `None`, so the writer never waits for a reply that cannot come.
pub struct Ticket {
    board: Option<Arc<ReplyBoard>>,
    number: u64,
}

impl Ticket {
    pub fn new(board: Arc<ReplyBoard>, number: u64) -> Ticket {
        Ticket {
            board: Some(board),
            number,
        }
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    pub fn post(mut self, result: NodeResult) {
        if let Some(board) = self.board.take() {
            board.post(self.number, Some(result));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(board) = self.board.take() {
            board.post(self.number, None);
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ticket({})", self.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::client::output::Charged;
    use crate::redis::node::backend::NodeReply;
    use bytes::Bytes;
    use std::time::Duration;

    fn reply(text: &'static str) -> NodeResult {
        Ok(NodeReply::One(Charged::free(Bytes::from_static(
            text.as_bytes(),
        ))))
    }

    fn text(posted: Posted) -> Option<String> {
        match posted? {
            Ok(NodeReply::One(raw)) => Some(String::from_utf8_lossy(raw.bytes()).into_owned()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn replies_posted_out_of_order_are_taken_in_order() {
        let board = Arc::new(ReplyBoard::default());
        let (first, second) = (Ticket::new(board.clone(), 1), Ticket::new(board.clone(), 2));
        second.post(reply("+two\r\n"));
        assert!(board.take(1).is_none(), "not in yet");
        first.post(reply("+one\r\n"));
        assert_eq!(text(board.wait(1).await).as_deref(), Some("+one\r\n"));
        assert_eq!(text(board.wait(2).await).as_deref(), Some("+two\r\n"));
        assert!(board.take(2).is_none(), "taken once");
    }

    #[test]
    fn a_closed_board_keeps_nothing() {
        let board = Arc::new(ReplyBoard::default());
        Ticket::new(board.clone(), 1).post(reply("+kept until closed\r\n"));
        let budget =
            crate::redis::client::output::OutputBudget::new(None, 1, None, Default::default());
        let late = Ticket::new(board.clone(), 2);
        board.close();
        assert!(board.take(1).is_none(), "dropped when closed");
        late.post(Ok(NodeReply::One(
            budget.charge(Bytes::from_static(b"$3\r\nbig\r\n")),
        )));
        assert!(board.take(2).is_none());
        assert_eq!(budget.held(), 0, "a late reply stops counting at once");
    }

    #[tokio::test]
    async fn a_parked_writer_is_woken_and_a_dropped_ticket_posts_none() {
        let board = Arc::new(ReplyBoard::default());
        let ticket = Ticket::new(board.clone(), 7);
        let waiting = {
            let board = board.clone();
            tokio::spawn(async move { board.wait(7).await.is_none() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(ticket);
        let dropped = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(dropped.expect("woken").unwrap(), "unanswered: None");
    }
}
