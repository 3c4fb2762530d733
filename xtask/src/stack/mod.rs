//! The local stacks that demo and bench share: backends, a Redis Cluster, Puerta itself, each a guard
//! that stops its processes when dropped.

pub mod mongos;
pub mod net;
pub mod puerta;
pub mod redis_cluster;
