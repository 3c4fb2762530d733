//! The Redis suite: `redis-benchmark` against the cluster directly (`--cluster`, the smart-client
//! baseline) and through Puerta with 1 and 2 worker threads, at pipeline depth 1 and 16. Then the
//! same with TLS: a second cluster whose nodes speak only TLS, directly and through Puerta with TLS
//! on both legs, so the cipher's cost and Puerta's share of it can be told apart.
//!
//! redis-benchmark 7.0 has no MGET test (`-t mget` is silently ignored), so MSET with 10 keys is the
//! multi-key case: with `--cluster` redis-benchmark hash-tags the 10 keys into one slot, through Puerta
//! they span slots and Puerta splits and merges them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use testkit::redis_cluster::TlsArgs;
use testkit::tls::Pki;

use super::procstat;
use super::report::{Column, Row, Table};
use super::stats::median;
use super::syscalls::SyscallCount;
use crate::interrupt;
use crate::stack::net::{free_port, loopback};
use crate::stack::puerta::Puerta;
use crate::stack::redis_cluster::RedisCluster;
use testkit::process::Process;

const TESTS: &[(&str, &str)] = &[
    ("SET", "SET"),
    ("GET", "GET"),
    ("MSET (10 keys)", "MSET 10 keys"),
    ("INCR", "INCR"),
    ("LPUSH", "LPUSH"),
];
const PIPELINES: &[u32] = &[1, 16];

pub struct Sizes {
    pub rounds: usize,
    pub requests: u32,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        Sizes {
            rounds: 3,
            requests: if quick { 5_000 } else { 100_000 },
        }
    }
}

struct Target {
    name: String,
    /// redis-benchmark's connection arguments, or why the target is not available.
    args: Result<Vec<String>, String>,
    pid: Option<u32>,
    _keep: Option<Puerta>,
}

/// One redis-benchmark run: per test (ops/s, p50 ms, p99 ms), plus the proxy CPU and syscalls it
/// cost (no count without perf).
struct RunResult {
    per_test: Vec<(f64, f64, f64)>,
    cpu_seconds: f64,
    /// Of `cpu_seconds`, what the MSET test cost: one MSET of 10 keys over 10 slots is ten
    /// commands' work for the proxy, and would hide what the single-key commands cost.
    mset_cpu_seconds: f64,
    syscalls: Option<u64>,
}

pub fn run(dir: &Path, sizes: &Sizes) -> anyhow::Result<Vec<Table>> {
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
    eprintln!("==> 6-node Redis Cluster on {ports:?}");
    let cluster = RedisCluster::start(&ports, dir)?;
    let mut targets = vec![Target {
        name: "direct (redis-benchmark --cluster)".into(),
        args: Ok(vec![
            "--cluster".into(),
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            ports[0].to_string(),
        ]),
        pid: None,
        _keep: None,
    }];
    for threads in [1, 2] {
        targets.push(puerta(threads, &cluster.ports, None, dir));
    }
    let tls_cluster = tls_cluster(dir)?;
    let tls = tls_cluster.1.clone();
    targets.push(Target {
        name: "direct, TLS (redis-benchmark --cluster --tls)".into(),
        args: Ok([
            tls_client_args(&tls),
            vec!["--cluster".into(), "-h".into(), "127.0.0.1".into()],
            vec!["-p".into(), tls_cluster.0.ports[0].to_string()],
        ]
        .concat()),
        pid: None,
        _keep: None,
    });
    targets.push(puerta(1, &tls_cluster.0.ports, Some(&tls), dir));
    let mut tables = Vec::new();
    for &pipeline in PIPELINES {
        let mut results: Vec<Vec<RunResult>> = targets.iter().map(|_| Vec::new()).collect();
        for round in 1..=sizes.rounds {
            eprintln!("==> redis -P {pipeline}, round {round}/{}", sizes.rounds);
            for (t, r) in targets.iter_mut().zip(&mut results) {
                interrupt::check()?;
                let Ok(args) = &t.args else { continue };
                match benchmark(args, t.pid, pipeline, sizes.requests, dir) {
                    Ok(result) => r.push(result),
                    Err(e) => {
                        let reason = super::short_reason(&e);
                        eprintln!("    {}: {reason}", t.name);
                        t.args = Err(reason);
                    }
                }
            }
        }
        tables.push(table(&targets, &results, pipeline, sizes));
    }
    Ok(tables)
}

