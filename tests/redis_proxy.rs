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
