//! Live resharding under load: redis-cli moves 2000 slots between masters while 20 clients write and
//! read their own keys through Puerta. MOVED (and, timing permitting, ASK) happen for real; clients must see no error, and
//! every acknowledged write must be readable afterwards.

use puerta_tests::redis_cluster::ProxiedCluster;

#[test]
fn live_resharding_is_invisible_to_clients() -> anyhow::Result<()> {
    // Only redirects (not the periodic refresh) tell the proxy about moved slots.
    let env = ProxiedCluster::start("slot_refresh_interval_sec = 3600")?;
    let dir = tempfile::tempdir()?;
    let stop = dir.path().join("stop");
    let workload = env.workload(&stop, 20, "strict")?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let masters = env.cluster.masters()?;
    assert_eq!(masters.len(), 3, "{masters:?}");
    env.cluster.reshard(masters[0], masters[1], 2000)?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let output = env.finish_workload(workload, &stop)?;
    println!("{output}");
    let moved = env.proxy_counter("moved_redirects")?;
    let ask = env.proxy_counter("ask_redirects")?;
    println!("moved_redirects={moved} ask_redirects={ask}");
    assert!(moved > 0, "resharding must have produced MOVED redirects");
    Ok(())
}
