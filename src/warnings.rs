//! The loop's repeated warnings (refusals at the cap, fd exhaustion, output-limit and input
//! cuts): each kind has its own [`LogBudget`], and what a burst did not log is summarised with
//! its count by a one-second timer that exists only while something is owed, so a flood costs
//! a bounded number of lines and every event is still accounted for once the burst ends.

use std::time::Duration;

use crate::log_limit::LogBudget;

/// Warning lines admitted per second and kind.
const PER_SECOND: u32 = 5;

/// How long after the first unlogged warning its summary is written.
pub(crate) const SUMMARY_DELAY: Duration = Duration::from_secs(1);

/// One kind of repeated warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Warning {
    /// A connection refused at `--max-connections`.
    Refused,
    /// `accept` failed for want of a file descriptor; events carry the connections shed.
    OutOfFds,
    /// A socket cut at its output limit (hard or soft).
    OutputLimit,
    /// A socket cut for its unfinished input (total limit or timeout).
    InputCut,
}

const KINDS: [Warning; 4] = [Warning::Refused, Warning::OutOfFds, Warning::OutputLimit, Warning::InputCut];

impl Warning {
    /// How the summary names the events it counts.
    fn summary(self, lines: u64, items: u64) -> String {
        match self {
            Warning::Refused => {
                format!("{lines} more connection(s) refused at max connections, not logged one by one")
            }
            Warning::OutOfFds => format!(
                "{lines} more out-of-file-descriptor event(s), not logged one by one: {items} pending \
                 connection(s) closed"
            ),
            Warning::OutputLimit => {
                format!("{lines} more client(s) cut at their output limit, not logged one by one")
            }
            Warning::InputCut => {
                format!("{lines} more client(s) cut for unfinished input, not logged one by one")
            }
        }
    }
}

/// The budgets of every kind, and what their dropped lines stood for.
#[derive(Debug)]
pub(crate) struct Warnings {
    budgets: [LogBudget; 4],
    /// Items (connections) behind the lines dropped and not yet summarised, per kind.
    unlogged_items: [u64; 4],
    /// The summary timer is armed.
    pub summary_armed: bool,
}

impl Default for Warnings {
    fn default() -> Self {
        Warnings {
            budgets: [const { LogBudget::new(PER_SECOND) }; 4],
            unlogged_items: [0; 4],
            summary_armed: false,
        }
    }
}

impl Warnings {
    /// Whether a warning of `kind` standing for `items` events may be logged now (`now` is the
    /// loop's elapsed time). Before an admitted line, the summary of what was dropped since the
    /// last one is logged. A refused one is counted for the summary: the caller then arms the
    /// summary timer if [`Warnings::summary_armed`] is false.
    pub fn admit(&mut self, kind: Warning, now: Duration, items: u64) -> bool {
        let i = kind as usize;
        match self.budgets[i].admit(now) {
            Some(dropped) => {
                self.log_summary(kind, dropped);
                true
            }
            None => {
                self.unlogged_items[i] += items;
                false
            }
        }
    }

    /// Logs the summary of every kind with lines dropped since its last line.
    pub fn flush(&mut self) {
        self.summary_armed = false;
        for kind in KINDS {
            let dropped = self.budgets[kind as usize].take_dropped();
            self.log_summary(kind, dropped);
        }
    }

    fn log_summary(&mut self, kind: Warning, dropped: u64) {
        let items = std::mem::take(&mut self.unlogged_items[kind as usize]);
        if dropped > 0 {
            log::warn!("{}", kind.summary(dropped, items));
        }
    }
}
