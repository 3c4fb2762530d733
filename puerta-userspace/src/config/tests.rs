use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

const MONGO: &str = r#"
mode = "mongodb"
listen_addr = "0.0.0.0:27017"
max_connections = 10000

[mongodb]
mongos_endpoints = ["mongodb1.example.com:27017", { address = "10.0.0.2:27017", weight = 5, proxy_protocol = "v2" }]
session_affinity_enabled = true
session_timeout_sec = 300
health_check_interval_sec = 10
"#;

#[test]
fn parses_mongodb_example() {
    let cfg = parse(MONGO).expect("valid");
    assert_eq!(cfg.mode, Mode::Mongodb);
    let m = cfg.mongodb();
    assert_eq!(m.endpoints.len(), 2);
    assert_eq!(m.endpoints[0].host, "mongodb1.example.com");
    assert_eq!(m.endpoints[0].weight, 1);
    assert_eq!(m.endpoints[1].weight, 5);
    assert_eq!(m.endpoints[1].proxy_protocol, ProxyProtocol::V2);
    assert_eq!(m.health_fall, 3);
    assert_eq!(m.health_rise, 2);
    assert_eq!(m.forwarding, Forwarding::Auto);
}

#[test]
fn parses_redis_example() {
    let cfg = parse(
        r#"
mode = "redis"
listen_addr = "127.0.0.1:6379"
[redis]
cluster_nodes = ["127.0.0.1:7000", "redis2:7001"]
slot_refresh_interval_sec = 30
max_redirects = 5
connection_timeout_ms = 500
"#,
    )
    .expect("valid");
    let r = cfg.redis();
    assert_eq!(r.cluster_nodes.len(), 2);
    assert_eq!(r.max_redirects, 5);
    assert_eq!(r.connection_timeout.as_millis(), 500);
    assert_eq!(r.command_timeout, Some(std::time::Duration::from_secs(5)));
    assert!(!r.admin_commands, "cluster-wide admin is opt-in");
    assert_eq!(
        (r.slowlog_log_slower_than_us, r.slowlog_max_len),
        (10_000, 128)
    );
}

#[test]
fn redis_admin_and_slowlog_settings_are_read() {
    let cfg = parse(
        "mode = \"redis\"\nlisten_addr = \"127.0.0.1:6379\"\n[redis]\ncluster_nodes = [\"a:1\"]\n\
         admin_commands = true\nslowlog_log_slower_than_us = -1\nslowlog_max_len = 7\n",
    )
    .expect("valid");
    let r = cfg.redis();
    assert!(r.admin_commands);
    assert_eq!((r.slowlog_log_slower_than_us, r.slowlog_max_len), (-1, 7));
}

#[test]
fn redis_command_timeout_zero_turns_it_off() {
    let text = "mode = \"redis\"\nlisten_addr = \"127.0.0.1:6379\"\n[redis]\n\
                cluster_nodes = [\"a:1\"]\ncommand_timeout_ms = ";
    let off = parse(&format!("{text}0\n")).expect("valid");
    assert_eq!(off.redis().command_timeout, None);
    let set = parse(&format!("{text}250\n")).expect("valid");
    assert_eq!(
        set.redis().command_timeout,
        Some(std::time::Duration::from_millis(250))
    );
}

#[test]
fn redis_failover_hold_defaults_to_five_seconds_and_zero_turns_it_off() {
    use std::time::Duration;
    let text = "mode = \"redis\"\nlisten_addr = \"127.0.0.1:6379\"\n[redis]\n\
                cluster_nodes = [\"a:1\"]\n";
    let default = parse(text).expect("valid");
    assert_eq!(default.redis().failover_hold, Duration::from_secs(5));
    let off = parse(&format!("{text}failover_hold_ms = 0\n")).expect("valid");
    assert_eq!(off.redis().failover_hold, Duration::ZERO);
}

#[test]
fn mongodb_affinity_is_table_unless_hash_is_asked_for() {
    use crate::config::Affinity;
    assert_eq!(
        parse(MONGO).expect("valid").mongodb().affinity,
        Affinity::Table
    );
    let hash = MONGO.replace("[mongodb]", "[mongodb]\naffinity = \"hash\"");
    assert_eq!(
        parse(&hash).expect("valid").mongodb().affinity,
        Affinity::Hash
    );
    let bad = MONGO.replace("[mongodb]", "[mongodb]\naffinity = \"random\"");
    assert!(parse(&bad).is_err());
}

fn invalid_line(text: &str) -> (String, usize) {
    let err = parse(text).expect_err("must be rejected");
    (err.to_string(), err.line().expect("has a line"))
}

#[test]
fn unknown_key_names_key_and_line() {
    let (msg, line) = invalid_line(&MONGO.replace("session_timeout_sec", "session_timeout_secs"));
    assert!(msg.contains("session_timeout_secs"), "{msg}");
    assert!(msg.starts_with("test.toml:"), "{msg}");
    assert_eq!(line, 9);
}

