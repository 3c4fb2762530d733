//! The bytes of a client's commands that are sent and not yet answered. A command's payload is a
//! slice of the client's read buffer and lives until its node has it; bounding only the count of
//! commands in flight would let a client pipelining big writes to a slow node make the proxy hold
//! `count × size`. Past the bound the client is read no further until replies go out (backpressure:
//! nothing is refused). One command of any size the parser accepts is always admitted.

use std::collections::VecDeque;

use crate::redis::client::fifo::Progress;

pub struct InFlightBytes {
    /// (reply index, bytes) of each command in flight, oldest first.
    sizes: VecDeque<(u64, usize)>,
    bytes: usize,
    limit: usize,
    completed: Progress,
}

impl InFlightBytes {
    pub fn new(limit: usize, completed: Progress) -> InFlightBytes {
        InFlightBytes {
            sizes: VecDeque::new(),
            bytes: 0,
            limit,
            completed,
        }
    }

    /// Waits until a command of `size` bytes, whose reply will be number `index`, fits.
    pub async fn admit(&mut self, index: u64, size: usize) {
        self.forget_answered();
        while let Some(&(oldest, _)) = self.sizes.front() {
            if self.bytes + size <= self.limit {
                break;
            }
            if !self.completed.wait_for(oldest + 1).await {
                // The writer is gone: the client is being closed anyway.
                break;
            }
            self.forget_answered();
        }
        self.sizes.push_back((index, size));
        self.bytes += size;
    }

    fn forget_answered(&mut self) {
        let done = self.completed.completed();
        while let Some(&(index, size)) = self.sizes.front() {
            if index >= done {
                break;
            }
            self.bytes -= size;
            self.sizes.pop_front();
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn holds_the_reader_until_answers_make_room() {
        let (_slots, replies, completed) = crate::redis::client::fifo::fifo::<()>(1);
        let mut inflight = InFlightBytes::new(100, completed);
        inflight.admit(0, 60).await;
        inflight.admit(1, 40).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), inflight.admit(2, 10)).await;
        assert!(waiting.is_err(), "over the limit: must wait");
        replies.finished_one();
        tokio::time::timeout(Duration::from_secs(5), inflight.admit(2, 10))
            .await
            .expect("room once reply 0 is out");
        assert_eq!(inflight.bytes(), 50);
    }

    #[tokio::test]
    async fn one_command_of_any_size_is_admitted() {
        let (_slots, _replies, completed) = crate::redis::client::fifo::fifo::<()>(1);
        let mut inflight = InFlightBytes::new(100, completed);
        tokio::time::timeout(Duration::from_secs(5), inflight.admit(0, 1000))
            .await
            .expect("alone, a big command goes through");
    }
}
