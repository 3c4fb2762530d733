//! The two passes behind `parse_command` / `parse_reply`: `check_*` walks the buffer without
//! allocating and finds where one complete frame ends (or that it is incomplete, or invalid); `build_*`
//! then walks the frozen prefix again and slices the payloads out of it.

use bytes::{Buf, Bytes, BytesMut};

use super::{inline, Frame, Limits, ParseError};

/// Longest `*<n>` / `$<n>` / `:<n>` line we wait for: `-9223372036854775808` has 20 characters.
const MAX_NUMBER_LINE: usize = 32;

pub(super) fn command(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ParseError> {
    loop {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        match first {
            b'*' => {
                let Some((end, count)) = check_command(buf, limits)? else {
                    return Ok(None);
                };
                if count == 0 {
                    buf.advance(end);
                    continue;
                }
                let raw = buf.split_to(end).freeze();
                return build_command(&raw, count).map(Some);
            }
            b'$' | b'+' | b'-' | b':' => {
                return Err(protocol(format!("expected '*', got '{}'", show(first))))
            }
            _ => match inline::parse(buf, limits)? {
                None => return Ok(None),
                Some(args) if args.is_empty() => continue,
                Some(args) => {
                    return Ok(Some(Frame::Array(
                        args.into_iter().map(Frame::Bulk).collect(),
                    )))
                }
            },
        }
    }
}

pub(super) fn reply(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<(Frame, Bytes)>, ParseError> {
    let mut cur = Cursor { buf, pos: 0 };
    if check_value(&mut cur, limits, 0)?.is_none() {
        return Ok(None);
    }
    let end = cur.pos;
    let raw = buf.split_to(end).freeze();
    let mut cur = Cursor { buf: &raw, pos: 0 };
    let frame = build_value(&mut cur, &raw)?;
    Ok(Some((frame, raw)))
}

/// Position in a buffer being walked. `None` results from its methods mean "the bytes have not
/// arrived yet".
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn next_byte(&mut self) -> Option<u8> {
        let byte = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(byte)
    }

    /// The line at the cursor without its CRLF. A line longer than `max` is an error as soon as that
    /// many bytes are buffered, so a peer cannot make us wait for (and buffer) an endless line.
    fn line(
        &mut self,
        max: usize,
        too_long: impl FnOnce(usize) -> ParseError,
    ) -> Result<Option<&'a [u8]>, ParseError> {
        let rest = &self.buf[self.pos..];
        let window = &rest[..rest.len().min(max.saturating_add(1))];
        match memchr::memchr(b'\r', window) {
            Some(cr) => match rest.get(cr + 1) {
                None => Ok(None),
                Some(b'\n') => {
                    self.pos += cr + 2;
                    Ok(Some(&rest[..cr]))
                }
                Some(_) => Err(protocol("expected '\\n' after '\\r'".into())),
            },
            None if rest.len() > max => Err(too_long(rest.len())),
            None => Ok(None),
        }
    }

    /// A length header (`*<n>` / `$<n>`) after its type byte; `what` names it in errors.
    fn length(&mut self, what: &'static str) -> Result<Option<i64>, ParseError> {
        let invalid = || protocol(format!("invalid {what}"));
        match self.line(MAX_NUMBER_LINE, |_| invalid())? {
            None => Ok(None),
            Some(line) => parse_int(line).map(Some).ok_or_else(invalid),
        }
    }

    /// Skips a bulk payload of `len` bytes and its CRLF.
    fn payload(&mut self, len: usize) -> Result<Option<std::ops::Range<usize>>, ParseError> {
        let start = self.pos;
        let end = start + len;
        let Some(crlf) = self.buf.get(end..end + 2) else {
            return Ok(None);
        };
        if crlf != b"\r\n" {
            return Err(protocol("expected CRLF after the bulk string".into()));
        }
        self.pos = end + 2;
        Ok(Some(start..end))
    }
}

/// Finds the end of a multibulk command and its argument count (0 for the empty forms Redis skips).
fn check_command(buf: &[u8], limits: &Limits) -> Result<Option<(usize, usize)>, ParseError> {
    let mut cur = Cursor { buf, pos: 1 };
    let Some(count) = cur.length("multibulk length")? else {
        return Ok(None);
    };
    let count = array_len(count, limits)?.unwrap_or(0);
    for _ in 0..count {
        match cur.next_byte() {
            None => return Ok(None),
            Some(b'$') => {}
            Some(other) => return Err(protocol(format!("expected '$', got '{}'", show(other)))),
        }
        if check_bulk(&mut cur, limits, false)?.is_none() {
            return Ok(None);
        }
    }
    Ok(Some((cur.pos, count)))
}

fn build_command(raw: &Bytes, count: usize) -> Result<Frame, ParseError> {
    let mut cur = Cursor { buf: raw, pos: 1 };
    complete(cur.length("multibulk length")?)?;
    // Safe to size from `count`: the check pass saw all `count` elements in the buffer.
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        complete(cur.next_byte())?;
        args.push(build_bulk(&mut cur, raw)?);
    }
    Ok(Frame::Array(args))
}