/// A 6-node cluster speaking only TLS, with certificates from a CA made for the run, and the
/// files a client (redis-benchmark, Puerta) presents to it and checks it with.
fn tls_cluster(dir: &Path) -> anyhow::Result<(RedisCluster, TlsArgs)> {
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir)?;
    let pki = Pki::new(&tls_dir, "bench")?;
    let node = pki.issue("node")?;
    let tls = TlsArgs {
        ca: pki.ca_file(),
        cert: node.cert,
        key: node.key,
    };
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
    eprintln!("==> 6-node TLS Redis Cluster on {ports:?}");
    let cluster = RedisCluster::start_tls(&ports, &tls_dir, tls.clone())?;
    Ok((cluster, tls))
}

/// redis-benchmark's and redis-cli's TLS arguments.
fn tls_client_args(tls: &TlsArgs) -> Vec<String> {
    tls.client()
        .into_iter()
        .filter_map(|a| a.into_string().ok())
        .collect()
}

/// `[redis.tls]` and `[redis.backend_tls]`: the node certificate serves both legs (and Puerta
/// requires no client certificate, as redis-benchmark's plain rows).
fn tls_sections(tls: &TlsArgs) -> String {
    format!(
        "[redis.tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n\
         [redis.backend_tls]\nca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {key:?}\n",
        cert = tls.cert,
        key = tls.key,
        ca = tls.ca
    )
}

fn puerta(threads: usize, nodes: &[u16], tls: Option<&TlsArgs>, dir: &Path) -> Target {
    let name = format!(
        "puerta, {threads} worker thread{}{}",
        if threads == 1 { "" } else { "s" },
        if tls.is_some() { ", TLS both legs" } else { "" }
    );
    let client_args = tls.map(tls_client_args).unwrap_or_default();
    let started = (|| {
        let listen = loopback(free_port()?);
        let seeds: Vec<String> = nodes.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        let config = format!(
            "mode = \"redis\"\nlisten_addr = \"{listen}\"\nmax_connections = 10000\n\
             worker_threads = {threads}\ndrain_timeout_sec = 1\n\n[redis]\ncluster_nodes = [{}]\n{}",
            seeds.join(", "),
            tls.map(tls_sections).unwrap_or_default()
        );
        let label = format!(
            "puerta-redis-{threads}{}",
            if tls.is_some() { "-tls" } else { "" }
        );
        let mut p = Puerta::start(&label, &config, listen, dir)?;
        wait_for_pong(listen.port(), &client_args, &mut p.proc)?;
        Ok::<_, anyhow::Error>(p)
    })();
    match started {
        Ok(p) => Target {
            name,
            args: Ok([
                client_args.clone(),
                vec!["-h".into(), "127.0.0.1".into()],
                vec!["-p".into(), p.listen.port().to_string()],
            ]
            .concat()),
            pid: Some(p.proc.pid()),
            _keep: Some(p),
        },
        Err(e) => {
            let reason = super::short_reason(&e);
            eprintln!("    {name}: not available: {reason}");
            Target {
                name,
                args: Err(reason),
                pid: None,
                _keep: None,
            }
        }
    }
}

