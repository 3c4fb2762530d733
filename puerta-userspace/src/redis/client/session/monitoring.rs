//! A client in MONITOR mode: it gets every command of every client, and like a Redis monitor (a
//! replica to Redis) it may not touch the keyspace itself.

use super::{Flow, Reader};
use crate::redis::command::spec::Kind;
use crate::redis::command::Command;
use crate::redis::exec::dispatch::Reply;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

impl Reader {
    /// MONITOR: `+OK`, then the feed. The feed starts once the OK is out, so that no line can come
    /// before it.
    pub(super) async fn monitor(&mut self) -> Flow {
        if let Flow::Stop = self.queue(Reply::Ready(wire::ok())).await {
            return Flow::Stop;
        }
        if self.monitoring.is_none() {
            self.state.order.all_answered().await;
            self.monitoring = Some(self.cluster.monitors.add(
                &self.state.client,
                &self.state.budget,
                self.monitor_lines.clone(),
            ));
        }
        Flow::Continue
    }

    /// Redis' answer to a monitor that sends a command on the data.
    pub(super) fn refused_while_monitoring(&self, cmd: &Command) -> Option<Frame> {
        let keyspace = matches!(
            cmd.kind(),
            Some(
                Kind::Keyed
                    | Kind::Split(_)
                    | Kind::AnyMaster
                    | Kind::PubSub
                    | Kind::FanOut(_)
                    | Kind::Scan
                    | Kind::Transaction(_)
                    | Kind::Subscription(_)
            )
        );
        (self.monitoring.is_some() && keyspace)
            .then(|| wire::error("ERR Replica can't interact with the keyspace"))
    }
}