#[test]
fn wrong_type_names_line() {
    let (msg, line) =
        invalid_line(&MONGO.replace("max_connections = 10000", "max_connections = \"many\""));
    assert_eq!(line, 4, "{msg}");
    assert!(msg.contains("`max_connections`"), "{msg}");
}

#[test]
fn wrong_type_inside_a_multiline_array_names_the_array() {
    let text = "mode = \"mongodb\"\nlisten_addr = \"127.0.0.1:1\"\n[mongodb]\nmongos_endpoints = [\n  \"a:1\",\n  7,\n]\n";
    let (msg, line) = invalid_line(text);
    assert!((4..=6).contains(&line), "{msg}");
    assert!(msg.contains("`mongodb.mongos_endpoints`"), "{msg}");
    assert!(
        msg.contains("host:port"),
        "says what an endpoint looks like: {msg}"
    );
}

#[test]
fn empty_endpoint_list_is_rejected() {
    let text = MONGO.replace(
        r#"mongos_endpoints = ["mongodb1.example.com:27017", { address = "10.0.0.2:27017", weight = 5, proxy_protocol = "v2" }]"#,
        "mongos_endpoints = []",
    );
    let (msg, line) = invalid_line(&text);
    assert!(msg.contains("mongodb.mongos_endpoints"), "{msg}");
    assert_eq!(line, 7);
}

#[test]
fn bad_addresses_are_rejected() {
    for bad in ["nohost", ":27017", "host:0", "host:99999", "host:port"] {
        let text = MONGO.replace("mongodb1.example.com:27017", bad);
        let (msg, line) = invalid_line(&text);
        assert!(msg.contains("mongos_endpoints"), "{bad}: {msg}");
        assert_eq!(line, 7, "{bad}: {msg}");
    }
    let (msg, line) = invalid_line(&MONGO.replace("0.0.0.0:27017", "localhost"));
    assert!(msg.contains("listen_addr"), "{msg}");
    assert_eq!(line, 3);
}

#[test]
fn zero_weight_and_intervals_are_rejected() {
    assert!(parse(&MONGO.replace("weight = 5", "weight = 0")).is_err());
    let (msg, _) = invalid_line(&MONGO.replace(
        "health_check_interval_sec = 10",
        "health_check_interval_sec = 0",
    ));
    assert!(msg.contains("health_check_interval_sec"), "{msg}");
}

#[test]
fn mode_needs_its_section() {
    let (msg, _) = invalid_line("mode = \"redis\"\nlisten_addr = \"127.0.0.1:1\"\n");
    assert!(msg.contains("[redis]"), "{msg}");
    assert!(parse("mode = \"memcached\"\nlisten_addr = \"127.0.0.1:1\"\n").is_err());
}

#[test]
fn duplicate_endpoints_are_rejected() {
    let text = MONGO.replace("10.0.0.2:27017", "mongodb1.example.com:27017");
    let (msg, _) = invalid_line(&text);
    assert!(msg.contains("twice"), "{msg}");
}

#[test]
fn mongodb_extensions_parse() {
    let cfg = parse(
        r#"
mode = "mongodb"
listen_addr = "127.0.0.1:27017"
[mongodb]
mongos_endpoints = ["a:1", { address = "b:2", proxy_protocol = "off" }, { address = "[::1]:3", weight = 2 }]
proxy_protocol = "v1"
health_check_timeout_ms = 500
health_fall = 5
health_rise = 4
connect_timeout_ms = 250
forwarding = "userspace"
session_affinity_enabled = false
session_timeout_sec = 0
"#,
    )
    .expect("valid");
    let m = cfg.mongodb();
    let proxies: Vec<_> = m.endpoints.iter().map(|e| e.proxy_protocol).collect();
    assert_eq!(
        proxies,
        vec![ProxyProtocol::V1, ProxyProtocol::Off, ProxyProtocol::V1],
        "global default, per-endpoint override"
    );
    assert_eq!(m.endpoints[2].host, "::1");
    assert_eq!(m.endpoints[2].address(), "[::1]:3");
    assert_eq!(m.endpoints[2].weight, 2);
    assert_eq!(m.health_check_timeout.as_millis(), 500);
    assert_eq!((m.health_fall, m.health_rise), (5, 4));
    assert_eq!(m.connect_timeout.as_millis(), 250);
    assert_eq!(m.forwarding, Forwarding::Userspace);
    assert!(!m.session_affinity_enabled);
    assert!(m.session_timeout.is_zero());
}

#[test]
fn bad_mongodb_extension_values_name_their_key() {
    for (line, key) in [
        ("proxy_protocol = \"v3\"", "`mongodb.proxy_protocol`"),
        ("forwarding = \"magic\"", "`mongodb.forwarding`"),
        ("health_rise = 0", "mongodb.health_rise"),
        ("connect_timeout_ms = 0", "mongodb.connect_timeout_ms"),
        (
            "health_check_timeout_ms = -1",
            "`mongodb.health_check_timeout_ms`",
        ),
    ] {
        let text = format!("{MONGO}{line}\n");
        let (msg, n) = invalid_line(&text);
        assert_eq!(n, 11, "{line}: {msg}");
        assert!(msg.contains(key), "{line}: {msg}");
    }
}

