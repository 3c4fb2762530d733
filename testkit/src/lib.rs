//! What the integration tests (`tests/harness`) and xtask (demo, bench) both need to run servers
//! on loopback, in one copy: which ports to give them, the processes (started, watched, never left
//! running), waiting until they listen, how a Redis Cluster is made and when it is healthy, the
//! OP_MSG `hello` of the mongos stand-ins, and the certificates of TLS tests and benches. It
//! depends on nothing of Puerta's, so that xtask can build before the daemon can (its eBPF build needs what
//! `cargo xtask setup` installs).

pub mod opmsg;
pub mod ports;
pub mod process;
pub mod redis_cluster;
pub mod tls;

pub use ports::{free_port, loopback, wait_for_port};
