//! MULTI/EXEC/WATCH. The proxy queues the transaction itself (answering QUEUED) and checks that every
//! key hashes to one slot, then sends `MULTI … EXEC` as one write to the slot's master, so nothing else
//! can interleave. Without WATCH that write can use the client's pooled connection; WATCH state lives on
//! a connection, so WATCH opens a dedicated one that carries the EXEC and is closed after it.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use tokio::sync::oneshot;

use crate::redis::client::order::SlotOrder;
use crate::redis::cluster::redirect::classify;
use crate::redis::cluster::retry::{node_for, Retry, Target};
use crate::redis::cluster::Cluster;
use crate::redis::command::spec::{Kind, Local, Step};
use crate::redis::command::Command;
use crate::redis::exec::admin;
use crate::redis::exec::dispatch::{later, Reply};
use crate::redis::node::backend::{
    frame_result, BackendConn, BackendError, NodeResult, ReplyResult,
};
use crate::redis::node::pool::Lane;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

#[derive(Default)]
pub struct Transaction {
    in_multi: bool,
    queued: Vec<Bytes>,
    slot: Option<u16>,
    /// Set by a queuing error: EXEC then answers EXECABORT, like Redis.
    failed: bool,
    watch: Option<Watch>,
}

struct Watch {
    conn: BackendConn,
    slot: u16,
}

impl Transaction {
    pub fn in_multi(&self) -> bool {
        self.in_multi
    }

    /// Accepts a command between MULTI and EXEC.
    pub fn queue(&mut self, cmd: &Command) -> Frame {
        let Some(kind) = cmd.kind() else {
            return self.fail(crate::redis::command::spec::unknown_command(cmd.args()));
        };
        if let Err(e) = cmd.check_arity().and_then(|()| queueable(kind, cmd)) {
            return self.fail(e);
        }
        let slot = match cmd.slot() {
            Ok(slot) => slot,
            Err(e) => return self.fail(e),
        };
        if let Some(slot) = slot {
            match self.slot {
                Some(bound) if bound != slot => {
                    return self.fail(wire::error(format!(
                        "ERR Puerta: MULTI/EXEC needs all keys in one hash slot (CROSSSLOT); this command's keys are in slot {slot}, the transaction's in slot {bound} (use a {{hash tag}})"
                    )))
                }
                _ => self.slot = Some(slot),
            }
        }
        self.queued.push(cmd.payload());
        wire::simple("QUEUED")
    }

    fn fail(&mut self, error: Frame) -> Frame {
        self.failed = true;
        error
    }

    fn reset(&mut self) -> Option<Watch> {
        let watch = self.watch.take();
        *self = Transaction::default();
        watch
    }

    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH (`step`, from the command table).
    pub async fn handle(
        &mut self,
        cluster: &Arc<Cluster>,
        cmd: &Command,
        step: Step,
        lane: Lane,
        order: &mut SlotOrder,
    ) -> Reply {
        let frame = match step {
            Step::Multi if self.in_multi => wire::error("ERR MULTI calls can not be nested"),
            Step::Multi => {
                self.in_multi = true;
                wire::ok()
            }
            Step::Discard if !self.in_multi => wire::error("ERR DISCARD without MULTI"),
            Step::Unwatch if self.in_multi => self.queue(cmd),
            Step::Discard | Step::Unwatch => {
                self.reset();
                wire::ok()
            }
            Step::Exec if !self.in_multi => wire::error("ERR EXEC without MULTI"),
            Step::Exec => return self.exec(cluster, lane, order).await,
            Step::Watch if self.in_multi => wire::error("ERR WATCH inside MULTI is not allowed"),
            Step::Watch => self.watch(cluster, cmd, lane).await,
        };
        Reply::Ready(frame)
    }

