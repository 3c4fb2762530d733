//! What happens to one client command: answered locally, queued in a transaction, fanned out to all
//! masters, split per slot, or routed to one node. Anything sent to the cluster is on the wire before
//! this returns, so the next command of the same client cannot overtake it.

use std::sync::Arc;

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use tokio::sync::{mpsc, watch};

use crate::redis::client::auth;
use crate::redis::client::order::SlotOrder;
use crate::redis::client::output::OutputBudget;
use crate::redis::cluster::router::{self, Route, Sender};
use crate::redis::cluster::Cluster;
use crate::redis::command::spec::flag;
use crate::redis::command::Command;
use crate::redis::exec::answer::Answer;
use crate::redis::exec::broadcast;
use crate::redis::exec::info;
use crate::redis::exec::local;
use crate::redis::exec::multikey;
use crate::redis::exec::scan;
use crate::redis::exec::transaction::Transaction;
use crate::redis::node::pool::{Lane, LaneCache};
use crate::redis::resp::wire;
use crate::redis::resp::{Frame, Protocol};
use crate::redis::stats::Stats;

/// A reply slot in the client's FIFO; the writer resolves them strictly in order.
pub enum Reply {
    Ready(Frame),
    /// One command on its way to a node: the common case, resolved by the writer without a boxed
    /// future.
    Routed(router::InFlight),
    Later(BoxFuture<'static, Answer>),
    /// Pub/sub: every frame from the channel, until it closes.
    Relay(mpsc::Receiver<Frame>),
    /// Write this, then close the connection.
    Close(Frame),
}

pub struct ClientState {
    pub id: u64,
    /// Which connection of each node's pool this client uses (keeps its commands in order), in the
    /// pool of the protocol the client chose with HELLO.
    pub lane: Lane,
    pub name: Option<bytes::Bytes>,
    pub authed: bool,
    pub txn: Transaction,
    pub order: SlotOrder,
    /// `client_output_limit_mb`: node replies held for this client.
    pub budget: Arc<OutputBudget>,
    /// The client's lane connection of each node it talks to.
    pub conns: LaneCache,
}

impl ClientState {
    pub fn protocol(&self) -> Protocol {
        self.lane.protocol
    }

    /// Switches the protocol of the replies from now on, and the pools its commands use.
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.lane.protocol = protocol;
    }

    /// Who sends this client's commands, for the router.
    pub fn sender(&self) -> Sender {
        Sender {
            lane: self.lane,
            budget: Some(self.budget.clone()),
        }
    }

    pub fn new(
        id: u64,
        cluster: &Cluster,
        completed: watch::Receiver<u64>,
        budget: Arc<OutputBudget>,
    ) -> ClientState {
        ClientState {
            budget,
            conns: LaneCache::default(),
            order: SlotOrder::new(completed),
            id,
            lane: Lane::resp2(id as usize),
            name: None,
            authed: !auth::required(&cluster.config),
            txn: Transaction::default(),
        }
    }
}

pub async fn dispatch(cluster: &Arc<Cluster>, state: &mut ClientState, cmd: Command) -> Reply {
    Stats::bump(&cluster.stats.commands);
    crate::redis::metrics::command(&cmd);
    if !state.authed && !matches!(cmd.name.as_str(), "AUTH" | "HELLO" | "QUIT") {
        return Reply::Ready(auth::noauth());
    }
    let transactional = matches!(
        cmd.name.as_str(),
        "MULTI" | "EXEC" | "DISCARD" | "WATCH" | "UNWATCH"
    );
    if state.txn.in_multi() && !transactional && cmd.name != "QUIT" {
        return Reply::Ready(state.txn.queue(&cmd));
    }
    if let Some(reply) = local::answer(cluster, state, &cmd) {
        return reply;
    }
    if let Err(e) = cmd.check_arity() {
        return Reply::Ready(e);
    }
    if transactional {
        return state
            .txn
            .handle(cluster, &cmd, state.lane, &mut state.order)
            .await;
    }
    let lane = state.lane;
    let Some(spec) = cmd.spec else {
        return Reply::Ready(crate::redis::command::spec::unknown_command(&cmd.args));
    };
    let cluster = cluster.clone();
    match cmd.name.as_str() {
        "SCAN" => later(scan::scan(cluster, cmd, lane)),
        "INFO" => later(info::info(cluster, cmd.args, lane)),
        "DBSIZE" => fan_out(cluster, cmd, lane, |r| broadcast::sum_integers(&r)).await,
        "KEYS" => fan_out(cluster, cmd, lane, broadcast::concat_arrays).await,
        "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE" => {
            Reply::Ready(crate::redis::exec::pubsub::unsubscribed_reply(&cmd))
        }
        "RESET" => {
            state.set_protocol(Protocol::Resp2);
            state.name = None;
            state.authed = !auth::required(&cluster.config);
            state.txn = Transaction::default();
            Reply::Ready(wire::simple("RESET"))
        }
        _ if spec.has(flag::UNSUPPORTED) => Reply::Ready(wire::error(format!(
            "ERR Puerta: '{}' is not supported through the proxy",
            cmd.name.to_lowercase()
        ))),
        _ if spec.has(flag::FAN_OUT) => fan_out(cluster, cmd, lane, broadcast::all_ok).await,
        // COMMAND, CONFIG GET and keyless commands: any master answers for the whole cluster.
        _ if spec.has(flag::PROXY) || spec.has(flag::NO_KEY) => {
            routed(&cluster, state, cmd.keyless_route()).await
        }
        _ => keyed(&cluster, state, cmd).await,
    }
}

