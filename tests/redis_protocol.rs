//! Our command parser and a real redis-server agree on malformed input: where Redis closes the
//! connection with `-ERR Protocol error: ...`, we produce the same message (`ParseError::to_frame`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use puerta::redis::resp::{parse_command, parse_reply, Frame, Limits};
use puerta_tests::loopback;
use puerta_tests::resp_client::start_redis_server;

/// Inputs Redis rejects, and we reject with the same words.
const MALFORMED: &[&[u8]] = &[
    b"*1\r\n:1\r\n",
    b"*1\r\n*1\r\n$4\r\nPING\r\n",
    b"*x\r\n",
    b"*01\r\n",
    b"*1\r\n$x\r\n",
    b"*1\r\n$-1\r\n",
    b"*1\r\n$01\r\nab\r\n",
    b"*1\r\n$99999999999999999999\r\n",
    b"*99999999999999999999\r\n",
    // Over the limits: Redis' words, whatever the proxy's limits are.
    b"*3000000000\r\n",
    b"*1\r\n$2000000000\r\n",
    b"SET a \"b\r\n",
    b"SET a 'b'c\r\n",
];

/// Everything Redis sends on a fresh connection after `input`, until it closes (or goes quiet).
fn redis_answer(port: u16, input: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(loopback(port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.write_all(input)?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    Ok(answer)
}

#[test]
fn protocol_errors_match_redis() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_server, port) = start_redis_server(dir.path(), &[])?;
    for input in MALFORMED {
        let mut theirs = BytesMut::from(&redis_answer(port, input)?[..]);
        let theirs = parse_reply(&mut theirs, &Limits::default())?;
        let ours = parse_command(&mut BytesMut::from(*input), &Limits::default())
            .map(|frame| format!("accepted {frame:?}"))
            .map_err(|e| e.to_frame());
        assert_eq!(ours.err(), theirs, "{}", input.escape_ascii());
    }
    Ok(())
}

#[test]
fn redis_reads_what_we_accept() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_server, port) = start_redis_server(dir.path(), &[])?;
    // Empty commands (counts <= 0 too) are skipped by both; inline and quoted forms parse to the same arguments.
    let input =
        b"*0\r\n\r\n*-10\r\nECHO \"a\\x41 b\"\r\n*-1\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\nQUIT\r\n";
    let mut ours = Vec::new();
    let mut buf = BytesMut::from(&input[..]);
    while let Some(Frame::Array(args)) = parse_command(&mut buf, &Limits::default())? {
        ours.push(args);
    }
    assert_eq!(ours.len(), 3);
    let mut answer = BytesMut::from(&redis_answer(port, input)?[..]);
    let mut theirs = Vec::new();
    while let Some(reply) = parse_reply(&mut answer, &Limits::default())? {
        theirs.push(reply);
    }
    // ECHO returns its argument: Redis saw the same bytes we parsed.
    assert_eq!(
        theirs,
        vec![ours[0][1].clone(), ours[1][1].clone(), Frame::ok()]
    );
    Ok(())
}
