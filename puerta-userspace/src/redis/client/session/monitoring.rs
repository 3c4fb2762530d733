//! A client in MONITOR mode: it gets every command of every client, and like a Redis monitor (a
//! replica to Redis) it may not touch the keyspace itself.

use super::{Flow, Reader};
use crate::redis::command::spec::Kind;
use crate::redis::command::Command;
use crate::redis::exec::answer::Answer;
use crate::redis::exec::dispatch::Reply;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

impl Reader {
    /// MONITOR: `+OK`, then the feed. The client is a monitor from here on (its later keyspace
    /// commands are refused), and the feed starts as the writer puts the OK in its turn, so that
    /// no line can come before it and none is missed after it.
    pub(super) async fn monitor(&mut self) -> Flow {
        if self.monitoring.is_some() {
            return self.queue(Reply::Ready(wire::ok())).await;
        }
        let monitoring = self.cluster.monitors.add(
            &self.state.client,
            &self.state.budget,
            self.monitor_lines.clone(),
        );
        let start = monitoring.starter();
        self.monitoring = Some(monitoring);
        let ok = async move {
            start();
            Answer::Built(wire::ok())
        };
        self.queue(Reply::Later(Box::pin(ok))).await
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
