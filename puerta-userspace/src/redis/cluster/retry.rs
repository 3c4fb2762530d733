//! The one send-and-retry policy, for every path that sends to a node (routed commands,
//! transactions, WATCH, fan-outs): what to do when a node answers "not here" or a connection fails.
//!
//! - MOVED updates the slot map and retries on the new owner.
//! - ASK retries once on the importing node after ASKING, where the sender can put ASKING and the
//!   command in one write; elsewhere it is waited out like TRYAGAIN.
//! - A script's reply (EVAL, FCALL, ...) says what the script likes: `redis.error_reply('MOVED 5
//!   evil:6379')` would otherwise patch the map every client routes by, and have the proxy connect
//!   (with the backend credentials) and send other clients' commands wherever a client chose. So
//!   for a script a MOVED patches nothing: the map is refreshed from the cluster and the command
//!   follows only if the new map agrees (a real MOVED for the script's slot then does); an ASK is
//!   followed only for the script's own slot and to a node the map knows. Anything else is the
//!   script's answer and goes to the client as it is.
//! - TRYAGAIN backs off; CLUSTERDOWN backs off and refreshes the map first.
//! - A failed connection refreshes the map. The command is sent again only if the node certainly did
//!   not run it, or running it twice is harmless (reads): a write whose reply was lost may have been
//!   applied. A timed-out command is not sent to the same node again (it would most likely time out
//!   again, another full timeout for nothing); only a new owner is worth it.
//! - With `failover_hold_ms`, a failed connection (where the command may be sent again) and
//!   CLUSTERDOWN hold the command until the slot has a master worth trying (see `hold`), bounded by
//!   time rather than by `max_redirects`.
//! - After `max_redirects` retries the last answer goes to the client as it is.

use std::sync::Arc;
use std::time::Duration;

use crate::redis::cluster::hold::{self, Held};
use crate::redis::cluster::redirect::{classify, Redirect};
use crate::redis::cluster::Cluster;
use crate::redis::node::backend::BackendError;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;
use crate::redis::stats::Stats;

/// Where a command goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// Wherever the slot map says: the slot's node (`None`: any master).
    Slot { slot: Option<u16>, readonly: bool },
    /// This node and no other (one part of a fan-out to every master).
    Node(Arc<str>),
}

/// What went wrong with one attempt.
pub enum Failure<'a> {
    Redirect(Redirect),
    Backend(&'a BackendError),
}

/// The next attempt.
#[derive(Debug, PartialEq, Eq)]
pub struct Next {
    pub addr: Arc<str>,
    /// Send ASKING first, in the same write.
    pub asking: bool,
}

/// One command's retries.
pub struct Retry {
    target: Target,
    /// Sending the command twice is harmless.
    idempotent: bool,
    /// The sender can follow ASK.
    can_ask: bool,
    retries: u32,
    /// Waiting for a failover since the first failure that started it.
    held: Option<Held>,
    /// A script's: redirects are confirmed first (see the module).
    scripted: bool,
}

impl Retry {
    pub fn new(target: Target, idempotent: bool, can_ask: bool) -> Retry {
        Retry {
            target,
            idempotent,
            can_ask,
            retries: 0,
            held: None,
            scripted: false,
        }
    }

