//! Per-client order across a slot move. Commands of one client for one slot normally reach one node in
//! the order sent. When the slot moves, an earlier command may still be on its way to the old owner
//! (to be redirected when its reply is read) while a later one would already go to the new owner and
//! overtake it: `SET k 1; SET k 2` could end as `1`. So before a command is sent to a different node
//! than the previous command for its slot, the client waits until that previous command is answered.
//! This only ever waits while a slot is moving.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

/// Entries kept before finished ones are dropped.
const PRUNE_AT: usize = 4096;

pub struct SlotOrder {
    /// slot → (node, reply index) of the client's latest command for it.
    routes: HashMap<u16, (Arc<str>, u64)>,
    /// How many replies the client's writer has finished.
    completed: watch::Receiver<u64>,
    /// Reply index of the command being dispatched.
    next: u64,
}

impl SlotOrder {
    pub fn new(completed: watch::Receiver<u64>) -> SlotOrder {
        SlotOrder {
            routes: HashMap::new(),
            completed,
            next: 0,
        }
    }

    /// Call before sending the current command for `slot` to `addr`.
    pub async fn before_send(&mut self, slot: u16, addr: &Arc<str>) {
        if let Some((previous, index)) = self.routes.get(&slot) {
            let index = *index;
            if previous != addr && *self.completed.borrow() <= index {
                // Err means the writer is gone (client left): nothing to keep in order any more.
                let _ = self.completed.wait_for(|done| *done > index).await;
            }
        }
        self.routes.insert(slot, (addr.clone(), self.next));
        if self.routes.len() > PRUNE_AT {
            let done = *self.completed.borrow();
            self.routes.retain(|_, (_, index)| *index >= done);
        }
    }

    /// Call once per reply slot queued for the client.
    pub fn pushed(&mut self) {
        self.next += 1;
    }

    /// Waits until every reply queued so far is answered. Switching protocols moves the client's
    /// commands to the pools of the other protocol, whose connections could overtake the earlier ones.
    pub async fn all_answered(&mut self) {
        let queued = self.next;
        // Err means the writer is gone (client left): nothing to keep in order any more.
        let _ = self.completed.wait_for(|done| *done >= queued).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_only_when_a_slot_changes_node_with_work_in_flight() {
        let (done, completed) = watch::channel(0u64);
        let mut order = SlotOrder::new(completed);
        let a: Arc<str> = "a:1".into();
        let b: Arc<str> = "b:1".into();
        order.before_send(7, &a).await; // reply 0 → a
        order.pushed();
        order.before_send(7, &a).await; // same node: no wait
        order.pushed();
        order.before_send(8, &b).await; // another slot: no wait
        order.pushed();
        // Slot 7 now goes to b while reply 1 (sent to a) is unanswered: must wait for it.
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), order.before_send(7, &b)).await;
        assert!(waiting.is_err(), "must wait for the earlier command");
        done.send_replace(1);
        let still = tokio::time::timeout(Duration::from_millis(50), order.before_send(7, &b)).await;
        assert!(still.is_err(), "reply 1 is not finished yet");
        done.send_replace(2);
        tokio::time::timeout(Duration::from_secs(5), order.before_send(7, &b))
            .await
            .expect("free once earlier replies are out");
    }

    #[tokio::test]
    async fn all_answered_waits_for_every_queued_reply() {
        let (done, completed) = watch::channel(0u64);
        let mut order = SlotOrder::new(completed);
        order.all_answered().await; // nothing queued
        order.pushed();
        order.pushed();
        done.send_replace(1);
        let waiting = tokio::time::timeout(Duration::from_millis(50), order.all_answered()).await;
        assert!(waiting.is_err(), "reply 1 is not finished yet");
        done.send_replace(2);
        tokio::time::timeout(Duration::from_secs(5), order.all_answered())
            .await
            .expect("free once every reply is out");
    }
}
