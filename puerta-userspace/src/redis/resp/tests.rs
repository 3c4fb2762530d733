use super::*;

fn buf(bytes: &[u8]) -> BytesMut {
    BytesMut::from(bytes)
}

fn command(input: &[u8]) -> Result<Option<Frame>, ParseError> {
    parse_command(&mut buf(input), &Limits::default())
}

fn reply(input: &[u8]) -> Result<Option<Frame>, ParseError> {
    parse_reply(&mut buf(input), &Limits::default())
}

fn args(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(|s| Frame::bulk(s.to_string())).collect())
}

fn protocol_error(input: &[u8]) -> String {
    match command(input) {
        Err(e) => e.to_string(),
        other => panic!("expected an error for {input:?}, got {other:?}"),
    }
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.to_vec()
}

#[test]
fn multibulk_command_is_sliced_from_the_buffer() {
    let mut input = buf(b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n$4\r\nPING\r\n");
    let first = parse_command(&mut input, &Limits::default()).unwrap();
    assert_eq!(first, Some(args(&["GET", "key"])));
    assert_eq!(&input[..], b"*1\r\n$4\r\nPING\r\n");
    let second = parse_command(&mut input, &Limits::default()).unwrap();
    assert_eq!(second, Some(args(&["PING"])));
    assert!(input.is_empty());
    assert_eq!(parse_command(&mut input, &Limits::default()), Ok(None));
}

#[test]
fn incomplete_command_consumes_nothing() {
    let whole = b"*2\r\n$3\r\nSET\r\n$5\r\nhello\r\n";
    for cut in 0..whole.len() {
        let mut input = buf(&whole[..cut]);
        assert_eq!(
            parse_command(&mut input, &Limits::default()),
            Ok(None),
            "cut {cut}"
        );
        assert_eq!(input.len(), cut);
    }
}

#[test]
fn empty_commands_are_skipped_like_redis() {
    assert_eq!(
        command(b"*0\r\n*-1\r\n*-10\r\n\r\n  \r\n*1\r\n$4\r\nPING\r\n"),
        Ok(Some(args(&["PING"])))
    );
    let mut only_empty = buf(b"*0\r\n\r\n");
    assert_eq!(parse_command(&mut only_empty, &Limits::default()), Ok(None));
    assert!(only_empty.is_empty());
}

#[test]
fn inline_commands_split_like_redis() {
    assert_eq!(command(b"PING\r\n"), Ok(Some(args(&["PING"]))));
    assert_eq!(command(b"set  a\tb\n"), Ok(Some(args(&["set", "a", "b"]))));
    assert_eq!(
        command(b"SET k \"a b\\n\\x41\\\"\" 'it\\'s' x\"y z\"\r\n"),
        Ok(Some(args(&["SET", "k", "a b\nA\"", "it's", "xy z"])))
    );
    assert_eq!(command(b"PING"), Ok(None));
    assert_eq!(
        command(b"GET caf\xc3\xa9\r\n"),
        Ok(Some(args(&["GET", "café"])))
    );
}

#[test]
fn inline_errors() {
    assert_eq!(
        protocol_error(b"SET a \"b\r\n"),
        "Protocol error: unbalanced quotes in request"
    );
    assert_eq!(
        protocol_error(b"SET a \"b\"c\r\n"),
        "Protocol error: unbalanced quotes in request"
    );
    assert_eq!(
        protocol_error(b"\x00\x01garbage"),
        "Protocol error: invalid character '\\x00' in inline request"
    );
    let long = vec![b'a'; Limits::default().max_inline_len + 2];
    assert!(matches!(
        command(&long),
        Err(ParseError::TooLarge {
            what: "inline request",
            ..
        })
    ));
}

#[test]
fn commands_must_be_arrays_of_bulk_strings() {
    assert_eq!(
        protocol_error(b"*1\r\n:1\r\n"),
        "Protocol error: expected '$', got ':'"
    );
    assert_eq!(
        protocol_error(b"*1\r\n*1\r\n"),
        "Protocol error: expected '$', got '*'"
    );
    assert_eq!(
        protocol_error(b"$3\r\nGET\r\n"),
        "Protocol error: expected '*', got '$'"
    );
    assert_eq!(
        protocol_error(b"*1\r\n$-1\r\n"),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(
        protocol_error(b"*x\r\n"),
        "Protocol error: invalid multibulk length"
    );
    assert_eq!(
        protocol_error(b"*1\r\n$01\r\na\r\n"),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(
        protocol_error(b"*1\r\n$-2\r\n"),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(
        protocol_error(b"*1\r\n$99999999999999999999\r\n"),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(
        protocol_error(b"*1\r\n$3\r\nGETxx"),
        "Protocol error: expected CRLF after the bulk string"
    );
    assert_eq!(
        protocol_error(b"*1\rx"),
        "Protocol error: expected '\\n' after '\\r'"
    );
}

#[test]
fn header_lines_cannot_grow_without_bound() {
    // No CR within a few dozen bytes of a length header: an error, not a wait.
    assert_eq!(
        protocol_error(&[b'*'; 40]),
        "Protocol error: invalid multibulk length"
    );
    assert_eq!(
        protocol_error(b"*1\r\n$1111111111111111111111111111111111"),
        "Protocol error: invalid bulk length"
    );
}

#[test]
fn limits_are_checked_before_waiting_for_the_payload() {
    let limits = Limits {
        max_bulk_len: 10,
        max_array_len: 3,
        max_depth: 2,
        max_inline_len: 8,
    };
    let mut huge_bulk = buf(b"*1\r\n$11\r\n");
    assert_eq!(
        parse_command(&mut huge_bulk, &limits),
        Err(ParseError::TooLarge {
            what: "bulk length",
            len: 11,
            limit: 10
        })
    );
    let mut ok_bulk = buf(b"*1\r\n$10\r\n0123456789\r\n");
    assert!(parse_command(&mut ok_bulk, &limits).unwrap().is_some());
    let mut long_array = buf(b"*4\r\n");
    assert_eq!(
        parse_command(&mut long_array, &limits),
        Err(ParseError::TooLarge {
            what: "multibulk length",
            len: 4,
            limit: 3
        })
    );
    let mut deep = buf(b"*1\r\n*1\r\n*1\r\n");
    assert_eq!(
        parse_reply(&mut deep, &limits),
        Err(ParseError::TooLarge {
            what: "nesting depth",
            len: 3,
            limit: 2
        })
    );
    let mut two_deep = buf(b"*1\r\n*1\r\n:1\r\n");
    assert!(parse_reply(&mut two_deep, &limits).unwrap().is_some());
    let mut long_simple = buf(b"+0123456789");
    assert!(matches!(
        parse_reply(&mut long_simple, &limits),
        Err(ParseError::TooLarge {
            what: "simple string",
            ..
        })
    ));
    let mut long_inline = buf(b"GET 123456789\r\n");
    assert!(matches!(
        parse_command(&mut long_inline, &limits),
        Err(ParseError::TooLarge {
            what: "inline request",
            ..
        })
    ));
    assert_eq!(
        encoded(&ParseError::Protocol("invalid bulk length".into()).to_frame()),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert_eq!(
        ParseError::TooLarge {
            what: "bulk length",
            len: 11,
            limit: 10
        }
        .to_string(),
        "Protocol error: invalid bulk length (11; the limit is 10)"
    );
}

#[test]
fn replies_of_every_type() {
    let input = b"*7\r\n+OK\r\n-MOVED 3999 127.0.0.1:6381\r\n:-42\r\n$0\r\n\r\n$-1\r\n*-1\r\n*1\r\n$2\r\nhi\r\n";
    let expected = Frame::Array(vec![
        Frame::ok(),
        Frame::error("MOVED 3999 127.0.0.1:6381"),
        Frame::Integer(-42),
        Frame::bulk(""),
        Frame::Null,
        Frame::NullArray,
        args(&["hi"]),
    ]);
    assert_eq!(reply(input), Ok(Some(expected.clone())));
    assert_eq!(encoded(&expected), input);
    assert_eq!(expected.encoded_len(), input.len());
}

#[test]
fn reply_raw_is_the_exact_wire_form() {
    let mut input = buf(b"$5\r\nhello\r\n:1\r\n");
    let (frame, raw) = parse_reply_raw(&mut input, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(frame, Frame::bulk("hello"));
    assert_eq!(&raw[..], b"$5\r\nhello\r\n");
    assert_eq!(&input[..], b":1\r\n");
}

#[test]
fn reply_errors() {
    let bad = |input: &[u8]| reply(input).unwrap_err().to_string();
    assert_eq!(
        bad(b"@1\r\n"),
        "Protocol error: expected a RESP type byte, got '@'"
    );
    assert_eq!(bad(b":1x\r\n"), "Protocol error: invalid integer");
    assert_eq!(bad(b":-0\r\n"), "Protocol error: invalid integer");
    assert_eq!(
        bad(b":9223372036854775808\r\n"),
        "Protocol error: invalid integer"
    );
    assert_eq!(
        reply(b":-9223372036854775808\r\n"),
        Ok(Some(Frame::Integer(i64::MIN)))
    );
    assert_eq!(
        reply(b":9223372036854775807\r\n"),
        Ok(Some(Frame::Integer(i64::MAX)))
    );
}

#[test]
fn encoding_helpers() {
    assert_eq!(
        encoded(&Frame::error("ERR bad\r\nthing")),
        b"-ERR bad  thing\r\n"
    );
    assert_eq!(
        encoded(&Frame::Integer(i64::MIN)),
        b":-9223372036854775808\r\n"
    );
    let mut out = BytesMut::new();
    encode_command(
        &[Bytes::from_static(b"GET"), Bytes::from_static(b"k")],
        &mut out,
    );
    assert_eq!(&out[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert_eq!(
        args(&["GET", "k"]).into_args(),
        Some(vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")])
    );
    assert_eq!(Frame::Array(vec![Frame::Integer(1)]).into_args(), None);
    assert_eq!(Frame::bulk("x").as_bytes(), Some(&Bytes::from_static(b"x")));
}

#[test]
fn decoder_resumes_a_large_array_and_recovers_from_a_reset_buffer() {
    let frame = Frame::Array((0..1000).map(Frame::Integer).collect());
    let mut wire = BytesMut::new();
    frame.encode(&mut wire);
    let mut decoder = Decoder::new(Limits::default());
    let mut input = BytesMut::new();
    let mut parsed = None;
    for chunk in wire.chunks(7) {
        input.extend_from_slice(chunk);
        if let Some(done) = decoder.reply(&mut input).unwrap() {
            parsed = Some(done);
        }
    }
    assert_eq!(parsed, Some(frame));

    // A caller that drops a partial frame (and its buffer) must not confuse the decoder.
    let mut partial = buf(b"*3\r\n:1\r\n:2\r\n");
    assert_eq!(decoder.reply(&mut partial), Ok(None));
    let mut fresh = buf(b":7\r\n");
    assert_eq!(decoder.reply(&mut fresh), Ok(Some(Frame::Integer(7))));
}

#[test]
fn a_read_buffer_that_carried_a_big_frame_is_given_back_once_little_is_left() {
    let filled = || {
        let mut bytes = BytesMut::with_capacity(4 * super::BIG_FRAME);
        bytes.extend_from_slice(&vec![b'x'; 2 * super::BIG_FRAME]);
        bytes.extend_from_slice(b"*1\r\n$4\r\nPI");
        super::ReadBuf::new(bytes)
    };
    // A big frame split off without a word: the rest stays where it is, room enough for a read.
    let mut unaware = filled();
    let frame = unaware.split_to(2 * super::BIG_FRAME);
    unaware.make_room();
    assert!(unaware.capacity() > super::BIG_FRAME);
    drop(frame);
    let mut buf = filled();
    let frame = buf.take(2 * super::BIG_FRAME);
    buf.make_room();
    assert!(buf.capacity() <= 32 * 1024, "{}", buf.capacity());
    assert_eq!(
        &buf[..],
        b"*1\r\n$4\r\nPI",
        "the unfinished rest moves along"
    );
    drop(frame);
    // Once moved, the next big frame is needed to move it again.
    let capacity = buf.capacity();
    buf.make_room();
    assert_eq!(buf.capacity(), capacity);
}
