//! Reading a running Puerta's pinned maps from another process (tests, operators' tools): how many
//! entries each holds, to prove nothing leaks.

use std::path::Path;

use aya::maps::{HashMap, MapData, SockHash};
use puerta_common::{AffinityKey, AffinityValue, PeerEntry};

use super::KernelError;

/// Entries in the pinned `socks`, `peers` and `affinity` maps under `pin_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedCounts {
    pub sockets: usize,
    pub peers: usize,
    pub affinity: usize,
}

pub fn pinned_counts(pin_dir: &Path) -> Result<PinnedCounts, KernelError> {
    let open = |name: &str| {
        MapData::from_pin(pin_dir.join(name)).map_err(|e| KernelError::Pin {
            path: pin_dir.join(name),
            reason: e.to_string(),
        })
    };
    let socks: SockHash<_, u64> = SockHash::try_from(aya::maps::Map::SockHash(open("socks")?))?;
    let peers: HashMap<_, u64, PeerEntry> =
        HashMap::try_from(aya::maps::Map::HashMap(open("peers")?))?;
    let affinity: HashMap<_, AffinityKey, AffinityValue> =
        HashMap::try_from(aya::maps::Map::HashMap(open("affinity")?))?;
    Ok(PinnedCounts {
        sockets: socks.keys().filter(|k| k.is_ok()).count(),
        peers: peers.keys().filter(|k| k.is_ok()).count(),
        affinity: affinity.keys().filter(|k| k.is_ok()).count(),
    })
}
