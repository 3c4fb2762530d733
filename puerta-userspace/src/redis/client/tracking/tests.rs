use super::*;
use crate::redis::client::feed::{unwatched, FeedSender};
use crate::redis::client::output::OutputBudget;
use crate::redis::client::registry::{register, Registered};
use crate::redis::cluster::refresh::tests::config;
use crate::redis::cluster::Cluster;

fn key(k: &str) -> Bytes {
    Bytes::copy_from_slice(k.as_bytes())
}

fn client(
    cluster: &Arc<Cluster>,
    mode: Mode,
    at: u64,
) -> (Registered, mpsc::Receiver<Invalidation>) {
    let registered = register(cluster, None, None);
    let (tx, rx) = unwatched(4);
    cluster
        .tracking
        .enable(new_tracker(&registered.entry, mode, tx), at);
    (registered, rx)
}

/// A tracker speaking RESP3 (a RESP2 one without REDIRECT is told nothing, as in Redis).
fn new_tracker(entry: &Arc<Entry>, mode: Mode, sink: FeedSender<Invalidation>) -> NewTracker {
    entry.set_resp(3);
    NewTracker {
        entry: entry.clone(),
        inbox: Inbox {
            sink,
            budget: OutputBudget::new(None, entry.id, None, Default::default()),
        },
        redirect: None,
        mode,
    }
}

fn keys_of(i: &Invalidation) -> Option<Vec<Bytes>> {
    match &i.push.frame() {
        Frame::Push(items) => match &items[1] {
            Frame::Array(keys) => Some(keys.iter().filter_map(|k| k.as_bytes().cloned()).collect()),
            _ => None,
        },
        other => panic!("not a push: {other:?}"),
    }
}

#[tokio::test]
async fn an_invalidation_reaches_exactly_the_clients_that_read_the_key_once() {
    let cluster = Cluster::new(config(1));
    let (a, mut a_rx) = client(&cluster, Mode::default(), 1);
    let (b, mut b_rx) = client(&cluster, Mode::default(), 1);
    cluster.tracking.sending(a.entry.id, 2, &[key("k")]);
    cluster.tracking.sending(b.entry.id, 5, &[key("other")]);
    cluster.tracking.invalidate(Some(vec![key("k")]));
    let got = a_rx.try_recv().expect("A read k");
    assert_eq!(keys_of(&got), Some(vec![key("k")]));
    assert_eq!(got.after, 2, "after the reply of the read");
    assert!(b_rx.try_recv().is_err(), "B never read k");
    // Forgotten once invalidated, until read again.
    cluster.tracking.invalidate(Some(vec![key("k")]));
    assert!(a_rx.try_recv().is_err());
    assert_eq!(cluster.tracking.tracked_keys(), 1);
}

#[tokio::test]
async fn bcast_clients_hear_of_matching_prefixes_without_reading() {
    let cluster = Cluster::new(config(1));
    let mode = Mode {
        bcast: true,
        prefixes: vec![key("user:")],
        ..Mode::default()
    };
    let (_c, mut rx) = client(&cluster, mode, 1);
    cluster
        .tracking
        .invalidate(Some(vec![key("user:1"), key("order:1")]));
    assert_eq!(
        keys_of(&rx.try_recv().expect("prefix matched")),
        Some(vec![key("user:1")])
    );
    cluster.tracking.invalidate(Some(vec![key("order:2")]));
    assert!(rx.try_recv().is_err());
}

/// As Redis sends them: one message per prefix, with the keys that prefix matched.
#[tokio::test]
async fn bcast_invalidations_come_one_message_per_prefix() {
    let cluster = Cluster::new(config(1));
    let mode = Mode {
        bcast: true,
        prefixes: vec![key("a:"), key("b:"), key("c:")],
        ..Mode::default()
    };
    let (_c, mut rx) = client(&cluster, mode, 1);
    let written = vec![key("a:1"), key("b:1"), key("a:2"), key("x:1")];
    cluster.tracking.invalidate(Some(written));
    assert_eq!(
        keys_of(&rx.try_recv().expect("a:")),
        Some(vec![key("a:1"), key("a:2")])
    );
    assert_eq!(keys_of(&rx.try_recv().expect("b:")), Some(vec![key("b:1")]));
    assert!(rx.try_recv().is_err(), "nothing for c:");
}

#[tokio::test]
async fn a_flush_reaches_every_client_and_forgets_every_key() {
    let cluster = Cluster::new(config(1));
    let (a, mut a_rx) = client(&cluster, Mode::default(), 1);
    let (_b, mut b_rx) = client(&cluster, Mode::default(), 3);
    cluster.tracking.sending(a.entry.id, 2, &[key("k")]);
    cluster.tracking.invalidate(None);
    assert_eq!(keys_of(&a_rx.try_recv().expect("flush")), None);
    assert_eq!(b_rx.try_recv().expect("flush").after, 3);
    assert_eq!(cluster.tracking.tracked_keys(), 0);
}

