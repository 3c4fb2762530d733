//! `[redis] client_output_limit_mb`: replies that wait for a client that does not read count against
//! the limit (default 64 MiB, 0 = unlimited); past it the client is closed, logged at WARN with its
//! address and counted as `puerta_redis_clients_closed_total{reason="output_limit"}`. Without it, a
//! client that pipelines large GETs and never reads leaves the proxy two bad choices: hold every reply
//! the nodes send (600 × 4 MiB here), or stop reading the node connection those replies come on,
//! which is shared, and stall every other client of that node (what Puerta did before the limit: a
//! bystander on the same node made no round trip in 30 s).
//!
//! Every key shares the hash tag `{ol}`, so the abusive client, the bystander and the client that
//! reads the value afterwards all go over the same pooled node connections: closing the abuser must
//! neither stall nor desynchronise the replies of the others.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use puerta::redis::resp::{encode_command, Frame};
use puerta_tests::http;
use puerta_tests::memory::rss_kib;
use puerta_tests::redis_cluster::{ProxiedCluster, RedisCluster};
use puerta_tests::resp_client::RespClient;

const MIB: usize = 1 << 20;
const VALUE_LEN: usize = 4 * MIB;
const BIG_KEY: &str = "{ol}big";
/// The node with the big key copies 2.4 GiB of replies into its output buffer before it sends the
/// first one: on a loaded machine that took more than the default 5 s, and the proxy rightly gave the
/// node up (and with it the replies this test is about).
const PATIENT: &str = "command_timeout_ms = 60000";
/// The default of `client_output_limit_mb`, which the abusive-client test relies on (it sets no key).
const DEFAULT_LIMIT_MB: u64 = 64;
const CLOSED: &str = "puerta_redis_clients_closed_total";
const REASON: &str = "reason=\"output_limit\"";

/// The scenario of the issue: 600 pipelined GETs of a 4 MiB value (2.4 GiB of replies) from a client
/// that never reads, while another client keeps doing round trips.
#[test]
fn a_client_that_does_not_read_is_closed_at_the_default_limit() -> anyhow::Result<()> {
    let (env, admin) = ProxiedCluster::with_admin(RedisCluster::start_patient()?, PATIENT)?;
    flood_from_a_client_that_does_not_read(&env, admin)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", cluster_events(&env)))
}

/// What the nodes logged about failures and failovers. The clusters here tolerate a node busy for
/// 30 s ([`RedisCluster::start_patient`]), so there should be none; if there is one anyway, replies
/// and writes lost by Redis itself would otherwise look like the proxy's fault.
fn cluster_events(env: &ProxiedCluster) -> String {
    let mut events = String::new();
    for node in &env.cluster.nodes {
        for line in node.process.output().lines() {
            let l = line.to_ascii_lowercase();
            if [
                "failing",
                "failover",
                "fail message",
                "cluster state changed",
            ]
            .iter()
            .any(|e| l.contains(e))
            {
                events.push_str(&format!("\n  node {}: {line}", node.port));
            }
        }
    }
    if events.is_empty() {
        "the nodes logged no failure or failover".into()
    } else {
        format!("the nodes logged failures or failovers:{events}")
    }
}

