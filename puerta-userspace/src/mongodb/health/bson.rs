//! Just enough BSON to read a `hello` reply: walk the top-level elements of a document, checking every
//! length against the bytes actually there. Nothing here trusts the peer: a bad length is an error.
//!
//! Kept rather than the `bson` crate (measured 2026-12-06): `bson` 3.1 would add 19 crates to the
//! daemon's tree (`time`, `uuid`, `bitvec`, `ahash`, …) to read six top-level fields, and decodes
//! into owned documents; this reader borrows from the reply, needs nothing, and is fuzzed
//! (`fuzz/fuzz_targets/hello_reply.rs`).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BsonError {
    #[error("document truncated at byte {0}")]
    Truncated(usize),
    #[error("document length {declared} does not match the {actual} bytes given")]
    Length { declared: i64, actual: usize },
    #[error("document does not end with a 0 byte")]
    Unterminated,
    #[error("field name or string is not valid UTF-8")]
    Utf8,
    #[error("unknown element type 0x{0:02x}")]
    UnknownType(u8),
}

/// A top-level value; only the types a `hello` reply needs are decoded, the rest are skipped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Double(f64),
    String(&'a str),
    Bool(bool),
    Int32(i32),
    Int64(i64),
    /// Any other type (embedded documents, arrays, ids, dates, ...), by type byte.
    Other(u8),
}

/// The top-level `(name, value)` pairs of `doc`, which must be exactly one BSON document.
pub fn elements(doc: &[u8]) -> Result<Vec<(&str, Value<'_>)>, BsonError> {
    let declared = read_i32(doc, 0)?;
    if declared < 5 || declared as usize != doc.len() {
        return Err(BsonError::Length {
            declared: declared.into(),
            actual: doc.len(),
        });
    }
    if doc[doc.len() - 1] != 0 {
        return Err(BsonError::Unterminated);
    }
    let end = doc.len() - 1;
    let mut pos = 4;
    let mut out = Vec::new();
    while pos < end {
        let kind = doc[pos];
        let (name, after_name) = read_cstr(doc, pos + 1, end)?;
        let (value, next) = read_value(doc, kind, after_name, end)?;
        out.push((name, value));
        pos = next;
    }
    Ok(out)
}

/// Total size of the document that starts at `pos` (its own length prefix), checked to fit in `buf`.
pub fn document_len(buf: &[u8], pos: usize) -> Result<usize, BsonError> {
    let declared = read_i32(buf, pos)?;
    let len = usize::try_from(declared).map_err(|_| BsonError::Length {
        declared: declared.into(),
        actual: buf.len() - pos,
    })?;
    if len < 5 || pos + len > buf.len() {
        return Err(BsonError::Length {
            declared: declared.into(),
            actual: buf.len() - pos,
        });
    }
    Ok(len)
}

fn read_value(
    doc: &[u8],
    kind: u8,
    pos: usize,
    end: usize,
) -> Result<(Value<'_>, usize), BsonError> {
    let fixed = |n: usize| -> Result<usize, BsonError> { take(pos, n, end) };
    Ok(match kind {
        0x01 => (
            Value::Double(f64::from_le_bytes(array(doc, pos, end)?)),
            fixed(8)?,
        ),
        0x02 => {
            let (s, next) = read_string(doc, pos, end)?;
            (Value::String(s), next)
        }
        0x08 => (
            Value::Bool(*doc.get(pos).ok_or(BsonError::Truncated(pos))? != 0),
            fixed(1)?,
        ),
        0x10 => (
            Value::Int32(i32::from_le_bytes(array(doc, pos, end)?)),
            fixed(4)?,
        ),
        0x12 => (
            Value::Int64(i64::from_le_bytes(array(doc, pos, end)?)),
            fixed(8)?,
        ),
        0x03 | 0x04 | 0x0F => {
            let len = document_len(&doc[..end], pos)?;
            (Value::Other(kind), pos + len)
        }
        0x05 => {
            let len = length_prefix(doc, pos, end)?;
            (Value::Other(kind), take(pos, 5 + len, end)?)
        }
        0x06 | 0x0A | 0x7F | 0xFF => (Value::Other(kind), pos),
        0x07 => (Value::Other(kind), fixed(12)?),
        0x09 | 0x11 => (Value::Other(kind), fixed(8)?),
        0x13 => (Value::Other(kind), fixed(16)?),
        0x0B => {
            let (_, after_pattern) = read_cstr(doc, pos, end)?;
            let (_, next) = read_cstr(doc, after_pattern, end)?;
            (Value::Other(kind), next)
        }
        0x0C => {
            let (_, next) = read_string(doc, pos, end)?;
            (Value::Other(kind), take(next, 12, end)?)
        }
        0x0D | 0x0E => {
            let (_, next) = read_string(doc, pos, end)?;
            (Value::Other(kind), next)
        }
        other => return Err(BsonError::UnknownType(other)),
    })
}

