//! Per-client order across a slot move. Commands of one client for one slot normally reach one node in
//! the order sent. When the slot moves, an earlier command may still be on its way to the old owner
//! (to be redirected when its reply is read) while a later one would already go to the new owner and
//! overtake it: `SET k 1; SET k 2` could end as `1`. So when the slot map changed since the client's
//! last command was sent, the client first waits until its earlier commands are answered.
//!
//! The check is one comparison of the map's epoch per command; the wait happens once per map change
//! and only for a client with work in flight. (Tracking the node of every slot a client touched would
//! narrow the wait to the slots that moved, at a hash-map insert per command.)

use crate::redis::client::fifo::Progress;
use crate::redis::cluster::Cluster;
use crate::redis::resp::Frame;

pub struct SlotOrder {
    /// The slot map epoch the client's latest command was routed with.
    epoch: u64,
    /// How many replies the client's writer has finished.
    completed: Progress,
    /// Reply slots queued so far.
    queued: u64,
}

impl SlotOrder {
    pub fn new(completed: Progress) -> SlotOrder {
        SlotOrder {
            epoch: 0,
            completed,
            queued: 0,
        }
    }

    /// Call before sending the current command, routed with the slot map of `epoch`.
    pub async fn before_send(&mut self, epoch: u64) {
        if epoch != self.epoch {
            self.all_answered().await;
            self.epoch = epoch;
        }
    }

    /// The node `target` names for the client's next command of a slot, chosen with the map it
    /// waited for: the map's epoch is read before and after `target`, and a change in between
    /// (seen only through the epoch, which moves under the map's lock) means another round.
    pub async fn route<T>(
        &mut self,
        cluster: &Cluster,
        target: impl Fn() -> Result<T, Frame>,
    ) -> Result<T, Frame> {
        loop {
            let epoch = cluster.epoch();
            self.before_send(epoch).await;
            let node = target()?;
            if cluster.epoch() == epoch {
                return Ok(node);
            }
        }
    }

    /// Reply slots queued so far: the index of the next one.
    pub fn queued(&self) -> u64 {
        self.queued
    }

    /// Call once per reply slot queued for the client.
    pub fn pushed(&mut self) {
        self.queued += 1;
    }

    /// Waits until every reply queued so far is answered. Switching protocols moves the client's
    /// commands to the pools of the other protocol, whose connections could overtake the earlier ones.
    pub async fn all_answered(&mut self) {
        // False means the writer is gone (client left): nothing to keep in order any more.
        let _ = self.completed.wait_for(self.queued).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_only_when_the_map_changed_with_work_in_flight() {
        let (_slots, replies, completed) = crate::redis::client::fifo::fifo::<()>(1);
        let mut order = SlotOrder::new(completed);
        order.before_send(1).await; // nothing in flight: no wait
        order.pushed();
        order.before_send(1).await; // same map: no wait
        order.pushed();
        // The map changed while replies 0 and 1 are unanswered: must wait for both.
        let waiting = tokio::time::timeout(Duration::from_millis(50), order.before_send(2)).await;
        assert!(waiting.is_err(), "must wait for the earlier commands");
        replies.finished_one();
        let still = tokio::time::timeout(Duration::from_millis(50), order.before_send(2)).await;
        assert!(still.is_err(), "reply 1 is not finished yet");
        replies.finished_one();
        tokio::time::timeout(Duration::from_secs(5), order.before_send(2))
            .await
            .expect("free once earlier replies are out");
        order.pushed();
        order.before_send(2).await; // the new map is the client's now: no wait
    }

    #[tokio::test]
    async fn all_answered_waits_for_every_queued_reply() {
        let (_slots, replies, completed) = crate::redis::client::fifo::fifo::<()>(1);
        let mut order = SlotOrder::new(completed);
        order.all_answered().await; // nothing queued
        order.pushed();
        order.pushed();
        replies.finished_one();
        let waiting = tokio::time::timeout(Duration::from_millis(50), order.all_answered()).await;
        assert!(waiting.is_err(), "reply 1 is not finished yet");
        replies.finished_one();
        tokio::time::timeout(Duration::from_secs(5), order.all_answered())
            .await
            .expect("free once every reply is out");
    }
}
