//! What happens to one client command: answered locally, queued in a transaction, fanned out to all
//! masters, split per slot, or routed to one node. Anything sent to the cluster is on the wire before
//! this returns, so the next command of the same client cannot overtake it.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use smallvec::SmallVec;
use tokio::sync::mpsc;

use crate::redis::client::auth;
use crate::redis::client::board::{ReplyBoard, Ticket};
use crate::redis::client::fifo::Progress;
use crate::redis::client::order::SlotOrder;
use crate::redis::client::output::{Charged, OutputBudget};
use crate::redis::client::registry::{flag as client_flag, Blocked, Entry};
use crate::redis::client::tracking::Mode;
use crate::redis::cluster::retry;
use crate::redis::cluster::router::{self, Route, Sender};
use crate::redis::cluster::Cluster;
use crate::redis::command::spec::{self, Kind, Local, Merge, Step};
use crate::redis::command::Command;
use crate::redis::exec::admin::{self, Plan};
use crate::redis::exec::answer::Answer;
use crate::redis::exec::broadcast;
use crate::redis::exec::info;
use crate::redis::exec::local;
use crate::redis::exec::merge::combine;
use crate::redis::exec::multikey;
use crate::redis::exec::proxy_config;
use crate::redis::exec::pubsub;
use crate::redis::exec::scan;
use crate::redis::exec::transaction::Transaction;
use crate::redis::node::pool::{Lane, LaneCache};
use crate::redis::resp::wire;
use crate::redis::resp::{Frame, Protocol};

/// A reply slot in the client's FIFO; the writer resolves them strictly in order.
pub enum Reply {
    Ready(Frame),
    /// Several frames for one command (an unsubscribe confirms each channel).
    Many(Vec<Frame>),
    /// One command on its way to a node on the client's own connection: the common case, its
    /// reply posted to the client's board.
    Posted(router::Ticketed),
    /// One command on its way to a node through the pools (see [`router::send_to`]).
    Routed(router::InFlight),
    Later(BoxFuture<'static, Answer>),
    /// Pub/sub: every frame from the channel, as the node sent it, until it closes.
    Relay(mpsc::Receiver<Charged>),
    /// Write this, then close the connection.
    Close(Frame),
    /// Resolved in order like any reply, but not written (`CLIENT REPLY OFF|SKIP`).
    Silent(Box<Reply>),
}

/// `CLIENT REPLY`: whether the client gets replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    #[default]
    On,
    Off,
    /// Set by `CLIENT REPLY SKIP`: its own reply is not sent...
    SkipThis,
    /// ... nor the next command's.
    SkipNext,
}

impl ReplyMode {
    /// Whether the reply of the command just dispatched is sent; moves SKIP along.
    pub fn sends(&mut self) -> bool {
        match *self {
            ReplyMode::On => true,
            ReplyMode::Off => false,
            ReplyMode::SkipThis => {
                *self = ReplyMode::SkipNext;
                false
            }
            ReplyMode::SkipNext => {
                *self = ReplyMode::On;
                false
            }
        }
    }
}

pub struct ClientState {
    pub id: u64,
    /// This client in the proxy's registry (CLIENT LIST/KILL).
    pub client: Arc<Entry>,
    /// Which connection of each node's pool this client uses (keeps its commands in order), in the
    /// pool of the protocol the client chose with HELLO.
    pub lane: Lane,
    pub authed: bool,
    pub reply_mode: ReplyMode,
    pub txn: Transaction,
    pub order: SlotOrder,
    /// `client_output_limit_mb`: node replies held for this client.
    pub budget: Arc<OutputBudget>,
    /// The client's lane connection of each node it talks to.
    pub conns: LaneCache,
    /// `CLIENT TRACKING ON`: how the client tracks.
    pub tracking: Option<Mode>,
    /// `CLIENT CACHING YES|NO`, for the next command only.
    pub caching: Option<bool>,
    /// Where the nodes post the replies of the client's routed commands, and the next ticket.
    pub board: Arc<ReplyBoard>,
    tickets: u64,
}

impl ClientState {
    pub fn protocol(&self) -> Protocol {
        self.lane.protocol
    }

