//! `key_slot` agrees with a real Redis 7.0 server's `CLUSTER KEYSLOT` for 10k random keys, hash tags
//! and binary bytes included.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use puerta::redis::resp::{encode_command, parse_reply, Frame, Limits};
use puerta::redis::slots::key_slot;
use puerta_tests::{free_port, loopback, wait_for_port, ChildGuard};

/// A cluster-enabled redis-server with no slots assigned: enough for `CLUSTER KEYSLOT`.
fn start_cluster_node(dir: &std::path::Path) -> anyhow::Result<(ChildGuard, u16)> {
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes", "--cluster-config-file"])
        .arg(dir.join("nodes.conf"))
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir);
    let server = ChildGuard::spawn("redis-server", cmd)?;
    if let Err(e) = wait_for_port(loopback(port), Duration::from_secs(15)) {
        bail!("{e}; redis-server output:\n{}", server.output());
    }
    Ok((server, port))
}

/// Deterministic keys: printable ones, ones with `{`/`}` in random places, and arbitrary bytes.
fn random_keys(count: usize) -> Vec<Bytes> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|i| {
            let len = (next() % 24) as usize;
            let key: Vec<u8> = (0..len)
                .map(|_| match (i % 3, next() % 8) {
                    (0, _) => b'a' + (next() % 26) as u8,
                    (1, 0) => b'{',
                    (1, 1) => b'}',
                    (1, _) => b'0' + (next() % 10) as u8,
                    _ => next() as u8,
                })
                .collect();
            Bytes::from(key)
        })
        .collect()
}

/// Sends one `CLUSTER KEYSLOT` per key in a single pipeline and reads the slots back in order.
fn cluster_keyslots(conn: &mut TcpStream, keys: &[Bytes]) -> anyhow::Result<Vec<i64>> {
    let mut out = BytesMut::new();
    for key in keys {
        let args = [
            Bytes::from_static(b"CLUSTER"),
            Bytes::from_static(b"KEYSLOT"),
            key.clone(),
        ];
        encode_command(&args, &mut out);
    }
    conn.write_all(&out)?;
    let mut input = BytesMut::new();
    let mut slots = Vec::with_capacity(keys.len());
    let mut chunk = [0u8; 16 * 1024];
    while slots.len() < keys.len() {
        match parse_reply(&mut input, &Limits::default())? {
            Some(Frame::Integer(slot)) => slots.push(slot),
            Some(other) => bail!("unexpected reply {other:?}"),
            None => {
                let n = conn.read(&mut chunk).context("read from redis-server")?;
                if n == 0 {
                    bail!("redis-server closed the connection");
                }
                input.extend_from_slice(&chunk[..n]);
            }
        }
    }
    Ok(slots)
}

#[test]
fn key_slot_matches_cluster_keyslot_for_10k_random_keys() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_server, port) = start_cluster_node(dir.path())?;
    let mut conn = TcpStream::connect(loopback(port))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;

    let keys = random_keys(10_000);
    let mut tagged = 0;
    for batch in keys.chunks(1000) {
        let slots = cluster_keyslots(&mut conn, batch)?;
        for (key, slot) in batch.iter().zip(slots) {
            assert_eq!(i64::from(key_slot(key)), slot, "key {key:?}");
            tagged += usize::from(key.contains(&b'{') && key.contains(&b'}'));
        }
    }
    // The generator must actually exercise hash tags.
    assert!(tagged > 1000, "only {tagged} keys with braces");
    Ok(())
}
