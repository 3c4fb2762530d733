//! A minimal HTTP/1.1 GET for the admin endpoints (one request per connection), so tests need no HTTP
//! client crate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Status code and body of `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
    anyhow::ensure!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked bodies are not supported by this helper"
    );
    Ok((status, body.to_string()))
}

/// Polls `GET path` until `accept(status, body)` holds; fails with the last answer after `within`.
pub fn wait_for(
    addr: SocketAddr,
    path: &str,
    within: Duration,
    accept: impl Fn(u16, &str) -> bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let last = get(addr, path);
        if let Ok((status, body)) = &last {
            if accept(*status, body) {
                return Ok(body.clone());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("GET {path} on {addr}: condition not met; last answer {last:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One sample line of the Prometheus text format: `name{labels} value`.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: String,
    pub value: f64,
}

/// Parses the exposition text strictly enough to catch a malformed page: every non-comment line must
/// be a valid metric name, optional `{...}` labels and a float.
pub fn parse_metrics(text: &str) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow::anyhow!("no value in {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .map_err(|e| anyhow::anyhow!("bad value in {line:?}: {e}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let labels = rest
                    .strip_suffix('}')
                    .ok_or_else(|| anyhow::anyhow!("unclosed labels in {line:?}"))?;
                (name, labels)
            }
            None => (series, ""),
        };
        let valid_name = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        anyhow::ensure!(valid_name, "bad metric name in {line:?}");
        samples.push(Sample {
            name: name.to_string(),
            labels: labels.to_string(),
            value,
        });
    }
    Ok(samples)
}

/// The value of the sample named `name` whose labels contain every `label_parts` substring.
pub fn sample(samples: &[Sample], name: &str, label_parts: &[&str]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && label_parts.iter().all(|p| s.labels.contains(p)))
        .map(|s| s.value)
}
