//! Wire encoding. Simple strings and errors cannot carry CR or LF; they are replaced by spaces so that
//! an error message built from arbitrary text can never desynchronise the client's stream.
//!
//! For a RESP2 connection the RESP3-only types take the shape Redis gives them there: a map is a
//! flat key/value array, a set or push an array, a double / big number / verbatim string a bulk string,
//! a boolean the integer 1 or 0, a blob error a simple error; attributes are dropped.

use bytes::{BufMut, BytesMut};

use super::{Frame, Protocol};

pub(super) fn frame(frame: &Frame, protocol: Protocol, out: &mut BytesMut) {
    out.reserve(frame_len(frame, protocol));
    write(frame, protocol, out);
}

/// Encodes a command (`args[0]` is its name) as an array of bulk strings, the form Redis servers read.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    let len =
        header_len(args.len() as i64) + args.iter().map(|a| bulk_len(a.as_ref())).sum::<usize>();
    out.reserve(len);
    header(b'*', args.len() as i64, out);
    for arg in args {
        bulk(arg.as_ref(), out);
    }
}

/// `$<len>\r\n<data>\r\n`: one argument of a command being put together.
pub fn encode_bulk(data: &[u8], out: &mut BytesMut) {
    bulk(data, out);
}

/// `*<len>\r\n`: an array's header, its elements to follow as they are.
pub fn encode_array_header(len: usize, out: &mut BytesMut) {
    header(b'*', len as i64, out);
}

