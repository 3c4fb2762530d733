//! Frontend authentication: `password` for the default user and `users` for `AUTH user pass`, checked
//! by the proxy. Backend credentials are separate (`backend_username`/`backend_password`).

use bytes::Bytes;

use crate::config::RedisConfig;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

pub fn required(config: &RedisConfig) -> bool {
    config.password.is_some() || !config.users.is_empty()
}

pub fn noauth() -> Frame {
    wire::error("NOAUTH Authentication required.")
}

/// Checks `AUTH [user] pass` (args without the command name); the user name on success.
pub fn check(config: &RedisConfig, args: &[Bytes]) -> Result<String, Frame> {
    let (user, pass) = match args {
        [pass] => ("default".to_string(), pass),
        [user, pass] => (String::from_utf8_lossy(user).into_owned(), pass),
        _ => return Err(wire::error("ERR syntax error")),
    };
    if !required(config) {
        // Like Redis with a passwordless default user: any password is right for `default` given
        // by name (clients configured with a user name send it, in AUTH or in HELLO), and the
        // one-argument form says that nothing is configured.
        return match args {
            [_] => Err(wire::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            )),
            _ if user == "default" => Ok(user),
            _ => Err(wrongpass()),
        };
    }
    let expected = if user == "default" {
        config
            .password
            .as_deref()
            .or_else(|| find_user(config, "default"))
    } else {
        find_user(config, &user)
    };
    match expected {
        Some(p) if constant_time_eq(p.as_bytes(), pass) => Ok(user),
        _ => Err(wrongpass()),
    }
}

/// Whether `name` is a user clients can log in as (`default` always is).
pub fn user_exists(config: &RedisConfig, name: &str) -> bool {
    name == "default" || find_user(config, name).is_some()
}

fn wrongpass() -> Frame {
    wire::error("WRONGPASS invalid username-password pair or user is disabled.")
}

fn find_user<'a>(config: &'a RedisConfig, name: &str) -> Option<&'a str> {
    config
        .users
        .iter()
        .find(|u| u.name == name)
        .map(|u| u.password.as_str())
}

/// Comparison whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::RedisUser;

    pub(crate) fn config(password: Option<&str>, users: &[(&str, &str)]) -> RedisConfig {
        RedisConfig {
            cluster_nodes: vec![],
            slot_refresh_interval: std::time::Duration::from_secs(1),
            max_redirects: 5,
            connection_timeout: std::time::Duration::from_secs(1),
            command_timeout: None,
            failover_hold: std::time::Duration::ZERO,
            pool_size: 1,
            read_from_replicas: false,
            password: password.map(String::from),
            users: users
                .iter()
                .map(|(n, p)| RedisUser {
                    name: n.to_string(),
                    password: p.to_string(),
                })
                .collect(),
            backend_username: None,
            backend_password: None,
            client_idle_timeout: None,
            client_output_limit: None,
            admin_commands: false,
            slowlog_log_slower_than_us: 10_000,
            slowlog_max_len: 128,
            tls: None,
            backend_tls: None,
        }
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn default_user_password() {
        let c = config(Some("s3cret"), &[]);
        assert!(required(&c));
        assert_eq!(check(&c, &[b("s3cret")]).unwrap(), "default");
        assert_eq!(check(&c, &[b("default"), b("s3cret")]).unwrap(), "default");
        assert!(check(&c, &[b("nope")]).is_err());
        assert!(check(&c, &[b("s3cre")]).is_err());
    }

    #[test]
    fn named_users() {
        let c = config(None, &[("app", "pw1"), ("ops", "pw2")]);
        assert_eq!(check(&c, &[b("app"), b("pw1")]).unwrap(), "app");
        assert!(check(&c, &[b("app"), b("pw2")]).is_err());
        assert!(check(&c, &[b("ghost"), b("pw1")]).is_err());
        assert!(
            check(&c, &[b("pw1")]).is_err(),
            "no default password configured"
        );
    }

    #[test]
    fn auth_without_configuration_says_so() {
        let c = config(None, &[]);
        assert!(!required(&c));
        let Err(Frame::Error(e)) = check(&c, &[b("x")]) else {
            panic!("expected an error");
        };
        assert!(e.starts_with(b"ERR AUTH <password> called without"));
        assert_eq!(
            check(&c, &[b("default"), b("anything")]).unwrap(),
            "default"
        );
        assert!(check(&c, &[b("bob"), b("x")]).is_err());
    }
}
