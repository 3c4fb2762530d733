//! Failover under traffic. A manual `CLUSTER FAILOVER` is coordinated by Redis (no write is lost), so
//! clients must see no error at all. A killed master leaves a window until its replica is promoted:
//! errors are allowed there, wrong values never, and service must come back for every slot.

use std::time::{Duration, Instant};

use puerta_tests::redis_cluster::ProxiedCluster;

#[test]
fn manual_failover_is_invisible_to_clients() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let dir = tempfile::tempdir()?;
    let stop = dir.path().join("stop");
    let workload = env.workload(&stop, 10, "strict")?;
    std::thread::sleep(Duration::from_secs(2));
    let (replica, old_master) = env.cluster.replicas()?[0];
    assert_eq!(
        env.cluster.cli(replica, &["CLUSTER", "FAILOVER"])?.trim(),
        "OK"
    );
    wait_until(Duration::from_secs(60), || {
        let masters = env.cluster.masters()?;
        Ok(masters.contains(&replica) && !masters.contains(&old_master))
    })?;
    env.cluster.wait_healthy(Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(2));
    let output = env.finish_workload(workload, &stop)?;
    println!("{output}");
    Ok(())
}

#[test]
fn killed_master_recovers_without_wrong_values() -> anyhow::Result<()> {
    let mut env = ProxiedCluster::start("")?;
    let dir = tempfile::tempdir()?;
    let stop = dir.path().join("stop");
    let workload = env.workload(&stop, 10, "tolerant")?;
    std::thread::sleep(Duration::from_secs(2));
    let (replica, master) = env.cluster.replicas()?[0];
    env.cluster.kill(master);
    wait_until(Duration::from_secs(90), || {
        Ok(env.cluster.masters()?.contains(&replica))
    })?;
    env.cluster.wait_healthy(Duration::from_secs(90))?;
    // Service is back for every slot: a full round of writes over many slots succeeds.
    wait_until(Duration::from_secs(60), || {
        for i in 0..200 {
            let key = format!("after-kill:{i}");
            if env.cli(&["SET", &key, &key])?.trim() != "OK" {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    for i in 0..200 {
        let key = format!("after-kill:{i}");
        assert_eq!(env.cli(&["GET", &key])?.trim(), key);
    }
    let output = env.finish_workload(workload, &stop)?;
    println!("{output}");
    Ok(())
}

fn wait_until(
    within: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        match done() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    anyhow::bail!("condition not reached within {within:?} (last error: {last:?})")
}
