//! RESP2 and RESP3 framing. Check-then-parse: `parse_*` either consumes exactly one whole frame from the buffer or
//! leaves it untouched (`Ok(None)` = incomplete), so a frame split across reads is never an error.
//!
//! A complete frame is first validated in place (no allocation, limits enforced on declared lengths
//! before waiting for their bytes), then its prefix of the buffer is frozen once and every payload is a
//! `Bytes` slice of it (zero-copy).
//!
//! The free functions keep no state: an incomplete frame is re-validated from its start on every
//! call, which costs O(elements × reads) for a huge array trickling in. [`Decoder`] resumes where it
//! stopped instead; connection loops should use it.

mod build;
mod check;
mod cursor;
mod decode;
mod encode;
mod inline;
pub mod wire;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod resp3_tests;
#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

pub use decode::Decoder;
pub use encode::{encode_array_header, encode_bulk, encode_command};

/// The protocol a connection speaks, chosen by `HELLO`. Replies are encoded for it; a RESP3-only
/// frame written to a RESP2 connection takes the form Redis itself gives it there (a map becomes a
/// flat array, a double a bulk string, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    /// The `proto` number `HELLO` reports.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One RESP2 or RESP3 value. Payloads are `Bytes` slices of the read buffer (zero-copy). Text-valued
/// RESP3 scalars (double, big number) keep the exact text the peer sent, so a reply passed through is
/// re-encoded byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Simple(Bytes),
    Error(Bytes),
    Integer(i64),
    Bulk(Bytes),
    /// `$-1\r\n` in RESP2, `_\r\n` in RESP3 (which parses to this too).
    Null,
    Array(Vec<Frame>),
    /// `*-1\r\n` in RESP2, `_\r\n` in RESP3.
    NullArray,
    /// `%`: key/value pairs in the order received.
    Map(Vec<(Frame, Frame)>),
    /// `~`
    Set(Vec<Frame>),
    /// `,`: the text of the number (`1.5`, `inf`, `-inf`, `nan`, `1e10`).
    Double(Bytes),
    /// `(`: the digits, with an optional sign.
    BigNumber(Bytes),
    /// `=`: the three-byte format (`txt`, `mkd`) and the text.
    Verbatim {
        format: [u8; 3],
        text: Bytes,
    },
    /// `#t` / `#f`
    Boolean(bool),
    /// `!`: an error that may contain any bytes.
    BlobError(Bytes),
    /// `|`: attributes, and the value they describe (on the wire the attribute map precedes it).
    Attribute(Vec<(Frame, Frame)>, Box<Frame>),
    /// `>`: out-of-band data (pub/sub messages, invalidations), not the reply to a command.
    Push(Vec<Frame>),
}

/// Bounds that turn abusive input into an error instead of unbounded memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bulk_len: usize,
    pub max_array_len: usize,
    pub max_depth: usize,
    pub max_inline_len: usize,
}

