//! A client command as the proxy sees it: its arguments, its entry in the command table, and the slot
//! its keys hash to.

pub mod slots;
pub mod spec;

use std::sync::OnceLock;

use bytes::Bytes;

use crate::redis::cluster::router::Route;
use crate::redis::command::slots::key_slot;
use crate::redis::command::spec::{flag, Args, CommandSpec, Kind};
use crate::redis::resp::wire;
use crate::redis::resp::{Frame, RawCommand, Spans};

pub struct Command {
    /// Upper-case name, for matching.
    pub name: Name,
    pub spec: Option<&'static CommandSpec>,
    /// The bytes the client sent, forwarded as they are; `None` when they must be encoded (an
    /// inline command, or one the proxy built).
    wire: Option<Bytes>,
    /// Where each argument is in `wire`; empty when `words` was given instead. The routing of a
    /// keyed command reads its name and keys through these alone.
    spans: Spans,
    /// The arguments as `Bytes` (argument 0 is the name as the client sent it): given when there
    /// are no spans, else built on first use by the paths that work on whole arguments (local
    /// commands, splits, transactions).
    words: OnceLock<Vec<Bytes>>,
}

/// A key of a command: where it is among the arguments and among the keys, and the slot that
/// serves it. Small, because a split command sorts a list of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySlot {
    pub slot: u16,
    /// The key's place in the command's key list (a split MGET puts its value back there).
    pub ordinal: u32,
    /// The key's argument index.
    pub arg: u32,
}

