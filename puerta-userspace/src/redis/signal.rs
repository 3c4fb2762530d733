//! Flags that a connection's reader and writer tasks ask on every turn and park on between turns:
//! why a client's session must end, whether a node connection was closed. A `CancellationToken`
//! takes its mutex for every ask and every poll, and registers and unregisters a waiter per park,
//! which at `-P 1` is once per command for each task (about 3 % of the proxy's CPU under perf).
//! Here an ask is one atomic load, and a park stores the task's waker in that task's own slot.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

#[derive(Debug, Default)]
pub struct Flags {
    set: AtomicU8,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

/// Which of the two tasks waits: each has its own waker slot, so only that task may wait as it.
#[derive(Debug, Clone, Copy)]
pub enum Task {
    Reader,
    Writer,
}

impl Flags {
    pub fn raise(&self, bits: u8) {
        self.set.fetch_or(bits, Ordering::Release);
        self.reader.wake();
        self.writer.wake();
    }

    /// Whether any of `bits` is raised.
    pub fn has(&self, bits: u8) -> bool {
        self.set.load(Ordering::Acquire) & bits != 0
    }

    /// Resolves once any of `bits` is raised.
    pub async fn wait(&self, task: Task, bits: u8) {
        let slot = match task {
            Task::Reader => &self.reader,
            Task::Writer => &self.writer,
        };
        poll_fn(|cx| check_or_park(cx, slot, || self.has(bits).then_some(()))).await
    }
}

/// One task's doorbell: others ring it after they queued something for the task, which takes
/// the ring (clearing it) and then looks at what was queued. A task fed by several queues parks on
/// its bell alone, not on each queue (a registration per queue per park, which at `-P 1` is per
/// command); a burst of rings before the task runs costs one wake-up.
#[derive(Debug, Default)]
pub struct Bell {
    rung: AtomicBool,
    waker: AtomicWaker,
}

impl Bell {
    pub fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Whether the bell rang since the last take; clears it.
    pub fn take(&self) -> bool {
        self.rung.load(Ordering::Acquire) && self.rung.swap(false, Ordering::AcqRel)
    }

    /// Rung again by the task itself, without a wake-up: it left something queued for its next
    /// turn.
    pub fn keep(&self) {
        self.rung.store(true, Ordering::Release);
    }

    /// Resolves (and clears the ring) once the bell rang. Only one task may wait on a bell.
    pub async fn rung(&self) {
        poll_fn(|cx| check_or_park(cx, &self.waker, || self.take().then_some(()))).await
    }
}

/// One poll of a wait whose waker lives in `waker`: `check` first; when it has nothing, the task's
/// waker is registered and `check` runs once more, so that what arrived in between is not missed
/// (the other side publishes, then wakes). Every hand-made wait between a connection's tasks
/// (flags, the client FIFO, a node connection's outbox) polls through this.
pub fn check_or_park<T>(
    cx: &mut Context<'_>,
    waker: &AtomicWaker,
    mut check: impl FnMut() -> Option<T>,
) -> Poll<T> {
    if let Some(ready) = check() {
        return Poll::Ready(ready);
    }
    waker.register(cx.waker());
    match check() {
        Some(ready) => Poll::Ready(ready),
        None => Poll::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A ring before the wait, during it, and several at once: each wait ends, and the rings of
    /// one burst are taken together.
    #[tokio::test]
    async fn a_bell_wakes_its_task_once_per_burst() {
        let bell = Arc::new(Bell::default());
        bell.ring();
        tokio::time::timeout(Duration::from_secs(5), bell.rung())
            .await
            .expect("a ring before the wait is not lost");
        assert!(!bell.take(), "the wait took the ring");
        let waiting = {
            let bell = bell.clone();
            tokio::spawn(async move { bell.rung().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "no ring, no wake-up");
        bell.ring();
        bell.ring();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("a ring wakes the waiting task")
            .unwrap();
        assert!(!bell.take(), "both rings were one");
        bell.keep();
        assert!(bell.take() && !bell.take());
    }

    #[tokio::test]
    async fn each_task_wakes_for_its_own_flags() {
        let flags = Arc::new(Flags::default());
        let wait = |task, bits| {
            let flags = flags.clone();
            tokio::spawn(async move { flags.wait(task, bits).await })
        };
        let (reader, writer) = (wait(Task::Reader, 0b11), wait(Task::Writer, 0b10));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!reader.is_finished() && !writer.is_finished());
        flags.raise(0b01);
        tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("woken")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!writer.is_finished(), "not its flag");
        flags.raise(0b10);
        tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("woken")
            .unwrap();
        // Raised already: a wait ends at once.
        flags.wait(Task::Reader, 0b10).await;
        assert!(flags.has(0b01) && !flags.has(0b100));
    }
}
