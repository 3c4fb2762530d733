//! Shared by the RESP targets: small limits so the size checks are reached, and the invariants every
//! parse must keep.

use bytes::BytesMut;
use puerta::redis::resp::{Frame, Limits, ParseError, Protocol};

pub const LIMITS: Limits = Limits {
    max_bulk_len: 4096,
    max_array_len: 256,
    max_depth: 8,
    max_inline_len: 1024,
};

type Parse = fn(&mut BytesMut, &Limits) -> Result<Option<Frame>, ParseError>;

/// Parses `data` fed in two pieces (split where its first byte says) and checks: an incomplete frame
/// leaves its bytes in the buffer (only skipped empty commands such as a blank inline line may be
/// consumed, from the front), a complete one consumes bytes, and a parsed frame re-encodes to a reply
/// that parses back to itself.
pub fn check(data: &[u8], parse: Parse) {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let mut buf = BytesMut::from(&data[..split]);
    let before = buf.clone();
    if let Ok(None) = parse(&mut buf, &LIMITS) {
        assert!(
            before.ends_with(&buf),
            "an incomplete frame must not consume its own bytes"
        );
    }
    buf.extend_from_slice(&data[split..]);
    for _ in 0..64 {
        let len = buf.len();
        match parse(&mut buf, &LIMITS) {
            Ok(Some(frame)) => {
                assert!(buf.len() < len, "a parsed frame must consume bytes");
                roundtrip(&frame);
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// What Puerta writes for a frame, to a RESP2 and to a RESP3 connection, must parse, completely, to a
/// frame that encodes to the same bytes. (Not necessarily to the same frame: the encoder replaces
/// CR/LF inside simple strings and errors, which the reply parser tolerates; the first fuzz run found
/// exactly that. And a RESP2 connection gets RESP3-only types in their RESP2 shape.)
fn roundtrip(frame: &Frame) {
    for protocol in [Protocol::Resp2, Protocol::Resp3] {
        let mut out = BytesMut::new();
        frame.encode_in(protocol, &mut out);
        assert_eq!(out.len(), frame.encoded_len_in(protocol));
        let first = out.clone();
        let loose = Limits::default();
        let back = puerta::redis::resp::parse_reply(&mut out, &loose)
            .expect("an encoded frame parses")
            .expect("an encoded frame is complete");
        assert!(out.is_empty(), "an encoded frame is exactly one frame");
        let mut again = BytesMut::new();
        back.encode_in(protocol, &mut again);
        assert_eq!(again, first, "encoding is stable");
    }
}
