//! Redis mode against a fake two-master cluster (A: slots 0-8191, B: 8192-16383) whose node B is
//! switched to a fault while Puerta runs: it hangs, resets mid-reply, or answers garbage. Commands for
//! B's keys must get an error reply in bounded time, the failure must be logged and counted, A must
//! keep serving (on other connections and, after B's reply, on the same one), B must be usable again
//! once it recovers, and every acknowledged write must be readable.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use puerta::redis::resp::Frame;
use puerta_tests::fake_redis::{key_in, wait_until, FakeCluster, FakeNode, Fault};
use puerta_tests::resp_client::RespClient;
use puerta_tests::{free_port, http, loopback, Puerta};

const PATIENCE: Duration = Duration::from_secs(30);

struct Setup {
    cluster: FakeCluster,
    puerta: Puerta,
    admin: SocketAddr,
}

impl Setup {
    fn start() -> anyhow::Result<Setup> {
        let cluster = FakeCluster::two_masters()?;
        let listen = loopback(free_port());
        let admin = loopback(free_port());
        let config = format!(
            "mode = \"redis\"\nlisten_addr = \"{listen}\"\nadmin_addr = \"{admin}\"\n\
             drain_timeout_sec = 2\n\n[redis]\ncluster_nodes = [{}]\n\
             slot_refresh_interval_sec = 60\nconnection_timeout_ms = 1000\n\
             command_timeout_ms = 1000\npool_size = 1\n",
            cluster.seeds_toml()
        );
        let puerta = Puerta::start(&config, listen)?;
        puerta
            .process
            .wait_for_output("cluster topology loaded", PATIENCE)?;
        Ok(Setup {
            cluster,
            puerta,
            admin,
        })
    }

    fn a(&self) -> &FakeNode {
        &self.cluster.nodes[0]
    }

    fn b(&self) -> &FakeNode {
        &self.cluster.nodes[1]
    }

    fn client(&self) -> anyhow::Result<RespClient> {
        RespClient::connect(self.puerta.listen.port())
    }

    /// The last log line about node B that contains `needle`.
    fn logged_about_b(&self, needle: &str) -> anyhow::Result<String> {
        let node = format!("cluster node {}", self.b().addr);
        wait_until("fault logged", PATIENCE, || {
            self.puerta
                .process
                .output()
                .lines()
                .any(|l| l.contains(&node) && l.contains(needle))
        })
        .map_err(|e| e.context(self.puerta.process.output()))?;
        let output = self.puerta.process.output();
        let line = output
            .lines()
            .rev()
            .find(|l| l.contains(&node) && l.contains(needle))
            .unwrap_or_default();
        Ok(line.to_string())
    }

    /// `puerta_redis_backend_faults_total` for node B and `kind`.
    fn faults_of_b(&self, kind: &str) -> anyhow::Result<f64> {
        let (status, body) = http::get(self.admin, "/metrics")?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        let samples = http::parse_metrics(&body)?;
        let node = format!("node=\"{}\"", self.b().addr);
        let kind = format!("kind=\"{kind}\"");
        Ok(http::sample(
            &samples,
            "puerta_redis_backend_faults_total",
            &[&node, &kind],
        )
        .unwrap_or(0.0))
    }
}

fn a_key(n: usize) -> String {
    key_in(0, 8191, n)
}

