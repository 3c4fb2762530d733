//! The file as written (with source spans), and its conversion into the validated [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::source::{explain, Source};
use super::{
    Affinity, BackendTls, Config, ConfigError, Endpoint, Forwarding, ListenerTls, Mode,
    MongoConfig, ProxyProtocol, RedisConfig, RedisUser, TlsVersion,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    mode: Spanned<Mode>,
    listen_addr: Spanned<String>,
    #[serde(default = "default_max_connections")]
    max_connections: Spanned<usize>,
    #[serde(default = "default_drain_timeout_sec")]
    drain_timeout_sec: u64,
    #[serde(default)]
    worker_threads: usize,
    /// A `RUST_LOG`-style filter (`info`, `puerta=debug,info`); reloadable with SIGHUP.
    log_level: Option<Spanned<String>>,
    /// Seconds a client may send nothing before it is closed; 0 = never.
    #[serde(default)]
    client_idle_timeout_sec: u64,
    /// `"off"` disables the admin/metrics listener.
    #[serde(default = "default_admin_addr")]
    admin_addr: Spanned<String>,
    handover_socket: Option<PathBuf>,
    mongodb: Option<Spanned<RawMongo>>,
    redis: Option<Spanned<RawRedis>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMongo {
    mongos_endpoints: Spanned<Vec<Spanned<RawEndpoint>>>,
    #[serde(default = "yes")]
    session_affinity_enabled: bool,
    #[serde(default)]
    affinity: Affinity,
    #[serde(default = "default_session_timeout_sec")]
    session_timeout_sec: Spanned<u64>,
    #[serde(default = "default_health_interval_sec")]
    health_check_interval_sec: Spanned<u64>,
    #[serde(default = "default_health_timeout_ms")]
    health_check_timeout_ms: Spanned<u64>,
    #[serde(default = "default_fall")]
    health_fall: Spanned<u32>,
    #[serde(default = "default_rise")]
    health_rise: Spanned<u32>,
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: Spanned<u64>,
    /// Default for endpoints that do not say.
    #[serde(default)]
    proxy_protocol: ProxyProtocol,
    #[serde(default)]
    forwarding: Forwarding,
    #[serde(default = "default_pin_dir")]
    bpf_pin_dir: PathBuf,
}

/// `"host:port"` or `{ address = "host:port", weight = 5, proxy_protocol = "v2" }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawEndpoint {
    Plain(String),
    Detailed(RawEndpointTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpointTable {
    address: String,
    #[serde(default = "one")]
    weight: u32,
    proxy_protocol: Option<ProxyProtocol>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    cluster_nodes: Spanned<Vec<Spanned<String>>>,
    #[serde(default = "default_slot_refresh_sec")]
    slot_refresh_interval_sec: Spanned<u64>,
    #[serde(default = "default_max_redirects")]
    max_redirects: u32,
    #[serde(default = "default_redis_connect_ms")]
    connection_timeout_ms: Spanned<u64>,
    #[serde(default = "default_command_timeout_ms")]
    command_timeout_ms: u64,
    #[serde(default = "default_failover_hold_ms")]
    failover_hold_ms: u64,
    #[serde(default = "default_pool_size")]
    pool_size: Spanned<usize>,
    #[serde(default)]
    read_from_replicas: bool,
    password: Option<String>,
    #[serde(default)]
    users: Vec<RawUser>,
    backend_username: Option<String>,
    backend_password: Option<String>,
    #[serde(default = "default_client_output_limit_mb")]
    client_output_limit_mb: u64,
    #[serde(default)]
    admin_commands: bool,
    #[serde(default = "default_slowlog_slower_than_us")]
    slowlog_log_slower_than_us: i64,
    #[serde(default = "default_slowlog_max_len")]
    slowlog_max_len: usize,
    tls: Option<Spanned<RawListenerTls>>,
    backend_tls: Option<Spanned<RawBackendTls>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListenerTls {
    listen_addr: Option<Spanned<String>>,
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    #[serde(default = "default_tls_protocols")]
    protocols: Spanned<Vec<TlsVersion>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendTls {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

fn default_tls_protocols() -> Spanned<Vec<TlsVersion>> {
    Spanned::new(0..0, vec![TlsVersion::V1_2, TlsVersion::V1_3])
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password: String,
}

fn default_max_connections() -> Spanned<usize> {
    Spanned::new(0..0, 10_000)
}
fn default_admin_addr() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:9090".to_string())
}
fn default_drain_timeout_sec() -> u64 {
    30
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_session_timeout_sec() -> Spanned<u64> {
    Spanned::new(0..0, 300)
}
fn default_health_interval_sec() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}
fn default_health_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 2_000)
}
fn default_fall() -> Spanned<u32> {
    Spanned::new(0..0, 3)
}
fn default_rise() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}
fn default_connect_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 3_000)
}
fn default_pin_dir() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/puerta")
}
fn default_slot_refresh_sec() -> Spanned<u64> {
    Spanned::new(0..0, 60)
}
fn default_max_redirects() -> u32 {
    5
}
fn default_redis_connect_ms() -> Spanned<u64> {
    Spanned::new(0..0, 1_000)
}
fn default_command_timeout_ms() -> u64 {
    5_000
}
fn default_failover_hold_ms() -> u64 {
    5_000
}
fn default_client_output_limit_mb() -> u64 {
    64
}
/// Redis' own defaults.
fn default_slowlog_slower_than_us() -> i64 {
    10_000
}
fn default_slowlog_max_len() -> usize {
    128
}
fn default_pool_size() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}

pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let src = Source { text, path };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| src.line_of(s.start)).unwrap_or(1);
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            key: src.key_at_line(line),
            message: explain(e.message()),
        }
    })?;
    let listen_addr: SocketAddr = raw.listen_addr.get_ref().parse().map_err(|_| {
        src.invalid(
            "listen_addr",
            &raw.listen_addr,
            format!("`{}` is not an IP:port address", raw.listen_addr.get_ref()),
        )
    })?;
    if *raw.max_connections.get_ref() == 0 {
        return Err(src.invalid(
            "max_connections",
            &raw.max_connections,
            "must be at least 1",
        ));
    }
    let admin_addr = match raw.admin_addr.get_ref().as_str() {
        "off" => None,
        text => Some(text.parse::<SocketAddr>().map_err(|_| {
            src.invalid(
                "admin_addr",
                &raw.admin_addr,
                format!("`{text}` is not an IP:port address or \"off\""),
            )
        })?),
    };
    let mode = *raw.mode.get_ref();
    let mongodb = raw
        .mongodb
        .as_ref()
        .map(|m| mongo(&src, m.get_ref()))
        .transpose()?;
    let redis = raw
        .redis
        .as_ref()
        .map(|r| {
            redis(
                &src,
                r.get_ref(),
                client_idle_timeout(raw.client_idle_timeout_sec),
            )
        })
        .transpose()?;
    if let Some(tls) = raw.redis.as_ref().and_then(|r| r.get_ref().tls.as_ref()) {
        let same = redis
            .as_ref()
            .and_then(|r| r.tls.as_ref())
            .and_then(|t| t.listen_addr)
            .is_some_and(|a| a == listen_addr);
        if same {
            return Err(src.invalid(
                "redis.tls.listen_addr",
                tls,
                "is the top-level listen_addr; leave it out to make that address TLS only",
            ));
        }
    }
    match mode {
        Mode::Mongodb if mongodb.is_none() => {
            return Err(src.invalid(
                "mongodb",
                &raw.mode,
                "mode = \"mongodb\" needs a [mongodb] section",
            ))
        }
        Mode::Redis if redis.is_none() => {
            return Err(src.invalid(
                "redis",
                &raw.mode,
                "mode = \"redis\" needs a [redis] section",
            ))
        }
        _ => {}
    }
    Ok(Config {
        mode,
        listen_addr,
        max_connections: *raw.max_connections.get_ref(),
        drain_timeout: Duration::from_secs(raw.drain_timeout_sec),
        worker_threads: raw.worker_threads,
        client_idle_timeout: client_idle_timeout(raw.client_idle_timeout_sec),
        log_level: log_level(&src, raw.log_level.as_ref())?,
        admin_addr,
        handover_socket: raw.handover_socket.clone(),
        mongodb,
        redis,
    })
}