/// A reply the proxy builds once `fut` is done.
pub fn later(fut: impl std::future::Future<Output = Frame> + Send + 'static) -> Reply {
    Reply::Later(Box::pin(fut.map(Answer::Built)))
}

/// Sent to every master now (so that later commands cannot overtake it), merged when all answered.
async fn fan_out(
    cluster: Arc<Cluster>,
    cmd: Command,
    lane: Lane,
    merge: fn(Vec<Frame>) -> Frame,
) -> Reply {
    match broadcast::send_masters(&cluster, cmd.payload(), lane).await {
        Ok(sent) => later(async move { merge(broadcast::replies(sent).await) }),
        Err(e) => Reply::Ready(e),
    }
}

async fn routed(cluster: &Arc<Cluster>, state: &mut ClientState, route: Route) -> Reply {
    match send_in_order(cluster, state, route).await {
        Ok(inflight) => Reply::Routed(inflight),
        Err(e) => Reply::Ready(e),
    }
}

/// Sends `route`, first letting this client's earlier commands finish if the slot map changed under
/// them (see `order`). Replica reads are not ordered against writes anyway.
async fn send_in_order(
    cluster: &Arc<Cluster>,
    state: &mut ClientState,
    route: Route,
) -> Result<router::InFlight, Frame> {
    let replica_read = route.readonly && cluster.config.read_from_replicas;
    let addr = loop {
        let epoch = cluster.epoch();
        if route.slot.is_some() && !replica_read {
            state.order.before_send(epoch).await;
        }
        let addr = router::target(cluster, &route)?;
        // A map change between reading the epoch and choosing the node is seen by the next command
        // only: this one must be routed with the map it waited for.
        if cluster.epoch() == epoch {
            break addr;
        }
    };
    let conn = if route.dedicated {
        None
    } else {
        state.conns.conn(cluster, &addr, state.lane).await.ok()
    };
    Ok(router::send_to(cluster, route, state.sender(), addr, conn).await)
}

async fn keyed(cluster: &Arc<Cluster>, state: &mut ClientState, cmd: Command) -> Reply {
    let split = match multikey::split(&cmd) {
        Ok(split) => split,
        Err(e) => return Reply::Ready(e),
    };
    let Some(split) = split else {
        return match cmd.route() {
            Ok(route) => routed(cluster, state, route).await,
            Err(e) => Reply::Ready(e),
        };
    };
    let readonly = cmd.readonly();
    let mut inflight = Vec::with_capacity(split.parts.len());
    for part in &split.parts {
        let route = Route {
            payload: wire::command_bytes(&part.args),
            slot: Some(part.slot),
            readonly,
            dedicated: false,
        };
        match send_in_order(cluster, state, route).await {
            Ok(f) => inflight.push(f),
            Err(e) => return Reply::Ready(e),
        }
    }
    later(async move {
        let replies = join_all(inflight.into_iter().map(|f| f.finish())).await;
        multikey::merge(
            &split,
            replies.into_iter().map(Answer::into_frame).collect(),
        )
    })
}
