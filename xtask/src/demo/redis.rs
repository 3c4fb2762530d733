//! The Redis demo: a 6-node Redis Cluster, Puerta in front, and redis-py (a plain, non-cluster client)
//! through Puerta showing slot routing, a cross-slot MGET, and a live slot migration whose ASK and
//! MOVED redirects Puerta absorbs.

use std::path::Path;

use anyhow::Context;

use super::{port_of, print_logs, run_script, stay_up, template};
use crate::stack::net::{loopback, ports_or_free};
use crate::stack::puerta::Puerta;
use crate::stack::redis_cluster::RedisCluster;

pub fn run(dir: &Path) -> anyhow::Result<()> {
    let mut config = template("demo-redis.toml")?;
    let (listen_port, node_ports) = choose_ports(&config)?;
    config.insert(
        "listen_addr".into(),
        format!("127.0.0.1:{listen_port}").into(),
    );
    let nodes: Vec<toml::Value> = node_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}").into())
        .collect();
    redis_section(&mut config)?.insert("cluster_nodes".into(), nodes.into());

    eprintln!(
        "==> starting a {}-node Redis Cluster on {node_ports:?}",
        node_ports.len()
    );
    let mut cluster = RedisCluster::start(&node_ports, dir)?;
    eprintln!("==> starting puerta on 127.0.0.1:{listen_port}");
    let mut puerta = Puerta::start(
        "puerta",
        &toml::to_string(&config)?,
        loopback(listen_port),
        dir,
    )?;

    let nodes_arg = node_ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    run_script(
        "redis-py workload through puerta",
        "redis_workload.py",
        &[
            "--puerta".into(),
            format!("127.0.0.1:{listen_port}"),
            "--nodes".into(),
            nodes_arg,
        ],
    )?;

    eprintln!(
        "\nPuerta (Redis mode) is up on 127.0.0.1:{listen_port} in front of the cluster on {node_ports:?}.\n\
         Config: {}\n\
         Connect with:  redis-cli -p {listen_port}        (then e.g. SET user:1 alice / GET user:1 / MGET a b c)\n\
         Benchmark:     redis-benchmark -p {listen_port} -t set,get -P 16 -q",
        puerta.config_path.display()
    );
    print_logs(dir);
    stay_up(|| {
        cluster.ensure_running()?;
        puerta.proc.ensure_running()
    })
}

/// The template's ports if they (and the nodes' cluster-bus ports) are free, otherwise free ones.
fn choose_ports(config: &toml::Table) -> anyhow::Result<(u16, Vec<u16>)> {
    let listen = config
        .get("listen_addr")
        .and_then(toml::Value::as_str)
        .context("demo-redis.toml: listen_addr")?;
    let nodes = config
        .get("redis")
        .and_then(|r| r.get("cluster_nodes"))
        .and_then(toml::Value::as_array)
        .context("demo-redis.toml: redis.cluster_nodes")?;
    let mut node_ports = Vec::new();
    for node in nodes {
        node_ports.push(port_of(node.as_str().context("node must be a string")?)?);
    }
    if node_ports.len() != 6 {
        anyhow::bail!("demo-redis.toml: the demo cluster needs exactly 6 cluster_nodes");
    }
    let node_ports = ports_or_free(&node_ports, true)?;
    let listen_port = ports_or_free(&[port_of(listen)?], false)?[0];
    Ok((listen_port, node_ports))
}

fn redis_section(config: &mut toml::Table) -> anyhow::Result<&mut toml::Table> {
    config
        .get_mut("redis")
        .and_then(toml::Value::as_table_mut)
        .context("demo-redis.toml: [redis]")
}
