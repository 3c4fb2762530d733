//! The TOML configuration: what an operator writes, checked once at start so that a mistake is reported
//! with the file, the key and the line instead of surfacing later as a confusing runtime failure.

mod endpoint;
mod error;
mod raw;
mod source;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use endpoint::{Endpoint, ProxyProtocol};
pub use error::ConfigError;

/// Which protocol Puerta fronts. One daemon runs one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Mongodb,
    Redis,
}

/// How MongoDB flows move their payload once both sockets are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// Kernel splice when the eBPF program loads, userspace otherwise (logged).
    #[default]
    Auto,
    Kernel,
    /// splice(2) through a pipe per direction: no payload copy, TCP backpressure, no eBPF.
    Splice,
    Userspace,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub listen_addr: SocketAddr,
    pub max_connections: usize,
    /// How long live flows may continue after SIGINT/SIGTERM before the process exits anyway.
    pub drain_timeout: Duration,
    /// Tokio worker threads; 0 means one per core.
    pub worker_threads: usize,
    /// `client_idle_timeout_sec`: a client that sends nothing for this long is closed (`None` = 0 =
    /// never, the default, as in redis-server: drivers keep idle pooled connections for good reasons).
    pub client_idle_timeout: Option<Duration>,
    /// `log_level`: a `RUST_LOG`-style filter; `RUST_LOG` wins at start-up, a reload applies this.
    pub log_level: Option<String>,
    /// Prometheus `/metrics` and the admin endpoints; `None` when configured `"off"`.
    pub admin_addr: Option<SocketAddr>,
    /// `handover_socket`: where a running Puerta offers its listening sockets to the next one (a
    /// restart or upgrade that drops nothing; see `handover`). `None`: no hand-over.
    pub handover_socket: Option<std::path::PathBuf>,
    pub mongodb: Option<MongoConfig>,
    pub redis: Option<RedisConfig>,
}

/// How a new client (or one whose mongos went down) is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    /// Smooth weighted round-robin; the pin lives in this instance's table.
    #[default]
    Table,
    /// Weighted rendezvous hashing of the client IP: every instance with the same backends and
    /// health view places a client alike.
    Hash,
}

#[derive(Debug, Clone)]
pub struct MongoConfig {
    pub endpoints: Vec<Endpoint>,
    pub session_affinity_enabled: bool,
    pub affinity: Affinity,
    pub session_timeout: Duration,
    pub health_check_interval: Duration,
    pub health_check_timeout: Duration,
    /// Consecutive failed checks before a healthy backend is taken out.
    pub health_fall: u32,
    /// Consecutive good checks before a down backend is put back.
    pub health_rise: u32,
    pub connect_timeout: Duration,
    pub forwarding: Forwarding,
    /// Where the affinity/backends maps are pinned (bpffs).
    pub bpf_pin_dir: std::path::PathBuf,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Seeds for topology discovery, `host:port`.
    pub cluster_nodes: Vec<Endpoint>,
    pub slot_refresh_interval: Duration,
    pub max_redirects: u32,
    pub connection_timeout: Duration,
    /// `command_timeout_ms`: a pooled backend connection whose oldest request has waited this long for
    /// its reply is declared dead and closed (`None` = 0 = never). A node that accepts and reads but
    /// never answers would otherwise hold its commands until TCP keepalive, which a live but stuck
    /// process always passes.
    pub command_timeout: Option<Duration>,
    /// `failover_hold_ms`: how long a command whose slot has no reachable master waits for the
    /// cluster to promote one, instead of failing at once (`ZERO` = 0 = fail at once).
    pub failover_hold: Duration,
    /// Backend connections per cluster node, shared by all clients.
    pub pool_size: usize,
    pub read_from_replicas: bool,
    /// Password clients must give with AUTH (default user).
    pub password: Option<String>,
    /// Named users clients may authenticate as with `AUTH user pass`.
    pub users: Vec<RedisUser>,
    pub backend_username: Option<String>,
    pub backend_password: Option<String>,
    /// The top-level `client_idle_timeout_sec`, here so that sessions find it next to the rest.
    pub client_idle_timeout: Option<Duration>,
    /// `client_output_limit_mb` in bytes (`None` = 0 = unlimited): replies held for one client that
    /// does not read them, past which it is closed, like Redis' `client-output-buffer-limit`.
    pub client_output_limit: Option<usize>,
    /// `admin_commands`: CONFIG SET, FLUSHALL, DEBUG, ... are sent to every node that needs them.
    /// Off by default: clients of a proxy are not expected to reconfigure or wipe the cluster.
    pub admin_commands: bool,
    /// `slowlog_log_slower_than_us` (negative: off) and `slowlog_max_len`: the proxy's own slow
    /// log, the initial values that `CONFIG SET slowlog-*` changes at run time.
    pub slowlog_log_slower_than_us: i64,
    pub slowlog_max_len: usize,
    /// `[redis.tls]`: clients connect with TLS, to `listen_addr` or to the section's own address.
    pub tls: Option<ListenerTls>,
    /// `[redis.backend_tls]`: every connection to a cluster node is TLS.
    pub backend_tls: Option<BackendTls>,
}

/// `[redis.tls]`. Paths are used as written (relative ones from the working directory, as
/// `handover_socket`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// `listen_addr` in `[redis.tls]`: TLS is served on this extra address and the top-level
    /// `listen_addr` stays plain, so that clients can move over one by one. `None`: the top-level
    /// `listen_addr` is TLS only.
    pub listen_addr: Option<SocketAddr>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Mutual TLS: a client without a certificate signed by one of these CAs is refused.
    pub client_ca_file: Option<PathBuf>,
    pub protocols: Vec<TlsVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

/// `[redis.backend_tls]` (see `tls::client` for how node names are checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    /// CAs that sign the nodes' certificates; required unless `insecure_skip_verify`.
    pub ca_file: Option<PathBuf>,
    /// A client certificate for nodes that require one (`tls-auth-clients yes`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name every node's certificate must carry, instead of the node's announced address.
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUser {
    pub name: String,
    pub password: String,
}

impl Config {
    /// Reads, parses and validates `path`. Errors name the file, key and line.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses TOML `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        raw::parse(text, path)
    }

    /// The `[mongodb]` section; validation guarantees it exists in MongoDB mode.
    pub fn mongodb(&self) -> &MongoConfig {
        self.mongodb
            .as_ref()
            .expect("validated: mongodb mode has a [mongodb] section")
    }

    /// The threads that serve clients: `worker_threads`, or one per core when it is 0.
    pub fn threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The address of a listener for TLS alone (Redis mode's `[redis.tls] listen_addr`).
    pub fn tls_listen_addr(&self) -> Option<SocketAddr> {
        self.redis.as_ref()?.tls.as_ref()?.listen_addr
    }

    /// The `[redis]` section; validation guarantees it exists in Redis mode.
    pub fn redis(&self) -> &RedisConfig {
        self.redis
            .as_ref()
            .expect("validated: redis mode has a [redis] section")
    }
}
