//! Redis mode with TLS on both legs, in front of a 6-node cluster whose nodes speak only TLS (to
//! clients, on the cluster bus and for replication) and require client certificates. Puerta
//! requires client certificates too (mutual TLS), signed by the cluster's CA: the test kit's.

use std::process::Command;
use std::time::Duration;

use puerta_tests::http;
use puerta_tests::redis_cluster::ProxiedCluster;
use puerta_tests::{py_script, python, Process};

/// `redis-cli --tls` towards Puerta with only the CA: no client certificate.
fn cli_without_certificate(env: &ProxiedCluster, args: &[&str]) -> std::process::Output {
    let tls = env.cluster.tls().expect("a TLS cluster");
    Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(tls.pki.ca_file())
        .args(["-p", &env.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli")
}

fn metric(admin: std::net::SocketAddr, line_start: &str) -> anyhow::Result<f64> {
    let (_, text) = http::get(admin, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {line_start} on /metrics"))
}

const CLIENT_EXPIRY: &str = "puerta_tls_certificate_expiry_timestamp_seconds{side=\"client\"}";
const BACKEND_EXPIRY: &str = "puerta_tls_certificate_expiry_timestamp_seconds{side=\"backend\"}";

#[test]
fn clients_reach_a_tls_cluster_through_tls() -> anyhow::Result<()> {
    let (env, admin) = ProxiedCluster::start_tls("")?;
    assert_eq!(env.cli(&["SET", "tls:a", "1"])?.trim(), "OK");
    assert_eq!(env.cli(&["GET", "tls:a"])?.trim(), "1");
    assert_eq!(
        env.cli(&["MSET", "tls:b", "2", "tls:c", "3", "tls:d", "4"])?
            .trim(),
        "OK"
    );
    assert_eq!(
        env.cli(&["MGET", "tls:b", "tls:c", "tls:d"])?.trim(),
        "2\n3\n4"
    );
    for mode in ["default", "resp2"] {
        env.python_ok("redis_clients.py", &[mode])?;
    }
    env.node_ok("node_redis.mjs", &["default"])?;

    // Mutual TLS: without a certificate from the CA the handshake fails, and nothing is served.
    let refused = cli_without_certificate(&env, &["PING"]);
    let said = String::from_utf8_lossy(&refused.stdout).into_owned()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(!said.contains("PONG"), "{said}");
    env.puerta
        .process
        .wait_for_output("TLS handshake with client", Duration::from_secs(5))?;

    // Both certificates' expiry is on /metrics (rcgen's default: 4096-01-01).
    assert_eq!(metric(admin, CLIENT_EXPIRY)?, 67_090_118_400.0);
    assert_eq!(metric(admin, BACKEND_EXPIRY)?, 67_090_118_400.0);
    Ok(())
}

#[test]
fn a_slot_moved_during_a_live_migration_is_followed_over_tls() -> anyhow::Result<()> {
    // Only redirects (not the periodic refresh) tell the proxy about moved slots.
    let (env, _) = ProxiedCluster::start_tls("slot_refresh_interval_sec = 3600")?;
    let dir = tempfile::tempdir()?;
    let stop = dir.path().join("stop");
    let workload = env.workload(&stop, 10, "strict")?;
    std::thread::sleep(Duration::from_secs(2));
    let masters = env.cluster.masters()?;
    env.cluster.reshard(masters[0], masters[1], 500)?;
    std::thread::sleep(Duration::from_secs(1));
    println!("{}", env.finish_workload(workload, &stop)?);
    let moved = env.proxy_counter("moved_redirects")?;
    assert!(
        moved > 0,
        "the migration must have produced MOVED redirects"
    );
    Ok(())
}

/// `tls_peer.py` towards Puerta, with the cluster's client certificate.
fn peer(env: &ProxiedCluster, stop_file: Option<&std::path::Path>) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(py_script("tls_peer.py"))
        .arg("127.0.0.1")
        .arg(env.port().to_string());
    if let Some(stop) = stop_file {
        cmd.arg(stop);
    }
    cmd.envs(env.cluster.tls().expect("a TLS cluster").client_env());
    cmd
}

fn served_name(env: &ProxiedCluster) -> anyhow::Result<String> {
    let out = peer(env, None).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text.trim().to_string())
}

#[test]
fn sighup_serves_a_new_certificate_to_new_connections_and_keeps_old_ones() -> anyhow::Result<()> {
    let (env, admin) = ProxiedCluster::start_tls("")?;
    let tls = env.cluster.tls().expect("a TLS cluster");
    assert_eq!(served_name(&env)?, "CN=puerta");
    let dir = tempfile::tempdir()?;
    let stop = dir.path().join("stop");
    let mut held = Process::captured("held", peer(&env, Some(&stop)))?;
    held.wait_for_output("CN=puerta", Duration::from_secs(10))?;

    let next = tls.pki.issue_expiring("puerta-next", 2040, 1, 1)?;
    std::fs::copy(&next.cert, &tls.puerta.cert)?;
    std::fs::copy(&next.key, &tls.puerta.key)?;
    env.puerta.process.signal("HUP");
    env.puerta
        .process
        .wait_for_output("certificate re-read", Duration::from_secs(10))?;
    assert_eq!(served_name(&env)?, "CN=puerta-next");
    assert_eq!(metric(admin, CLIENT_EXPIRY)?, 2_208_988_800.0);
    held.finish(&stop, "HELD OK", Duration::from_secs(10), || {
        env.puerta.process.output()
    })?;

    // A key that does not load is refused; the certificate in use stays.
    std::fs::write(&tls.puerta.key, "not a key")?;
    env.puerta.process.signal("HUP");
    env.puerta
        .process
        .wait_for_output("redis.tls not reloaded", Duration::from_secs(10))?;
    assert_eq!(served_name(&env)?, "CN=puerta-next");
    assert_eq!(env.cli(&["PING"])?.trim(), "PONG");
    Ok(())
}

#[test]
fn nodes_signed_by_another_ca_are_named_in_the_log_and_puerta_stays_up() -> anyhow::Result<()> {
    let cluster = puerta_tests::redis_cluster::RedisCluster::start_tls()?;
    let tls = cluster.tls().expect("a TLS cluster");
    let dir = tempfile::tempdir()?;
    let stranger = testkit::tls::Pki::new(dir.path(), "stranger")?;
    let extra = format!(
        "[redis.backend_tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
        stranger.ca_file(),
        tls.nodes.cert,
        tls.nodes.key
    );
    let (env, _) = ProxiedCluster::with_admin(cluster, &extra)?;
    let seed = env.cluster.ports()[0];
    env.puerta.process.wait_for_output(
        &format!(
            "TLS handshake with 127.0.0.1:{seed} failed: invalid peer certificate: UnknownIssuer"
        ),
        Duration::from_secs(15),
    )?;
    // What needs no node is still answered; what does gets an error, not a hang or a crash.
    assert_eq!(env.cli(&["PING"])?.trim(), "PONG");
    let get = env.cli(&["GET", "tls:x"])?;
    assert!(get.contains("CLUSTERDOWN") || get.contains("ERR"), "{get}");
    assert_eq!(env.cli(&["PING"])?.trim(), "PONG");
    Ok(())
}

/// `--check` loads the TLS files as start-up would, and start-up refuses them the same way: exit
/// code 2 and the file named.
#[test]
fn tls_files_that_do_not_load_stop_check_and_start_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = testkit::tls::Pki::new(dir.path(), "check")?;
    let good = pki.issue("good")?;
    let config = dir.path().join("puerta.toml");
    let listen = testkit::loopback(testkit::free_port());
    let write = |key: &std::path::Path| {
        std::fs::write(
            &config,
            format!(
                "mode = \"redis\"\nlisten_addr = \"{listen}\"\nadmin_addr = \"off\"\n\
                 [redis]\ncluster_nodes = [\"127.0.0.1:2\"]\n\
                 [redis.tls]\ncert_file = {:?}\nkey_file = {key:?}\n",
                good.cert
            ),
        )
    };
    let run = |extra: &[&str]| -> anyhow::Result<(Option<i32>, String)> {
        let out = Command::new(puerta_tests::puerta_bin())
            .arg("--config")
            .arg(&config)
            .args(extra)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        Ok((out.status.code(), text))
    };
    write(&good.key)?;
    let (code, text) = run(&["--check"])?;
    assert_eq!(code, Some(0), "{text}");
    let missing = dir.path().join("missing.key");
    write(&missing)?;
    for extra in [&["--check"][..], &[]] {
        let (code, text) = run(extra)?;
        assert_eq!(code, Some(2), "{extra:?}: {text}");
        assert!(
            text.contains("missing.key: cannot read"),
            "{extra:?}: {text}"
        );
    }
    Ok(())
}

