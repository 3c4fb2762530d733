//! The backend every L4 target forwards to: a small tokio server that answers MongoDB `hello` (so it
//! passes Puerta's health checks and serves the connect-hello-close workload) and otherwise speaks a
//! bench preamble that selects echo (ping-pong, idle), sink (bulk: count bytes, report the total) or
//! stall (read nothing more, hold the connection until told to let go: a mongos that stopped
//! reading).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use testkit::opmsg;

/// 16 bytes a bench client sends first: 15 bytes of magic and the mode byte.
pub const MAGIC: &[u8; 15] = b"PUERTA-BENCH-v1";
pub const MODE_ECHO: u8 = b'E';
pub const MODE_SINK: u8 = b'S';
pub const MODE_STALL: u8 = b'T';

pub fn preamble(mode: u8) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..15].copy_from_slice(MAGIC);
    p[15] = mode;
    p
}

/// A running backend; the runtime (and every connection) stops when this is dropped.
pub struct Backend {
    pub addr: SocketAddr,
    /// Bumped to make every stalled connection close.
    release: watch::Sender<u64>,
    _runtime: tokio::runtime::Runtime,
}

impl Backend {
    pub fn start() -> anyhow::Result<Backend> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-backend")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let (release, released) = watch::channel(0);
        runtime.spawn(accept_loop(listener, released));
        Ok(Backend {
            addr,
            release,
            _runtime: runtime,
        })
    }

    /// Closes every stalled connection (they never read what was pushed at them).
    pub fn release_stalled(&self) {
        self.release.send_modify(|generation| *generation += 1);
    }
}

async fn accept_loop(listener: TcpListener, released: watch::Receiver<u64>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let released = released.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, released).await;
                });
            }
            // Out of fds under the 10k-connection load: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn serve(mut stream: TcpStream, released: watch::Receiver<u64>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut first = [0u8; 16];
    stream.read_exact(&mut first).await?;
    let (_, _, opcode) = opmsg::parse_header(&first);
    if opcode == opmsg::OP_MSG {
        return answer_hellos(stream, first).await;
    }
    if &first[..15] != MAGIC {
        return Ok(());
    }
    match first[15] {
        MODE_ECHO => echo(stream).await,
        MODE_SINK => sink(stream).await,
        MODE_STALL => {
            stall(stream, released).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Replies `hello`/`ok: 1` to every OP_MSG, whatever it asks, until the peer closes.
async fn answer_hellos(mut stream: TcpStream, mut header: [u8; 16]) -> std::io::Result<()> {
    let mut body = Vec::new();
    loop {
        let (len, request_id, _) = opmsg::parse_header(&header);
        body.resize(len.saturating_sub(opmsg::HEADER_LEN).min(16 << 20), 0);
        stream.read_exact(&mut body).await?;
        stream.write_all(&opmsg::hello_reply(request_id)).await?;
        if stream.read_exact(&mut header).await.is_err() {
            return Ok(());
        }
    }
}

async fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Reads nothing more until released, then closes (with unread bytes: a reset).
async fn stall(stream: TcpStream, mut released: watch::Receiver<u64>) {
    released.mark_unchanged();
    let _ = released.changed().await;
    drop(stream);
}

async fn sink(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    stream.write_all(&total.to_le_bytes()).await?;
    stream.shutdown().await
}