    /// For a script (`flag::SCRIPT`), whose error replies may be its own text.
    pub fn scripted(mut self, scripted: bool) -> Retry {
        self.scripted = scripted;
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Where to send next after `failure`, or `None` to give the client the last answer. The map
    /// learns from a MOVED even when no retry is left.
    pub async fn next(&mut self, cluster: &Cluster, failure: Failure<'_>) -> Option<Next> {
        if let Failure::Backend(e) = &failure {
            Stats::bump(&cluster.stats.backend_errors);
            // The next refresh asks the other nodes first: they know of a failover.
            cluster.note_refresh_answer(e.addr(), false);
        }
        let hold = self.may_hold(cluster, &failure);
        if let Some(failed) = hold {
            // Bounded by failover_hold_ms, not by max_redirects.
            return self.hold(cluster, failed).await;
        }
        let next = match failure {
            Failure::Redirect(redirect) => self.follow(cluster, redirect).await,
            Failure::Backend(e) => self.after_error(cluster, e).await,
        }?;
        if self.retries >= cluster.config.max_redirects {
            return None;
        }
        self.retries += 1;
        Some(next)
    }

    /// [`Retry::next`] for senders that read answers as frames: `Ok(next)` to send again,
    /// `Err(answer)` for the client (the node's final answer, or the error that ends the retries).
    pub async fn after(
        &mut self,
        cluster: &Cluster,
        addr: &str,
        answer: Result<Frame, BackendError>,
    ) -> Result<Next, Frame> {
        match answer {
            Ok(frame) => match classify(&frame, addr) {
                None => Err(frame),
                Some(redirect) => self
                    .next(cluster, Failure::Redirect(redirect))
                    .await
                    .ok_or(frame),
            },
            Err(e) => self
                .next(cluster, Failure::Backend(&e))
                .await
                .ok_or_else(|| wire::error(format!("ERR Puerta: {e}"))),
        }
    }

    /// When `failure` is one to wait out: CLUSTERDOWN, or a failed connection to a slot's node where
    /// the command may be sent again (not a timeout: a stuck node is left to `command_timeout_ms`).
    /// `Some(failed node)`; a fixed node (one part of a fan-out) is asked as it is.
    fn may_hold<'f>(
        &self,
        cluster: &Cluster,
        failure: &Failure<'f>,
    ) -> Option<Option<&'f Arc<str>>> {
        if cluster.config.failover_hold.is_zero() || matches!(self.target, Target::Node(_)) {
            return None;
        }
        match failure {
            Failure::Redirect(Redirect::ClusterDown) => Some(None),
            Failure::Backend(BackendError::Timeout { .. }) => None,
            Failure::Backend(e) if e.never_sent() || self.idempotent => Some(Some(e.addr())),
            _ => None,
        }
    }

    async fn hold(&mut self, cluster: &Cluster, failed: Option<&Arc<str>>) -> Option<Next> {
        let held = self.held.get_or_insert_with(|| Held::start(cluster));
        let target = &self.target;
        let owner = || owner_of(target, cluster).map(|n| n.addr);
        let addr = hold::until_owner(cluster, held, failed, owner).await?;
        Some(Next {
            addr,
            asking: false,
        })
    }

    async fn follow(&self, cluster: &Cluster, redirect: Redirect) -> Option<Next> {
        let stats = &cluster.stats;
        let fixed = matches!(self.target, Target::Node(_));
        match redirect {
            // A fan-out part asked one node for its own data: a redirect is its answer.
            _ if fixed => None,
            Redirect::Moved { slot, addr } if self.scripted => {
                let next = self.confirmed(cluster, slot, &addr).await?;
                Stats::bump(&stats.moved);
                Some(next)
            }
            Redirect::Ask { slot, addr }
                if self.scripted && !self.may_ask(cluster, slot, &addr) =>
            {
                None
            }
            Redirect::Moved { slot, addr } => {
                Stats::bump(&stats.moved);
                cluster.apply_moved(slot, &addr);
                Some(Next {
                    addr,
                    asking: false,
                })
            }
            Redirect::Ask { addr, .. } if self.can_ask => {
                Stats::bump(&stats.ask);
                Some(Next { addr, asking: true })
            }
            Redirect::Ask { .. } | Redirect::TryAgain => {
                Stats::bump(match redirect {
                    Redirect::TryAgain => &stats.tryagain,
                    _ => &stats.ask,
                });
                tokio::time::sleep(backoff(self.retries)).await;
                self.owner(cluster)
            }
            Redirect::ClusterDown => {
                tokio::time::sleep(backoff(self.retries)).await;
                cluster.refresh_and_wait(refresh_wait(cluster)).await;
                self.owner(cluster)
            }
        }
    }

    /// A script's MOVED for `slot`: the map is refreshed from the cluster, and the command goes to
    /// `addr` only if the new map has it own its slot.
    async fn confirmed(&self, cluster: &Cluster, slot: u16, addr: &Arc<str>) -> Option<Next> {
        if !self.routes_slot(slot) {
            return None;
        }
        cluster.refresh_and_wait(refresh_wait(cluster)).await;
        self.owner(cluster).filter(|owner| owner.addr == *addr)
    }

    /// A script's ASK: only for its own slot, and only to a node the map knows.
    fn may_ask(&self, cluster: &Cluster, slot: u16, addr: &Arc<str>) -> bool {
        self.routes_slot(slot) && cluster.nodes().contains(addr)
    }

    /// Whether the command is routed by `slot`.
    fn routes_slot(&self, slot: u16) -> bool {
        matches!(self.target, Target::Slot { slot: Some(s), .. } if s == slot)
    }

    async fn after_error(&self, cluster: &Cluster, e: &BackendError) -> Option<Next> {
        tracing::debug!("backend error: {e}");
        let resend = e.never_sent() || self.idempotent;
        cluster.refresh_and_wait(refresh_wait(cluster)).await;
        if !resend {
            return None;
        }
        tokio::time::sleep(backoff(self.retries)).await;
        let next = self.owner(cluster)?;
        if matches!(e, BackendError::Timeout { .. }) && &next.addr == e.addr() {
            return None;
        }
        Some(next)
    }

    fn owner(&self, cluster: &Cluster) -> Option<Next> {
        owner_of(&self.target, cluster)
    }
}

