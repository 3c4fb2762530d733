//! The `mongodb_flows` suite, unchanged, with `forwarding = "kernel"` (see `mongo::forwarding`).

#[path = "mongodb_flows.rs"]
mod suite;
