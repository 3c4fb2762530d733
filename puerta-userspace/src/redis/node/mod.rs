//! Connections to cluster nodes: opening them (handshake, AUTH, protocol), the pipelined connection
//! that matches replies to requests, the per-node pools, and how node faults are reported.

pub mod backend;
pub mod connect;
pub mod fault;
pub mod outbox;
pub mod pool;
