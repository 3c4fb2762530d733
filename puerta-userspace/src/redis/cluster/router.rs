//! Command → slot → node, and the retries of [`crate::redis::cluster::retry`] when the node says
//! "not here" or its connection fails (ASK is followed with ASKING and the command in one write).
//!
//! Sending is split from waiting so that a session can put a command on the wire before it parses
//! the next one: commands of one client reach each node in the order sent. A command on the
//! client's own connection ([`post_to`]) has its reply posted to the client's board and is
//! [`Ticketed::settle`]d by its writer; one through the pools ([`send_to`]) is an [`InFlight`], which
//! is also what a ticketed command becomes when its reply needs the retry policy.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::redis::client::board::{self, ReplyBoard, Ticket};
use crate::redis::client::output::{Charged, OutputBudget};
use crate::redis::cluster::redirect::classify_wire;
use crate::redis::cluster::retry::{self, Failure, Retry, Target};
use crate::redis::cluster::Cluster;
use crate::redis::exec::answer::Answer;
use crate::redis::node::backend::{BackendConn, BackendError, NodeReply, NodeResult};
use crate::redis::node::pool::Lane;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

/// A command ready for the cluster.
#[derive(Debug, Clone)]
pub struct Route {
    pub payload: Bytes,
    /// `None` for commands without keys: any master serves them.
    pub slot: Option<u16>,
    /// Safe to resend after a lost connection, and eligible for replicas.
    pub readonly: bool,
    /// Runs on its own connection (blocking commands) instead of the shared pool.
    pub dedicated: bool,
    /// The client's code (`flag::SCRIPT`): its error replies are not trusted as redirects.
    pub scripted: bool,
}

/// Where a sent command's reply will come from. Boxed: it travels by value from the router
/// through dispatch and the client's reply FIFO to its writer, and at 176 bytes each of those
/// moves was a `memcpy` (a ninth of the proxy's instructions per GET at -P 16, under callgrind).
pub struct InFlight(Box<Flight>);

struct Flight {
    cluster: Arc<Cluster>,
    route: Route,
    sender: Sender,
    attempt: Attempt,
}

/// Who sends: the lane of the client's pools, and the budget its replies count against.
#[derive(Clone)]
pub struct Sender {
    pub lane: Lane,
    pub budget: Option<Arc<OutputBudget>>,
}

struct Attempt {
    addr: Arc<str>,
    reply: Result<oneshot::Receiver<NodeResult>, BackendError>,
    /// The reply, once taken from `reply` by [`InFlight::ready_answer`] and found to need the retry
    /// policy after all.
    got: Option<Result<Charged, BackendError>>,
    /// Keeps a dedicated connection open until its reply is in.
    _conn: Option<BackendConn>,
}

/// Puts `route` on the wire to `addr` (from [`target`]), through the pools: the way of blocking
/// commands, of a node the client has no connection to at hand, and of every retry.
pub async fn send_to(
    cluster: &Arc<Cluster>,
    route: Route,
    sender: Sender,
    addr: Arc<str>,
) -> InFlight {
    let attempt = attempt(cluster, &route, &sender, addr, false).await;
    InFlight::new(cluster, route, sender, attempt)
}

/// A command on the client's own connection to its node, its reply to be posted on the client's
/// board: the common case, with nothing allocated. Carries what the client's writer needs to take
/// the reply in its turn and, only for a redirect or a failed connection, to retry it.
pub struct Ticketed {
    number: u64,
    addr: Arc<str>,
    route: Route,
    lane: Lane,
}

/// Puts `route` on `conn` (the client's pooled connection of `lane` to `addr`), its reply counted
/// against `budget` and posted under `ticket`.
pub fn post_to(
    conn: &BackendConn,
    route: Route,
    lane: Lane,
    budget: &Arc<OutputBudget>,
    addr: Arc<str>,
    ticket: Ticket,
) -> Ticketed {
    let number = ticket.number();
    conn.post_for(route.payload.clone(), 1, Some(budget), ticket);
    Ticketed {
        number,
        addr,
        route,
        lane,
    }
}

impl Ticketed {
    /// The ticket its reply is posted under.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The final answer if what was posted is one (no redirect, no error), else the command in
    /// flight again, for the retry policy ([`InFlight::finish`]).
    pub fn settle(
        self,
        posted: board::Posted,
        cluster: &Arc<Cluster>,
        budget: &Arc<OutputBudget>,
    ) -> Result<Answer, InFlight> {
        let outcome = match posted {
            Some(result) => last_reply(result, &self.addr),
            None => Err(lost(&self.addr)),
        };
        if let Ok(raw) = &outcome {
            if classify_wire(raw.bytes(), &self.addr).is_none() {
                return Ok(final_answer(outcome));
            }
        }
        let sender = Sender {
            lane: self.lane,
            budget: Some(budget.clone()),
        };
        Err(InFlight::resume(
            cluster, self.route, sender, self.addr, outcome,
        ))
    }
}

