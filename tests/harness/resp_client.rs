//! A tiny blocking RESP client and a standalone `redis-server` launcher, for tests that talk to Redis
//! directly (no proxy in between), built on Puerta's own encoder and parser.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use puerta::redis::resp::{encode_command, parse_reply, parse_reply_raw, Frame, Limits};

use crate::{free_port, loopback, wait_for_port, Process};

/// Starts `redis-server` on a free loopback port with persistence off and its files in `dir`;
/// `extra` adds options (e.g. `["--cluster-enabled", "yes"]`).
pub fn start_redis_server(dir: &Path, extra: &[&str]) -> anyhow::Result<(Process, u16)> {
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .args(extra);
    let server = Process::captured("redis-server", cmd)?;
    if let Err(e) = wait_for_port(loopback(port), Duration::from_secs(15)) {
        bail!("{e}; redis-server output:\n{}", server.output());
    }
    Ok((server, port))
}

pub struct RespClient {
    conn: TcpStream,
    input: BytesMut,
}

impl RespClient {
    pub fn connect(port: u16) -> anyhow::Result<RespClient> {
        let conn = TcpStream::connect(loopback(port))?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(RespClient {
            conn,
            input: BytesMut::new(),
        })
    }

    /// How long a read waits for a reply (30 s from [`RespClient::connect`]).
    pub fn set_read_timeout(&mut self, timeout: Duration) -> anyhow::Result<()> {
        Ok(self.conn.set_read_timeout(Some(timeout))?)
    }

    /// Sends all `commands` in one write and reads one reply per command, in order.
    pub fn pipeline(&mut self, commands: &[Vec<Bytes>]) -> anyhow::Result<Vec<Frame>> {
        let mut out = BytesMut::new();
        for args in commands {
            encode_command(args, &mut out);
        }
        self.conn.write_all(&out)?;
        (0..commands.len()).map(|_| self.read_reply()).collect()
    }

    /// One command given as words (no spaces inside arguments).
    pub fn call(&mut self, line: &str) -> anyhow::Result<Frame> {
        let args = line
            .split(' ')
            .map(|word| Bytes::copy_from_slice(word.as_bytes()))
            .collect();
        let mut replies = self.pipeline(&[args])?;
        replies.pop().context("no reply")
    }

    /// One command given as separate arguments (which may hold spaces).
    pub fn command(&mut self, args: &[&str]) -> anyhow::Result<Frame> {
        let args = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let mut replies = self.pipeline(&[args])?;
        replies.pop().context("no reply")
    }

    /// Sends one command without reading its reply (a blocking command, a pipeline built by hand).
    pub fn send(&mut self, args: &[&str]) -> anyhow::Result<()> {
        let args: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let mut out = BytesMut::new();
        encode_command(&args, &mut out);
        Ok(self.conn.write_all(&out)?)
    }

    /// Sends one command and returns its reply's exact bytes (to tell `_` from `$-1`, `%` from `*`).
    pub fn call_raw(&mut self, args: &[&str]) -> anyhow::Result<Bytes> {
        self.send(args)?;
        self.read_raw()
    }

    /// The next frame's exact bytes.
    pub fn read_raw(&mut self) -> anyhow::Result<Bytes> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some((_, raw)) = parse_reply_raw(&mut self.input, &Limits::default())? {
                return Ok(raw);
            }
            let n = self.conn.read(&mut chunk).context("read from redis")?;
            if n == 0 {
                bail!("connection closed by the server");
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn read_reply(&mut self) -> anyhow::Result<Frame> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(frame) = parse_reply(&mut self.input, &Limits::default())? {
                return Ok(frame);
            }
            let n = self.conn.read(&mut chunk).context("read from redis")?;
            if n == 0 {
                bail!("connection closed by the server");
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }
}
