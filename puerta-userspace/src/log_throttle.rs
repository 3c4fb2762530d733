//! Rate-limits a log line that can fire once per connection (refusals, accept errors), so a flood of
//! clients cannot flood the log too; the line that does get out says how many it stands for.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LogThrottle {
    period: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub fn new(period: Duration) -> LogThrottle {
        LogThrottle {
            period,
            state: Mutex::new(ThrottleState::default()),
        }
    }

    /// Records one event; `Some(n)` means "log now, for these n events" (this one and the suppressed).
    pub fn hit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.suppressed += 1;
        let due = s
            .last_logged
            .is_none_or(|t| now.saturating_duration_since(t) >= self.period);
        if !due {
            return None;
        }
        s.last_logged = Some(now);
        Some(std::mem::take(&mut s.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_counting_the_rest() {
        let t = LogThrottle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(t.hit(start), Some(1));
        assert_eq!(t.hit(start + Duration::from_millis(10)), None);
        assert_eq!(t.hit(start + Duration::from_millis(20)), None);
        assert_eq!(t.hit(start + Duration::from_secs(1)), Some(3));
        assert_eq!(t.hit(start + Duration::from_millis(1500)), None);
    }
}
