//! Slow and idle clients (Redis mode): thousands of clients that send half a RESP frame and stall do not
//! stop service to a well-behaved client, and each is closed once `client_idle_timeout_sec` passes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use puerta::redis::resp::Frame;
use puerta_tests::redis_cluster::RedisCluster;
use puerta_tests::resp_client::RespClient;
use puerta_tests::{free_port, loopback, Puerta};

const STALLED: usize = 5000;
const IDLE_TIMEOUT: Duration = Duration::from_secs(8);

/// The test process holds every stalled socket: make room for them.
fn raise_fd_limit(want: u64) -> anyhow::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        anyhow::ensure!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0);
        if lim.rlim_cur >= want {
            return Ok(());
        }
        lim.rlim_cur = want.min(lim.rlim_max);
        anyhow::ensure!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0);
    }
    anyhow::ensure!(
        lim.rlim_cur >= want,
        "RLIMIT_NOFILE hard limit {} is below {want}",
        lim.rlim_max
    );
    Ok(())
}

#[test]
fn stalled_half_frames_do_not_block_others_and_are_closed_at_the_timeout() -> anyhow::Result<()> {
    raise_fd_limit(STALLED as u64 + 1024)?;
    let cluster = RedisCluster::start()?;
    let listen = loopback(free_port());
    let config = cluster.puerta_config(listen, "").replacen(
        "[redis]",
        &format!(
            "max_connections = {}\nclient_idle_timeout_sec = {}\n[redis]",
            STALLED + 100,
            IDLE_TIMEOUT.as_secs()
        ),
        1,
    );
    let puerta = Puerta::start(&config, listen)?;

    // Half of `SET key value`: the array header and the command name, then nothing.
    let half_frame = b"*3\r\n$3\r\nSET\r\n$3\r\nke";
    let started = Instant::now();
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let mut s = TcpStream::connect(listen)?;
        s.write_all(half_frame)?;
        stalled.push(s);
    }

    // Service goes on for a well-behaved client while all of them are connected.
    let mut good = RespClient::connect(listen.port())?;
    for i in 0..50 {
        let key = format!("slowloris-{i}");
        assert_eq!(
            good.call(&format!("SET {key} {i}"))?,
            Frame::Simple("OK".into())
        );
        assert_eq!(
            good.call(&format!("GET {key}"))?,
            Frame::Bulk(i.to_string().into())
        );
    }

    // Every stalled client is closed (EOF or reset), and none before the timeout.
    let mut buf = [0u8; 64];
    for (i, s) in stalled.iter_mut().enumerate() {
        s.set_read_timeout(Some(IDLE_TIMEOUT + Duration::from_secs(120)))?;
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("stalled client {i}: expected a close, got {other:?}"),
        }
        if i == 0 {
            assert!(
                started.elapsed() >= IDLE_TIMEOUT,
                "closed before client_idle_timeout_sec"
            );
        }
    }

    // The proxy is still there for new clients.
    let mut after = RespClient::connect(listen.port())?;
    assert_eq!(after.call("GET slowloris-7")?, Frame::Bulk("7".into()));
    assert!(puerta.process.output().contains("listening"));
    Ok(())
}
