//! Restarts that drop nothing (`handover_socket`): clients connect and run commands in a loop, with
//! no retries, while Puerta is replaced three times; each new process takes the listening socket
//! over from the running one, which then drains. Not one connection may be refused or fail, and no
//! old process may need its drain deadline. In MongoDB mode the affinity pins come along, so a
//! client's next connections reach the mongos holding its cursors.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use puerta_tests::mongo::{probe, puerta_config, seed_names, StandIn};
use puerta_tests::redis_cluster::RedisCluster;
use puerta_tests::{free_port, loopback, Process, Puerta};

const RESTARTS: usize = 3;

#[test]
fn redis_mode_restarts_drop_nothing() -> anyhow::Result<()> {
    let cluster = RedisCluster::start()?;
    let dir = tempfile::tempdir()?;
    let listen = loopback(free_port());
    let config = format!(
        "handover_socket = \"{}\"\n{}",
        dir.path().join("handover.sock").display(),
        cluster.puerta_config(listen, "")
    );
    restarts_under_load("redis", &config, listen, dir.path(), |_| Ok(()))
}

#[test]
fn mongodb_mode_restarts_drop_nothing() -> anyhow::Result<()> {
    let stand_ins: Vec<StandIn> = (0..2).map(|_| StandIn::start()).collect::<Result<_, _>>()?;
    seed_names(&[(&stand_ins[0], "m0"), (&stand_ins[1], "m1")])?;
    let backends: Vec<String> = stand_ins.iter().map(|s| s.address()).collect();
    let dir = tempfile::tempdir()?;
    let listen = loopback(free_port());
    let config = format!(
        "handover_socket = \"{}\"\n{}",
        dir.path().join("handover.sock").display(),
        puerta_config(listen, 1000, &backends, "forwarding = \"auto\"")
            .replace("drain_timeout_sec = 60", "drain_timeout_sec = 10")
    );
    // Clients from six addresses, pinned by the first process (round-robin spreads them).
    let sources: Vec<String> = (61..67).map(|n| format!("127.0.0.{n}")).collect();
    let pinned = std::cell::RefCell::new(Vec::new());
    restarts_under_load("mongodb", &config, listen, dir.path(), |round| {
        if round == 0 {
            *pinned.borrow_mut() = probe(listen, &sources)?;
            return Ok(());
        }
        // The pins came along: asked in the opposite order (a fresh round-robin would place them
        // differently), every client reaches the stand-in it was pinned to.
        let reversed: Vec<String> = sources.iter().rev().cloned().collect();
        let mut now = probe(listen, &reversed)?;
        now.reverse();
        anyhow::ensure!(
            *pinned.borrow() == now,
            "round {round}: pins lost: {:?} then {now:?}",
            pinned.borrow()
        );
        Ok(())
    })
}

fn restarts_under_load(
    mode: &str,
    config: &str,
    listen: std::net::SocketAddr,
    dir: &Path,
    after_round: impl Fn(usize) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut running = Puerta::start(config, listen)?;
    running
        .process
        .wait_for_output("offering the listening sockets", Duration::from_secs(60))?;
    let stop = dir.join("stop");
    let mut clients = Command::new(puerta_tests::python());
    clients
        .arg(puerta_tests::py_script("restart_clients.py"))
        .arg(mode)
        .arg("127.0.0.1")
        .arg(listen.port().to_string())
        .arg(&stop)
        .arg("6");
    let mut clients = Process::captured("restart clients", clients)?;
    clients.wait_for_output("STARTED", Duration::from_secs(60))?;
    after_round(0)?;
    std::thread::sleep(Duration::from_secs(1));
    for round in 1..=RESTARTS {
        let mut next = Puerta::start(config, listen)?;
        let old_pid = running.process.pid();
        next.process.wait_for_output(
            &format!("took over the listening sockets of pid {old_pid}"),
            Duration::from_secs(60),
        )?;
        next.process
            .wait_for_output("offering the listening sockets", Duration::from_secs(60))?;
        let code = running.process.wait_exit(Duration::from_secs(60))?;
        let old_log = running.process.output();
        anyhow::ensure!(
            code == Some(0),
            "round {round}: the old process exited {code:?}:\n{old_log}"
        );
        anyhow::ensure!(
            old_log.contains(&format!(
                "handed the listening sockets over to pid {}",
                next.process.pid()
            )),
            "round {round}:\n{old_log}"
        );
        anyhow::ensure!(
            !old_log.contains("drain deadline reached"),
            "round {round}: flows were cut at the drain deadline:\n{old_log}"
        );
        std::mem::swap(&mut running, &mut next);
        if mode == "mongodb" {
            let carried = Duration::from_secs(30);
            running
                .process
                .wait_for_output("affinity pins carried over", carried)?;
        }
        after_round(round)?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let puerta = || format!("last puerta:\n{}", running.process.output());
    let output = clients.finish(&stop, "ALL OK", Duration::from_secs(120), puerta)?;
    println!("{output}");
    Ok(())
}
