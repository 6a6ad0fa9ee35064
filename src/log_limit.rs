//! A budget for log lines any peer can trigger (refused connections, failed logins, messages
//! to the server): at most N lines a second, the rest counted and summarised, so a flood of
//! events costs a bounded number of log lines and none goes unaccounted.

use std::time::Duration;

/// At most `per_second` lines in each whole second of loop time; what is over is counted and
/// reported with the next line that is admitted, or by [`LogBudget::take_dropped`].
#[derive(Debug, Clone)]
pub struct LogBudget {
    per_second: u32,
    second: u64,
    used: u32,
    dropped: u64,
}

impl LogBudget {
    /// A budget of `per_second` lines a second.
    pub const fn new(per_second: u32) -> LogBudget {
        LogBudget { per_second, second: 0, used: 0, dropped: 0 }
    }

    /// `Some(lines dropped since the last admitted one)` if a line may be logged now (`now`
    /// is the loop's elapsed time, [`crate::Context::elapsed`]); `None` counts it as dropped.
    pub fn admit(&mut self, now: Duration) -> Option<u64> {
        if now.as_secs() != self.second {
            self.second = now.as_secs();
            self.used = 0;
        }
        if self.used >= self.per_second {
            self.dropped += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.dropped))
    }

    /// Lines dropped and not yet reported, now reported: for a periodic summary, so the count
    /// of a burst that ended is not held until the next event.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// The most lines admitted in one second.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_per_second_and_counts_the_rest() {
        let mut b = LogBudget::new(2);
        let t = Duration::from_millis(1500);
        assert_eq!(b.admit(t), Some(0));
        assert_eq!(b.admit(t), Some(0));
        assert_eq!(b.admit(t), None);
        assert_eq!(b.admit(t), None);
        // A new second: the first line carries the count of what was dropped.
        assert_eq!(b.admit(Duration::from_millis(2100)), Some(2));
        assert_eq!(b.admit(Duration::from_millis(2200)), Some(0));
        assert_eq!(b.admit(Duration::from_millis(2300)), None);
        assert_eq!(b.take_dropped(), 1);
        assert_eq!(b.take_dropped(), 0);
    }
}
