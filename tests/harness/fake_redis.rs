//! A scriptable fake Redis Cluster for fault tests: each node answers what Puerta asks during topology
//! discovery (`CLUSTER SLOTS`, plus PING / READONLY / AUTH), serves GET / SET / DEL / MGET from memory for the
//! slots it owns (MOVED otherwise, like a real node), answers `BLPOP … timeout` with a nil after the
//! timeout (it has no lists), and can be switched at any time to a [`Fault`].
//!
//! The nodes run on a tokio runtime in a thread of their own, so both sync and async tests can use
//! them; dropping the [`FakeCluster`] stops the runtime and closes every socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use puerta::redis::command::slots::key_slot;
use puerta::redis::resp::{parse_command, Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

mod answer;
use answer::{answer, blocking_wait};

/// How a node misbehaves from the next command on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers normally.
    Healthy,
    /// Reads every command and never answers; a connection that hung stays hung (a stuck process).
    Hang,
    /// Writes the first half of the reply, then resets the connection (SO_LINGER 0, RST).
    ResetMidReply,
    /// Answers `!!oops`, which is no RESP type at all, and keeps the connection open.
    Garbage,
    /// Answers with a bulk length far over any sane limit (`$99999999999`), and keeps it open.
    OversizedBulk,
}

/// What one node knows and counts.
#[derive(Debug)]
struct NodeState {
    fault: Fault,
    data: HashMap<Bytes, Bytes>,
}

pub struct FakeNode {
    pub addr: SocketAddr,
    state: Arc<Mutex<NodeState>>,
    /// Client connections currently open (Puerta's pool, refresh and dedicated connections).
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    /// Connections that hung and are still open: the proxy has not given up on them yet.
    hung: Arc<AtomicUsize>,
}

impl FakeNode {
    pub fn set_fault(&self, fault: Fault) {
        self.lock().fault = fault;
    }

    /// The value stored under `key`, read directly (not through Puerta).
    pub fn value(&self, key: &str) -> Option<Bytes> {
        self.lock().data.get(key.as_bytes()).cloned()
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn hung_connections(&self) -> usize {
        self.hung.load(Ordering::SeqCst)
    }

    pub fn accepted_connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One contiguous slot range and the node (index into `nodes`) that owns it.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub first: u16,
    pub last: u16,
    pub node: usize,
}

/// The whole cluster layout, known to every node.
struct Layout {
    owners: Vec<Owner>,
    addrs: Vec<SocketAddr>,
}

impl Layout {
    fn owner_of(&self, slot: u16) -> Option<usize> {
        self.owners
            .iter()
            .find(|o| (o.first..=o.last).contains(&slot))
            .map(|o| o.node)
    }