fn flood_from_a_client_that_does_not_read(
    env: &ProxiedCluster,
    admin: SocketAddr,
) -> anyhow::Result<()> {
    set_big_value(env)?;
    let pid = env.puerta.process.pid();
    let bystander = Bystander::start(env.port());
    // Let the bystander's connection and its node connections exist before the baseline is taken.
    thread::sleep(Duration::from_millis(500));
    let baseline = rss_kib(pid)?;
    let bound = baseline + 2 * DEFAULT_LIMIT_MB * 1024;
    let sampler = RssSampler::start(pid);
    let before_flood = bystander.round_trips();
    let flood_started = Instant::now();

    let mut abuser = TcpStream::connect(env.puerta.listen)?;
    let abuser_addr = abuser.local_addr()?.to_string();
    let mut flood = BytesMut::new();
    for _ in 0..600 {
        encode_command(&words(&format!("GET {BIG_KEY}")), &mut flood);
    }
    abuser.write_all(&flood)?;

    // Stop as soon as the bound is crossed: a proxy without the limit would otherwise be watched
    // while it buffers all 2.4 GiB.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut closed = 0.0;
    while Instant::now() < deadline && sampler.max() <= bound {
        closed = closed_by_limit(admin)?;
        if closed >= 1.0 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    // Everything the test saw, for whichever check fails (and for the log when none does).
    let bystander_failed = bystander.failed.clone();
    let report = |what: &str, max: u64, closed: f64, trips: u64| {
        format!(
            "{what}: puerta RSS baseline {baseline} KiB, max {max} KiB, bound {bound} KiB \
             (baseline + 2 × {DEFAULT_LIMIT_MB} MiB); {CLOSED}{{{REASON}}} = {closed}; \
             the bystander made {} round trips in the {:?} since the flood{}",
            trips - before_flood,
            flood_started.elapsed(),
            failure_of(&bystander_failed)
                .map(|e| format!(", then failed: {e}"))
                .unwrap_or_default()
        )
    };
    let what = if sampler.max() > bound {
        Some("RSS over the bound before the client was closed")
    } else if closed < 1.0 {
        Some("the client that does not read was not closed within 30 s")
    } else {
        None
    };
    if let Some(what) = what {
        anyhow::bail!(
            "{}",
            report(what, sampler.max(), closed, bystander.round_trips())
        );
    }

    let drained = drain_until_closed(&mut abuser, Duration::from_secs(30)).map_err(|e| {
        let trips = bystander.round_trips();
        anyhow::anyhow!(
            "{e}; {}",
            report("after the close", sampler.max(), closed, trips)
        )
    })?;
    // The bystander keeps going a little past the close, over the same node connections.
    thread::sleep(Duration::from_millis(500));
    let stats = bystander.stop()?;
    let max_rss = sampler.stop();
    let closed = closed_by_limit(admin)?;
    let seen = report("done", max_rss, closed, stats.round_trips);
    eprintln!(
        "{seen}; {drained} bytes drained from the closed socket; slowest bystander round trip {:?}",
        stats.slowest
    );
    anyhow::ensure!(
        max_rss <= bound,
        "RSS over the bound while draining: {seen}"
    );
    anyhow::ensure!(
        stats.round_trips > before_flood,
        "the bystander made no round trip after the flood: {seen}"
    );
    anyhow::ensure!(
        closed == 1.0,
        "only the abusive client may be closed: {seen}"
    );
    env.puerta
        .process
        .wait_for_output(&abuser_addr, Duration::from_secs(5))?;
    let output = env.puerta.process.output();
    anyhow::ensure!(
        output
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&abuser_addr)),
        "no WARN line naming {abuser_addr}:\n{output}"
    );
    // A new client gets the whole value: the discarded replies did not end up on anyone else.
    let mut fresh = RespClient::connect(env.port())?;
    match fresh.call(&format!("GET {BIG_KEY}"))? {
        Frame::Bulk(value) if value == big_value() => Ok(()),
        other => anyhow::bail!("GET after the close: {}", describe(&other)),
    }
}

/// `0` turns the limit off: a client that lets 200 MiB of replies wait, then reads them slowly, gets
/// every one of them, intact and in order.
#[test]
fn limit_zero_lets_a_slow_reader_have_everything() -> anyhow::Result<()> {
    let (env, admin) =
        ProxiedCluster::with_admin(RedisCluster::start_patient()?, "client_output_limit_mb = 0")?;
    set_big_value(&env)?;
    fetch_pipelined(
        &env,
        50,
        Some(Duration::from_secs(2)),
        Duration::from_millis(2),
    )?;
    assert_eq!(closed_by_limit(admin)?, 0.0);
    Ok(())
}

