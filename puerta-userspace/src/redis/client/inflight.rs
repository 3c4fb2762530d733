//! The bytes of a client's commands that are sent and not yet answered. A command's payload is a
//! slice of the client's read buffer and lives until its node has it; bounding only the count of
//! commands in flight would let a client pipelining big writes to a slow node make the proxy hold
//! `count × size`. Past the bound the client is read no further until replies go out (backpressure:
//! nothing is refused). One command of any size the parser accepts is always admitted.

use std::collections::VecDeque;

use tokio::sync::watch;

pub struct InFlightBytes {
    /// (reply index, bytes) of each command in flight, oldest first.
    sizes: VecDeque<(u64, usize)>,
    bytes: usize,
    limit: usize,
    completed: watch::Receiver<u64>,
}

impl InFlightBytes {
    pub fn new(limit: usize, completed: watch::Receiver<u64>) -> InFlightBytes {
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
        while !self.sizes.is_empty() && self.bytes + size > self.limit {
            if self.completed.changed().await.is_err() {
                // The writer is gone: the client is being closed anyway.
                break;
            }
            self.forget_answered();
        }
        self.sizes.push_back((index, size));
        self.bytes += size;
    }

    fn forget_answered(&mut self) {
        let done = *self.completed.borrow_and_update();
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
        let (done, completed) = watch::channel(0u64);
        let mut inflight = InFlightBytes::new(100, completed);
        inflight.admit(0, 60).await;
        inflight.admit(1, 40).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), inflight.admit(2, 10)).await;
        assert!(waiting.is_err(), "over the limit: must wait");
        done.send_replace(1);
        tokio::time::timeout(Duration::from_secs(5), inflight.admit(2, 10))
            .await
            .expect("room once reply 0 is out");
        assert_eq!(inflight.bytes(), 50);
    }

    #[tokio::test]
    async fn one_command_of_any_size_is_admitted() {
        let (_done, completed) = watch::channel(0u64);
        let mut inflight = InFlightBytes::new(100, completed);
        tokio::time::timeout(Duration::from_secs(5), inflight.admit(0, 1000))
            .await
            .expect("alone, a big command goes through");
    }
}
