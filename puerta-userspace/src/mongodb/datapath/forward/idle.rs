//! `client_idle_timeout_sec` for forwarded flows (MongoDB mode): a client socket that carried no payload
//! in either direction for the timeout ends its flow. Both data paths ask TCP itself when the socket
//! last sent or received data ([`sockopt::quiet_for`]), so the copy loop stays untouched and spliced
//! flows, whose bytes userspace never sees, are covered the same way.
//!
//! Each flow sleeps until the earliest moment it could be idle (timeout minus the quiet time so far),
//! then asks again: one timer and one `getsockopt` per flow per timeout while it is busy, and a close
//! within a few milliseconds of the deadline once it is not.

use std::os::fd::RawFd;
use std::time::Duration;

use crate::mongodb::datapath::kernel::sockopt;

/// Floor between two checks, so a clock that rounds down (jiffies) cannot make a busy loop.
const MIN_RECHECK: Duration = Duration::from_millis(50);

/// Resolves once `client` has carried no payload either way for `timeout`; never when `timeout` is
/// `None` or the socket can no longer be asked (the data path then sees the error itself).
///
/// `client` is a raw fd because the data paths own the socket while this runs beside them: the
/// caller must poll this only while that socket is open.
pub async fn idle(client: RawFd, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let quiet = match sockopt::quiet_for(&client) {
            Ok(quiet) => quiet,
            Err(e) => {
                tracing::debug!("cannot read TCP_INFO for the idle timeout: {e}");
                return std::future::pending().await;
            }
        };
        if quiet >= timeout {
            return;
        }
        tokio::time::sleep((timeout - quiet).max(MIN_RECHECK)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        (client, accepted)
    }

    #[tokio::test]
    async fn quiet_socket_is_idle_after_the_timeout_and_not_before() {
        let started = Instant::now();
        let (_client, accepted) = pair().await;
        let timeout = Duration::from_millis(400);
        tokio::time::timeout(
            Duration::from_secs(20),
            idle(accepted.as_raw_fd(), Some(timeout)),
        )
        .await
        .expect("an idle socket is reported");
        // Slack for TCP's clock, which counts in jiffies.
        assert!(started.elapsed() >= timeout - Duration::from_millis(20));
    }

    #[tokio::test]
    async fn traffic_either_way_postpones_idle() {
        let (mut client, mut accepted) = pair().await;
        let fd = accepted.as_raw_fd();
        let timeout = Some(Duration::from_millis(1000));
        let watch = tokio::spawn(idle(fd, timeout));
        // 2.4 s of traffic every 150 ms, alternating direction: never idle for 1 s.
        for i in 0..16 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut byte = [0u8; 1];
            if i % 2 == 0 {
                client.write_all(b"x").await.unwrap();
                accepted.read_exact(&mut byte).await.unwrap();
            } else {
                accepted.write_all(b"y").await.unwrap();
                client.read_exact(&mut byte).await.unwrap();
            }
            assert!(!watch.is_finished(), "reported idle after {i} messages");
        }
        tokio::time::timeout(Duration::from_secs(20), watch)
            .await
            .expect("idle once the traffic stops")
            .unwrap();
    }

    #[tokio::test]
    async fn no_timeout_never_resolves() {
        let (_client, accepted) = pair().await;
        let waited =
            tokio::time::timeout(Duration::from_millis(300), idle(accepted.as_raw_fd(), None))
                .await;
        assert!(waited.is_err());
    }
}
