//! Commands the proxy answers itself because they describe the connection or the (virtual) server, not
//! the data: PING, ECHO, QUIT, SELECT, AUTH, HELLO, CLIENT, READONLY/READWRITE, and the refusal of
//! commands that make no sense through a proxy. To its clients the proxy is one standalone server:
//! CLUSTER gets the answer of a Redis without cluster support, and nothing reveals the nodes behind.

use std::sync::Arc;

use bytes::Bytes;

use crate::redis::client::auth;
use crate::redis::cluster::Cluster;
use crate::redis::command::Command;
use crate::redis::exec::dispatch::{ClientState, Reply};
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

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
        "HELLO" => return Some(crate::redis::client::hello::hello(cluster, state, args)),
        "CLIENT" => crate::redis::exec::client::client(state, cmd),
        "CLUSTER" => wire::error("ERR This instance has cluster support disabled"),
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
