//! Wire encoding. Simple strings and errors cannot carry CR or LF; they are replaced by spaces so that
//! an error message built from arbitrary text can never desynchronise the client's stream.

use bytes::{BufMut, Bytes, BytesMut};

use super::Frame;

pub(super) fn frame(frame: &Frame, out: &mut BytesMut) {
    out.reserve(frame_len(frame));
    write(frame, out);
}

/// Encodes a command (`args[0]` is its name) as an array of bulk strings, the form Redis servers read.
pub fn encode_command(args: &[Bytes], out: &mut BytesMut) {
    let len = header_len(args.len() as i64) + args.iter().map(|a| bulk_len(a)).sum::<usize>();
    out.reserve(len);
    header(b'*', args.len() as i64, out);
    for arg in args {
        bulk(arg, out);
    }
}

fn write(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Simple(text) => line(b'+', text, out),
        Frame::Error(text) => line(b'-', text, out),
        Frame::Integer(value) => header(b':', *value, out),
        Frame::Bulk(data) => bulk(data, out),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::Array(items) => {
            header(b'*', items.len() as i64, out);
            for item in items {
                write(item, out);
            }
        }
        Frame::NullArray => out.put_slice(b"*-1\r\n"),
    }
}

pub(super) fn frame_len(frame: &Frame) -> usize {
    match frame {
        Frame::Simple(text) | Frame::Error(text) => 1 + text.len() + 2,
        Frame::Integer(value) => header_len(*value),
        Frame::Bulk(data) => bulk_len(data),
        Frame::Null | Frame::NullArray => 5,
        Frame::Array(items) => {
            header_len(items.len() as i64) + items.iter().map(frame_len).sum::<usize>()
        }
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

/// `<kind><decimal>\r\n`
fn header(kind: u8, value: i64, out: &mut BytesMut) {
    let mut digits = [0u8; 20];
    let text = decimal(value, &mut digits);
    out.put_u8(kind);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

fn header_len(value: i64) -> usize {
    let mut digits = [0u8; 20];
    1 + decimal(value, &mut digits).len() + 2
}

/// Formats `value` right-aligned into `buf` (20 bytes fit `i64::MIN`) and returns the used tail.
fn decimal(value: i64, buf: &mut [u8; 20]) -> &[u8] {
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
