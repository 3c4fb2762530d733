//! MongoDB-mode fixtures: `secantusd-py` servers standing in for mongos routers, a hello-aware echo
//! backend for byte-level tests, and Puerta configs for them.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use testkit::opmsg::{ok_reply, OP_MSG};

use crate::{free_port, loopback, py_script, python, wait_for_port, Process};

/// The `secantusd-py` launcher installed next to the venv's Python.
pub fn secantusd() -> std::path::PathBuf {
    python()
        .parent()
        .map(|dir| dir.join("secantusd-py"))
        .unwrap_or_else(|| "secantusd-py".into())
}

/// One in-memory MongoDB-wire server. Stand-ins share no data, which is what lets tests notice a
/// client whose connections were split across routers.
pub struct StandIn {
    pub port: u16,
    pub process: Process,
}

impl StandIn {
    pub fn start() -> anyhow::Result<StandIn> {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> anyhow::Result<StandIn> {
        let mut cmd = Command::new(secantusd());
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--storage-path", ":memory:", "--standalone"]);
        let process = Process::captured(&format!("secantusd-{port}"), cmd)?;
        if let Err(e) = wait_for_port(loopback(port), Duration::from_secs(60)) {
            anyhow::bail!("{e}; output:\n{}", process.output());
        }
        Ok(StandIn { port, process })
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Runs `tests/py/<script>` with `args`; fails with its output unless it exits 0. Returns stdout.
pub fn run_py(script: &str, args: &[String], within: Duration) -> anyhow::Result<String> {
    let mut cmd = Command::new(python());
    cmd.arg(py_script(script)).args(args);
    let mut child = Process::captured(script, cmd)?;
    let code = match child.wait_exit(within) {
        Ok(code) => code,
        Err(e) => anyhow::bail!("{e}; output:\n{}", child.output()),
    };
    // Output threads may lag the exit by a moment.
    std::thread::sleep(Duration::from_millis(100));
    let output = child.output();
    anyhow::ensure!(code == Some(0), "{script} exited {code:?}:\n{output}");
    Ok(output)
}

/// Stores `name` in each stand-in (`puerta_test.whoami`), so a probe can tell which one it reached.
pub fn seed_names(stand_ins: &[(&StandIn, &str)]) -> anyhow::Result<()> {
    let mut args = vec!["seed".to_string()];
    args.extend(
        stand_ins
            .iter()
            .map(|(s, n)| format!("{}={n}", s.address())),
    );
    run_py("mongo_whoami.py", &args, Duration::from_secs(60)).map(|_| ())
}

/// For each source address (127.x.y.z), one fresh connection through `proxy` from that address;
/// returns the stand-in name it reached (or `error: ...`), in order.
pub fn probe(proxy: SocketAddr, sources: &[String]) -> anyhow::Result<Vec<String>> {
    per_source(&["probe".to_string(), proxy.to_string()], sources)
}

/// Per source address: a document inserted through proxy `a` and looked for through proxy `b` on
/// fresh connections from that address; `ok` or the error, in `sources` order.
pub fn roundtrip(a: SocketAddr, b: SocketAddr, sources: &[String]) -> anyhow::Result<Vec<String>> {
    let args = ["roundtrip".to_string(), a.to_string(), b.to_string()];
    per_source(&args, sources)
}

/// Runs `mongo_whoami.py args... sources...` and reads its `SRC -> result` lines.
fn per_source(args: &[String], sources: &[String]) -> anyhow::Result<Vec<String>> {
    let mut args = args.to_vec();
    args.extend(sources.iter().cloned());
    let out = run_py("mongo_whoami.py", &args, Duration::from_secs(120))?;
    let mut results = Vec::new();
    for src in sources {
        let prefix = format!("{src} -> ");
        let line = out
            .lines()
            .find(|l| l.starts_with(&prefix))
            .ok_or_else(|| anyhow::anyhow!("no result for {src} in:\n{out}"))?;
        results.push(line[prefix.len()..].trim().to_string());
    }
    Ok(results)
}

/// The data path the MongoDB suites run with. The same test files are compiled into three targets each
/// (`mongodb_flows`, `mongodb_flows_kernel`, `mongodb_flows_splice`, …): targets whose name ends in
/// `_kernel` run with `forwarding = "kernel"`, those ending in `_splice` with `"splice"`, the others
/// with `"userspace"`, so the suite is parametrized, not copied.
/// `PUERTA_TEST_FORWARDING` overrides both.
pub fn forwarding() -> String {
    if let Ok(forced) = std::env::var("PUERTA_TEST_FORWARDING") {
        return forced;
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.contains("_kernel-") || name.ends_with("_kernel") {
        "kernel".into()
    } else if name.contains("_splice-") || name.ends_with("_splice") {
        "splice".into()
    } else {
        "userspace".into()
    }
}

/// A Puerta MongoDB-mode config; `extra` is appended to the `[mongodb]` section, after the
/// `forwarding` line of [`forwarding`] (unless `extra` sets it).
pub fn puerta_config(
    listen: SocketAddr,
    max_connections: usize,
    backends: &[String],
    extra: &str,
) -> String {
    let list = backends
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let forwarding = if extra.contains("forwarding") {
        String::new()
    } else {
        format!("forwarding = \"{}\"\n", forwarding())
    };
    format!(
        "mode = \"mongodb\"\nlisten_addr = \"{listen}\"\nmax_connections = {max_connections}\n\
         drain_timeout_sec = 60\n\n[mongodb]\nmongos_endpoints = [{list}]\n{forwarding}{extra}\n"
    )
}

/// How [`EchoBackend`] answers payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Writes every chunk back as it arrives, then half-closes after the client's FIN.
    Stream,
    /// Reads until the client's FIN, then writes everything back and closes: proves half-close.
    AfterEof,
}

/// A TCP echo server in the test process that also answers Puerta's `hello` health checks with
/// `{ok: 1}`, so Puerta routes to it. Threads end with the test process.
/// Sends `payload` through an echoing path and checks it comes back whole.
pub fn echo(stream: &mut TcpStream, payload: &[u8]) -> anyhow::Result<()> {
    stream.write_all(payload)?;
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back)?;
    anyhow::ensure!(back == payload, "echo mismatch");
    Ok(())
}

pub struct EchoBackend {
    pub port: u16,
}

impl EchoBackend {
    pub fn start(mode: Echo) -> anyhow::Result<EchoBackend> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                std::thread::spawn(move || {
                    let _ = serve_echo(conn, mode);
                });
            }
        });
        Ok(EchoBackend { port })
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn serve_echo(mut conn: TcpStream, mode: Echo) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = conn.read(&mut buf)?;
    // Health checks of a PROXY-protocol endpoint start with a LOCAL header: drop it, then expect hello.
    if let Some(skip) = local_proxy_header_len(&buf[..n]) {
        buf.copy_within(skip..n, 0);
        n -= skip;
        if n == 0 {
            n = conn.read(&mut buf)?;
        }
    }
    if let Some(reply) = hello_reply(&buf[..n]) {
        conn.write_all(&reply)?;
        return Ok(());
    }
    let mut kept = Vec::new();
    let mut chunk = &buf[..n];
    loop {
        if chunk.is_empty() {
            break;
        }
        match mode {
            Echo::Stream => conn.write_all(chunk)?,
            Echo::AfterEof => kept.extend_from_slice(chunk),
        }
        let n = conn.read(&mut buf)?;
        chunk = &buf[..n];
    }
    conn.write_all(&kept)?;
    conn.shutdown(Shutdown::Write)
}

/// `{ok: 1.0}` in answer to an OP_MSG that mentions `hello`; `None` for anything else.
fn hello_reply(first: &[u8]) -> Option<Vec<u8>> {
    let is_op_msg = first.len() >= 21 && first[12..16] == OP_MSG.to_le_bytes();
    if !is_op_msg || !first.windows(5).any(|w| w == b"hello") {
        return None;
    }
    let request_id = i32::from_le_bytes([first[4], first[5], first[6], first[7]]);
    Some(ok_reply(request_id))
}

/// Length of a PROXY v1 `UNKNOWN` or v2 `LOCAL` header at the start of `data` (what Puerta's own health
/// checks send); client flows' headers are left in the data so tests can see them echoed.
fn local_proxy_header_len(data: &[u8]) -> Option<usize> {
    const V1_LOCAL: &[u8] = b"PROXY UNKNOWN\r\n";
    const V2_LOCAL: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    [V1_LOCAL, V2_LOCAL]
        .into_iter()
        .find(|h| data.starts_with(h))
        .map(<[u8]>::len)
}
