//! Measuring and formatting for `netloop load`: latency histograms, the run clock, numbers
//! for people (`84,211`, `1.18ms`).

use std::time::Instant;

use hdrhistogram::Histogram;

/// Longest latency recorded exactly (60 s, in ns); longer ones are recorded as this value.
const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// Monotonic nanoseconds since the run started. Senders and receivers share one process, so
/// a timestamp written into a message is directly comparable when it comes back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock { start: Instant::now() }
    }

    /// Nanoseconds since the run started (vDSO clock read, no syscall).
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// Latency percentiles of a finished run, in microseconds (what the report and JSON show).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest value recorded.
    pub max: f64,
    /// Number of values recorded.
    pub count: u64,
}

/// An HDR histogram of the whole run plus one of the current progress interval, so the
/// once-a-second line shows the last second's p99, not the run's. Recording is two array
/// increments; nothing allocates after construction.
pub(crate) struct LatencyRecorder {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

impl std::fmt::Debug for LatencyRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyRecorder").field("count", &self.total.len()).finish_non_exhaustive()
    }
}

impl LatencyRecorder {
    pub(crate) fn new() -> Self {
        LatencyRecorder { total: new_histogram(), interval: new_histogram() }
    }

    /// Records one latency in nanoseconds (values past 60 s are clamped).
    #[inline]
    pub(crate) fn record(&mut self, ns: u64) {
        let v = ns.clamp(1, MAX_TRACKED_NS);
        self.total.saturating_record(v);
        self.interval.saturating_record(v);
    }

    /// The current interval's 99th percentile in ns (`None` if empty), then starts a new one.
    pub(crate) fn take_interval_p99(&mut self) -> Option<u64> {
        let p99 = (!self.interval.is_empty()).then(|| self.interval.value_at_quantile(0.99));
        self.interval.reset();
        p99
    }

    /// The whole run's histogram.
    pub(crate) fn histogram(&self) -> &Histogram<u64> {
        &self.total
    }

    /// Percentiles of the whole run, `None` if nothing was recorded.
    pub(crate) fn percentiles(&self) -> Option<Percentiles> {
        percentiles_of(&self.total)
    }
}

/// A histogram of nanoseconds, 1 ns to 60 s at 3 significant digits (~220 KB).
pub(crate) fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the crate's rules (low >= 1, high >= 2 * low,
    // sigfig <= 5), so this cannot fail.
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3).expect("constant histogram bounds are valid")
}

/// Percentiles of `h` in microseconds, `None` if it is empty.
pub(crate) fn percentiles_of(h: &Histogram<u64>) -> Option<Percentiles> {
    if h.is_empty() {
        return None;
    }
    let us = |ns: u64| round1(ns as f64 / 1000.0);
    Some(Percentiles {
        p50: us(h.value_at_quantile(0.50)),
        p90: us(h.value_at_quantile(0.90)),
        p99: us(h.value_at_quantile(0.99)),
        p999: us(h.value_at_quantile(0.999)),
        max: us(h.max()),
        count: h.len(),
    })
}

/// Rounds to one decimal (JSON figures stay short and stable).
pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `count / seconds`, 0 for an empty interval.
pub(crate) fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `1234567` as `1,234,567`.
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate rounded to a whole number, with thousands separators.
pub fn fmt_rate(x: f64) -> String {
    fmt_count(x.max(0.0).round() as u64)
}

/// A latency in microseconds for people: `52us`, `1.18ms`, `2.35s`.
pub fn fmt_us(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.1}us")
    } else if us < 1000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        let ms = format!("{:.2}", us / 1000.0);
        format!("{}ms", ms.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// A latency in nanoseconds for people (see [`fmt_us`]).
pub(crate) fn fmt_ns(ns: u64) -> String {
    fmt_us(ns as f64 / 1000.0)
}

/// Bytes per second as MB/s (10^6, as wrk and tcpkali print it).
pub fn fmt_mb_per_s(bytes_per_s: f64) -> String {
    format!("{:.2} MB/s", bytes_per_s / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_separators() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1000), "1,000");
        assert_eq!(fmt_count(19_968), "19,968");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
    }

    #[test]
    fn latencies_read_naturally() {
        assert_eq!(fmt_us(5.25), "5.2us");
        assert_eq!(fmt_us(52.4), "52us");
        assert_eq!(fmt_us(1180.0), "1.18ms");
        assert_eq!(fmt_us(1000.0), "1ms");
        assert_eq!(fmt_us(2_350_000.0), "2.35s");
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut r = LatencyRecorder::new();
        assert!(r.percentiles().is_none());
        for us in 1..=1000u64 {
            r.record(us * 1000);
        }
        let p = r.percentiles().expect("recorded");
        assert_eq!(p.count, 1000);
        assert!((p.p50 - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max - 1000.0).abs() < 1.0, "{p:?}");
        assert!(r.take_interval_p99().is_some());
        assert!(r.take_interval_p99().is_none(), "interval restarts empty");
        r.record(u64::MAX);
        assert!(r.percentiles().expect("recorded").max <= 60_000_000.0 * 1.001);
    }
}
