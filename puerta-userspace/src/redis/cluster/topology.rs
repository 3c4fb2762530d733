//! The slot map: which node serves each of the 16384 slots, built from `CLUSTER SLOTS` and patched by
//! MOVED redirects between refreshes.

use std::sync::Arc;

use crate::redis::command::slots::SLOT_COUNT;
use crate::redis::resp::Frame;

/// The master of a slot range and the replicas that copy it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub master: Arc<str>,
    pub replicas: Vec<Arc<str>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("CLUSTER SLOTS reply is not an array")]
    NotAnArray,
    #[error("CLUSTER SLOTS entry {0} is malformed: {1}")]
    BadEntry(usize, &'static str),
    #[error("node answered CLUSTER SLOTS with an error: {0}")]
    NodeError(String),
}

/// Which shard serves each slot. A slot holds the index of its shard (2 bytes, so the whole table
/// is 32 KiB and a copy of it is one `memcpy`; see `routes`).
#[derive(Debug, Clone)]
pub struct SlotMap {
    /// Per slot, its shard's index in `shards`, or [`UNOWNED`].
    owner: Box<[u16]>,
    /// The shards slots point to, and possibly some that no slot points to any more (a MOVED took
    /// their last slot): everything that lists shards looks only at those in use.
    shards: Vec<Arc<Shard>>,
}

const UNOWNED: u16 = u16::MAX;

impl Default for SlotMap {
    fn default() -> Self {
        SlotMap {
            owner: vec![UNOWNED; SLOT_COUNT as usize].into_boxed_slice(),
            shards: Vec::new(),
        }
    }
}

/// Maps are equal when every slot has an equal shard (however they are numbered).
impl PartialEq for SlotMap {
    fn eq(&self, other: &SlotMap) -> bool {
        (0..SLOT_COUNT).all(|slot| self.shard(slot) == other.shard(slot))
    }
}

impl Eq for SlotMap {}

impl SlotMap {
    /// Parses a `CLUSTER SLOTS` reply. `queried_host` replaces the empty IP a node reports for itself
    /// when it does not know its own address.
    pub fn from_cluster_slots(reply: &Frame, queried_host: &str) -> Result<SlotMap, TopologyError> {
        let entries = match reply {
            Frame::Array(entries) => entries,
            Frame::Error(e) => {
                return Err(TopologyError::NodeError(String::from_utf8_lossy(e).into()))
            }
            _ => return Err(TopologyError::NotAnArray),
        };
        let mut map = SlotMap::default();
        for (i, entry) in entries.iter().enumerate() {
            let (start, end, shard) =
                parse_entry(entry, queried_host).map_err(|m| TopologyError::BadEntry(i, m))?;
            let index = match map.shards.iter().position(|s| **s == shard) {
                Some(known) => known,
                None => map.add_shard(Arc::new(shard)),
            };
            map.owner[start as usize..=end as usize].fill(index as u16);
        }
        Ok(map)
    }

    /// A copy that shares no reference count with this map: every shard and address is allocated
    /// anew, so that the thread that keeps it can clone them without writing memory another
    /// thread writes.
    pub fn detached(&self) -> SlotMap {
        let fresh = |addr: &Arc<str>| Arc::<str>::from(&**addr);
        let shards = self.shards.iter().map(|s| {
            Arc::new(Shard {
                master: fresh(&s.master),
                replicas: s.replicas.iter().map(fresh).collect(),
            })
        });
        SlotMap {
            owner: self.owner.clone(),
            shards: shards.collect(),
        }
    }

    /// Whether every slot has the same master in both maps (replicas aside: a node may list them in
    /// another order, and replica reads are not kept in order anyway).
    pub fn same_masters(&self, other: &SlotMap) -> bool {
        (0..SLOT_COUNT).all(|slot| match (self.shard(slot), other.shard(slot)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a.master == b.master,
            (None, None) => true,
            _ => false,
        })
    }

