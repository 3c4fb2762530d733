//! Redis mode: a RESP proxy in front of a Redis Cluster. The folders follow a command's path:
//! `client` (the client connection: session, order, output limit) → `command` (the parsed command,
//! its table entry, its slot) → `exec` (answered locally, queued in a transaction, fanned out, split
//! per slot, or routed) → `cluster` (slot map, router, redirects) → `node` (pooled pipelined node
//! connections), and the reply comes back the same way, as the bytes the node sent. `resp` is the
//! wire format.

pub mod admin_view;
pub mod client;
pub mod cluster;
pub mod command;
pub mod exec;
pub mod metrics;
pub mod node;
pub mod reload;
pub mod resp;
pub mod signal;
pub mod stats;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::front_door::{Door, Mode, Serve};
use crate::log_throttle::LogThrottle;
use crate::tls::client::Connector;
use crate::tls::server::Acceptor;
use crate::tls::{Stream, TlsError};
use client::worker::Workers;
use cluster::Cluster;

/// Redis mode behind the front door: the cluster state every session shares.
pub struct RedisMode {
    cluster: Arc<Cluster>,
    shutdown: CancellationToken,
    /// `[redis.tls]`: client connections through its door start with a TLS handshake.
    tls: Option<Arc<Acceptor>>,
    /// The door TLS clients come through: `listen_addr`, unless `[redis.tls]` has its own.
    tls_door: Door,
    handshake_failures: Arc<LogThrottle>,
}

/// Why Redis mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot start a worker thread: {0}")]
    Workers(std::io::Error),
}

/// Loads the TLS material (a file that does not load stops start-up), then the topology (serving
/// errors until one is known), starts the refresh and reload tasks and publishes the admin view.
pub async fn prepare(serve: &Serve) -> Result<Arc<RedisMode>, RedisError> {
    let config = serve.config.redis();
    crate::tls::describe();
    let tls = config
        .tls
        .as_ref()
        .map(Acceptor::load)
        .transpose()?
        .map(Arc::new);
    let backend_tls = match &config.backend_tls {
        Some(settings) => {
            if settings.insecure_skip_verify {
                tracing::warn!(
                    "redis.backend_tls.insecure_skip_verify = true: cluster nodes' certificates are \
                     not verified; anyone on the path can impersonate a node"
                );
            }
            Some(Arc::new(Connector::load(settings)?))
        }
        None => None,
    };
    let workers = Arc::new(Workers::start(serve.config.threads()).map_err(RedisError::Workers)?);
    tracing::info!(
        worker_threads = workers.count(),
        "serving clients on worker threads"
    );
    let cluster = Cluster::with_backend_tls(config.clone(), backend_tls, workers);
    if cluster::refresh::refresh_once(&cluster).await {
        tracing::info!(
            masters = cluster.masters().len(),
            covered = cluster.covered_slots(),
            "cluster topology loaded"
        );
    } else {
        tracing::warn!("no cluster node answered yet; serving errors until the topology is known");
    }
    metrics::describe();
    serve.admin.publish(Arc::new(admin_view::RedisAdminView {
        cluster: cluster.clone(),
    }));
    tokio::spawn(reload::follow(
        cluster.clone(),
        tls.clone(),
        serve.reloads.clone(),
        serve.shutdown.clone(),
    ));
    tokio::spawn(cluster::refresh::run(
        cluster.clone(),
        serve.shutdown.clone(),
    ));
    tokio::spawn(hang_up_on_shutdown(cluster.clone(), serve.shutdown.clone()));
    Ok(Arc::new(RedisMode {
        cluster,
        shutdown: serve.shutdown.clone(),
        tls,
        tls_door: match config.tls.as_ref().and_then(|t| t.listen_addr) {
            Some(_) => Door::Tls,
            None => Door::Main,
        },
        handshake_failures: Arc::new(LogThrottle::new(Duration::from_secs(1))),
    }))
}

/// Stops every client's reading once the proxy stops (their replies on the way still go out).
async fn hang_up_on_shutdown(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    shutdown.cancelled().await;
    cluster
        .clients
        .hang_up_all(client::hangup::Reason::Shutdown);
}

impl Mode for RedisMode {
    fn serve(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        door: Door,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (cluster, shutdown) = (self.cluster.clone(), self.shutdown.clone());
        let tls = self.tls.clone().filter(|_| door == self.tls_door);
        let failures = self.handshake_failures.clone();
        let workers = cluster.workers.clone();
        let session = move |stream: TcpStream| async move {
            let stream = match tls {
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => stream,
                    Err(reason) => return handshake_failed(&failures, peer, &reason),
                },
                None => Stream::Plain(stream),
            };
            let local = stream.tcp().local_addr().ok();
            let client = client::registry::register(&cluster, Some(peer), local);
            client::session::run(cluster, stream, client.entry.clone(), shutdown).await;
        };
        async move { workers.serve(stream, session).await }
    }

    /// A TLS client cannot read a plain error line: it is just closed.
    fn refuse(
        &self,
        stream: TcpStream,
        door: Door,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let tls = self.tls.is_some() && door == self.tls_door;
        async move {
            if !tls {
                too_many_clients(stream).await
            }
        }
    }

    fn refused(&self) -> &AtomicU64 {
        &self.cluster.stats.clients_rejected
    }
}

/// Counted, and logged at most once a second: a scanner or a misconfigured client must not flood
/// the log, but an operator must see that clients fail (a wrong CA, an expired certificate).
fn handshake_failed(throttle: &LogThrottle, peer: SocketAddr, reason: &str) {
    ::metrics::counter!("puerta_tls_handshake_failures_total", "side" => "client").increment(1);
    if let Some(failures) = throttle.hit(Instant::now()) {
        tracing::warn!(%peer, failures, "TLS handshake with client {peer} failed: {reason}");
    }
}

/// Redis' own words for a client beyond `max_connections`.
async fn too_many_clients(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
    let _ = stream.shutdown().await;
}