#[tokio::test]
async fn a_client_that_does_not_take_its_invalidations_is_closed() {
    let cluster = Cluster::new(config(1));
    let (a, _rx) = client(&cluster, Mode::default(), 1);
    for i in 0..5 {
        let k = key(&format!("k{i}"));
        cluster
            .tracking
            .sending(a.entry.id, 2, std::slice::from_ref(&k));
        cluster.tracking.invalidate(Some(vec![k]));
    }
    assert!(a.entry.is_killed(), "its sink holds 4");
    assert_eq!(cluster.tracking.tracking_clients(), 0);
}

#[tokio::test]
async fn the_last_client_leaving_stops_the_feed() {
    let cluster = Cluster::new(config(1));
    let first = register(&cluster, None, None);
    let (tx, _rx) = unwatched(4);
    let feed = cluster
        .tracking
        .enable(new_tracker(&first.entry, Mode::default(), tx.clone()), 1)
        .expect("the first client starts the feed");
    let second = register(&cluster, None, None);
    let bcast = Mode {
        bcast: true,
        ..Mode::default()
    };
    assert!(cluster
        .tracking
        .enable(new_tracker(&second.entry, bcast, tx), 1)
        .is_none());
    // CLIENT LIST shows `t`, and `B` for broadcast mode, while they track.
    assert!(first.entry.line(0).contains(" flags=t "));
    assert!(second.entry.line(0).contains(" flags=tB "));
    cluster.tracking.disable(first.entry.id);
    assert!(first.entry.line(0).contains(" flags=N "));
    assert!(!feed.stop.is_cancelled());
    cluster.tracking.disable(second.entry.id);
    assert!(feed.stop.is_cancelled());
    // The next feed is another generation: what the stopped one connected does not count for it.
    let (tx, _rx) = unwatched(4);
    let next = cluster
        .tracking
        .enable(new_tracker(&first.entry, Mode::default(), tx), 9)
        .expect("a new feed");
    assert_eq!(next.generation, feed.generation + 1);
    assert_eq!(cluster.tracking.feed_generation(), Some(next.generation));
}

fn table_with_readers(readers: u64) -> (Table, Vec<mpsc::Receiver<Invalidation>>, Vec<Registered>) {
    let cluster = Cluster::new(config(1));
    let mut table = Table::default();
    let (mut receivers, mut registered) = (Vec::new(), Vec::new());
    for id in 1..=readers {
        let (tx, rx) = unwatched(MAX_PENDING);
        let entry = register(&cluster, None, None);
        entry.entry.set_resp(3);
        table.clients.insert(
            id,
            Tracker {
                mode: Mode::default(),
                inbox: Inbox {
                    sink: tx,
                    budget: OutputBudget::new(None, id, None, Default::default()),
                },
                entry: entry.entry.clone(),
                redirect: None,
                latest: 0,
            },
        );
        receivers.push(rx);
        registered.push(entry);
    }
    (table, receivers, registered)
}

#[test]
fn stale_order_entries_do_not_pile_up() {
    let (mut table, _rx, _entries) = table_with_readers(1);
    // Read, invalidated, read again: the order queue is compacted, not grown per read.
    for _ in 0..10_000 {
        table.remember(1, &key("k"));
        if let Some(readers) = table.keys.remove(&key("k")) {
            table.bytes -= entry_bytes(b"k", readers.len());
        }
    }
    assert!(table.order.len() <= 1025, "{}", table.order.len());
}

#[test]
fn the_table_is_bounded_in_bytes_however_many_clients_read_a_key() {
    // 64 clients each reading big keys: readers count, not only keys.
    let (mut table, mut receivers, _entries) = table_with_readers(64);
    table.limits.bytes = 64 * 1024;
    let big = |i: usize| Bytes::from(format!("{i:0>600}"));
    // One key with 64 readers is charged 600 + 64 + 512 bytes: ~55 of them fit, 200 are read.
    for i in 0..200 {
        let key = big(i);
        for id in 1..=64 {
            table.remember(id, &key);
        }
        assert!(table.bytes <= table.limits.bytes, "{} bytes", table.bytes);
    }
    assert!(table.keys.len() < 60, "{} keys kept", table.keys.len());
    // The evicted keys were invalidated for every reader, oldest first.
    let first = receivers[63]
        .try_recv()
        .expect("evictions are invalidations");
    assert_eq!(keys_of(&first), Some(vec![big(0)]));
    let accounted: usize = table
        .keys
        .iter()
        .map(|(k, readers)| entry_bytes(k, readers.len()))
        .sum();
    assert_eq!(accounted, table.bytes);
}