/// `[redis.tls] listen_addr`: TLS on its own port while `listen_addr` stays plain, both taken over
/// by the next instance in a hand-over.
#[test]
fn plain_and_tls_side_by_side_and_both_go_along_in_a_handover() -> anyhow::Result<()> {
    use testkit::redis_cluster::cli_with;
    let cluster = puerta_tests::redis_cluster::RedisCluster::start_tls()?;
    let tls = cluster.tls().expect("a TLS cluster");
    let dir = tempfile::tempdir()?;
    let (listen, tls_listen) = (
        testkit::loopback(testkit::free_port()),
        testkit::loopback(testkit::free_port()),
    );
    let extra = format!(
        "[redis.tls]\nlisten_addr = \"{tls_listen}\"\ncert_file = {:?}\nkey_file = {:?}\n",
        tls.puerta.cert, tls.puerta.key
    );
    let config = format!(
        "handover_socket = {:?}\nadmin_addr = \"off\"\n{}",
        dir.path().join("handover.sock"),
        cluster.puerta_config(listen, &extra)
    );
    let plain = |args: &[&str]| cli_with(listen.port(), None, args);
    let secure = |args: &[&str]| cli_with(tls_listen.port(), cluster.tls_args(), args);

    let mut first = puerta_tests::Puerta::start(&config, listen)?;
    testkit::wait_for_port(tls_listen, Duration::from_secs(10))?;
    assert_eq!(plain(&["SET", "side:a", "1"])?.trim(), "OK");
    assert_eq!(secure(&["GET", "side:a"])?.trim(), "1");
    let plain_at_the_tls_door = cli_with(tls_listen.port(), None, &["PING"]);
    assert!(
        plain_at_the_tls_door
            .as_ref()
            .map_or(true, |out| !out.contains("PONG")),
        "{plain_at_the_tls_door:?}"
    );

    first
        .process
        .wait_for_output("offering the listening sockets", Duration::from_secs(30))?;
    let next = puerta_tests::Puerta::start(&config, listen)?;
    next.process.wait_for_output(
        &format!(
            "took over the listening sockets of pid {}",
            first.process.pid()
        ),
        Duration::from_secs(30),
    )?;
    let code = first.process.wait_exit(Duration::from_secs(30))?;
    assert_eq!(code, Some(0), "{}", first.process.output());
    assert_eq!(secure(&["SET", "side:b", "2"])?.trim(), "OK");
    assert_eq!(plain(&["GET", "side:b"])?.trim(), "2");
    let log = next.process.output();
    assert!(!log.contains("cannot listen"), "{log}");
    Ok(())
}