#[test]
fn admin_addr_defaults_to_loopback_and_can_be_off() {
    let cfg = parse(MONGO).expect("valid");
    assert_eq!(
        cfg.admin_addr,
        Some("127.0.0.1:9090".parse().expect("addr"))
    );
    let off =
        parse(&MONGO.replace("max_connections = 10000", "admin_addr = \"off\"")).expect("valid");
    assert_eq!(off.admin_addr, None);
    let (msg, line) =
        invalid_line(&MONGO.replace("max_connections = 10000", "admin_addr = \"nowhere\""));
    assert!(msg.contains("admin_addr"), "{msg}");
    assert_eq!(line, 4);
}

#[test]
fn client_idle_timeout_defaults_to_off_and_reaches_redis_sessions() {
    let off = parse(MONGO).expect("valid");
    assert_eq!(off.client_idle_timeout, None);
    let text = "mode = \"redis\"\nlisten_addr = \"127.0.0.1:1\"\nclient_idle_timeout_sec = 30\n\
                [redis]\ncluster_nodes = [\"127.0.0.1:7000\"]\n";
    let cfg = parse(text).expect("valid");
    assert_eq!(cfg.client_idle_timeout, Some(Duration::from_secs(30)));
    assert_eq!(
        cfg.redis().client_idle_timeout,
        Some(Duration::from_secs(30))
    );
}

#[test]
fn every_forwarding_value_parses() {
    for (value, expected) in [
        ("auto", Forwarding::Auto),
        ("kernel", Forwarding::Kernel),
        ("splice", Forwarding::Splice),
        ("userspace", Forwarding::Userspace),
    ] {
        let text = format!("{MONGO}forwarding = \"{value}\"\n");
        let cfg = parse(&text).expect(value);
        assert_eq!(cfg.mongodb().forwarding, expected, "{value}");
    }
}

const REDIS: &str =
    "mode = \"redis\"\nlisten_addr = \"127.0.0.1:6379\"\n[redis]\ncluster_nodes = [\"a:1\"]\n";

#[test]
fn redis_tls_defaults_to_both_protocols_and_no_client_certificates() {
    let text = format!("{REDIS}[redis.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n");
    let config = parse(&text).unwrap();
    let tls = config.redis().tls.clone().unwrap();
    assert_eq!(tls.cert_file, std::path::PathBuf::from("c.pem"));
    assert_eq!(tls.protocols, vec![TlsVersion::V1_2, TlsVersion::V1_3]);
    assert_eq!(tls.client_ca_file, None);
    assert_eq!(tls.listen_addr, None);
    assert_eq!(config.tls_listen_addr(), None);
    assert_eq!(config.redis().backend_tls, None);
    let beside = format!("{text}listen_addr = \"127.0.0.1:6380\"\n");
    assert_eq!(
        parse(&beside).unwrap().tls_listen_addr(),
        Some("127.0.0.1:6380".parse().unwrap())
    );
    let only_13 = format!("{text}protocols = [\"1.3\"]\nclient_ca_file = \"ca.pem\"\n");
    let tls = parse(&only_13).unwrap().redis().tls.clone().unwrap();
    assert_eq!(tls.protocols, vec![TlsVersion::V1_3]);
    assert!(tls.client_ca_file.is_some());
}

#[test]
fn redis_tls_settings_that_cannot_work_are_refused() {
    let tls = format!("{REDIS}[redis.tls]\ncert_file = \"c\"\nkey_file = \"k\"\n");
    let (msg, line) = invalid_line(&format!("{tls}protocols = []\n"));
    assert!(msg.contains("redis.tls.protocols"), "{msg}");
    assert_eq!(line, 8);
    let (msg, _) = invalid_line(&format!("{tls}protocols = [\"1.1\"]\n"));
    assert!(msg.contains("1.1"), "{msg}");
    let (msg, _) = invalid_line(&format!("{tls}listen_addr = \"127.0.0.1:6379\"\n"));
    assert!(msg.contains("leave it out"), "{msg}");
    let (msg, _) = invalid_line(&format!("{tls}listen_addr = \"nowhere\"\n"));
    assert!(msg.contains("not an IP:port"), "{msg}");
    let (msg, _) = invalid_line(&format!(
        "{REDIS}[redis.backend_tls]\nserver_name = \"n\"\n"
    ));
    assert!(msg.contains("needs ca_file"), "{msg}");
    let (msg, _) = invalid_line(&format!(
        "{REDIS}[redis.backend_tls]\nca_file = \"ca\"\ncert_file = \"c\"\n"
    ));
    assert!(msg.contains("go together"), "{msg}");
    let skip = format!("{REDIS}[redis.backend_tls]\ninsecure_skip_verify = true\n");
    assert!(
        parse(&skip)
            .unwrap()
            .redis()
            .backend_tls
            .clone()
            .unwrap()
            .insecure_skip_verify
    );
}
