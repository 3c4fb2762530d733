//! The eBPF object compiled by build.rs. Empty when the toolchain was missing at build time.

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/puerta-ebpf.o"));

/// The embedded object, or `None` if this binary was built without it.
pub fn object_bytes() -> Option<&'static [u8]> {
    (!OBJECT.is_empty()).then_some(OBJECT)
}
