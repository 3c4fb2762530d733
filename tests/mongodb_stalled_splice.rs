//! The `mongodb_stalled` suite, unchanged, with `forwarding = "splice"` (see `mongo::forwarding`).

#[path = "mongodb_stalled.rs"]
mod suite;
