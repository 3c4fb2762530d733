//! Second pass: walk a frame the check pass accepted, now frozen into `Bytes`, and slice its payloads
//! out of it. "Incomplete" here would be a bug; it is reported as an error, never a panic.

use bytes::Bytes;

use super::cursor::{protocol, Cursor};
use super::{Frame, ParseError};

/// The arguments of a multibulk command of `count` bulk strings.
pub(super) fn command_args(raw: &Bytes, count: usize) -> Result<Vec<Bytes>, ParseError> {
    let mut cur = Cursor::at(raw, 1);
    complete(cur.number("multibulk length")?)?;
    // Safe to size from `count`: the check pass saw all `count` elements in the buffer.
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        complete(cur.next_byte())?;
        match bulk(&mut cur, raw)? {
            Frame::Bulk(arg) => args.push(arg),
            _ => return Err(changed()),
        }
    }
    Ok(args)
}

/// Any reply frame.
pub(super) fn reply(raw: &Bytes) -> Result<Frame, ParseError> {
    value(&mut Cursor::at(raw, 0), raw, 0)
}

/// How deep a frame may nest to be built. The check pass bounds nesting by `Limits::max_depth`, which
/// for node replies is far deeper than a thread's stack allows this recursion: a reply passed through
/// untouched may nest that deep, one the proxy must look inside may not.
pub const MAX_BUILD_DEPTH: usize = 256;

fn value(cur: &mut Cursor, raw: &Bytes, depth: usize) -> Result<Frame, ParseError> {
    // Sizing vectors from declared lengths is safe: the check pass saw every element in the buffer.
    if depth >= MAX_BUILD_DEPTH {
        return Err(ParseError::TooLarge {
            what: "nesting depth of a reply the proxy must read",
            len: depth + 1,
            limit: MAX_BUILD_DEPTH,
        });
    }
    let depth = depth + 1;
    match complete(cur.next_byte())? {
        b'+' => Ok(Frame::Simple(line(cur, raw)?)),
        b'-' => Ok(Frame::Error(line(cur, raw)?)),
        b':' => Ok(Frame::Integer(complete(cur.number("integer")?)?)),
        b'$' => bulk(cur, raw),
        b'!' => Ok(Frame::BlobError(payload(cur, raw)?)),
        b'=' => {
            let data = payload(cur, raw)?;
            let format = data
                .get(..3)
                .and_then(|f| <[u8; 3]>::try_from(f).ok())
                .ok_or_else(changed)?;
            Ok(Frame::Verbatim {
                format,
                text: data.slice(4..),
            })
        }
        b'_' => line(cur, raw).map(|_| Frame::Null),
        b'#' => Ok(Frame::Boolean(&line(cur, raw)?[..] == b"t")),
        b',' => Ok(Frame::Double(line(cur, raw)?)),
        b'(' => Ok(Frame::BigNumber(line(cur, raw)?)),
        b'*' => {
            let len = complete(cur.number("multibulk length")?)?;
            if len < 0 {
                return Ok(Frame::NullArray);
            }
            Ok(Frame::Array(items(cur, raw, len, depth)?))
        }
        b'~' => Ok(Frame::Set(counted_items(cur, raw, depth)?)),
        b'>' => Ok(Frame::Push(counted_items(cur, raw, depth)?)),
        b'%' => Ok(Frame::Map(pairs(cur, raw, depth)?)),
        b'|' => {
            let attributes = pairs(cur, raw, depth)?;
            Ok(Frame::Attribute(
                attributes,
                Box::new(value(cur, raw, depth)?),
            ))
        }
        _ => Err(changed()),
    }
}

fn length(cur: &mut Cursor) -> Result<i64, ParseError> {
    complete(cur.number("aggregate length")?)
}

/// A set's or push's length and elements.
fn counted_items(cur: &mut Cursor, raw: &Bytes, depth: usize) -> Result<Vec<Frame>, ParseError> {
    let len = length(cur)?;
    items(cur, raw, len, depth)
}

fn items(cur: &mut Cursor, raw: &Bytes, len: i64, depth: usize) -> Result<Vec<Frame>, ParseError> {
    let mut items = Vec::with_capacity(len.max(0) as usize);
    for _ in 0..len {
        items.push(value(cur, raw, depth)?);
    }
    Ok(items)
}

/// A map's or attribute's length and key/value pairs.
fn pairs(cur: &mut Cursor, raw: &Bytes, depth: usize) -> Result<Vec<(Frame, Frame)>, ParseError> {
    let len = length(cur)?;
    let mut pairs = Vec::with_capacity(len.max(0) as usize);
    for _ in 0..len {
        let key = value(cur, raw, depth)?;
        pairs.push((key, value(cur, raw, depth)?));
    }
    Ok(pairs)
}

/// The payload of a `!` or `=` frame (never null).
fn payload(cur: &mut Cursor, raw: &Bytes) -> Result<Bytes, ParseError> {
    let len = complete(cur.number("bulk length")?)?;
    let len = usize::try_from(len).map_err(|_| changed())?;
    let range = complete(cur.payload(len)?)?;
    Ok(raw.slice(range))
}

fn bulk(cur: &mut Cursor, raw: &Bytes) -> Result<Frame, ParseError> {
    let len = complete(cur.number("bulk length")?)?;
    if len < 0 {
        return Ok(Frame::Null);
    }
    let range = complete(cur.payload(len as usize)?)?;
    Ok(Frame::Bulk(raw.slice(range)))
}

fn line(cur: &mut Cursor, raw: &Bytes) -> Result<Bytes, ParseError> {
    let start = cur.pos;
    let text = complete(cur.line(usize::MAX, |_| changed())?)?;
    Ok(raw.slice(start..start + text.len()))
}

fn complete<T>(value: Option<T>) -> Result<T, ParseError> {
    value.ok_or_else(changed)
}

fn changed() -> ParseError {
    protocol("internal parser error (frame changed between passes)".into())
}
