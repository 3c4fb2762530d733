//! The verdict of a soak: per daemon, start / max / end of RSS, descriptors, threads and connections
//! and the slope over the second half (the "flat" check: warm-up growth in the first half is not a
//! leak, steady growth after it is); per mode, client errors inside and outside the disruption windows.

use serde::{Serialize, Serializer};

use super::load::ClientTotals;
use super::run_loop::Outcome;
use super::sample::{DaemonSample, Sample};
use super::timeline::{in_window, Stack};

pub fn as_secs<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[derive(Serialize, Default)]
pub struct Series {
    pub start: Option<f64>,
    pub max: Option<f64>,
    pub end: Option<f64>,
    /// Least-squares slope over the samples of the second half, per minute.
    pub second_half_slope_per_min: Option<f64>,
}

#[derive(Serialize)]
pub struct DaemonSummary {
    pub rss_kib: Series,
    pub fds: Series,
    pub threads: Series,
    pub connections_open: Series,
    pub connections_accepted: Option<f64>,
    pub daemon_errors: Option<f64>,
    pub kernel_bytes: Option<f64>,
    pub log_warn_lines: usize,
    pub log_error_lines: usize,
    pub error_counters: Vec<(String, f64)>,
}

#[derive(Serialize)]
pub struct ClientSummary {
    pub disruptions: usize,
    pub ops: u64,
    pub connections: u64,
    pub errors: u64,
    pub errors_in_disruptions: u64,
    pub errors_outside_disruptions: u64,
    pub mismatches: u64,
    pub top_error_kinds: Vec<(String, u64)>,
}

#[derive(Serialize)]
pub struct Report {
    pub minutes_run: f64,
    pub forwarding: String,
    pub mongodb: DaemonSummary,
    pub redis: DaemonSummary,
    pub mongodb_clients: ClientSummary,
    pub redis_clients: ClientSummary,
    pub ended_by: Option<String>,
}

impl Report {
    pub fn build(o: &Outcome) -> Report {
        Report {
            minutes_run: o.samples.last().map_or(0.0, |s| s.t / 60.0),
            forwarding: o.forwarding.clone(),
            mongodb: daemon(
                &o.samples,
                |s| &s.mongodb,
                o.mongodb_log,
                &o.mongodb_error_counters,
            ),
            redis: daemon(
                &o.samples,
                |s| &s.redis,
                o.redis_log,
                &o.redis_error_counters,
            ),
            mongodb_clients: clients(o, Stack::Mongodb, &o.mongodb_clients),
            redis_clients: clients(o, Stack::Redis, &o.redis_clients),
            ended_by: o.ended_by.clone(),
        }
    }

    pub fn markdown(&self) -> String {
        let (m, r) = (&self.mongodb, &self.redis);
        let (mc, rc) = (&self.mongodb_clients, &self.redis_clients);
        let mib = |x: Option<f64>| x.map(|v| v / 1024.0);
        let rows: Vec<(String, String, String)> = vec![
            row3("RSS MiB, start / max / end", &m.rss_kib, &r.rss_kib, mib, 1),
            row(
                "RSS slope over the second half, KiB/min",
                fmt(m.rss_kib.second_half_slope_per_min, 1),
                fmt(r.rss_kib.second_half_slope_per_min, 1),
            ),
            row3("fds, start / max / end", &m.fds, &r.fds, |x| x, 0),
            row(
                "fd slope over the second half, per min",
                fmt(m.fds.second_half_slope_per_min, 2),
                fmt(r.fds.second_half_slope_per_min, 2),
            ),
            row3(
                "threads, start / max / end",
                &m.threads,
                &r.threads,
                |x| x,
                0,
            ),
            row3(
                "open connections (daemon), start / max / end",
                &m.connections_open,
                &r.connections_open,
                |x| x,
                0,
            ),
            row(
                "connections accepted",
                fmt(m.connections_accepted, 0),
                fmt(r.connections_accepted, 0),
            ),
            row(
                "errors the daemon counted",
                fmt(m.daemon_errors, 0),
                fmt(r.daemon_errors, 0),
            ),
            row(
                "log lines WARN / ERROR",
                format!("{} / {}", m.log_warn_lines, m.log_error_lines),
                format!("{} / {}", r.log_warn_lines, r.log_error_lines),
            ),
            row(
                "disruptions (kills, failovers)",
                mc.disruptions.to_string(),
                rc.disruptions.to_string(),
            ),
            row("client operations", mc.ops.to_string(), rc.ops.to_string()),
            row(
                "client connections opened",
                mc.connections.to_string(),
                rc.connections.to_string(),
            ),
            row(
                "client errors: total / in disruptions / outside",
                errors(mc),
                errors(rc),
            ),
            row(
                "client read-back mismatches",
                mc.mismatches.to_string(),
                rc.mismatches.to_string(),
            ),
        ];
        let mut out = format!(
            "### Soak summary ({:.1} min)\n\n| | MongoDB mode | Redis mode |\n|---|---:|---:|\n",
            self.minutes_run
        );
        for (name, a, b) in rows {
            out.push_str(&format!("| {name} | {a} | {b} |\n"));
        }
        out.push_str(&format!(
            "\nMongoDB data path: {}; kernel-path bytes: {}.\n",
            self.forwarding,
            fmt(m.kernel_bytes, 0)
        ));
        for (stack, d) in [("MongoDB", m), ("Redis", r)] {
            if !d.error_counters.is_empty() {
                out.push_str(&format!("\n{stack} daemon failure counters at the end:\n"));
                for (series, n) in &d.error_counters {
                    out.push_str(&format!("- `{series}` {n:.0}\n"));
                }
            }
        }
        for (stack, c) in [("MongoDB", mc), ("Redis", rc)] {
            if !c.top_error_kinds.is_empty() {
                out.push_str(&format!("\n{stack} client errors by kind:\n"));
                for (kind, n) in &c.top_error_kinds {
                    out.push_str(&format!("- {n} × `{}`\n", kind.replace('`', "'")));
                }
            }
        }
        if let Some(reason) = &self.ended_by {
            out.push_str(&format!("\n**Stopped early:** {reason}\n"));
        }
        out
    }
}

