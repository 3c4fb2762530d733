//! MULTI/EXEC/WATCH. The proxy queues the transaction itself (answering QUEUED) and checks that every
//! key hashes to one slot, then sends `MULTI … EXEC` as one write to the slot's master, so nothing else
//! can interleave. Without WATCH that write can use the client's pooled connection; WATCH state lives on
//! a connection, so WATCH opens a dedicated one that carries the EXEC and is closed after it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use tokio::sync::oneshot;

use crate::redis::client::order::SlotOrder;
use crate::redis::cluster::redirect::{classify, Redirect};
use crate::redis::cluster::Cluster;
use crate::redis::command::spec::Step;
use crate::redis::command::Command;
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
        if cmd.subscription().is_some_and(|s| !s.unsubscribe) {
            return self.fail(wire::error(
                "ERR Puerta: SUBSCRIBE inside MULTI is not supported",
            ));
        }
        if cmd.spec.is_none() {
            return self.fail(crate::redis::command::spec::unknown_command(&cmd.args));
        }
        if let Err(e) = cmd.check_arity() {
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
        let Some(addr) = transaction_node(cluster, slot) else {
            return Reply::Ready(wire::error(
                "CLUSTERDOWN Puerta: the transaction's slot is not served by any known node",
            ));
        };
        if slot.is_some() {
            order.before_send(cluster.epoch()).await;
        }
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
            Ok(None) => return wire::wrong_arity(&cmd.args[0]),
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
        let mut last = wire::error("ERR Puerta: WATCH failed");
        for _ in 0..=cluster.config.max_redirects {
            let Some(addr) = cluster.node_for(slot, false) else {
                return wire::error(format!("CLUSTERDOWN Hash slot {slot} is not served"));
            };
            let conn = match cluster.pool(&addr, lane.protocol).dedicated().await {
                Ok(c) => c,
                Err(e) => return wire::error(format!("ERR Puerta: {e}")),
            };
            let reply = call(&conn, cmd.payload()).await;
            match classify(&reply, &addr) {
                Some(Redirect::Moved { slot, addr }) => cluster.apply_moved(slot, &addr),
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                None => {
                    if !matches!(reply, Frame::Error(_)) {
                        self.watch = Some(Watch { conn, slot });
                    }
                    return reply;
                }
            }
            last = reply;
        }
        last
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

fn transaction_node(cluster: &Cluster, slot: Option<u16>) -> Option<Arc<str>> {
    let addr = match slot {
        Some(s) => cluster.node_for(s, false),
        None => cluster.any_master(),
    };
    if addr.is_none() {
        cluster.request_refresh();
    }
    addr
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
    async fn finish(
        self,
        mut addr: Arc<str>,
        first: Result<oneshot::Receiver<NodeResult>, BackendError>,
    ) -> Frame {
        let cluster = &self.cluster;
        let mut sent = Some(first);
        let mut last = wire::error("ERR Puerta: transaction could not be routed");
        for attempt in 0..=cluster.config.max_redirects {
            let this = match sent.take() {
                Some(s) => s,
                None => {
                    let Some(next) = transaction_node(cluster, self.slot) else {
                        return wire::error("CLUSTERDOWN Puerta: the transaction's slot is not served by any known node");
                    };
                    addr = next;
                    match cluster
                        .pool(&addr, self.lane.protocol)
                        .conn(self.lane)
                        .await
                    {
                        Ok(conn) => Ok(conn.send(self.payload.clone(), self.replies)),
                        Err(e) => Err(e),
                    }
                }
            };
            let result = match this {
                Ok(rx) => received(rx, &addr).await,
                Err(e) => Err(e),
            };
            let reply = match result {
                Ok(reply) => reply,
                Err(e) if e.never_sent() => {
                    cluster.refresh_and_wait(Duration::from_secs(2)).await;
                    last = wire::error(format!("ERR Puerta: {e}"));
                    continue;
                }
                Err(e) => return wire::error(format!("ERR Puerta: {e}")),
            };
            let redirect = match exec_reply(reply, &addr) {
                Ok(exec) => return exec,
                Err(redirect) => redirect,
            };
            match classify(&redirect, &addr) {
                Some(Redirect::Moved { slot, addr }) => cluster.apply_moved(slot, &addr),
                Some(_) => tokio::time::sleep(Duration::from_millis(20 << attempt.min(4))).await,
                None => return redirect,
            }
            last = redirect;
        }
        last
    }
}
