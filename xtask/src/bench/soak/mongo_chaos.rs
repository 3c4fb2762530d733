//! MongoDB-mode disruption: every K seconds one mongos stand-in is SIGKILLed (in turn), stays down for
//! a while, is started again on the same port (empty: storage is in memory), and the disruption ends
//! when Puerta's health checks report it up again.

use std::time::{Duration, Instant};

use super::stacks::MongoStack;
use super::timeline::{Stack, Timeline};

/// How long a killed stand-in stays down: long enough for the health checks to mark it down and for
/// clients pinned to it to be re-placed, short enough to recover well before the next kill.
fn down_for(kill_every: Duration) -> Duration {
    (kill_every / 3).clamp(Duration::from_secs(5), Duration::from_secs(30))
}

/// Longer than this from restart to "up" again is worth a line in the report.
const RECOVERY_WARNING: Duration = Duration::from_secs(60);

enum Phase {
    Idle,
    Down {
        port: u16,
        restart_at: Instant,
    },
    Recovering {
        port: u16,
        since: Instant,
        warned: bool,
    },
}

pub struct MongoChaos {
    every: Duration,
    next_kill: Instant,
    kills: usize,
    phase: Phase,
}

impl MongoChaos {
    pub fn new(every: Duration, started: Instant) -> MongoChaos {
        MongoChaos {
            every,
            next_kill: started + every,
            kills: 0,
            phase: Phase::Idle,
        }
    }

    pub fn poll(&mut self, stack: &mut MongoStack, timeline: &mut Timeline) -> anyhow::Result<()> {
        let now = Instant::now();
        match self.phase {
            Phase::Idle if now >= self.next_kill => self.kill(stack, timeline),
            Phase::Down { port, restart_at } if now >= restart_at => {
                stack.standins.restart(port)?;
                timeline.event(Stack::Mongodb, format!("restarted stand-in :{port}"));
                self.phase = Phase::Recovering {
                    port,
                    since: Instant::now(),
                    warned: false,
                };
            }
            Phase::Recovering {
                port,
                since,
                warned,
            } => {
                if stack.backend_up(port) {
                    timeline.event(Stack::Mongodb, format!("puerta reports :{port} up"));
                    timeline.close_window(Stack::Mongodb);
                    self.phase = Phase::Idle;
                } else if !warned && since.elapsed() > RECOVERY_WARNING {
                    timeline.event(
                        Stack::Mongodb,
                        format!(
                            "WARNING: :{port} restarted {RECOVERY_WARNING:?} ago, still not up"
                        ),
                    );
                    self.phase = Phase::Recovering {
                        port,
                        since,
                        warned: true,
                    };
                }
            }
            _ => {}
        }
        if !matches!(self.phase, Phase::Idle) && now >= self.next_kill + self.every / 2 {
            timeline.event(
                Stack::Mongodb,
                "skipped a kill: the last one has not recovered",
            );
            self.next_kill += self.every;
        }
        Ok(())
    }

    fn kill(&mut self, stack: &mut MongoStack, timeline: &mut Timeline) {
        let ports = stack.standins.ports();
        let port = ports[self.kills % ports.len()];
        self.kills += 1;
        self.next_kill += self.every;
        timeline.open_window(Stack::Mongodb);
        stack.standins.kill(port);
        timeline.event(Stack::Mongodb, format!("SIGKILL stand-in :{port}"));
        self.phase = Phase::Down {
            port,
            restart_at: Instant::now() + down_for(self.every),
        };
    }
}
