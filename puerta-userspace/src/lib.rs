//! Puerta: one daemon, two modes. `app` picks the mode from the config and owns start-up and draining;
//! each mode lives in its own module and only knows how to serve until told to stop.

pub mod admin;
pub mod app;
pub mod config;
pub mod limits;
pub mod mongodb;
pub mod redis;
