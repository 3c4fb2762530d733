//! Puerta: one daemon, two modes. `app` picks the mode from the config and owns start-up and draining;
//! the `front_door` accepts for both; each mode lives in its own module and only knows what to do
//! with a connection it is given.

pub mod admin;
pub mod app;
pub mod config;
pub mod error_line;
pub mod front_door;
pub mod handover;
pub mod limits;
pub mod log_throttle;
pub mod logging;
pub mod mongodb;
pub mod privileges;
pub mod redis;
pub mod reload;
pub mod startup;
pub mod tls;
