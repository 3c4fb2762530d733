//! `SLOWLOG`: commands whose reply took longer than `slowlog_log_slower_than_us` to come back through
//! the proxy, measured from the moment the proxy read the command to the moment its reply was ready to
//! write. That is the latency a client sees from Puerta, nodes and the network between them included,
//! which is what an operator looking at a proxy's slow log wants to find; each node's own slow log
//! still shows the time spent executing.
//!
//! Entries are in Redis' format (id, unix time, microseconds, arguments, client address, client
//! name), with Redis' truncation of long argument lists and long arguments, so that tools that read
//! a Redis slow log read this one.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::redis::client::registry::Entry as Client;
use crate::redis::resp::Frame;

/// Redis' `SLOWLOG_ENTRY_MAX_ARGC` and `SLOWLOG_ENTRY_MAX_STRING`.
const MAX_ARGS: usize = 32;
const MAX_ARG_BYTES: usize = 128;
/// A command up to this size is kept as one copy of its bytes and cut for display only when the log
/// is read; a longer one is cut when logged, copying only what is shown.
const KEPT_WHOLE: usize = 1024;

pub struct SlowLog {
    /// Negative: the log is off; 0: every command.
    slower_than_us: AtomicI64,
    max_len: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<Logged>>,
}

/// One entry, kept cheap to make: when the proxy is overloaded every command is slow, and an entry
/// that formats and copies as it is made would double what each command costs just then (measured:
/// 4.8k instructions per entry, as much as the GET itself). Formatting waits for `SLOWLOG GET`.
struct Logged {
    id: u64,
    unix_secs: i64,
    micros: i64,
    command: Shown,
    addr: Option<SocketAddr>,
    name: Option<Bytes>,
}

/// The command of an entry, copied so that the entry does not keep the client's read buffer alive.
enum Shown {
    /// A short command's bytes (at most [`KEPT_WHOLE`]).
    Whole(Bytes),
    /// A long command's arguments as Redis shows them.
    Cut(Vec<Bytes>),
}

impl Shown {
    fn of(command: &Bytes) -> Shown {
        match command.len() <= KEPT_WHOLE {
            true => Shown::Whole(Bytes::copy_from_slice(command)),
            false => Shown::Cut(shown_args(command)),
        }
    }

    fn args(&self) -> Vec<Bytes> {
        match self {
            Shown::Whole(command) => shown_args(command),
            Shown::Cut(args) => args.clone(),
        }
    }
}

/// A command on its way through the proxy, timed for the slow log.
pub struct Timed {
    started: Instant,
    /// The command's wire form (the client's own bytes, shared with the read buffer).
    command: Bytes,
}