/// `pos + n`, if that is still inside the document body.
fn take(pos: usize, n: usize, end: usize) -> Result<usize, BsonError> {
    match pos.checked_add(n) {
        Some(next) if next <= end => Ok(next),
        _ => Err(BsonError::Truncated(pos)),
    }
}

fn array<const N: usize>(doc: &[u8], pos: usize, end: usize) -> Result<[u8; N], BsonError> {
    let next = take(pos, N, end)?;
    let mut out = [0; N];
    out.copy_from_slice(&doc[pos..next]);
    Ok(out)
}

fn read_i32(buf: &[u8], pos: usize) -> Result<i32, BsonError> {
    array(buf, pos, buf.len()).map(i32::from_le_bytes)
}

/// A non-negative i32 length prefix.
fn length_prefix(doc: &[u8], pos: usize, end: usize) -> Result<usize, BsonError> {
    let raw = i32::from_le_bytes(array(doc, pos, end)?);
    usize::try_from(raw).map_err(|_| BsonError::Length {
        declared: raw.into(),
        actual: end - pos,
    })
}

fn read_cstr(doc: &[u8], pos: usize, end: usize) -> Result<(&str, usize), BsonError> {
    let body = doc.get(pos..end).ok_or(BsonError::Truncated(pos))?;
    let nul = body
        .iter()
        .position(|b| *b == 0)
        .ok_or(BsonError::Truncated(pos))?;
    let text = std::str::from_utf8(&body[..nul]).map_err(|_| BsonError::Utf8)?;
    Ok((text, pos + nul + 1))
}

/// BSON string: i32 length including the trailing 0, the bytes, the 0.
fn read_string(doc: &[u8], pos: usize, end: usize) -> Result<(&str, usize), BsonError> {
    let len = length_prefix(doc, pos, end)?;
    let start = pos + 4;
    let next = take(start, len, end)?;
    if len == 0 || doc[next - 1] != 0 {
        return Err(BsonError::Unterminated);
    }
    let text = std::str::from_utf8(&doc[start..next - 1]).map_err(|_| BsonError::Utf8)?;
    Ok((text, next))
}

/// Appends a BSON document built from `(name, value)` pairs; only the types Puerta sends.
pub fn encode(fields: &[(&str, Value<'_>)]) -> Vec<u8> {
    let mut out = vec![0; 4];
    for (name, value) in fields {
        let kind = match value {
            Value::Double(_) => 0x01,
            Value::String(_) => 0x02,
            Value::Bool(_) => 0x08,
            Value::Int32(_) => 0x10,
            Value::Int64(_) => 0x12,
            Value::Other(k) => *k,
        };
        out.push(kind);
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        match value {
            Value::Double(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::String(s) => {
                out.extend_from_slice(&(s.len() as i32 + 1).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
            Value::Bool(b) => out.push(u8::from(*b)),
            Value::Int32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Int64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Other(_) => {}
        }
    }
    out.push(0);
    let len = out.len() as i32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_types_it_knows() {
        let fields = [
            ("ok", Value::Double(1.0)),
            ("msg", Value::String("isdbgrid")),
            ("w", Value::Bool(true)),
            ("n", Value::Int32(-3)),
            ("big", Value::Int64(1 << 40)),
            ("nil", Value::Other(0x0A)),
        ];
        let doc = encode(&fields);
        assert_eq!(elements(&doc).unwrap(), fields.to_vec());
    }

    #[test]
    fn skips_nested_documents() {
        // {a: {b: 1}, c: "x"}
        let inner = encode(&[("b", Value::Int32(1))]);
        let mut doc = vec![0, 0, 0, 0, 0x03, b'a', 0];
        doc.extend_from_slice(&inner);
        doc.extend_from_slice(&[0x02, b'c', 0, 2, 0, 0, 0, b'x', 0, 0]);
        let len = doc.len() as i32;
        doc[..4].copy_from_slice(&len.to_le_bytes());
        let els = elements(&doc).unwrap();
        assert_eq!(els, vec![("a", Value::Other(3)), ("c", Value::String("x"))]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let doc = encode(&[
            ("ok", Value::Double(1.0)),
            ("msg", Value::String("isdbgrid")),
        ]);
        for cut in 0..doc.len() {
            assert!(elements(&doc[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn lying_lengths_are_errors() {
        let mut doc = encode(&[("msg", Value::String("abc"))]);
        // String length pointing past the end, negative, and zero.
        for bad in [100i32, -1, 0] {
            doc[9..13].copy_from_slice(&bad.to_le_bytes());
            assert!(elements(&doc).is_err(), "string length {bad}");
        }
        let mut doc = encode(&[("ok", Value::Int32(1))]);
        doc[0] = 200;
        assert!(elements(&doc).is_err());
        let mut doc = encode(&[("ok", Value::Int32(1))]);
        doc[4] = 0x42;
        assert_eq!(elements(&doc), Err(BsonError::UnknownType(0x42)));
    }
}
