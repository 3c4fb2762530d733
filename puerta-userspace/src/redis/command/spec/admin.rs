//! Cluster administration, by subcommand: which nodes each one must reach for the cluster to behave
//! like one server, how their answers combine, and whether it needs `[redis] admin_commands`.
//!
//! Commands that change configuration, persistence or the data set of every node are opt-in: an
//! operator who puts a proxy in front of a cluster does not expect its clients to reconfigure the
//! nodes. What only reads stays available, and loading a script or a library always reaches every
//! node that may run it, or `EVALSHA`/`FCALL` would fail on the nodes that missed it.

use super::kind::Merge;

/// Where one administration command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Any master answers for the cluster (help texts, read-only introspection).
    AnyMaster,
    /// Every master: the command changes data, and replicas follow their master.
    Masters,
    /// Every node, replicas included: configuration, persistence and the script cache are each
    /// node's own, and a replica promoted later must not differ.
    Nodes,
    /// The node of the key at this argument (`DEBUG OBJECT key`, `MEMORY USAGE key`).
    Key(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminSpec {
    /// Upper case.
    pub command: &'static str,
    /// Upper case; `None` is the entry for every subcommand the table does not name.
    pub sub: Option<&'static str>,
    pub reach: Reach,
    pub merge: Merge,
    /// Served only with `admin_commands = true`.
    pub gated: bool,
}

const fn open(
    command: &'static str,
    sub: Option<&'static str>,
    reach: Reach,
    merge: Merge,
) -> AdminSpec {
    AdminSpec {
        command,
        sub,
        reach,
        merge,
        gated: false,
    }
}

const fn gated(
    command: &'static str,
    sub: Option<&'static str>,
    reach: Reach,
    merge: Merge,
) -> AdminSpec {
    let mut spec = open(command, sub, reach, merge);
    spec.gated = true;
    spec
}

use Merge::{AllOf, AllOk, AnyOk, ByName, Each};
use Reach::{AnyMaster, Key, Masters, Nodes};

#[rustfmt::skip]
const ADMIN: &[AdminSpec] = &[
    open("CONFIG", None, AnyMaster, AllOk),
    open("CONFIG", Some("GET"), AnyMaster, AllOk),
    gated("CONFIG", Some("SET"), Nodes, AllOk),
    gated("CONFIG", Some("RESETSTAT"), Nodes, AllOk),
    gated("CONFIG", Some("REWRITE"), Nodes, AllOk),
    gated("SAVE", None, Nodes, AllOk),
    gated("BGSAVE", None, Nodes, AllOk),
    gated("BGREWRITEAOF", None, Nodes, AllOk),
    gated("FLUSHALL", None, Masters, AllOk),
    gated("FLUSHDB", None, Masters, AllOk),
    open("SCRIPT", None, AnyMaster, AllOk),
    open("SCRIPT", Some("LOAD"), Nodes, AllOk),
    open("SCRIPT", Some("EXISTS"), Masters, AllOf),
    gated("SCRIPT", Some("FLUSH"), Nodes, AllOk),
    gated("SCRIPT", Some("KILL"), Masters, AnyOk),
    open("FUNCTION", None, AnyMaster, AllOk),
    open("FUNCTION", Some("LOAD"), Masters, AllOk),
    gated("FUNCTION", Some("DELETE"), Masters, AllOk),
    gated("FUNCTION", Some("FLUSH"), Masters, AllOk),
    gated("FUNCTION", Some("RESTORE"), Masters, AllOk),
    gated("FUNCTION", Some("KILL"), Masters, AnyOk),
    gated("DEBUG", None, Nodes, Each),
    open("DEBUG", Some("HELP"), AnyMaster, AllOk),
    gated("DEBUG", Some("OBJECT"), Key(2), AllOk),
    gated("DEBUG", Some("SDSLEN"), Key(2), AllOk),
    gated("DEBUG", Some("LISTPACK"), Key(2), AllOk),
    gated("DEBUG", Some("QUICKLIST"), Key(2), AllOk),
    gated("DEBUG", Some("ZIPLIST"), Key(2), AllOk),
    gated("DEBUG", Some("DIGEST-VALUE"), Key(2), AllOk),
    gated("DEBUG", Some("HTSTATS-KEY"), Key(2), AllOk),
    gated("DEBUG", Some("PROTOCOL"), AnyMaster, AllOk),
    gated("LATENCY", None, Nodes, Each),
    gated("LATENCY", Some("HISTOGRAM"), Nodes, ByName),
    open("LATENCY", Some("HELP"), AnyMaster, AllOk),
    gated("MEMORY", None, Nodes, Each),
    gated("MEMORY", Some("STATS"), Masters, ByName),
    open("MEMORY", Some("HELP"), AnyMaster, AllOk),
    open("MEMORY", Some("USAGE"), Key(2), AllOk),
];

/// The entry for `command` (upper case) called with subcommand `sub` (any case), if `command` is an
/// administration command.
pub fn admin_spec(command: &str, sub: Option<&[u8]>) -> Option<&'static AdminSpec> {
    let named = sub.and_then(|sub| {
        ADMIN.iter().find(|spec| {
            spec.command == command
                && spec
                    .sub
                    .is_some_and(|name| name.as_bytes().eq_ignore_ascii_case(sub))
        })
    });
    named.or_else(|| {
        ADMIN
            .iter()
            .find(|spec| spec.command == command && spec.sub.is_none())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_find_their_entry_and_others_the_default() {
        let spec = |c: &str, s: &str| admin_spec(c, Some(s.as_bytes())).map(|s| (s.reach, s.gated));
        assert_eq!(spec("CONFIG", "get"), Some((AnyMaster, false)));
        assert_eq!(spec("CONFIG", "Set"), Some((Nodes, true)));
        assert_eq!(spec("CONFIG", "nosuch"), Some((AnyMaster, false)));
        assert_eq!(spec("SCRIPT", "load"), Some((Nodes, false)));
        assert_eq!(spec("FUNCTION", "load"), Some((Masters, false)));
        assert_eq!(spec("DEBUG", "object"), Some((Key(2), true)));
        assert_eq!(spec("DEBUG", "sleep"), Some((Nodes, true)));
        assert_eq!(spec("MEMORY", "usage"), Some((Key(2), false)));
        assert_eq!(admin_spec("FLUSHALL", None).map(|s| s.gated), Some(true));
        assert_eq!(spec("GET", "x"), None);
    }

    #[test]
    fn every_command_has_a_default_entry() {
        for spec in ADMIN {
            assert!(
                admin_spec(spec.command, None).is_some(),
                "{} has no entry for unnamed subcommands",
                spec.command
            );
            assert_eq!(spec.command, spec.command.to_ascii_uppercase());
        }
    }
}