fn wait_for_pong(port: u16, client_args: &[String], proc: &mut Process) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        interrupt::check()?;
        proc.ensure_running()?;
        let out = Command::new("redis-cli")
            .args(client_args)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "SET",
                "puerta:bench:probe",
                "1",
            ])
            .stdin(Stdio::null())
            .output()?;
        let reply = String::from_utf8_lossy(&out.stdout);
        if reply.trim() == "OK" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "accepts on {port} but SET does not answer OK: {}",
                reply.trim()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn benchmark(
    args: &[String],
    pid: Option<u32>,
    pipeline: u32,
    requests: u32,
    dir: &Path,
) -> anyhow::Result<RunResult> {
    let tests: Vec<&str> = TESTS.iter().map(|(csv, _)| csv_to_test(csv)).collect();
    let single: Vec<&str> = tests.iter().copied().filter(|t| *t != "mset").collect();
    let command = |tests: &str| {
        let mut cmd = Command::new("redis-benchmark");
        cmd.args(args)
            .args(["-t", tests, "-c", "50", "-d", "32", "-r", "100000"])
            .args([
                "-n",
                &requests.to_string(),
                "-P",
                &pipeline.to_string(),
                "--csv",
            ]);
        cmd
    };
    let cpu = |pid: Option<u32>| {
        pid.and_then(|p| procstat::cpu_seconds(p).ok())
            .unwrap_or(0.0)
    };
    let syscalls = pid.and_then(|p| SyscallCount::start(p, dir));
    let before = cpu(pid);
    let mut output = run_bounded(command(&single.join(",")), Duration::from_secs(300))?;
    let between = cpu(pid);
    output.push_str(&run_bounded(command("mset"), Duration::from_secs(300))?);
    let after = cpu(pid);
    Ok(RunResult {
        per_test: parse_csv(&output)?,
        cpu_seconds: after - before,
        mset_cpu_seconds: after - between,
        syscalls: syscalls.and_then(SyscallCount::stop),
    })
}

fn csv_to_test(csv_name: &str) -> &'static str {
    match csv_name {
        "SET" => "set",
        "GET" => "get",
        "INCR" => "incr",
        "LPUSH" => "lpush",
        _ => "mset",
    }
}

/// Runs `cmd` to completion or kills it after `limit`, so a hung proxy cannot hang the bench.
fn run_bounded(mut cmd: Command, limit: Duration) -> anyhow::Result<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start redis-benchmark")?;
    let deadline = Instant::now() + limit;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline || interrupt::requested() {
            let _ = child.kill();
            let _ = child.wait();
            interrupt::check()?;
            bail!("redis-benchmark did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // redis-benchmark stops at the first error reply but still exits 0.
    if let Some(line) = text
        .lines()
        .find(|l| l.contains("Error") || l.contains("ERR"))
    {
        bail!("redis-benchmark: {}", line.trim());
    }
    if !out.status.success() {
        bail!("redis-benchmark exited with {}", out.status);
    }
    Ok(text)
}

/// Per test in [`TESTS`] order: (ops/s, p50 ms, p99 ms) from redis-benchmark's `--csv` output.
fn parse_csv(text: &str) -> anyhow::Result<Vec<(f64, f64, f64)>> {
    let unquote = |l: &str| -> Vec<String> {
        l.split(',')
            .map(|f| f.trim_matches('"').to_string())
            .collect()
    };
    let header = text
        .lines()
        .find(|l| l.starts_with("\"test\""))
        .map(unquote)
        .context("no CSV header in redis-benchmark output")?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no {name} column"))
    };
    let (rps, p50, p99) = (col("rps")?, col("p50_latency_ms")?, col("p99_latency_ms")?);
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| l.starts_with('"'))
        .map(unquote)
        .collect();
    TESTS
        .iter()
        .map(|(name, _)| {
            let row = rows
                .iter()
                .find(|r| r.first().is_some_and(|t| t == name))
                .with_context(|| format!("redis-benchmark reported no {name} result"))?;
            let num = |i: usize| -> anyhow::Result<f64> {
                row.get(i)
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("bad {name} row"))
            };
            Ok((num(rps)?, num(p50)?, num(p99)?))
        })
        .collect()
}

