//! Redis-mode metrics. Recording is a no-op until the admin port installs a recorder. Label values
//! are bounded: command names come from the command table (anything else is `unknown`) and error
//! kinds are Redis' own codes or one of the first few others seen, so a client cannot grow the
//! series set.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::admin::{label_value, LatencyHistogram, Snapshot};
use crate::redis::command::spec;
use crate::redis::resp::Frame;
use crate::redis::stats::Stats;

/// `puerta_redis_commands_total` per table entry, then `unknown`, resolved once.
static COMMAND_COUNTERS: OnceLock<Vec<metrics::Counter>> = OnceLock::new();

/// Copies the workers' command counts (see `Workers::commands`) into the recorder, at scrape
/// time.
pub fn publish_commands(counts: &[u64]) {
    let Some(counters) = COMMAND_COUNTERS.get() else {
        return;
    };
    for (counter, count) in counters.iter().zip(counts) {
        counter.absolute(*count);
    }
}

/// An error reply on its way to a client, by kind (`ERR`, `WRONGTYPE`, `MOVED`, ...).
pub fn reply(frame: &Frame) {
    if let Frame::Error(text) | Frame::BlobError(text) = frame {
        reply_error(Some(text));
    }
}

/// [`reply`] for the text of an error reply (`None` for any other reply).
pub fn reply_error(text: Option<&[u8]>) {
    if let Some(text) = text {
        metrics::counter!("puerta_redis_errors_total", "kind" => error_kind(text)).increment(1);
    }
}

const NODE_LATENCY: &str = "puerta_redis_node_latency_seconds";

/// `puerta_redis_node_latency_seconds`: a [`LatencyHistogram`] per node address and worker,
/// recorded once per request, so kept outside the recorder and never written by two worker
/// threads; a node's series adds up its workers'. One entry per address and worker ever
/// connected from, like the recorder's series.
static NODE_LATENCIES: Mutex<Vec<NodeLatency>> = Mutex::new(Vec::new());

struct NodeLatency {
    addr: Arc<str>,
    worker: usize,
    histogram: Arc<LatencyHistogram>,
}

/// The histogram a backend connection records its reply latency into (its node's, of the calling
/// thread's worker, which drives the connection), looked up once per connection.
pub fn node_latency(addr: &Arc<str>) -> Arc<LatencyHistogram> {
    let worker = crate::redis::client::worker::current();
    let mut all = NODE_LATENCIES.lock().unwrap_or_else(|e| e.into_inner());
    let known = all.iter().find(|n| n.worker == worker && n.addr == *addr);
    if let Some(n) = known {
        return n.histogram.clone();
    }
    let histogram = Arc::new(LatencyHistogram::default());
    all.push(NodeLatency {
        addr: addr.clone(),
        worker,
        histogram: histogram.clone(),
    });
    histogram
}

/// Appends `puerta_redis_node_latency_seconds` (every node's series) to a `/metrics` page.
pub fn render_node_latency(out: &mut String) {
    let all = NODE_LATENCIES.lock().unwrap_or_else(|e| e.into_inner());
    let mut nodes: Vec<(&Arc<str>, Snapshot)> = Vec::new();
    for n in all.iter() {
        let snapshot = n.histogram.snapshot();
        match nodes.iter_mut().find(|(addr, _)| **addr == n.addr) {
            Some((_, total)) => total.add(&snapshot),
            None => nodes.push((&n.addr, snapshot)),
        }
    }
    if nodes.is_empty() {
        return;
    }
    out.push_str(&format!(
        "# HELP {NODE_LATENCY} Time from writing a request to a node until its reply, by node\n\
         # TYPE {NODE_LATENCY} histogram\n"
    ));
    for (addr, total) in nodes {
        let labels = format!("node=\"{}\"", label_value(addr));
        total.render(NODE_LATENCY, &labels, out);
    }
    out.push('\n');
}

/// How long one command was held for a failover (`failover_hold_ms`).
pub fn failover_hold(took: Duration) {
    metrics::histogram!("puerta_redis_failover_hold_seconds").record(took.as_secs_f64());
}

/// The error codes of Redis itself, each always counted under its own name.
const REDIS_CODES: &[&str] = &[
    "ASK",
    "BUSY",
    "BUSYGROUP",
    "BUSYKEY",
    "CLUSTERDOWN",
    "CROSSSLOT",
    "ERR",
    "EXECABORT",
    "LOADING",
    "MASTERDOWN",
    "MISCONF",
    "MOVED",
    "NOAUTH",
    "NOGROUP",
    "NOPERM",
    "NOPROTO",
    "NOREPLICAS",
    "NOSCRIPT",
    "NOTBUSY",
    "OOM",
    "READONLY",
    "TRYAGAIN",
    "UNBLOCKED",
    "UNKILLABLE",
    "WRONGPASS",
    "WRONGTYPE",
];

/// Other codes (a module's, a script's) get series of their own up to this many; later ones
/// count as `OTHER`. A client chooses the error text a node replies with (`EVAL "return
/// redis.error_reply('ANYTHING')" 0`), and every new label value is a series held until exit.
const MAX_OTHER_CODES: usize = 32;

static OTHER_CODES: OtherCodes = OtherCodes::new(MAX_OTHER_CODES);

/// The codes outside [`REDIS_CODES`] admitted so far, at most `cap`.
struct OtherCodes {
    admitted: Mutex<Vec<String>>,
    cap: usize,
}

