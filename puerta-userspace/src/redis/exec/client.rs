//! `CLIENT …` as a standalone Redis 7 answers it, about the proxy's own clients: the connection-level
//! subcommands clients send on connect (SETNAME, GETNAME, ID, SETINFO, NO-EVICT, NO-TOUCH) and
//! LIST, INFO and KILL over the proxy's client registry, REPLY, PAUSE/UNPAUSE held at the proxy, and
//! the tracking subcommands (`client_tracking`). Subcommands not done yet are refused by name;
//! subcommands Redis does not know get Redis' own unknown-subcommand error, which clients probing
//! for newer servers (redis-py's `CLIENT MAINT_NOTIFICATIONS`) expect and ignore.

use bytes::Bytes;

use crate::redis::client::auth;
use crate::redis::client::registry::{flag, Entry};
use crate::redis::cluster::Cluster;
use crate::redis::command::Command;
use crate::redis::exec::client_tracking;
use crate::redis::exec::dispatch::{ClientState, ReplyMode};
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

/// Redis 7.2's CLIENT subcommands.
const KNOWN: &[&str] = &[
    "CACHING",
    "GETNAME",
    "GETREDIR",
    "HELP",
    "ID",
    "INFO",
    "KILL",
    "LIST",
    "NO-EVICT",
    "NO-TOUCH",
    "PAUSE",
    "REPLY",
    "SETINFO",
    "SETNAME",
    "TRACKING",
    "TRACKINGINFO",
    "UNBLOCK",
    "UNPAUSE",
];

pub fn client(cluster: &Cluster, state: &mut ClientState, cmd: &Command) -> Frame {
    let args = &cmd.args();
    let Some(sub) = cmd.arg_upper(1) else {
        return wire::wrong_arity(&args[0]);
    };
    match (sub.as_str(), args.len()) {
        ("SETNAME", 3) => set_name(state, &args[2]),
        ("GETNAME", 2) => state.client.name().map(Frame::Bulk).unwrap_or(Frame::Null),
        ("ID", 2) => Frame::Integer(state.id as i64),
        ("INFO", 2) => text(format!("{}\n", state.client.line(cmd.size()))),
        ("LIST", _) => list(cluster, &args[2..], (state.id, cmd.size())),
        ("KILL" | "PAUSE", 2) => {
            wire::wrong_arity(format!("client|{}", sub.to_lowercase()).as_bytes())
        }
        ("REPLY", 3) => reply_mode(state, &args[2]),
        ("PAUSE", 3 | 4) => pause(cluster, &args[2..]),
        ("UNPAUSE", 2) => {
            cluster.pause.unpause();
            wire::ok()
        }
        ("KILL", 3) => kill_addr(cluster, state.id, &args[2]),
        ("KILL", n) if n > 3 => kill(cluster, state, &args[2..]),
        ("SETINFO", 4) => set_info(&args[2]),
        ("NO-EVICT" | "NO-TOUCH", 3) => on_off(&args[2]),
        ("CACHING", 3) => client_tracking::caching(state, &args[2]),
        ("GETREDIR", 2) => client_tracking::getredir(state),
        // With its arguments, served by `client_tracking::tracking`.
        ("TRACKING", 2) => wire::wrong_arity(b"client|tracking"),
        ("TRACKINGINFO", 2) => client_tracking::trackinginfo(state),
        (known, _)
            if KNOWN.contains(&known) && arity_of(known).is_some_and(|n| n != args.len()) =>
        {
            wire::wrong_arity(format!("client|{}", known.to_lowercase()).as_bytes())
        }
        (known, _) if KNOWN.contains(&known) => wire::error(format!(
            "ERR Puerta: 'client {}' is not supported through the proxy",
            known.to_lowercase()
        )),
        _ => wire::error(format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            wire::text(&args[1][..args[1].len().min(128)])
        )),
    }
}