    /// Switches the protocol of the replies from now on, and the pools its commands use.
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.lane.protocol = protocol;
        self.client.set_resp(match protocol {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        });
    }

    /// A ticket for the next reply posted to the client's board.
    pub fn ticket(&mut self) -> Ticket {
        self.tickets += 1;
        Ticket::new(self.board.clone(), self.tickets)
    }

    /// Who sends this client's commands, for the router.
    pub fn sender(&self) -> Sender {
        Sender {
            lane: self.lane,
            budget: Some(self.budget.clone()),
        }
    }

    pub fn new(
        client: Arc<Entry>,
        cluster: &Cluster,
        completed: Progress,
        budget: Arc<OutputBudget>,
        board: Arc<ReplyBoard>,
    ) -> ClientState {
        let id = client.id;
        ClientState {
            budget,
            conns: LaneCache::default(),
            order: SlotOrder::new(completed),
            id,
            client,
            lane: cluster.workers.lane(id, cluster.config.pool_size),
            authed: !auth::required(&cluster.config),
            reply_mode: ReplyMode::On,
            txn: Transaction::default(),
            tracking: None,
            caching: None,
            board,
            tickets: 0,
        }
    }
}

pub async fn dispatch(cluster: &Arc<Cluster>, state: &mut ClientState, cmd: Command) -> Reply {
    cluster.workers.count_command(cmd.spec);
    let kind = cmd.kind();
    if !state.authed && !kind.is_some_and(Kind::before_auth) {
        return Reply::Ready(auth::noauth());
    }
    if state.txn.in_multi() && !kind.is_some_and(Kind::outside_transaction) {
        return Reply::Ready(state.txn.queue(&cmd));
    }
    let Some(kind) = kind else {
        return Reply::Ready(spec::unknown_command(cmd.args()));
    };
    if let Err(e) = cmd.check_arity() {
        return Reply::Ready(e);
    }
    // CLIENT is never held, so that CLIENT UNPAUSE gets through. A held client counts as blocked
    // (`blocked_clients`, flag `b`), as Redis counts a paused one.
    let write = may_write(kind, &cmd);
    if kind != Kind::Local(Local::Client) && cluster.pause.holds(write) {
        let _blocked = Blocked::new(cluster, &state.client);
        cluster.pause.wait(write).await;
    }
    let lane = state.lane;
    match kind {
        Kind::Keyed => match cmd.into_route() {
            Ok(route) => routed(cluster, state, route).await,
            Err(e) => Reply::Ready(e),
        },
        Kind::Split(merge) => split(cluster, state, cmd, merge).await,
        Kind::AnyMaster => routed(cluster, state, cmd.keyless_route()).await,
        Kind::PubSub => routed(cluster, state, pubsub::home_route(&cmd)).await,
        Kind::FanOut(merge) => fan_out(cluster.clone(), cmd, lane, merge).await,
        Kind::Local(local) => local::answer(cluster, state, &cmd, local),
        Kind::Admin => admin(cluster, state, cmd).await,
        Kind::Scan => later(scan::scan(cluster.clone(), cmd, lane)),
        Kind::Info => later(info::info(cluster.clone(), cmd.into_args(), lane)),
        Kind::Transaction(step) => {
            let reply = state
                .txn
                .handle(cluster, &cmd, step, lane, &mut state.order)
                .await;
            let multi = state.txn.in_multi();
            state.client.set_flag(client_flag::MULTI, multi);
            reply
        }
        // The session serves subscriptions; what reaches here is an unsubscribe from a client
        // that has none.
        Kind::Subscription(_) => pubsub::unsubscribed_reply(&cmd),
        Kind::Unsupported(why) => Reply::Ready(refused(&cmd, why)),
    }
}

/// What `CLIENT PAUSE WRITE` holds: commands that may change data (Redis' write and may-replicate
/// commands, EVAL and PUBLISH included), and EXEC.
fn may_write(kind: Kind, cmd: &Command) -> bool {
    match kind {
        Kind::Keyed | Kind::Split(_) | Kind::AnyMaster | Kind::FanOut(_) => {
            !cmd.readonly() || cmd.has_flag(spec::flag::MAY_WRITE)
        }
        Kind::Admin | Kind::PubSub => cmd.has_flag(spec::flag::WRITE),
        Kind::Transaction(step) => step == Step::Exec,
        _ => false,
    }
}

