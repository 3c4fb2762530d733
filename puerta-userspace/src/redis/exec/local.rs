//! Commands the proxy answers itself because they describe the connection or the (virtual) server, not
//! the data. To its clients the proxy is one standalone server: CLUSTER gets the answer of a Redis
//! without cluster support, and nothing reveals the nodes behind.

use std::sync::Arc;

use bytes::Bytes;

use crate::redis::client::auth;
use crate::redis::client::registry::flag as client_flag;
use crate::redis::cluster::Cluster;
use crate::redis::command::spec::Local;
use crate::redis::command::Command;
use crate::redis::exec::dispatch::{ClientState, Reply};
use crate::redis::exec::transaction::Transaction;
use crate::redis::resp::wire;
use crate::redis::resp::{Frame, Protocol};

/// The reply to `cmd`, whose arity the table has checked.
pub fn answer(
    cluster: &Arc<Cluster>,
    state: &mut ClientState,
    cmd: &Command,
    local: Local,
) -> Reply {
    let args = &cmd.args();
    let frame = match local {
        Local::Ping => match args.get(1) {
            None => wire::simple("PONG"),
            Some(_) if args.len() > 2 => wire::wrong_arity(&args[0]),
            Some(message) => Frame::Bulk(message.clone()),
        },
        Local::Echo => Frame::Bulk(args[1].clone()),
        Local::Quit => return Reply::Close(wire::ok()),
        Local::Select => select(&args[1]),
        Local::Auth => match auth::check(&cluster.config, &args[1..]) {
            Ok(user) => {
                state.authed = true;
                state.client.set_user(&user);
                wire::ok()
            }
            Err(e) => e,
        },
        Local::Hello => return crate::redis::client::hello::hello(cluster, state, args),
        Local::Client if cmd.arg_upper(1).as_deref() == Some("TRACKING") && args.len() >= 3 => {
            return crate::redis::exec::client_tracking::tracking(cluster, state, cmd)
        }
        Local::Client => {
            let frame = crate::redis::exec::client::client(cluster, state, cmd);
            if state.client.has_flag(client_flag::CLOSE_AFTER_REPLY) {
                return Reply::Close(frame);
            }
            frame
        }
        Local::Cluster => wire::error("ERR This instance has cluster support disabled"),
        Local::Accept => wire::ok(),
        Local::Reset => reset(cluster, state),
        Local::Slowlog => slowlog(cluster, args),
        // The session serves MONITOR; what reaches here is a MONITOR the client may not send yet.
        Local::Monitor => wire::error("ERR MONITOR is not allowed here"),
    };
    Reply::Ready(frame)
}

/// RESET: the connection as it was when it was opened (the session drops its subscriptions).
fn reset(cluster: &Cluster, state: &mut ClientState) -> Frame {
    state.set_protocol(Protocol::Resp2);
    state.client.set_name(None);
    state.client.set_user("default");
    state.authed = !auth::required(&cluster.config);
    state.txn = Transaction::default();
    crate::redis::exec::client_tracking::stop(cluster, state);
    let flags = client_flag::MULTI | client_flag::PUBSUB;
    state.client.set_flag(flags, false);
    wire::simple("RESET")
}

/// SLOWLOG GET [count] | LEN | RESET | HELP, with Redis' replies and errors.
fn slowlog(cluster: &Cluster, args: &[Bytes]) -> Frame {
    let log = &cluster.slowlog;
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    match (sub.as_str(), args.len()) {
        ("get", 2) => log.get(None),
        ("get", 3) => match std::str::from_utf8(&args[2])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(-1) => log.get(Some(usize::MAX)),
            Some(n) if n >= 0 => log.get(Some(n as usize)),
            Some(_) => wire::error("ERR count should be greater than or equal to -1"),
            None => wire::error("ERR value is not an integer or out of range"),
        },
        ("len", 2) => Frame::Integer(log.len() as i64),
        ("reset", 2) => {
            log.reset();
            wire::ok()
        }
        ("help", 2) => Frame::Array(
            SLOWLOG_HELP
                .iter()
                .map(|line| Frame::Simple(Bytes::from_static(line.as_bytes())))
                .collect(),
        ),
        ("get" | "len" | "reset" | "help", _) => wire::error(format!(
            "ERR wrong number of arguments for 'slowlog|{sub}' command"
        )),
        _ => wire::error(format!(
            "ERR unknown subcommand '{}'. Try SLOWLOG HELP.",
            String::from_utf8_lossy(&args[1])
        )),
    }
}

const SLOWLOG_HELP: &[&str] = &[
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Print this help.",
];

fn select(db: &Bytes) -> Frame {
    match std::str::from_utf8(db)
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
