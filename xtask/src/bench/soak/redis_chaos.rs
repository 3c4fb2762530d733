//! Redis-mode disruption, alternating every K seconds: SIGKILL a master (its replica is promoted; the
//! old master is restarted and rejoins as a replica), then a graceful `CLUSTER FAILOVER` on a replica.
//! A disruption ends when the whole cluster is healthy again, and the next one waits for that.

use std::time::{Duration, Instant};

use super::redis_admin::{check_healthy, command, failed_over, masters, parse_nodes};
use super::stacks::RedisStack;
use super::timeline::{Stack, Timeline};

/// Cluster checks are a dozen small requests; once a second is plenty.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longer than this without recovering is worth a line in the report.
const RECOVERY_WARNING: Duration = Duration::from_secs(90);
const POSTPONE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Phase {
    Idle,
    /// A master was killed; waiting for its replica to take over.
    Killed {
        port: u16,
    },
    /// The killed node is back; waiting for it to rejoin and sync.
    Rejoining,
    /// `CLUSTER FAILOVER` was sent to `port`; waiting for it to be master and the cluster healthy.
    FailingOver {
        port: u16,
    },
}

pub struct RedisChaos {
    every: Duration,
    next_kill: Instant,
    disruptions: usize,
    phase: Phase,
    phase_since: Instant,
    last_check: Instant,
    warned: bool,
    /// Why the last kill was postponed, so each reason is logged once rather than every 5 s.
    postponed_for: Option<String>,
}

impl RedisChaos {
    /// Starts half a period after the MongoDB kills, so the two stacks' disruptions do not coincide.
    pub fn new(every: Duration, started: Instant) -> RedisChaos {
        RedisChaos {
            every,
            next_kill: started + every + every / 2,
            disruptions: 0,
            phase: Phase::Idle,
            phase_since: started,
            last_check: started,
            warned: false,
            postponed_for: None,
        }
    }

    pub fn poll(&mut self, stack: &mut RedisStack, timeline: &mut Timeline) -> anyhow::Result<()> {
        let now = Instant::now();
        if now < self.last_check + CHECK_EVERY {
            return Ok(());
        }
        self.last_check = now;
        match self.phase {
            Phase::Idle if now >= self.next_kill => self.disrupt(stack, timeline)?,
            Phase::Idle => {}
            Phase::Killed { port } => {
                let survivor = stack.cluster.ports.iter().copied().find(|&p| p != port);
                if survivor.is_some_and(|s| failed_over(s, port)) {
                    timeline.event(Stack::Redis, format!("replica took over :{port}'s slots"));
                    stack.cluster.restart(port)?;
                    timeline.event(Stack::Redis, format!("restarted :{port}"));
                    self.enter(Phase::Rejoining);
                }
            }
            Phase::Rejoining => self.finish_when_healthy(stack, timeline, None),
            Phase::FailingOver { port } => self.finish_when_healthy(stack, timeline, Some(port)),
        }
        if !matches!(self.phase, Phase::Idle)
            && !self.warned
            && self.phase_since.elapsed() > RECOVERY_WARNING
        {
            self.warned = true;
            timeline.event(
                Stack::Redis,
                format!("WARNING: not recovered {RECOVERY_WARNING:?} after the last step"),
            );
        }
        Ok(())
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.phase_since = Instant::now();
        self.warned = false;
    }

    fn disrupt(&mut self, stack: &mut RedisStack, timeline: &mut Timeline) -> anyhow::Result<()> {
        if let Err(why) = check_healthy(&stack.cluster.ports) {
            if self.postponed_for.as_ref() != Some(&why) {
                timeline.event(Stack::Redis, format!("kill postponed: {why}"));
                self.postponed_for = Some(why);
            }
            self.next_kill = Instant::now() + POSTPONE;
            return Ok(());
        }
        self.postponed_for = None;
        let round = self.disruptions / 2;
        let kill = self.disruptions.is_multiple_of(2);
        self.disruptions += 1;
        self.next_kill = Instant::now() + self.every;
        let asked = stack.cluster.ports[0];
        if kill {
            let masters = masters(asked)?;
            let port = masters[round % masters.len()];
            timeline.open_window(Stack::Redis);
            stack.cluster.kill(port);
            timeline.event(Stack::Redis, format!("SIGKILL master :{port}"));
            self.enter(Phase::Killed { port });
        } else {
            let replicas = replicas(asked)?;
            let port = replicas[round % replicas.len()];
            timeline.open_window(Stack::Redis);
            command(port, &["CLUSTER", "FAILOVER"])?;
            timeline.event(Stack::Redis, format!("CLUSTER FAILOVER on replica :{port}"));
            self.enter(Phase::FailingOver { port });
        }
        Ok(())
    }

    /// Ends the disruption once the cluster is healthy (and, after a failover, `promoted` is a master).
    fn finish_when_healthy(
        &mut self,
        stack: &RedisStack,
        timeline: &mut Timeline,
        promoted: Option<u16>,
    ) {
        let ports = &stack.cluster.ports;
        let promoted_ok = promoted.is_none_or(|p| masters(p).is_ok_and(|m| m.contains(&p)));
        if promoted_ok && check_healthy(ports).is_ok() {
            let took = self.phase_since.elapsed().as_secs_f64();
            timeline.event(
                Stack::Redis,
                format!("cluster healthy again ({took:.1} s after the last step)"),
            );
            timeline.close_window(Stack::Redis);
            self.enter(Phase::Idle);
        }
    }
}

/// The replicas as the node on `port` sees them, sorted by port.
fn replicas(port: u16) -> anyhow::Result<Vec<u16>> {
    let mut ports: Vec<u16> = parse_nodes(&command(port, &["CLUSTER", "NODES"])?)
        .into_iter()
        .filter(|n| !n.master && !n.failing)
        .map(|n| n.port)
        .collect();
    ports.sort_unstable();
    if ports.is_empty() {
        anyhow::bail!("no replica to fail over to");
    }
    Ok(ports)
}
