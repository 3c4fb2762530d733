//! Puerta: one daemon, two modes. `app` picks the mode from the config and owns start-up and draining;
//! each mode lives in its own module and only knows how to serve until told to stop.

pub mod admin;
pub mod affinity;
pub mod app;
pub mod backends;
pub mod balancer;
pub mod config;
pub mod connect;
pub mod error_line;
pub mod forward;
pub mod handover;
pub mod health;
pub mod kernel;
pub mod limits;
pub mod log_throttle;
pub mod logging;
pub mod mongodb;
pub mod privileges;
pub mod proxy_protocol;
pub mod redis;
pub mod reload;
pub mod startup;