    /// Sends the whole transaction now, so that commands after EXEC cannot overtake it.
    async fn exec(&mut self, cluster: &Arc<Cluster>, lane: Lane, order: &mut SlotOrder) -> Reply {
        let failed = self.failed;
        let queued = std::mem::take(&mut self.queued);
        let slot = self.slot;
        let watch = self.reset();
        if failed {
            return Reply::Ready(wire::error(
                "EXECABORT Transaction discarded because of previous errors.",
            ));
        }
        let payload = transaction_payload(&queued);
        let replies = queued.len() + 2;
        if let Some(w) = watch {
            order.before_send(cluster.epoch()).await;
            let rx = w.conn.send(payload, replies);
            return later(async move {
                let addr = w.conn.addr().clone();
                let result = received(rx, &addr).await;
                drop(w);
                match result {
                    Ok(frame) => exec_reply(frame, &addr).unwrap_or_else(|e| e),
                    Err(e) => wire::error(format!("ERR Puerta: {e}")),
                }
            });
        }
        // Chosen after the client's earlier commands are answered where the map changed under
        // them, with the map waited for (as every routed command is).
        let target = || node_for(cluster, slot, false);
        let addr = match slot.is_some() {
            true => order.route(cluster, target).await,
            false => target(),
        };
        let addr = match addr {
            Ok(addr) => addr,
            Err(e) => return Reply::Ready(e),
        };
        let first = match cluster.pool(&addr, lane.protocol).conn(lane).await {
            Ok(conn) => Ok(conn.send(payload.clone(), replies)),
            Err(e) => Err(e),
        };
        let cluster = cluster.clone();
        later(async move {
            let tx = Routed {
                cluster,
                slot,
                payload,
                replies,
                lane,
            };
            tx.finish(addr, first).await
        })
    }

    async fn watch(&mut self, cluster: &Arc<Cluster>, cmd: &Command, lane: Lane) -> Frame {
        let slot = match cmd.slot() {
            Ok(Some(slot)) => slot,
            Ok(None) => return wire::wrong_arity(&cmd.args()[0]),
            Err(e) => return e,
        };
        if let Some(w) = &self.watch {
            if w.slot != slot {
                return wire::error(format!(
                    "ERR Puerta: WATCH keys must share one hash slot with the keys already watched (slot {}), got slot {slot}",
                    w.slot
                ));
            }
            return call(&w.conn, cmd.payload()).await;
        }
        let payload = cmd.payload();
        // WATCH changes nothing: sending it again is harmless.
        let target = Target::Slot {
            slot: Some(slot),
            readonly: false,
        };
        let mut retry = Retry::new(target, true, false);
        let mut addr = match node_for(cluster, Some(slot), false) {
            Ok(addr) => addr,
            Err(e) => return e,
        };
        loop {
            let answered = match cluster.pool(&addr, lane.protocol).dedicated().await {
                Ok(conn) => conn
                    .call(payload.clone(), 1)
                    .await
                    .map(|reply| (conn, reply)),
                Err(e) => Err(e),
            };
            let (conn, answer) = match answered {
                Ok((conn, reply)) => (Some(conn), Ok(reply)),
                Err(e) => (None, Err(e)),
            };
            match retry.after(cluster, &addr, answer).await {
                Ok(next) => addr = next.addr,
                Err(reply) => {
                    if let (Some(conn), false) = (conn, matches!(reply, Frame::Error(_))) {
                        self.watch = Some(Watch { conn, slot });
                    }
                    return reply;
                }
            }
        }
    }
}

/// Whether `cmd` may run inside the transaction, on the slot's node. What the proxy answers or
/// spreads itself cannot: on the node it would act on a pooled connection or on one node only
/// (`CLIENT PAUSE` would pause the node for every client, `FLUSHALL` flush one master, `READONLY`
/// change a shared connection). PING and ECHO get the same answer from the node.
fn queueable(kind: Kind, cmd: &Command) -> Result<(), Frame> {
    let refused = |why: &str| {
        Err(wire::error(format!(
            "ERR Puerta: '{}' inside MULTI is not supported through the proxy: {why}",
            cmd.name.to_lowercase()
        )))
    };
    match kind {
        Kind::Keyed | Kind::Split(_) | Kind::AnyMaster | Kind::PubSub => Ok(()),
        Kind::Local(Local::Ping | Local::Echo) => Ok(()),
        Kind::Admin if admin::one_node(cmd) => Ok(()),
        Kind::Unsupported(why) => refused(why),
        Kind::Subscription(_) => refused("a transaction cannot subscribe"),
        Kind::Admin => {
            refused("it goes to several nodes, or is not served; a transaction runs on one")
        }
        Kind::Local(_) | Kind::Scan | Kind::Info => {
            refused("the proxy answers it itself, outside transactions")
        }
        Kind::FanOut(_) => refused("it must run on every master, a transaction runs on one"),
        // Not queued: dispatch handles them before queueing.
        Kind::Transaction(_) => Ok(()),
    }
}

async fn call(conn: &BackendConn, payload: Bytes) -> Frame {
    conn.call(payload, 1)
        .await
        .unwrap_or_else(|e| wire::error(format!("ERR Puerta: {e}")))
}