/// The limit is a hard one, as in Redis: replies the nodes have sent and the client has not taken yet
/// count, whether the client is slow or only behind. A client that reads as fast as it can and
/// pipelines 48 MiB of replies stays under a 64 MiB limit (set explicitly here, so the key itself is
/// checked too) and is not closed. (Pipelining more than the limit's worth at once can close even a
/// reading client, since loopback nodes deliver faster than it reads: the README says so.)
#[test]
fn a_reading_client_under_the_limit_is_not_closed() -> anyhow::Result<()> {
    let (env, admin) = ProxiedCluster::with_admin(
        RedisCluster::start_patient()?,
        "client_output_limit_mb = 64",
    )?;
    set_big_value(&env)?;
    fetch_pipelined(&env, 12, None, Duration::ZERO)?;
    assert_eq!(closed_by_limit(admin)?, 0.0);
    Ok(())
}

/// Memory held for a connection is bounded by what it carries now, not by the biggest frame it
/// ever carried: after a 100 MiB SET through Puerta and the GET of it, with the client still
/// connected and the node connections kept in the pool, RSS comes back near where it was. Before,
/// the node connection's write buffer kept the SET's size for the connection's life, and so did
/// the client's read buffer (+98 MiB each, measured).
#[test]
fn a_huge_frame_leaves_no_buffer_behind() -> anyhow::Result<()> {
    let (env, _admin) = patient_with_limit(256)?;
    let pid = env.puerta.process.pid();
    // The pooled node connections exist before the baseline is taken.
    let mut client = RespClient::connect(env.port())?;
    let small = vec![
        Bytes::from_static(b"SET"),
        Bytes::from_static(b"{ol}huge"),
        Bytes::new(),
    ];
    anyhow::ensure!(client.pipeline(&[small])? == [Frame::Simple("OK".into())]);
    let baseline = rss_kib(pid)?;
    let bound = baseline + 32 * 1024;
    let value = Bytes::from((0..100 * MIB).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let set = vec![
        Bytes::from_static(b"SET"),
        Bytes::from_static(b"{ol}huge"),
        value.clone(),
    ];
    anyhow::ensure!(client.pipeline(&[set])? == [Frame::Simple("OK".into())]);
    settles_under(pid, bound, "after a 100 MiB SET")?;
    let get = vec![Bytes::from_static(b"GET"), Bytes::from_static(b"{ol}huge")];
    let got = client.pipeline(&[get])?;
    anyhow::ensure!(got == [Frame::Bulk(value)], "GET did not return the value");
    settles_under(pid, bound, "after its GET")?;
    Ok(())
}

/// Pub/sub messages are replies too: a subscriber that stops reading while 1 MiB messages keep
/// being published is closed at the limit, in either protocol (RESP2's relayed stream, RESP3's
/// pushes between replies), and the proxy's memory stays within twice the limit meanwhile. Before,
/// each subscriber could hold 1024 relayed frames of any size (1 GiB of these), unbounded in bytes.
/// Publishing goes on, and a client on the same node keeps its round trips throughout.
#[test]
fn a_subscriber_that_does_not_read_is_closed_at_the_limit() -> anyhow::Result<()> {
    const LIMIT_MB: u64 = 16;
    let (env, admin) = patient_with_limit(LIMIT_MB)?;
    let pid = env.puerta.process.pid();
    let bystander = Bystander::start(env.port());
    thread::sleep(Duration::from_millis(500));
    let mut publisher = RespClient::connect(env.port())?;
    let message = "m".repeat(MIB);
    for (n, hello) in [None, Some("3")].into_iter().enumerate() {
        let baseline = rss_kib(pid)?;
        let bound = baseline + 2 * LIMIT_MB * 1024;
        let sampler = RssSampler::start(pid);
        let mut subscriber = subscribe(env.port(), hello, "news")?;
        let subscriber_addr = subscriber.local_addr()?.to_string();
        let what = format!("RESP{}", hello.unwrap_or("2"));
        let mut published = 0;
        while closed_by_limit(admin)? < (n + 1) as f64 {
            anyhow::ensure!(
                published < 400,
                "{what}: {published} MiB published, the subscriber was not closed; RSS max {} KiB \
                 (baseline {baseline})",
                sampler.max()
            );
            publisher.command(&["PUBLISH", "news", &message])?;
            published += 1;
        }
        drain_until_closed(&mut subscriber, Duration::from_secs(30))?;
        let max = sampler.stop();
        eprintln!(
            "{what}: subscriber closed after {published} MiB published; puerta RSS baseline \
             {baseline} KiB, max {max} KiB"
        );
        anyhow::ensure!(
            max <= bound,
            "{what}: RSS {max} KiB, over baseline {baseline} + 2 × {LIMIT_MB} MiB"
        );
        env.puerta
            .process
            .wait_for_output(&subscriber_addr, Duration::from_secs(5))?;
        // Nobody subscribes any more: the closed subscriber's node connection is gone too.
        let gone = Instant::now() + Duration::from_secs(10);
        while publisher.command(&["PUBLISH", "news", "x"])? != Frame::Integer(0) {
            anyhow::ensure!(
                Instant::now() < gone,
                "{what}: still subscribed after close"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    let trips = bystander.round_trips();
    thread::sleep(Duration::from_millis(200));
    let stats = bystander.stop()?;
    anyhow::ensure!(stats.round_trips > trips, "the bystander stopped");
    Ok(())
}

/// One published message bigger than the limit closes its subscriber while it is still arriving,
/// as Redis closes a subscriber whose output buffer a message takes past its hard limit; the proxy
/// never holds the whole message (a node accepts messages up to 512 MiB). Before, the relay read all
/// of it before charging it: RSS rose by the message's size, 96 MiB here, or more.
#[test]
fn a_message_bigger_than_the_limit_is_not_read_whole() -> anyhow::Result<()> {
    const LIMIT_MB: u64 = 16;
    let (env, admin) = patient_with_limit(LIMIT_MB)?;
    let pid = env.puerta.process.pid();
    // Redis would close the proxy's subscribed connection at its own 32 MiB pub/sub limit first.
    for port in env.cluster.ports() {
        env.cluster.cli(
            port,
            &[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "pubsub 0 0 0",
            ],
        )?;
    }
    let mut subscriber = subscribe(env.port(), None, "huge")?;
    let baseline = rss_kib(pid)?;
    let sampler = RssSampler::start(pid);
    // Straight to a node: through the proxy the PUBLISH would itself be read whole, as a command.
    let mut publisher = RespClient::connect(env.cluster.ports()[0])?;
    publisher.command(&["PUBLISH", "huge", &"m".repeat(96 * MIB)])?;
    let read = drain_until_closed(&mut subscriber, Duration::from_secs(30))?;
    let max = sampler.stop();
    eprintln!("subscriber read {read} bytes, puerta RSS baseline {baseline} KiB, max {max} KiB");
    anyhow::ensure!(
        closed_by_limit(admin)? == 1.0,
        "not closed for output_limit"
    );
    let bound = baseline + 2 * LIMIT_MB * 1024;
    anyhow::ensure!(
        max <= bound,
        "RSS {max} KiB, over baseline {baseline} + 2 × {LIMIT_MB} MiB"
    );
    Ok(())
}

/// A patient cluster (see [`PATIENT`]) behind Puerta with `client_output_limit_mb = limit_mb`, and
/// Puerta's admin address.
fn patient_with_limit(limit_mb: u64) -> anyhow::Result<(ProxiedCluster, SocketAddr)> {
    let extra = format!("{PATIENT}\nclient_output_limit_mb = {limit_mb}");
    ProxiedCluster::with_admin(RedisCluster::start_patient()?, &extra)
}

/// A raw connection subscribed to `channel` (after `HELLO <hello>` if given), its confirmation read.
fn subscribe(port: u16, hello: Option<&str>, channel: &str) -> anyhow::Result<TcpStream> {
    let mut sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = BytesMut::new();
    if let Some(version) = hello {
        encode_command(&words(&format!("HELLO {version}")), &mut out);
    }
    encode_command(&words(&format!("SUBSCRIBE {channel}")), &mut out);
    sock.write_all(&out)?;
    let confirmed = format!("{channel}\r\n:1\r\n");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got
        .windows(confirmed.len())
        .any(|w| w == confirmed.as_bytes())
    {
        let n = sock.read(&mut buf)?;
        anyhow::ensure!(n > 0, "closed before the subscription was confirmed");
        got.extend_from_slice(&buf[..n]);
    }
    Ok(sock)
}

/// Waits up to 10 s for puerta's RSS to be at most `bound` KiB. Memory freed goes back to the
/// system at once (allocations this big are mapped on their own); the wait covers the tasks that
/// still hold a frame finishing.
fn settles_under(pid: u32, bound: u64, when: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rss = rss_kib(pid)?;
    while rss > bound && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        rss = rss_kib(pid)?;
    }
    anyhow::ensure!(
        rss <= bound,
        "puerta RSS {rss} KiB {when}, bound {bound} KiB"
    );
    Ok(())
}

/// Pipelines `count` pairs of `GET` of the big key and `INCR {ol}seq` in one write, waits `idle`
/// before reading anything, then reads with `pause` before every read of at most 256 KiB. The INCR
/// replies count up, so a reply out of order or lost is seen, not only a truncated one. Ends with a
/// PING on the same connection, which must still be open.
fn fetch_pipelined(
    env: &ProxiedCluster,
    count: usize,
    idle: Option<Duration>,
    pause: Duration,
) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(env.puerta.listen)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = BytesMut::new();
    for _ in 0..count {
        encode_command(&words(&format!("GET {BIG_KEY}")), &mut out);
        encode_command(&words("INCR {ol}seq"), &mut out);
    }
    stream.write_all(&out)?;
    if let Some(idle) = idle {
        thread::sleep(idle);
    }
    let mut reader = Throttled {
        inner: &stream,
        pause,
    };
    let mut expected = format!("${VALUE_LEN}\r\n").into_bytes();
    expected.extend_from_slice(&big_value());
    expected.extend_from_slice(b"\r\n");
    let mut got = vec![0u8; expected.len()];
    for i in 1..=count {
        reader
            .read_exact(&mut got)
            .map_err(|e| anyhow::anyhow!("reply {i} of {count} (GET): {e}"))?;
        if let Some(at) = got.iter().zip(&expected).position(|(a, b)| a != b) {
            anyhow::bail!("reply {i} of {count} (GET) differs at byte {at}");
        }
        let incr = format!(":{i}\r\n").into_bytes();
        let mut got_incr = vec![0u8; incr.len()];
        reader
            .read_exact(&mut got_incr)
            .map_err(|e| anyhow::anyhow!("reply {i} of {count} (INCR): {e}"))?;
        anyhow::ensure!(
            got_incr == incr,
            "reply {i} of {count} (INCR): {:?}",
            got_incr.escape_ascii().to_string()
        );
    }
    (&stream).write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut pong = [0u8; 7];
    (&stream).read_exact(&mut pong)?;
    anyhow::ensure!(
        &pong == b"+PONG\r\n",
        "{:?}",
        pong.escape_ascii().to_string()
    );
    Ok(())
}

/// A reader that sleeps before each read and reads at most 256 KiB at a time: a client slower than
/// the nodes, so replies pile up in the proxy.
struct Throttled<'a> {
    inner: &'a TcpStream,
    pause: Duration,
}

impl Read for Throttled<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.pause.is_zero() {
            thread::sleep(self.pause);
        }
        let n = buf.len().min(256 * 1024);
        self.inner.read(&mut buf[..n])
    }
}

