//! Each worker thread's own copy of the slot map, for routing. Every command looks up its slot's
//! node; in the shared map that took the map's read lock and cloned the node's address: two
//! atomic writes to memory that every worker thread writes (the lock word and the address's
//! reference count), so with two workers the cache lines moved between cores on every command.
//! A worker's copy is taken again only when the map changed, and it is detached (its addresses
//! are its own, see `SlotMap::detached`); its lock is only ever taken by its own thread, except
//! in tests that route from other threads.

use std::sync::Mutex;

use super::topology::SlotMap;

pub struct Routes {
    copies: Box<[Copy]>,
}

/// One worker's copy, alone on its cache lines.
#[repr(align(128))]
struct Copy(Mutex<Held>);

struct Held {
    /// The map's change count when the copy was taken (see `Cluster::map_changes`).
    changes: u64,
    map: SlotMap,
}

impl Routes {
    /// Copies for `workers` workers, of the empty map a cluster starts with (change count 0).
    pub fn new(workers: usize) -> Routes {
        let copy = || {
            Copy(Mutex::new(Held {
                changes: 0,
                map: SlotMap::default(),
            }))
        };
        Routes {
            copies: (0..workers.max(1)).map(|_| copy()).collect(),
        }
    }

    /// `read` applied to worker `worker`'s copy, taken anew from `current()` when the map changed
    /// since (`changes`, read before `current` is called, so a copy is never newer than the count
    /// it is filed under).
    pub fn read<R>(
        &self,
        worker: usize,
        changes: u64,
        current: impl FnOnce() -> SlotMap,
        read: impl FnOnce(&SlotMap) -> R,
    ) -> R {
        let copy = &self.copies[worker.min(self.copies.len() - 1)];
        let mut held = copy.0.lock().unwrap_or_else(|e| e.into_inner());
        if held.changes != changes {
            held.map = current();
            held.changes = changes;
        }
        read(&held.map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::resp::Frame;

    fn one_range(port: i64) -> SlotMap {
        let node = Frame::Array(vec![Frame::Bulk("h".into()), Frame::Integer(port)]);
        let range = Frame::Array(vec![Frame::Integer(0), Frame::Integer(16383), node]);
        SlotMap::from_cluster_slots(&Frame::Array(vec![range]), "h").expect("a map")
    }

    #[test]
    fn a_copy_is_taken_again_only_when_the_map_changed() {
        let routes = Routes::new(2);
        let master = |map: &SlotMap| map.shard(0).map(|s| s.master.to_string());
        let first = routes.read(0, 1, || one_range(1), master);
        assert_eq!(first.as_deref(), Some("h:1"));
        let unchanged = routes.read(0, 1, || one_range(2), master);
        assert_eq!(
            unchanged.as_deref(),
            Some("h:1"),
            "same count: the copy is kept"
        );
        let changed = routes.read(0, 2, || one_range(2), master);
        assert_eq!(changed.as_deref(), Some("h:2"));
        assert_eq!(
            routes.read(1, 0, || one_range(3), master),
            None,
            "worker 1 has its own"
        );
    }
}
