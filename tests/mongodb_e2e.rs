//! MongoDB mode end to end: pymongo and raw OP_MSG clients through the real `puerta` binary in front of
//! three `secantusd-py` stand-ins that share no data.

use std::time::Duration;

use puerta_tests::mongo::{probe, puerta_config, roundtrip, run_py, seed_names, StandIn};
use puerta_tests::{free_port, loopback, Puerta};

fn three_stand_ins() -> anyhow::Result<Vec<StandIn>> {
    (0..3).map(|_| StandIn::start()).collect()
}

/// Insert 1000, then find with batch_size=100 (1 find + 9 getMore) from several pooled connections.
/// Any connection of this client reaching another stand-in loses documents or the cursor.
#[test]
fn pymongo_crud_with_affinity() -> anyhow::Result<()> {
    let stand_ins = three_stand_ins()?;
    let listen = loopback(free_port());
    let backends: Vec<_> = stand_ins.iter().map(|s| s.address()).collect();
    let config = puerta_config(listen, 1000, &backends, "session_affinity_enabled = true");
    let puerta = Puerta::start(&config, listen)?;
    puerta
        .process
        .wait_for_output("initial health check done", Duration::from_secs(30))?;
    let out = run_py(
        "mongo_crud.py",
        &[listen.to_string()],
        Duration::from_secs(180),
    )
    .map_err(|e| anyhow::anyhow!("{e}\npuerta output:\n{}", puerta.process.output()))?;
    assert!(out.contains("OK 1000 documents, 1 find + "), "{out}");
    Ok(())
}

const INTERVAL_SEC: u64 = 1;
const FALL: u64 = 2;
const RISE: u64 = 2;

fn sources(from: u8, count: u8) -> Vec<String> {
    (from..from + count)
        .map(|n| format!("127.0.0.{n}"))
        .collect()
}

/// Kill one stand-in: within fall × interval + 1 s it is out, its clients are re-placed and no new
/// connection is even attempted to it; restart it on the same port: it is back after `rise` checks and
/// takes new clients again, while existing pins stay put.
#[test]
fn backend_down_and_back() -> anyhow::Result<()> {
    let mut stand_ins = three_stand_ins()?;
    let names = ["b0", "b1", "b2"];
    seed_names(&[
        (&stand_ins[0], names[0]),
        (&stand_ins[1], names[1]),
        (&stand_ins[2], names[2]),
    ])?;
    let listen = loopback(free_port());
    let backends: Vec<_> = stand_ins.iter().map(|s| s.address()).collect();
    let extra = format!(
        "session_affinity_enabled = true\nhealth_check_interval_sec = {INTERVAL_SEC}\n\
         health_fall = {FALL}\nhealth_rise = {RISE}\n"
    );
    let puerta = Puerta::start(&puerta_config(listen, 1000, &backends, &extra), listen)?;
    let log = &puerta.process;
    log.wait_for_output("initial health check done", Duration::from_secs(30))?;

    // Six clients spread over all three by SWRR, and each stays where it was placed.
    let clients = sources(11, 6);
    let placed = probe(listen, &clients)?;
    for name in names {
        assert!(
            placed.iter().any(|p| p == name),
            "{name} unused: {placed:?}"
        );
    }
    assert_eq!(probe(listen, &clients)?, placed, "affinity holds");

    // Kill b1.
    let victim = stand_ins[1].address();
    stand_ins[1].process.kill();
    let bound = Duration::from_secs(FALL * INTERVAL_SEC + 1);
    log.wait_for_output(
        &format!("mongos {victim} is down after {FALL} failed checks"),
        bound,
    )?;
    let after_kill = probe(listen, &clients)?;
    for (i, (before, now)) in placed.iter().zip(&after_kill).enumerate() {
        assert!(
            !now.starts_with("error"),
            "client {} failed: {now}",
            clients[i]
        );
        if before == "b1" {
            assert_ne!(now, "b1", "{} still on the dead backend", clients[i]);
            log.wait_for_output(
                &format!("client {} re-placed", clients[i]),
                Duration::from_secs(5),
            )?;
        } else {
            assert_eq!(
                now, before,
                "{} moved although its backend is up",
                clients[i]
            );
        }
    }
    assert!(
        !log.output()
            .contains(&format!("cannot connect to mongos {victim}")),
        "a client connection was attempted to the down backend:\n{}",
        log.output()
    );

    // Restart b1 on the same port; it returns after RISE good checks.
    let port = stand_ins[1].port;
    stand_ins[1] = StandIn::start_on(port)?;
    seed_names(&[(&stand_ins[1], names[1])])?;
    log.wait_for_output(
        &format!("mongos {victim} is up again after {RISE} good checks"),
        Duration::from_secs(60),
    )?;
    // Existing pins stay; new clients reach b1 again.
    assert_eq!(
        probe(listen, &clients)?,
        after_kill,
        "pins survive the recovery"
    );
    let newcomers = probe(listen, &sources(31, 6))?;
    assert!(
        newcomers.iter().any(|n| n == "b1"),
        "b1 gets no new clients: {newcomers:?}"
    );
    assert!(
        newcomers.iter().all(|n| !n.starts_with("error")),
        "{newcomers:?}"
    );
    Ok(())
}