fn table(targets: &[Target], results: &[Vec<RunResult>], pipeline: u32, sizes: &Sizes) -> Table {
    let mut columns: Vec<Column> = TESTS
        .iter()
        .map(|(_, label)| Column::new(&format!("{label} ops/s"), 0, true))
        .collect();
    columns.push(Column::new("p50 ms (worst test)", 3, true));
    columns.push(Column::new("p99 ms (worst test)", 3, true));
    columns.push(Column::new("proxy CPU s / M ops", 3, false));
    columns.push(Column::new("of which single-key", 3, false));
    columns.push(Column::new("of which MSET", 3, false));
    columns.push(Column::new("syscalls / op", 2, false));
    let ops_per_run = (sizes.requests as usize * TESTS.len()) as f64;
    let ops_per_test = sizes.requests as f64;
    let rows = targets
        .iter()
        .zip(results)
        .map(|(t, runs)| Row {
            target: t.name.clone(),
            values: t.args.as_ref().map_err(Clone::clone).map(|_| {
                let mut values: Vec<Option<f64>> = (0..TESTS.len())
                    .map(|i| median(&runs.iter().map(|r| r.per_test[i].0).collect::<Vec<_>>()))
                    .collect();
                let worst = |pick: fn(&(f64, f64, f64)) -> f64| {
                    median(
                        &runs
                            .iter()
                            .map(|r| r.per_test.iter().map(pick).fold(0.0, f64::max))
                            .collect::<Vec<_>>(),
                    )
                };
                values.push(worst(|x| x.1));
                values.push(worst(|x| x.2));
                let cpu = |per_m_ops: &dyn Fn(&RunResult) -> f64| {
                    t.pid
                        .and_then(|_| median(&runs.iter().map(per_m_ops).collect::<Vec<_>>()))
                };
                let single_ops = ops_per_run - ops_per_test;
                values.push(cpu(&|r| r.cpu_seconds / (ops_per_run / 1e6)));
                values.push(cpu(&|r| {
                    (r.cpu_seconds - r.mset_cpu_seconds) / (single_ops / 1e6)
                }));
                values.push(cpu(&|r| r.mset_cpu_seconds / (ops_per_test / 1e6)));
                values.push(median(
                    &runs
                        .iter()
                        .filter_map(|r| r.syscalls)
                        .map(|n| n as f64 / ops_per_run)
                        .collect::<Vec<_>>(),
                ));
                values
            }),
        })
        .collect();
    Table {
        title: format!(
            "Redis, -P {pipeline} (-c 50 -d 32 -r 100000, {} requests per test, median of {} rounds)",
            sizes.requests, sizes.rounds
        ),
        columns,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"SET\",\"100.00\",\"1\",\"0\",\"0.5\",\"1\",\"0.9\",\"2\"\n\
                   \"GET\",\"200.00\",\"1\",\"0\",\"0.4\",\"1\",\"0.8\",\"2\"\n\
                   \"INCR\",\"300.00\",\"1\",\"0\",\"0.3\",\"1\",\"0.7\",\"2\"\n\
                   \"LPUSH\",\"400.00\",\"1\",\"0\",\"0.2\",\"1\",\"0.6\",\"2\"\n\
                   \"MSET (10 keys)\",\"50.00\",\"1\",\"0\",\"1.5\",\"1\",\"2.5\",\"2\"\n";
        let parsed = parse_csv(csv).unwrap();
        assert_eq!(parsed[0], (100.0, 0.5, 0.9));
        assert_eq!(parsed[2], (50.0, 1.5, 2.5));
        assert_eq!(parsed[4], (400.0, 0.2, 0.6));
    }

    #[test]
    fn missing_test_is_an_error() {
        let csv =
            "\"test\",\"rps\",\"p50_latency_ms\",\"p99_latency_ms\"\n\"SET\",\"1\",\"1\",\"1\"\n";
        assert!(parse_csv(csv).is_err());
    }
}