/// The exact argument count of the subcommands answered here.
fn arity_of(sub: &str) -> Option<usize> {
    match sub {
        "SETNAME" | "NO-EVICT" | "NO-TOUCH" => Some(3),
        "GETNAME" | "ID" | "INFO" => Some(2),
        "REPLY" => Some(3),
        "UNPAUSE" => Some(2),
        "CACHING" => Some(3),
        "GETREDIR" | "TRACKINGINFO" => Some(2),
        "SETINFO" => Some(4),
        _ => None,
    }
}

fn set_name(state: &mut ClientState, name: &Bytes) -> Frame {
    if !valid_name(name) {
        return bad_name();
    }
    state
        .client
        .set_name((!name.is_empty()).then(|| name.clone()));
    wire::ok()
}

/// `CLIENT REPLY ON|OFF|SKIP`. The session decides after each command whether its reply is sent
/// ([`ReplyMode::sends`]): OFF and SKIP silence their own reply too, ON answers OK.
fn reply_mode(state: &mut ClientState, mode: &[u8]) -> Frame {
    state.reply_mode = match mode.to_ascii_uppercase().as_slice() {
        b"ON" => ReplyMode::On,
        b"OFF" => ReplyMode::Off,
        b"SKIP" => ReplyMode::SkipThis,
        _ => return wire::error("ERR syntax error"),
    };
    wire::ok()
}

/// `CLIENT PAUSE timeout-ms [WRITE|ALL]`, held by the proxy for all its clients.
fn pause(cluster: &Cluster, args: &[Bytes]) -> Frame {
    let timeout = match std::str::from_utf8(&args[0])
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
    {
        Some(ms) if ms < 0 => return wire::error("ERR timeout is negative"),
        Some(ms) => std::time::Duration::from_millis(ms as u64),
        None => return wire::error("ERR timeout is not an integer or out of range"),
    };
    let writes_only = match args.get(1).map(|m| m.to_ascii_uppercase()) {
        None => false,
        Some(mode) if mode == b"ALL" => false,
        Some(mode) if mode == b"WRITE" => true,
        Some(_) => return wire::error("ERR syntax error"),
    };
    cluster.pause.pause(timeout, writes_only);
    wire::ok()
}

/// Text as Redis sends CLIENT LIST/INFO: a bulk string (verbatim `txt` in RESP3).
fn text(text: String) -> Frame {
    Frame::verbatim_text(Bytes::from(text))
}

/// `CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]`.
/// `asking`: the id of the client asking and the size of its command (its `qbuf`).
fn list(cluster: &Cluster, options: &[Bytes], asking: (u64, usize)) -> Frame {
    let mut clients = cluster.clients.list();
    match options {
        [] => {}
        [option, kind] if option.eq_ignore_ascii_case(b"TYPE") => {
            let Some(pubsub) = client_type(kind) else {
                return wire::error(format!("ERR Unknown client type '{}'", wire::text(kind)));
            };
            clients.retain(|c| pubsub == Some(c.has_flag(flag::PUBSUB)));
        }
        [option, ids @ ..] if option.eq_ignore_ascii_case(b"ID") && !ids.is_empty() => {
            let mut wanted = Vec::with_capacity(ids.len());
            for id in ids {
                match parse_id(id) {
                    Ok(id) => wanted.push(id),
                    Err(e) => return e,
                }
            }
            clients.retain(|c| wanted.contains(&c.id));
        }
        _ => return wire::error("ERR syntax error"),
    }
    let mut out = String::with_capacity(clients.len() * 300);
    for c in clients {
        let qbuf = if c.id == asking.0 { asking.1 } else { 0 };
        out.push_str(&c.line(qbuf));
        out.push('\n');
    }
    text(out)
}

/// `TYPE` of CLIENT LIST/KILL: `Some(Some(pubsub?))` for the kinds the proxy has (normal, pubsub),
/// `Some(None)` for the ones it never has (master, replica), `None` for an unknown name.
fn client_type(kind: &[u8]) -> Option<Option<bool>> {
    match kind.to_ascii_lowercase().as_slice() {
        b"normal" => Some(Some(false)),
        b"pubsub" => Some(Some(true)),
        b"master" | b"replica" | b"slave" => Some(None),
        _ => None,
    }
}

fn parse_id(id: &[u8]) -> Result<u64, Frame> {
    std::str::from_utf8(id)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| wire::error("ERR Invalid client ID"))
}

