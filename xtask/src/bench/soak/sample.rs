//! One look at a daemon: what /proc says (RSS, descriptors, threads) and what its own /metrics say
//! (open connections, accepted, errors it counted, kernel-path bytes).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Serialize;

use super::load::ClientTotals;
use super::timeline::Stack;
use crate::bench::procstat;

#[derive(Serialize, Clone, Default)]
pub struct DaemonSample {
    pub rss_kib: Option<f64>,
    pub fds: Option<f64>,
    pub threads: Option<f64>,
    pub connections_open: Option<f64>,
    pub connections_accepted: Option<f64>,
    /// Failures the daemon counted on its side (MongoDB: backend connect failures + no backend up;
    /// Redis: backend errors + protocol errors + error replies sent to clients).
    pub daemon_errors: Option<f64>,
    /// MongoDB mode: bytes spliced by the kernel path, both directions.
    pub kernel_bytes: Option<f64>,
}

#[derive(Serialize, Clone)]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    pub mongodb: DaemonSample,
    pub redis: DaemonSample,
    pub mongodb_clients: ClientTotals,
    pub redis_clients: ClientTotals,
}

/// /proc first (the scrape itself briefly holds a descriptor), then /metrics.
pub fn daemon(pid: u32, admin: SocketAddr, stack: Stack) -> DaemonSample {
    let mut s = DaemonSample {
        rss_kib: procstat::rss_kib(pid).ok(),
        fds: fd_count(pid),
        threads: status_field(pid, "Threads:"),
        ..DaemonSample::default()
    };
    let Some(text) = scrape(admin) else {
        return s;
    };
    s.connections_open = metric_sum(&text, "puerta_connections_open");
    s.connections_accepted = metric_sum(&text, "puerta_connections_accepted_total");
    let errors: &[&str] = match stack {
        Stack::Mongodb => &[
            "puerta_backend_connect_failures_total",
            "puerta_no_backend_total",
        ],
        Stack::Redis => &[
            "puerta_redis_backend_errors_total",
            "puerta_redis_protocol_errors_total",
            "puerta_redis_errors_total",
        ],
    };
    s.daemon_errors = Some(errors.iter().filter_map(|m| metric_sum(&text, m)).sum());
    if stack == Stack::Mongodb {
        s.kernel_bytes = metric_where(&text, "puerta_bytes_total", "path=\"kernel\"");
    }
    s
}

fn fd_count(pid: u32) -> Option<f64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as f64)
}

fn status_field(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `GET /metrics` on the admin port; `None` if it does not answer 200 within a few seconds.
pub fn scrape(admin: SocketAddr) -> Option<String> {
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&admin, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Every non-zero failure counter the daemon exports (`*_total` series whose name says error, failure,
/// refused, timeout or no backend), as `name{labels}` and value: what the one-number sum is made of.
pub fn error_counters(admin: SocketAddr) -> Vec<(String, f64)> {
    const WORDS: &[&str] = &["error", "failure", "refused", "timeout", "no_backend"];
    let Some(text) = scrape(admin) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            let value: f64 = value.parse().ok()?;
            let wanted = name.ends_with("_total") && WORDS.iter().any(|w| name.contains(w));
            (wanted && value > 0.0).then(|| (series.to_string(), value))
        })
        .collect()
}

/// The sum of every series of metric `name` (all label sets).
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = series(text, name).map(|(_, v)| v).collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The sum of the series of metric `name` whose labels contain `fragment`.
pub fn metric_where(text: &str, name: &str, fragment: &str) -> Option<f64> {
    let values: Vec<f64> = series(text, name)
        .filter(|(labels, _)| labels.contains(fragment))
        .map(|(_, v)| v)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// `(labels, value)` of every sample line of metric `name` (not of `name_suffix` metrics).
fn series<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once('}')?,
            None if rest.starts_with(' ') => ("", rest),
            None => return None,
        };
        Some((labels, value.split_whitespace().next()?.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE puerta_connections_open gauge
puerta_connections_open 7
puerta_connections_open_max 99
puerta_backend_up{backend=\"127.0.0.1:4000\"} 1
puerta_backend_up{backend=\"127.0.0.1:4001\"} 0
puerta_bytes_total{path=\"kernel\",direction=\"client_to_backend\"} 100
puerta_bytes_total{path=\"kernel\",direction=\"backend_to_client\"} 50
puerta_bytes_total{path=\"userspace\",direction=\"backend_to_client\"} 3
";

    #[test]
    fn sums_series_and_ignores_longer_names() {
        assert_eq!(metric_sum(TEXT, "puerta_connections_open"), Some(7.0));
        assert_eq!(metric_sum(TEXT, "puerta_bytes_total"), Some(153.0));
        assert_eq!(metric_sum(TEXT, "puerta_missing"), None);
    }

    #[test]
    fn filters_by_label_fragment() {
        assert_eq!(
            metric_where(TEXT, "puerta_backend_up", "127.0.0.1:4001"),
            Some(0.0)
        );
        assert_eq!(
            metric_where(TEXT, "puerta_bytes_total", "path=\"kernel\""),
            Some(150.0)
        );
        assert_eq!(metric_where(TEXT, "puerta_backend_up", ":5000"), None);
    }

    #[test]
    fn reads_our_own_descriptors_and_threads() {
        let pid = std::process::id();
        assert!(fd_count(pid).unwrap() >= 3.0);
        assert!(status_field(pid, "Threads:").unwrap() >= 1.0);
    }
}