/// Two instances with `affinity = "hash"` and no link between them: each of 20 clients reaches the
/// same stand-in through both (a document written through one is read through the other), and when
/// a stand-in dies its clients move alike on both while the others stay.
#[test]
fn hash_affinity_agrees_across_instances() -> anyhow::Result<()> {
    let mut stand_ins = three_stand_ins()?;
    let names = ["h0", "h1", "h2"];
    seed_names(&[
        (&stand_ins[0], names[0]),
        (&stand_ins[1], names[1]),
        (&stand_ins[2], names[2]),
    ])?;
    let backends: Vec<_> = stand_ins.iter().map(|s| s.address()).collect();
    let extra = format!(
        "affinity = \"hash\"\nhealth_check_interval_sec = {INTERVAL_SEC}\n\
         health_fall = {FALL}\nhealth_rise = {RISE}\n"
    );
    let a = loopback(free_port());
    let b = std::net::SocketAddr::from(([127, 0, 0, 2], free_port()));
    let start = |listen| -> anyhow::Result<Puerta> {
        let config = puerta_config(listen, 1000, &backends, &extra);
        let puerta = Puerta::start(&config, listen)?;
        puerta
            .process
            .wait_for_output("initial health check done", Duration::from_secs(30))?;
        Ok(puerta)
    };
    let (on_a, on_b) = (start(a)?, start(b)?);
    let clients = sources(51, 20);
    // Asked in the opposite order: placement by round-robin would differ, a hash does not.
    let reversed = |list: &[String]| list.iter().rev().cloned().collect::<Vec<_>>();
    let placed = probe(a, &clients)?;
    assert_eq!(
        reversed(&probe(b, &reversed(&clients))?),
        placed,
        "the instances disagree"
    );
    for name in names {
        assert!(
            placed.iter().any(|p| p == name),
            "{name} unused: {placed:?}"
        );
    }
    for (client, result) in clients.iter().zip(roundtrip(a, b, &clients)?) {
        assert_eq!(result, "ok", "{client}");
    }
    for (client, result) in clients.iter().zip(roundtrip(b, a, &clients)?) {
        assert_eq!(result, "ok", "{client}");
    }

    let victim = stand_ins[1].address();
    stand_ins[1].process.kill();
    for puerta in [&on_a, &on_b] {
        puerta.process.wait_for_output(
            &format!("mongos {victim} is down after {FALL} failed checks"),
            Duration::from_secs(FALL * INTERVAL_SEC + 5),
        )?;
    }
    let moved = probe(a, &clients)?;
    assert_eq!(
        reversed(&probe(b, &reversed(&clients))?),
        moved,
        "the instances disagree after the kill"
    );
    for ((client, before), now) in clients.iter().zip(&placed).zip(&moved) {
        match before == "h1" {
            true => assert!(now == "h0" || now == "h2", "{client}: {now}"),
            false => assert_eq!(now, before, "{client} moved though its mongos is up"),
        }
    }
    for (client, result) in clients.iter().zip(roundtrip(a, b, &clients)?) {
        assert_eq!(result, "ok", "{client} after the kill");
    }
    Ok(())
}

/// A backend that dies between health checks: the client's connection falls back to a healthy one,
/// the client is re-pinned there, and nothing fails from the client's point of view.
#[test]
fn connect_failure_falls_back_before_health_notices() -> anyhow::Result<()> {
    let mut stand_ins: Vec<StandIn> = (0..2).map(|_| StandIn::start()).collect::<Result<_, _>>()?;
    seed_names(&[(&stand_ins[0], "b0"), (&stand_ins[1], "b1")])?;
    let listen = loopback(free_port());
    let backends: Vec<_> = stand_ins.iter().map(|s| s.address()).collect();
    // Checks so rare that the kill below is only discovered by connecting.
    let extra = "session_affinity_enabled = true\nhealth_check_interval_sec = 3600\n";
    let puerta = Puerta::start(&puerta_config(listen, 1000, &backends, extra), listen)?;
    puerta
        .process
        .wait_for_output("initial health check done", Duration::from_secs(30))?;
    let clients = sources(41, 2);
    let placed = probe(listen, &clients)?;
    let mut sorted = placed.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["b0", "b1"], "one client on each");
    let (dead, alive) = if placed[0] == "b0" { (0, 1) } else { (1, 0) };
    let victim = stand_ins[dead].address();
    stand_ins[dead].process.kill();
    let survivor = format!("b{alive}");
    assert_eq!(probe(listen, &clients)?, vec![survivor.clone(), survivor]);
    puerta.process.wait_for_output(
        &format!("mongos {victim} refused the connection, now pinned to"),
        Duration::from_secs(5),
    )?;
    Ok(())
}