fn transaction_payload(queued: &[Bytes]) -> Bytes {
    let mut payload = BytesMut::new();
    crate::redis::resp::encode_command(&[b"MULTI"], &mut payload);
    for q in queued {
        payload.extend_from_slice(q);
    }
    crate::redis::resp::encode_command(&[b"EXEC"], &mut payload);
    payload.freeze()
}

async fn received(rx: oneshot::Receiver<NodeResult>, addr: &Arc<str>) -> ReplyResult {
    frame_result(rx.await.unwrap_or_else(|_| {
        Err(BackendError::Lost {
            addr: addr.clone(),
            reason: "connection task ended".into(),
        })
    }))
}

/// The EXEC reply out of `[MULTI reply, queued replies…, EXEC reply]`, or the redirect that aborted
/// the transaction (a queued command refused with MOVED/ASK means nothing ran).
fn exec_reply(reply: Frame, addr: &str) -> Result<Frame, Frame> {
    let Frame::Array(mut replies) = reply else {
        return Err(wire::error("ERR Puerta: unexpected transaction reply"));
    };
    let exec = replies.pop().unwrap_or(Frame::Null);
    if let Some(redirect) = replies.iter().skip(1).find(|r| classify(r, addr).is_some()) {
        return Err(redirect.clone());
    }
    Ok(exec)
}

/// A transaction without WATCH: may be resent after a redirect, because a redirected transaction
/// did not run.
struct Routed {
    cluster: Arc<Cluster>,
    slot: Option<u16>,
    payload: Bytes,
    replies: usize,
    lane: Lane,
}

impl Routed {
    /// The transaction's answer, retried by the one policy: a redirected transaction did not run, so
    /// it may be sent again; one whose reply was lost may have run and is not.
    async fn finish(
        self,
        mut addr: Arc<str>,
        first: Result<oneshot::Receiver<NodeResult>, BackendError>,
    ) -> Frame {
        let cluster = &self.cluster;
        let target = Target::Slot {
            slot: self.slot,
            readonly: false,
        };
        let mut retry = Retry::new(target, false, false);
        let mut sent = first;
        loop {
            let result = match sent {
                Ok(rx) => received(rx, &addr).await,
                Err(e) => Err(e),
            };
            let answer = match result {
                Ok(reply) => match exec_reply(reply, &addr) {
                    Ok(exec) => return exec,
                    Err(answer) => Ok(answer),
                },
                Err(e) => Err(e),
            };
            let next = retry.after(cluster, &addr, answer).await;
            addr = match next {
                Ok(next) => next.addr,
                Err(answer) => return answer,
            };
            sent = match cluster
                .pool(&addr, self.lane.protocol)
                .conn(self.lane)
                .await
            {
                Ok(conn) => Ok(conn.send(self.payload.clone(), self.replies)),
                Err(e) => Err(e),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(txn: &mut Transaction, words: &[&str]) -> Frame {
        txn.queue(&Command::from_words(words))
    }

    fn refused(frame: &Frame) -> bool {
        matches!(frame, Frame::Error(e) if e.starts_with(b"ERR Puerta: "))
    }

    #[test]
    fn only_what_a_node_can_run_for_the_client_is_queued() {
        let queued = wire::simple("QUEUED");
        for words in [
            &["SET", "{t}a", "1"][..],
            &["MGET", "{t}a", "{t}b"],
            &["PING"],
            &["ECHO", "x"],
            &["CONFIG", "GET", "maxmemory"],
            &["TIME"],
        ] {
            let mut txn = Transaction::default();
            assert_eq!(queue(&mut txn, words), queued, "{words:?}");
            assert!(!txn.failed, "{words:?}");
        }
        for words in [
            &["CLIENT", "PAUSE", "1000"][..],
            &["CLIENT", "SETNAME", "x"],
            &["READONLY"],
            &["CONFIG", "SET", "maxmemory", "1"],
            &["FLUSHALL"],
            &["INFO"],
            &["SCAN", "0"],
            &["SUBSCRIBE", "ch"],
            &["UNSUBSCRIBE"],
            &["SHUTDOWN"],
            &["AUTH", "pw"],
        ] {
            let mut txn = Transaction::default();
            let answer = queue(&mut txn, words);
            assert!(refused(&answer), "{words:?}: {answer:?}");
            assert!(txn.failed, "{words:?} must abort the transaction");
            assert!(txn.queued.is_empty(), "{words:?}");
        }
        let mut txn = Transaction::default();
        assert!(matches!(queue(&mut txn, &["NOSUCH"]), Frame::Error(_)));
        assert!(txn.failed);
    }
}
