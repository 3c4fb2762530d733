//! The kernel data path: the eBPF sockmap program embedded in this binary, loaded once per process.
//! Spliced pairs move their payload inside the kernel; userspace only inserts sockets, watches for
//! FIN/RST and tears pairs down (see docs/kernel.md).

mod error;
mod handoff;
mod inspect;
mod loader;
mod maps;
mod mirror;
mod object;
mod pins;
pub mod sockopt;
mod splice;
mod watcher;

pub use error::KernelError;
pub use handoff::{adopt_pairs, AdoptError, AdoptedPair};
pub use inspect::{pinned_counts, PinnedCounts};
pub use loader::{finish_active, KernelPath};
pub use maps::{affinity_key, monotonic_ns, CounterTotals};
pub use mirror::{KernelAffinityMirror, KernelHealthMirror};
pub use object::object_bytes;
pub use puerta_common::{AffinityValue, Counter};
pub use splice::{SpliceError, Spliced};
