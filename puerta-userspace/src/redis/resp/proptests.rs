//! Property tests: what the encoder writes the parser reads back, wherever the stream is cut.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

type Parser = fn(&mut BytesMut, &Limits) -> Result<Option<Frame>, ParseError>;

/// Text that a simple string / error can carry (no CR or LF).
fn line_text() -> impl Strategy<Value = Bytes> {
    vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..20,
    )
    .prop_map(Bytes::from)
}

fn binary(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        line_text().prop_map(Frame::Simple),
        line_text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        binary(40).prop_map(Frame::Bulk),
        Just(Frame::Null),
        Just(Frame::NullArray),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| vec(inner, 0..8).prop_map(Frame::Array))
}

/// Any frame, RESP3 types included. No `NullArray`: in RESP3 it is the same `_` as `Null`.
fn frame3() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        line_text().prop_map(Frame::Simple),
        line_text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        binary(40).prop_map(Frame::Bulk),
        Just(Frame::Null),
        any::<bool>().prop_map(Frame::Boolean),
        any::<f64>().prop_map(|d| Frame::Double(Bytes::from(d.to_string()))),
        prop_oneof![Just("inf"), Just("-inf"), Just("nan")]
            .prop_map(|d| Frame::Double(Bytes::from_static(d.as_bytes()))),
        any::<i128>().prop_map(|n| Frame::BigNumber(Bytes::from(n.to_string()))),
        ("[a-z]{3}", binary(40)).prop_map(|(format, text)| Frame::Verbatim {
            format: format.as_bytes().try_into().unwrap_or(*b"txt"),
            text,
        }),
        binary(40).prop_map(Frame::BlobError),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let pairs = vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Frame::Array),
            vec(inner.clone(), 0..8).prop_map(Frame::Set),
            vec(inner.clone(), 0..8).prop_map(Frame::Push),
            pairs.clone().prop_map(Frame::Map),
            (pairs, inner).prop_map(|(p, v)| Frame::Attribute(p, Box::new(v))),
        ]
    })
}

fn encode_all_in(protocol: Protocol, frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode_in(protocol, &mut out);
    }
    out.to_vec()
}

fn command_args() -> impl Strategy<Value = Vec<Bytes>> {
    vec(binary(30), 1..8)
}

/// Past 16 arguments the build pass re-parses instead of using recorded positions.
fn long_command_args() -> impl Strategy<Value = Vec<Bytes>> {
    vec(binary(8), 1..24)
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out);
    }
    out.to_vec()
}

