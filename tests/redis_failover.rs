//! Failover under traffic. A manual `CLUSTER FAILOVER` is coordinated by Redis (no write is lost), so
//! clients must see no error at all. A killed master leaves a window until its replica is promoted:
//! errors are allowed there, wrong values never, and service must come back for every slot.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use puerta_tests::redis_cluster::ProxiedCluster;
use puerta_tests::Process;

#[test]
fn manual_failover_is_invisible_to_clients() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let dir = tempfile::tempdir()?;
    let stop = dir.path().join("stop");
    let workload = env.workload(&stop, 10, "strict")?;
    std::thread::sleep(Duration::from_secs(2));
    let (replica, old_master) = env.cluster.replicas()?[0];
    manual_failover(&env, replica, old_master)?;
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

/// `failover_hold_ms` (default 5 s): a killed master, a manual failover on another shard and a killed
/// replica, with 10 writers and 10 readers through Puerta and a smart client straight to the nodes.
/// Only the commands in flight on the killed connection may fail; commands sent after the kill wait
/// for the new master instead, which Puerta finds about as soon as the smart client does.
#[test]
fn failovers_are_a_pause_not_errors() -> anyhow::Result<()> {
    const WRITERS: usize = 10;
    let mut env = ProxiedCluster::start("")?;
    let control = tempfile::tempdir()?;
    let (replica, master) = env.cluster.replicas()?[0];
    let mut script = Command::new(puerta_tests::python());
    script
        .arg(puerta_tests::py_script("redis_failover_hold.py"))
        .arg("127.0.0.1")
        .arg(env.port().to_string())
        .arg(control.path())
        .arg(WRITERS.to_string())
        .arg("10")
        .arg(env.cluster.ports()[0].to_string())
        .arg(master.to_string());
    let mut clients = Process::captured("failover clients", script)?;
    clients.wait_for_output("STARTED", Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(2));

    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
    std::fs::write(
        control.path().join("kill"),
        format!("{:.6}", now.as_secs_f64()),
    )?;
    env.cluster.kill(master);
    settle(&env, Duration::from_secs(60), || {
        Ok(env.cluster.masters()?.contains(&replica))
    })?;

    // A manual failover on another shard: coordinated by Redis, invisible to clients.
    let (replica, old_master) = env.cluster.replicas()?[0];
    manual_failover(&env, replica, old_master)?;

    // A killed replica: nothing routes to it.
    let (replica, _) = *env
        .cluster
        .replicas()?
        .iter()
        .find(|(r, _)| *r != old_master)
        .ok_or_else(|| anyhow::anyhow!("no replica left to kill"))?;
    env.cluster.kill(replica);
    std::thread::sleep(Duration::from_secs(2));

    let puerta = || format!("puerta output:\n{}", env.puerta.process.output());
    let stop = control.path().join("stop");
    let output = clients.finish(&stop, "ALL OK", Duration::from_secs(300), puerta)?;
    println!("{output}");
    let held = env.proxy_counter("failover_held")?;
    anyhow::ensure!(held > 0, "no command was held: {output}");
    Ok(())
}

/// `CLUSTER FAILOVER` on `replica`, then [`settle`] until it replaced `old_master`.
fn manual_failover(env: &ProxiedCluster, replica: u16, old_master: u16) -> anyhow::Result<()> {
    assert_eq!(
        env.cluster.cli(replica, &["CLUSTER", "FAILOVER"])?.trim(),
        "OK"
    );
    settle(env, Duration::from_secs(60), || {
        let masters = env.cluster.masters()?;
        Ok(masters.contains(&replica) && !masters.contains(&old_master))
    })
}

/// Waits for `done`, then for a healthy cluster, then lets the clients run 2 s more on it.
fn settle(
    env: &ProxiedCluster,
    within: Duration,
    done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    wait_until(within, done)?;
    env.cluster.wait_healthy(within)?;
    std::thread::sleep(Duration::from_secs(2));
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