/// Validates an array length; `None` is the null array (`*-1`).
fn array_len(len: i64, limits: &Limits) -> Result<Option<usize>, ParseError> {
    match len {
        -1 => Ok(None),
        len if len < -1 => Err(protocol("invalid multibulk length".into())),
        len if len as u64 > limits.max_array_len as u64 => Err(ParseError::TooLarge {
            what: "multibulk length",
            len: len as usize,
            limit: limits.max_array_len,
        }),
        len => Ok(Some(len as usize)),
    }
}

/// Validates a bulk string after its `$`; the declared length is checked against the limit before
/// waiting for the payload.
fn check_bulk(
    cur: &mut Cursor,
    limits: &Limits,
    allow_null: bool,
) -> Result<Option<()>, ParseError> {
    let Some(len) = cur.length("bulk length")? else {
        return Ok(None);
    };
    if len == -1 && allow_null {
        return Ok(Some(()));
    }
    if len < 0 {
        return Err(protocol("invalid bulk length".into()));
    }
    if len as u64 > limits.max_bulk_len as u64 {
        return Err(ParseError::TooLarge {
            what: "bulk length",
            len: len as usize,
            limit: limits.max_bulk_len,
        });
    }
    Ok(cur.payload(len as usize)?.map(|_| ()))
}

fn build_bulk(cur: &mut Cursor, raw: &Bytes) -> Result<Frame, ParseError> {
    let len = complete(cur.length("bulk length")?)?;
    if len < 0 {
        return Ok(Frame::Null);
    }
    let range = complete(cur.payload(len as usize)?)?;
    Ok(Frame::Bulk(raw.slice(range)))
}

fn check_value(cur: &mut Cursor, limits: &Limits, depth: usize) -> Result<Option<()>, ParseError> {
    let Some(kind) = cur.next_byte() else {
        return Ok(None);
    };
    match kind {
        b'+' | b'-' => {
            let max = limits.max_inline_len;
            let too_long = |len| ParseError::TooLarge {
                what: "simple string",
                len,
                limit: max,
            };
            Ok(cur.line(max, too_long)?.map(|_| ()))
        }
        b':' => {
            let invalid = || protocol("invalid integer".into());
            match cur.line(MAX_NUMBER_LINE, |_| invalid())? {
                None => Ok(None),
                Some(line) => parse_int(line).map(|_| Some(())).ok_or_else(invalid),
            }
        }
        b'$' => check_bulk(cur, limits, true),
        b'*' => {
            let Some(len) = cur.length("multibulk length")? else {
                return Ok(None);
            };
            let Some(len) = array_len(len, limits)? else {
                return Ok(Some(()));
            };
            if depth + 1 > limits.max_depth {
                return Err(ParseError::TooLarge {
                    what: "nesting depth",
                    len: depth + 1,
                    limit: limits.max_depth,
                });
            }
            for _ in 0..len {
                if check_value(cur, limits, depth + 1)?.is_none() {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        }
        other => Err(protocol(format!(
            "expected a RESP type byte, got '{}'",
            show(other)
        ))),
    }
}

fn build_value(cur: &mut Cursor, raw: &Bytes) -> Result<Frame, ParseError> {
    match complete(cur.next_byte())? {
        b'+' => Ok(Frame::Simple(build_line(cur, raw)?)),
        b'-' => Ok(Frame::Error(build_line(cur, raw)?)),
        b':' => {
            let line = complete(cur.line(MAX_NUMBER_LINE, |_| unreachable_error())?)?;
            Ok(Frame::Integer(
                parse_int(line).ok_or_else(unreachable_error)?,
            ))
        }
        b'$' => build_bulk(cur, raw),
        b'*' => {
            let len = complete(cur.length("multibulk length")?)?;
            if len < 0 {
                return Ok(Frame::NullArray);
            }
            // Safe to size from `len`: the check pass saw all elements in the buffer.
            let mut items = Vec::with_capacity(len as usize);
            for _ in 0..len {
                items.push(build_value(cur, raw)?);
            }
            Ok(Frame::Array(items))
        }
        _ => Err(unreachable_error()),
    }
}

fn build_line(cur: &mut Cursor, raw: &Bytes) -> Result<Bytes, ParseError> {
    let start = cur.pos;
    let line = complete(cur.line(usize::MAX, |_| unreachable_error())?)?;
    Ok(raw.slice(start..start + line.len()))
}

/// Redis' `string2ll` rules: optional `-`, digits, no leading zeros, no `-0`, no overflow.
fn parse_int(line: &[u8]) -> Option<i64> {
    let (negative, digits) = match line {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, line),
    };
    match digits {
        [] => return None,
        [b'0'] if negative => return None,
        [b'0', _, ..] => return None,
        _ => {}
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_sub(i64::from(digit - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// The build pass re-walks bytes the check pass accepted, so "incomplete" there is a bug, reported as
/// an error rather than a panic.
fn complete<T>(value: Option<T>) -> Result<T, ParseError> {
    value.ok_or_else(unreachable_error)
}

fn unreachable_error() -> ParseError {
    protocol("internal parser error (frame changed between passes)".into())
}

pub(super) fn protocol(msg: String) -> ParseError {
    ParseError::Protocol(msg)
}

/// A byte as Redis would print it with `%c`, escaped when not printable.
pub(super) fn show(byte: u8) -> String {
    std::ascii::escape_default(byte).to_string()
}
