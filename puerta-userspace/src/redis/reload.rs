//! SIGHUP in Redis mode: new seeds (`cluster_nodes`) are used from the next topology refresh, which is
//! requested at once; the slow log's settings are applied (the file wins over an earlier `CONFIG SET`);
//! the log level is handled by `main`. TLS certificates and keys (`[redis.tls]`,
//! `[redis.backend_tls]`) are re-read for new connections; established ones keep theirs, and files
//! that do not load leave the ones in use in place. Other `[redis]` settings need a restart and the
//! log says so.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, RedisConfig};
use crate::redis::cluster::Cluster;
use crate::tls::server::Acceptor;

pub async fn follow(
    cluster: Arc<Cluster>,
    tls: Option<Arc<Acceptor>>,
    mut reloads: watch::Receiver<Arc<Config>>,
    stop: CancellationToken,
) {
    while let Some(config) = crate::reload::next_config(&mut reloads, &stop).await {
        let Some(new) = &config.redis else {
            tracing::error!("reload ignored: the new configuration has no [redis] section");
            continue;
        };
        let seeds: Vec<Arc<str>> = new
            .cluster_nodes
            .iter()
            .map(|s| s.address().into())
            .collect();
        warn_restart_only(&cluster.config, new);
        tracing::info!(?seeds, "configuration reloaded (redis seeds)");
        cluster.set_seeds(seeds);
        cluster
            .slowlog
            .set_slower_than_us(new.slowlog_log_slower_than_us);
        cluster.slowlog.set_max_len(new.slowlog_max_len);
        cluster.request_refresh();
        reload_tls(&cluster, tls.as_deref(), new);
    }
}

/// Re-reads the certificates and keys of both legs. TLS cannot be turned on or off live: the
/// listener's clients and the pooled node connections would speak two protocols at once.
fn reload_tls(cluster: &Cluster, tls: Option<&Acceptor>, new: &RedisConfig) {
    match (tls, &new.tls) {
        (Some(acceptor), Some(settings)) => match acceptor.reload(settings) {
            Ok(()) => tracing::info!("redis.tls: certificate re-read for new client connections"),
            Err(e) => tracing::error!("redis.tls not reloaded, the certificate in use stays: {e}"),
        },
        (None, None) => {}
        _ => tracing::warn!("redis.tls added or removed; it takes effect only after a restart"),
    }
    match (&cluster.connect_options().tls, &new.backend_tls) {
        (Some(connector), Some(settings)) => match connector.reload(settings) {
            Ok(()) => tracing::info!("redis.backend_tls: files re-read for new node connections"),
            Err(e) => tracing::error!("redis.backend_tls not reloaded, the files in use stay: {e}"),
        },
        (None, None) => {}
        _ => tracing::warn!(
            "redis.backend_tls added or removed; it takes effect only after a restart"
        ),
    }
}

fn warn_restart_only(old: &RedisConfig, new: &RedisConfig) {
    let fixed = [
        ("pool_size", old.pool_size != new.pool_size),
        (
            "read_from_replicas",
            old.read_from_replicas != new.read_from_replicas,
        ),
        ("max_redirects", old.max_redirects != new.max_redirects),
        (
            "password/users",
            old.password != new.password || old.users != new.users,
        ),
        (
            "slot_refresh_interval_sec",
            old.slot_refresh_interval != new.slot_refresh_interval,
        ),
        (
            "connection_timeout_ms",
            old.connection_timeout != new.connection_timeout,
        ),
        (
            "command_timeout_ms",
            old.command_timeout != new.command_timeout,
        ),
        ("admin_commands", old.admin_commands != new.admin_commands),
        ("failover_hold_ms", old.failover_hold != new.failover_hold),
        (
            "client_output_limit_mb",
            old.client_output_limit != new.client_output_limit,
        ),
        (
            "tls.listen_addr",
            old.tls.as_ref().and_then(|t| t.listen_addr)
                != new.tls.as_ref().and_then(|t| t.listen_addr),
        ),
    ];
    for (key, changed) in fixed {
        if changed {
            tracing::warn!("redis.{key} changed; it takes effect only after a restart");
        }
    }
}