impl SlowLog {
    pub fn new(slower_than_us: i64, max_len: usize) -> SlowLog {
        SlowLog {
            slower_than_us: AtomicI64::new(slower_than_us),
            max_len: AtomicUsize::new(max_len),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    pub fn slower_than_us(&self) -> i64 {
        self.slower_than_us.load(Ordering::Relaxed)
    }

    pub fn max_len(&self) -> usize {
        self.max_len.load(Ordering::Relaxed)
    }

    pub fn set_slower_than_us(&self, us: i64) {
        self.slower_than_us.store(us, Ordering::Relaxed);
    }

    pub fn set_max_len(&self, len: usize) {
        self.max_len.store(len, Ordering::Relaxed);
        let mut entries = self.lock();
        entries.truncate(len);
    }

    /// Starts timing a command that arrived at `arrived`, unless the log is off.
    pub fn start(&self, arrived: Instant, command: impl FnOnce() -> Bytes) -> Option<Timed> {
        (self.slower_than_us() >= 0).then(|| Timed {
            started: arrived,
            command: command(),
        })
    }

    /// Logs `timed` if it took longer than the threshold.
    pub fn finish(&self, timed: Timed, client: &Client) {
        let took = timed.started.elapsed();
        let threshold = self.slower_than_us();
        if threshold < 0 || took < Duration::from_micros(threshold as u64) {
            return;
        }
        let max_len = self.max_len();
        if max_len == 0 {
            return;
        }
        let logged = Logged {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            micros: i64::try_from(took.as_micros()).unwrap_or(i64::MAX),
            command: Shown::of(&timed.command),
            addr: client.addr,
            name: client.name(),
        };
        let mut entries = self.lock();
        entries.push_front(logged);
        entries.truncate(max_len);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn reset(&self) {
        self.lock().clear();
    }

    /// `SLOWLOG GET [count]`: the newest `count` entries (10 by default, all for -1), newest first.
    pub fn get(&self, count: Option<usize>) -> Frame {
        let entries = self.lock();
        let count = count.unwrap_or(10).min(entries.len());
        Frame::Array(entries.iter().take(count).map(Logged::frame).collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Logged>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Logged {
    fn frame(&self) -> Frame {
        Frame::Array(vec![
            Frame::Integer(self.id as i64),
            Frame::Integer(self.unix_secs),
            Frame::Integer(self.micros),
            Frame::Array(self.command.args().into_iter().map(Frame::Bulk).collect()),
            Frame::Bulk(self.addr.map(|a| a.to_string()).unwrap_or_default().into()),
            Frame::Bulk(self.name.clone().unwrap_or_default()),
        ])
    }
}

/// The arguments as Redis logs them: at most 32 (the last saying how many more there were), each at
/// most 128 bytes (saying how many more it had). Copied, so the entry does not keep the client's read
/// buffer alive; only what is shown is copied.
fn shown_args(command: &Bytes) -> Vec<Bytes> {
    let Some((args, total)) = crate::redis::resp::command_head(command) else {
        return Vec::new();
    };
    let mut shown = Vec::with_capacity(total.min(MAX_ARGS));
    for (i, arg) in args.iter().enumerate() {
        if i == MAX_ARGS - 1 && total > MAX_ARGS {
            let more = total - i;
            shown.push(Bytes::from(format!("... ({more} more arguments)")));
            break;
        }
        shown.push(if arg.len() > MAX_ARG_BYTES {
            let more = arg.len() - MAX_ARG_BYTES;
            let mut cut = arg[..MAX_ARG_BYTES].to_vec();
            cut.extend_from_slice(format!("... ({more} more bytes)").as_bytes());
            Bytes::from(cut)
        } else {
            Bytes::copy_from_slice(arg)
        });
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::resp::wire::command_bytes;

    fn client() -> (
        crate::redis::client::registry::Registered,
        std::sync::Arc<crate::redis::cluster::Cluster>,
    ) {
        let cluster =
            crate::redis::cluster::Cluster::new(crate::redis::cluster::refresh::tests::config(1));
        let addr = "127.0.0.1:5000".parse().ok();
        (
            crate::redis::client::registry::register(&cluster, addr, None),
            cluster,
        )
    }

    fn words(args: &[&[u8]]) -> Bytes {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        command_bytes(&args)
    }

    #[test]
    fn long_commands_are_cut_like_redis_does() {
        let many: Vec<Vec<u8>> = (0..40).map(|i| format!("a{i}").into_bytes()).collect();
        let many: Vec<&[u8]> = many.iter().map(|a| &a[..]).collect();
        let shown = shown_args(&words(&many));
        assert_eq!(shown.len(), 32);
        assert_eq!(&shown[30][..], b"a30");
        assert_eq!(&shown[31][..], b"... (9 more arguments)");
        let long = vec![b'x'; 200];
        let shown = shown_args(&words(&[b"set", b"k", &long]));
        assert_eq!(shown[2].len(), 128 + b"... (72 more bytes)".len());
        assert!(shown[2].ends_with(b"... (72 more bytes)"));
    }

    #[test]
    fn long_and_many_argument_entries_show_what_redis_shows() {
        let log = SlowLog::new(0, 4);
        let (client, _cluster) = client();
        let big = vec![b'v'; 4096];
        let keys: Vec<Vec<u8>> = (0..300).map(|i| format!("k{i}").into_bytes()).collect();
        let mut del: Vec<&[u8]> = vec![b"del"];
        del.extend(keys.iter().map(|k| &k[..]));
        for command in [words(&[b"set", b"k", &big]), words(&del)] {
            let timed = log.start(Instant::now(), || command).expect("on");
            log.finish(timed, &client.entry);
        }
        let Frame::Array(entries) = log.get(None) else {
            panic!("array");
        };
        let args = |entry: &Frame| match entry {
            Frame::Array(fields) => match &fields[3] {
                Frame::Array(args) => args.clone(),
                other => panic!("arguments: {other:?}"),
            },
            other => panic!("entry: {other:?}"),
        };
        // Newest first: the DEL of 301 arguments, then the SET of a 4 KiB value.
        let shown = args(&entries[0]);
        assert_eq!(shown.len(), 32);
        assert_eq!(shown[30], Frame::bulk("k29"));
        assert_eq!(shown[31], Frame::bulk("... (270 more arguments)"));
        let shown = args(&entries[1]);
        let Frame::Bulk(value) = &shown[2] else {
            panic!("bulk");
        };
        assert!(value.starts_with(&[b'v'; 128]) && value.ends_with(b"... (3968 more bytes)"));
    }

    #[test]
    fn entries_are_kept_newest_first_up_to_max_len() {
        let log = SlowLog::new(0, 2);
        let (client, _cluster) = client();
        let client = &client.entry;
        for key in [&b"a"[..], b"b", b"c"] {
            let timed = log
                .start(Instant::now(), || words(&[b"get", key]))
                .expect("on");
            log.finish(timed, client);
        }
        assert_eq!(log.len(), 2);
        let Frame::Array(entries) = log.get(None) else {
            panic!("array");
        };
        let Frame::Array(first) = &entries[0] else {
            panic!("entry");
        };
        assert_eq!(first[0], Frame::Integer(2));
        assert_eq!(
            first[3],
            Frame::Array(vec![Frame::bulk("get"), Frame::bulk("c")])
        );
        log.set_max_len(1);
        assert_eq!(log.len(), 1);
        log.reset();
        assert_eq!(log.len(), 0);
        log.set_slower_than_us(-1);
        assert!(log.start(Instant::now(), || words(&[b"get"])).is_none());
    }

    #[test]
    fn fast_commands_are_not_logged() {
        let log = SlowLog::new(60_000_000, 128);
        let (client, _cluster) = client();
        let client = &client.entry;
        let timed = log.start(Instant::now(), || words(&[b"ping"])).expect("on");
        log.finish(timed, client);
        assert_eq!(log.len(), 0);
    }
}
