//! What happens to a command: answered by the proxy, queued in a transaction, sent to every master and
//! merged, split per slot and merged, or routed to one node; and the reply that results.

pub mod admin;
pub mod answer;
pub mod broadcast;
pub mod client;
pub mod client_tracking;
pub mod dispatch;
pub mod info;
pub mod local;
pub mod merge;
pub mod multikey;
pub mod node_info;
pub mod proxy_config;
pub mod pubsub;
pub mod scan;
pub mod subscriptions;
pub mod transaction;
