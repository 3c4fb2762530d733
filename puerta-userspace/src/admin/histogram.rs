//! A latency histogram of fixed buckets kept in atomic counters, for what is recorded once per
//! request. The recorder's own histograms keep every sample until they are drained (at a scrape or
//! an upkeep), 24 bytes each, and read a clock per sample: at hundreds of thousands of requests a
//! second that is megabytes a second between drains and a measurable share of a GET's cost. Here
//! a sample is two relaxed adds, and the memory is fixed.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::metrics::LATENCY_BUCKETS;

const BUCKETS: usize = LATENCY_BUCKETS.len();

/// The upper bounds of [`LATENCY_BUCKETS`] in nanoseconds, for integer comparison.
const BOUNDS_NANOS: [u64; BUCKETS] = {
    let mut bounds = [0; BUCKETS];
    let mut i = 0;
    while i < BUCKETS {
        bounds[i] = (LATENCY_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    bounds
};

#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Samples per bucket, not cumulative; the last counts those above every bound (`+Inf` only).
    counts: [AtomicU64; BUCKETS + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS
            .iter()
            .position(|bound| nanos <= *bound)
            .unwrap_or(BUCKETS);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// What it has counted so far.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment, or several histograms' added up (one series kept by
/// several threads, each in its own [`LatencyHistogram`] so that they never write one cache line).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    counts: [u64; BUCKETS + 1],
    sum_nanos: u64,
}

impl Snapshot {
    pub fn add(&mut self, other: &Snapshot) {
        for (total, count) in self.counts.iter_mut().zip(other.counts) {
            *total += count;
        }
        self.sum_nanos = self.sum_nanos.saturating_add(other.sum_nanos);
    }

    /// Appends the series in the Prometheus text format: `labels` is the label list without
    /// braces (`node="…"`), already escaped (see [`label_value`]). The family's `# HELP` and
    /// `# TYPE` lines are the caller's, once for all its series.
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count;
            let le = match LATENCY_BUCKETS.get(i) {
                Some(bound) => bound.to_string(),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_nanos as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// `value` escaped for a label value in the Prometheus text format.
pub fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_first_bucket_that_holds_them_and_threads_add_up() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(50)); // on the first bound: in it
        h.record(Duration::from_nanos(50_001));
        h.record(Duration::from_millis(3));
        // Kept by two threads, shown as one series.
        let other = LatencyHistogram::default();
        other.record(Duration::from_secs(60)); // above every bound
        let mut total = h.snapshot();
        total.add(&other.snapshot());
        let mut text = String::new();
        total.render("lat_seconds", "node=\"a:1\"", &mut text);
        let line = |le: &str| {
            let prefix = format!("lat_seconds_bucket{{node=\"a:1\",le=\"{le}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no bucket {le} in\n{text}"))
                .to_string()
        };
        assert_eq!(line("0.00005"), "1");
        assert_eq!(line("0.0001"), "2");
        assert_eq!(line("0.0025"), "2");
        assert_eq!(line("0.005"), "3");
        assert_eq!(line("10"), "3");
        assert_eq!(line("+Inf"), "4");
        assert!(
            text.contains("lat_seconds_count{node=\"a:1\"} 4\n"),
            "{text}"
        );
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("lat_seconds_sum{node=\"a:1\"} "))
            .expect("a sum line")
            .parse()
            .expect("a number");
        assert!((sum - 60.003100001).abs() < 1e-9, "{sum}");
        assert_eq!(text.lines().count(), BUCKETS + 3);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label_value("127.0.0.1:7000"), "127.0.0.1:7000");
    }
}
