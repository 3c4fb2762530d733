//! The requests waiting for one node connection's writer. Any number of clients queue requests,
//! and the writer takes everything queued at once. A tokio unbounded channel cost a send and a
//! receive of its own per request (about 350 instructions per GET at `-P 16` under callgrind,
//! with a wake-up per send); here a request is one short lock, the writer is woken only when the
//! queue was empty, and it takes a whole turn's requests under one lock, swapping buffers so that
//! nothing is allocated in the steady state.

use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard};

use futures_util::task::AtomicWaker;

use crate::redis::signal::check_or_park;

pub struct Outbox<T> {
    queue: Mutex<Queue<T>>,
    writer: AtomicWaker,
}

struct Queue<T> {
    items: Vec<T>,
    /// The writer is gone: nothing more is queued.
    closed: bool,
    /// The handle is gone: the writer stops once the queue is empty.
    released: bool,
}

impl<T> Default for Outbox<T> {
    fn default() -> Outbox<T> {
        Outbox {
            queue: Mutex::new(Queue {
                items: Vec::new(),
                closed: false,
                released: false,
            }),
            writer: AtomicWaker::new(),
        }
    }
}

impl<T> Outbox<T> {
    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`; gives it back when the writer is gone.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut queue = self.lock();
        if queue.closed {
            return Err(item);
        }
        let was_empty = queue.items.is_empty();
        queue.items.push(item);
        drop(queue);
        // The writer takes everything at once, so only the first item since it last looked
        // needs to wake it.
        if was_empty {
            self.writer.wake();
        }
        Ok(())
    }

    /// The handle is gone: the writer takes what is queued, then stops.
    pub fn release(&self) {
        self.lock().released = true;
        self.writer.wake();
    }

    /// For the writer: resolves once something is queued (true), or the handle is gone and
    /// nothing is (false).
    pub async fn ready(&self) -> bool {
        poll_fn(|cx| {
            check_or_park(cx, &self.writer, || {
                let queue = self.lock();
                match (queue.items.is_empty(), queue.released) {
                    (false, _) => Some(true),
                    (true, true) => Some(false),
                    (true, false) => None,
                }
            })
        })
        .await
    }

    /// For the writer: everything queued, appended to `batch` (swapped in when `batch` is
    /// empty, which keeps both buffers' capacity).
    pub fn take_all(&self, batch: &mut Vec<T>) {
        let mut queue = self.lock();
        match batch.is_empty() {
            true => std::mem::swap(&mut queue.items, batch),
            false => batch.append(&mut queue.items),
        }
    }

    /// The writer is gone: later pushes are refused, and what was queued is handed back.
    pub fn close(&self) -> Vec<T> {
        let mut queue = self.lock();
        queue.closed = true;
        std::mem::take(&mut queue.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn items_are_taken_in_order_and_a_parked_writer_is_woken() {
        let outbox = Arc::new(Outbox::default());
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut batch = Vec::new();
                assert!(outbox.ready().await);
                tokio::time::sleep(Duration::from_millis(20)).await;
                outbox.take_all(&mut batch);
                batch
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        outbox.push(1).unwrap();
        outbox.push(2).unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(5), writer).await;
        assert_eq!(batch.expect("woken").unwrap(), [1, 2]);
    }

    #[tokio::test]
    async fn a_released_outbox_is_drained_then_ends_and_a_closed_one_refuses() {
        let outbox = Outbox::default();
        outbox.push(1).unwrap();
        outbox.release();
        assert!(outbox.ready().await, "what was queued is still taken");
        let mut batch = vec![0];
        outbox.take_all(&mut batch);
        assert_eq!(batch, [0, 1]);
        assert!(!outbox.ready().await);
        outbox.push(2).unwrap();
        assert_eq!(outbox.close(), [2]);
        assert_eq!(outbox.push(3), Err(3));
    }
}
