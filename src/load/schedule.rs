//! The send schedule of a run with a rate (`-r`): when each message was meant to leave, how
//! far behind the generator is, and whether the run kept to the rate.
//!
//! Message `n` (counting from 0 over all connections) is due `(n + 1) / rate` seconds after
//! the window starts. Latency is measured from that intended time, not from the moment the
//! message was actually written: a server that stalls leaves messages waiting in the generator
//! (no free pipeline slot, a sender blocked by backpressure), and timing them from their late
//! send would hide the stall from every one of them (coordinated omission). This is wrk2's
//! approach. HdrHistogram's corrected recording, the other remedy, adds synthetic samples at
//! an assumed expected interval after the fact; with a schedule the generator knows each
//! message's real wait, so it records exactly one true sample per message.
//!
//! The generator paces in ticks of its loop's timer (1 ms), so it sends each tick's messages
//! when the tick starts, up to one tick before they are due: a message sent early is timed
//! from its actual send, one sent late from its scheduled time. A server that keeps up then
//! shows its own latency, not the tick's granularity; any lateness of the generator itself is
//! charged (it cannot be told apart from the server's) and shown as the send delay.
//!
//! The intended times come from the message count, so a generator far behind holds no queue:
//! being behind is one counter.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::load::stats::{fmt_count, fmt_rate, new_histogram, per_second, percentiles_of, Percentiles};

/// How far the messages sent may fall short of those the schedule asked for before the run
/// counts as not keeping to the rate: 5%. A server that stalls briefly and then catches up
/// stays inside it even when the window ends in the stall; one that cannot sustain the rate
/// falls further behind every second and crosses it.
pub(crate) const RATE_TOLERANCE: f64 = 0.05;

/// The schedule of one run (`rate` > 0).
pub(crate) struct Schedule {
    /// Messages per second over all connections.
    rate: u64,
    /// How far ahead of its time a message may be sent (one pacing tick), in ns.
    lookahead_ns: u64,
    start_ns: u64,
    /// Messages sent so far (the next message's number).
    sent: u64,
    /// Messages the schedule had asked for at the last check.
    asked: u64,
    /// At the previous progress line, for the last second's send rate.
    sent_at_progress: u64,
    /// Intended time to actual send, per message: the generator's own lateness (its pacing
    /// granularity, or waiting for the server to take more).
    delay: Histogram<u64>,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule").field("rate", &self.rate).field("sent", &self.sent).finish_non_exhaustive()
    }
}

impl Schedule {
    /// A schedule of `rate` messages per second (at least 1), paced every `tick`.
    pub(crate) fn new(rate: u64, tick: Duration) -> Self {
        Schedule {
            rate: rate.max(1),
            lookahead_ns: tick.as_nanos() as u64,
            start_ns: 0,
            sent: 0,
            asked: 0,
            sent_at_progress: 0,
            delay: new_histogram(),
        }
    }

    /// The window starts at `now` (run clock, ns).
    pub(crate) fn start(&mut self, now: u64) {
        self.start_ns = now;
    }

    /// Messages to send at `now`: those due by the end of this tick and not yet sent.
    /// Remembers how many were due by `now` itself, for [`Schedule::behind`].
    pub(crate) fn due(&mut self, now: u64) -> u64 {
        self.asked = self.count_by(now);
        self.count_by(now.saturating_add(self.lookahead_ns)).saturating_sub(self.sent)
    }

    /// Messages the schedule asks for by `t`.
    fn count_by(&self, t: u64) -> u64 {
        let elapsed = t.saturating_sub(self.start_ns) as u128;
        (elapsed * self.rate as u128 / 1_000_000_000).min(u64::MAX as u128) as u64
    }

    /// Takes the next message for sending at `now`; returns where its latency starts: its
    /// scheduled time, or `now` when it goes out early.
    pub(crate) fn take(&mut self, now: u64) -> u64 {
        let n = self.sent as u128 + 1;
        let offset = (n * 1_000_000_000 / self.rate as u128).min(u64::MAX as u128) as u64;
        let intended = self.start_ns.saturating_add(offset);
        self.sent += 1;
        // Past the histogram's 60 s, recorded as 60 s.
        self.delay.saturating_record(now.saturating_sub(intended).max(1));
        intended.min(now)
    }

    /// Messages the schedule asked for at the last check that had not been sent.
    pub(crate) fn behind(&self) -> u64 {
        self.asked.saturating_sub(self.sent)
    }

    /// True when the run so far is short of the rate by more than [`RATE_TOLERANCE`].
    pub(crate) fn short(&self) -> bool {
        self.behind() as f64 > self.asked as f64 * RATE_TOLERANCE
    }

