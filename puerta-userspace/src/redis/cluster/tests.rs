use std::sync::atomic::AtomicBool;

use super::*;
use crate::redis::cluster::refresh::tests::config;
use crate::redis::resp::Frame;

/// A map in which only slots 0–9 have an owner: 0–4 on 7001, 5–9 on 7003. Both owners are found at
/// once by `set_master`, so a MOVED costs little and the race below gets many chances.
fn ten_slots() -> SlotMap {
    let node = |port: u16| {
        Frame::Array(vec![
            Frame::Bulk(bytes::Bytes::from_static(b"127.0.0.1")),
            Frame::Integer(port.into()),
            Frame::Bulk(bytes::Bytes::from_static(b"id")),
        ])
    };
    let range = |first: i64, last: i64, port: u16| {
        Frame::Array(vec![
            Frame::Integer(first),
            Frame::Integer(last),
            node(port),
        ])
    };
    let reply = Frame::Array(vec![range(0, 4, 7001), range(5, 9, 7003)]);
    SlotMap::from_cluster_slots(&reply, "127.0.0.1").expect("a valid map")
}

/// A session routes with `epoch()`, then the map, then `epoch()` again, and trusts the node it
/// read only when both epochs agree (see `exec::dispatch::send_in_order`). So no one may see a
/// changed map under the old epoch: when the epoch moved after the map's lock was released, a
/// session could route a whole pipeline to a slot's new owner while its earlier commands were
/// still on their way to the old one (the rare `pipelined_commands_keep_their_order_across_a_slot_move`
/// failure under load). Each MOVED here swaps the slot's owner, so the epoch's parity says which
/// owner a reader must see.
#[test]
fn a_moved_slot_is_never_seen_under_the_old_epoch() {
    let cluster = Cluster::new(config(1));
    cluster.install(ten_slots());
    let [a, b]: [Arc<str>; 2] = ["127.0.0.1:7001".into(), "127.0.0.1:7003".into()];
    let start = cluster.epoch();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..200_000u32 {
                cluster.apply_moved(5, if i.is_multiple_of(2) { &a } else { &b });
            }
            stop.store(true, Ordering::Release);
        });
        let mut consistent = 0u64;
        while !stop.load(Ordering::Acquire) {
            let before = cluster.epoch();
            let owner = cluster.node_for(5, false).expect("slot 5 is served");
            if cluster.epoch() != before {
                continue;
            }
            consistent += 1;
            let expected = if (before - start).is_multiple_of(2) {
                &b
            } else {
                &a
            };
            assert_eq!(
                &owner, expected,
                "epoch {before} routed to the owner of another epoch"
            );
        }
        assert!(consistent > 0, "the reader never saw a settled map");
    });
}
