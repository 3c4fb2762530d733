//! The soak over time as one markdown table: a row per sample (per minute on long runs; the JSON has
//! every sample), with the client rates and errors of the interval and what happened in it.

use super::run_loop::Outcome;
use super::sample::{DaemonSample, Sample};
use super::summary::fmt;
use super::timeline::{Event, Stack};
use super::Plan;

/// More rows than this and the table shows one per minute instead of one per sample.
const MAX_ROWS: usize = 40;

pub fn markdown(o: &Outcome, plan: &Plan) -> String {
    let rows = pick_rows(&o.samples, plan.sample_every.as_secs_f64());
    let mut out = String::from(
        "### Over time\n\n\
         | t s | Mongo RSS MiB | fds | thr | conns | Redis RSS MiB | fds | thr | conns \
         | Mongo ops/s | err | Redis ops/s | err | events |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let mut previous: Option<&Sample> = None;
    for s in rows {
        let events = events_between(&o.timeline.events, previous.map(|p| p.t), s.t);
        out.push_str(&format!(
            "| {:.0} | {} | {} | {} | {} | {} |\n",
            s.t,
            daemon_cells(&s.mongodb),
            daemon_cells(&s.redis),
            client_cells(previous, s, |x| &x.mongodb_clients),
            client_cells(previous, s, |x| &x.redis_clients),
            events
        ));
        previous = Some(s);
    }
    out
}

/// Every sample, or when that is too many, the first of each minute plus the last.
fn pick_rows(samples: &[Sample], sample_every: f64) -> Vec<&Sample> {
    if samples.len() <= MAX_ROWS {
        return samples.iter().collect();
    }
    let stride = (60.0 / sample_every).ceil().max(1.0) as usize;
    let mut rows: Vec<&Sample> = samples.iter().step_by(stride).collect();
    if let Some(last) = samples.last() {
        if rows.last().is_none_or(|r| r.t != last.t) {
            rows.push(last);
        }
    }
    rows
}

fn daemon_cells(d: &DaemonSample) -> String {
    format!(
        "{} | {} | {} | {}",
        fmt(d.rss_kib.map(|k| k / 1024.0), 1),
        fmt(d.fds, 0),
        fmt(d.threads, 0),
        fmt(d.connections_open, 0)
    )
}

/// Ops/s and errors since the previous row ("-" for the first).
fn client_cells(
    previous: Option<&Sample>,
    now: &Sample,
    pick: fn(&Sample) -> &super::load::ClientTotals,
) -> String {
    let Some(p) = previous else {
        return "- | -".to_string();
    };
    let (a, b) = (pick(p), pick(now));
    let secs = (now.t - p.t).max(1.0);
    format!(
        "{:.0} | {}",
        b.ops.saturating_sub(a.ops) as f64 / secs,
        b.errors.saturating_sub(a.errors)
    )
}

/// The events in `(from, to]`, short: `M: SIGKILL stand-in :4000; R: ...`.
fn events_between(events: &[Event], from: Option<f64>, to: f64) -> String {
    events
        .iter()
        .filter(|e| from.is_none_or(|f| e.t > f) && e.t <= to)
        .map(|e| {
            let tag = match e.stack {
                Stack::Mongodb => "M",
                Stack::Redis => "R",
            };
            format!("{tag}: {}", e.what.replace('|', "/"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