/// Not all the same byte, so a reply spliced from the wrong offsets does not compare equal.
fn big_value() -> Vec<u8> {
    (0..VALUE_LEN).map(|i| (i % 251) as u8).collect()
}

fn set_big_value(env: &ProxiedCluster) -> anyhow::Result<()> {
    let mut client = RespClient::connect(env.port())?;
    let set = vec![
        Bytes::from_static(b"SET"),
        Bytes::from_static(BIG_KEY.as_bytes()),
        Bytes::from(big_value()),
    ];
    let reply = client.pipeline(&[set])?;
    anyhow::ensure!(reply == [Frame::Simple("OK".into())], "SET: {reply:?}");
    Ok(())
}

fn words(line: &str) -> Vec<Bytes> {
    line.split(' ')
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Bulk(b) => format!("a bulk of {} bytes, not the value", b.len()),
        other => format!("{other:?}"),
    }
}

/// The counter of clients closed for the output limit; absent counts as 0 (a labelled counter may
/// appear only once incremented).
fn closed_by_limit(admin: SocketAddr) -> anyhow::Result<f64> {
    let (status, body) = http::get(admin, "/metrics")?;
    anyhow::ensure!(status == 200, "/metrics answered {status}");
    Ok(http::sample(&http::parse_metrics(&body)?, CLOSED, &[REASON]).unwrap_or(0.0))
}

