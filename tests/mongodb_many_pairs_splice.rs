//! The `mongodb_many_pairs` suite, unchanged, with `forwarding = "splice"` (see `mongo::forwarding`).

#[path = "mongodb_many_pairs.rs"]
mod suite;
