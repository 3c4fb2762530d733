//! What the proxy does with each command. The table gives every command one [`Kind`] and dispatch
//! is one match on it: no other place decides by a command's name.

/// How a command is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Routed by its keys to the node of their slot; a call without keys (EVAL with `numkeys` 0) goes
    /// to any master.
    Keyed,
    /// Keys may span slots (MGET, MSET, DEL, ...): one sub-command per slot, the answers merged.
    Split(Merge),
    /// Needs a node but has no key, and any master answers for the whole cluster (COMMAND, TIME,
    /// RANDOMKEY).
    AnyMaster,
    /// PUBLISH and PUBSUB introspection: on the node that holds the global subscriptions of every
    /// client of the proxy (`exec::pubsub::HOME_SLOT`), so that PUBLISH counts the receivers and
    /// PUBSUB NUMSUB/NUMPAT/CHANNELS see the subscriptions as one Redis would.
    PubSub,
    /// Must run on every master, the answers merged: on one node it would be silently partial.
    FanOut(Merge),
    /// Answered by the proxy itself: it describes the connection or the (virtual) server.
    Local(Local),
    /// Cluster administration (CONFIG, DEBUG, SCRIPT, FLUSHALL, ...): where it goes, how the answers
    /// combine and whether `admin_commands` must be on depend on the subcommand (`admin.rs`).
    Admin,
    /// SCAN over every master in turn, with a cursor that names the node.
    Scan,
    /// INFO, written by the proxy with the cluster's keyspace.
    Info,
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH: the proxy queues the transaction.
    Transaction(Step),
    /// The subscribe family: the connection becomes a subscriber.
    Subscription(Subscription),
    /// Refused with this reason: a proxy cannot give the command a cluster-wide meaning.
    Unsupported(&'static str),
}

/// How the answers of a command sent to several nodes combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// MGET: the values back in the order the keys were asked.
    Values,
    /// The first answer when every node succeeded (MSET's OK, SCRIPT LOAD's SHA).
    AllOk,
    /// Integer answers added up (DEL, EXISTS, DBSIZE).
    Sum,
    /// Array answers concatenated (KEYS).
    Concat,
    /// Integer arrays combined position by position: 1 only where every node said 1 (SCRIPT EXISTS).
    AllOf,
    /// The first success; an error only if every node failed (SCRIPT KILL: one node runs the
    /// script, the others are not busy).
    AnyOk,
    /// Every node answers for itself (DEBUG, LATENCY, MEMORY): integers added up, arrays
    /// concatenated, text reports one after the other under each node's name, anything else the
    /// first node's answer.
    Each,
    /// Maps keyed by name, merged key by key at every level, counts added up (LATENCY HISTOGRAM:
    /// per command its calls and its buckets; MEMORY STATS over the masters).
    ByName,
}

/// The commands the proxy answers without a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Ping,
    Echo,
    Quit,
    Select,
    Auth,
    Hello,
    Client,
    /// The answer of a Redis without cluster support: nothing reveals the nodes behind.
    Cluster,
    /// READONLY, READWRITE, ASKING: accepted, they mean nothing through the proxy.
    Accept,
    Reset,
    /// The proxy's own slow log: latency as its clients see it.
    Slowlog,
    /// Every command through the proxy (the session turns the client into a monitor).
    Monitor,
}

/// One step of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
}

/// Which subscription command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub unsubscribe: bool,
    /// SSUBSCRIBE/SUNSUBSCRIBE: routed by the shard channel's slot.
    pub sharded: bool,
}

/// Reasons given when a command is refused.
pub mod why {
    pub const NODE_ADMIN: &str =
        "it is a node administration command; run it on the nodes directly";
    pub const ONE_DATABASE: &str = "a Redis Cluster has only database 0";
    pub const POOLED: &str =
        "the proxy spreads a client's writes over pooled connections to several nodes";
    pub const PER_NODE: &str = "its answer would describe one node, not the cluster";
    pub const MIGRATION: &str = "moving keys between nodes is the cluster's own business";
    pub const ACL: &str = "users and permissions live on each node; configure ACLs on the nodes";
}

impl Kind {
    /// Commands a client may send before it has authenticated (Redis' `no-auth` flag).
    pub fn before_auth(self) -> bool {
        matches!(
            self,
            Kind::Local(Local::Auth | Local::Hello | Local::Quit | Local::Reset)
        )
    }

    /// Commands a transaction does not queue: they act on the transaction itself, or end or reset
    /// the connection (as in Redis' `processCommand`).
    pub fn outside_transaction(self) -> bool {
        matches!(
            self,
            Kind::Transaction(_) | Kind::Local(Local::Quit | Local::Reset)
        )
    }

    pub fn subscription(self) -> Option<Subscription> {
        match self {
            Kind::Subscription(s) => Some(s),
            _ => None,
        }
    }
}
