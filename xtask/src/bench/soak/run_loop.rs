//! The soak itself: both stacks up, clients running, and a loop that samples every S seconds and lets
//! the two disruption schedules act, until the time is up, Ctrl-C, a daemon dies or the harness breaks.
//! Whatever ends it, what was collected comes back so it can still be reported.

use std::path::Path;
use std::time::{Duration, Instant};

use super::load::{ClientTotals, Clients};
use super::mongo_chaos::MongoChaos;
use super::redis_chaos::RedisChaos;
use super::sample::{self, Sample};
use super::stacks::{MongoStack, RedisStack};
use super::timeline::{Stack, Timeline};
use super::Plan;
use crate::interrupt;

pub struct Outcome {
    pub samples: Vec<Sample>,
    pub timeline: Timeline,
    /// Why the run stopped before its time (a daemon died, the harness broke, Ctrl-C).
    pub ended_by: Option<String>,
    /// The MongoDB daemon's log line saying which data path it uses.
    pub forwarding: String,
    pub mongodb_clients: ClientTotals,
    pub redis_clients: ClientTotals,
    /// (WARN, ERROR) line counts in each daemon's log.
    pub mongodb_log: (usize, usize),
    pub redis_log: (usize, usize),
    /// The daemons' non-zero failure counters at the end.
    pub mongodb_error_counters: Vec<(String, f64)>,
    pub redis_error_counters: Vec<(String, f64)>,
}

struct Running {
    mongo: MongoStack,
    redis: RedisStack,
    clients: Clients,
    mongo_chaos: MongoChaos,
    redis_chaos: RedisChaos,
    timeline: Timeline,
}

pub fn run(dir: &Path, plan: &Plan) -> anyhow::Result<Outcome> {
    let mongo = MongoStack::start(dir)?;
    let redis = RedisStack::start(dir)?;
    let clients = Clients::start(dir, mongo.puerta.listen, redis.puerta.listen)?;
    let timeline = Timeline::start();
    let started = timeline.started();
    let mut r = Running {
        mongo,
        redis,
        clients,
        mongo_chaos: MongoChaos::new(plan.kill_every, started),
        redis_chaos: RedisChaos::new(plan.kill_every, started),
        timeline,
    };
    eprintln!(
        "==> soak for {:.1} min: a kill in each mode every {:?}, a sample every {:?}",
        plan.minutes, plan.kill_every, plan.sample_every
    );
    let mut samples = Vec::new();
    let mut next_sample = started;
    let end = started + plan.duration;
    let ended_by = loop {
        if interrupt::requested() {
            break Some("interrupted (Ctrl-C)".to_string());
        }
        let now = Instant::now();
        if now >= next_sample {
            samples.push(take_sample(&r));
            next_sample += plan.sample_every;
        }
        if now >= end {
            break None;
        }
        if let Err(e) = step(&mut r) {
            break Some(format!("{e:#}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if samples
        .last()
        .is_none_or(|s| r.timeline.t(Instant::now()) - s.t > 1.0)
    {
        samples.push(take_sample(&r));
    }
    let outcome = Outcome {
        samples,
        forwarding: r.mongo.forwarding(),
        mongodb_clients: r.clients.totals(Stack::Mongodb),
        redis_clients: r.clients.totals(Stack::Redis),
        mongodb_log: log_levels(&r.mongo.puerta.proc),
        redis_log: log_levels(&r.redis.puerta.proc),
        mongodb_error_counters: sample::error_counters(r.mongo.admin),
        redis_error_counters: sample::error_counters(r.redis.admin),
        timeline: r.timeline,
        ended_by,
    };
    // Clients first, so that tearing the stacks down is not counted against anything.
    drop(r.clients);
    Ok(outcome)
}

/// One round: everything that must be alive is, then each disruption schedule acts.
fn step(r: &mut Running) -> anyhow::Result<()> {
    r.mongo.puerta.proc.ensure_running()?;
    r.redis.puerta.proc.ensure_running()?;
    r.mongo.standins.ensure_running()?;
    r.redis.cluster.ensure_running()?;
    r.clients.ensure_running()?;
    r.mongo_chaos.poll(&mut r.mongo, &mut r.timeline)?;
    r.redis_chaos.poll(&mut r.redis, &mut r.timeline)
}

fn take_sample(r: &Running) -> Sample {
    let s = Sample {
        t: r.timeline.t(Instant::now()).round(),
        mongodb: sample::daemon(r.mongo.puerta.proc.pid(), r.mongo.admin, Stack::Mongodb),
        redis: sample::daemon(r.redis.puerta.proc.pid(), r.redis.admin, Stack::Redis),
        mongodb_clients: r.clients.totals(Stack::Mongodb),
        redis_clients: r.clients.totals(Stack::Redis),
    };
    eprintln!("{}", progress_line(&s));
    s
}

fn progress_line(s: &Sample) -> String {
    let daemon = |d: &sample::DaemonSample| {
        let v = |x: Option<f64>| x.map_or("?".to_string(), |x| format!("{x:.0}"));
        format!(
            "rss {} KiB fds {} thr {} conns {}",
            v(d.rss_kib),
            v(d.fds),
            v(d.threads),
            v(d.connections_open)
        )
    };
    format!(
        "    [{:>7.1}s] mongodb {} | redis {} | client ops {}/{} errors {}/{}",
        s.t,
        daemon(&s.mongodb),
        daemon(&s.redis),
        s.mongodb_clients.ops,
        s.redis_clients.ops,
        s.mongodb_clients.errors,
        s.redis_clients.errors
    )
}

/// Counts the WARN and ERROR lines of a daemon log (tracing's plain-text format).
fn log_levels(proc: &testkit::process::Process) -> (usize, usize) {
    let text = proc.output();
    let count = |level: &str| text.lines().filter(|l| l.contains(level)).count();
    (count(" WARN "), count(" ERROR "))
}
