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
pub mod stats;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::front_door::{Mode, Serve};
use cluster::Cluster;

/// Redis mode behind the front door: the cluster state every session shares.
pub struct RedisMode {
    cluster: Arc<Cluster>,
    shutdown: CancellationToken,
}

/// Loads the topology (serving errors until one is known), then starts the refresh and reload
/// tasks and publishes the admin view.
pub async fn prepare(serve: &Serve) -> Arc<RedisMode> {
    let cluster = Cluster::new(serve.config.redis().clone());
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
        serve.reloads.clone(),
        serve.shutdown.clone(),
    ));
    tokio::spawn(cluster::refresh::run(
        cluster.clone(),
        serve.shutdown.clone(),
    ));
    Arc::new(RedisMode {
        cluster,
        shutdown: serve.shutdown.clone(),
    })
}

impl Mode for RedisMode {
    fn serve(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (cluster, shutdown) = (self.cluster.clone(), self.shutdown.clone());
        async move {
            let client = client::registry::register(&cluster, Some(peer), stream.local_addr().ok());
            client::session::run(cluster, stream, client.entry.clone(), shutdown).await;
        }
    }

    fn refuse(&self, stream: TcpStream) -> impl std::future::Future<Output = ()> + Send + 'static {
        too_many_clients(stream)
    }

    fn refused(&self) -> &AtomicU64 {
        &self.cluster.stats.clients_rejected
    }
}

/// Redis' own words for a client beyond `max_connections`.
async fn too_many_clients(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
    let _ = stream.shutdown().await;
}