fn write(frame: &Frame, protocol: Protocol, out: &mut BytesMut) {
    let resp3 = protocol == Protocol::Resp3;
    match frame {
        Frame::Simple(text) => line(b'+', text, out),
        Frame::Error(text) => line(b'-', text, out),
        Frame::Integer(value) => header(b':', *value, out),
        Frame::Bulk(data) => bulk(data, out),
        Frame::Null | Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::NullArray => out.put_slice(b"*-1\r\n"),
        Frame::Array(items) => aggregate(b'*', items, protocol, out),
        Frame::Set(items) => aggregate(if resp3 { b'~' } else { b'*' }, items, protocol, out),
        Frame::Push(items) => aggregate(if resp3 { b'>' } else { b'*' }, items, protocol, out),
        Frame::Map(pairs) if resp3 => pairs_of(b'%', pairs, protocol, out),
        Frame::Map(pairs) => {
            header(b'*', 2 * pairs.len() as i64, out);
            write_pairs(pairs, protocol, out);
        }
        Frame::Double(text) if resp3 => line(b',', text, out),
        Frame::BigNumber(text) if resp3 => line(b'(', text, out),
        Frame::Double(text) | Frame::BigNumber(text) => bulk(text, out),
        Frame::Verbatim { format, text } if resp3 => verbatim(format, text, out),
        Frame::Verbatim { text, .. } => bulk(text, out),
        Frame::Boolean(value) if resp3 => out.put_slice(if *value { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Boolean(value) => header(b':', i64::from(*value), out),
        Frame::BlobError(data) if resp3 => {
            header(b'!', data.len() as i64, out);
            out.put_slice(data);
            out.put_slice(b"\r\n");
        }
        Frame::BlobError(data) => line(b'-', data, out),
        Frame::Attribute(pairs, value) => {
            if resp3 {
                pairs_of(b'|', pairs, protocol, out);
            }
            write(value, protocol, out);
        }
    }
}

fn aggregate(kind: u8, items: &[Frame], protocol: Protocol, out: &mut BytesMut) {
    header(kind, items.len() as i64, out);
    for item in items {
        write(item, protocol, out);
    }
}

fn pairs_of(kind: u8, pairs: &[(Frame, Frame)], protocol: Protocol, out: &mut BytesMut) {
    header(kind, pairs.len() as i64, out);
    write_pairs(pairs, protocol, out);
}

fn write_pairs(pairs: &[(Frame, Frame)], protocol: Protocol, out: &mut BytesMut) {
    for (key, value) in pairs {
        write(key, protocol, out);
        write(value, protocol, out);
    }
}

fn verbatim(format: &[u8; 3], text: &[u8], out: &mut BytesMut) {
    header(b'=', text.len() as i64 + 4, out);
    out.put_slice(format);
    out.put_u8(b':');
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

pub(super) fn frame_len(frame: &Frame, protocol: Protocol) -> usize {
    let resp3 = protocol == Protocol::Resp3;
    let items_len = |items: &[Frame]| items.iter().map(|i| frame_len(i, protocol)).sum::<usize>();
    let pairs_len = |pairs: &[(Frame, Frame)]| {
        pairs
            .iter()
            .map(|(k, v)| frame_len(k, protocol) + frame_len(v, protocol))
            .sum::<usize>()
    };
    match frame {
        Frame::Simple(text) | Frame::Error(text) => 1 + text.len() + 2,
        Frame::Integer(value) => header_len(*value),
        Frame::Bulk(data) => bulk_len(data),
        Frame::Null | Frame::NullArray if resp3 => 3,
        Frame::Null | Frame::NullArray => 5,
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            header_len(items.len() as i64) + items_len(items)
        }
        Frame::Map(pairs) if resp3 => header_len(pairs.len() as i64) + pairs_len(pairs),
        Frame::Map(pairs) => header_len(2 * pairs.len() as i64) + pairs_len(pairs),
        Frame::Double(text) | Frame::BigNumber(text) if resp3 => 1 + text.len() + 2,
        Frame::Double(text) | Frame::BigNumber(text) => bulk_len(text),
        Frame::Verbatim { text, .. } if resp3 => header_len(text.len() as i64 + 4) + text.len() + 6,
        Frame::Verbatim { text, .. } => bulk_len(text),
        // `#t\r\n` or `:1\r\n`
        Frame::Boolean(_) => 4,
        Frame::BlobError(data) if resp3 => bulk_len(data),
        Frame::BlobError(data) => 1 + data.len() + 2,
        Frame::Attribute(pairs, value) if resp3 => {
            header_len(pairs.len() as i64) + pairs_len(pairs) + frame_len(value, protocol)
        }
        Frame::Attribute(_, value) => frame_len(value, protocol),
    }
}

fn line(kind: u8, text: &[u8], out: &mut BytesMut) {
    out.put_u8(kind);
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.put_slice(text);
    }
    out.put_slice(b"\r\n");
}

fn bulk(data: &[u8], out: &mut BytesMut) {
    header(b'$', data.len() as i64, out);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

fn bulk_len(data: &[u8]) -> usize {
    header_len(data.len() as i64) + data.len() + 2
}

/// `<kind><decimal>\r\n`, put together on the stack and appended in one copy.
fn header(kind: u8, value: i64, out: &mut BytesMut) {
    let mut digits = [0u8; 20];
    let text = decimal(value, &mut digits);
    let mut line = [0u8; 23];
    line[0] = kind;
    line[1..=text.len()].copy_from_slice(text);
    line[text.len() + 1..text.len() + 3].copy_from_slice(b"\r\n");
    out.extend_from_slice(&line[..text.len() + 3]);
}

fn header_len(value: i64) -> usize {
    let mut digits = [0u8; 20];
    1 + decimal(value, &mut digits).len() + 2
}

/// Formats `value` right-aligned into `buf` (20 bytes fit `i64::MIN`) and returns the used tail.
/// Lengths and counts are mostly below 100: those take no division.
fn decimal(value: i64, buf: &mut [u8; 20]) -> &[u8] {
    match value {
        0..=9 => {
            buf[19] = b'0' + value as u8;
            return &buf[19..];
        }
        10..=99 => {
            buf[18] = b'0' + (value / 10) as u8;
            buf[19] = b'0' + (value % 10) as u8;
            return &buf[18..];
        }
        _ => {}
    }
    let mut magnitude = value.unsigned_abs();
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        start -= 1;
        buf[start] = b'-';
    }
    &buf[start..]
}
