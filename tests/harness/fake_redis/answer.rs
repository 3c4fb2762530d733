//! What a healthy fake node answers: topology, GET / SET / DEL / MGET for its own slots (MOVED for
//! others), and how long a BLPOP blocks.

use std::time::Duration;

use bytes::Bytes;
use puerta::redis::command::slots::key_slot;
use puerta::redis::resp::Frame;

use super::Server;

/// `BLPOP key … timeout`: how long a node with no lists blocks before answering nil.
pub(super) fn blocking_wait(args: &[Bytes]) -> Option<Duration> {
    let name = args.first()?;
    if !name.eq_ignore_ascii_case(b"BLPOP") {
        return None;
    }
    let secs: f64 = std::str::from_utf8(args.last()?).ok()?.parse().ok()?;
    Some(Duration::from_secs_f64(secs))
}

pub(super) fn answer(server: &Server, args: &[Bytes]) -> Frame {
    let Some(name) = args.first() else {
        return Frame::error("ERR empty command");
    };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let arg = |i: usize| args.get(i).cloned();
    match name.as_str() {
        "PING" => Frame::simple("PONG"),
        "READONLY" | "READWRITE" | "AUTH" | "ASKING" => Frame::ok(),
        "CLUSTER" => match arg(1).map(|a| a.to_ascii_uppercase()) {
            Some(sub) if sub == b"SLOTS".as_slice() => server.layout.cluster_slots(),
            _ => Frame::error("ERR fake node: only CLUSTER SLOTS"),
        },
        "MGET" if args.len() > 1 => mget(server, &args[1..]),
        "GET" | "SET" | "DEL" => match arg(1) {
            Some(key) => keyed(server, &name, key, arg(2)),
            None => Frame::error("ERR wrong number of arguments"),
        },
        _ => Frame::error(format!("ERR fake node: unknown command '{name}'")),
    }
}

/// MOVED / CLUSTERDOWN unless this node owns `key`'s slot.
fn not_here(server: &Server, key: &[u8]) -> Option<Frame> {
    let slot = key_slot(key);
    match server.layout.owner_of(slot) {
        Some(o) if o == server.index => None,
        Some(o) => Some(Frame::error(format!(
            "MOVED {slot} {}",
            server.layout.addrs[o]
        ))),
        None => Some(Frame::error("CLUSTERDOWN Hash slot not served")),
    }
}

fn mget(server: &Server, keys: &[Bytes]) -> Frame {
    let slot = key_slot(&keys[0]);
    if keys.iter().any(|k| key_slot(k) != slot) {
        return Frame::error("CROSSSLOT Keys in request don't hash to the same slot");
    }
    if let Some(redirect) = not_here(server, &keys[0]) {
        return redirect;
    }
    let state = server.state.lock().unwrap_or_else(|e| e.into_inner());
    Frame::Array(
        keys.iter()
            .map(|k| state.data.get(k).cloned().map_or(Frame::Null, Frame::Bulk))
            .collect(),
    )
}

fn keyed(server: &Server, name: &str, key: Bytes, value: Option<Bytes>) -> Frame {
    if let Some(redirect) = not_here(server, &key) {
        return redirect;
    }
    let mut state = server.state.lock().unwrap_or_else(|e| e.into_inner());
    match (name, value) {
        ("GET", _) => state
            .data
            .get(&key)
            .cloned()
            .map_or(Frame::Null, Frame::Bulk),
        ("SET", Some(value)) => {
            state.data.insert(key, value);
            Frame::ok()
        }
        ("DEL", _) => Frame::Integer(state.data.remove(&key).is_some().into()),
        _ => Frame::error("ERR wrong number of arguments"),
    }
}
