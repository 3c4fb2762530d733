//! Inline commands (`SET a "b c"\r\n` typed into telnet), split like Redis' `sdssplitargs`: spaces
//! separate arguments, `"..."` understands `\n \r \t \b \a \xHH` and `\<c>`, `'...'` only `\'`, and a
//! closing quote must be followed by a space or the end of the line.
//!
//! Unlike Redis, control bytes (other than tab and the final CR) are a protocol error: nothing typed
//! at a terminal contains them, and rejecting them turns binary garbage into an error + close instead
//! of a stream of "unknown command" replies.

use bytes::{Bytes, BytesMut};

use super::cursor::{protocol, show};
use super::{Limits, ParseError};

/// One inline command's arguments (empty for a blank line), or `None` until its `\n` has arrived.
pub(super) fn parse(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ParseError> {
    let max = limits.max_inline_len;
    let too_large = |len| ParseError::TooLarge {
        what: "inline request",
        len,
        limit: max,
    };
    let Some(newline) = memchr::memchr(b'\n', buf) else {
        if buf.len() > max.saturating_add(1) {
            return Err(too_large(buf.len()));
        }
        reject_control_bytes(buf)?;
        return Ok(None);
    };
    let line_len = match buf[..newline].last() {
        Some(b'\r') => newline - 1,
        _ => newline,
    };
    if line_len > max {
        return Err(too_large(line_len));
    }
    reject_control_bytes(&buf[..line_len])?;
    let line = buf.split_to(newline + 1).freeze().slice(..line_len);
    split_args(&line).map(Some)
}

fn reject_control_bytes(line: &[u8]) -> Result<(), ParseError> {
    // A CR is fine only as the last byte seen so far: it may be the start of the CRLF.
    let body = line.strip_suffix(b"\r").unwrap_or(line);
    match body
        .iter()
        .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        Some(&bad) => Err(protocol(format!(
            "invalid character '{}' in inline request",
            show(bad)
        ))),
        None => Ok(()),
    }
}

fn split_args(line: &Bytes) -> Result<Vec<Bytes>, ParseError> {
    let mut args = Vec::new();
    let mut pos = 0;
    loop {
        while line.get(pos).is_some_and(|&b| is_space(b)) {
            pos += 1;
        }
        if pos == line.len() {
            return Ok(args);
        }
        let (arg, next) = token(line, pos)?;
        args.push(arg);
        pos = next;
    }
}

/// One argument starting at `start`: a zero-copy slice when it has no quotes, else an unescaped copy.
fn token(line: &Bytes, start: usize) -> Result<(Bytes, usize), ParseError> {
    let bytes = &line[..];
    let mut pos = start;
    while bytes
        .get(pos)
        .is_some_and(|&b| !is_space(b) && b != b'"' && b != b'\'')
    {
        pos += 1;
    }
    if bytes.get(pos).is_none_or(|&b| is_space(b)) {
        return Ok((line.slice(start..pos), pos));
    }
    let mut out = bytes[start..pos].to_vec();
    loop {
        match bytes.get(pos) {
            None => return Ok((Bytes::from(out), pos)),
            Some(&b) if is_space(b) => return Ok((Bytes::from(out), pos)),
            Some(b'"') => pos = double_quoted(bytes, pos + 1, &mut out)?,
            Some(b'\'') => pos = single_quoted(bytes, pos + 1, &mut out)?,
            Some(&b) => {
                out.push(b);
                pos += 1;
            }
        }
    }
}

/// Unescapes a `"..."` body starting at `pos`; returns the position after the closing quote.
fn double_quoted(bytes: &[u8], mut pos: usize, out: &mut Vec<u8>) -> Result<usize, ParseError> {
    loop {
        match bytes.get(pos..) {
            Some([b'\\', b'x', hi, lo, ..]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                out.push(hex_value(*hi) << 4 | hex_value(*lo));
                pos += 4;
            }
            Some([b'\\', escaped, ..]) => {
                out.push(unescape(*escaped));
                pos += 2;
            }
            Some([b'"', ..]) => return closing_quote(bytes, pos),
            Some([b, ..]) => {
                out.push(*b);
                pos += 1;
            }
            _ => return Err(unbalanced()),
        }
    }
}

/// Copies a `'...'` body starting at `pos` (only `\'` is an escape).
fn single_quoted(bytes: &[u8], mut pos: usize, out: &mut Vec<u8>) -> Result<usize, ParseError> {
    loop {
        match bytes.get(pos..) {
            Some([b'\\', b'\'', ..]) => {
                out.push(b'\'');
                pos += 2;
            }
            Some([b'\'', ..]) => return closing_quote(bytes, pos),
            Some([b, ..]) => {
                out.push(*b);
                pos += 1;
            }
            _ => return Err(unbalanced()),
        }
    }
}

fn closing_quote(bytes: &[u8], quote: usize) -> Result<usize, ParseError> {
    match bytes.get(quote + 1) {
        Some(&b) if !is_space(b) => Err(unbalanced()),
        _ => Ok(quote + 1),
    }
}

fn unbalanced() -> ParseError {
    protocol("unbalanced quotes in request".into())
}

fn unescape(escaped: u8) -> u8 {
    match escaped {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'a' => 0x07,
        other => other,
    }
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit.to_ascii_lowercase().wrapping_sub(b'a') + 10,
    }
}

fn is_space(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}
