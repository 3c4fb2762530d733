//! A RESP3 client's subscriptions: one `HELLO 3` connection for channels and patterns (any master
//! will do: Redis Cluster delivers PUBLISH on every node), and one per node that owns shard channels
//! the client subscribed to (SSUBSCRIBE must reach the slot's master). Each connection is dropped
//! once its own subscription count reaches zero.

use std::sync::Arc;

use futures_util::future::select_all;
use tokio::sync::mpsc;

use crate::redis::client::feed::FeedSender;
use crate::redis::client::output::{Charged, OutputBudget};
use crate::redis::cluster::Cluster;
use crate::redis::command::Command;
use crate::redis::exec::pubsub::{self, PubSub};
use crate::redis::resp::Frame;

/// What a subscribed connection carries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// Channels and patterns.
    Global,
    /// Shard channels of the master at this address.
    Shard(Arc<str>),
}

#[derive(Default)]
pub struct Subscriptions {
    conns: Vec<(Target, PubSub)>,
}

/// A command sent on one subscribed connection: its reply slot, and what to wait for afterwards.
pub struct Sent {
    answers: mpsc::Receiver<Charged>,
    target: Target,
    seq: u64,
}

impl Subscriptions {
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn clear(&mut self) {
        self.conns.clear();
    }

    /// The connections `cmd` goes to; empty for an unsubscribe from something never subscribed,
    /// which is answered locally.
    fn targets(&self, cluster: &Cluster, cmd: &Command) -> Result<Vec<Target>, Frame> {
        let sharded = cmd.subscription().is_some_and(|s| s.sharded);
        let target = match sharded {
            false => Target::Global,
            true if cmd.args().len() == 1 => {
                // SUNSUBSCRIBE without channels: every shard connection.
                return Ok(self
                    .conns
                    .iter()
                    .filter(|(t, _)| *t != Target::Global)
                    .map(|(t, _)| t.clone())
                    .collect());
            }
            true => Target::Shard(pubsub::node_for(cluster, cmd)?),
        };
        let opens = cmd.subscription().is_some_and(|s| !s.unsubscribe);
        Ok(match opens || self.position(&target).is_some() {
            true => vec![target],
            false => Vec::new(),
        })
    }

    fn position(&self, target: &Target) -> Option<usize> {
        self.conns.iter().position(|(t, _)| t == target)
    }

    /// Sends `cmd` on each connection it concerns, opening them as needed, in a stable order; what
    /// they relay goes to `pushes`, charged to `budget`. An empty result means the caller answers
    /// it locally.
    pub async fn send(
        &mut self,
        cluster: &Arc<Cluster>,
        cmd: &Command,
        pushes: &FeedSender<Charged>,
        budget: &Arc<OutputBudget>,
    ) -> Result<Vec<Sent>, SubscriptionError> {
        let mut sent = Vec::new();
        for target in self
            .targets(cluster, cmd)
            .map_err(SubscriptionError::Refused)?
        {
            let index = match self.position(&target) {
                Some(index) => index,
                None => {
                    let addr = match &target {
                        Target::Global => pubsub::node_for(cluster, cmd),
                        Target::Shard(addr) => Ok(addr.clone()),
                    }
                    .map_err(SubscriptionError::Refused)?;
                    let opened = pubsub::start_resp3(cluster, addr, pushes.clone(), budget)
                        .await
                        .map_err(SubscriptionError::Refused)?;
                    self.conns.push((target.clone(), opened));
                    self.conns.len() - 1
                }
            };
            let (answers, seq) = self.conns[index]
                .1
                .command(cmd)
                .await
                .map_err(SubscriptionError::Lost)?;
            sent.push(Sent {
                answers,
                target,
                seq,
            });
        }
        Ok(sent)
    }

    /// Waits until the node answered the command sent as `sent`; drops the connection if that left
    /// it without subscriptions.
    pub async fn settle(&mut self, sent: &SentMark) -> Result<(), String> {
        let Some(index) = self.position(&sent.target) else {
            return Ok(());
        };
        if self.conns[index].1.subscriptions_after(sent.seq).await? == 0 {
            self.conns.remove(index);
        }
        Ok(())
    }

    /// Resolves when any subscribed connection is gone.
    pub async fn lost(&self) {
        if self.conns.is_empty() {
            return std::future::pending().await;
        }
        select_all(self.conns.iter().map(|(_, p)| Box::pin(p.lost()))).await;
    }
}

/// What [`Subscriptions::settle`] needs of a [`Sent`] once its slot is queued.
pub struct SentMark {
    target: Target,
    seq: u64,
}

impl Sent {
    pub fn split(self) -> (mpsc::Receiver<Charged>, SentMark) {
        let mark = SentMark {
            target: self.target,
            seq: self.seq,
        };
        (self.answers, mark)
    }
}

#[derive(Debug)]
pub enum SubscriptionError {
    /// An answer for the client (no node known, connect failed); the connection goes on.
    Refused(Frame),
    /// A subscribed connection broke mid-command: the client's connection is closed.
    Lost(String),
}