impl Limits {
    /// For replies from cluster nodes: as long as a client may send, but nested as deep as a script
    /// can return (Redis stops a Lua reply at its stack limit, thousands of levels down). The check
    /// pass is iterative, so depth costs one word per level there.
    pub fn node() -> Limits {
        Limits {
            max_depth: 16 * 1024,
            ..Limits::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_array_len: 1024 * 1024,
            max_depth: 32,
            max_inline_len: 64 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("Protocol error: {0}")]
    Protocol(String),
    /// Led by Redis' own words (`invalid multibulk length`, `invalid bulk length`, `too big inline
    /// request`), which clients and test suites match, then the numbers.
    #[error("Protocol error: {} ({len}; the limit is {limit})", too_large(what))]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
}

fn too_large(what: &str) -> String {
    match what {
        "inline request" => "too big inline request".into(),
        what => format!("invalid {what}"),
    }
}

impl ParseError {
    /// The reply Redis sends before closing a connection that broke the protocol
    /// (`-ERR Protocol error: ...`), in Redis' words only (the numbers are for the log).
    pub fn to_frame(&self) -> Frame {
        match self {
            ParseError::TooLarge { what, .. } => {
                Frame::error(format!("ERR Protocol error: {}", too_large(what)))
            }
            ParseError::Protocol(_) => Frame::error(format!("ERR {self}")),
        }
    }
}

/// Parses one client command: a RESP array of bulk strings, or an inline command (`PING\r\n`) which is
/// returned as an `Array` of `Bulk`s. Consumes the frame's bytes only when it is complete.
///
/// Like Redis, empty commands (`*0\r\n`, any negative count such as `*-1\r\n` or `*-10\r\n`, a blank
/// inline line) are consumed and skipped, so a returned command always has at least one argument.
/// Stricter than Redis, deliberately: a frame starting with another RESP type byte (`$ + - :`), an
/// inline line with control bytes and a bulk not followed by CRLF are protocol errors (Redis would run them as
/// garbage commands or skip bytes); the limits are reported as [`ParseError::TooLarge`].
pub fn parse_command(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ParseError> {
    Ok(parse_command_args(buf, limits)?.map(RawCommand::into_frame))
}

/// Like [`parse_command`], without building a frame: the arguments, and the command's exact wire
/// bytes, which a proxy forwards as they are.
pub fn parse_command_args(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<RawCommand>, ParseError> {
    decode::command(buf, limits, &mut Default::default())
}

/// The first arguments (up to 256) of a command's wire form as slices of it, and how many it has in
/// all; `None` when `wire` is not one whole command. No copy of the command: the slow log cuts what
/// it shows from these.
pub fn command_head(wire: &Bytes) -> Option<(Vec<Bytes>, usize)> {
    if wire.first() != Some(&b'*') {
        return None;
    }
    let mut progress = check::Progress::default();
    let (end, count) = check::command(wire, &Limits::node(), &mut progress).ok()??;
    (end == wire.len()).then_some((slices(wire, progress.recorded()), count))
}

/// The arguments at `spans` as `Bytes` of their own: slices of `wire`, not copies.
pub fn slices(wire: &Bytes, spans: &[Span]) -> Vec<Bytes> {
    spans.iter().map(|span| wire.slice(span.range())).collect()
}

/// Where one argument's bytes are in its command's wire bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// `None` past 4 GiB, where the arguments are kept as [`Bytes`] instead.
    pub(super) fn new(start: usize, end: usize) -> Option<Span> {
        Some(Span {
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        })
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// The argument spans of one command, held inline for the short commands that make up nearly all
/// traffic: finding a command's name and keys then allocates nothing.
pub type Spans = smallvec::SmallVec<[Span; 6]>;

/// One client command as it arrived: its bytes and where its arguments are in them, or (inline, or
/// more arguments than the parser records) the arguments themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCommand {
    /// The multibulk form's bytes; `None` for an inline command, which must be re-encoded.
    pub wire: Option<Bytes>,
    /// Where each argument is in `wire`; empty when `words` holds the arguments.
    pub spans: Spans,
    /// The arguments as slices of their own, when there are no `spans`.
    pub words: Vec<Bytes>,
}

impl RawCommand {
    /// The arguments as `Bytes` (slices of `wire`, not copies).
    pub fn args(&self) -> Vec<Bytes> {
        match &self.wire {
            Some(wire) if !self.spans.is_empty() => slices(wire, &self.spans),
            _ => self.words.clone(),
        }
    }

    pub fn into_frame(self) -> Frame {
        Frame::Array(self.args().into_iter().map(Frame::Bulk).collect())
    }
}

/// Parses one reply frame (any RESP2 or RESP3 type; no inline form). Backend replies can legitimately be larger
/// than what a client may send (LRANGE of a big list): callers may pass looser limits here.
pub fn parse_reply(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ParseError> {
    Ok(parse_reply_raw(buf, limits)?.map(|(frame, _raw)| frame))
}

/// Like [`parse_reply`], also returning the frame's exact wire bytes, so a proxy can pass a reply
/// through without re-encoding it.
pub fn parse_reply_raw(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<(Frame, Bytes)>, ParseError> {
    decode::reply(buf, limits, &mut Default::default())
}

/// A connection's read buffer. Frames leave it as slices that share its allocation (zero-copy),
/// which is why room for the next read is made by [`ReadBuf::make_room`], never `reserve`.
#[derive(Debug, Default)]
pub struct ReadBuf {
    bytes: BytesMut,
    /// A frame of at least [`BIG_FRAME`] bytes left the buffer since it last moved: what is left is
    /// a view into that frame's allocation (grown for it).
    carried_big: bool,
}

impl ReadBuf {
    /// A buffer starting with `bytes` (what a handshake read beyond its own replies).
    pub fn new(bytes: BytesMut) -> ReadBuf {
        ReadBuf {
            bytes,
            carried_big: false,
        }
    }

    /// Notes that a frame of `len` bytes was taken from the front.
    pub fn took(&mut self, len: usize) {
        self.carried_big |= len >= BIG_FRAME;
    }

    /// Takes the first `len` bytes, as one frame (or several read together).
    pub fn take(&mut self, len: usize) -> Bytes {
        self.took(len);
        self.bytes.split_to(len).freeze()
    }

    /// Room for the next read. Not `BytesMut::reserve`: once frames have been split off, the
    /// buffer is shared with them, and `reserve` then allocates at least the size of the original
    /// allocation, so every 4 MiB frame would leave behind a 4 MiB buffer for the next few bytes. A
    /// fresh buffer takes over the unfinished rest instead: one read's worth more, or double for a
    /// big frame still arriving (so that it is copied a bounded number of times, not once per read).
    ///
    /// After a big frame, once little is left, the rest moves to a fresh buffer even when there is
    /// room: else the big frame's allocation would stay resident for the connection's life (a 100
    /// MiB SET from a client that stays connected held 98 MiB).
    pub fn make_room(&mut self) {
        let buf = &mut self.bytes;
        if self.carried_big && buf.len() <= 64 * 1024 {
            self.carried_big = false;
            return move_to_fresh(buf, buf.len() + 16 * 1024);
        }
        if buf.capacity() - buf.len() >= 4096 {
            return;
        }
        move_to_fresh(buf, (buf.len() * 2).max(buf.len() + 16 * 1024));
    }
}

impl std::ops::Deref for ReadBuf {
    type Target = BytesMut;

    fn deref(&self) -> &BytesMut {
        &self.bytes
    }
}

impl std::ops::DerefMut for ReadBuf {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.bytes
    }
}

/// A frame at least this big has its read buffer's allocation given back after it (see
/// [`ReadBuf::make_room`]).
pub const BIG_FRAME: usize = 1024 * 1024;

/// Moves what `buf` holds to a fresh buffer of `capacity`, at the same offsets (a decoder's
/// progress in it stays valid), letting go of the old allocation.
pub fn move_to_fresh(buf: &mut BytesMut, capacity: usize) {
    let mut fresh = BytesMut::with_capacity(capacity);
    fresh.extend_from_slice(buf);
    *buf = fresh;
}

/// Calls `each` with every element of the array reply `raw` (bytes a node reader validated), as a
/// slice of it; the element count, or `None` when `raw` is not one whole array.
pub fn array_elements(raw: &Bytes, each: impl FnMut(Bytes)) -> Option<usize> {
    match raw.first() {
        Some(b'*') => elements(raw, each),
        _ => None,
    }
}

/// [`array_elements`] for an array or a push (`>`).
pub fn elements(raw: &Bytes, mut each: impl FnMut(Bytes)) -> Option<usize> {
    check::elements(raw, |range| each(raw.slice(range)))
}

/// The text of an error reply's wire bytes (`-`; empty for a blob error, `!`), `None` for any
/// other reply.
pub fn error_text(raw: &[u8]) -> Option<&[u8]> {
    match raw.first() {
        Some(b'-') => Some(raw[1..].strip_suffix(b"\r\n").unwrap_or(&raw[1..])),
        Some(b'!') => Some(b""),
        _ => None,
    }
}

/// The frame of one reply's wire bytes as [`Decoder::reply_bytes`] returned them.
pub fn frame_of(raw: &Bytes) -> Result<Frame, ParseError> {
    build::reply(raw)
}

impl Frame {
    /// An error reply; CR/LF in `msg` are replaced when encoded, so any message is safe.
    pub fn error(msg: impl Into<Bytes>) -> Frame {
        Frame::Error(msg.into())
    }

    /// A simple-string reply such as `OK` or `PONG`.
    pub fn simple(msg: &'static str) -> Frame {
        Frame::Simple(Bytes::from_static(msg.as_bytes()))
    }

    pub fn ok() -> Frame {
        Frame::simple("OK")
    }

    pub fn bulk(data: impl Into<Bytes>) -> Frame {
        Frame::Bulk(data.into())
    }

    /// The payload of a string-like frame (bulk, simple, error, verbatim text).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Frame::Bulk(b) | Frame::Simple(b) | Frame::Error(b) | Frame::BlobError(b) => Some(b),
            Frame::Verbatim { text, .. } => Some(text),
            _ => None,
        }
    }

    /// An error reply of either protocol (`-` or `!`).
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_) | Frame::BlobError(_))
    }

    /// Text as Redis sends it from INFO or CLIENT INFO: verbatim `txt` in RESP3, bulk in RESP2.
    pub fn verbatim_text(text: impl Into<Bytes>) -> Frame {
        Frame::Verbatim {
            format: *b"txt",
            text: text.into(),
        }
    }

    /// The arguments of a command frame as returned by [`parse_command`] (an array of bulks); `None`
    /// for any other shape.
    pub fn into_args(self) -> Option<Vec<Bytes>> {
        match self {
            Frame::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Frame::Bulk(b) => Some(b),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    /// Appends the RESP2 wire form of `self` to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        encode::frame(self, Protocol::Resp2, out)
    }

    /// The number of bytes [`Frame::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        encode::frame_len(self, Protocol::Resp2)
    }

    /// Appends the wire form of `self` for a connection speaking `protocol`.
    pub fn encode_in(&self, protocol: Protocol, out: &mut BytesMut) {
        encode::frame(self, protocol, out)
    }

    /// The number of bytes [`Frame::encode_in`] appends.
    pub fn encoded_len_in(&self, protocol: Protocol) -> usize {
        encode::frame_len(self, protocol)
    }
}