fn mongo(src: &Source, raw: &RawMongo) -> Result<MongoConfig, ConfigError> {
    let list = &raw.mongos_endpoints;
    if list.get_ref().is_empty() {
        return Err(src.invalid(
            "mongodb.mongos_endpoints",
            list,
            "needs at least one endpoint",
        ));
    }
    let endpoints = list
        .get_ref()
        .iter()
        .map(|item| mongo_endpoint(src, item, raw.proxy_protocol))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, ep) in endpoints.iter().enumerate() {
        if endpoints[..i]
            .iter()
            .any(|e| e.host == ep.host && e.port == ep.port)
        {
            let item = &list.get_ref()[i];
            return Err(src.invalid(
                "mongodb.mongos_endpoints",
                item,
                format!("`{ep}` is listed twice"),
            ));
        }
    }
    if *raw.health_fall.get_ref() == 0 {
        return Err(src.invalid(
            "mongodb.health_fall",
            &raw.health_fall,
            "must be at least 1",
        ));
    }
    if *raw.health_rise.get_ref() == 0 {
        return Err(src.invalid(
            "mongodb.health_rise",
            &raw.health_rise,
            "must be at least 1",
        ));
    }
    Ok(MongoConfig {
        endpoints,
        session_affinity_enabled: raw.session_affinity_enabled,
        affinity: raw.affinity,
        session_timeout: Duration::from_secs(*raw.session_timeout_sec.get_ref()),
        health_check_interval: Duration::from_secs(src.positive(
            "mongodb.health_check_interval_sec",
            &raw.health_check_interval_sec,
        )?),
        health_check_timeout: Duration::from_millis(src.positive(
            "mongodb.health_check_timeout_ms",
            &raw.health_check_timeout_ms,
        )?),
        health_fall: *raw.health_fall.get_ref(),
        health_rise: *raw.health_rise.get_ref(),
        connect_timeout: Duration::from_millis(
            src.positive("mongodb.connect_timeout_ms", &raw.connect_timeout_ms)?,
        ),
        forwarding: raw.forwarding,
        bpf_pin_dir: raw.bpf_pin_dir.clone(),
    })
}

fn mongo_endpoint(
    src: &Source,
    item: &Spanned<RawEndpoint>,
    default_proxy: ProxyProtocol,
) -> Result<Endpoint, ConfigError> {
    let key = "mongodb.mongos_endpoints";
    let (address, weight, proxy) = match item.get_ref() {
        RawEndpoint::Plain(a) => (a, 1, default_proxy),
        RawEndpoint::Detailed(t) => (
            &t.address,
            t.weight,
            t.proxy_protocol.unwrap_or(default_proxy),
        ),
    };
    let mut ep = Endpoint::parse(address).map_err(|m| src.invalid(key, item, m))?;
    if weight == 0 {
        return Err(src.invalid(key, item, format!("`{address}`: weight must be at least 1")));
    }
    ep.weight = weight;
    ep.proxy_protocol = proxy;
    Ok(ep)
}

fn log_level(src: &Source, raw: Option<&Spanned<String>>) -> Result<Option<String>, ConfigError> {
    let Some(level) = raw else { return Ok(None) };
    match tracing_subscriber::EnvFilter::try_new(level.get_ref()) {
        Ok(_) => Ok(Some(level.get_ref().clone())),
        Err(e) => Err(src.invalid(
            "log_level",
            level,
            format!("not a log filter such as \"info\" or \"puerta=debug,info\": {e}"),
        )),
    }
}

fn client_idle_timeout(sec: u64) -> Option<Duration> {
    (sec > 0).then(|| Duration::from_secs(sec))
}

