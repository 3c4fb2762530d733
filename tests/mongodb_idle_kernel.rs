//! The `mongodb_idle` suite, unchanged, with `forwarding = "kernel"` (see `mongo::forwarding`).

#[path = "mongodb_idle.rs"]
mod suite;
