//! `CLIENT PAUSE timeout [WRITE|ALL]` held at the proxy: commands of every client wait in their
//! session (so each client's order is kept) until the pause ends or `CLIENT UNPAUSE`. Never
//! forwarded: on a node it would pause that node for every client of every proxy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub struct Pause {
    started: Instant,
    /// When the pause ends, in milliseconds since `started`; 0: no pause.
    until_ms: AtomicU64,
    /// `WRITE`: only commands that may change data wait.
    writes_only: AtomicBool,
    changed: Notify,
}

impl Default for Pause {
    fn default() -> Self {
        Pause {
            started: Instant::now(),
            until_ms: AtomicU64::new(0),
            writes_only: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }
}

impl Pause {
    /// Pauses for `length` from now (a later pause replaces an earlier one, as in Redis).
    pub fn pause(&self, length: Duration, writes_only: bool) {
        let until = self.now_ms() + length.as_millis() as u64;
        self.writes_only.store(writes_only, Ordering::Release);
        self.until_ms.store(until.max(1), Ordering::Release);
        self.changed.notify_waiters();
    }

    pub fn unpause(&self) {
        self.until_ms.store(0, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Whether a pause holds a command now (`write`: it may change data). One atomic load when
    /// there is no pause.
    pub fn holds(&self, write: bool) -> bool {
        let until = self.until_ms.load(Ordering::Acquire);
        let exempt = self.writes_only.load(Ordering::Acquire) && !write;
        until != 0 && self.now_ms() < until && !exempt
    }

    /// Waits while a pause holds a command (`write`: it may change data). One atomic load when
    /// there is no pause.
    pub async fn wait(&self, write: bool) {
        loop {
            if self.until_ms.load(Ordering::Acquire) == 0 {
                return;
            }
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let until = self.until_ms.load(Ordering::Acquire);
            let now = self.now_ms();
            let exempt = self.writes_only.load(Ordering::Acquire) && !write;
            if until == 0 || now >= until || exempt {
                return;
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(Duration::from_millis(until - now)) => {}
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_wait_for_the_pause_to_end_or_be_lifted() {
        let pause = std::sync::Arc::new(Pause::default());
        pause.wait(true).await;
        assert!(!pause.holds(true));
        pause.pause(Duration::from_secs(60), true);
        // WRITE: reads go on.
        assert!(pause.holds(true) && !pause.holds(false));
        pause.wait(false).await;
        let waiting = tokio::spawn({
            let pause = pause.clone();
            async move { pause.wait(true).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a write must wait");
        pause.unpause();
        assert!(!pause.holds(true));
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("UNPAUSE releases it")
            .expect("no panic");
        let started = Instant::now();
        pause.pause(Duration::from_millis(100), false);
        pause.wait(false).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
