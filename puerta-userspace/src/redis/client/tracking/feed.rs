//! The invalidation feed: while any client tracks, one RESP3 connection per master with `CLIENT
//! TRACKING ON BCAST`, over which the node announces every key written on it. A supervisor follows
//! the masters (a failover brings a new one) and reconnects lost feeds. Each time a feed is lost or
//! reconnects, or a new master's feed connects, writes may have gone unseen, so every tracking
//! client is told to flush everything. The first feeds need no flush: `CLIENT TRACKING ON` answers
//! only once they are up, so nothing was cached before them (a flush then would only race the
//! client's first reads, and a client such as redis-py drops the read in progress).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::FeedStart;
use crate::redis::cluster::Cluster;
use crate::redis::node::backend;
use crate::redis::resp::{self, wire, Frame, Limits, Protocol};

/// How often the supervisor looks for new masters.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// Pause before reconnecting a lost feed.
const RECONNECT_AFTER: Duration = Duration::from_millis(200);

/// Runs the feed until `start.stop` (the last tracking client left).
pub async fn run(cluster: Arc<Cluster>, start: FeedStart) {
    let FeedStart { stop, generation } = start;
    let mut feeds: HashMap<Arc<str>, CancellationToken> = HashMap::new();
    // The first masters' feeds connect before any client of this feed is told OK (`ready`), so
    // nothing can be cached that they missed; a master found later (a failover) may have taken
    // writes for cached keys before its feed was up.
    let mut first_round = true;
    loop {
        for master in cluster.masters() {
            feeds.entry(master.clone()).or_insert_with(|| {
                let token = stop.child_token();
                let feed = Follow {
                    addr: master,
                    generation,
                    flush_on_connect: !first_round,
                };
                tokio::spawn(follow(cluster.clone(), feed, token.clone()));
                token
            });
        }
        first_round = false;
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
        .retain(|_, g| *g != generation);
}

/// Waits until every current master's feed (of the running generation: a stopped feed's
/// connections are going) is connected, so that a client told `OK` misses no write; an error
/// names a master whose feed is not up.
pub async fn ready(cluster: &Cluster, within: Duration) -> Result<(), Frame> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let generation = cluster.tracking.feed_generation();
        let missing = {
            let connected = cluster
                .tracking
                .connected
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            cluster
                .masters()
                .into_iter()
                .find(|m| generation.is_none() || connected.get(m) != generation.as_ref())
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

/// One master's feed.
struct Follow {
    addr: Arc<str>,
    generation: u64,
    /// Whether caches must start over when it connects: on a reconnect (writes while it was down
    /// went unseen) and for a master found after clients were told OK.
    flush_on_connect: bool,
}

/// Keeps one master's feed connected until `stop`.
async fn follow(cluster: Arc<Cluster>, mut feed: Follow, stop: CancellationToken) {
    let (addr, generation) = (feed.addr.clone(), feed.generation);
    while !stop.is_cancelled() {
        let result = tokio::select! {
            r = listen(&cluster, &feed) => r,
            _ = stop.cancelled() => break,
        };
        feed.flush_on_connect = true;
        set_connected(&cluster, &addr, generation, false);
        cluster.tracking.invalidate(None);
        if let Err(e) = result {
            tracing::debug!(node = %addr, "invalidation feed lost: {e}");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
    set_connected(&cluster, &addr, generation, false);
}

/// Marks `addr` connected for `generation`, or no longer (only if that generation marked it).
pub(super) fn set_connected(cluster: &Cluster, addr: &Arc<str>, generation: u64, up: bool) {
    let mut connected = cluster
        .tracking
        .connected
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match up {
        true => {
            connected.insert(addr.clone(), generation);
        }
        false if connected.get(addr) == Some(&generation) => {
            connected.remove(addr);
        }
        false => {}
    }
}

async fn listen(cluster: &Cluster, feed: &Follow) -> Result<(), String> {
    let (addr, generation) = (&feed.addr, feed.generation);
    let opts = cluster
        .connect_options()
        .speaking(Protocol::Resp3)
        .unbounded();
    let (mut stream, mut buf) = backend::open(addr, &opts)
        .await
        .map_err(|e| e.to_string())?;
    let on = wire::command_bytes(&[&b"CLIENT"[..], b"TRACKING", b"ON", b"BCAST"]);
    stream.write_all(&on).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let limits = Limits::default();
    let mut confirmed = false;
    loop {
        while let Some(frame) = resp::parse_reply(&mut buf, &limits).map_err(|e| e.to_string())? {
            match frame {
                Frame::Push(items) => cluster.tracking.invalidate(invalidated(items)?),
                Frame::Error(e) => return Err(String::from_utf8_lossy(&e).into_owned()),
                _ if !confirmed => {
                    confirmed = true;
                    if feed.flush_on_connect {
                        // Writes before this moment were not seen: caches start over.
                        cluster.tracking.invalidate(None);
                    }
                    set_connected(cluster, addr, generation, true);
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