/// Administration: where the subcommand's entry says.
async fn admin(cluster: &Arc<Cluster>, state: &mut ClientState, cmd: Command) -> Reply {
    match admin::plan(cluster, &cmd) {
        Plan::Route(route) => routed(cluster, state, route).await,
        Plan::ConfigGet(route) => match pooled_in_order(cluster, state, route).await {
            Ok(inflight) => {
                let cluster = cluster.clone();
                later(async move {
                    let reply = inflight.finish().await.into_frame();
                    proxy_config::patch_get(&cluster, reply)
                })
            }
            Err(e) => Reply::Ready(e),
        },
        Plan::Each { nodes, merge } => admin::each(cluster, &cmd, nodes, merge, state.lane).await,
        Plan::EveryNode(merge) => admin::every_node(cluster, &cmd, merge, state.lane).await,
        Plan::Answer(frame) => Reply::Ready(frame),
    }
}

fn refused(cmd: &Command, why: &str) -> Frame {
    wire::error(format!(
        "ERR Puerta: '{}' is not supported through the proxy: {why}",
        cmd.name.to_lowercase()
    ))
}

/// A reply the proxy builds once `fut` is done.
pub fn later(fut: impl std::future::Future<Output = Frame> + Send + 'static) -> Reply {
    Reply::Later(Box::pin(fut.map(Answer::Built)))
}

/// Sent to every master now (so that later commands cannot overtake it), merged when all answered.
async fn fan_out(cluster: Arc<Cluster>, cmd: Command, lane: Lane, merge: Merge) -> Reply {
    match broadcast::send_masters(&cluster, cmd.payload(), lane, cmd.readonly()).await {
        Ok(sent) => later(async move { combine(merge, broadcast::replies(&cluster, sent).await) }),
        Err(e) => Reply::Ready(e),
    }
}

async fn routed(cluster: &Arc<Cluster>, state: &mut ClientState, route: Route) -> Reply {
    let blocking = route.dedicated;
    match send_in_order(cluster, state, route).await {
        Ok(Out::Posted(ticketed)) => Reply::Posted(ticketed),
        Ok(Out::Pooled(inflight)) if blocking => {
            // Shown as blocked (CLIENT LIST, INFO blocked_clients) until the reply is in.
            let blocked = Blocked::new(cluster, &state.client);
            Reply::Later(Box::pin(async move {
                let answer = inflight.finish().await;
                drop(blocked);
                answer
            }))
        }
        Ok(Out::Pooled(inflight)) => Reply::Routed(inflight),
        Err(e) => Reply::Ready(e),
    }
}

/// How a routed command went out.
enum Out {
    /// On the client's own connection to the node, its reply posted to the client's board.
    Posted(router::Ticketed),
    /// Through the pools: a blocking command, or a node the client has no connection to at hand.
    Pooled(router::InFlight),
}

/// Sends `route` (see [`in_order`]), on the client's own connection to its node when it has one.
async fn send_in_order(
    cluster: &Arc<Cluster>,
    state: &mut ClientState,
    route: Route,
) -> Result<Out, Frame> {
    let addr = in_order(cluster, state, &route).await?;
    if !route.dedicated {
        if let Ok(conn) = state.conns.conn(cluster, &addr, state.lane).await {
            let ticket = state.ticket();
            let (lane, budget) = (state.lane, &state.budget);
            return Ok(Out::Posted(router::post_to(
                &conn, route, lane, budget, addr, ticket,
            )));
        }
    }
    Ok(Out::Pooled(
        router::send_to(cluster, route, state.sender(), addr).await,
    ))
}

/// Sends `route` (see [`in_order`]) through the pools, for a reply the proxy itself reads.
async fn pooled_in_order(
    cluster: &Arc<Cluster>,
    state: &mut ClientState,
    route: Route,
) -> Result<router::InFlight, Frame> {
    let addr = in_order(cluster, state, &route).await?;
    Ok(router::send_to(cluster, route, state.sender(), addr).await)
}

/// The node for `route`, once this client's earlier commands finished if the slot map changed
/// under them (see `order`). Replica reads are not ordered against writes anyway.
async fn in_order(
    cluster: &Arc<Cluster>,
    state: &mut ClientState,
    route: &Route,
) -> Result<Arc<str>, Frame> {
    let replica_read = route.readonly && cluster.config.read_from_replicas;
    let target = || router::target(cluster, route);
    match route.slot.is_some() && !replica_read {
        true => state.order.route(cluster, target).await,
        false => target(),
    }
}