fn b_key(n: usize) -> String {
    key_in(8192, 16383, n)
}

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn bulk(text: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

fn error_text(frame: &Frame) -> Option<String> {
    match frame {
        Frame::Error(e) => Some(String::from_utf8_lossy(e).into_owned()),
        _ => None,
    }
}

/// Asserts `frame` is Puerta's error about node `addr` containing `what`.
fn assert_error_about(frame: &Frame, addr: SocketAddr, what: &str) {
    let text = error_text(frame).unwrap_or_else(|| panic!("expected an error, got {frame:?}"));
    assert!(
        text.starts_with("ERR Puerta") && text.contains(&addr.to_string()) && text.contains(what),
        "unexpected error: {text}"
    );
}

/// SETs `count` keys on each master through Puerta; returns them with their values.
fn write_both(
    client: &mut RespClient,
    count: usize,
    tag: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut written = Vec::new();
    for i in 0..count {
        for key in [a_key(i), b_key(i)] {
            let value = format!("{tag}-{i}");
            assert_eq!(client.call(&format!("SET {key} {value}"))?, Frame::ok());
            written.push((key, value));
        }
    }
    Ok(written)
}

/// Every acknowledged write (the last one per key) is readable through Puerta and stored on the node
/// that owns it.
fn assert_all_readable(s: &Setup, written: &[(String, String)]) -> anyhow::Result<()> {
    let latest: std::collections::HashMap<&String, &String> =
        written.iter().map(|(k, v)| (k, v)).collect();
    let mut client = s.client()?;
    for (key, value) in latest {
        assert_eq!(client.call(&format!("GET {key}"))?, bulk(value), "{key}");
        let stored = s.a().value(key).or_else(|| s.b().value(key));
        assert_eq!(stored.as_deref(), Some(value.as_bytes()), "{key}");
    }
    Ok(())
}

/// While B is faulty, A keeps serving a whole batch of writes on another connection.
fn a_serves_meanwhile(s: &Setup, tag: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut other = s.client()?;
    let mut written = Vec::new();
    for i in 100..150 {
        let (key, value) = (a_key(i), format!("{tag}-{i}"));
        assert_eq!(other.call(&format!("SET {key} {value}"))?, Frame::ok());
        assert_eq!(other.call(&format!("GET {key}"))?, bulk(&value));
        written.push((key, value));
    }
    Ok(written)
}

#[test]
fn node_that_hangs_times_out_and_is_reconnected_after_recovery() -> anyhow::Result<()> {
    let s = Setup::start()?;
    let mut client = s.client()?;
    let mut written = write_both(&mut client, 10, "before")?;
    s.b().set_fault(Fault::Hang);

    // One client waits on B while another keeps writing to A.
    let port = s.puerta.listen.port();
    let key = b_key(0);
    let waiting = std::thread::spawn(move || -> anyhow::Result<Frame> {
        RespClient::connect(port)?.call(&format!("GET {key}"))
    });
    written.extend(a_serves_meanwhile(&s, "during")?);
    let reply = waiting.join().expect("waiting client")?;
    assert_error_about(&reply, s.b().addr, "did not answer within 1000 ms");

    // On one connection, replies keep the command order: A's reply waits for B's timeout.
    let replies = client.pipeline(&[
        args(&["GET", &b_key(1)]),
        args(&["SET", &a_key(500), "pipelined"]),
        args(&["GET", &a_key(500)]),
        args(&["MGET", &a_key(0), &b_key(0)]),
    ])?;
    assert_error_about(&replies[0], s.b().addr, "did not answer");
    assert_eq!(replies[1], Frame::ok());
    assert_eq!(replies[2], bulk("pipelined"));
    // A command split across both masters fails as a whole: half an MGET would be a wrong answer.
    assert_error_about(&replies[3], s.b().addr, "did not answer");
    written.push((a_key(500), "pipelined".into()));

    let line = s.logged_about_b("no reply within 1000 ms")?;
    assert!(line.contains("WARN"), "{line}");
    assert!(s.faults_of_b("timeout")? >= 1.0);

    // Every connection that hung is given up by Puerta; B serves again once it recovers.
    s.b().set_fault(Fault::Healthy);
    wait_until("hung connections closed", PATIENCE, || {
        s.b().hung_connections() == 0
    })?;
    assert_eq!(client.call(&format!("GET {}", b_key(0)))?, bulk("before-0"));
    assert_eq!(
        client.call(&format!("SET {} after", b_key(1)))?,
        Frame::ok()
    );
    written.push((b_key(1), "after".into()));
    assert_eq!(
        client.call(&format!("MGET {} {}", a_key(0), b_key(0)))?,
        Frame::Array(vec![bulk("before-0"), bulk("before-0")])
    );
    assert_all_readable(&s, &written)
}

#[test]
fn node_that_resets_mid_reply_fails_its_commands_only() -> anyhow::Result<()> {
    let s = Setup::start()?;
    let mut client = s.client()?;
    let mut written = write_both(&mut client, 10, "before")?;
    s.b().set_fault(Fault::ResetMidReply);

    let replies = client.pipeline(&[
        args(&["GET", &b_key(0)]),
        args(&["SET", &b_key(1), "maybe"]),
        args(&["SET", &a_key(500), "next"]),
        args(&["GET", &a_key(500)]),
    ])?;
    // The read was retried (on fresh connections that reset too); the write was not, since it may
    // have been applied.
    assert_error_about(&replies[0], s.b().addr, "lost before the reply");
    assert_error_about(&replies[1], s.b().addr, "may have been applied");
    assert_eq!(replies[2], Frame::ok());
    assert_eq!(replies[3], bulk("next"));
    written.push((a_key(500), "next".into()));
    written.extend(a_serves_meanwhile(&s, "during")?);

    // Seen by the reader (`connection error`) or, writing the next request, by the writer.
    s.logged_about_b("fault=\"reset\"")?;
    assert!(s.faults_of_b("reset")? >= 1.0);

    s.b().set_fault(Fault::Healthy);
    assert_eq!(client.call(&format!("GET {}", b_key(0)))?, bulk("before-0"));
    // The SET that got an error was in fact applied by the node before it reset ("may have been
    // applied"); it is overwritten here.
    assert_eq!(
        client.call(&format!("SET {} after", b_key(1)))?,
        Frame::ok()
    );
    written.push((b_key(1), "after".into()));
    assert_all_readable(&s, &written)
}

#[test]
fn node_that_answers_garbage_is_disconnected_and_reused_after_recovery() -> anyhow::Result<()> {
    let s = Setup::start()?;
    let mut client = s.client()?;
    let mut written = write_both(&mut client, 10, "before")?;
    for (fault, why) in [
        (Fault::Garbage, "bad reply"),
        (Fault::OversizedBulk, "the limit is"),
    ] {
        s.b().set_fault(fault);
        let replies = client.pipeline(&[args(&["GET", &b_key(0)]), args(&["GET", &a_key(0)])])?;
        assert_error_about(&replies[0], s.b().addr, why);
        assert_eq!(replies[1], bulk("before-0"), "{fault:?}");
        written.extend(a_serves_meanwhile(&s, &format!("{fault:?}"))?);
        s.logged_about_b("sent a bad reply")?;
        // The node keeps its side open: only Puerta closing the connections ends them.
        wait_until("connections to B closed", PATIENCE, || {
            s.b().open_connections() == 0
        })?;
        s.b().set_fault(Fault::Healthy);
        assert_eq!(client.call(&format!("GET {}", b_key(0)))?, bulk("before-0"));
    }
    assert!(s.faults_of_b("bad_reply")? >= 2.0);
    assert_all_readable(&s, &written)
}

#[test]
fn blocking_commands_may_outlast_the_command_timeout() -> anyhow::Result<()> {
    let s = Setup::start()?;
    let mut client = s.client()?;
    // command_timeout_ms is 1000: a BLPOP that blocks for 2 s runs on its own connection, exempt.
    let reply = client.call(&format!("BLPOP {} 2", b_key(0)))?;
    assert_eq!(reply, Frame::NullArray);
    assert_eq!(client.call(&format!("SET {} v", b_key(0)))?, Frame::ok());
    assert!(!s.puerta.process.output().contains("no reply within"));
    assert_eq!(s.faults_of_b("timeout")?, 0.0);
    Ok(())
}