    /// How late messages were sent (ns), for merging.
    pub(crate) fn delay_histogram(&self) -> &Histogram<u64> {
        &self.delay
    }

    /// Send-delay percentiles of the run.
    pub(crate) fn delay(&self) -> Option<Percentiles> {
        percentiles_of(&self.delay)
    }

    /// Progress-line fields for the last `seconds`: nothing while on schedule, else how far
    /// behind, and the words `RATE NOT MET` once past the tolerance.
    pub(crate) fn progress(&mut self, out: &mut String, seconds: f64) {
        let sent = self.sent - self.sent_at_progress;
        self.sent_at_progress = self.sent;
        let behind = self.behind();
        if behind == 0 {
            return;
        }
        out.push_str(&format!("  behind {}", fmt_count(behind)));
        if self.short() {
            out.push_str(&format!(
                "  RATE NOT MET: sent {}/s of {}/s",
                fmt_rate(per_second(sent, seconds)),
                fmt_count(self.rate)
            ));
        }
    }

    /// The run's verdict: pushes a problem when it fell short of the rate by more than the
    /// tolerance. `advice` says what to change (mode-specific).
    pub(crate) fn check(&self, duration_s: f64, advice: &str, problems: &mut Vec<String>) {
        if !self.short() {
            return;
        }
        problems.push(format!(
            "rate not met: sent {}/s of the {}/s requested (-r), {} messages behind schedule \
             ({:.0}% short, tolerance {:.0}%); {advice}",
            fmt_rate(per_second(self.sent, duration_s)),
            fmt_count(self.rate),
            fmt_count(self.behind()),
            100.0 * self.behind() as f64 / self.asked.max(1) as f64,
            100.0 * RATE_TOLERANCE
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn messages_are_timed_from_their_place_in_the_schedule() {
        let mut s = Schedule::new(1000, Duration::ZERO);
        s.start(5 * MS);
        assert_eq!(s.due(5 * MS), 0);
        assert_eq!(s.due(8 * MS + 1), 3);
        assert_eq!(s.behind(), 3);
        // Sent 10 ms late, all three are charged from their own slot.
        assert_eq!(s.take(18 * MS), 6 * MS);
        assert_eq!(s.take(18 * MS), 7 * MS);
        assert_eq!(s.take(18 * MS), 8 * MS);
        assert_eq!(s.behind(), 0);
        let delay = s.delay().expect("recorded");
        assert!((delay.max - 12_000.0).abs() < 20.0, "{delay:?}");
    }

    #[test]
    fn a_tick_sends_its_messages_early_and_times_them_from_the_actual_send() {
        let mut s = Schedule::new(1000, Duration::from_millis(1));
        s.start(0);
        // At 2.5 ms, messages due at 1, 2 and 3 ms go out.
        assert_eq!(s.due(2 * MS + MS / 2), 3);
        assert_eq!(s.take(2 * MS + MS / 2), MS, "late: from its scheduled time");
        assert_eq!(s.take(2 * MS + MS / 2), 2 * MS);
        assert_eq!(s.take(2 * MS + MS / 2), 2 * MS + MS / 2, "early: from the actual send");
        assert_eq!(s.behind(), 0, "one ahead is not behind");
        assert_eq!(s.due(2 * MS + MS / 2), 0);
    }

    #[test]
    fn falling_behind_past_the_tolerance_is_a_failed_check() {
        let mut s = Schedule::new(1000, Duration::ZERO);
        s.start(0);
        for _ in 0..s.due(1000 * MS) - 40 {
            s.take(1000 * MS);
        }
        let mut problems = Vec::new();
        s.check(1.0, "lower -r", &mut problems);
        assert!(problems.is_empty(), "4% short is inside the tolerance: {problems:?}");
        let mut line = String::new();
        s.progress(&mut line, 1.0);
        assert_eq!(line, "  behind 40");

        assert_eq!(s.due(2000 * MS), 1040);
        for _ in 0..500 {
            s.take(2000 * MS);
        }
        assert!(s.short());
        s.check(2.0, "lower -r", &mut problems);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("rate not met: sent 730/s of the 1,000/s requested"), "{problems:?}");
        assert!(problems[0].contains("540 messages behind"), "{problems:?}");
        let mut line = String::new();
        s.progress(&mut line, 1.0);
        assert_eq!(line, "  behind 540  RATE NOT MET: sent 500/s of 1,000/s");
    }

    #[test]
    fn huge_rates_and_times_saturate_instead_of_wrapping() {
        let mut s = Schedule::new(u64::MAX, Duration::from_millis(1));
        s.start(0);
        assert_eq!(s.due(u64::MAX), u64::MAX);
        assert_eq!(s.take(u64::MAX), 0, "the first message is due at once");
        assert_eq!(s.behind(), u64::MAX - 1);
    }
}
