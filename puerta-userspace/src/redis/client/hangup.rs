//! Why a client's session must end: CLIENT KILL, the output limit, shutdown. The reader asks on
//! every read and parks on it with every read; the writer parks on it with every write and every
//! wait for a reply (see [`crate::redis::signal`] for why these are not cancellation tokens).

use crate::redis::signal::{Flags, Task};

#[derive(Debug, Default)]
pub struct Hangup(Flags);

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

const ANY: u8 = Reason::Killed as u8 | Reason::OutputLimit as u8 | Reason::Shutdown as u8;

impl Hangup {
    pub fn raise(&self, reason: Reason) {
        self.0.raise(reason as u8);
    }

    pub fn has(&self, reason: Reason) -> bool {
        self.0.has(reason as u8)
    }

    /// Whether the session must end, for whatever reason.
    pub fn any(&self) -> bool {
        self.0.has(ANY)
    }

    /// The reader's wait: resolves once any reason is raised.
    pub async fn for_reader(&self) {
        self.0.wait(Task::Reader, ANY).await
    }

    /// `CLIENT KILL`, for the session around the reader (the reader's task).
    pub async fn killed(&self) {
        self.0.wait(Task::Reader, Reason::Killed as u8).await
    }

    /// The writer's wait: resolves once the output limit is crossed (a killed client's writer is
    /// stopped by its session, and on shutdown the writer drains).
    pub async fn for_writer(&self) {
        self.0.wait(Task::Writer, Reason::OutputLimit as u8).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn the_reader_wakes_for_any_reason_the_writer_for_the_output_limit() {
        for reason in [Reason::Killed, Reason::Shutdown] {
            let hangup = Arc::new(Hangup::default());
            let (h1, h2) = (hangup.clone(), hangup.clone());
            let reader = tokio::spawn(async move { h1.for_reader().await });
            let writer = tokio::spawn(async move { h2.for_writer().await });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!hangup.any() && !reader.is_finished());
            hangup.raise(reason);
            tokio::time::timeout(Duration::from_secs(5), reader)
                .await
                .expect("released")
                .unwrap();
            assert!(hangup.any() && hangup.has(reason));
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!writer.is_finished(), "{reason:?} does not stop the writer");
            hangup.raise(Reason::OutputLimit);
            tokio::time::timeout(Duration::from_secs(5), writer)
                .await
                .expect("released")
                .unwrap();
        }
    }
}
