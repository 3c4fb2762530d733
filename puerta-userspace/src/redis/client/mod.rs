//! The client side of a connection: its session (reading commands, writing replies in order), its
//! limits (idle time, bytes in flight, output held) and what it negotiated (AUTH, HELLO).

pub mod auth;
pub mod board;
pub mod feed;
pub mod fifo;
pub mod hangup;
pub mod hello;
pub mod idle;
pub mod inflight;
pub mod monitor;
pub mod order;
pub mod output;
pub mod pause;
pub mod registry;
pub mod session;
pub mod slowlog;
pub mod tally;
pub mod tracking;
pub mod worker;
