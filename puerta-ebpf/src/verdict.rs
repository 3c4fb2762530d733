//! The stream verdict. Rules, each learned the hard way:
//! - a zero-length skb is the bare FIN: redirecting or passing it while data is still queued breaks the
//!   stream, so it is dropped (userspace propagates the FIN itself);
//! - a socket without a peer entry (being torn down, or not yet paired) gets `SK_PASS`: its bytes stay
//!   on the socket where userspace can still read them — never drop data.

use aya_ebpf::{
    bindings::sk_action::{SK_DROP, SK_PASS},
    btf_maps::{Array, HashMap, PerCpuArray, SockHash},
    helpers::generated::bpf_get_socket_cookie,
    macros::{btf_map, stream_verdict},
    programs::SkBuffContext,
    EbpfContext as _,
};
use puerta_common::{
    counter_index, AffinityKey, AffinityValue, BackendValue, Counter, PeerEntry,
    COUNTER_EMPTY_DROPPED, COUNTER_PASSED, COUNTER_REDIRECT_FAILED, COUNTER_SLOTS, MAX_AFFINITY,
    MAX_BACKENDS, MAX_SOCKETS,
};

#[btf_map]
static SOCKS: SockHash<u64, { MAX_SOCKETS as usize }> = SockHash::new();

#[btf_map]
static PEERS: HashMap<u64, PeerEntry, { MAX_SOCKETS as usize }> = HashMap::new();

#[btf_map]
static COUNTERS: PerCpuArray<Counter, { COUNTER_SLOTS as usize }> = PerCpuArray::new();

/// Written by userspace only; declared here so it is created with BTF and bpftool prints field names.
#[btf_map]
static AFFINITY: HashMap<AffinityKey, AffinityValue, { MAX_AFFINITY as usize }> = HashMap::new();

#[btf_map]
static BACKENDS: Array<BackendValue, { MAX_BACKENDS as usize }> = Array::new();

#[stream_verdict]
pub fn puerta_verdict(ctx: SkBuffContext) -> u32 {
    match try_puerta_verdict(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

fn try_puerta_verdict(ctx: &SkBuffContext) -> Result<u32, u32> {
    let len = ctx.len();
    if len == 0 {
        count(COUNTER_EMPTY_DROPPED, 0);
        return Ok(SK_DROP);
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(peer) = PEERS.get_ptr(cookie) else {
        count(COUNTER_PASSED, len);
        return Err(SK_PASS);
    };
    let peer = unsafe { *peer };
    let verdict = SOCKS.redirect_skb(ctx, peer.peer_cookie, 0) as u32;
    if verdict == SK_PASS {
        count(counter_index(peer.backend, peer.direction), len);
    } else {
        // The peer left the sockhash between the two lookups: keep the bytes on this socket.
        count(COUNTER_REDIRECT_FAILED, len);
        return Err(SK_PASS);
    }
    Ok(verdict)
}

#[inline(always)]
fn count(slot: u32, len: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(slot) {
        unsafe {
            (*c).bytes += u64::from(len);
            (*c).packets += 1;
        }
    }
}