/// A command name in upper case: matching a name must not allocate. Known commands use the table's
/// name (upper-cased once per process); anything else keeps its own text.
#[derive(Clone)]
pub enum Name {
    Known(&'static str),
    Other(String),
}

impl Name {
    fn new(raw: &[u8], spec: Option<&'static CommandSpec>) -> Name {
        match spec.and_then(spec::index) {
            Some(i) => Name::Known(upper_names()[i].as_str()),
            None => Name::Other(String::from_utf8_lossy(raw).to_ascii_uppercase()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Name::Known(name) => name,
            Name::Other(name) => name,
        }
    }
}

/// The table's names in upper case, by table index.
fn upper_names() -> &'static [String] {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        spec::all()
            .iter()
            .map(|spec| spec.name.to_ascii_uppercase())
            .collect()
    })
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl Command {
    /// A command from plain words, for tests.
    #[cfg(test)]
    pub(crate) fn from_words(words: &[&str]) -> Command {
        Command::new(
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect(),
        )
    }

    /// A command from a parsed request: an array of bulk strings. `Ok(None)` for an empty array, which
    /// Redis ignores.
    pub fn from_frame(frame: Frame) -> Result<Option<Command>, Frame> {
        let items = match frame {
            Frame::Array(items) => items,
            _ => {
                return Err(wire::error(
                    "ERR Protocol error: expected an array of bulk strings",
                ))
            }
        };
        let mut args = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Frame::Bulk(b) => args.push(b),
                _ => {
                    return Err(wire::error(
                        "ERR Protocol error: command arguments must be bulk strings",
                    ))
                }
            }
        }
        if args.is_empty() {
            return Ok(None);
        }
        Ok(Some(Command::new(args)))
    }

    /// A command from its arguments (at least one), encoded when sent.
    pub fn new(args: Vec<Bytes>) -> Command {
        Command::named(None, Spans::new(), OnceLock::from(args))
    }

    /// A command as parsed from the client: forwarded as the bytes it came in.
    pub fn from_raw(raw: RawCommand) -> Command {
        let words = match raw.spans.is_empty() {
            true => OnceLock::from(raw.words),
            false => OnceLock::new(),
        };
        Command::named(raw.wire, raw.spans, words)
    }

    /// Built in one go, the name looked up first: filling in a built command would copy it.
    fn named(wire: Option<Bytes>, spans: Spans, words: OnceLock<Vec<Bytes>>) -> Command {
        let raw_name = arg_of(wire.as_ref(), &spans, &words, 0).unwrap_or_default();
        let spec = spec::lookup(raw_name);
        let name = Name::new(raw_name, spec);
        Command {
            name,
            spec,
            wire,
            spans,
            words,
        }
    }

    /// How many arguments, the name included (at least one).
    pub fn arg_count(&self) -> usize {
        match self.spans.is_empty() {
            false => self.spans.len(),
            true => self.words.get().map_or(0, Vec::len),
        }
    }

    /// Argument `i`'s bytes, without building the argument list.
    pub fn arg(&self, i: usize) -> Option<&[u8]> {
        arg_of(self.wire.as_ref(), &self.spans, &self.words, i)
    }

    /// The arguments as `Bytes` (slices of the client's bytes, not copies), built on first use:
    /// for the paths that keep or pass on whole arguments; routing uses [`Command::arg`].
    pub fn args(&self) -> &[Bytes] {
        self.words.get_or_init(|| match &self.wire {
            Some(wire) => crate::redis::resp::slices(wire, &self.spans),
            None => Vec::new(),
        })
    }

    /// [`Command::args`], taken.
    pub fn into_args(self) -> Vec<Bytes> {
        self.args();
        self.words.into_inner().unwrap_or_default()
    }

    /// Upper-case text of argument `i`, if present.
    pub fn arg_upper(&self, i: usize) -> Option<String> {
        self.arg(i)
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
    }

    /// How the proxy serves it; `None` for a command the table does not know.
    pub fn kind(&self) -> Option<Kind> {
        self.spec.map(|spec| spec.kind)
    }

    /// The subscription command this is, if it is one.
    pub fn subscription(&self) -> Option<spec::Subscription> {
        self.kind().and_then(Kind::subscription)
    }

    pub fn has_flag(&self, f: u32) -> bool {
        self.spec.is_some_and(|s| s.flags & f != 0)
    }

    /// Redis' own arity rule: positive = exactly, negative = at least.
    pub fn check_arity(&self) -> Result<(), Frame> {
        let Some(spec) = self.spec else {
            return Ok(());
        };
        let n = self.arg_count() as i32;
        let ok = if spec.arity >= 0 {
            n == spec.arity
        } else {
            n >= -spec.arity
        };
        if ok {
            Ok(())
        } else {
            Err(wire::wrong_arity(self.arg(0).unwrap_or_default()))
        }
    }

    /// Every key's place and slot, in the command's order.
    pub fn key_slots(&self) -> Result<Vec<KeySlot>, Frame> {
        let Some(spec) = self.spec else {
            return Ok(Vec::new());
        };
        // A key per argument at most (MSET: one per two): sized once.
        let mut keys = Vec::with_capacity(self.arg_count());
        spec::for_each_key(spec, self, |i| {
            if let Some(key) = self.arg(i) {
                keys.push(KeySlot {
                    slot: key_slot(key),
                    ordinal: keys.len() as u32,
                    arg: i as u32,
                });
            }
        })
        .map_err(|e| wire::error(e.to_string()))?;
        Ok(keys)
    }

    /// The one slot of all keys; `None` without keys; CROSSSLOT when they disagree.
    /// A call whose keys cannot be found (a `numkeys` that is no count, streams without IDs) goes to
    /// any master, keyless: the node refuses it in its own words, which differ per command
    /// (`numkeys should be greater than 0`, `Bad number of keys provided`) and which clients and test
    /// suites match.
    pub fn slot(&self) -> Result<Option<u16>, Frame> {
        let Some(spec) = self.spec else {
            return Ok(None);
        };
        match spec::command_slot(spec, self) {
            Ok(slot) => Ok(slot),
            Err(e) if e.node_words_it() => Ok(None),
            Err(e) => Err(wire::error(e.to_string())),
        }
    }

    pub fn readonly(&self) -> bool {
        self.has_flag(flag::READONLY)
    }

    /// Blocking commands hold a connection for as long as they wait, so they never use the pool.
    pub fn blocking(&self) -> bool {
        self.spec.is_some_and(|spec| spec::blocks(spec, self))
    }

    /// Bytes the command holds.
    pub fn size(&self) -> usize {
        match &self.wire {
            Some(wire) => wire.len(),
            None => self.args().iter().map(|a| a.len()).sum(),
        }
    }

    /// At least the size of the command's wire form: its own bytes, or its arguments with room
    /// for their length lines.
    pub fn wire_size_bound(&self) -> usize {
        match &self.wire {
            Some(wire) => wire.len(),
            None => 16 + self.args().iter().map(|a| a.len() + 16).sum::<usize>(),
        }
    }

    /// The command's wire form: the client's own bytes when it sent the multibulk form.
    pub fn payload(&self) -> Bytes {
        match &self.wire {
            Some(wire) => wire.clone(),
            None => wire::command_bytes(self.args()),
        }
    }

    /// [`Command::payload`], the bytes moved out rather than shared: a clone would be a reference
    /// count taken and dropped again per command. Taken through `&mut`, not by value: moving the
    /// whole command into a call is a copy of it.
    fn take_payload(&mut self) -> Bytes {
        match self.wire.take() {
            Some(wire) => wire,
            None => wire::command_bytes(self.args()),
        }
    }

    /// The client's own bytes of the arguments `range`, each `$<len>\r\n<arg>\r\n` as it came:
    /// what a part of a split command copies instead of encoding its arguments again. `None` when
    /// the command has no wire bytes (inline, or built by the proxy), or an argument is not a slice
    /// of them (an empty one is not).
    pub fn wire_args(&self, range: std::ops::Range<usize>) -> Option<&[u8]> {
        let wire = self.wire.as_deref()?;
        // Where argument `i`'s trailing CRLF ends in `wire`.
        let end_of = |i: usize| -> Option<usize> {
            let (at, len) = match self.spans.get(i) {
                Some(span) => (span.range().start, span.range().len()),
                None => {
                    let arg = self.words.get()?.get(i)?;
                    let at = (arg.as_ptr() as usize).checked_sub(wire.as_ptr() as usize)?;
                    (at, arg.len())
                }
            };
            let end = at.checked_add(len)?.checked_add(2)?;
            (len > 0 && end <= wire.len()).then_some(end)
        };
        let start = match range.start {
            0 => memchr::memchr(b'\n', wire)? + 1,
            i => end_of(i - 1)?,
        };
        let span = wire.get(start..end_of(range.end.checked_sub(1)?)?)?;
        (span.first() == Some(&b'$') && span.ends_with(b"\r\n")).then_some(span)
    }

    /// The command routed by its keys; its bytes move into the route.
    pub fn into_route(mut self) -> Result<Route, Frame> {
        let (slot, readonly, dedicated) = (self.slot()?, self.readonly(), self.blocking());
        Ok(Route {
            scripted: self.has_flag(flag::SCRIPT),
            payload: self.take_payload(),
            slot,
            readonly,
            dedicated,
        })
    }

    /// The command sent to any master regardless of keys (COMMAND, CONFIG GET, ...).
    pub fn keyless_route(&self) -> Route {
        Route {
            payload: self.payload(),
            slot: None,
            readonly: false,
            dedicated: false,
            scripted: self.has_flag(flag::SCRIPT),
        }
    }
}