impl OtherCodes {
    const fn new(cap: usize) -> OtherCodes {
        OtherCodes {
            admitted: Mutex::new(Vec::new()),
            cap,
        }
    }

    /// `code` if it was admitted or there is room for it, else `OTHER`.
    fn label(&self, code: String) -> String {
        let mut admitted = self.admitted.lock().unwrap_or_else(|e| e.into_inner());
        if admitted.contains(&code) {
            return code;
        }
        if admitted.len() < self.cap {
            admitted.push(code.clone());
            return code;
        }
        "OTHER".to_string()
    }
}

/// The error code: the first word if it is 1..=24 upper-case letters and either Redis' own or one
/// of the first [`MAX_OTHER_CODES`] others seen, `OTHER` otherwise.
pub fn error_kind(text: &[u8]) -> String {
    kind_among(text, &OTHER_CODES)
}

fn kind_among(text: &[u8], others: &OtherCodes) -> String {
    let word = text.split(|b| *b == b' ').next().unwrap_or_default();
    let looks_like_code =
        (1..=24).contains(&word.len()) && word.iter().all(|b| b.is_ascii_uppercase() || *b == b'_');
    if !looks_like_code {
        return "OTHER".to_string();
    }
    let code = String::from_utf8_lossy(word).into_owned();
    match REDIS_CODES.contains(&code.as_str()) {
        true => code,
        false => others.label(code),
    }
}

/// Counters the mode already keeps for INFO, copied into the recorder at scrape time.
pub fn refresh_from_stats(stats: &Stats) {
    let set = |name: &'static str, value: u64| metrics::counter!(name).absolute(value);
    set(
        "puerta_connections_accepted_total",
        Stats::get(&stats.clients_total),
    );
    set(
        "puerta_connections_refused_total",
        Stats::get(&stats.clients_rejected),
    );
    metrics::gauge!("puerta_connections_open").set(Stats::get(&stats.clients_connected) as f64);
    for (kind, counter) in [
        ("moved", &stats.moved),
        ("ask", &stats.ask),
        ("tryagain", &stats.tryagain),
    ] {
        metrics::counter!("puerta_redis_redirects_total", "kind" => kind)
            .absolute(Stats::get(counter));
    }
    set(
        "puerta_redis_topology_refreshes_total",
        Stats::get(&stats.refreshes),
    );
    set(
        "puerta_redis_protocol_errors_total",
        Stats::get(&stats.protocol_errors),
    );
    set(
        "puerta_redis_backend_errors_total",
        Stats::get(&stats.backend_errors),
    );
    set(
        "puerta_redis_failover_held_total",
        Stats::get(&stats.failover_held),
    );
}

/// Help texts, registered once when the view is published; also resolves the per-command counters
/// (the recorder is installed by then).
pub fn describe() {
    use metrics::{describe_counter, describe_histogram};
    COMMAND_COUNTERS.get_or_init(|| {
        let names = spec::all().iter().map(|spec| spec.name);
        names
            .chain(["unknown"])
            .map(|name| metrics::counter!("puerta_redis_commands_total", "command" => name))
            .collect()
    });
    // Shown from the start (at 0), like the counters copied from Stats, so that dashboards and
    // alerts over them work before the first event.
    metrics::counter!("puerta_client_idle_timeouts_total").increment(0);
    describe_counter!(
        "puerta_redis_clients_closed_total",
        "Clients closed by the proxy, by reason (output_limit: replies it did not read)"
    );
    describe_counter!("puerta_redis_commands_total", "Client commands, by command");
    describe_counter!(
        "puerta_redis_errors_total",
        "Error replies sent to clients, by error code"
    );
    describe_counter!(
        "puerta_redis_redirects_total",
        "MOVED / ASK / TRYAGAIN replies from cluster nodes"
    );
    describe_counter!(
        "puerta_redis_topology_refreshes_total",
        "Topology refresh attempts (CLUSTER SLOTS)"
    );
    describe_counter!(
        "puerta_redis_failover_held_total",
        "Commands held while their slot had no reachable master (failover_hold_ms)"
    );
    describe_histogram!(
        "puerta_redis_failover_hold_seconds",
        "How long each held command waited for a new master"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_codes_or_other() {
        assert_eq!(error_kind(b"ERR unknown command"), "ERR");
        assert_eq!(error_kind(b"MOVED 3999 127.0.0.1:6381"), "MOVED");
        assert_eq!(error_kind(b"CROSSSLOT Keys"), "CROSSSLOT");
        assert_eq!(error_kind(b"weird lower case"), "OTHER");
        assert_eq!(error_kind(b""), "OTHER");
        assert_eq!(error_kind(&[b'A'; 100]), "OTHER");
    }

    #[test]
    fn codes_beyond_redis_own_get_series_up_to_the_cap() {
        let others = OtherCodes::new(2);
        assert_eq!(kind_among(b"FIRST x", &others), "FIRST");
        assert_eq!(kind_among(b"SECOND x", &others), "SECOND");
        assert_eq!(kind_among(b"THIRD x", &others), "OTHER", "past the cap");
        assert_eq!(
            kind_among(b"FIRST again", &others),
            "FIRST",
            "admitted stays"
        );
        assert_eq!(
            kind_among(b"WRONGTYPE x", &others),
            "WRONGTYPE",
            "Redis' own"
        );
    }
}
