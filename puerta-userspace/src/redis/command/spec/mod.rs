//! What the proxy knows about each Redis command: its arity, how it must be routed (flags), and which
//! arguments are keys.
//!
//! Routing rule of thumb for callers: a command with no keys (an empty `key_indices`) can go to any
//! master unless a flag says otherwise (PROXY, FAN_OUT, UNSUPPORTED, PUBSUB, TRANSACTION).

mod keys;
mod lookup;
mod reply;
mod table;

#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use keys::{blocks, command_slot, for_each_key, key_indices};
pub use lookup::lookup;
pub use reply::unknown_command;

/// Every command the proxy knows, in table order.
pub fn all() -> &'static [CommandSpec] {
    table::COMMANDS
}

/// The position of `spec` in [`all`], so per-command state can live in a plain array.
pub fn index(spec: &'static CommandSpec) -> Option<usize> {
    let offset =
        (spec as *const CommandSpec as usize).checked_sub(table::COMMANDS.as_ptr() as usize)?;
    let index = offset / std::mem::size_of::<CommandSpec>();
    (index < table::COMMANDS.len()).then_some(index)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lower case, as Redis prints it in errors and `COMMAND`.
    pub name: &'static str,
    /// Redis convention: `n` = exactly n arguments including the name, `-n` = at least n.
    pub arity: i32,
    pub flags: u32,
    pub keys: KeySpec,
}

/// Bits of [`CommandSpec::flags`].
pub mod flag {
    /// Reads only; may be served by a replica (`read_from_replicas`).
    pub const READONLY: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    /// May block the connection (BLPOP, BLMOVE, ...): needs a dedicated backend connection. For
    /// XREAD/XREADGROUP only with a `BLOCK` option: see [`crate::redis::blocks`].
    pub const BLOCKING: u32 = 1 << 2;
    /// Puts the connection in subscriber mode (SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNs).
    /// PUBLISH is not one of them (`NO_KEY`); SPUBLISH is routed by its shard channel.
    pub const PUBSUB: u32 = 1 << 3;
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    pub const TRANSACTION: u32 = 1 << 4;
    /// Answered by the proxy itself: AUTH CLIENT CLUSTER COMMAND CONFIG DBSIZE ECHO HELLO INFO PING
    /// QUIT READONLY READWRITE RESET SCAN SELECT. CONFIG is here so the proxy can answer `CONFIG GET`
    /// (tools such as redis-benchmark ask) and refuse `CONFIG SET` instead of applying it to one node.
    pub const PROXY: u32 = 1 << 5;
    /// Keys may span slots; the proxy splits per slot and merges: MGET MSET DEL UNLINK EXISTS TOUCH.
    /// For MSET (`Range` with step 2) each key's value is the argument right after it.
    pub const MULTI_KEY_SPLIT: u32 = 1 << 6;
    /// Needs a backend node but has no key; any master will do (RANDOMKEY, TIME, LASTSAVE, LOLWUT,
    /// PUBLISH — cluster-wide by Redis itself —, PUBSUB introspection, which is node-local in a real
    /// cluster too).
    pub const NO_KEY: u32 = 1 << 7;
    /// Must run on every master, replies merged: FLUSHALL FLUSHDB KEYS SCRIPT FUNCTION. A proxy that
    /// does not fan these out must refuse them: on a single node they would be silently partial.
    pub const FAN_OUT: u32 = 1 << 8;
    /// Refused with an error naming the reason: admin/replication commands (SHUTDOWN, MONITOR, SYNC,
    /// REPLICAOF, DEBUG, SAVE, ...), multi-database ones (MOVE, SWAPDB), MIGRATE, WAIT, ROLE, ASKING,
    /// ACL, SLOWLOG, LATENCY, MODULE: a proxy cannot give them a cluster-wide meaning.
    pub const UNSUPPORTED: u32 = 1 << 9;
}

/// Where a command's keys are, counting `args[0]` (the name) as position 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    None,
    /// One key at `pos`; absent when the call is shorter (OBJECT HELP).
    Single {
        pos: usize,
    },
    /// Keys at `first`, `first + step`, ... up to `last` inclusive; negative `last` counts from the end
    /// (-1 = last argument, -2 = the one before: BLPOP's timeout follows its keys). A step of 2 with
    /// `last = -1` (MSET) requires the pairs to be complete.
    Range {
        first: usize,
        last: i32,
        step: usize,
    },
    /// The integer at `numkeys_pos` counts the keys that follow it. Arguments from `first` up to (not
    /// including) `numkeys_pos` are keys too: ZUNIONSTORE/ZINTERSTORE/ZDIFFSTORE's destination is
    /// `first: 1, numkeys_pos: 2`; EVAL (`script numkeys key...`) is `first: 2, numkeys_pos: 2`;
    /// LMPOP/ZMPOP/ZUNION/ZINTER/ZDIFF/ZINTERCARD/SINTERCARD are `first: 1, numkeys_pos: 1`;
    /// BLMPOP/BZMPOP (`timeout numkeys key...`) are `first: 2, numkeys_pos: 2`.
    NumKeys {
        numkeys_pos: usize,
        first: usize,
    },
    /// XREAD/XREADGROUP: after the `STREAMS` option, the first half of the remaining arguments.
    Streams,
}

/// A command the table rejects before it reaches a node, worded as Redis words it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    #[error("ERR Number of keys can't be negative")]
    NegativeKeys,
    #[error("ERR Number of keys can't be greater than number of args")]
    TooManyKeys,
    #[error(
        "ERR Unbalanced '{0}' list of streams: for each stream key an ID or '$' must be specified."
    )]
    UnbalancedStreams(&'static str),
    #[error("ERR syntax error")]
    Syntax,
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
}

impl CommandError {
    pub fn to_frame(&self) -> crate::redis::resp::Frame {
        crate::redis::resp::Frame::error(self.to_string())
    }
}

impl CommandSpec {
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// All known commands, sorted by name (for `COMMAND`).
    pub fn all() -> &'static [CommandSpec] {
        table::COMMANDS
    }

    fn arity_ok(&self, argc: usize) -> bool {
        let arity = self.arity.unsigned_abs() as usize;
        if self.arity >= 0 {
            argc == arity
        } else {
            argc >= arity
        }
    }
}

fn is_keyword(arg: &Bytes, keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}
