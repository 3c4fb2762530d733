//! Commands the proxy answers itself because they describe the connection or the (virtual) server, not
//! the data: PING, ECHO, QUIT, SELECT, AUTH, HELLO, CLIENT, CLUSTER KEYSLOT/INFO, and the refusal of
//! commands that make no sense through a proxy.

use std::sync::Arc;

use bytes::Bytes;

use super::auth;
use super::cluster::Cluster;
use super::command::Command;
use super::dispatch::{ClientState, Reply};
use super::resp::Frame;
use super::slots::key_slot;
use super::wire;

/// The reply when `cmd` is answered locally, `None` when it goes to the cluster.
pub fn answer(cluster: &Arc<Cluster>, state: &mut ClientState, cmd: &Command) -> Option<Reply> {
    let args = &cmd.args;
    let frame = match cmd.name.as_str() {
        "PING" => match args.len() {
            1 => wire::simple("PONG"),
            2 => Frame::Bulk(args[1].clone()),
            _ => wire::wrong_arity(&args[0]),
        },
        "ECHO" if args.len() == 2 => Frame::Bulk(args[1].clone()),
        "ECHO" => wire::wrong_arity(&args[0]),
        "QUIT" => return Some(Reply::Close(wire::ok())),
        "SELECT" => select(args),
        "AUTH" => match auth::check(&cluster.config, &args[1..]) {
            Ok(_) => {
                state.authed = true;
                wire::ok()
            }
            Err(e) => e,
        },
        "HELLO" => hello(cluster, state, args),
        "CLIENT" => client(state, cmd),
        "CLUSTER" => cluster_command(cluster, cmd),
        "READONLY" | "READWRITE" | "ASKING" => wire::ok(),
        "CONFIG" if !matches!(cmd.arg_upper(1).as_deref(), Some("GET") | Some("HELP")) => {
            unsupported(
                cmd,
                "it would change one node only; configure the cluster nodes directly",
            )
        }
        "MONITOR" | "SYNC" | "PSYNC" | "REPLICAOF" | "SLAVEOF" | "SHUTDOWN" | "DEBUG"
        | "FAILOVER" | "SAVE" | "BGSAVE" | "BGREWRITEAOF" | "LASTSAVE" => unsupported(
            cmd,
            "it is a node administration command; run it on the nodes directly",
        ),
        "MOVE" | "SWAPDB" => unsupported(cmd, "a Redis Cluster has only database 0"),
        "WAIT" | "WAITAOF" => unsupported(
            cmd,
            "the proxy spreads a client's writes over pooled connections to several nodes",
        ),
        _ => return None,
    };
    Some(Reply::Ready(frame))
}

fn unsupported(cmd: &Command, why: &str) -> Frame {
    wire::error(format!(
        "ERR Puerta: '{}' is not supported through the proxy: {why}",
        cmd.name.to_lowercase()
    ))
}

fn select(args: &[Bytes]) -> Frame {
    if args.len() != 2 {
        return wire::wrong_arity(&args[0]);
    }
    match std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        Some(0) => wire::ok(),
        Some(_) => {
            wire::error("ERR SELECT is not allowed in cluster mode (only database 0 exists)")
        }
        None => wire::error("ERR value is not an integer or out of range"),
    }
}

/// HELLO [2 [AUTH user pass] [SETNAME name]]: RESP2 only.
fn hello(cluster: &Cluster, state: &mut ClientState, args: &[Bytes]) -> Frame {
    if let Some(version) = args.get(1) {
        match version.as_ref() {
            b"2" => {}
            b"3" => return wire::error("NOPROTO Puerta speaks RESP2 only"),
            _ => return wire::error("NOPROTO unsupported protocol version"),
        }
    }
    let mut i = 2;
    while i < args.len() {
        let option = String::from_utf8_lossy(&args[i]).to_ascii_uppercase();
        match option.as_str() {
            "AUTH" if i + 2 < args.len() => {
                if let Err(e) = auth::check(&cluster.config, &args[i + 1..i + 3]) {
                    return e;
                }
                state.authed = true;
                i += 3;
            }
            "SETNAME" if i + 1 < args.len() => {
                state.name = Some(args[i + 1].clone());
                i += 2;
            }
            _ => return wire::error(format!("ERR Syntax error in HELLO option '{option}'")),
        }
    }
    if !state.authed {
        return auth::noauth();
    }
    let pairs: [(&str, Frame); 7] = [
        ("server", wire::bulk("redis")),
        ("version", wire::bulk("7.0.0")),
        ("proto", Frame::Integer(2)),
        ("id", Frame::Integer(state.id as i64)),
        ("mode", wire::bulk("standalone")),
        ("role", wire::bulk("master")),
        ("modules", Frame::Array(Vec::new())),
    ];
    let mut out = Vec::with_capacity(pairs.len() * 2);
    for (k, v) in pairs {
        out.push(wire::bulk(k));
        out.push(v);
    }
    Frame::Array(out)
}

fn client(state: &mut ClientState, cmd: &Command) -> Frame {
    let args = &cmd.args;
    match cmd.arg_upper(1).as_deref() {
        Some("SETNAME") if args.len() == 3 => {
            state.name = Some(args[2].clone());
            wire::ok()
        }
        Some("GETNAME") => state.name.clone().map(Frame::Bulk).unwrap_or(Frame::Null),
        Some("ID") => Frame::Integer(state.id as i64),
        Some("SETINFO") | Some("NO-EVICT") | Some("NO-TOUCH") => wire::ok(),
        Some(sub) => wire::error(format!(
            "ERR Puerta: 'client {}' is not supported through the proxy",
            sub.to_lowercase()
        )),
        None => wire::wrong_arity(&args[0]),
    }
}

fn cluster_command(cluster: &Cluster, cmd: &Command) -> Frame {
    match cmd.arg_upper(1).as_deref() {
        Some("KEYSLOT") if cmd.args.len() == 3 => Frame::Integer(key_slot(&cmd.args[2]) as i64),
        Some("KEYSLOT") => wire::wrong_arity(b"cluster|keyslot"),
        Some("INFO") => cluster_info(cluster),
        Some(sub) => wire::error(format!(
            "ERR Puerta: 'cluster {}' is not available through the proxy, which presents the cluster as one server",
            sub.to_lowercase()
        )),
        None => wire::wrong_arity(&cmd.args[0]),
    }
}

fn cluster_info(cluster: &Cluster) -> Frame {
    let covered = cluster.covered_slots();
    let state = if covered == super::slots::SLOT_COUNT as usize {
        "ok"
    } else {
        "fail"
    };
    let masters = cluster.masters().len();
    wire::bulk(format!(
        "cluster_state:{state}\r\ncluster_slots_assigned:{covered}\r\ncluster_slots_ok:{covered}\r\n\
         cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{masters}\r\n\
         cluster_size:{masters}\r\n"
    ))
}
