//! Puerta in Redis mode in front of a real 6-node Redis Cluster, driven by plain (non-cluster) clients.

use std::time::Duration;

use puerta_tests::redis_cluster::ProxiedCluster;

#[test]
fn redis_py_plain_client_sees_one_server() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let out = env.python("redis_basic.py", &[])?;
    assert!(out.contains("ALL OK"), "{out}");
    Ok(())
}

#[test]
fn redis_cli_local_commands() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    assert_eq!(env.cli(&["PING"])?.trim(), "PONG");
    assert_eq!(env.cli(&["SET", "foo", "bar"])?.trim(), "OK");
    assert_eq!(env.cli(&["GET", "foo"])?.trim(), "bar");
    assert_eq!(env.cli(&["CLUSTER", "KEYSLOT", "foo"])?.trim(), "12182");
    assert!(env.cli(&["CLUSTER", "INFO"])?.contains("cluster_state:ok"));
    assert_eq!(env.cli(&["DBSIZE"])?.trim(), "1");
    let info = env.cli(&["INFO"])?;
    assert!(
        info.contains("# Proxy") && info.contains("db0:keys=1"),
        "{info}"
    );
    assert!(env.cli(&["SELECT", "1"])?.contains("ERR"));
    let _ = Duration::from_secs(1);
    Ok(())
}

/// A slot caught mid-migration by hand: ASK is followed (ASKING + command on the importing node) for an
/// existing key and a new one, multi-key reads split across the two nodes get TRYAGAIN passed through
/// after `max_redirects`, and once the slot is handed over MOVED is followed.
#[test]
fn ask_tryagain_and_moved_during_a_manual_migration() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("max_redirects = 3")?;
    let c = &env.cluster;
    let slot: u16 = env.cli(&["CLUSTER", "KEYSLOT", "{mig}"])?.trim().parse()?;
    assert_eq!(env.cli(&["SET", "{mig}old", "v1"])?.trim(), "OK");
    assert_eq!(env.cli(&["SET", "{mig}stay", "v2"])?.trim(), "OK");
    let masters = c.masters()?;
    let src = *masters
        .iter()
        .find(|p| {
            c.cli(**p, &["GET", "{mig}old"])
                .is_ok_and(|v| v.trim() == "v1")
        })
        .expect("some master owns the slot");
    let dst = *masters.iter().find(|p| **p != src).expect("another master");
    let (src_id, dst_id) = (c.node_id(src)?, c.node_id(dst)?);
    let slot_s = slot.to_string();
    c.cli(dst, &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id])?;
    c.cli(src, &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id])?;
    let dst_port = dst.to_string();
    let migrated = c.cli(
        src,
        &["MIGRATE", "127.0.0.1", &dst_port, "{mig}old", "0", "5000"],
    )?;
    assert_eq!(migrated.trim(), "OK");

    let ask_before = env.proxy_counter("ask_redirects")?;
    assert_eq!(
        env.cli(&["GET", "{mig}old"])?.trim(),
        "v1",
        "ASK to the importing node"
    );
    assert_eq!(
        env.cli(&["GET", "{mig}stay"])?.trim(),
        "v2",
        "not yet moved: source"
    );
    assert_eq!(
        env.cli(&["SET", "{mig}new", "v3"])?.trim(),
        "OK",
        "new key: ASK"
    );
    assert_eq!(c.cli(dst, &["ASKING"])?.trim(), "OK");
    assert!(env.proxy_counter("ask_redirects")? >= ask_before + 2);
    let split = env.cli(&["MGET", "{mig}old", "{mig}stay"])?;
    assert!(
        split.contains("TRYAGAIN"),
        "last error passed through: {split}"
    );

    for port in c.masters()? {
        c.cli(port, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id])?;
    }
    let moved_before = env.proxy_counter("moved_redirects")?;
    assert_eq!(env.cli(&["GET", "{mig}old"])?.trim(), "v1");
    assert_eq!(env.cli(&["GET", "{mig}new"])?.trim(), "v3");
    // `{mig}stay` was never migrated: it is gone from the owner's view, as in Redis itself.
    assert!(env.proxy_counter("moved_redirects")? > moved_before);
    Ok(())
}

#[test]
fn transactions_blocking_pubsub_scan_and_local_commands() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let out = env.python("redis_features.py", &[])?;
    assert!(out.contains("ALL OK"), "{out}");
    Ok(())
}
