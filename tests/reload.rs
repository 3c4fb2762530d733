//! SIGHUP with the real binary: backends added, removed and re-weighted, log level changed, an
//! established flow untouched, and an invalid file rejected while the old configuration keeps serving.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use puerta_tests::http::{get, wait_for};
use puerta_tests::mongo::{echo, puerta_config, Echo, EchoBackend};
use puerta_tests::{free_port, loopback, Puerta};

const WAIT: Duration = Duration::from_secs(30);

fn config(listen: SocketAddr, admin: SocketAddr, backends: &[String], extra: &str) -> String {
    format!(
        "admin_addr = \"{admin}\"\n{extra}\n{}",
        puerta_config(
            listen,
            100,
            backends,
            "health_check_interval_sec = 1\nhealth_check_timeout_ms = 500"
        )
    )
}

fn backends(admin: SocketAddr) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&get(admin, "/backends")?.1)?)
}

#[test]
fn sighup_swaps_backends_keeps_flows_and_rejects_bad_files() -> anyhow::Result<()> {
    let a = EchoBackend::start(Echo::Stream)?;
    let b = EchoBackend::start(Echo::Stream)?;
    let listen = loopback(free_port());
    let admin = loopback(free_port());
    let puerta = Puerta::start(&config(listen, admin, &[a.address()], ""), listen)?;
    wait_for(admin, "/healthz", WAIT, |status, _| status == 200)?;

    let mut old_flow = TcpStream::connect(listen)?;
    old_flow.set_read_timeout(Some(WAIT))?;
    echo(&mut old_flow, b"before reload")?;

    // A removed, B added with weight 3, debug logging.
    let reweighted = format!("{{ address = \"{}\", weight = 3 }}", b.address());
    let text = config(listen, admin, &[], "log_level = \"debug\"").replace(
        "mongos_endpoints = []",
        &format!("mongos_endpoints = [{reweighted}]"),
    );
    std::fs::write(&puerta.config_path, text)?;
    puerta.process.signal("HUP");
    puerta
        .process
        .wait_for_output("configuration reloaded", WAIT)?;
    let list = backends(admin)?;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["address"], b.address());
    assert_eq!(list[0]["weight"], 3);
    assert_eq!(list[0]["health"], "up", "{list}");

    // The flow that started on A goes on; new flows go to B.
    echo(&mut old_flow, b"after reload")?;
    let mut new_flow = TcpStream::connect(listen)?;
    new_flow.set_read_timeout(Some(WAIT))?;
    echo(&mut new_flow, b"new flow")?;
    assert_eq!(backends(admin)?[0]["active_connections"], 1);
    puerta.process.wait_for_output("log level set", WAIT)?;
    puerta.process.wait_for_output("flow connected", WAIT)?; // a debug line

    // A broken file is refused; the running configuration keeps serving.
    std::fs::write(
        &puerta.config_path,
        "mode = \"mongodb\"\nlisten_addr = 12\n",
    )?;
    puerta.process.signal("HUP");
    puerta
        .process
        .wait_for_output("reload rejected, keeping the running configuration", WAIT)?;
    let list = backends(admin)?;
    assert_eq!(list[0]["address"], b.address(), "{list}");
    let mut after = TcpStream::connect(listen)?;
    after.set_read_timeout(Some(WAIT))?;
    echo(&mut after, b"still serving")?;
    echo(&mut old_flow, b"old flow still alive")?;
    Ok(())
}