fn redis(
    src: &Source,
    raw: &RawRedis,
    client_idle_timeout: Option<Duration>,
) -> Result<RedisConfig, ConfigError> {
    let list = &raw.cluster_nodes;
    if list.get_ref().is_empty() {
        return Err(src.invalid("redis.cluster_nodes", list, "needs at least one seed node"));
    }
    let cluster_nodes = list
        .get_ref()
        .iter()
        .map(|n| Endpoint::parse(n.get_ref()).map_err(|m| src.invalid("redis.cluster_nodes", n, m)))
        .collect::<Result<Vec<_>, _>>()?;
    if *raw.pool_size.get_ref() == 0 {
        return Err(src.invalid("redis.pool_size", &raw.pool_size, "must be at least 1"));
    }
    Ok(RedisConfig {
        cluster_nodes,
        slot_refresh_interval: Duration::from_secs(src.positive(
            "redis.slot_refresh_interval_sec",
            &raw.slot_refresh_interval_sec,
        )?),
        max_redirects: raw.max_redirects,
        connection_timeout: Duration::from_millis(
            src.positive("redis.connection_timeout_ms", &raw.connection_timeout_ms)?,
        ),
        command_timeout: (raw.command_timeout_ms > 0)
            .then(|| Duration::from_millis(raw.command_timeout_ms)),
        failover_hold: Duration::from_millis(raw.failover_hold_ms),
        pool_size: *raw.pool_size.get_ref(),
        read_from_replicas: raw.read_from_replicas,
        password: raw.password.clone(),
        users: raw
            .users
            .iter()
            .map(|u| RedisUser {
                name: u.name.clone(),
                password: u.password.clone(),
            })
            .collect(),
        backend_username: raw.backend_username.clone(),
        backend_password: raw.backend_password.clone(),
        client_idle_timeout,
        client_output_limit: (raw.client_output_limit_mb > 0).then(|| {
            usize::try_from(raw.client_output_limit_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX)
        }),
        admin_commands: raw.admin_commands,
        slowlog_log_slower_than_us: raw.slowlog_log_slower_than_us,
        slowlog_max_len: raw.slowlog_max_len,
        tls: raw.tls.as_ref().map(|t| listener_tls(src, t)).transpose()?,
        backend_tls: raw
            .backend_tls
            .as_ref()
            .map(|t| backend_tls(src, t))
            .transpose()?,
    })
}

fn listener_tls(src: &Source, raw: &Spanned<RawListenerTls>) -> Result<ListenerTls, ConfigError> {
    let tls = raw.get_ref();
    if tls.protocols.get_ref().is_empty() {
        return Err(src.invalid(
            "redis.tls.protocols",
            &tls.protocols,
            "needs \"1.2\", \"1.3\" or both",
        ));
    }
    let listen_addr = match &tls.listen_addr {
        Some(text) => Some(text.get_ref().parse::<SocketAddr>().map_err(|_| {
            src.invalid(
                "redis.tls.listen_addr",
                text,
                format!("`{}` is not an IP:port address", text.get_ref()),
            )
        })?),
        None => None,
    };
    Ok(ListenerTls {
        listen_addr,
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        client_ca_file: tls.client_ca_file.clone(),
        protocols: tls.protocols.get_ref().clone(),
    })
}

fn backend_tls(src: &Source, raw: &Spanned<RawBackendTls>) -> Result<BackendTls, ConfigError> {
    let tls = raw.get_ref();
    if tls.ca_file.is_none() && !tls.insecure_skip_verify {
        return Err(src.invalid(
            "redis.backend_tls",
            raw,
            "needs ca_file (the CA that signs the nodes' certificates), or insecure_skip_verify = true",
        ));
    }
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return Err(src.invalid(
            "redis.backend_tls",
            raw,
            "cert_file and key_file go together",
        ));
    }
    Ok(BackendTls {
        ca_file: tls.ca_file.clone(),
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        server_name: tls.server_name.clone(),
        insecure_skip_verify: tls.insecure_skip_verify,
    })
}
