//! Ends a node connection's two tasks together, and tells its handles that it ended. Both tasks ask
//! on every read and write turn and park on it in every select: a `CancellationToken` takes its
//! mutex for each ask and registers a waiter (two more lock round trips) for each park, a cost per
//! turn of every pooled connection. Here an ask is one atomic load, and a park stores the task's
//! waker in that task's own slot.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

#[derive(Default)]
pub struct Stop {
    stopped: AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

/// Which of the connection's tasks waits.
#[derive(Clone, Copy)]
pub enum Task {
    Reader,
    Writer,
}

impl Stop {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.reader.wake();
        self.writer.wake();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Resolves once [`Stop::stop`] was called. Only `task` may wait through its slot.
    pub async fn stopped(&self, task: Task) {
        let slot = match task {
            Task::Reader => &self.reader,
            Task::Writer => &self.writer,
        };
        poll_fn(|cx| {
            if self.is_stopped() {
                return Poll::Ready(());
            }
            slot.register(cx.waker());
            // Checked again once registered: a stop in between is not missed.
            match self.is_stopped() {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn both_tasks_are_released_by_one_stop() {
        let stop = Arc::new(Stop::default());
        let waiters = [Task::Reader, Task::Writer].map(|task| {
            let stop = stop.clone();
            tokio::spawn(async move { stop.stopped(task).await })
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!stop.is_stopped());
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "parked until stopped"
        );
        stop.stop();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("released")
                .unwrap();
        }
        assert!(stop.is_stopped());
        // Once stopped, a wait ends at once.
        stop.stopped(Task::Reader).await;
    }
}