/// The node `target` names now: a fixed node only while it is still a master.
fn owner_of(target: &Target, cluster: &Cluster) -> Option<Next> {
    let addr = match target {
        Target::Slot { slot, readonly } => node_for(cluster, *slot, *readonly).ok()?,
        Target::Node(addr) => cluster
            .masters()
            .iter()
            .any(|m| m == addr)
            .then(|| addr.clone())?,
    };
    Some(Next {
        addr,
        asking: false,
    })
}

/// The node serving `slot` now (`None`: any master), or the error a client gets when none is known
/// (which also asks for a refresh).
pub fn node_for(cluster: &Cluster, slot: Option<u16>, readonly: bool) -> Result<Arc<str>, Frame> {
    let node = match slot {
        Some(slot) => cluster.node_for(slot, readonly),
        None => cluster.any_master(),
    };
    node.ok_or_else(|| unserved(cluster, slot))
}

/// [`node_for`] of each of `slots`, handed to `each` under one read of the slot map.
pub fn each_node_for(
    cluster: &Cluster,
    slots: impl IntoIterator<Item = u16>,
    readonly: bool,
    each: impl FnMut(&Arc<str>),
) -> Result<(), Frame> {
    cluster
        .each_node_for(slots, readonly, each)
        .map_err(|slot| unserved(cluster, Some(slot)))
}

/// What a client gets when no node is known for `slot` (`None`: for any command); asks for a
/// refresh.
fn unserved(cluster: &Cluster, slot: Option<u16>) -> Frame {
    cluster.request_refresh();
    match slot {
        Some(slot) => wire::error(format!(
            "CLUSTERDOWN Hash slot {slot} is not served by any known node (Puerta's slot map is incomplete)"
        )),
        None => wire::error("CLUSTERDOWN Puerta knows no cluster node yet"),
    }
}

fn refresh_wait(cluster: &Cluster) -> Duration {
    cluster.config.connection_timeout * 2 + Duration::from_millis(500)
}