fn row(name: &str, a: String, b: String) -> (String, String, String) {
    (name.to_string(), a, b)
}

fn row3(
    name: &str,
    a: &Series,
    b: &Series,
    scale: fn(Option<f64>) -> Option<f64>,
    decimals: usize,
) -> (String, String, String) {
    let triple = |s: &Series| {
        format!(
            "{} / {} / {}",
            fmt(scale(s.start), decimals),
            fmt(scale(s.max), decimals),
            fmt(scale(s.end), decimals)
        )
    };
    (name.to_string(), triple(a), triple(b))
}

fn errors(c: &ClientSummary) -> String {
    format!(
        "{} / {} / {}",
        c.errors, c.errors_in_disruptions, c.errors_outside_disruptions
    )
}

pub fn fmt(x: Option<f64>, decimals: usize) -> String {
    x.map_or("-".to_string(), |v| format!("{v:.decimals$}"))
}

fn daemon(
    samples: &[Sample],
    pick: fn(&Sample) -> &DaemonSample,
    (warn, error): (usize, usize),
    error_counters: &[(String, f64)],
) -> DaemonSummary {
    let series = |value: fn(&DaemonSample) -> Option<f64>| {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|s| value(pick(s)).map(|v| (s.t, v)))
            .collect();
        series_of(&points)
    };
    let last = samples.last().map(pick);
    DaemonSummary {
        rss_kib: series(|d| d.rss_kib),
        fds: series(|d| d.fds),
        threads: series(|d| d.threads),
        connections_open: series(|d| d.connections_open),
        connections_accepted: last.and_then(|d| d.connections_accepted),
        daemon_errors: last.and_then(|d| d.daemon_errors),
        kernel_bytes: last.and_then(|d| d.kernel_bytes),
        log_warn_lines: warn,
        log_error_lines: error,
        error_counters: error_counters.to_vec(),
    }
}

/// Start / max / end of `(t seconds, value)` points, and the slope over those in the second half.
fn series_of(points: &[(f64, f64)]) -> Series {
    let Some(&(t_end, _)) = points.last() else {
        return Series::default();
    };
    let second_half: Vec<(f64, f64)> = points
        .iter()
        .filter(|(t, _)| *t >= t_end / 2.0)
        .map(|&(t, v)| (t / 60.0, v))
        .collect();
    Series {
        start: points.first().map(|p| p.1),
        max: points.iter().map(|p| p.1).reduce(f64::max),
        end: Some(points[points.len() - 1].1),
        second_half_slope_per_min: slope(&second_half),
    }
}

/// Least-squares slope of `(x, y)`; `None` with fewer than 3 points.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn clients(o: &Outcome, stack: Stack, totals: &ClientTotals) -> ClientSummary {
    let windows = &o.timeline.windows;
    let in_disruptions: u64 = totals
        .error_seconds
        .iter()
        .filter(|(&unix, _)| in_window(windows, stack, o.timeline.t_of_unix(unix as f64)))
        .map(|(_, n)| n)
        .sum();
    let mut kinds: Vec<(String, u64)> = totals
        .error_kinds
        .iter()
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    kinds.truncate(6);
    ClientSummary {
        disruptions: windows.iter().filter(|w| w.stack == stack).count(),
        ops: totals.ops,
        connections: totals.connections,
        errors: totals.errors,
        errors_in_disruptions: in_disruptions,
        errors_outside_disruptions: totals.errors.saturating_sub(in_disruptions),
        mismatches: totals.mismatches,
        top_error_kinds: kinds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        assert!((slope(&line).unwrap() - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 5.0)).collect();
        assert_eq!(slope(&flat), Some(0.0));
        assert_eq!(slope(&line[..2]), None);
    }

    #[test]
    fn series_slope_uses_only_the_second_half_per_minute() {
        // Warm-up: grows 600 over the first 10 minutes, then flat.
        let points: Vec<(f64, f64)> = (0..=20)
            .map(|m| {
                let t = m as f64 * 60.0;
                (
                    t,
                    if m < 10 {
                        100.0 + 60.0 * m as f64
                    } else {
                        700.0
                    },
                )
            })
            .collect();
        let s = series_of(&points);
        assert_eq!(
            (s.start, s.max, s.end),
            (Some(100.0), Some(700.0), Some(700.0))
        );
        assert_eq!(s.second_half_slope_per_min, Some(0.0));
        let growing: Vec<(f64, f64)> = (0..=20)
            .map(|m| (m as f64 * 60.0, 10.0 * m as f64))
            .collect();
        let g = series_of(&growing).second_half_slope_per_min.unwrap();
        assert!((g - 10.0).abs() < 1e-9, "{g}");
    }
}