#[tokio::test]
async fn invalidations_count_against_the_client_output_limit_until_written() {
    let cluster = Cluster::new(config(1));
    let registered = register(&cluster, None, None);
    registered.entry.set_resp(3);
    let (tx, mut rx) = unwatched(4);
    let budget = OutputBudget::new(Some(1 << 20), registered.entry.id, None, Default::default());
    let new = NewTracker {
        entry: registered.entry.clone(),
        inbox: Inbox {
            sink: tx,
            budget: budget.clone(),
        },
        redirect: None,
        mode: Mode::default(),
    };
    cluster.tracking.enable(new, 1);
    cluster
        .tracking
        .sending(registered.entry.id, 2, &[key("k")]);
    cluster.tracking.invalidate(Some(vec![key("k")]));
    let push = rx.try_recv().expect("invalidated");
    assert_eq!(budget.held(), push.push.bytes().len());
    drop(push);
    assert_eq!(budget.held(), 0);
}

#[tokio::test]
async fn a_stopped_feeds_connections_do_not_make_the_next_one_ready() {
    use crate::redis::cluster::refresh::tests::one_shard;
    let cluster = Cluster::new(config(1));
    cluster.install(one_shard(7001, 7002));
    let master: Arc<str> = "127.0.0.1:7001".into();
    let client = register(&cluster, None, None);
    let (tx, _rx) = unwatched(4);
    let first = cluster
        .tracking
        .enable(new_tracker(&client.entry, Mode::default(), tx.clone()), 1)
        .unwrap();
    let soon = std::time::Duration::from_millis(50);
    assert!(
        feed::ready(&cluster, soon).await.is_err(),
        "nothing connected yet"
    );
    feed::set_connected(&cluster, &master, first.generation, true);
    assert!(feed::ready(&cluster, soon).await.is_ok());
    // The last client leaves and another starts tracking before the old feed has wound down: its
    // connection is not the new feed's, so OK must wait for the new one.
    cluster.tracking.disable(client.entry.id);
    let next = cluster
        .tracking
        .enable(new_tracker(&client.entry, Mode::default(), tx), 2)
        .unwrap();
    assert!(
        feed::ready(&cluster, soon).await.is_err(),
        "a stale connection counted"
    );
    feed::set_connected(&cluster, &master, next.generation, true);
    // The old feed's task ending late does not undo the new one's connection.
    feed::set_connected(&cluster, &master, first.generation, false);
    assert!(feed::ready(&cluster, soon).await.is_ok());
}

/// `REDIRECT`: the target gets the invalidations at once, in the form of the protocol it speaks
/// now; a target gone loses them without ending the tracker's tracking.
#[test]
fn redirected_invalidations_reach_the_target_in_its_protocol() {
    let cluster = Cluster::new(config(1));
    let tracker = register(&cluster, None, None);
    let target = register(&cluster, None, None);
    let (tx, mut rx) = unwatched(4);
    let mut new = new_tracker(&tracker.entry, Mode::default(), tx);
    new.redirect = Some(target.entry.clone());
    cluster.tracking.enable(new, 9);
    cluster.tracking.sending(tracker.entry.id, 10, &[key("k")]);

    cluster.tracking.invalidate(Some(vec![key("k")]));
    let resp2 = rx.try_recv().expect("an invalidation for the target");
    assert_eq!(resp2.after, 0, "not ordered behind the tracker's replies");
    assert!(resp2.message);
    assert_eq!(
        &resp2.push.bytes()[..],
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nk\r\n"
    );

    target.entry.set_resp(3);
    cluster.tracking.sending(tracker.entry.id, 11, &[key("k")]);
    cluster.tracking.invalidate(Some(vec![key("k")]));
    let resp3 = rx.try_recv().expect("an invalidation for the target");
    assert!(!resp3.message);
    assert_eq!(
        &resp3.push.bytes()[..],
        b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
    );

    drop(rx);
    cluster.tracking.invalidate(None);
    assert_eq!(cluster.tracking.tracking_clients(), 1, "still tracking");
    assert!(!tracker.entry.is_killed());
}

/// RESP2 has no pushes: a tracker without REDIRECT that speaks it is told nothing, as Redis does,
/// and its keys are forgotten all the same.
#[test]
fn a_resp2_tracker_without_redirect_is_told_nothing() {
    let cluster = Cluster::new(config(1));
    let (c, mut rx) = client(&cluster, Mode::default(), 1);
    c.entry.set_resp(2);
    cluster.tracking.sending(c.entry.id, 2, &[key("k")]);
    cluster.tracking.invalidate(Some(vec![key("k")]));
    assert!(rx.try_recv().is_err(), "no push on a RESP2 connection");
    assert_eq!(cluster.tracking.tracked_keys(), 0);
    assert!(!c.entry.is_killed());
}
