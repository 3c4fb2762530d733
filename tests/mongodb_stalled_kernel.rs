//! The `mongodb_stalled` suite, unchanged, with `forwarding = "kernel"` (see `mongo::forwarding`).

#[path = "mongodb_stalled.rs"]
mod suite;
