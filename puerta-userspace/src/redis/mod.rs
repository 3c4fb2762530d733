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

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::app::Serve;
use cluster::Cluster;
use stats::Stats;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("accept failed: {0}")]
    Accept(std::io::Error),
}

pub async fn serve(mut serve: Serve) -> Result<(), RedisError> {
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
    let slots = Arc::new(Semaphore::new(serve.config.max_connections));
    serve.ready(crate::handover::CarryOver::nothing());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = serve.listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_transient(&e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(RedisError::Accept(e)),
            },
            _ = serve.stop_accepting.cancelled() => return Ok(()),
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            Stats::bump(&cluster.stats.clients_rejected);
            tracing::warn!(%peer, "max_connections reached; refusing client");
            serve.flows.spawn(refuse(stream));
            continue;
        };
        let cluster = cluster.clone();
        let shutdown = serve.shutdown.clone();
        serve.flows.spawn(async move {
            let client = client::registry::register(&cluster, Some(peer), stream.local_addr().ok());
            client::session::run(cluster, stream, client.entry.clone(), shutdown).await;
            drop(client);
            drop(permit);
        });
    }
}

/// Errors after which accepting can go on (out of descriptors, a client that reset early).
fn is_transient(e: &std::io::Error) -> bool {
    !matches!(e.kind(), std::io::ErrorKind::InvalidInput)
}

async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
    let _ = stream.shutdown().await;
}
