//! Abusive or broken client input gets an error reply and a clean close; the daemon stays up and
//! serves the next client.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use puerta::redis::resp::Frame;
use puerta_tests::redis_cluster::ProxiedCluster;
use puerta_tests::resp_client::RespClient;

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

/// A script chooses its error text, MOVED and ASK included. The proxy neither patches the slot map
/// every client routes by nor connects where the client says (it would log in there with the
/// backend credentials and send other clients' commands along); the script's reply reaches its
/// client as it is.
#[test]
fn a_script_cannot_redirect_the_proxy() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    // Where a followed redirect would connect.
    let trap = std::net::TcpListener::bind("127.0.0.1:0")?;
    trap.set_nonblocking(true)?;
    let trap_addr = trap.local_addr()?;
    let slot = puerta::redis::command::slots::key_slot(b"a");
    let mut client = RespClient::connect(env.port())?;
    for (kind, keys) in [
        ("MOVED", &["1", "a"][..]),
        ("ASK", &["1", "a"]),
        ("MOVED", &["0"]),
    ] {
        let text = format!("{kind} {slot} {trap_addr}");
        let script = format!("return redis.error_reply('{text}')");
        let mut args = vec!["EVAL", &script];
        args.extend_from_slice(keys);
        let reply = client.command(&args)?;
        assert_eq!(reply, Frame::Error(text.into()), "EVAL {keys:?}");
    }
    let mut other = RespClient::connect(env.port())?;
    assert_eq!(
        other.command(&["SET", "a", "1"])?,
        Frame::Simple("OK".into())
    );
    assert_eq!(other.command(&["GET", "a"])?, Frame::Bulk("1".into()));
    std::thread::sleep(Duration::from_millis(200));
    match trap.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the proxy connected to {trap_addr}: {other:?}"),
    }
    let info = env.cli(&["INFO", "proxy"])?;
    for counter in ["moved_redirects:0", "ask_redirects:0"] {
        assert!(info.contains(counter), "{info}");
    }
    Ok(())
}