    /// The `CLUSTER SLOTS` reply: `[[first, last, [ip, port, id]], ...]`.
    fn cluster_slots(&self) -> Frame {
        let entries = self
            .owners
            .iter()
            .map(|o| {
                let addr = self.addrs[o.node];
                Frame::Array(vec![
                    Frame::Integer(o.first.into()),
                    Frame::Integer(o.last.into()),
                    Frame::Array(vec![
                        Frame::bulk(addr.ip().to_string()),
                        Frame::Integer(addr.port().into()),
                        Frame::bulk(format!("{:040x}", o.node + 1)),
                    ]),
                ])
            })
            .collect();
        Frame::Array(entries)
    }
}

pub struct FakeCluster {
    pub nodes: Vec<FakeNode>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeCluster {
    /// Two masters: node 0 owns slots 0-8191, node 1 owns 8192-16383.
    pub fn two_masters() -> anyhow::Result<FakeCluster> {
        Self::start(
            2,
            &[
                Owner {
                    first: 0,
                    last: 8191,
                    node: 0,
                },
                Owner {
                    first: 8192,
                    last: 16383,
                    node: 1,
                },
            ],
        )
    }

    /// `count` nodes on free loopback ports, slots assigned by `owners`.
    pub fn start(count: usize, owners: &[Owner]) -> anyhow::Result<FakeCluster> {
        let listeners = (0..count)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<std::io::Result<Vec<_>>>()?;
        let layout = Arc::new(Layout {
            owners: owners.to_vec(),
            addrs: addrs.clone(),
        });
        let nodes: Vec<FakeNode> = addrs
            .iter()
            .map(|addr| FakeNode {
                addr: *addr,
                state: Arc::new(Mutex::new(NodeState {
                    fault: Fault::Healthy,
                    data: HashMap::new(),
                })),
                open: Arc::new(AtomicUsize::new(0)),
                accepted: Arc::new(AtomicUsize::new(0)),
                hung: Arc::new(AtomicUsize::new(0)),
            })
            .collect();
        let servers: Vec<Server> = nodes
            .iter()
            .enumerate()
            .map(|(index, n)| Server {
                index,
                state: n.state.clone(),
                open: n.open.clone(),
                accepted: n.accepted.clone(),
                hung: n.hung.clone(),
                layout: layout.clone(),
            })
            .collect();
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                for (listener, server) in listeners.into_iter().zip(servers) {
                    let listener = TcpListener::from_std(listener).expect("register listener");
                    tokio::spawn(accept_loop(listener, Arc::new(server)));
                }
                let _ = stopped.await;
            });
        });
        Ok(FakeCluster {
            nodes,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `["127.0.0.1:P", ...]` as TOML array items for `cluster_nodes`.
    pub fn seeds_toml(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"{}\"", n.addr))
            .collect();
        seeds.join(", ")
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A key (`{tag}...` or plain) whose slot lies in `first..=last`, distinct per `n`.
pub fn key_in(first: u16, last: u16, n: usize) -> String {
    (0..)
        .map(|i| format!("key:{n}:{i}"))
        .find(|k| (first..=last).contains(&key_slot(k.as_bytes())))
        .expect("some key hashes into any range")
}

struct Server {
    index: usize,
    state: Arc<Mutex<NodeState>>,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    hung: Arc<AtomicUsize>,
    layout: Arc<Layout>,
}

async fn accept_loop(listener: TcpListener, server: Arc<Server>) {
    loop {
        let sock = crate::accept::next(&listener).await;
        server.accepted.fetch_add(1, Ordering::SeqCst);
        server.open.fetch_add(1, Ordering::SeqCst);
        let server = server.clone();
        tokio::spawn(async move {
            let _ = serve(sock, &server).await;
            server.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// What to do after a command.
enum Step {
    Reply(Frame),
    /// A blocking command: the reply comes after a while.
    Later(Duration, Frame),
    Raw(&'static [u8]),
    Hang,
    Reset(Frame),
}

async fn serve(mut sock: TcpStream, server: &Server) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::new();
    loop {
        while let Some(frame) = parse_command(&mut buf, &Limits::default())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?
        {
            let args = frame.into_args().unwrap_or_default();
            match step(server, &args) {
                Step::Reply(reply) => reply.encode(&mut out),
                Step::Later(wait, reply) => {
                    sock.write_all(&out).await?;
                    out.clear();
                    tokio::time::sleep(wait).await;
                    reply.encode(&mut out);
                }
                Step::Raw(bytes) => out.extend_from_slice(bytes),
                Step::Hang => {
                    sock.write_all(&out).await?;
                    server.hung.fetch_add(1, Ordering::SeqCst);
                    let drained = discard_until_eof(sock).await;
                    server.hung.fetch_sub(1, Ordering::SeqCst);
                    return drained;
                }
                Step::Reset(reply) => {
                    sock.write_all(&out).await?;
                    let mut full = BytesMut::new();
                    reply.encode(&mut full);
                    // At least one byte, never the whole reply.
                    let half = (full.len() / 2).max(1);
                    sock.write_all(&full[..half]).await?;
                    sock.flush().await?;
                    sock.set_zero_linger()?;
                    return Ok(());
                }
            }
        }
        if !out.is_empty() {
            sock.write_all(&out).await?;
            out.clear();
        }
        if sock.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// A stuck process: the socket stays open and is drained, nothing is ever answered.
async fn discard_until_eof(mut sock: TcpStream) -> std::io::Result<()> {
    let mut sink = vec![0u8; 64 * 1024];
    while sock.read(&mut sink).await? > 0 {}
    Ok(())
}

fn step(server: &Server, args: &[Bytes]) -> Step {
    let fault = server.state.lock().unwrap_or_else(|e| e.into_inner()).fault;
    match fault {
        Fault::Healthy => match blocking_wait(args) {
            Some(wait) => Step::Later(wait, Frame::NullArray),
            None => Step::Reply(answer(server, args)),
        },
        Fault::Hang => Step::Hang,
        Fault::ResetMidReply => Step::Reset(answer(server, args)),
        Fault::Garbage => Step::Raw(b"!!oops\r\n"),
        Fault::OversizedBulk => Step::Raw(b"$99999999999\r\n"),
    }
}

/// Waits until `cond` holds, polling; fails after `within`.
pub fn wait_until(
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    while !cond() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{what}: not reached within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
