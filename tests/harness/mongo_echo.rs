//! A backend for data-path tests: answers Puerta's OP_MSG `hello` health checks with `{ok: 1}` (so it
//! counts as a healthy mongos) and echoes every other connection byte for byte — or hands it to the
//! test when the test wants to drive the backend side itself (close, reset, half-close).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use testkit::opmsg::{ok_reply, HEADER_LEN, OP_MSG};

pub struct MongoEcho {
    pub addr: SocketAddr,
    /// Data connections, when started with [`MongoEcho::start_handing_over`].
    pub accepted: Option<mpsc::UnboundedReceiver<TcpStream>>,
}

impl MongoEcho {
    /// Echo backend on a free loopback port; must be called inside a tokio runtime.
    pub async fn start() -> anyhow::Result<MongoEcho> {
        Self::spawn(None).await
    }

    /// Like [`MongoEcho::start`] but data connections go to `accepted` instead of being echoed.
    pub async fn start_handing_over() -> anyhow::Result<MongoEcho> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut echo = Self::spawn(Some(tx)).await?;
        echo.accepted = Some(rx);
        Ok(echo)
    }

    async fn spawn(
        hand_over: Option<mpsc::UnboundedSender<TcpStream>>,
    ) -> anyhow::Result<MongoEcho> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            loop {
                let sock = crate::accept::next(&listener).await;
                let hand_over = hand_over.clone();
                tokio::spawn(serve(sock, hand_over));
            }
        });
        Ok(MongoEcho {
            addr,
            accepted: None,
        })
    }
}

async fn serve(mut sock: TcpStream, hand_over: Option<mpsc::UnboundedSender<TcpStream>>) {
    let mut header = [0u8; HEADER_LEN];
    // Health checks send a complete OP_MSG at once; data connections may send fewer than 16 bytes
    // first, so peek instead of reading.
    let peeked = sock.peek(&mut header).await.unwrap_or(0);
    let int = |at: usize| {
        i32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if peeked == HEADER_LEN && int(12) == OP_MSG && (21..1 << 20).contains(&int(0)) {
        let _ = answer_hellos(sock).await;
        return;
    }
    if peeked == 0 {
        // Closed without a byte (e.g. a readiness probe through Puerta): nothing to hand over.
        return;
    }
    if let Some(tx) = hand_over {
        let _ = tx.send(sock);
        return;
    }
    let (mut r, mut w) = sock.split();
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

async fn answer_hellos(mut sock: TcpStream) -> std::io::Result<()> {
    loop {
        let mut header = [0u8; HEADER_LEN];
        sock.read_exact(&mut header).await?;
        let len = i32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let request_id = i32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut rest = vec![0u8; len.saturating_sub(HEADER_LEN)];
        sock.read_exact(&mut rest).await?;
        sock.write_all(&ok_reply(request_id)).await?;
    }
}