/// Several routes for one node sent as one request (a split command's parts that node owns): one
/// write and one reply slot for all of them, their replies matched to them in order and posted
/// together to the client's board.
pub struct Batch {
    addr: Arc<str>,
    /// The ticket the replies are posted under.
    number: u64,
    count: usize,
}

/// Puts `count` commands, whose wire forms follow each other in `payload`, on `conn` to `addr`,
/// their replies posted under `ticket`.
pub fn send_batch(
    conn: &BackendConn,
    addr: Arc<str>,
    payload: Bytes,
    count: usize,
    sender: &Sender,
    ticket: Ticket,
) -> Batch {
    let number = ticket.number();
    conn.post_for(payload, count, sender.budget.as_ref(), ticket);
    Batch {
        addr,
        number,
        count,
    }
}

impl Batch {
    pub fn count(&self) -> usize {
        self.count
    }

    /// The final answer of each of the batch's commands, in order, appended to `out`. A reply
    /// that is a redirect, or a lost connection, goes through the retry policy for its command
    /// alone, as it would have sent by itself: `route_of(i)` builds the `i`th command's route,
    /// only then. Only the client's writer may wait on its `board`.
    pub async fn answers(
        self,
        board: &ReplyBoard,
        cluster: &Arc<Cluster>,
        route_of: impl Fn(usize) -> Route,
        sender: &Sender,
        out: &mut Vec<Answer>,
    ) {
        let addr = self.addr;
        let posted = board.wait(self.number).await;
        let result = posted.unwrap_or_else(|| Err(lost(&addr)));
        let mut many = Vec::new().into_iter();
        let mut one = None;
        let mut failed = None;
        match result {
            Ok(NodeReply::Many(raws)) if raws.len() == self.count => many = raws.into_iter(),
            Ok(NodeReply::One(raw)) if self.count == 1 => one = Some(raw),
            Ok(_) => failed = Some(lost(&addr)),
            Err(e) => failed = Some(e),
        }
        for i in 0..self.count {
            let outcome = match (one.take().or_else(|| many.next()), &failed) {
                (Some(raw), _) => Ok(raw),
                (None, Some(e)) => Err(e.clone()),
                (None, None) => Err(lost(&addr)),
            };
            if let Ok(raw) = &outcome {
                if classify_wire(raw.bytes(), &addr).is_none() {
                    out.extend(outcome.ok().map(Answer::Node));
                    continue;
                }
            }
            let retried =
                InFlight::resume(cluster, route_of(i), sender.clone(), addr.clone(), outcome);
            out.push(retried.finish().await);
        }
    }
}

/// The node `route` goes to now.
pub fn target(cluster: &Cluster, route: &Route) -> Result<Arc<str>, Frame> {
    retry::node_for(cluster, route.slot, route.readonly)
}

async fn attempt(
    cluster: &Cluster,
    route: &Route,
    sender: &Sender,
    addr: Arc<str>,
    asking: bool,
) -> Attempt {
    let payload = if asking {
        let mut p = BytesMut::with_capacity(route.payload.len() + 20);
        crate::redis::resp::encode_command(&[b"ASKING"], &mut p);
        p.extend_from_slice(&route.payload);
        p.freeze()
    } else {
        route.payload.clone()
    };
    let replies = if asking { 2 } else { 1 };
    let pool = cluster.pool(&addr, sender.lane.protocol);
    let budget = sender.budget.as_ref();
    let (reply, conn) = if route.dedicated {
        match pool.blocking().await {
            Ok(conn) => {
                // The node accepts a fresh connection in its own time, so a command written on
                // it can run after a later command of another client (an XADD meant to wake
                // this XREAD BLOCK $). A PING in the same write is answered only once the node
                // read the connection, and so ran the command behind it: the command counts as
                // sent (and the client as blocked) from then.
                let ping = conn.send(wire::command_bytes(&[&b"PING"[..]]), 1);
                let reply = conn.send_for(payload, replies, budget);
                let _ = ping.await;
                (Ok(reply), Some(conn))
            }
            Err(e) => (Err(e), None),
        }
    } else {
        match pool.conn(sender.lane).await {
            Ok(conn) => (Ok(conn.send_for(payload, replies, budget)), None),
            Err(e) => (Err(e), None),
        }
    };
    Attempt {
        addr,
        reply,
        got: None,
        _conn: conn,
    }
}

impl InFlight {
    fn new(cluster: &Arc<Cluster>, route: Route, sender: Sender, attempt: Attempt) -> InFlight {
        InFlight(Box::new(Flight {
            cluster: cluster.clone(),
            route,
            sender,
            attempt,
        }))
    }

