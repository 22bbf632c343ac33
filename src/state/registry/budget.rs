//! The rate at which an instance's activity changes are logged: a token
//! bucket kept in its registry entry.

use chrono::Utc;

/// Activity changes of one instance logged at once before the limit
/// applies, and how often one more may be logged after: the box writes its
/// activity, and a box flipping it as fast as we read it filled the shared
/// event log with its changes (every other event rotated out within
/// hours). The registry and the prompt still get every change.
const LOG_BURST: f64 = 20.0;
const LOG_EVERY_SECS: f64 = 5.0;

/// A token bucket per instance, kept in its registry entry (every process
/// that reads activity shares it), and the changes left out since the last
/// one logged (which carries their count as `dropped`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LogBudget {
    tokens: f64,
    at: chrono::DateTime<Utc>,
    #[serde(default)]
    dropped: u64,
}

impl LogBudget {
    pub fn full() -> Self {
        LogBudget {
            tokens: LOG_BURST,
            at: Utc::now(),
            dropped: 0,
        }
    }

    /// `Some(dropped before it)` when a change at `now` is logged.
    pub fn admit(&mut self, now: chrono::DateTime<Utc>) -> Option<u64> {
        let secs = (now - self.at).num_milliseconds().max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + secs / LOG_EVERY_SECS).min(LOG_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.dropped))
        } else {
            self.dropped += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_events_are_limited_per_instance_and_the_rest_counted() {
        let mut b = LogBudget::full();
        let t0 = b.at;
        let logged = (0..100).filter(|_| b.admit(t0).is_some()).count();
        assert_eq!(logged, LOG_BURST as usize);
        let later = t0 + chrono::Duration::milliseconds((LOG_EVERY_SECS * 1000.0) as i64);
        assert_eq!(
            b.admit(later),
            Some(100 - LOG_BURST as u64),
            "the count comes with the next"
        );
        assert_eq!(b.admit(later), None);
    }
}
