//! A mongos stand-in that can be switched to a fault while Puerta runs: it answers OP_MSG `hello`
//! health checks and echoes data connections while healthy; `Hang` makes it accept and read without
//! ever answering (health checks included, existing connections too); `ResetMidStream` makes new data
//! connections echo half of their first chunk and then reset (health checks still pass, so Puerta
//! keeps routing to it). Must be started inside a tokio runtime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use testkit::opmsg::{ok_reply, HEADER_LEN, OP_MSG};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MongosFault {
    Healthy,
    Hang,
    ResetMidStream,
}

#[derive(Clone)]
pub struct FakeMongos {
    pub addr: SocketAddr,
    fault: Arc<Mutex<MongosFault>>,
    /// Data connections reset so far.
    resets: Arc<AtomicUsize>,
    /// Data (non-health-check) connections accepted so far.
    data_connections: Arc<AtomicUsize>,
}

impl FakeMongos {
    pub async fn start() -> anyhow::Result<FakeMongos> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mongos = FakeMongos {
            addr: listener.local_addr()?,
            fault: Arc::new(Mutex::new(MongosFault::Healthy)),
            resets: Arc::new(AtomicUsize::new(0)),
            data_connections: Arc::new(AtomicUsize::new(0)),
        };
        let server = mongos.clone();
        tokio::spawn(async move {
            loop {
                let sock = crate::accept::next(&listener).await;
                tokio::spawn(server.clone().serve(sock));
            }
        });
        Ok(mongos)
    }

    pub fn set_fault(&self, fault: MongosFault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    pub fn data_connections(&self) -> usize {
        self.data_connections.load(Ordering::SeqCst)
    }

    pub fn resets(&self) -> usize {
        self.resets.load(Ordering::SeqCst)
    }

    fn fault(&self) -> MongosFault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn serve(self, sock: TcpStream) {
        let mut header = [0u8; HEADER_LEN];
        let peeked = sock.peek(&mut header).await.unwrap_or(0);
        let int = |at: usize| {
            i32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let is_hello = peeked == HEADER_LEN && int(12) == OP_MSG;
        let _ = if is_hello {
            self.answer_hellos(sock).await
        } else {
            self.data(sock).await
        };
    }

    async fn answer_hellos(&self, mut sock: TcpStream) -> std::io::Result<()> {
        loop {
            let mut header = [0u8; HEADER_LEN];
            sock.read_exact(&mut header).await?;
            let len = i32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let request_id = i32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let mut rest = vec![0u8; len.saturating_sub(HEADER_LEN).min(1 << 20)];
            sock.read_exact(&mut rest).await?;
            if self.fault() == MongosFault::Hang {
                return drain(sock).await;
            }
            sock.write_all(&ok_reply(request_id)).await?;
        }
    }

    async fn data(&self, mut sock: TcpStream) -> std::io::Result<()> {
        self.data_connections.fetch_add(1, Ordering::SeqCst);
        let mut buf = vec![0u8; 64 * 1024];
        let reset_this = self.fault() == MongosFault::ResetMidStream;
        loop {
            let n = sock.read(&mut buf).await?;
            if n == 0 {
                return sock.shutdown().await;
            }
            if reset_this {
                sock.write_all(&buf[..n.div_ceil(2)]).await?;
                sock.set_zero_linger()?;
                self.resets.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            if self.fault() == MongosFault::Hang {
                return drain(sock).await;
            }
            sock.write_all(&buf[..n]).await?;
        }
    }
}

/// Reads and drops everything until the peer closes: a process that accepts but never answers.
async fn drain(mut sock: TcpStream) -> std::io::Result<()> {
    let mut sink = vec![0u8; 64 * 1024];
    while sock.read(&mut sink).await? > 0 {}
    Ok(())
}