/// Counts the TLS records Puerta sends a client: a relay between them that reads the record
/// headers of Puerta's side of the stream (each 5 bytes: type, version, length).
struct RecordCounter {
    addr: std::net::SocketAddr,
    records: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RecordCounter {
    async fn start(puerta: std::net::SocketAddr) -> anyhow::Result<RecordCounter> {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let records = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = records.clone();
        tokio::spawn(async move {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(upstream) = tokio::net::TcpStream::connect(puerta).await else {
                return;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut up_read, mut up_write) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut up_write).await;
            });
            // Bytes still to skip of the current record's body, and the header being read.
            let (mut body_left, mut header) = (0usize, Vec::new());
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = up_read.read(&mut buf).await {
                if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                let mut at = 0;
                while at < n {
                    if body_left > 0 {
                        let skip = body_left.min(n - at);
                        body_left -= skip;
                        at += skip;
                        continue;
                    }
                    header.push(buf[at]);
                    at += 1;
                    if header.len() == 5 {
                        body_left = usize::from(u16::from_be_bytes([header[3], header[4]]));
                        counted.fetch_add(1, Ordering::SeqCst);
                        header.clear();
                    }
                }
            }
        });
        Ok(RecordCounter { addr, records })
    }

    fn take(&self) -> usize {
        self.records.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

async fn read_exactly(stream: &mut puerta::tls::Stream, want: usize) -> anyhow::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

/// A pipeline's replies leave in one write per scheduler turn, so in a few TLS records, not one
/// per command (each record costs a MAC, padding and a header).
#[test]
fn pipelined_replies_share_tls_records() -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let (env, _) = ProxiedCluster::start_tls("")?;
    assert_eq!(env.cli(&["SET", "tls:records", "v"])?.trim(), "OK");
    let tls = env.cluster.tls().expect("a TLS cluster");
    let client_tls = puerta::config::BackendTls {
        ca_file: Some(tls.pki.ca_file()),
        cert_file: Some(tls.nodes.cert.clone()),
        key_file: Some(tls.nodes.key.clone()),
        server_name: None,
        insecure_skip_verify: false,
    };
    let connector = puerta::tls::client::Connector::load(&client_tls)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let counter = RecordCounter::start(env.puerta.listen).await?;
        let tcp = tokio::net::TcpStream::connect(counter.addr).await?;
        let mut stream = connector
            .connect(&env.puerta.listen.to_string(), tcp)
            .await
            .map_err(anyhow::Error::msg)?;
        // The handshake and its session tickets are not counted.
        stream.write_all(b"PING\r\n").await?;
        stream.flush().await?;
        read_exactly(&mut stream, 7).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        counter.take();
        for (command, reply) in [
            (&b"PING\r\n"[..], &b"+PONG\r\n"[..]),
            (b"GET tls:records\r\n", b"$1\r\nv\r\n"),
        ] {
            stream.write_all(&command.repeat(100)).await?;
            stream.flush().await?;
            let got = read_exactly(&mut stream, reply.len() * 100).await?;
            assert_eq!(got, reply.repeat(100));
            tokio::time::sleep(Duration::from_millis(100)).await;
            let records = counter.take();
            println!(
                "100 x {:?}: {records} records",
                String::from_utf8_lossy(command).trim()
            );
            assert!(
                (1..50).contains(&records),
                "{records} TLS records for 100 pipelined replies"
            );
        }
        Ok::<_, anyhow::Error>(())
    })
}
