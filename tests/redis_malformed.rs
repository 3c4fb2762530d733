//! Abusive or broken client input gets an error reply and a clean close; the daemon stays up and
//! serves the next client.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use puerta_tests::redis_cluster::ProxiedCluster;

/// Sends `bytes`, half-closes, and returns everything the proxy wrote before closing.
fn exchange(port: u16, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    // The proxy may close before reading everything: a failed write is part of the scenario.
    let _ = conn.write_all(bytes);
    let _ = conn.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    match conn.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(e.into()),
    }
    Ok(out)
}

fn assert_still_serving(env: &ProxiedCluster) -> anyhow::Result<()> {
    let reply = exchange(env.port(), b"*1\r\n$4\r\nPING\r\n")?;
    assert_eq!(reply, b"+PONG\r\n");
    Ok(())
}

#[test]
fn malformed_input_gets_an_error_and_a_clean_close() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let garbage: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad type byte", b"*1\r\n!3\r\nfoo\r\n".to_vec()),
        ("negative bulk length", b"*1\r\n$-5\r\n".to_vec()),
        ("huge bulk length", b"*1\r\n$99999999999999\r\n".to_vec()),
        ("huge array length", b"*99999999999\r\n".to_vec()),
        ("non-numeric length", b"*x\r\n".to_vec()),
        (
            "bulk without its CRLF",
            b"*1\r\n$3\r\nfooXY*1\r\n$4\r\nPING\r\n".to_vec(),
        ),
        ("binary garbage", garbage),
    ];
    for (name, bytes) in cases {
        let reply = exchange(env.port(), &bytes)?;
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with("-ERR Protocol error"),
            "{name}: expected a protocol error reply, got {text:?}"
        );
        assert!(
            text.ends_with("\r\n") && text.matches("\r\n").count() == 1,
            "{name}: {text:?}"
        );
        assert_still_serving(&env)?;
    }
    // A frame cut short by the client closing: nothing to answer, a clean close, no harm.
    let reply = exchange(env.port(), b"*2\r\n$3\r\nGET\r\n$10\r\nabc")?;
    assert!(reply.is_empty(), "{:?}", String::from_utf8_lossy(&reply));
    // Valid commands before the bad one are answered first, in order.
    let reply = exchange(env.port(), b"*1\r\n$4\r\nPING\r\nPING\r\n*1\r\n:1\r\n")?;
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("+PONG\r\n+PONG\r\n-ERR Protocol error"),
        "{text:?}"
    );
    assert_still_serving(&env)?;
    assert!(!env.puerta.process.output().contains("panicked"));
    Ok(())
}