    /// Masters of this map that are no master in `new` (a failover, or a node gone), each with the
    /// new master of the first slot it served.
    pub fn replaced_masters(&self, new: &SlotMap) -> Vec<(Arc<str>, Option<Arc<str>>)> {
        let still = new.masters();
        let mut replaced: Vec<(Arc<str>, Option<Arc<str>>)> = Vec::new();
        for slot in 0..SLOT_COUNT {
            let Some(shard) = self.shard(slot) else {
                continue;
            };
            if still.contains(&shard.master) || replaced.iter().any(|(m, _)| *m == shard.master) {
                continue;
            }
            let successor = new.shard(slot).map(|s| s.master.clone());
            replaced.push((shard.master.clone(), successor));
        }
        replaced
    }

    pub fn shard(&self, slot: u16) -> Option<&Arc<Shard>> {
        let index = *self.owner.get(slot as usize)?;
        self.shards.get(index as usize)
    }

    /// Slots that have an owner; 16384 on a healthy cluster.
    pub fn covered(&self) -> usize {
        self.owner.iter().filter(|i| **i != UNOWNED).count()
    }

    /// Distinct masters, sorted by address so that SCAN cursors index them stably.
    pub fn masters(&self) -> Vec<Arc<str>> {
        let mut masters: Vec<Arc<str>> = Vec::new();
        for shard in self.shards_in_use() {
            if !masters.contains(&shard.master) {
                masters.push(shard.master.clone());
            }
        }
        masters.sort();
        masters
    }

    /// Distinct replicas.
    pub fn replica_count(&self) -> usize {
        self.nodes().len() - self.masters().len()
    }

    /// Every node the map knows, masters first; candidates to ask for the next refresh.
    pub fn nodes(&self) -> Vec<Arc<str>> {
        let mut nodes = self.masters();
        for shard in self.shards_in_use() {
            for r in &shard.replicas {
                if !nodes.contains(r) {
                    nodes.push(r.clone());
                }
            }
        }
        nodes
    }

    /// Applies a MOVED redirect: `slot` now belongs to `master`. Replicas are unknown until the next
    /// refresh, unless `master` already leads another shard.
    pub fn set_master(&mut self, slot: u16, master: &Arc<str>) {
        if slot >= SLOT_COUNT {
            return;
        }
        if self.shard(slot).is_some_and(|s| s.master == *master) {
            return;
        }
        let in_use = self.in_use();
        let known = (0..self.shards.len()).find(|&i| in_use[i] && self.shards[i].master == *master);
        let index = match known {
            Some(index) => index,
            None => {
                self.drop_unused();
                self.add_shard(Arc::new(Shard {
                    master: master.clone(),
                    replicas: Vec::new(),
                }))
            }
        };
        self.owner[slot as usize] = index as u16;
    }

    /// Appends `shard`, returning its index. A map has at most one shard per slot in use, so
    /// after [`SlotMap::drop_unused`] an index always fits below [`UNOWNED`].
    fn add_shard(&mut self, shard: Arc<Shard>) -> usize {
        self.shards.push(shard);
        self.shards.len() - 1
    }

    /// Which shards some slot points to, by index.
    fn in_use(&self) -> Vec<bool> {
        let mut in_use = vec![false; self.shards.len()];
        for &index in self.owner.iter().filter(|i| **i != UNOWNED) {
            in_use[index as usize] = true;
        }
        in_use
    }

    /// The shards in use, in the order of the first slot of each.
    fn shards_in_use(&self) -> impl Iterator<Item = &Arc<Shard>> {
        let mut seen = vec![false; self.shards.len()];
        self.owner.iter().filter_map(move |&index| {
            let first = index != UNOWNED && !std::mem::replace(&mut seen[index as usize], true);
            first.then(|| &self.shards[index as usize])
        })
    }

    /// Forgets the shards no slot points to, renumbering the rest.
    fn drop_unused(&mut self) {
        let in_use = self.in_use();
        if in_use.iter().all(|used| *used) {
            return;
        }
        let mut renumbered = vec![UNOWNED; self.shards.len()];
        let mut kept = Vec::new();
        for (i, shard) in self.shards.drain(..).enumerate() {
            if in_use[i] {
                renumbered[i] = kept.len() as u16;
                kept.push(shard);
            }
        }
        self.shards = kept;
        for index in self.owner.iter_mut().filter(|i| **i != UNOWNED) {
            *index = renumbered[*index as usize];
        }
    }
}

