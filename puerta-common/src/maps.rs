//! Map names, capacities and key/value layouts of the sockmap data path.
//!
//! Peer lookup: every spliced socket is stored in [`SOCKS_MAP`] under its *socket cookie* (a 64-bit id
//! the kernel gives each socket; `SO_COOKIE` from userspace, `bpf_get_socket_cookie` in the program).
//! [`PEERS_MAP`] maps a socket's cookie to a [`PeerEntry`] naming its peer's cookie. The verdict program
//! therefore needs two lookups and never depends on addresses or ports (which go to 0 once a socket is
//! closing).

/// SockHash of spliced sockets, keyed by socket cookie (`u64`).
pub const SOCKS_MAP: &str = "SOCKS";
/// Hash map: socket cookie → [`PeerEntry`].
pub const PEERS_MAP: &str = "PEERS";
/// Per-CPU array of [`Counter`]s, indexed by [`counter_index`] and the `COUNTER_*` slots.
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Hash map mirrored from userspace: client IP ([`AffinityKey`]) → [`AffinityValue`].
pub const AFFINITY_MAP: &str = "AFFINITY";
/// Array mirrored from userspace: backend index → [`BackendValue`].
pub const BACKENDS_MAP: &str = "BACKENDS";
/// The stream-verdict program's name in the object.
pub const VERDICT_PROGRAM: &str = "puerta_verdict";

/// Sockets in the sockhash (two per spliced connection).
pub const MAX_SOCKETS: u32 = 65_536;
/// Affinity entries (distinct client IPs).
pub const MAX_AFFINITY: u32 = 65_536;
/// Backends (mongos endpoints) the counters and backends map can describe.
pub const MAX_BACKENDS: u32 = 64;

/// Direction of a flow, as seen from the socket that received the bytes.
pub const DIR_CLIENT_TO_BACKEND: u32 = 0;
pub const DIR_BACKEND_TO_CLIENT: u32 = 1;

/// Counter slots after the per-backend ones.
pub const COUNTER_PASSED: u32 = MAX_BACKENDS * 2;
/// Zero-length skbs (a FIN) dropped instead of redirected.
pub const COUNTER_EMPTY_DROPPED: u32 = COUNTER_PASSED + 1;
/// Redirects the helper refused (peer gone); the skb was passed to the receiving socket instead.
pub const COUNTER_REDIRECT_FAILED: u32 = COUNTER_PASSED + 2;
pub const COUNTER_SLOTS: u32 = COUNTER_PASSED + 3;

/// Counter slot of the bytes a backend's flows moved in direction `dir`.
pub const fn counter_index(backend: u32, dir: u32) -> u32 {
    (backend % MAX_BACKENDS) * 2 + (dir & 1)
}

/// Value of [`PEERS_MAP`]: where bytes arriving on a socket go.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerEntry {
    /// Cookie of the socket that receives the redirected bytes (key in [`SOCKS_MAP`]).
    pub peer_cookie: u64,
    /// Backend index, for the per-backend counters.
    pub backend: u32,
    /// [`DIR_CLIENT_TO_BACKEND`] or [`DIR_BACKEND_TO_CLIENT`].
    pub direction: u32,
}

/// Bytes and skbs, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub bytes: u64,
    pub packets: u64,
}

/// Key of [`AFFINITY_MAP`]: a client address. IPv4 is stored in the first four bytes of `addr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    pub _pad: [u8; 2],
    pub addr: [u8; 16],
}

/// Value of [`AFFINITY_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityValue {
    /// Index into the backends table.
    pub backend: u32,
    /// Connections of this client currently open.
    pub conn_count: u32,
    /// CLOCK_MONOTONIC nanoseconds of the last connect/close (same clock as `bpf_ktime_get_ns`).
    pub last_seen_ns: u64,
}

/// Value of [`BACKENDS_MAP`]: a mongos endpoint (address as configured, when it is an IP literal;
/// all zero for a host name, which is resolved per connection) and its health as `/backends` shows it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendValue {
    pub family: u16,
    pub port: u16,
    pub addr: [u8; 16],
    pub weight: u32,
    /// [`BACKEND_UNCHECKED`], [`BACKEND_UP`] or [`BACKEND_DOWN`].
    pub health: u32,
}

/// No health check has decided yet (also an unused slot).
pub const BACKEND_UNCHECKED: u32 = 0;
pub const BACKEND_UP: u32 = 1;
pub const BACKEND_DOWN: u32 = 2;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

const _: () = assert!(core::mem::size_of::<PeerEntry>() == 16);
const _: () = assert!(core::mem::size_of::<Counter>() == 16);
const _: () = assert!(core::mem::size_of::<AffinityKey>() == 20);
const _: () = assert!(core::mem::size_of::<AffinityValue>() == 16);
const _: () = assert!(core::mem::size_of::<BackendValue>() == 28);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all types are #[repr(C)], contain only integers, and have explicit padding fields, so
    // every bit pattern is valid and there are no implicit padding bytes.
    unsafe impl aya::Pod for super::PeerEntry {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::AffinityKey {}
    unsafe impl aya::Pod for super::AffinityValue {}
    unsafe impl aya::Pod for super::BackendValue {}
}
