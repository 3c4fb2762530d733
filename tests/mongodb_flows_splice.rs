//! The `mongodb_flows` suite, unchanged, with `forwarding = "splice"` (see `mongo::forwarding`).

#[path = "mongodb_flows.rs"]
mod suite;
