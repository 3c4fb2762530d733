//! `key_slot` agrees with a real Redis 7.0 server's `CLUSTER KEYSLOT` for 10k random keys, hash tags
//! and binary bytes included.

use bytes::Bytes;
use puerta::redis::resp::Frame;
use puerta::redis::slots::key_slot;
use puerta_tests::resp_client::{start_redis_server, RespClient};

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

#[test]
fn key_slot_matches_cluster_keyslot_for_10k_random_keys() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nodes_conf = dir.path().join("nodes.conf");
    let cluster = ["--cluster-enabled", "yes", "--cluster-config-file"];
    let mut extra = cluster.to_vec();
    extra.push(nodes_conf.to_str().expect("utf-8 temp path"));
    let (_server, port) = start_redis_server(dir.path(), &extra)?;
    let mut client = RespClient::connect(port)?;

    let keys = random_keys(10_000);
    let mut tagged = 0;
    for batch in keys.chunks(1000) {
        let commands: Vec<Vec<Bytes>> = batch
            .iter()
            .map(|key| {
                vec![
                    Bytes::from_static(b"CLUSTER"),
                    Bytes::from_static(b"KEYSLOT"),
                    key.clone(),
                ]
            })
            .collect();
        let replies = client.pipeline(&commands)?;
        for (key, reply) in batch.iter().zip(replies) {
            assert_eq!(
                reply,
                Frame::Integer(i64::from(key_slot(key))),
                "key {key:?}"
            );
            tagged += usize::from(key.contains(&b'{') && key.contains(&b'}'));
        }
    }
    // The generator must actually exercise hash tags.
    assert!(tagged > 1000, "only {tagged} keys with braces");
    Ok(())
}
