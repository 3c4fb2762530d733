//! redis-benchmark (no `--cluster`) through Puerta: every test completes without an error reply.
//! redis-benchmark 7.0 has no `mget` test (it ignores the name); its multi-key test is `mset`. With `-r`
//! the keys are random, so each MSET spans slots and is split by the proxy.

use std::process::Command;

use puerta_tests::redis_cluster::ProxiedCluster;

#[test]
fn redis_benchmark_pipelined_completes_without_errors() -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &env.port().to_string()])
        .args([
            "-t",
            "set,get,mget,mset,lpush,lpop",
            "-P",
            "16",
            "-n",
            "20000",
            "-r",
            "100000",
            "-q",
        ])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "redis-benchmark failed: {stdout}{stderr}"
    );
    assert!(
        !stdout.contains("Error") && !stderr.contains("Error"),
        "{stdout}{stderr}"
    );
    for test in ["SET:", "GET:", "LPUSH:", "LPOP:", "MSET (10 keys):"] {
        assert!(stdout.contains(test), "no {test} result in:\n{stdout}");
    }
    // What it wrote is there, spread over the masters.
    let keys: u64 = env.cli(&["DBSIZE"])?.trim().parse()?;
    let per_node: Vec<String> = env
        .cluster
        .ports()
        .iter()
        .map(|p| env.cluster.cli(*p, &["DBSIZE"]).unwrap_or_default())
        .collect();
    assert!(
        keys > 1000,
        "DBSIZE {keys}, nodes {per_node:?}, info {}",
        env.cli(&["INFO"])?
    );
    Ok(())
}
