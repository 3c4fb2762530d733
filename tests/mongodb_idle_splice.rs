//! The `mongodb_idle` suite, unchanged, with `forwarding = "splice"` (see `mongo::forwarding`).

#[path = "mongodb_idle.rs"]
mod suite;
