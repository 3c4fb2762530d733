//! Rise/fall hysteresis (as pingora and HAProxy do it): one lost packet does not take a backend out and
//! one lucky answer does not put a flapping one back.

/// Health of one backend as seen through consecutive check results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    up: Option<bool>,
    streak: u32,
    fall: u32,
    rise: u32,
}

/// A change of state the caller must apply and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The first check decided the initial state.
    Initial { up: bool },
    /// `streak` consecutive results in the new direction flipped the state.
    Changed { up: bool, streak: u32 },
}

impl Hysteresis {
    /// Starts undecided: the first result sets the state directly. At start-up there is no history to
    /// protect, and waiting `rise` rounds would refuse every client for that long.
    pub fn new(fall: u32, rise: u32) -> Hysteresis {
        Hysteresis {
            up: None,
            streak: 0,
            fall: fall.max(1),
            rise: rise.max(1),
        }
    }

    /// Continues from a state decided earlier (a config reload), so hysteresis still applies.
    pub fn resume(fall: u32, rise: u32, up: Option<bool>) -> Hysteresis {
        Hysteresis {
            up,
            ..Hysteresis::new(fall, rise)
        }
    }

    pub fn is_up(&self) -> Option<bool> {
        self.up
    }

    pub fn record(&mut self, ok: bool) -> Option<Transition> {
        let Some(up) = self.up else {
            self.up = Some(ok);
            return Some(Transition::Initial { up: ok });
        };
        if ok == up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if up { self.fall } else { self.rise };
        if self.streak < needed {
            return None;
        }
        let streak = self.streak;
        self.up = Some(ok);
        self.streak = 0;
        Some(Transition::Changed { up: ok, streak })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_decides() {
        let mut h = Hysteresis::new(3, 2);
        assert_eq!(h.record(false), Some(Transition::Initial { up: false }));
        let mut h = Hysteresis::new(3, 2);
        assert_eq!(h.record(true), Some(Transition::Initial { up: true }));
    }

    #[test]
    fn down_after_fall_consecutive_failures() {
        let mut h = Hysteresis::new(3, 2);
        h.record(true);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        // A success in between resets the count.
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(
            h.record(false),
            Some(Transition::Changed {
                up: false,
                streak: 3
            })
        );
        assert_eq!(h.is_up(), Some(false));
    }

    #[test]
    fn up_after_rise_consecutive_successes() {
        let mut h = Hysteresis::new(3, 2);
        h.record(false);
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None);
        assert_eq!(
            h.record(true),
            Some(Transition::Changed {
                up: true,
                streak: 2
            })
        );
        assert_eq!(h.record(true), None);
    }
}
