//! `CLIENT …` as a standalone Redis 7 answers it for the connection-level subcommands clients send
//! on connect (SETNAME, GETNAME, ID, SETINFO, NO-EVICT, NO-TOUCH). Subcommands Redis has but that
//! would describe or act on one backend connection instead of this client are refused by name;
//! subcommands Redis does not know get Redis' own unknown-subcommand error, which clients probing
//! for newer servers (redis-py's `CLIENT MAINT_NOTIFICATIONS`) expect and ignore.

use bytes::Bytes;

use crate::redis::command::Command;
use crate::redis::exec::dispatch::ClientState;
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

pub fn client(state: &mut ClientState, cmd: &Command) -> Frame {
    let args = &cmd.args;
    let Some(sub) = cmd.arg_upper(1) else {
        return wire::wrong_arity(&args[0]);
    };
    match (sub.as_str(), args.len()) {
        ("SETNAME", 3) => set_name(state, &args[2]),
        ("GETNAME", 2) => state.name.clone().map(Frame::Bulk).unwrap_or(Frame::Null),
        ("ID", 2) => Frame::Integer(state.id as i64),
        ("SETINFO", 4) => set_info(&args[2]),
        ("NO-EVICT" | "NO-TOUCH", 3) => on_off(&args[2]),
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
        "GETNAME" | "ID" => Some(2),
        "SETINFO" => Some(4),
        _ => None,
    }
}

fn set_name(state: &mut ClientState, name: &Bytes) -> Frame {
    if !valid_name(name) {
        return bad_name();
    }
    state.name = (!name.is_empty()).then(|| name.clone());
    wire::ok()
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

    fn state() -> ClientState {
        let cluster = Cluster::new(crate::redis::client::auth::tests::config(None, &[]));
        ClientState::new(
            42,
            &cluster,
            tokio::sync::watch::channel(0).1,
            crate::redis::client::output::OutputBudget::new(None, 42, None),
        )
    }

    fn run(state: &mut ClientState, words: &[&str]) -> Frame {
        client(state, &Command::from_words(words))
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
        assert_eq!(run(&mut s, &["CLIENT", "ID"]), Frame::Integer(42));
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
            matches!(run(&mut s, &["CLIENT", "LIST"]), Frame::Error(e) if e.starts_with(b"ERR Puerta"))
        );
        assert_eq!(run(&mut s, &["CLIENT"]), wire::wrong_arity(b"CLIENT"));
    }
}
