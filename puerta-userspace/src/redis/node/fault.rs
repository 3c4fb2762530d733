//! Backend faults an operator must see without turning on debug logs: a node that stops answering,
//! resets its connections, sends bytes that are not RESP, or cannot be reached. Each is logged at
//! `warn` — at most one line per node and kind of fault per second, the line saying how many it
//! stands for, so a broken node under load cannot flood the log — and counted in
//! `puerta_redis_backend_faults_total{node, kind}`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::log_throttle::LogThrottle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The oldest request on a connection got no reply within `command_timeout_ms`.
    Timeout,
    /// The connection was reset (or another socket error).
    Reset,
    /// The node sent something that is not a RESP reply, or a reply nobody asked for.
    BadReply,
    /// The node closed the connection while replies were still owed.
    Closed,
    /// Connecting (or the AUTH/READONLY handshake) failed.
    Connect,
}

impl FaultKind {
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Timeout => "timeout",
            FaultKind::Reset => "reset",
            FaultKind::BadReply => "bad_reply",
            FaultKind::Closed => "closed",
            FaultKind::Connect => "connect",
        }
    }

    /// How a socket error on a backend connection is reported.
    pub fn of_io(e: &std::io::Error) -> FaultKind {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FaultKind::Closed,
            _ => FaultKind::Reset,
        }
    }
}

const LOG_PERIOD: Duration = Duration::from_secs(1);

/// One throttle per node address and kind. Addresses come from the topology, so the map stays small.
type Throttles = HashMap<(Arc<str>, FaultKind), Arc<LogThrottle>>;
static THROTTLES: LazyLock<Mutex<Throttles>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn throttle(node: &Arc<str>, kind: FaultKind) -> Arc<LogThrottle> {
    let mut map = THROTTLES.lock().unwrap_or_else(|e| e.into_inner());
    map.entry((node.clone(), kind))
        .or_insert_with(|| Arc::new(LogThrottle::new(LOG_PERIOD)))
        .clone()
}

/// Counts and (rate-limited) logs one fault of `node`. `failed` is how many requests it failed.
pub fn report(node: &Arc<str>, kind: FaultKind, detail: &str, failed: usize) {
    metrics::counter!(
        "puerta_redis_backend_faults_total",
        "node" => node.to_string(),
        "kind" => kind.label()
    )
    .increment(1);
    if let Some(faults) = throttle(node, kind).hit(Instant::now()) {
        tracing::warn!(
            node = %node,
            fault = kind.label(),
            failed_requests = failed,
            faults,
            "cluster node {node}: {detail}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_kinds() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(FaultKind::of_io(&reset), FaultKind::Reset);
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(FaultKind::of_io(&eof), FaultKind::Closed);
        assert_eq!(FaultKind::BadReply.label(), "bad_reply");
    }
}