/// Feeds `wire` in two reads cut at `cut`, parsing everything available after each read.
fn parse_in_two_reads(parse: Parser, wire: &[u8], cut: usize) -> Result<Vec<Frame>, ParseError> {
    let limits = Limits::default();
    let mut buf = BytesMut::from(&wire[..cut]);
    let mut frames = Vec::new();
    while let Some(frame) = parse(&mut buf, &limits)? {
        frames.push(frame);
    }
    buf.extend_from_slice(&wire[cut..]);
    while let Some(frame) = parse(&mut buf, &limits)? {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(frames)
}

/// Feeds `wire` to one `Decoder` in chunks of the given sizes (cycled), parsing after every read.
fn decode_in_chunks(
    wire: &[u8],
    chunks: &[usize],
    commands: bool,
) -> Result<Vec<Frame>, ParseError> {
    let mut decoder = Decoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    for size in chunks.iter().cycle() {
        let end = (fed + size).min(wire.len());
        buf.extend_from_slice(&wire[fed..end]);
        fed = end;
        loop {
            let next = if commands {
                decoder.command(&mut buf)?
            } else {
                decoder.reply(&mut buf)?
            };
            match next {
                Some(frame) => frames.push(frame),
                None => break,
            }
        }
        if fed == wire.len() {
            break;
        }
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(frames)
}

/// The largest bulk, array, nesting and text line in `frame`.
#[derive(Default)]
struct Sizes {
    bulk: usize,
    array: usize,
    depth: usize,
    line: usize,
}

fn sizes(frame: &Frame, depth: usize, acc: &mut Sizes) {
    let mut nested = |items: &mut dyn Iterator<Item = &Frame>, len: usize| {
        acc.array = acc.array.max(len);
        acc.depth = acc.depth.max(depth + 1);
        items.for_each(|item| sizes(item, depth + 1, acc));
    };
    match frame {
        Frame::Bulk(b) | Frame::BlobError(b) => acc.bulk = acc.bulk.max(b.len()),
        Frame::Verbatim { text, .. } => acc.bulk = acc.bulk.max(text.len() + 4),
        Frame::Simple(t) | Frame::Error(t) | Frame::Double(t) | Frame::BigNumber(t) => {
            acc.line = acc.line.max(t.len())
        }
        Frame::Boolean(_) => acc.line = acc.line.max(1),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            nested(&mut items.iter(), items.len())
        }
        Frame::Map(pairs) => nested(&mut pairs.iter().flat_map(|(k, v)| [k, v]), pairs.len()),
        Frame::Attribute(pairs, value) => nested(
            &mut pairs
                .iter()
                .flat_map(|(k, v)| [k, v])
                .chain(std::iter::once(&**value)),
            pairs.len(),
        ),
        Frame::Integer(_) | Frame::Null | Frame::NullArray => {}
    }
}

proptest! {
    #[test]
    fn limits_accept_exactly_the_frames_within_them(
        frame in frame(),
        bulk in 0usize..40,
        array in 0usize..8,
        depth in 0usize..5,
        line in 0usize..20,
    ) {
        let limits = Limits { max_bulk_len: bulk, max_array_len: array, max_depth: depth, max_inline_len: line };
        let mut actual = Sizes::default();
        sizes(&frame, 0, &mut actual);
        let within = actual.bulk <= bulk && actual.array <= array && actual.depth <= depth && actual.line <= line;
        let wire = encode_all(std::slice::from_ref(&frame));
        let parsed = parse_reply(&mut BytesMut::from(&wire[..]), &limits);
        if within {
            prop_assert_eq!(parsed, Ok(Some(frame)));
        } else {
            prop_assert!(matches!(parsed, Err(ParseError::TooLarge { .. })), "{:?}", parsed);
        }
    }

    #[test]
    fn resp3_limits_accept_exactly_the_frames_within_them(
        frame in frame3(),
        bulk in 0usize..44,
        array in 0usize..8,
        depth in 0usize..5,
        line in 0usize..40,
    ) {
        let limits = Limits { max_bulk_len: bulk, max_array_len: array, max_depth: depth, max_inline_len: line };
        let mut actual = Sizes::default();
        sizes(&frame, 0, &mut actual);
        let within = actual.bulk <= bulk && actual.array <= array && actual.depth <= depth && actual.line <= line;
        let wire = encode_all_in(Protocol::Resp3, std::slice::from_ref(&frame));
        let parsed = parse_reply(&mut BytesMut::from(&wire[..]), &limits);
        if within {
            prop_assert_eq!(parsed, Ok(Some(frame)));
        } else {
            prop_assert!(matches!(parsed, Err(ParseError::TooLarge { .. })), "{:?}", parsed);
        }
    }

    #[test]
    fn resp3_frames_round_trip_byte_for_byte(frame in frame3()) {
        let wire = encode_all_in(Protocol::Resp3, std::slice::from_ref(&frame));
        prop_assert_eq!(wire.len(), frame.encoded_len_in(Protocol::Resp3));
        let mut buf = BytesMut::from(&wire[..]);
        let (parsed, raw) = parse_reply_raw(&mut buf, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(parsed, frame);
        prop_assert_eq!(&raw[..], &wire[..]);
    }

    /// What a RESP2 client gets for a RESP3 frame is valid RESP2 and stable when re-encoded.
    #[test]
    fn resp3_frames_downgrade_to_stable_resp2(frame in frame3()) {
        let wire = encode_all_in(Protocol::Resp2, std::slice::from_ref(&frame));
        prop_assert_eq!(wire.len(), frame.encoded_len_in(Protocol::Resp2));
        let mut buf = BytesMut::from(&wire[..]);
        let parsed = parse_reply(&mut buf, &Limits::default()).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(encode_all(&[parsed]), wire);
    }

    #[test]
    fn decoder_reads_resp3_replies_in_any_chunking(
        frames in vec(frame3(), 1..5),
        chunks in vec(1usize..16, 1..8),
    ) {
        let wire = encode_all_in(Protocol::Resp3, &frames);
        prop_assert_eq!(decode_in_chunks(&wire, &chunks, false), Ok(frames));
    }

    #[test]
    fn every_prefix_of_a_resp3_frame_is_incomplete_random(frame in frame3()) {
        let wire = encode_all_in(Protocol::Resp3, &[frame]);
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            prop_assert_eq!(parse_reply(&mut buf, &Limits::default()), Ok(None));
            prop_assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn corrupted_resp3_frames_never_panic(frame in frame3(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut wire = encode_all_in(Protocol::Resp3, &[frame]);
        let i = at.index(wire.len());
        wire[i] = byte;
        let mut buf = BytesMut::from(&wire[..]);
        while let Ok(Some(_)) = parse_reply(&mut buf, &Limits::default()) {}
    }

    #[test]
    fn decoder_reads_replies_in_any_chunking(
        frames in vec(frame(), 1..5),
        chunks in vec(1usize..16, 1..8),
    ) {
        let wire = encode_all(&frames);
        prop_assert_eq!(decode_in_chunks(&wire, &chunks, false), Ok(frames));
    }

    #[test]
    fn decoder_reads_commands_in_any_chunking(
        commands in vec(long_command_args(), 1..5),
        chunks in vec(1usize..16, 1..8),
    ) {
        let mut wire = BytesMut::new();
        for args in &commands {
            encode_command(args, &mut wire);
        }
        let expected: Vec<Frame> = commands
            .iter()
            .map(|args| Frame::Array(args.iter().cloned().map(Frame::Bulk).collect()))
            .collect();
        prop_assert_eq!(decode_in_chunks(&wire, &chunks, true), Ok(expected));
    }

    #[test]
    fn frames_round_trip(frame in frame()) {
        let wire = encode_all(std::slice::from_ref(&frame));
        prop_assert_eq!(wire.len(), frame.encoded_len());
        let mut buf = BytesMut::from(&wire[..]);
        let (parsed, raw) = parse_reply_raw(&mut buf, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(parsed, frame);
        prop_assert_eq!(&raw[..], &wire[..]);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete(frame in frame()) {
        let wire = encode_all(&[frame]);
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            prop_assert_eq!(parse_reply(&mut buf, &Limits::default()), Ok(None));
            prop_assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn pipelined_replies_parse_the_same_at_every_split(frames in vec(frame(), 1..5)) {
        let wire = encode_all(&frames);
        for cut in 0..=wire.len() {
            prop_assert_eq!(parse_in_two_reads(parse_reply, &wire, cut), Ok(frames.clone()));
        }
    }

    #[test]
    fn pipelined_commands_parse_the_same_at_every_split(commands in vec(command_args(), 1..5)) {
        let mut wire = BytesMut::new();
        for args in &commands {
            encode_command(args, &mut wire);
        }
        let expected: Vec<Frame> = commands
            .iter()
            .map(|args| Frame::Array(args.iter().cloned().map(Frame::Bulk).collect()))
            .collect();
        for cut in 0..=wire.len() {
            prop_assert_eq!(parse_in_two_reads(parse_command, &wire, cut), Ok(expected.clone()));
        }
    }

    #[test]
    fn inline_commands_of_plain_words_parse_at_every_split(
        words in vec(vec("[a-zA-Z][a-zA-Z0-9:_-]{0,7}", 1..4), 1..4)
    ) {
        let wire: String = words.iter().map(|w| w.join(" ") + "\r\n").collect();
        let expected: Vec<Frame> = words
            .iter()
            .map(|w| Frame::Array(w.iter().map(|s| Frame::bulk(s.clone())).collect()))
            .collect();
        for cut in 0..=wire.len() {
            prop_assert_eq!(parse_in_two_reads(parse_command, wire.as_bytes(), cut), Ok(expected.clone()));
        }
    }

    #[test]
    fn garbage_never_panics(bytes in vec(any::<u8>(), 0..200)) {
        let limits = Limits { max_bulk_len: 64, max_array_len: 16, max_depth: 4, max_inline_len: 64 };
        for parse in [parse_command as Parser, parse_reply as Parser] {
            let mut buf = BytesMut::from(&bytes[..]);
            // Parse until error or incomplete; each success must consume bytes.
            while let Ok(Some(_)) = parse(&mut buf, &limits) {}
        }
    }

    #[test]
    fn corrupted_frames_never_panic(frame in frame(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut wire = encode_all(&[frame]);
        let i = at.index(wire.len());
        wire[i] = byte;
        for parse in [parse_command as Parser, parse_reply as Parser] {
            let mut buf = BytesMut::from(&wire[..]);
            while let Ok(Some(_)) = parse(&mut buf, &Limits::default()) {}
        }
    }
}
