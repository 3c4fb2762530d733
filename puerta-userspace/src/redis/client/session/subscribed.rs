//! The pub/sub side of a client session: RESP2's one subscribed connection that takes over the
//! client's commands, and RESP3's subscriptions that run beside its ordinary commands.

use super::{Flow, Reader};
use crate::redis::cluster::Cluster;
use crate::redis::command::spec::{Kind, Local};
use crate::redis::command::Command;
use crate::redis::exec::dispatch::Reply;
use crate::redis::exec::pubsub::{self, PubSub};
use crate::redis::exec::subscriptions::{SubscriptionError, Subscriptions};
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

impl Reader {
    /// RESP2: the first subscribe; from here on the client's commands go to its subscribed connection.
    pub(super) async fn subscribe(&mut self, cmd: Command) -> Reply {
        if let Err(e) = self.subscription_allowed(&cmd) {
            return Reply::Ready(e);
        }
        match pubsub::start(&self.cluster, &cmd, &self.state.budget).await {
            Ok((pubsub, frames)) => {
                self.pubsub = Some(pubsub);
                Reply::Relay(frames)
            }
            Err(e) => Reply::Ready(e),
        }
    }

    /// RESP3: a (un)subscribe command on the subscribed connection(s) it concerns, opened as needed.
    /// Its confirmations are its reply; the reader waits for them only to learn which connections
    /// still have subscriptions.
    pub(super) async fn resp3_subscription(&mut self, cmd: Command) -> Flow {
        if let Err(e) = self.subscription_allowed(&cmd) {
            return self.queue(Reply::Ready(e)).await;
        }
        let sent = match self
            .subscriptions
            .send(&self.cluster, &cmd, &self.pushes, &self.state.budget)
            .await
        {
            Ok(sent) => sent,
            Err(SubscriptionError::Refused(e)) => return self.queue(Reply::Ready(e)).await,
            Err(SubscriptionError::Lost(e)) => return self.pubsub_failed(e).await,
        };
        if sent.is_empty() {
            let reply = pubsub::unsubscribed_reply(&cmd);
            return self.queue(reply).await;
        }
        let mut marks = Vec::with_capacity(sent.len());
        for one in sent {
            let (answers, mark) = one.split();
            if let Flow::Stop = self.queue(Reply::Relay(answers)).await {
                return Flow::Stop;
            }
            marks.push(mark);
        }
        for mark in marks {
            if let Err(e) = self.subscriptions.settle(&mark).await {
                return self.pubsub_failed(e).await;
            }
        }
        Flow::Continue
    }

    /// Whether any subscription (of either protocol) is open.
    pub(super) fn subscribed(&self) -> bool {
        self.pubsub.is_some() || !self.subscriptions.is_empty()
    }

    async fn pubsub_failed(&mut self, e: String) -> Flow {
        self.pubsub = None;
        self.subscriptions.clear();
        let msg = format!("ERR Puerta: pub/sub connection failed: {e}");
        let _ = self.send(Reply::Close(wire::error(msg))).await;
        Flow::Stop
    }

    /// What Redis checks before subscribing: arity, and one slot for SSUBSCRIBE's shard channels.
    fn subscription_allowed(&self, cmd: &Command) -> Result<(), Frame> {
        cmd.check_arity()?;
        if cmd
            .subscription()
            .is_some_and(|s| s.sharded && !s.unsubscribe)
        {
            cmd.slot()?;
        }
        Ok(())
    }

    pub(super) async fn in_pubsub(&mut self, cmd: Command) -> Flow {
        if cmd.kind() == Some(Kind::Local(Local::Quit)) {
            self.pubsub = None;
            let _ = self.send(Reply::Close(wire::ok())).await;
            return Flow::Stop;
        }
        let Some(pubsub) = self.pubsub.as_mut() else {
            return Flow::Continue;
        };
        match pubsub.forward(&cmd).await {
            Ok(true) => Flow::Continue,
            Ok(false) => {
                // Closing our side ends the relay, which lets the writer move past it.
                self.pubsub = None;
                Flow::Continue
            }
            Err(e) => self.pubsub_failed(e).await,
        }
    }
}

/// Subscribed clients are silent by design, so the idle timeout does not apply to them.
pub(super) fn idle_limit(cluster: &Cluster, subscribed: bool) -> Option<std::time::Duration> {
    match subscribed {
        true => None,
        false => cluster.config.client_idle_timeout,
    }
}

pub(super) async fn lost(pubsub: &Option<PubSub>, subscriptions: &Subscriptions) {
    match pubsub {
        Some(p) => p.lost().await,
        None => subscriptions.lost().await,
    }
}
