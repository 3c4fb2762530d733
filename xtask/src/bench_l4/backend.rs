//! The benchmark backend: answers Puerta's OP_MSG `hello` health checks, and for data connections reads
//! a one-byte mode — `S`: sink (count and discard), `E`: echo.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Backend {
    pub addr: SocketAddr,
    /// Bytes received by sink connections, all time.
    pub sunk: Arc<AtomicU64>,
}

impl Backend {
    pub fn start() -> anyhow::Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let sunk = Arc::new(AtomicU64::new(0));
        let counter = sunk.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &counter);
                });
            }
        });
        Ok(Backend { addr, sunk })
    }
}

fn serve(mut conn: TcpStream, sunk: &AtomicU64) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = vec![0u8; 256 * 1024];
    let n = conn.read(&mut buf)?;
    if n == 0 {
        return Ok(());
    }
    if n >= 21 && buf[12..16] == 2013i32.to_le_bytes() {
        let reply = hello_reply([buf[4], buf[5], buf[6], buf[7]]);
        return conn.write_all(&reply);
    }
    let echo = buf[0] == b'E';
    let mut chunk = 1..n;
    loop {
        if echo {
            conn.write_all(&buf[chunk.clone()])?;
        } else {
            sunk.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        chunk = 0..n;
    }
}

/// OP_MSG `{ok: 1.0}` answering request id `request`.
fn hello_reply(request: [u8; 4]) -> Vec<u8> {
    let doc: [u8; 17] = [
        17, 0, 0, 0, 0x01, b'o', b'k', 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0,
    ];
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + 4 + 1 + doc.len()) as i32).to_le_bytes());
    msg.extend_from_slice(&1i32.to_le_bytes());
    msg.extend_from_slice(&request);
    msg.extend_from_slice(&2013i32.to_le_bytes());
    msg.extend_from_slice(&0u32.to_le_bytes());
    msg.push(0);
    msg.extend_from_slice(&doc);
    msg
}
