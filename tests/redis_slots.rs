//! `key_slot` agrees with a real Redis 7.0 server's `CLUSTER KEYSLOT` for 10k random keys, hash tags
//! and binary bytes included.

use bytes::Bytes;
use puerta::redis::command::slots::key_slot;
use puerta::redis::command::spec::{command_slot, lookup, CommandError};
use puerta::redis::resp::Frame;
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

/// A cluster-enabled redis-server (slots unassigned: enough for `CLUSTER KEYSLOT`).
fn cluster_node(dir: &std::path::Path) -> anyhow::Result<(puerta_tests::Process, RespClient)> {
    let nodes_conf = dir.join("nodes.conf");
    let mut extra = vec!["--cluster-enabled", "yes", "--cluster-config-file"];
    extra.push(nodes_conf.to_str().expect("utf-8 temp path"));
    let (server, port) = start_redis_server(dir, &extra)?;
    Ok((server, RespClient::connect(port)?))
}

#[test]
fn key_slot_matches_cluster_keyslot_for_10k_random_keys() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_server, mut client) = cluster_node(dir.path())?;

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

/// `command_slot` refuses exactly the calls a cluster node refuses with CROSSSLOT.
#[test]
fn crossslot_agrees_with_a_cluster_node() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_server, mut client) = cluster_node(dir.path())?;
    // With every slot on this node, the only refusal left for multi-key calls is CROSSSLOT.
    assert_eq!(client.call("CLUSTER ADDSLOTSRANGE 0 16383")?, Frame::ok());
    let keys = random_keys(400);
    let templates = [
        "RENAME {a} {b}",
        "SMOVE {a} {b} m",
        "ZUNIONSTORE {a} 1 {b}",
        "EVAL return 2 {a} {b}",
        "XREAD STREAMS {a} {b} 0 0",
        "SINTERSTORE {a} {a} {b}",
    ];
    let (mut cross, mut same) = (0, 0);
    for (i, (pair, template)) in keys.chunks(2).zip(templates.iter().cycle()).enumerate() {
        let [a, b] = pair else { continue };
        // Every third call uses one key twice: those must pass.
        let b = if i % 3 == 0 { a } else { b };
        let args: Vec<Bytes> = template
            .split(' ')
            .map(|w| match w {
                "{a}" => a.clone(),
                "{b}" => b.clone(),
                w => Bytes::copy_from_slice(w.as_bytes()),
            })
            .collect();
        let ours = command_slot(lookup(&args[0]).expect("known"), &args);
        let theirs = client.pipeline(std::slice::from_ref(&args))?.remove(0);
        let refused = matches!(&theirs, Frame::Error(e) if e.starts_with(b"CROSSSLOT"));
        assert_eq!(
            ours == Err(CommandError::CrossSlot),
            refused,
            "{args:?}: {theirs:?}"
        );
        cross += usize::from(refused);
        same += usize::from(!refused);
    }
    assert!(
        cross > 50 && same > 50,
        "{cross} cross-slot and {same} single-slot calls"
    );
    Ok(())
}