/// The old form, `CLIENT KILL addr:port`.
fn kill_addr(cluster: &Cluster, caller: u64, addr: &[u8]) -> Frame {
    let addr = String::from_utf8_lossy(addr);
    let victim = live_clients(cluster)
        .into_iter()
        .find(|c| c.addr.is_some_and(|a| a.to_string() == addr));
    match victim {
        Some(c) => {
            end(&c, caller);
            wire::ok()
        }
        None => wire::error("ERR No such client"),
    }
}

/// `CLIENT KILL <filter> <value> ...`: every client matching all filters (not the caller, unless
/// `SKIPME no`); the number killed.
fn kill(cluster: &Cluster, state: &ClientState, filters: &[Bytes]) -> Frame {
    if !filters.len().is_multiple_of(2) {
        return wire::error("ERR syntax error");
    }
    let mut clients = live_clients(cluster);
    let mut skip_me = true;
    for pair in filters.chunks(2) {
        let (name, value) = (pair[0].to_ascii_uppercase(), &pair[1]);
        let text = String::from_utf8_lossy(value).into_owned();
        match name.as_slice() {
            b"ID" => match parse_id(value) {
                Ok(id) => clients.retain(|c| c.id == id),
                Err(_) => return wire::error("ERR client-id should be greater than 0"),
            },
            b"ADDR" => clients.retain(|c| c.addr.is_some_and(|a| a.to_string() == text)),
            b"LADDR" => clients.retain(|c| c.laddr.is_some_and(|a| a.to_string() == text)),
            b"USER" => {
                if !auth::user_exists(&cluster.config, &text) {
                    return wire::error(format!("ERR No such user '{text}'"));
                }
                clients.retain(|c| *c.user() == *text)
            }
            b"TYPE" => match client_type(value) {
                Some(pubsub) => clients.retain(|c| pubsub == Some(c.has_flag(flag::PUBSUB))),
                None => return wire::error(format!("ERR Unknown client type '{text}'")),
            },
            b"SKIPME" => match name_yes_no(value) {
                Some(yes) => skip_me = yes,
                None => return wire::error("ERR syntax error"),
            },
            b"MAXAGE" => match text.parse::<u64>() {
                Ok(secs) => clients.retain(|c| c.age_secs() >= secs),
                Err(_) => return wire::error("ERR syntax error"),
            },
            _ => return wire::error("ERR syntax error"),
        }
    }
    if skip_me {
        clients.retain(|c| c.id != state.id);
    }
    clients.iter().for_each(|c| end(c, state.id));
    Frame::Integer(clients.len() as i64)
}

/// Ends a killed client's session now; the caller itself is closed only once this reply is
/// written (Redis' close-after-reply), so that it still learns how many were killed.
fn end(client: &Entry, caller: u64) {
    match client.id == caller {
        true => client.set_flag(flag::CLOSE_AFTER_REPLY, true),
        false => client.kill(),
    }
}

/// The clients not killed yet: one killed a moment ago is gone for Redis (freed at once), though
/// its session here may take a scheduler turn to end.
fn live_clients(cluster: &Cluster) -> Vec<std::sync::Arc<crate::redis::client::registry::Entry>> {
    let mut clients = cluster.clients.list();
    clients.retain(|c| !c.is_killed() && !c.has_flag(flag::CLOSE_AFTER_REPLY));
    clients
}

fn name_yes_no(value: &[u8]) -> Option<bool> {
    match value.to_ascii_lowercase().as_slice() {
        b"yes" => Some(true),
        b"no" => Some(false),
        _ => None,
    }
}

fn set_info(attribute: &Bytes) -> Frame {
    let upper = attribute.to_ascii_uppercase();
    match upper.as_slice() {
        b"LIB-NAME" | b"LIB-VER" => wire::ok(),
        _ => wire::error(format!(
            "ERR Unrecognized option '{}'",
            wire::text(attribute)
        )),
    }
}

fn on_off(value: &Bytes) -> Frame {
    if value.eq_ignore_ascii_case(b"on") || value.eq_ignore_ascii_case(b"off") {
        wire::ok()
    } else {
        wire::error("ERR syntax error")
    }
}

