//! `HELLO [protover [AUTH user pass] [SETNAME name]]`, answered the way a standalone Redis answers it:
//! the proxy is one server to its clients, whatever the cluster behind it looks like. The protocol it
//! picks applies to the HELLO reply itself and to everything after it.

use std::sync::Arc;

use bytes::Bytes;

use crate::redis::client::auth;
use crate::redis::cluster::version;
use crate::redis::cluster::Cluster;
use crate::redis::exec::client::valid_name;
use crate::redis::exec::dispatch::{later, ClientState, Reply};
use crate::redis::resp::wire;
use crate::redis::resp::{Frame, Protocol};

const NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

/// What one HELLO asks for, once its arguments are read.
#[derive(Debug, Default, PartialEq, Eq)]
struct Hello {
    protocol: Option<Protocol>,
    auth: Option<[Bytes; 2]>,
    name: Option<Bytes>,
}

pub fn hello(cluster: &Arc<Cluster>, state: &mut ClientState, args: &[Bytes]) -> Reply {
    let request = match parse(args) {
        Ok(request) => request,
        Err(e) => return Reply::Ready(e),
    };
    if let Some(credentials) = &request.auth {
        match auth::check(&cluster.config, credentials) {
            Ok(user) => state.client.set_user(&user),
            Err(e) => return Reply::Ready(e),
        }
        state.authed = true;
    }
    if !state.authed {
        return Reply::Ready(wire::error(NOAUTH));
    }
    if let Some(name) = request.name {
        state.client.set_name((!name.is_empty()).then_some(name));
    }
    if let Some(protocol) = request.protocol {
        state.set_protocol(protocol);
        let redirected = state
            .tracking
            .as_ref()
            .is_some_and(|m| m.redirect.is_some());
        if protocol == Protocol::Resp2 && !redirected {
            // RESP2 has no pushes to carry invalidations: tracking ends, as a cache must not trust
            // a connection that can no longer be told. (Redirected ones go elsewhere.)
            crate::redis::exec::client_tracking::stop(cluster, state);
        }
    }
    let (id, protocol) = (state.id, state.protocol());
    let cluster = cluster.clone();
    later(async move {
        let version = version::redis_version(&cluster).await;
        reply(id, protocol, &version)
    })
}

fn parse(args: &[Bytes]) -> Result<Hello, Frame> {
    let mut request = Hello::default();
    let Some(version) = args.get(1) else {
        return Ok(request);
    };
    request.protocol = Some(
        match std::str::from_utf8(version).ok().map(str::parse::<i64>) {
            Some(Ok(2)) => Protocol::Resp2,
            Some(Ok(3)) => Protocol::Resp3,
            Some(Ok(_)) => return Err(wire::error("NOPROTO unsupported protocol version")),
            _ => {
                return Err(wire::error(
                    "ERR Protocol version is not an integer or out of range",
                ))
            }
        },
    );
    let mut rest = &args[2..];
    while let Some(option) = rest.first() {
        let upper = option.to_ascii_uppercase();
        match (upper.as_slice(), rest) {
            (b"AUTH", [_, user, pass, ..]) => {
                request.auth = Some([user.clone(), pass.clone()]);
                rest = &rest[3..];
            }
            (b"SETNAME", [_, name, ..]) => {
                if !valid_name(name) {
                    return Err(crate::redis::exec::client::bad_name());
                }
                request.name = Some(name.clone());
                rest = &rest[2..];
            }
            _ => {
                return Err(wire::error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    wire::text(option)
                )))
            }
        }
    }
    Ok(request)
}

/// Redis 7.0's fields, in its order; a map in RESP3, a flat array in RESP2 (the encoder's job).
fn reply(id: u64, protocol: Protocol, version: &str) -> Frame {
    let field = |name: &'static str, value: Frame| (Frame::bulk(name), value);
    Frame::Map(vec![
        field("server", Frame::bulk("redis")),
        field("version", Frame::bulk(version.to_string())),
        field("proto", Frame::Integer(protocol.version())),
        field("id", Frame::Integer(id as i64)),
        field("mode", Frame::bulk("standalone")),
        field("role", Frame::bulk("master")),
        field("modules", Frame::Array(Vec::new())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&'static str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::from_static(w.as_bytes()))
            .collect()
    }

    fn error_text(words: &[&'static str]) -> String {
        match parse(&args(words)) {
            Err(Frame::Error(text)) => wire::text(&text),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn reads_protocol_auth_and_name() {
        assert_eq!(parse(&args(&["HELLO"])), Ok(Hello::default()));
        let full = parse(&args(&["hello", "3", "auth", "u", "p", "setname", "app"])).unwrap();
        assert_eq!(full.protocol, Some(Protocol::Resp3));
        assert_eq!(full.auth, Some([Bytes::from("u"), Bytes::from("p")]));
        assert_eq!(full.name, Some(Bytes::from("app")));
        assert_eq!(
            parse(&args(&["HELLO", "2"])).unwrap().protocol,
            Some(Protocol::Resp2)
        );
    }

    #[test]
    fn refuses_what_redis_refuses() {
        assert_eq!(
            error_text(&["HELLO", "4"]),
            "NOPROTO unsupported protocol version"
        );
        assert_eq!(
            error_text(&["HELLO", "1"]),
            "NOPROTO unsupported protocol version"
        );
        assert_eq!(
            error_text(&["HELLO", "x"]),
            "ERR Protocol version is not an integer or out of range"
        );
        assert_eq!(
            error_text(&["HELLO", "3", "AUTH", "u"]),
            "ERR Syntax error in HELLO option 'AUTH'"
        );
        assert_eq!(
            error_text(&["HELLO", "3", "SETNAME", "a b"]),
            "ERR Client names cannot contain spaces, newlines or special characters."
        );
    }

    #[test]
    fn the_reply_is_a_map_of_redis_fields() {
        let Frame::Map(fields) = reply(7, Protocol::Resp3, "7.0.15") else {
            panic!("not a map");
        };
        let names: Vec<String> = fields
            .iter()
            .filter_map(|(k, _)| k.as_bytes().map(|b| wire::text(b)))
            .collect();
        assert_eq!(
            names,
            ["server", "version", "proto", "id", "mode", "role", "modules"]
        );
        assert_eq!(fields[1].1, Frame::bulk("7.0.15"));
        assert_eq!(fields[2].1, Frame::Integer(3));
        assert_eq!(fields[3].1, Frame::Integer(7));
        assert_eq!(fields[4].1, Frame::bulk("standalone"));
    }
}