/// 20 ms, 40 ms, ... capped at 500 ms.
fn backoff(retries: u32) -> Duration {
    Duration::from_millis((20u64 << retries.min(5)).min(500))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::cluster::hold::REPROBE_FOR_TESTS;
    use crate::redis::cluster::refresh::tests::{config, one_shard};

    fn slot_target() -> Target {
        Target::Slot {
            slot: Some(7),
            readonly: false,
        }
    }

    fn addr(port: u16) -> Arc<str> {
        format!("127.0.0.1:{port}").into()
    }

    fn moved(port: u16) -> Failure<'static> {
        Failure::Redirect(Redirect::Moved {
            slot: 7,
            addr: addr(port),
        })
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(20));
        assert_eq!(backoff(1), Duration::from_millis(40));
        assert_eq!(backoff(30), Duration::from_millis(500));
    }

    #[tokio::test]
    async fn moved_updates_the_map_and_retries_there_up_to_max_redirects() {
        let cluster = Cluster::new(config(1));
        cluster.install(one_shard(7001, 7002));
        let mut retry = Retry::new(slot_target(), false, true);
        let next = retry.next(&cluster, moved(7003)).await;
        let expected = Next {
            addr: addr(7003),
            asking: false,
        };
        assert_eq!(next, Some(expected));
        assert_eq!(cluster.node_for(7, false), Some(addr(7003)));
        for _ in 1..cluster.config.max_redirects {
            assert!(retry.next(&cluster, moved(7003)).await.is_some());
        }
        assert_eq!(retry.next(&cluster, moved(7001)).await, None);
        // The map still learns from the MOVED that was not followed.
        assert_eq!(cluster.node_for(7, false), Some(addr(7001)));
    }

    #[tokio::test]
    async fn ask_is_followed_only_by_senders_that_can_and_a_fixed_node_is_never_left() {
        let cluster = Cluster::new(config(1));
        cluster.install(one_shard(7001, 7002));
        let ask = || {
            Failure::Redirect(Redirect::Ask {
                slot: 7,
                addr: addr(7003),
            })
        };
        let mut router = Retry::new(slot_target(), false, true);
        let asking = Next {
            addr: addr(7003),
            asking: true,
        };
        assert_eq!(router.next(&cluster, ask()).await, Some(asking));
        // A transaction waits the migration out on the slot's owner.
        let mut transaction = Retry::new(slot_target(), false, false);
        let owner = Next {
            addr: addr(7001),
            asking: false,
        };
        assert_eq!(transaction.next(&cluster, ask()).await, Some(owner));
        let mut part = Retry::new(Target::Node(addr(7001)), true, false);
        assert_eq!(part.next(&cluster, moved(7003)).await, None);
        assert_eq!(part.next(&cluster, ask()).await, None);
    }

    /// A cluster whose refreshes find nothing; a wait for one ends after about half a second.
    fn unrefreshed() -> Arc<Cluster> {
        let mut config = config(1);
        config.connection_timeout = Duration::from_millis(1);
        let cluster = Cluster::new(config);
        cluster.install(one_shard(7001, 7002));
        cluster
    }

    #[tokio::test]
    async fn a_scripts_moved_patches_nothing_and_is_followed_only_where_the_cluster_agrees() {
        let cluster = unrefreshed();
        let mut script = Retry::new(slot_target(), false, true).scripted(true);
        assert_eq!(script.next(&cluster, moved(6666)).await, None);
        assert_eq!(
            cluster.node_for(7, false),
            Some(addr(7001)),
            "the map is untouched"
        );
        let other_slot = Failure::Redirect(Redirect::Moved {
            slot: 8,
            addr: addr(7001),
        });
        assert_eq!(script.next(&cluster, other_slot).await, None);
        // The slot really moved: the refresh it waits for brings the new map.
        let moved_for_real = {
            let cluster = cluster.clone();
            tokio::spawn(async move { cluster.install(one_shard(7003, 7001)) })
        };
        let next = script.next(&cluster, moved(7003)).await;
        moved_for_real.await.unwrap();
        assert_eq!(next.map(|n| n.addr), Some(addr(7003)));
        let ask = |port| {
            Failure::Redirect(Redirect::Ask {
                slot: 7,
                addr: addr(port),
            })
        };
        let mut script = Retry::new(slot_target(), false, true).scripted(true);
        assert_eq!(script.next(&cluster, ask(6666)).await, None, "unknown node");
        let known = script.next(&cluster, ask(7001)).await;
        assert_eq!(known.map(|n| (n.addr, n.asking)), Some((addr(7001), true)));
    }

    fn holding(ms: u64) -> Arc<Cluster> {
        let mut config = config(1);
        config.failover_hold = Duration::from_millis(ms);
        // Bounds the old policy's wait for a refresh (none runs here).
        config.connection_timeout = Duration::from_millis(100);
        let cluster = Cluster::new(config);
        cluster.install(one_shard(7001, 7002));
        cluster
    }

    fn refused(port: u16) -> BackendError {
        BackendError::Connect {
            addr: addr(port),
            reason: "refused".into(),
        }
    }

    #[tokio::test]
    async fn a_command_for_a_dead_master_waits_for_its_successor() {
        let cluster = holding(10_000);
        let promote = {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                cluster.install(one_shard(7002, 7001));
            })
        };
        let mut retry = Retry::new(slot_target(), false, true);
        let started = std::time::Instant::now();
        let next = retry.next(&cluster, Failure::Backend(&refused(7001))).await;
        assert_eq!(next.map(|n| n.addr), Some(addr(7002)));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(Stats::get(&cluster.stats.failover_held), 1);
        assert_eq!(Stats::get(&cluster.stats.failover_holding), 1);
        drop(retry);
        assert_eq!(Stats::get(&cluster.stats.failover_holding), 0);
        promote.await.unwrap();
    }

    #[tokio::test]
    async fn a_write_that_may_have_been_applied_is_never_held_nor_sent_again() {
        let cluster = holding(10_000);
        let lost = BackendError::Lost {
            addr: addr(7001),
            reason: "reset".into(),
        };
        let mut retry = Retry::new(slot_target(), false, true);
        let started = std::time::Instant::now();
        assert_eq!(retry.next(&cluster, Failure::Backend(&lost)).await, None);
        assert_eq!(Stats::get(&cluster.stats.failover_held), 0);
        // A read in the same spot is held (and re-sent to the same node once it may have recovered).
        let mut read = Retry::new(slot_target(), true, true);
        let next = read.next(&cluster, Failure::Backend(&lost)).await;
        assert_eq!(next.map(|n| n.addr), Some(addr(7001)));
        assert!(started.elapsed() >= REPROBE_FOR_TESTS);
    }

    #[tokio::test]
    async fn the_hold_ends_after_failover_hold_ms_with_the_error() {
        let cluster = holding(300);
        let refused_7001 = refused(7001);
        let timeout = BackendError::Timeout {
            addr: addr(7001),
            ms: 5000,
        };
        // A timed-out command is left to command_timeout_ms: not held, not sent to that node again.
        let mut retry = Retry::new(slot_target(), true, true);
        assert_eq!(retry.next(&cluster, Failure::Backend(&timeout)).await, None);
        assert_eq!(Stats::get(&cluster.stats.failover_held), 0);
        // A dead node still owning the slot: tried again after the first refresh, then every
        // REPROBE until the hold is over.
        let mut retry = Retry::new(slot_target(), false, true);
        let started = std::time::Instant::now();
        let dead = || Failure::Backend(&refused_7001);
        let mut tries = 0;
        while retry.next(&cluster, dead()).await.is_some() {
            tries += 1;
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!((1..=2).contains(&tries), "{tries} tries in {took:?}");
        // CLUSTERDOWN is held too, and tried again on the owner after a refresh.
        let down = Failure::Redirect(Redirect::ClusterDown);
        let mut retry = Retry::new(slot_target(), false, true);
        assert_eq!(
            retry.next(&cluster, down).await.map(|n| n.addr),
            Some(addr(7001))
        );
        // Off: the old policy, bounded by max_redirects.
        let off = holding(0);
        let mut retry = Retry::new(slot_target(), false, true);
        let next = retry.next(&off, Failure::Backend(&refused(7001))).await;
        assert_eq!(next.map(|n| n.addr), Some(addr(7001)));
        assert_eq!(Stats::get(&off.stats.failover_held), 0);
    }
}
