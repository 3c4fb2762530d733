//! The invalidation feed: while any client tracks, one RESP3 connection per master with `CLIENT
//! TRACKING ON BCAST`, over which the node announces every key written on it. A supervisor follows
//! the masters (a failover brings a new one) and reconnects lost feeds. Each time a feed connects or
//! is lost, writes may have gone unseen, so every tracking client is told to flush everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::redis::cluster::Cluster;
use crate::redis::node::backend;
use crate::redis::resp::{self, wire, Frame, Limits, Protocol};

/// How often the supervisor looks for new masters.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// Pause before reconnecting a lost feed.
const RECONNECT_AFTER: Duration = Duration::from_millis(200);

/// Runs the feed until `stop` (the last tracking client left).
pub async fn run(cluster: Arc<Cluster>, stop: CancellationToken) {
    let mut feeds: HashMap<Arc<str>, CancellationToken> = HashMap::new();
    loop {
        for master in cluster.masters() {
            feeds.entry(master.clone()).or_insert_with(|| {
                let token = stop.child_token();
                tokio::spawn(follow(cluster.clone(), master, token.clone()));
                token
            });
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
    cluster
        .tracking
        .connected
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
}

/// Waits until every current master's feed is connected, so that a client told `OK` misses no
/// write; an error names a master whose feed is not up.
pub async fn ready(cluster: &Cluster, within: Duration) -> Result<(), Frame> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let missing = {
            let connected = cluster
                .tracking
                .connected
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            cluster
                .masters()
                .into_iter()
                .find(|m| !connected.contains(m))
        };
        let Some(missing) = missing else {
            return Ok(());
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(wire::error(format!(
                "ERR Puerta: cannot track keys: no invalidation feed from {missing}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Keeps one master's feed connected until `stop`.
async fn follow(cluster: Arc<Cluster>, addr: Arc<str>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let result = tokio::select! {
            r = listen(&cluster, &addr) => r,
            _ = stop.cancelled() => break,
        };
        set_connected(&cluster, &addr, false);
        cluster.tracking.invalidate(None);
        if let Err(e) = result {
            tracing::debug!(node = %addr, "invalidation feed lost: {e}");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
    set_connected(&cluster, &addr, false);
}

fn set_connected(cluster: &Cluster, addr: &Arc<str>, up: bool) {
    let mut connected = cluster
        .tracking
        .connected
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match up {
        true => connected.insert(addr.clone()),
        false => connected.remove(addr),
    };
}

async fn listen(cluster: &Cluster, addr: &Arc<str>) -> Result<(), String> {
    let opts = cluster
        .connect_options()
        .speaking(Protocol::Resp3)
        .unbounded();
    let (mut stream, mut buf) = backend::open(addr, &opts)
        .await
        .map_err(|e| e.to_string())?;
    let on = wire::command_bytes(&[&b"CLIENT"[..], b"TRACKING", b"ON", b"BCAST"]);
    stream.write_all(&on).await.map_err(|e| e.to_string())?;
    let limits = Limits::default();
    let mut confirmed = false;
    loop {
        while let Some(frame) = resp::parse_reply(&mut buf, &limits).map_err(|e| e.to_string())? {
            match frame {
                Frame::Push(items) => cluster.tracking.invalidate(invalidated(items)?),
                Frame::Error(e) => return Err(String::from_utf8_lossy(&e).into_owned()),
                _ if !confirmed => {
                    confirmed = true;
                    // Writes before this moment were not seen: caches start over.
                    cluster.tracking.invalidate(None);
                    set_connected(cluster, addr, true);
                }
                _ => {}
            }
        }
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed by the node".into());
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(16 * 1024);
        }
    }
}

/// The keys of an `invalidate` push (`None`: all keys, as after FLUSHALL); other pushes are not
/// expected on this connection.
fn invalidated(items: Vec<Frame>) -> Result<Option<Vec<Bytes>>, String> {
    let mut items = items.into_iter();
    let kind = items.next();
    if kind.as_ref().and_then(Frame::as_bytes).map(|b| &b[..]) != Some(b"invalidate") {
        return Err(format!(
            "unexpected push on the invalidation feed: {kind:?}"
        ));
    }
    match items.next() {
        Some(Frame::Array(keys)) => Ok(Some(
            keys.into_iter()
                .filter_map(|k| k.as_bytes().cloned())
                .collect(),
        )),
        _ => Ok(None),
    }
}