/// Redis' rule for connection names: printable ASCII without spaces.
pub fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|b| (b'!'..=b'~').contains(b))
}

pub fn bad_name() -> Frame {
    wire::error("ERR Client names cannot contain spaces, newlines or special characters.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::cluster::Cluster;
    use crate::redis::command::Command;

    use crate::redis::client::registry::{register, Registered};
    use std::sync::Arc;

    /// A registered client of `cluster`, its registration kept alive by the state's owner.
    fn client_of(cluster: &Arc<Cluster>, port: u16) -> (ClientState, Registered) {
        let addr = format!("127.0.0.1:{port}").parse().ok();
        let laddr = "127.0.0.1:6379".parse().ok();
        let registered = register(cluster, addr, laddr);
        let state = ClientState::new(
            registered.entry.clone(),
            cluster,
            crate::redis::client::fifo::fifo::<()>(1).2,
            crate::redis::client::output::OutputBudget::new(
                None,
                registered.entry.id,
                None,
                registered.entry.hangup.clone(),
            ),
            Arc::default(),
        );
        (state, registered)
    }

    fn cluster() -> Arc<Cluster> {
        Cluster::new(crate::redis::client::auth::tests::config(None, &[]))
    }

    fn state() -> ClientState {
        client_of(&cluster(), 5000).0
    }

    fn run(state: &mut ClientState, words: &[&str]) -> Frame {
        let cluster = cluster();
        client(&cluster, state, &Command::from_words(words))
    }

    fn on(cluster: &Arc<Cluster>, state: &mut ClientState, words: &[&str]) -> Frame {
        client(cluster, state, &Command::from_words(words))
    }

    fn lines(frame: Frame) -> Vec<String> {
        let Frame::Verbatim { text, .. } = frame else {
            panic!("not text: {frame:?}");
        };
        String::from_utf8_lossy(&text)
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn list_info_and_kill_see_the_proxy_clients() {
        let cluster = cluster();
        let (mut a, _a) = client_of(&cluster, 5001);
        let (mut b, _b) = client_of(&cluster, 5002);
        assert_eq!(
            on(&cluster, &mut b, &["CLIENT", "SETNAME", "worker"]),
            wire::ok()
        );
        let all = lines(on(&cluster, &mut a, &["CLIENT", "LIST"]));
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[0].starts_with(&format!(
            "id={} addr=127.0.0.1:5001 laddr=127.0.0.1:6379 ",
            a.id
        )));
        assert!(
            all[1].contains(" name=worker ") && all[1].contains(" cmd=NULL "),
            "{}",
            all[1]
        );
        let info = lines(on(&cluster, &mut b, &["CLIENT", "INFO"]));
        // Its own line shows the command it runs as still in its query buffer, as Redis does.
        let running = Command::from_words(&["CLIENT", "INFO"]).size();
        let own = all[1].replace(" qbuf=0 ", &format!(" qbuf={running} "));
        assert_eq!(info, vec![own]);
        let by_id = on(
            &cluster,
            &mut a,
            &["CLIENT", "LIST", "ID", &b.id.to_string()],
        );
        assert_eq!(lines(by_id), vec![all[1].clone()]);
        assert_eq!(
            lines(on(&cluster, &mut a, &["CLIENT", "LIST", "TYPE", "pubsub"])).len(),
            0
        );

        // Filters combine; the caller is skipped unless SKIPME no.
        let a_id = a.id.to_string();
        let kill = |s: &mut ClientState, words: &[&str]| on(&cluster, s, words);
        assert_eq!(
            kill(
                &mut a,
                &[
                    "CLIENT",
                    "KILL",
                    "LADDR",
                    "127.0.0.1:6379",
                    "ADDR",
                    "127.0.0.1:9"
                ]
            ),
            Frame::Integer(0)
        );
        assert_eq!(
            kill(&mut a, &["CLIENT", "KILL", "ID", &a_id]),
            Frame::Integer(0)
        );
        assert!(!a.client.is_killed());
        assert_eq!(
            kill(&mut a, &["CLIENT", "KILL", "USER", "default"]),
            Frame::Integer(1)
        );
        assert!(b.client.is_killed() && !a.client.is_killed());
        assert_eq!(
            kill(&mut a, &["CLIENT", "KILL", "ID", &a_id, "SKIPME", "no"]),
            Frame::Integer(1)
        );
        // Killed by itself: it gets the count first, then the session closes (`c`).
        assert!(!a.client.is_killed() && a.client.has_flag(flag::CLOSE_AFTER_REPLY));
        // Both are killed now: gone, as in Redis, even while their sessions are still ending.
        assert_eq!(
            kill(&mut a, &["CLIENT", "KILL", "127.0.0.1:5002"]),
            wire::error("ERR No such client")
        );
        assert_eq!(
            kill(&mut a, &["CLIENT", "KILL", "127.0.0.1:1"]),
            wire::error("ERR No such client")
        );
        assert_eq!(
            kill(&mut a, &["CLIENT", "KILL", "USER", "nobody"]),
            wire::error("ERR No such user 'nobody'")
        );
        assert_eq!(
            kill(&mut a, &["CLIENT", "KILL", "ID", "1", "ADDR"]),
            wire::error("ERR syntax error")
        );
        assert_eq!(
            kill(&mut a, &["CLIENT", "KILL", "ID", "x"]),
            wire::error("ERR client-id should be greater than 0")
        );
    }

    #[test]
    fn a_client_leaves_the_registry_when_its_registration_drops() {
        let cluster = cluster();
        let (mut a, _a) = client_of(&cluster, 5001);
        let (_b, b) = client_of(&cluster, 5002);
        assert_eq!(cluster.clients.list().len(), 2);
        drop(b);
        assert_eq!(lines(on(&cluster, &mut a, &["CLIENT", "LIST"])).len(), 1);
        assert_eq!(
            crate::redis::stats::Stats::get(&cluster.stats.clients_connected),
            1
        );
    }

    #[test]
    fn connect_time_subcommands_answer_like_redis() {
        let mut s = state();
        assert_eq!(run(&mut s, &["CLIENT", "GETNAME"]), Frame::Null);
        assert_eq!(run(&mut s, &["client", "setname", "app-1"]), wire::ok());
        assert_eq!(run(&mut s, &["CLIENT", "GETNAME"]), Frame::bulk("app-1"));
        assert_eq!(run(&mut s, &["CLIENT", "SETNAME", ""]), wire::ok());
        assert_eq!(run(&mut s, &["CLIENT", "GETNAME"]), Frame::Null);
        assert_eq!(run(&mut s, &["CLIENT", "SETNAME", "a b"]), bad_name());
        assert_eq!(run(&mut s, &["CLIENT", "ID"]), Frame::Integer(s.id as i64));
        assert_eq!(
            run(&mut s, &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]),
            wire::ok()
        );
        assert_eq!(
            run(&mut s, &["CLIENT", "SETINFO", "lib-ver", "8.1.0"]),
            wire::ok()
        );
        assert_eq!(
            run(&mut s, &["CLIENT", "SETINFO", "color", "x"]),
            wire::error("ERR Unrecognized option 'color'")
        );
        assert_eq!(run(&mut s, &["CLIENT", "NO-EVICT", "on"]), wire::ok());
    }

    #[test]
    fn unknown_and_unsupported_subcommands() {
        let mut s = state();
        assert_eq!(
            run(
                &mut s,
                &[
                    "CLIENT",
                    "MAINT_NOTIFICATIONS",
                    "on",
                    "moving-endpoint-type",
                    "none"
                ]
            ),
            wire::error("ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.")
        );
        assert_eq!(
            run(&mut s, &["CLIENT", "SETNAME"]),
            wire::error("ERR wrong number of arguments for 'client|setname' command")
        );
        assert!(
            matches!(run(&mut s, &["CLIENT", "UNBLOCK", "5"]), Frame::Error(e) if e.starts_with(b"ERR Puerta"))
        );
        assert_eq!(run(&mut s, &["CLIENT"]), wire::wrong_arity(b"CLIENT"));
    }
}
