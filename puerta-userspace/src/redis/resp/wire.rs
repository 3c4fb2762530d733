//! Small helpers for the proxy's own commands and replies: a command's wire bytes, error and status
//! frames with Redis' wording.

use bytes::{Bytes, BytesMut};

use crate::redis::resp::Frame;

/// The wire form of one command, ready to be written to a node (and re-sent on redirects).
pub fn command_bytes<A: AsRef<[u8]>>(args: &[A]) -> Bytes {
    let size: usize = args.iter().map(|a| a.as_ref().len() + 16).sum();
    let mut out = BytesMut::with_capacity(size + 16);
    super::encode_command(args, &mut out);
    out.freeze()
}

/// An error reply; `text` starts with the error code (`ERR`, `CROSSSLOT`, ...).
pub fn error(text: impl Into<String>) -> Frame {
    Frame::Error(Bytes::from(text.into()))
}

pub fn ok() -> Frame {
    Frame::Simple(Bytes::from_static(b"OK"))
}

pub fn simple(text: &'static str) -> Frame {
    Frame::Simple(Bytes::from_static(text.as_bytes()))
}

pub fn bulk(data: impl Into<Bytes>) -> Frame {
    Frame::Bulk(data.into())
}

pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// `ERR wrong number of arguments for 'get' command`, as Redis words it.
pub fn wrong_arity(name: &[u8]) -> Frame {
    error(format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(name).to_lowercase()
    ))
}

/// Lossy text of an argument for error messages.
pub fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_in_resp() {
        let bytes = command_bytes(&[&b"SET"[..], b"k", b""]);
        assert_eq!(&bytes[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let many: Vec<Vec<u8>> = (0..12).map(|i| vec![b'a'; i]).collect();
        let bytes = command_bytes(&many);
        assert!(bytes.starts_with(b"*12\r\n$0\r\n\r\n$1\r\na\r\n"));
    }
}
