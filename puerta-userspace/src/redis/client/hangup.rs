//! Why a client's session must end, and the wake-ups of its two tasks. The reader asks on every
//! read and parks on it with every read; the writer parks on it with every write and every wait for
//! a reply: at `-P 1` that is once per command for each task. A `CancellationToken` takes its mutex
//! for each ask and each poll, and registers and unregisters a waiter per park (about 3 % of the
//! proxy's CPU at `-P 1` under perf). Here an ask is one atomic load, and a park stores the task's
//! waker in that task's own slot.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

#[derive(Debug, Default)]
pub struct Hangup {
    reasons: AtomicU8,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// `CLIENT KILL` (or a feed it could not keep up with): closed at once, nothing more written.
    Killed = 1,
    /// `client_output_limit_mb` crossed: closed at once.
    OutputLimit = 2,
    /// The proxy stops: the client is read no more, replies on their way are still written.
    Shutdown = 4,
}

impl Hangup {
    pub fn raise(&self, reason: Reason) {
        self.reasons.fetch_or(reason as u8, Ordering::Release);
        self.reader.wake();
        self.writer.wake();
    }

    pub fn has(&self, reason: Reason) -> bool {
        self.reasons.load(Ordering::Acquire) & reason as u8 != 0
    }

    /// Whether the session must end, for whatever reason.
    pub fn any(&self) -> bool {
        self.reasons.load(Ordering::Acquire) != 0
    }

    /// The reader's wait: resolves once any reason is raised. Only the reader's task may wait here.
    pub async fn for_reader(&self) {
        wait(&self.reader, || self.any()).await
    }

    /// `CLIENT KILL`, for the session around the reader (the reader's task, its slot).
    pub async fn killed(&self) {
        wait(&self.reader, || self.has(Reason::Killed)).await
    }

    /// The writer's wait: resolves once the output limit is crossed (a killed client's writer is
    /// stopped by its session, and on shutdown the writer drains). Only the writer's task may wait
    /// here.
    pub async fn for_writer(&self) {
        wait(&self.writer, || self.has(Reason::OutputLimit)).await
    }
}

async fn wait(slot: &AtomicWaker, raised: impl Fn() -> bool) {
    poll_fn(|cx| {
        if raised() {
            return Poll::Ready(());
        }
        slot.register(cx.waker());
        // Checked again once registered: a reason raised in between is not missed.
        match raised() {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    async fn parked<F: std::future::Future<Output = ()> + Send + 'static>(
        wait: F,
    ) -> tokio::task::JoinHandle<()> {
        let task = tokio::spawn(wait);
        tokio::time::sleep(Duration::from_millis(20)).await;
        task
    }

    async fn released(task: tokio::task::JoinHandle<()>) {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("released")
            .unwrap();
    }

    #[tokio::test]
    async fn the_reader_wakes_for_any_reason_the_writer_for_the_output_limit() {
        for reason in [Reason::Killed, Reason::Shutdown] {
            let hangup = Arc::new(Hangup::default());
            let (h1, h2) = (hangup.clone(), hangup.clone());
            let reader = parked(async move { h1.for_reader().await }).await;
            let writer = parked(async move { h2.for_writer().await }).await;
            assert!(!hangup.any() && !reader.is_finished());
            hangup.raise(reason);
            released(reader).await;
            assert!(hangup.any() && hangup.has(reason));
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!writer.is_finished(), "{reason:?} does not stop the writer");
            hangup.raise(Reason::OutputLimit);
            released(writer).await;
        }
    }

    #[tokio::test]
    async fn a_raised_reason_ends_a_wait_at_once() {
        let hangup = Hangup::default();
        hangup.raise(Reason::OutputLimit);
        hangup.for_reader().await;
        hangup.for_writer().await;
        assert!(!hangup.has(Reason::Killed));
    }
}