/// Reads and discards until the proxy closes the socket (EOF or reset); the bytes read. What was
/// already in the kernel's buffers when the proxy closed arrives first.
fn drain_until_closed(stream: &mut TcpStream, within: Duration) -> anyhow::Result<u64> {
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(total),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("the socket was still open after {within:?} ({total} bytes read)")
}

/// The highest VmRSS seen, sampled every 50 ms: a peak between two metric scrapes must count too.
struct RssSampler {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let max = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (max.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(pid) {
                    m.fetch_max(kib, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler {
            max,
            stop,
            thread: Some(thread),
        }
    }

    fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Another client doing SET/GET round trips on its own connection the whole time; the first failure
/// (error reply, wrong value, closed connection) ends it and is what [`Bystander::stop`] returns.
struct Bystander {
    stop: Arc<AtomicBool>,
    /// Its failure, readable while the test runs: a failed bystander stops counting round trips.
    failed: Arc<Mutex<Option<String>>>,
    /// Round trips so far, readable while it runs: a test that fails early still says whether the
    /// bystander was stalled.
    done: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<anyhow::Result<BystanderStats>>>,
}

struct BystanderStats {
    round_trips: u64,
    slowest: Duration,
}

impl Bystander {
    fn start(port: u16) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(None));
        let (flag, count, failure) = (stop.clone(), done.clone(), failed.clone());
        let thread = thread::spawn(move || {
            let stats = Self::round_trips_until(&flag, &count, port);
            if let Err(e) = &stats {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
            stats
        });
        Bystander {
            stop,
            failed,
            done,
            thread: Some(thread),
        }
    }

    fn round_trips_until(
        flag: &AtomicBool,
        count: &AtomicU64,
        port: u16,
    ) -> anyhow::Result<BystanderStats> {
        let mut client = RespClient::connect(port)?;
        let mut stats = BystanderStats {
            round_trips: 0,
            slowest: Duration::ZERO,
        };
        while !flag.load(Ordering::Relaxed) {
            let n = stats.round_trips;
            let started = Instant::now();
            let set = client.call(&format!("SET {{ol}}probe {n}"))?;
            anyhow::ensure!(set == Frame::Simple("OK".into()), "SET #{n}: {set:?}");
            let get = client.call("GET {ol}probe")?;
            anyhow::ensure!(get == Frame::bulk(n.to_string()), "GET #{n}: {get:?}");
            stats.slowest = stats.slowest.max(started.elapsed());
            stats.round_trips += 1;
            count.store(stats.round_trips, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(5));
        }
        Ok(stats)
    }

    fn round_trips(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    fn stop(mut self) -> anyhow::Result<BystanderStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("stopped once")
            .join()
            .map_err(|_| anyhow::anyhow!("the bystander panicked"))?
            .map_err(|e| anyhow::anyhow!("a bystander round trip failed: {e}"))
    }
}

fn failure_of(failed: &Mutex<Option<String>>) -> Option<String> {
    failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A test that fails early must not leave the thread running against a cluster that is gone.
impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
