//! What the proxy knows about each Redis command: its arity, its read/write/blocking flags, which
//! arguments are keys, and how the proxy serves it (its [`Kind`]).

mod admin;
mod keys;
mod kind;
mod lookup;
mod reply;
mod table;

#[cfg(test)]
mod tests;

pub use admin::{admin_spec, AdminSpec, Reach};
pub use keys::{blocks, command_slot, for_each_key, key_indices, Args};
pub use kind::{why, Kind, Local, Merge, Step, Subscription};
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
    pub kind: Kind,
}

/// Bits of [`CommandSpec::flags`].
pub mod flag {
    /// Reads only; may be served by a replica (`read_from_replicas`).
    pub const READONLY: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    /// May block the connection (BLPOP, BLMOVE, ...): needs a dedicated backend connection. For
    /// XREAD/XREADGROUP only with a `BLOCK` option: see [`crate::redis::command::spec::blocks`].
    pub const BLOCKING: u32 = 1 << 2;
    /// Has subcommands: `CLIENT LIST` shows the command with its subcommand (`client|list`), as
    /// Redis 7 does.
    pub const CONTAINER: u32 = 1 << 3;
    /// Reads for its callers, but may change what the node holds (PFCOUNT caches the count it
    /// computed): held by `CLIENT PAUSE WRITE`, as Redis holds its "may-replicate" commands.
    pub const MAY_WRITE: u32 = 1 << 4;
    /// Runs the client's code (EVAL, FCALL, ...), whose error replies say whatever it likes,
    /// `MOVED` and `ASK` included: a redirect in such a reply is followed only as far as the
    /// cluster confirms it (see `cluster::retry`).
    pub const SCRIPT: u32 = 1 << 5;
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
    /// A malformed call that the node refuses with an error of its own for each command (the
    /// arity and CROSSSLOT checks are the proxy's to make).
    pub fn node_words_it(&self) -> bool {
        !matches!(self, CommandError::WrongArity(_) | CommandError::CrossSlot)
    }

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

fn is_keyword(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}
