//! RESP2 framing. Check-then-parse: `parse` either consumes exactly one whole frame from the buffer or
//! leaves it untouched (`Ok(None)` = incomplete), so a frame split across reads is never an error.
//!
//! API CONTRACT (skeleton; the implementation is being written): other modules code against these
//! signatures.

use bytes::{Bytes, BytesMut};

/// One RESP2 value. Payloads are `Bytes` slices of the read buffer (zero-copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Simple(Bytes),
    Error(Bytes),
    Integer(i64),
    Bulk(Bytes),
    /// `$-1\r\n`
    Null,
    Array(Vec<Frame>),
    /// `*-1\r\n`
    NullArray,
}

/// Bounds that turn abusive input into an error instead of unbounded memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bulk_len: usize,
    pub max_array_len: usize,
    pub max_depth: usize,
    pub max_inline_len: usize,
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
    #[error("Protocol error: {what} of {len} exceeds the limit of {limit}")]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
}

/// Parses one client command: a RESP array of bulk strings, or an inline command (`PING\r\n`) which is
/// returned as an `Array` of `Bulk`s. Consumes the frame's bytes only when it is complete.
pub fn parse_command(_buf: &mut BytesMut, _limits: &Limits) -> Result<Option<Frame>, ParseError> {
    todo!("resp parser")
}

/// Parses one reply frame (any RESP2 type; no inline form).
pub fn parse_reply(_buf: &mut BytesMut, _limits: &Limits) -> Result<Option<Frame>, ParseError> {
    todo!("resp parser")
}

impl Frame {
    /// Appends the wire form of `self` to `out`.
    pub fn encode(&self, _out: &mut BytesMut) {
        todo!("resp encoder")
    }
}
