//! Administration commands (CONFIG, DEBUG, SCRIPT, FUNCTION, FLUSHALL, SAVE, LATENCY, MEMORY): sent
//! where the subcommand's entry in the admin table says, and answered as one server would. A command
//! sent to several nodes succeeds only if each did; otherwise the error says which nodes failed, so an
//! operator knows the cluster is now inconsistent and where.

use std::sync::Arc;

use crate::redis::cluster::members::{parse_cluster_nodes, with_members};
use crate::redis::cluster::router::Route;
use crate::redis::cluster::Cluster;
use crate::redis::command::slots::key_slot;
use crate::redis::command::spec::{admin_spec, Merge, Reach};
use crate::redis::command::Command;
use crate::redis::exec::broadcast;
use crate::redis::exec::dispatch::{later, Reply};
use crate::redis::exec::merge::combine;
use crate::redis::exec::proxy_config;
use crate::redis::node::pool::Lane;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

/// What to do with an administration command.
pub enum Plan {
    /// To one node, like any routed command.
    Route(Route),
    /// `CONFIG GET` from one node, with the proxy's own settings filled in.
    ConfigGet(Route),
    /// To each of these nodes, the answers merged.
    Each { nodes: Vec<Arc<str>>, merge: Merge },
    /// To every member of the cluster, the answers merged.
    EveryNode(Merge),
    /// Answered without a node: refused, or a proxy setting.
    Answer(Frame),
}

pub fn plan(cluster: &Cluster, cmd: &Command) -> Plan {
    let sub = cmd.args().get(1).map(|s| &s[..]);
    let Some(spec) = admin_spec(&cmd.name, sub) else {
        return Plan::Answer(wire::error("ERR Puerta: not an administration command"));
    };
    if let Some(answer) = proxy_config::set(cluster, cmd) {
        return Plan::Answer(answer);
    }
    if spec.gated && !cluster.config.admin_commands {
        return Plan::Answer(refused(cmd, spec.sub.is_some()));
    }
    match spec.reach {
        Reach::AnyMaster if spec.command == "CONFIG" && spec.sub == Some("GET") => {
            Plan::ConfigGet(cmd.keyless_route())
        }
        Reach::AnyMaster => Plan::Route(cmd.keyless_route()),
        Reach::Key(pos) => Plan::Route(Route {
            payload: cmd.payload(),
            slot: cmd.args().get(pos).map(|key| key_slot(key)),
            readonly: cmd.readonly(),
            dedicated: false,
            scripted: false,
        }),
        Reach::Masters => Plan::Each {
            nodes: cluster.masters(),
            merge: spec.merge,
        },
        Reach::Nodes => Plan::EveryNode(spec.merge),
    }
}

/// Whether a transaction may queue `cmd`: it goes to one node and needs no `admin_commands`
/// (CONFIG GET, MEMORY USAGE), so that EXEC cannot bypass the setting.
pub fn one_node(cmd: &Command) -> bool {
    let sub = cmd.args().get(1).map(|s| &s[..]);
    admin_spec(&cmd.name, sub)
        .is_some_and(|spec| !spec.gated && matches!(spec.reach, Reach::AnyMaster | Reach::Key(_)))
}

fn refused(cmd: &Command, by_subcommand: bool) -> Frame {
    let name = match (by_subcommand, cmd.args().get(1)) {
        (true, Some(sub)) => format!(
            "{} {}",
            cmd.name.to_lowercase(),
            String::from_utf8_lossy(sub).to_lowercase()
        ),
        _ => cmd.name.to_lowercase(),
    };
    wire::error(format!(
        "ERR Puerta: '{name}' administers the cluster's nodes; it is served only with [redis] admin_commands = true"
    ))
}

/// [`each`] member of the cluster: the slot map's nodes and those only `CLUSTER NODES` lists yet,
/// asked of one master first (if none answers, the slot map's nodes alone).
pub async fn every_node(cluster: &Arc<Cluster>, cmd: &Command, merge: Merge, lane: Lane) -> Reply {
    let nodes = match cluster.any_master() {
        Some(master) => with_members(cluster.nodes(), members(cluster, &master, lane).await),
        None => cluster.nodes(),
    };
    each(cluster, cmd, nodes, merge, lane).await
}

async fn members(cluster: &Cluster, master: &Arc<str>, lane: Lane) -> Vec<Arc<str>> {
    let ask = wire::command_bytes(&[b"CLUSTER".as_slice(), b"NODES".as_slice()]);
    let answer = broadcast::call_node(cluster, master, ask, lane).await;
    let host = master.rsplit_once(':').map_or("", |(host, _)| host);
    match answer.as_bytes().filter(|_| !answer.is_error()) {
        Some(text) => parse_cluster_nodes(&String::from_utf8_lossy(text), host),
        None => {
            tracing::debug!(node = %master, ?answer, "CLUSTER NODES unanswered; admin command goes to the slot map's nodes");
            Vec::new()
        }
    }
}

/// Sends `cmd` to each of `nodes` now (later commands cannot overtake it); the reply merges their
/// answers once all are in.
pub async fn each(
    cluster: &Arc<Cluster>,
    cmd: &Command,
    nodes: Vec<Arc<str>>,
    merge: Merge,
    lane: Lane,
) -> Reply {
    let sent = broadcast::send_each(cluster, &nodes, cmd.payload(), lane, cmd.readonly()).await;
    match sent {
        Ok(sent) => {
            let cluster = cluster.clone();
            later(async move {
                let replies = broadcast::replies(&cluster, sent).await;
                named(merge, &nodes, replies)
            })
        }
        Err(e) => Reply::Ready(e),
    }
}

