//! The `mongodb_e2e` suite, unchanged, with `forwarding = "splice"` (see `mongo::forwarding`).

#[path = "mongodb_e2e.rs"]
mod suite;