/// Argument `i` of a command held as `wire` and `spans`, or as `words` when there are no spans.
fn arg_of<'a>(
    wire: Option<&'a Bytes>,
    spans: &Spans,
    words: &'a OnceLock<Vec<Bytes>>,
    i: usize,
) -> Option<&'a [u8]> {
    match (wire, spans.is_empty()) {
        (Some(wire), false) => spans.get(i).map(|span| &wire[span.range()]),
        _ => words.get()?.get(i).map(|arg| &arg[..]),
    }
}

impl Args for Command {
    fn count(&self) -> usize {
        self.arg_count()
    }

    fn arg(&self, i: usize) -> Option<&[u8]> {
        Command::arg(self, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &[&str]) -> Command {
        Command::from_words(words)
    }

    #[test]
    fn slots_follow_keys_and_hash_tags() {
        assert_eq!(cmd(&["get", "foo"]).slot().unwrap(), Some(12182));
        assert_eq!(cmd(&["PING"]).slot().unwrap(), None);
        assert_eq!(
            cmd(&["SUNIONSTORE", "{u}d", "{u}a", "{u}b"])
                .slot()
                .unwrap(),
            Some(key_slot(b"u"))
        );
        let Err(Frame::Error(e)) = cmd(&["SUNIONSTORE", "d", "a", "b"]).slot() else {
            panic!("expected CROSSSLOT");
        };
        assert!(e.starts_with(b"CROSSSLOT"));
        // EVAL with numkeys 0 has no slot; with keys it has theirs.
        assert_eq!(cmd(&["EVAL", "return 1", "0"]).slot().unwrap(), None);
        assert_eq!(
            cmd(&["EVAL", "s", "1", "foo", "arg"]).slot().unwrap(),
            Some(12182)
        );
    }

    #[test]
    fn arity_blocking_and_readonly() {
        assert!(cmd(&["GET"]).check_arity().is_err());
        assert!(cmd(&["GET", "a"]).check_arity().is_ok());
        assert!(cmd(&["GET", "a"]).readonly());
        assert!(!cmd(&["SET", "a", "b"]).readonly());
        assert!(cmd(&["BLPOP", "a", "0"]).blocking());
        assert!(!cmd(&["XREAD", "STREAMS", "s", "0"]).blocking());
        assert!(cmd(&["XREAD", "BLOCK", "0", "STREAMS", "s", "0"]).blocking());
    }

    #[test]
    fn frames_become_commands() {
        let frame = Frame::Array(vec![
            Frame::Bulk(Bytes::from_static(b"get")),
            Frame::Bulk(Bytes::from_static(b"k")),
        ]);
        let c = Command::from_frame(frame).unwrap().unwrap();
        assert_eq!(c.name, "GET");
        assert!(Command::from_frame(Frame::Array(vec![])).unwrap().is_none());
        assert!(Command::from_frame(Frame::Array(vec![Frame::Integer(1)])).is_err());
        assert_eq!(&c.payload()[..], b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n");
    }

    #[test]
    fn parsed_commands_keep_their_wire_bytes() {
        // The client's exact bytes go to the node (its spelling of the name included).
        let mut buf = bytes::BytesMut::from(&b"*2\r\n$3\r\ngEt\r\n$1\r\nk\r\nPING\r\n"[..]);
        let limits = crate::redis::resp::Limits::default();
        let raw = crate::redis::resp::parse_command_args(&mut buf, &limits)
            .unwrap()
            .unwrap();
        let c = Command::from_raw(raw);
        assert_eq!(c.name, "GET");
        assert_eq!(&c.payload()[..], b"*2\r\n$3\r\ngEt\r\n$1\r\nk\r\n");
        let inline = crate::redis::resp::parse_command_args(&mut buf, &limits)
            .unwrap()
            .unwrap();
        let c = Command::from_raw(inline);
        assert_eq!(&c.payload()[..], b"*1\r\n$4\r\nPING\r\n");
        assert!(c.wire_args(0..1).is_none(), "inline: no wire bytes");
        let unknown = Command::new(vec![Bytes::from_static(b"NoSuch")]);
        assert_eq!(unknown.name, "NOSUCH");
        assert!(unknown.spec.is_none());
    }

    #[test]
    fn argument_spans_are_the_clients_own_bytes() {
        let mut buf = bytes::BytesMut::from(
            &b"*5\r\n$4\r\nmset\r\n$1\r\na\r\n$2\r\n10\r\n$1\r\nb\r\n$0\r\n\r\n"[..],
        );
        let limits = crate::redis::resp::Limits::default();
        let raw = crate::redis::resp::parse_command_args(&mut buf, &limits)
            .unwrap()
            .unwrap();
        let c = Command::from_raw(raw);
        assert_eq!(c.wire_args(0..1), Some(&b"$4\r\nmset\r\n"[..]));
        assert_eq!(c.wire_args(1..3), Some(&b"$1\r\na\r\n$2\r\n10\r\n"[..]));
        assert_eq!(c.wire_args(3..4), Some(&b"$1\r\nb\r\n"[..]));
        // An empty argument is no slice of the wire bytes: the caller encodes it.
        assert_eq!(c.wire_args(4..5), None);
        assert_eq!(c.wire_args(3..5), None);
        assert_eq!(c.wire_args(5..6), None);
        assert_eq!(c.wire_args(1..1), None);
        assert_eq!(cmd(&["MSET", "a", "1"]).wire_args(1..3), None);
    }

    fn parsed(wire: &[u8]) -> Command {
        let mut buf = bytes::BytesMut::from(wire);
        let limits = crate::redis::resp::Limits::default();
        let raw = crate::redis::resp::parse_command_args(&mut buf, &limits)
            .unwrap()
            .unwrap();
        Command::from_raw(raw)
    }

    #[test]
    fn routing_a_keyed_command_builds_no_argument_list() {
        let wire = b"*2\r\n$3\r\nget\r\n$3\r\nfoo\r\n";
        let c = parsed(wire);
        c.check_arity().unwrap();
        assert!(c.readonly() && !c.blocking());
        assert_eq!(c.slot().unwrap(), Some(12182));
        assert_eq!((c.arg_count(), c.arg(1)), (2, Some(&b"foo"[..])));
        assert!(c.words.get().is_none(), "the argument list was built");
        assert_eq!(&c.into_route().unwrap().payload[..], wire);
    }

    #[test]
    fn the_argument_list_is_the_same_from_spans_words_and_many_arguments() {
        let c = parsed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        assert_eq!(c.args(), cmd(&["SET", "k", ""]).args());
        assert_eq!(c.arg(2), Some(&b""[..]));
        assert_eq!(c.into_args().len(), 3);
        // More arguments than the parser records: given as words, read the same way.
        let mut words = vec!["DEL".to_string()];
        words.extend((0..300).map(|i| format!("{{t}}{i}")));
        let mut wire = bytes::BytesMut::new();
        crate::redis::resp::encode_command(&words, &mut wire);
        let c = parsed(&wire);
        assert_eq!(c.arg_count(), 301);
        assert_eq!(c.arg(300), Some(&b"{t}299"[..]));
        assert_eq!(c.slot().unwrap(), Some(key_slot(b"t")));
        assert_eq!(c.args()[1], Bytes::from_static(b"{t}0"));
        assert_eq!(&c.payload()[..], &wire[..]);
    }
}
