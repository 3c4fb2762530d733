//! `client_idle_timeout_sec` for Redis clients: a client that sends nothing for that long, including
//! one that stalls in the middle of a frame (slowloris), is closed. Until then it holds only what it
//! sent (its read buffer) and a task; no backend connection is held per client.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use crate::tls::ReadHalf;

/// Reads more client bytes into `buf`; `TimedOut` when `limit` passes without any.
pub async fn read_buf(
    read: &mut ReadHalf,
    buf: &mut BytesMut,
    limit: Option<Duration>,
) -> io::Result<usize> {
    let Some(limit) = limit else {
        return read.read_buf(buf).await;
    };
    match tokio::time::timeout(limit, read.read_buf(buf)).await {
        Ok(result) => result,
        Err(_) => {
            metrics::counter!("puerta_client_idle_timeouts_total").increment(1);
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no data for {} s (client_idle_timeout_sec)",
                    limit.as_secs()
                ),
            ))
        }
    }
}

/// The reason a session ended on a read error, at debug level (a thousand idle clients must not flood
/// the log; the counter above is the operator's view).
pub fn log_close(client: u64, error: &io::Error) {
    if error.kind() == io::ErrorKind::TimedOut {
        tracing::debug!(client, "closing idle client: {error}");
    } else {
        tracing::debug!(client, "client read failed: {error}");
    }
}