    /// A command whose reply from `addr` was taken elsewhere (a batch's, a posted one) and needs
    /// the retry policy: in flight again, with that reply as its attempt's outcome.
    fn resume(
        cluster: &Arc<Cluster>,
        route: Route,
        sender: Sender,
        addr: Arc<str>,
        outcome: Result<Charged, BackendError>,
    ) -> InFlight {
        let attempt = Attempt {
            reply: Err(lost(&addr)),
            addr,
            got: Some(outcome),
            _conn: None,
        };
        InFlight::new(cluster, route, sender, attempt)
    }

    /// The answer, if the reply is in and final (no redirect, no error): the common case, served
    /// without building [`InFlight::finish`]'s future, whose retry state is most of its size.
    pub fn ready_answer(&mut self) -> Option<Answer> {
        if self.0.attempt.got.is_none() {
            let rx = self.0.attempt.reply.as_mut().ok()?;
            let result = match rx.try_recv() {
                Ok(result) => result,
                Err(oneshot::error::TryRecvError::Empty) => return None,
                Err(oneshot::error::TryRecvError::Closed) => Err(lost(&self.0.attempt.addr)),
            };
            self.0.attempt.got = Some(last_reply(result, &self.0.attempt.addr));
        }
        match &self.0.attempt.got {
            Some(Ok(raw)) if classify_wire(raw.bytes(), &self.0.attempt.addr).is_none() => self
                .0
                .attempt
                .got
                .take()
                .and_then(Result::ok)
                .map(Answer::Node),
            _ => None,
        }
    }

    /// Waits until the first reply is in (or its connection failed), without acting on it.
    pub async fn first_reply(&mut self) {
        if self.0.attempt.got.is_some() {
            return;
        }
        if let Ok(rx) = &mut self.0.attempt.reply {
            let result = rx.await.unwrap_or_else(|_| Err(lost(&self.0.attempt.addr)));
            self.0.attempt.got = Some(last_reply(result, &self.0.attempt.addr));
        }
    }

    /// The final answer: at once when the reply is in and needs nothing more, else after the
    /// retry policy ran (see [`InFlight::ready_answer`]).
    pub async fn answer(mut self) -> Answer {
        self.first_reply().await;
        match self.ready_answer() {
            Some(answer) => answer,
            None => self.finish().await,
        }
    }

    /// Waits for the reply, following the retry policy until a final answer. Boxed here, for
    /// every caller: the policy's state (backoff, refresh waits, a new attempt) is large, and
    /// inline it made every future that may await it that much bigger (a split's reply future
    /// was 3 KiB, past the allocator's per-thread cache, so each split took malloc's slow path;
    /// every client's writer task carried it too), for a path only redirects, failures and
    /// blocking commands take.
    pub fn finish(self) -> Pin<Box<dyn Future<Output = Answer> + Send>> {
        Box::pin(self.follow())
    }

    async fn follow(mut self) -> Answer {
        let mut retry = None;
        loop {
            let outcome = wait(&mut self.0.attempt).await;
            let failure = match &outcome {
                Ok(raw) => match classify_wire(raw.bytes(), &self.0.attempt.addr) {
                    None => return final_answer(outcome),
                    Some(redirect) => Failure::Redirect(redirect),
                },
                Err(e) => Failure::Backend(e),
            };
            let retry = retry.get_or_insert_with(|| {
                let target = Target::Slot {
                    slot: self.0.route.slot,
                    readonly: self.0.route.readonly,
                };
                Retry::new(target, self.0.route.readonly, true).scripted(self.0.route.scripted)
            });
            let Some(next) = retry.next(&self.0.cluster, failure).await else {
                return final_answer(outcome);
            };
            self.0.attempt = attempt(
                &self.0.cluster,
                &self.0.route,
                &self.0.sender,
                next.addr,
                next.asking,
            )
            .await;
        }
    }
}

/// The command's reply (after ASKING, the second of the two).
async fn wait(attempt: &mut Attempt) -> Result<Charged, BackendError> {
    if let Some(got) = attempt.got.take() {
        return got;
    }
    let rx = match &mut attempt.reply {
        Ok(rx) => rx,
        Err(e) => return Err(e.clone()),
    };
    let result = rx.await.unwrap_or_else(|_| Err(lost(&attempt.addr)));
    last_reply(result, &attempt.addr)
}

/// The command's own reply of a node's answer (after ASKING, the second of the two).
fn last_reply(result: NodeResult, addr: &Arc<str>) -> Result<Charged, BackendError> {
    result?.into_last().ok_or_else(|| lost(addr))
}

fn lost(addr: &Arc<str>) -> BackendError {
    BackendError::Lost {
        addr: addr.clone(),
        reason: "connection task ended".into(),
    }
}

fn final_answer(outcome: Result<Charged, BackendError>) -> Answer {
    match outcome {
        Ok(raw) => Answer::Node(raw),
        Err(e) => Answer::Built(wire::error(format!("ERR Puerta: {e}"))),
    }
}
