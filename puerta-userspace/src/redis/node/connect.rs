//! Opening a connection to a cluster node: connect within `connection_timeout_ms`, TCP keepalive,
//! the TLS handshake with `[redis.backend_tls]`, then AUTH / HELLO 3 / READONLY before the
//! connection carries any client command.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::client::Connector;
use crate::tls::Stream;

use crate::redis::node::backend::BackendError;
use crate::redis::resp::{self, Frame, Limits, Protocol};

/// How to open and authenticate a backend connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub timeout: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Send READONLY so that a replica serves reads for its slots.
    pub readonly: bool,
    /// `command_timeout_ms` for connections that carry ordinary commands; `None` for connections whose
    /// replies may legitimately take forever (blocking commands) and when the operator turned it off.
    pub reply_timeout: Option<Duration>,
    /// RESP3 connections send `HELLO 3` so that replies come in the protocol their clients speak.
    pub protocol: Protocol,
    /// `[redis.backend_tls]`: every node connection is TLS.
    pub tls: Option<Arc<Connector>>,
}

impl ConnectOptions {
    /// The same, for connections speaking `protocol`.
    pub fn speaking(&self, protocol: Protocol) -> ConnectOptions {
        ConnectOptions {
            protocol,
            ..self.clone()
        }
    }

    /// The same, without a reply timeout (blocking commands).
    pub fn unbounded(&self) -> ConnectOptions {
        ConnectOptions {
            reply_timeout: None,
            ..self.clone()
        }
    }
}

/// Connects within the timeout and authenticates. Returns bytes read past the handshake replies.
pub async fn open(
    addr: &Arc<str>,
    opts: &ConnectOptions,
) -> Result<(Stream, BytesMut), BackendError> {
    match tokio::time::timeout(opts.timeout, open_unbounded(addr, opts)).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::ConnectTimeout {
            addr: addr.clone(),
            ms: opts.timeout.as_millis(),
        }),
    }
}

async fn open_unbounded(
    addr: &Arc<str>,
    opts: &ConnectOptions,
) -> Result<(Stream, BytesMut), BackendError> {
    let tcp = TcpStream::connect(&**addr)
        .await
        .map_err(|e| BackendError::Connect {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    set_keepalive(&tcp);
    let mut stream = match &opts.tls {
        Some(tls) => tls.connect(addr, tcp).await.map_err(|reason| {
            metrics::counter!("puerta_tls_handshake_failures_total", "side" => "backend")
                .increment(1);
            BackendError::Tls {
                addr: addr.clone(),
                reason,
            }
        })?,
        None => Stream::Plain(tcp),
    };
    let mut hello = BytesMut::new();
    let mut expected = 0;
    if let Some(password) = &opts.password {
        match &opts.username {
            Some(user) => {
                resp::encode_command(&[b"AUTH", user.as_bytes(), password.as_bytes()], &mut hello)
            }
            None => resp::encode_command(&[b"AUTH", password.as_bytes()], &mut hello),
        }
        expected += 1;
    }
    if opts.protocol == Protocol::Resp3 {
        resp::encode_command(&[&b"HELLO"[..], b"3"], &mut hello);
        expected += 1;
    }
    if opts.readonly {
        resp::encode_command(&[b"READONLY"], &mut hello);
        expected += 1;
    }
    let mut buf = BytesMut::new();
    if expected == 0 {
        return Ok((stream, buf));
    }
    let handshake = |reason: String| BackendError::Handshake {
        addr: addr.clone(),
        reason,
    };
    stream
        .write_all(&hello)
        .await
        .map_err(|e| handshake(e.to_string()))?;
    stream.flush().await.map_err(|e| handshake(e.to_string()))?;
    let limits = Limits::default();
    while expected > 0 {
        match resp::parse_reply(&mut buf, &limits).map_err(|e| handshake(e.to_string()))? {
            Some(Frame::Error(e)) => {
                return Err(handshake(String::from_utf8_lossy(&e).into_owned()))
            }
            Some(_) => expected -= 1,
            None => {
                let n = stream
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| handshake(e.to_string()))?;
                if n == 0 {
                    return Err(handshake("connection closed".into()));
                }
            }
        }
    }
    Ok((stream, buf))
}

/// A node that vanishes without closing (power loss, partition) is noticed by TCP keepalive, so the
/// commands waiting on it fail (and are retried elsewhere) instead of waiting forever.
fn set_keepalive(stream: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(5))
        .with_retries(4);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!("cannot enable TCP keepalive: {e}");
    }
}
