//! A reply on its way to a client: the bytes a node sent, or a frame the proxy built.

use bytes::BytesMut;

use crate::redis::client::output::Charged;
use crate::redis::resp::{Frame, Protocol};

pub enum Answer {
    /// A node's reply, passed through unchanged: it is already in the client's protocol, because a
    /// client's commands go over pooled connections of its protocol.
    Node(Charged),
    /// A merge, a local answer, or an error of the proxy's own.
    Built(Frame),
}

impl Answer {
    /// The reply as a frame, for merges that must look inside.
    pub fn into_frame(self) -> Frame {
        match self {
            Answer::Node(raw) => raw.frame(),
            Answer::Built(frame) => frame,
        }
    }

    /// Appends the wire form for a client speaking `protocol`.
    pub fn encode_in(&self, protocol: Protocol, out: &mut BytesMut) {
        match self {
            Answer::Node(raw) => out.extend_from_slice(raw.bytes()),
            Answer::Built(frame) => frame.encode_in(protocol, out),
        }
    }

    /// The text of an error reply (`-` only: a blob error is rare enough to count as `OTHER`).
    pub fn error_text(&self) -> Option<&[u8]> {
        match self {
            Answer::Node(raw) => crate::redis::resp::error_text(raw.bytes()),
            Answer::Built(Frame::Error(text) | Frame::BlobError(text)) => Some(text),
            Answer::Built(_) => None,
        }
    }
}

impl From<Frame> for Answer {
    fn from(frame: Frame) -> Answer {
        Answer::Built(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn node(wire: &'static [u8]) -> Answer {
        Answer::Node(Charged::free(Bytes::from_static(wire)))
    }

    #[test]
    fn node_bytes_pass_through_in_either_protocol() {
        let mut out = BytesMut::new();
        node(b"%1\r\n+a\r\n:1\r\n").encode_in(Protocol::Resp3, &mut out);
        node(b"$1\r\nx\r\n").encode_in(Protocol::Resp2, &mut out);
        assert_eq!(&out[..], b"%1\r\n+a\r\n:1\r\n$1\r\nx\r\n");
        assert_eq!(node(b":7\r\n").into_frame(), Frame::Integer(7));
    }

    #[test]
    fn error_text_of_node_and_built_errors() {
        assert_eq!(
            node(b"-MOVED 1 a:1\r\n").error_text(),
            Some(&b"MOVED 1 a:1"[..])
        );
        assert_eq!(node(b"+OK\r\n").error_text(), None);
        let built = Answer::from(Frame::error("ERR x"));
        assert_eq!(built.error_text(), Some(&b"ERR x"[..]));
    }
}
