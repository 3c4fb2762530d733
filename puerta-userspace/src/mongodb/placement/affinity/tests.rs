use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(300);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn table() -> AffinityTable {
    AffinityTable::new(TIMEOUT, Arc::new(NoMirror))
}

/// Hands out 0, 1, 2, ... so each new placement is visible.
fn counter() -> impl FnMut() -> Option<usize> {
    let mut next = 0;
    move || {
        let n = next;
        next += 1;
        Some(n % 3)
    }
}

#[test]
fn client_sticks_to_its_backend() {
    let t = table();
    let now = Instant::now();
    let mut place = counter();
    assert_eq!(
        t.acquire(ip(1), now, |_| true, &mut place),
        Some((0, Placement::New))
    );
    assert_eq!(
        t.acquire(ip(2), now, |_| true, &mut place),
        Some((1, Placement::New))
    );
    for _ in 0..5 {
        assert_eq!(
            t.acquire(ip(1), now, |_| true, &mut place),
            Some((0, Placement::Pinned))
        );
    }
    assert_eq!(t.get(ip(1)).unwrap().live_conns, 6);
}

#[test]
fn entry_expires_timeout_after_last_connection_closed() {
    let t = table();
    let start = Instant::now();
    t.acquire(ip(1), start, |_| true, || Some(2));
    t.acquire(ip(1), start, |_| true, || Some(0));
    // Open connections keep the entry however old it is.
    assert_eq!(t.expire(start + TIMEOUT * 10), 0);
    let closed = start + Duration::from_secs(1);
    t.release(ip(1), closed);
    t.release(ip(1), closed);
    assert_eq!(t.expire(closed + TIMEOUT - Duration::from_secs(1)), 0);
    // Before cleanup runs, an expired entry no longer pins the client.
    let later = closed + TIMEOUT;
    assert_eq!(
        t.acquire(ip(1), later, |_| true, || Some(1)),
        Some((1, Placement::New))
    );
    t.release(ip(1), later);
    assert_eq!(t.expire(later + TIMEOUT), 1);
    assert!(t.is_empty());
}

#[test]
fn client_is_replaced_when_its_backend_is_down() {
    let t = table();
    let now = Instant::now();
    t.acquire(ip(1), now, |_| true, || Some(0));
    let got = t.acquire(ip(1), now, |b| b != 0, || Some(2));
    assert_eq!(got, Some((2, Placement::Moved { from: 0 })));
    // The new pin holds after the old backend comes back.
    assert_eq!(
        t.acquire(ip(1), now, |_| true, || Some(1)),
        Some((2, Placement::Pinned))
    );
    assert_eq!(t.get(ip(1)).unwrap().live_conns, 3);
}

#[test]
fn no_backend_leaves_the_table_unchanged() {
    let t = table();
    let now = Instant::now();
    assert_eq!(t.acquire(ip(1), now, |_| false, || None), None);
    assert!(t.is_empty());
}

#[test]
fn repin_moves_the_client() {
    let t = table();
    let now = Instant::now();
    t.acquire(ip(1), now, |_| true, || Some(0));
    assert_eq!(t.repin(ip(1), 1, now), Some(0));
    assert_eq!(t.repin(ip(1), 1, now), None);
    assert_eq!(t.get(ip(1)).unwrap().backend, 1);
}

#[test]
fn lease_releases_on_drop() {
    let t = Arc::new(table());
    t.acquire(ip(1), Instant::now(), |_| true, || Some(0));
    drop(Lease::new(t.clone(), ip(1)));
    assert_eq!(t.get(ip(1)).unwrap().live_conns, 0);
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl AffinityMirror for Recorder {
    fn upsert(&self, ip: IpAddr, entry: &AffinityEntry) {
        self.0
            .lock()
            .unwrap()
            .push(format!("+{ip}>{}x{}", entry.backend, entry.live_conns));
    }
    fn remove(&self, ip: IpAddr) {
        self.0.lock().unwrap().push(format!("-{ip}"));
    }
}

#[test]
fn mirror_sees_every_change() {
    let rec = Arc::new(Recorder::default());
    let t = AffinityTable::new(Duration::ZERO, rec.clone());
    let now = Instant::now();
    t.acquire(ip(1), now, |_| true, || Some(1));
    t.repin(ip(1), 2, now);
    t.release(ip(1), now);
    t.expire(now);
    assert_eq!(
        *rec.0.lock().unwrap(),
        vec![
            "+127.0.0.1>1x1",
            "+127.0.0.1>2x1",
            "+127.0.0.1>2x0",
            "-127.0.0.1"
        ]
    );
}

#[tokio::test]
async fn cleanup_task_removes_expired_entries() {
    let t = Arc::new(AffinityTable::new(Duration::ZERO, Arc::new(NoMirror)));
    let now = Instant::now();
    t.acquire(ip(1), now, |_| true, || Some(0));
    t.acquire(ip(2), now, |_| true, || Some(1));
    t.release(ip(1), now);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(cleanup_task(t.clone(), stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.get(ip(1)).is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(t.get(ip(1)).is_none(), "idle entry removed");
    assert!(t.get(ip(2)).is_some(), "entry with a live connection kept");
    stop.cancel();
    task.await.unwrap();
}

#[test]
fn renumber_moves_kept_backends_and_drops_removed_ones() {
    let t = table();
    let now = Instant::now();
    t.acquire(ip(1), now, |_| true, || Some(0)).unwrap();
    t.acquire(ip(2), now, |_| true, || Some(1)).unwrap();
    // Backend 0 was removed; backend 1 is now at index 0.
    let dropped = t.renumber(|old| (old == 1).then_some(0));
    assert_eq!(dropped, 1);
    assert!(t.get(ip(1)).is_none());
    assert_eq!(t.get(ip(2)).unwrap().backend, 0);
}
