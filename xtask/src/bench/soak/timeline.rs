//! What happened when during a soak: backend kills, restarts and recoveries as events, and the
//! disruption windows (from a kill to the stack being healthy again) that client errors are expected in.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Which of the two stacks something belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    Mongodb,
    Redis,
}

#[derive(Serialize, Clone)]
pub struct Event {
    /// Seconds since the load started.
    pub t: f64,
    pub stack: Stack,
    pub what: String,
}

/// A disruption: from the kill (or failover) to the stack being healthy again, plus a grace period
/// for clients to notice. Client errors inside are the expected price of a backend failure.
#[derive(Serialize, Clone)]
pub struct Window {
    pub stack: Stack,
    pub start: f64,
    /// `None` while still open (and at the end of a run that stopped mid-disruption).
    pub end: Option<f64>,
}

/// After a recovery, clients may still be failing requests they sent just before (timeouts, pooled
/// connections found dead on next use); those belong to the disruption.
pub const GRACE: Duration = Duration::from_secs(10);

pub struct Timeline {
    started: Instant,
    started_unix: f64,
    pub events: Vec<Event>,
    pub windows: Vec<Window>,
}

impl Timeline {
    pub fn start() -> Timeline {
        Timeline {
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            events: Vec::new(),
            windows: Vec::new(),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Seconds since the start at `at`.
    pub fn t(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.started).as_secs_f64()
    }

    /// Seconds since the start at unix time `unix`.
    pub fn t_of_unix(&self, unix: f64) -> f64 {
        unix - self.started_unix
    }

    pub fn event(&mut self, stack: Stack, what: impl Into<String>) {
        let event = Event {
            t: self.t(Instant::now()),
            stack,
            what: what.into(),
        };
        eprintln!(
            "    [{:>7.1}s] {:?}: {}",
            event.t,
            event.stack,
            event.what.as_str()
        );
        self.events.push(event);
    }

    pub fn open_window(&mut self, stack: Stack) {
        let start = self.t(Instant::now());
        self.windows.push(Window {
            stack,
            start,
            end: None,
        });
    }

    /// Closes `stack`'s open window, `GRACE` after now.
    pub fn close_window(&mut self, stack: Stack) {
        let end = self.t(Instant::now()) + GRACE.as_secs_f64();
        if let Some(w) = self
            .windows
            .iter_mut()
            .rev()
            .find(|w| w.stack == stack && w.end.is_none())
        {
            w.end = Some(end);
        }
    }
}

/// True when the one-second interval starting at `t` (since start; clients count errors per whole
/// second) overlaps one of `stack`'s windows. An open window lasts to the end.
pub fn in_window(windows: &[Window], stack: Stack, t: f64) -> bool {
    windows
        .iter()
        .filter(|w| w.stack == stack)
        .any(|w| t + 1.0 > w.start && w.end.is_none_or(|end| t <= end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_belong_to_their_stack_and_open_ones_last() {
        let windows = vec![
            Window {
                stack: Stack::Mongodb,
                start: 10.5,
                end: Some(30.0),
            },
            Window {
                stack: Stack::Redis,
                start: 100.0,
                end: None,
            },
        ];
        assert!(
            in_window(&windows, Stack::Mongodb, 10.0),
            "same second as the kill"
        );
        assert!(!in_window(&windows, Stack::Mongodb, 9.4));
        assert!(in_window(&windows, Stack::Mongodb, 30.0));
        assert!(!in_window(&windows, Stack::Mongodb, 31.0));
        assert!(!in_window(&windows, Stack::Redis, 20.0));
        assert!(in_window(&windows, Stack::Redis, 5000.0));
        assert!(!in_window(&windows, Stack::Mongodb, 5000.0));
    }
}