fn parse_entry(entry: &Frame, queried_host: &str) -> Result<(u16, u16, Shard), &'static str> {
    let Frame::Array(parts) = entry else {
        return Err("not an array");
    };
    if parts.len() < 3 {
        return Err("fewer than 3 elements");
    }
    let start = slot_number(&parts[0])?;
    let end = slot_number(&parts[1])?;
    if start > end {
        return Err("range start after end");
    }
    let master = node_address(&parts[2], queried_host)?.ok_or("master has no address")?;
    let mut replicas = Vec::new();
    for part in &parts[3..] {
        if let Some(addr) = node_address(part, queried_host)? {
            replicas.push(addr);
        }
    }
    Ok((start, end, Shard { master, replicas }))
}

fn slot_number(frame: &Frame) -> Result<u16, &'static str> {
    match frame {
        Frame::Integer(n) if (0..SLOT_COUNT as i64).contains(n) => Ok(*n as u16),
        _ => Err("slot is not an integer in 0..16384"),
    }
}

/// `[ip, port, id, ...]`. `None` for a node whose endpoint is unknown (`?`).
fn node_address(frame: &Frame, queried_host: &str) -> Result<Option<Arc<str>>, &'static str> {
    let Frame::Array(fields) = frame else {
        return Err("node is not an array");
    };
    let (Some(Frame::Bulk(ip)), Some(Frame::Integer(port))) = (fields.first(), fields.get(1))
    else {
        return Err("node needs an ip and a port");
    };
    let ip = std::str::from_utf8(ip).map_err(|_| "node ip is not text")?;
    if ip == "?" {
        return Ok(None);
    }
    let port = u16::try_from(*port).map_err(|_| "node port out of range")?;
    let host = if ip.is_empty() { queried_host } else { ip };
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Some(addr.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn node(ip: &str, port: i64, id: &str) -> Frame {
        Frame::Array(vec![
            Frame::Bulk(Bytes::copy_from_slice(ip.as_bytes())),
            Frame::Integer(port),
            Frame::Bulk(Bytes::copy_from_slice(id.as_bytes())),
            Frame::Array(vec![]),
        ])
    }

    fn range(start: i64, end: i64, nodes: Vec<Frame>) -> Frame {
        let mut v = vec![Frame::Integer(start), Frame::Integer(end)];
        v.extend(nodes);
        Frame::Array(v)
    }

    fn three_masters() -> Frame {
        Frame::Array(vec![
            range(
                0,
                5460,
                vec![node("127.0.0.1", 7000, "a"), node("127.0.0.1", 7003, "d")],
            ),
            range(
                5461,
                10922,
                vec![node("127.0.0.1", 7001, "b"), node("127.0.0.1", 7004, "e")],
            ),
            range(10923, 16383, vec![node("", 7002, "c"), node("?", 0, "f")]),
        ])
    }

    #[test]
    fn parses_ranges_masters_and_replicas() {
        let map = SlotMap::from_cluster_slots(&three_masters(), "10.0.0.9").unwrap();
        assert_eq!(map.covered(), 16384);
        let s = map.shard(0).unwrap();
        assert_eq!(&*s.master, "127.0.0.1:7000");
        assert_eq!(s.replicas, vec![Arc::<str>::from("127.0.0.1:7003")]);
        assert_eq!(&*map.shard(5461).unwrap().master, "127.0.0.1:7001");
        // Empty ip means "the node you asked"; `?` means unknown and is skipped.
        let last = map.shard(16383).unwrap();
        assert_eq!(&*last.master, "10.0.0.9:7002");
        assert!(last.replicas.is_empty());
        assert_eq!(map.masters().len(), 3);
        assert_eq!(map.nodes().len(), 5);
    }

    #[test]
    fn partial_coverage_is_reported() {
        let reply = Frame::Array(vec![range(0, 99, vec![node("h", 1, "a")])]);
        let map = SlotMap::from_cluster_slots(&reply, "h").unwrap();
        assert_eq!(map.covered(), 100);
        assert!(map.shard(100).is_none());
    }

    #[test]
    fn rejects_malformed_replies() {
        assert_eq!(
            SlotMap::from_cluster_slots(&Frame::Integer(1), "h").unwrap_err(),
            TopologyError::NotAnArray
        );
        let bad = Frame::Array(vec![range(10, 5, vec![node("h", 1, "a")])]);
        assert!(matches!(
            SlotMap::from_cluster_slots(&bad, "h"),
            Err(TopologyError::BadEntry(0, _))
        ));
        let bad = Frame::Array(vec![range(0, 20000, vec![node("h", 1, "a")])]);
        assert!(SlotMap::from_cluster_slots(&bad, "h").is_err());
        let err = Frame::Error(Bytes::from_static(
            b"ERR This instance has cluster support disabled",
        ));
        assert!(matches!(
            SlotMap::from_cluster_slots(&err, "h"),
            Err(TopologyError::NodeError(_))
        ));
    }

    #[test]
    fn moved_patches_one_slot_and_reuses_known_shards() {
        let mut map = SlotMap::from_cluster_slots(&three_masters(), "h").unwrap();
        let b: Arc<str> = "127.0.0.1:7001".into();
        map.set_master(7, &b);
        assert_eq!(map.shard(7).unwrap().master, b);
        assert_eq!(map.shard(7).unwrap().replicas.len(), 1);
        assert_eq!(&*map.shard(8).unwrap().master, "127.0.0.1:7000");
        let new: Arc<str> = "127.0.0.1:7777".into();
        map.set_master(9, &new);
        assert_eq!(map.shard(9).unwrap().master, new);
        assert_eq!(map.masters().len(), 4);
    }

    #[test]
    fn a_shard_left_without_slots_is_listed_no_more_and_makes_room_for_a_new_one() {
        let mut map = SlotMap::from_cluster_slots(&three_masters(), "h").unwrap();
        let b: Arc<str> = "127.0.0.1:7001".into();
        for slot in 0..=5460 {
            map.set_master(slot, &b);
        }
        assert_eq!(map.masters().len(), 2);
        assert!(
            !map.nodes().contains(&"127.0.0.1:7003".into()),
            "its replica went with it"
        );
        let new: Arc<str> = "127.0.0.1:7777".into();
        map.set_master(0, &new);
        assert_eq!(map.shards.len(), 3, "the unused shard was dropped");
        assert_eq!(map.shard(0).unwrap().master, new);
        assert_eq!(map.shard(1).unwrap().master, b);
        assert_eq!(map.shard(5461).unwrap().master, b);
        assert_eq!(&*map.shard(16383).unwrap().master, "h:7002");
        assert_eq!(map.covered(), 16384);
    }

    #[test]
    fn a_detached_copy_is_equal_and_shares_no_address() {
        let map = SlotMap::from_cluster_slots(&three_masters(), "h").unwrap();
        let copy = map.detached();
        assert_eq!(copy, map);
        for slot in [0, 5461, 16383] {
            let (a, b) = (map.shard(slot).unwrap(), copy.shard(slot).unwrap());
            assert!(!Arc::ptr_eq(&a.master, &b.master));
            assert!(a
                .replicas
                .iter()
                .zip(&b.replicas)
                .all(|(x, y)| !Arc::ptr_eq(x, y)));
        }
    }

    #[test]
    fn only_a_new_master_counts_as_a_move() {
        let map = SlotMap::from_cluster_slots(&three_masters(), "h").unwrap();
        let mut reordered = map.clone();
        for shard in reordered.shards.iter_mut() {
            let mut other = (**shard).clone();
            other.replicas.reverse();
            other.replicas.push("127.0.0.1:9999".into());
            *shard = Arc::new(other);
        }
        assert!(map.same_masters(&reordered), "replicas alone are no move");
        let mut moved = map.clone();
        moved.set_master(7, &"127.0.0.1:7777".into());
        assert!(!map.same_masters(&moved));
        assert!(!map.same_masters(&SlotMap::default()));
    }

    #[test]
    fn a_failover_names_the_old_master_and_its_successor() {
        let map = SlotMap::from_cluster_slots(&three_masters(), "h").unwrap();
        let mut failed_over = map.clone();
        for slot in 0..=5460 {
            failed_over.set_master(slot, &"127.0.0.1:7003".into());
        }
        let replaced = map.replaced_masters(&failed_over);
        assert_eq!(
            replaced,
            vec![("127.0.0.1:7000".into(), Some("127.0.0.1:7003".into()))]
        );
        // A slot migration between masters that stay masters is no failover.
        let mut migrated = map.clone();
        migrated.set_master(7, &"127.0.0.1:7001".into());
        assert!(map.replaced_masters(&migrated).is_empty());
    }
}
