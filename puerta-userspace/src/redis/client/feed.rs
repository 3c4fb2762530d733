//! The queues other tasks fill for a client's writer (RESP3 pushes, MONITOR lines, cache
//! invalidations): bounded channels whose senders also ring the writer's [`Bell`], so that the
//! writer parks on its reply FIFO and one bell instead of registering with every channel each time
//! it waits for a reply (about 600 instructions per command at `-P 1`, for queues that are empty
//! for almost every client).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{SendError, TrySendError};

use crate::redis::signal::Bell;

/// A channel of `capacity` into a writer that waits on `bell`.
pub fn channel<T>(capacity: usize, bell: &Arc<Bell>) -> (FeedSender<T>, mpsc::Receiver<T>) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        FeedSender {
            tx,
            bell: bell.clone(),
        },
        rx,
    )
}

/// A channel whose bell nobody waits on: for tests of the senders' side.
#[cfg(test)]
pub fn unwatched<T>(capacity: usize) -> (FeedSender<T>, mpsc::Receiver<T>) {
    channel(capacity, &Arc::default())
}

/// An `mpsc::Sender` that rings the writer's bell after each item it queued.
#[derive(Debug)]
pub struct FeedSender<T> {
    tx: mpsc::Sender<T>,
    bell: Arc<Bell>,
}

impl<T> Clone for FeedSender<T> {
    fn clone(&self) -> Self {
        FeedSender {
            tx: self.tx.clone(),
            bell: self.bell.clone(),
        }
    }
}

impl<T> FeedSender<T> {
    /// Waits for room (the writer's backpressure on whoever feeds it).
    pub async fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.tx.send(item).await?;
        self.bell.ring();
        Ok(())
    }

    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.tx.try_send(item)?;
        self.bell.ring();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_queued_item_rings_and_a_full_channel_does_not() {
        let bell = Arc::new(Bell::default());
        let (tx, mut rx) = channel::<u32>(1, &bell);
        tx.try_send(1).unwrap();
        assert!(bell.take());
        assert!(tx.try_send(2).is_err());
        assert!(!bell.take(), "nothing queued, no ring");
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(3).await })
        };
        assert_eq!(rx.recv().await, Some(1));
        tokio::time::timeout(Duration::from_secs(5), bell.rung())
            .await
            .expect("the waiting send rings once it queued");
        waiting.await.unwrap().unwrap();
        assert_eq!(rx.try_recv().ok(), Some(3));
    }
}