/// The merged answer; when a node failed, its error with the nodes that failed and how many did not
/// (for AnyOk only when every node failed). When every node gave the same error, nothing happened
/// anywhere and that error is the answer as one Redis words it (clients match those words).
fn named(merge: Merge, nodes: &[Arc<str>], replies: Vec<Frame>) -> Frame {
    let failed: Vec<&str> = nodes
        .iter()
        .zip(&replies)
        .filter(|(_, reply)| matches!(reply, Frame::Error(_)))
        .map(|(node, _)| &**node)
        .collect();
    let tolerated = merge == Merge::AnyOk && failed.len() < replies.len();
    if failed.is_empty() && merge == Merge::Each {
        if let Some(reports) = reports(nodes, &replies) {
            return reports;
        }
    }
    if failed.is_empty() || tolerated {
        return combine(merge, replies);
    }
    let Some(Frame::Error(text)) = replies.iter().find(|r| matches!(r, Frame::Error(_))) else {
        return combine(merge, replies);
    };
    if replies
        .iter()
        .all(|r| matches!(r, Frame::Error(e) if e == text))
    {
        return Frame::Error(text.clone());
    }
    let succeeded = replies.len() - failed.len();
    wire::error(format!(
        "{} (Puerta: failed on {}; {succeeded} of {} nodes succeeded)",
        String::from_utf8_lossy(text),
        failed.join(", "),
        replies.len()
    ))
}

/// Every node's text report (LATENCY DOCTOR, MEMORY DOCTOR, MEMORY MALLOC-STATS), one after the
/// other under the node's name: one node's alone would describe a third of the data. `None` when the
/// answers are not all text.
fn reports(nodes: &[Arc<str>], replies: &[Frame]) -> Option<Frame> {
    let mut all = String::new();
    let mut verbatim = false;
    for (node, reply) in nodes.iter().zip(replies) {
        let text = match reply {
            Frame::Bulk(text) => text,
            Frame::Verbatim { text, .. } => {
                verbatim = true;
                text
            }
            _ => return None,
        };
        if !all.is_empty() {
            all.push('\n');
        }
        all.push_str(&format!(
            "--- {node} ---\n{}",
            String::from_utf8_lossy(text)
        ));
    }
    Some(match verbatim {
        true => Frame::verbatim_text(all),
        false => Frame::Bulk(all.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<Arc<str>> {
        vec!["a:1".into(), "b:2".into(), "c:3".into()]
    }

    #[test]
    fn a_failure_names_the_nodes_that_failed() {
        let replies = vec![wire::ok(), wire::error("ERR bad"), wire::ok()];
        assert_eq!(
            named(Merge::AllOk, &nodes(), replies),
            wire::error("ERR bad (Puerta: failed on b:2; 2 of 3 nodes succeeded)")
        );
        assert_eq!(
            named(
                Merge::AllOk,
                &nodes(),
                vec![wire::ok(), wire::ok(), wire::ok()]
            ),
            wire::ok()
        );
    }

    #[test]
    fn text_reports_come_from_every_node_by_name() {
        let replies = vec![wire::bulk("fine"), wire::bulk("slow"), wire::bulk("fine")];
        assert_eq!(
            named(Merge::Each, &nodes(), replies),
            wire::bulk("--- a:1 ---\nfine\n--- b:2 ---\nslow\n--- c:3 ---\nfine")
        );
        let ints = vec![Frame::Integer(1), Frame::Integer(2), Frame::Integer(3)];
        assert_eq!(named(Merge::Each, &nodes(), ints), Frame::Integer(6));
    }

    #[test]
    fn the_same_error_from_every_node_is_the_answer_as_it_is() {
        let bad = || wire::error("ERR unknown subcommand 'x'. Try FUNCTION HELP.");
        assert_eq!(
            named(Merge::AllOk, &nodes(), vec![bad(), bad(), bad()]),
            bad()
        );
        let refused = |addr: &str| wire::error(format!("ERR cannot connect to {addr}"));
        let Frame::Error(text) = named(
            Merge::AllOk,
            &nodes(),
            vec![refused("a:1"), refused("b:2"), refused("c:3")],
        ) else {
            panic!("expected an error");
        };
        assert!(text.ends_with(b"(Puerta: failed on a:1, b:2, c:3; 0 of 3 nodes succeeded)"));
    }

    #[test]
    fn any_ok_fails_only_when_every_node_did() {
        let busy = || wire::error("NOTBUSY No scripts in execution right now.");
        assert_eq!(
            named(Merge::AnyOk, &nodes(), vec![busy(), wire::ok(), busy()]),
            wire::ok()
        );
        let Frame::Error(text) = named(Merge::AnyOk, &nodes(), vec![busy(), busy(), busy()]) else {
            panic!("expected an error");
        };
        assert!(text.starts_with(b"NOTBUSY"));
    }

    #[test]
    fn gated_commands_are_refused_by_name() {
        let cmd = Command::from_words(&["CONFIG", "set", "maxmemory", "1"]);
        assert_eq!(
            refused(&cmd, true),
            wire::error("ERR Puerta: 'config set' administers the cluster's nodes; it is served only with [redis] admin_commands = true")
        );
        assert!(matches!(
            refused(&Command::from_words(&["SAVE"]), false),
            Frame::Error(t) if t.starts_with(b"ERR Puerta: 'save' ")
        ));
    }
}