/// A command whose keys may span slots: one part per slot, merged by `merge`. The parts a node
/// owns go to it as one request (one write, one reply slot); a part whose reply is a redirect is
/// retried alone.
async fn split(
    cluster: &Arc<Cluster>,
    state: &mut ClientState,
    cmd: Command,
    merge: Merge,
) -> Reply {
    let split = match multikey::split(&cmd, merge) {
        Ok(split) => split,
        Err(e) => return Reply::Ready(e),
    };
    let Some(split) = split else {
        return match cmd.into_route() {
            Ok(route) => routed(cluster, state, route).await,
            Err(e) => Reply::Ready(e),
        };
    };
    let readonly = cmd.readonly();
    let owners = match owners(cluster, state, &split, readonly).await {
        Ok(owners) => owners,
        Err(e) => return Reply::Ready(e),
    };
    let sender = state.sender();
    let sent = send_parts(cluster, state, &split, owners, readonly).await;
    let cluster = cluster.clone();
    let board = state.board.clone();
    Reply::Later(Box::pin(async move {
        // Every part is on the wire already: waiting for them in turn takes as long as for all.
        let mut answers = Vec::with_capacity(split.parts.len());
        for sent in sent {
            match sent {
                Sent::One(inflight) => answers.push(inflight.answer().await),
                Sent::Batch(batch) => {
                    let first = answers.len();
                    let route_of = |i| part_route(&split, first + i, readonly);
                    batch
                        .answers(&board, &cluster, route_of, &sender, &mut answers)
                        .await;
                }
            }
        }
        multikey::merge(&split, answers, sender.budget.as_ref())
    }))
}

/// The owners of a split's parts, as runs of neighbouring parts with one owner (parts are in slot
/// order and a node owns ranges of slots, so there are about as many runs as nodes): `(node,
/// number of parts)`.
type Owners = SmallVec<[(Arc<str>, usize); 4]>;

/// A split's parts on their way: a request per run, inline up to four.
type SentParts = SmallVec<[Sent; 4]>;

/// The owners of the parts, all read from one slot map (see `order`).
async fn owners(
    cluster: &Arc<Cluster>,
    state: &mut ClientState,
    split: &multikey::Split,
    readonly: bool,
) -> Result<Owners, Frame> {
    let owners = || {
        let mut owners = Owners::new();
        let slots = split.parts.iter().map(|part| part.slot);
        retry::each_node_for(cluster, slots, readonly, |node| match owners.last_mut() {
            Some((last, parts)) if last == node => *parts += 1,
            _ => owners.push((node.clone(), 1)),
        })?;
        Ok(owners)
    };
    match readonly && cluster.config.read_from_replicas {
        true => owners(),
        false => state.order.route(cluster, owners).await,
    }
}

/// Puts every part on the wire: each run of neighbouring parts with one owner as one request.
async fn send_parts(
    cluster: &Arc<Cluster>,
    state: &mut ClientState,
    split: &multikey::Split,
    owners: Owners,
    readonly: bool,
) -> SentParts {
    let sender = state.sender();
    let mut sent = SentParts::new();
    let mut first = 0;
    for (addr, count) in owners {
        let parts = first..first + count;
        first = parts.end;
        match state.conns.conn(cluster, &addr, state.lane).await {
            Ok(conn) => {
                let payload = split.payload_of(parts);
                let ticket = state.ticket();
                let batch = router::send_batch(&conn, addr, payload, count, &sender, ticket);
                sent.push(Sent::Batch(batch));
            }
            // The router's own path, which waits for a failed node's successor.
            Err(_) => {
                for i in parts {
                    let route = part_route(split, i, readonly);
                    let inflight = router::send_to(cluster, route, sender.clone(), addr.clone());
                    sent.push(Sent::One(Box::new(inflight.await)));
                }
            }
        }
    }
    sent
}

fn part_route(split: &multikey::Split, i: usize, readonly: bool) -> Route {
    Route {
        payload: split.payload(i),
        slot: Some(split.parts[i].slot),
        readonly,
        dedicated: false,
        scripted: false,
    }
}

/// A split command's parts on their way: a node's parts together, or one alone (rare: its node's
/// connection had failed; boxed, so that the common case stays small).
enum Sent {
    Batch(router::Batch),
    One(Box<router::InFlight>),
}
