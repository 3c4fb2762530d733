//! The MongoDB demo: three secantusd-py mongos stand-ins, Puerta in front, and pymongo clients from
//! several loopback source addresses showing where new clients are placed and that each stays put.

use std::path::Path;

use anyhow::Context;

use super::{port_of, print_logs, run_script, stay_up, template};
use crate::stack::mongos::MongosStandIns;
use crate::stack::net::{loopback, ports_or_free};
use crate::stack::puerta::Puerta;

pub fn run(dir: &Path) -> anyhow::Result<()> {
    let mut config = template("demo-mongodb.toml")?;
    let (listen_port, backend_ports) = choose_ports(&config)?;
    config.insert(
        "listen_addr".into(),
        format!("127.0.0.1:{listen_port}").into(),
    );
    let endpoints: Vec<toml::Value> = backend_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}").into())
        .collect();
    mongodb_section(&mut config)?.insert("mongos_endpoints".into(), endpoints.into());

    eprintln!(
        "==> starting {} secantusd-py mongos stand-ins on {backend_ports:?}",
        backend_ports.len()
    );
    let mut backends = MongosStandIns::start(&backend_ports, dir)?;
    eprintln!("==> starting puerta on 127.0.0.1:{listen_port}");
    let mut puerta = Puerta::start(
        "puerta",
        &toml::to_string(&config)?,
        loopback(listen_port),
        dir,
    )?;

    let backends_arg = backend_ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    run_script(
        "pymongo workload through puerta",
        "mongodb_workload.py",
        &[
            "--puerta".into(),
            format!("127.0.0.1:{listen_port}"),
            "--backends".into(),
            backends_arg,
        ],
    )?;

    eprintln!(
        "\nPuerta (MongoDB mode) is up on 127.0.0.1:{listen_port} in front of secantusd-py on {backend_ports:?}.\n\
         Config: {}\n\
         Connect with pymongo:\n  \
         target/venv/bin/python -c \"import pymongo; c = pymongo.MongoClient('mongodb://127.0.0.1:{listen_port}/'); \
         print(c.demo.people.count_documents({{}}))\"",
        puerta.config_path.display()
    );
    print_logs(dir);
    stay_up(|| {
        backends.ensure_running()?;
        puerta.proc.ensure_running()
    })
}

/// The template's ports if they are all free, otherwise free ones.
fn choose_ports(config: &toml::Table) -> anyhow::Result<(u16, Vec<u16>)> {
    let listen = config
        .get("listen_addr")
        .and_then(toml::Value::as_str)
        .context("demo-mongodb.toml: listen_addr")?;
    let mut wanted = vec![port_of(listen)?];
    let endpoints = config
        .get("mongodb")
        .and_then(|m| m.get("mongos_endpoints"))
        .and_then(toml::Value::as_array)
        .context("demo-mongodb.toml: mongodb.mongos_endpoints")?;
    for ep in endpoints {
        wanted.push(port_of(ep.as_str().context("endpoint must be a string")?)?);
    }
    let ports = ports_or_free(&wanted, false)?;
    Ok((ports[0], ports[1..].to_vec()))
}

fn mongodb_section(config: &mut toml::Table) -> anyhow::Result<&mut toml::Table> {
    config
        .get_mut("mongodb")
        .and_then(toml::Value::as_table_mut)
        .context("demo-mongodb.toml: [mongodb]")
}
