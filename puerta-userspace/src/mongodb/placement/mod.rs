//! Which mongos a client goes to: the backends and their health view, smooth weighted round-robin
//! for new clients, the affinity table (or rendezvous hashing) that keeps a client on its mongos,
//! and the router that combines them.

pub mod affinity;
pub mod backends;
pub mod balancer;
pub mod rendezvous;
pub mod router;
