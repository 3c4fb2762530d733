//! RESP3: every type parsed from the wire, re-encoded byte for byte, and written the way Redis writes
//! it to a RESP2 connection.

use super::*;

fn reply(input: &[u8]) -> Result<Option<Frame>, ParseError> {
    parse_reply(&mut BytesMut::from(input), &Limits::default())
}

fn wire(frame: &Frame, protocol: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode_in(protocol, &mut out);
    assert_eq!(out.len(), frame.encoded_len_in(protocol), "{frame:?}");
    out.to_vec()
}

fn b(text: &'static str) -> Frame {
    Frame::bulk(text)
}

fn bytes(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

/// A map like HELLO 3's, with every other RESP3 type inside a set.
const EVERY_TYPE: &[u8] = b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n+proto\r\n:3\r\n~9\r\n_\r\n#t\r\n#f\r\n,3.25\r\n,-inf\r\n(-12345678901234567890123\r\n=15\r\ntxt:Some string\r\n!9\r\nERR \r\nbad\r\n>2\r\n+a\r\n:1\r\n*0\r\n";

fn every_type() -> Frame {
    Frame::Map(vec![
        (b("server"), b("redis")),
        (Frame::simple("proto"), Frame::Integer(3)),
        (
            Frame::Set(vec![
                Frame::Null,
                Frame::Boolean(true),
                Frame::Boolean(false),
                Frame::Double(bytes("3.25")),
                Frame::Double(bytes("-inf")),
                Frame::BigNumber(bytes("-12345678901234567890123")),
                Frame::Verbatim {
                    format: *b"txt",
                    text: bytes("Some string"),
                },
                Frame::BlobError(bytes("ERR \r\nbad")),
                Frame::Push(vec![Frame::simple("a"), Frame::Integer(1)]),
            ]),
            Frame::Array(vec![]),
        ),
    ])
}

#[test]
fn every_resp3_type_parses_and_reencodes_exactly() {
    let parsed = reply(EVERY_TYPE).unwrap().unwrap();
    assert_eq!(parsed, every_type());
    assert_eq!(wire(&parsed, Protocol::Resp3), EVERY_TYPE);
}

#[test]
fn resp2_connections_get_the_shapes_redis_gives_them() {
    let resp2 = wire(&every_type(), Protocol::Resp2);
    let expected: &[u8] = b"*6\r\n$6\r\nserver\r\n$5\r\nredis\r\n+proto\r\n:3\r\n*9\r\n$-1\r\n:1\r\n:0\r\n$4\r\n3.25\r\n$4\r\n-inf\r\n$24\r\n-12345678901234567890123\r\n$11\r\nSome string\r\n-ERR   bad\r\n*2\r\n+a\r\n:1\r\n*0\r\n";
    assert_eq!(
        String::from_utf8_lossy(&resp2),
        String::from_utf8_lossy(expected)
    );
    assert_eq!(wire(&Frame::NullArray, Protocol::Resp2), b"*-1\r\n");
    assert_eq!(wire(&Frame::NullArray, Protocol::Resp3), b"_\r\n");
}

#[test]
fn attributes_travel_with_the_value_they_annotate() {
    let input = b"|1\r\n+ttl\r\n:3600\r\n*2\r\n:1\r\n:2\r\n:7\r\n";
    let mut buf = BytesMut::from(&input[..]);
    let frame = parse_reply(&mut buf, &Limits::default()).unwrap().unwrap();
    assert_eq!(
        frame,
        Frame::Attribute(
            vec![(Frame::simple("ttl"), Frame::Integer(3600))],
            Box::new(Frame::Array(vec![Frame::Integer(1), Frame::Integer(2)]))
        )
    );
    assert_eq!(&buf[..], b":7\r\n", "the next reply is untouched");
    assert_eq!(wire(&frame, Protocol::Resp3), &input[..input.len() - 4]);
    assert_eq!(wire(&frame, Protocol::Resp2), b"*2\r\n:1\r\n:2\r\n");
    // An attribute with no pairs still waits for its value.
    assert_eq!(reply(b"|0\r\n"), Ok(None));
    assert_eq!(
        reply(b"|0\r\n#t\r\n"),
        Ok(Some(Frame::Attribute(
            vec![],
            Box::new(Frame::Boolean(true))
        )))
    );
}

#[test]
fn empty_aggregates_are_complete() {
    assert_eq!(reply(b"%0\r\n"), Ok(Some(Frame::Map(vec![]))));
    assert_eq!(reply(b"~0\r\n"), Ok(Some(Frame::Set(vec![]))));
    assert_eq!(reply(b">0\r\n"), Ok(Some(Frame::Push(vec![]))));
}

#[test]
fn every_prefix_of_a_resp3_frame_is_incomplete() {
    for cut in 0..EVERY_TYPE.len() {
        let mut buf = BytesMut::from(&EVERY_TYPE[..cut]);
        assert_eq!(
            parse_reply(&mut buf, &Limits::default()),
            Ok(None),
            "cut {cut}"
        );
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn malformed_resp3_scalars_are_protocol_errors() {
    let bad = |input: &[u8]| reply(input).unwrap_err().to_string();
    assert_eq!(bad(b"_x\r\n"), "Protocol error: invalid null");
    assert_eq!(bad(b"#x\r\n"), "Protocol error: invalid boolean");
    assert_eq!(bad(b"#\r\n"), "Protocol error: invalid boolean");
    assert_eq!(bad(b",\r\n"), "Protocol error: invalid double");
    assert_eq!(bad(b",1.5x\r\n"), "Protocol error: invalid double");
    assert_eq!(bad(b"(12a\r\n"), "Protocol error: invalid big number");
    assert_eq!(bad(b"(-\r\n"), "Protocol error: invalid big number");
    assert_eq!(
        bad(b"=3\r\ntxt\r\n"),
        "Protocol error: invalid verbatim string"
    );
    assert_eq!(
        bad(b"=4\r\ntxtx\r\n"),
        "Protocol error: invalid verbatim string"
    );
    assert_eq!(bad(b"!-1\r\n"), "Protocol error: invalid bulk length");
    assert_eq!(bad(b"%-1\r\n"), "Protocol error: invalid aggregate length");
    assert_eq!(bad(b"~x\r\n"), "Protocol error: invalid aggregate length");
    assert_eq!(bad(b"$?\r\n"), "Protocol error: invalid bulk length");
    assert_eq!(reply(b",nan\r\n"), Ok(Some(Frame::Double(bytes("nan")))));
    assert_eq!(reply(b",1e-7\r\n"), Ok(Some(Frame::Double(bytes("1e-7")))));
    assert_eq!(
        reply(b"=4\r\nmkd:\r\n").unwrap(),
        Some(Frame::Verbatim {
            format: *b"mkd",
            text: Bytes::new()
        })
    );
}

#[test]
fn resp3_limits_are_checked_before_waiting() {
    let limits = Limits {
        max_bulk_len: 10,
        max_array_len: 3,
        max_depth: 2,
        max_inline_len: 8,
    };
    let parse = |input: &[u8]| parse_reply(&mut BytesMut::from(input), &limits);
    let too_large = |what: &'static str, len, limit| Err(ParseError::TooLarge { what, len, limit });
    assert_eq!(parse(b"%4\r\n"), too_large("aggregate length", 4, 3));
    assert_eq!(parse(b"~4\r\n"), too_large("aggregate length", 4, 3));
    assert_eq!(parse(b">4\r\n"), too_large("aggregate length", 4, 3));
    assert_eq!(parse(b"|4\r\n"), too_large("aggregate length", 4, 3));
    assert_eq!(parse(b"!11\r\n"), too_large("bulk length", 11, 10));
    assert_eq!(parse(b"=11\r\n"), too_large("bulk length", 11, 10));
    assert_eq!(
        parse(b"%1\r\n~1\r\n>1\r\n"),
        too_large("nesting depth", 3, 2)
    );
    assert!(matches!(
        parse(b",123456789"),
        Err(ParseError::TooLarge {
            what: "simple string",
            ..
        })
    ));
    assert!(parse(b"%1\r\n~1\r\n:1\r\n:2\r\n").unwrap().is_some());
}

#[test]
fn the_decoder_resumes_resp3_frames() {
    let mut decoder = Decoder::new(Limits::default());
    let mut input = BytesMut::new();
    let mut parsed = Vec::new();
    for chunk in EVERY_TYPE.chunks(3) {
        input.extend_from_slice(chunk);
        if let Some(frame) = decoder.reply(&mut input).unwrap() {
            parsed.push(frame);
        }
    }
    assert_eq!(parsed, vec![every_type()]);
}
