//! MULTI/EXEC/WATCH. The proxy queues the transaction itself (answering QUEUED) and checks that every
//! key hashes to one slot, then sends `MULTI … EXEC` as one write to the slot's master, so nothing else
//! can interleave. Without WATCH that write can use the client's pooled connection; WATCH state lives on
//! a connection, so WATCH opens a dedicated one that carries the EXEC and is closed after it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::backend::BackendConn;
use super::cluster::Cluster;
use super::command::Command;
use super::dispatch::Reply;
use super::redirect::{classify, Redirect};
use super::resp::Frame;
use super::wire;

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
        if matches!(cmd.name.as_str(), "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE") {
            return self.fail(wire::error(
                "ERR Puerta: SUBSCRIBE inside MULTI is not supported",
            ));
        }
        if cmd.spec.is_none() {
            return self.fail(super::commands::unknown_command(&cmd.args));
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

    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    pub async fn handle(&mut self, cluster: &Arc<Cluster>, cmd: &Command, lane: usize) -> Reply {
        let frame = match cmd.name.as_str() {
            "MULTI" if self.in_multi => wire::error("ERR MULTI calls can not be nested"),
            "MULTI" => {
                self.in_multi = true;
                wire::ok()
            }
            "DISCARD" if !self.in_multi => wire::error("ERR DISCARD without MULTI"),
            "DISCARD" | "UNWATCH" => {
                if cmd.name == "UNWATCH" && self.in_multi {
                    return Reply::Ready(self.queue(cmd));
                }
                self.reset();
                wire::ok()
            }
            "EXEC" if !self.in_multi => wire::error("ERR EXEC without MULTI"),
            "EXEC" => return self.exec(cluster, lane),
            "WATCH" if self.in_multi => wire::error("ERR WATCH inside MULTI is not allowed"),
            "WATCH" => self.watch(cluster, cmd).await,
            _ => return Reply::Ready(wire::error("ERR Puerta: not a transaction command")),
        };
        Reply::Ready(frame)
    }

    fn exec(&mut self, cluster: &Arc<Cluster>, lane: usize) -> Reply {
        let failed = self.failed;
        let queued = std::mem::take(&mut self.queued);
        let slot = self.slot;
        let watch = self.reset();
        if failed {
            return Reply::Ready(wire::error(
                "EXECABORT Transaction discarded because of previous errors.",
            ));
        }
        let cluster = cluster.clone();
        Reply::Later(Box::pin(async move {
            match watch {
                Some(w) => exec_on(&w.conn, &queued).await.unwrap_or_else(|e| e),
                None => exec_routed(&cluster, slot, &queued, lane).await,
            }
        }))
    }

    async fn watch(&mut self, cluster: &Arc<Cluster>, cmd: &Command) -> Frame {
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
            let conn = match cluster.pool(&addr).dedicated().await {
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

/// `MULTI, queued…, EXEC` in one write; the EXEC reply, or the redirect that aborted it.
async fn exec_on(conn: &BackendConn, queued: &[Bytes]) -> Result<Frame, Frame> {
    let mut payload = BytesMut::new();
    wire::encode_command(&mut payload, &[b"MULTI"]);
    for q in queued {
        payload.extend_from_slice(q);
    }
    wire::encode_command(&mut payload, &[b"EXEC"]);
    let reply = conn
        .call(payload.freeze(), queued.len() + 2)
        .await
        .map_err(|e| wire::error(format!("ERR Puerta: {e}")))?;
    let Frame::Array(mut replies) = reply else {
        return Err(wire::error("ERR Puerta: unexpected transaction reply"));
    };
    let exec = replies.pop().unwrap_or(Frame::Null);
    // A queued command refused with MOVED/ASK means the slot is elsewhere: nothing ran.
    if let Some(redirect) = replies
        .iter()
        .skip(1)
        .find(|r| classify(r, conn.addr()).is_some())
    {
        return Err(redirect.clone());
    }
    Ok(exec)
}

async fn exec_routed(
    cluster: &Arc<Cluster>,
    slot: Option<u16>,
    queued: &[Bytes],
    lane: usize,
) -> Frame {
    let mut last = wire::error("ERR Puerta: transaction could not be routed");
    for attempt in 0..=cluster.config.max_redirects {
        let addr = match slot {
            Some(s) => cluster.node_for(s, false),
            None => cluster.any_master(),
        };
        let Some(addr) = addr else {
            cluster.request_refresh();
            return wire::error(
                "CLUSTERDOWN Puerta: the transaction's slot is not served by any known node",
            );
        };
        let conn = match cluster.pool(&addr).conn(lane).await {
            Ok(c) => c,
            Err(e) => {
                cluster.refresh_and_wait(Duration::from_secs(2)).await;
                last = wire::error(format!("ERR Puerta: {e}"));
                continue;
            }
        };
        match exec_on(&conn, queued).await {
            Ok(frame) => return frame,
            Err(redirect) => {
                match classify(&redirect, &addr) {
                    Some(Redirect::Moved { slot, addr }) => cluster.apply_moved(slot, &addr),
                    Some(_) => {
                        tokio::time::sleep(Duration::from_millis(20 << attempt.min(4))).await
                    }
                    None => return redirect,
                }
                last = redirect;
            }
        }
    }
    last
}
