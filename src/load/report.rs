//! The result of a load run: a table for people, one JSON object for scripts.
//!
//! The JSON keys are a stable interface (documented in `docs/load.md`): keys are only ever
//! added, never renamed or removed, and each names what it counts in every mode it appears in
//! (fan-out deliveries are `fanout.deliveries`, never `round_trips`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::load::stats::{fmt_count, fmt_mb_per_s, fmt_rate, fmt_us, Percentiles};

/// Everything a load run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// `idle`, `echo` or `fanout`.
    pub mode: &'static str,
    /// The target as given (`127.0.0.1:8080`, `unix:/tmp/echo.sock`).
    pub target: String,
    /// Length of the measured phase in seconds: the hold (idle) or the traffic window.
    pub duration_s: f64,
    /// Time from the first connect until every connection was up (or had failed).
    pub ramp_up_s: f64,
    /// How the connections went.
    pub connections: ConnectionReport,
    /// Completed exchanges: echo round trips, or fan-out deliveries; 0 for idle.
    pub completed: u64,
    /// `completed / (duration_s + drain)`.
    pub completed_per_s: f64,
    /// Bytes received per second: echoed bytes, delivered lines, or (idle) whatever the
    /// server sent during the hold.
    pub bytes_per_s: f64,
    /// Round-trip (echo) or delivery (fan-out) latency; `None` for idle or with no samples.
    pub latency: Option<Percentiles>,
    /// Where that latency starts; `None` for idle.
    pub latency_from: Option<LatencyFrom>,
    /// The mode's own figures.
    pub details: ModeReport,
    /// Why the run counts as failed; empty when it passed.
    pub problems: Vec<String>,
    /// Set when a signal cut the run short.
    pub interrupted: bool,
    /// The distributions behind the percentiles, so that the reports of the processes of a
    /// split run (`--workers`) merge exactly.
    pub histograms: Histograms,
}

/// Latency distributions of a run (nanoseconds), kept whole for merging.
#[derive(Debug, Clone, Default)]
pub struct Histograms {
    /// Round-trip or delivery latency.
    pub latency: Option<Histogram<u64>>,
    /// Time from `connect()` to established.
    pub connect_time: Option<Histogram<u64>>,
    /// With a rate: how late messages were sent.
    pub send_delay: Option<Histogram<u64>>,
}

/// Where a latency is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyFrom {
    /// With a rate: each message's intended send time, so waiting to be sent counts.
    ScheduledSend,
    /// With no rate (closed loop): the moment the message was written.
    ActualSend,
}

impl LatencyFrom {
    /// The JSON value of `latency_measured_from`.
    pub fn key(self) -> &'static str {
        match self {
            LatencyFrom::ScheduledSend => "scheduled_send",
            LatencyFrom::ActualSend => "actual_send",
        }
    }

    /// The table's note after the percentiles.
    fn words(self) -> &'static str {
        match self {
            LatencyFrom::ScheduledSend => "from each message's scheduled send",
            LatencyFrom::ActualSend => {
                "closed loop: from the actual send, so a stalled server \
                                        delays sends instead of showing here; use -r for that"
            }
        }
    }
}

/// Connection counts, failures by errno name, connect times.
#[derive(Debug, Clone, Default)]
pub struct ConnectionReport {
    /// Connections asked for.
    pub requested: u64,
    /// Connections attempted (less than requested when a limit stopped the generator).
    pub attempted: u64,
    /// Connections that completed the TCP (or Unix) connect.
    pub established: u64,
    /// Attempts that never became usable (connect error, timeout, refused handshake).
    pub failed: u64,
    /// `failed` by cause: errno names (`ECONNREFUSED`) or `EOF`, `handshake_timeout`, ...
    pub failures: BTreeMap<String, u64>,
    /// Usable connections that closed before the run ended.
    pub dropped: u64,
    /// `dropped` by cause.
    pub drops: BTreeMap<String, u64>,
    /// Connections open when the run ended.
    pub open_at_end: u64,
    /// `established / ramp_up_s`.
    pub connects_per_s: f64,
    /// Time from `connect()` to established.
    pub connect_time: Option<Percentiles>,
    /// The limit that stopped the generator short of `requested`, in words.
    pub limit: Option<String>,
    /// Source addresses used, when more than the default.
    pub sources: Option<String>,
}

/// Figures only one mode has.
#[derive(Debug, Clone)]
pub enum ModeReport {
    /// `load idle`.
    Idle(IdleReport),
    /// `load echo`.
    Echo(EchoReport),
    /// `load fanout`.
    Fanout(FanoutReport),
}

/// `load idle` figures.
#[derive(Debug, Clone, Default)]
pub struct IdleReport {
    /// Bytes servers sent on the held connections (banners, notices).
    pub bytes_received: u64,
}

/// `load echo` figures.
#[derive(Debug, Clone, Default)]
pub struct EchoReport {
    /// Message size in bytes.
    pub size: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Target messages per second over all connections; 0 = as fast as echoes return.
    pub rate: u64,
    /// Bytes written during the window.
    pub bytes_sent: u64,
    /// Bytes echoed back (and verified) during the window.
    pub bytes_received: u64,
    /// Connections that received a byte differing from what they sent (or extra bytes).
    pub corrupt_connections: u64,
    /// Where the first corruption was seen, in words.
    pub first_corruption: Option<String>,
    /// Established connections that completed no round trip in the window.
    pub zero_round_trip_connections: u64,
    /// Messages sent during the window.
    pub messages_sent: u64,
    /// `messages_sent / duration_s`.
    pub messages_per_s: f64,
    /// With a rate: messages the schedule had asked for by the end that were never sent
    /// (no connection had a free pipeline slot).
    pub behind_schedule: u64,
    /// With a rate: how late messages were sent after their scheduled time.
    pub send_delay: Option<Percentiles>,
}

/// `load fanout` figures.
#[derive(Debug, Clone, Default)]
pub struct FanoutReport {
    /// `chat` or `hub`.
    pub protocol: &'static str,
    /// Receiving connections.
    pub receivers: usize,
    /// Sending connections.
    pub senders: usize,
    /// Target messages per second over all senders; 0 = as fast as the server takes them.
    pub rate: u64,
    /// Message text size in bytes (0: as short as possible).
    pub size: usize,
    /// Messages the senders sent.
    pub messages_sent: u64,
    /// `messages_sent / duration_s`.
    pub messages_per_s: f64,
    /// Messages received by receivers, each counted once per receiver.
    pub deliveries: u64,
    /// `messages_sent x` receivers that stayed connected.
    pub deliveries_expected: u64,
    /// Deliveries that never arrived although a later message of the same sender did.
    pub lost: u64,
    /// Deliveries past the last one received from a sender that had not arrived when the
    /// drain phase ended (a server that is behind, or one that dropped the tail).
    pub undelivered: u64,
    /// Deliveries that arrived after a later message of the same sender.
    pub reordered: u64,
    /// Deliveries received more than once.
    pub duplicated: u64,
    /// Lines carrying another run's tag (another generator on the same server); ignored.
    pub foreign: u64,
    /// Time spent after sending stopped waiting for the last deliveries.
    pub drain_s: f64,
    /// With a rate: messages the schedule had asked for by the end that were never sent
    /// (every sender was blocked).
    pub behind_schedule: u64,
    /// With a rate: how late messages were sent after their scheduled time.
    pub send_delay: Option<Percentiles>,
}

impl Report {
    /// True when nothing in the run counts as a failure (exit status 0).
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report as one JSON object (keys documented in `docs/load.md`).
    pub fn to_json(&self) -> Value {
        let c = &self.connections;
        let mut out = Map::new();
        out.insert("mode".into(), json!(self.mode));
        out.insert("target".into(), json!(self.target));
        out.insert("ok".into(), json!(self.passed()));
        out.insert("problems".into(), json!(self.problems));
        out.insert("interrupted".into(), json!(self.interrupted));
        out.insert("duration_s".into(), json!(round3(self.duration_s)));
        out.insert("ramp_up_s".into(), json!(round3(self.ramp_up_s)));
        out.insert(
            "connections".into(),
            json!({
                "requested": c.requested,
                "attempted": c.attempted,
                "established": c.established,
                "failed": c.failed,
                "failures": c.failures,
                "dropped": c.dropped,
                "drops": c.drops,
                "open_at_end": c.open_at_end,
                "connects_per_s": round1(c.connects_per_s),
                "connect_time_us": percentiles_json(c.connect_time.as_ref()),
                "limit": c.limit,
                "sources": c.sources,
            }),
        );
        if let ModeReport::Echo(_) = self.details {
            out.insert("round_trips".into(), json!(self.completed));
            out.insert("round_trips_per_s".into(), json!(round1(self.completed_per_s)));
        }
        out.insert("bytes_per_s".into(), json!(round1(self.bytes_per_s)));
        out.insert("latency_us".into(), percentiles_json(self.latency.as_ref()));
        out.insert("latency_measured_from".into(), json!(self.latency_from.map(LatencyFrom::key)));
        let (key, details) = match &self.details {
            ModeReport::Idle(d) => ("idle", json!({ "bytes_received": d.bytes_received })),
            ModeReport::Echo(d) => (
                "echo",
                json!({
                    "size": d.size,
                    "pipeline": d.pipeline,
                    "rate": d.rate,
                    "bytes_sent": d.bytes_sent,
                    "bytes_received": d.bytes_received,
                    "corrupt_connections": d.corrupt_connections,
                    "first_corruption": d.first_corruption,
                    "zero_round_trip_connections": d.zero_round_trip_connections,
                    "messages_sent": d.messages_sent,
                    "messages_per_s": round1(d.messages_per_s),
                    "behind_schedule": d.behind_schedule,
                    "send_delay_us": percentiles_json(d.send_delay.as_ref()),
                }),
            ),
            ModeReport::Fanout(d) => (
                "fanout",
                json!({
                    "protocol": d.protocol,
                    "receivers": d.receivers,
                    "senders": d.senders,
                    "rate": d.rate,
                    "size": d.size,
                    "messages_sent": d.messages_sent,
                    "messages_per_s": round1(d.messages_per_s),
                    "deliveries": d.deliveries,
                    "deliveries_expected": d.deliveries_expected,
                    "deliveries_per_s": round1(self.completed_per_s),
                    "lost": d.lost,
                    "undelivered": d.undelivered,
                    "reordered": d.reordered,
                    "duplicated": d.duplicated,
                    "foreign": d.foreign,
                    "drain_s": round3(d.drain_s),
                    "behind_schedule": d.behind_schedule,
                    "send_delay_us": percentiles_json(d.send_delay.as_ref()),
                }),
            ),
        };
        out.insert(key.into(), details);
        Value::Object(out)
    }

    /// The report as an aligned table for a terminal.
    pub fn to_table(&self) -> String {
        let mut t = Table::default();
        let c = &self.connections;
        let title = match &self.details {
            ModeReport::Idle(_) => format!("{} connections held", fmt_count(c.requested)),
            ModeReport::Echo(d) => format!(
                "{} connections, {} B messages, pipeline {}{}",
                fmt_count(c.requested),
                d.size,
                d.pipeline,
                rate_text(d.rate)
            ),
            ModeReport::Fanout(d) => format!(
                "{} protocol, {} receivers, {} senders{}",
                d.protocol,
                fmt_count(d.receivers as u64),
                d.senders,
                rate_text(d.rate)
            ),
        };
        let mut out = format!("netloop load {} {}: {title}\n", self.mode, self.target);
        let mut conns = format!(
            "{} requested, {} established, {} failed, {} dropped, {} open at end",
            fmt_count(c.requested),
            fmt_count(c.established),
            fmt_count(c.failed),
            fmt_count(c.dropped),
            fmt_count(c.open_at_end)
        );
        if c.attempted < c.requested {
            let _ = write!(conns, " ({} never attempted)", fmt_count(c.requested - c.attempted));
        }
        t.row("connections", conns);
        if let Some(limit) = &c.limit {
            t.row("limit", format!("stopped at {} connections: {limit}", fmt_count(c.open_at_end)));
        }
        if !c.failures.is_empty() {
            t.row("failures", by_cause(&c.failures));
        }
        if !c.drops.is_empty() {
            t.row("drops", by_cause(&c.drops));
        }
        if let Some(sources) = &c.sources {
            t.row("sources", sources.clone());
        }
        t.row("ramp-up", format!("{:.2}s, {} connects/s", self.ramp_up_s, fmt_rate(c.connects_per_s)));
        if let Some(p) = &c.connect_time {
            t.row("connect time", percentiles_text(p));
        }
        match &self.details {
            ModeReport::Idle(d) => {
                t.row("held", format!("{:.2}s", self.duration_s));
                if d.bytes_received > 0 {
                    t.row("received", format!("{} bytes from the server", fmt_count(d.bytes_received)));
                }
            }
            ModeReport::Echo(d) => {
                t.row("duration", format!("{:.2}s", self.duration_s));
                t.row("messages", sent_text(d.messages_sent, d.messages_per_s, d.rate, d.behind_schedule));
                t.row(
                    "round trips",
                    format!("{} ({}/s)", fmt_count(self.completed), fmt_rate(self.completed_per_s)),
                );
                t.row(
                    "throughput",
                    format!("{} echoed ({} sent)", fmt_mb_per_s(self.bytes_per_s), fmt_count(d.bytes_sent)),
                );
                self.latency_rows(&mut t, d.send_delay.as_ref());
                t.row(
                    "verification",
                    format!(
                        "{} bytes checked, {} corrupt connections, {} connections with zero round trips",
                        fmt_count(d.bytes_received),
                        d.corrupt_connections,
                        d.zero_round_trip_connections
                    ),
                );
            }
            ModeReport::Fanout(d) => {
                t.row("duration", format!("{:.2}s sending, {:.2}s draining", self.duration_s, d.drain_s));
                t.row("messages", sent_text(d.messages_sent, d.messages_per_s, d.rate, d.behind_schedule));
                t.row(
                    "deliveries",
                    format!(
                        "{} of {} expected ({}/s, {})",
                        fmt_count(d.deliveries),
                        fmt_count(d.deliveries_expected),
                        fmt_rate(self.completed_per_s),
                        fmt_mb_per_s(self.bytes_per_s)
                    ),
                );
                self.latency_rows(&mut t, d.send_delay.as_ref());
                let mut check = format!(
                    "{} lost, {} undelivered, {} reordered, {} duplicated",
                    fmt_count(d.lost),
                    fmt_count(d.undelivered),
                    fmt_count(d.reordered),
                    fmt_count(d.duplicated)
                );
                if d.foreign > 0 {
                    let _ = write!(check, ", {} lines from another run ignored", fmt_count(d.foreign));
                }
                t.row("verification", check);
            }
        }
        if self.interrupted {
            t.row("interrupted", "by a signal; figures cover the run so far".into());
        }
        if self.problems.is_empty() {
            t.row("result", "OK".into());
        } else {
            t.row("result", format!("FAILED: {}", self.problems.join("; ")));
        }
        out.push_str(&t.render());
        out
    }
}

impl Report {
    /// The latency row, saying where it is measured from, and with a rate the send delay.
    fn latency_rows(&self, t: &mut Table, send_delay: Option<&Percentiles>) {
        if let Some(p) = &self.latency {
            let from = self.latency_from.map_or("", LatencyFrom::words);
            t.row("latency", format!("{}  ({from})", percentiles_text(p)));
        }
        if let Some(p) = send_delay {
            t.row("send delay", format!("{}  (scheduled to actual send)", percentiles_text(p)));
        }
    }
}

fn rate_text(rate: u64) -> String {
    if rate > 0 {
        format!(", {} msg/s in total", fmt_count(rate))
    } else {
        String::new()
    }
}

/// `3,000 sent (1,000/s of 1,000/s requested)`, and how far behind when the rate was not met.
fn sent_text(sent: u64, per_s: f64, rate: u64, behind: u64) -> String {
    let mut out = format!("{} sent ({}/s", fmt_count(sent), fmt_rate(per_s));
    if rate > 0 {
        let _ = write!(out, " of {}/s requested", fmt_count(rate));
    }
    out.push(')');
    if behind > 0 {
        let _ = write!(out, ", {} behind schedule at the end", fmt_count(behind));
    }
    out
}

/// `ECONNREFUSED 3, ETIMEDOUT 1`.
fn by_cause(map: &BTreeMap<String, u64>) -> String {
    map.iter().map(|(k, v)| format!("{k} {}", fmt_count(*v))).collect::<Vec<_>>().join(", ")
}

fn percentiles_text(p: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        fmt_us(p.p50),
        fmt_us(p.p90),
        fmt_us(p.p99),
        fmt_us(p.p999),
        fmt_us(p.max)
    )
}

fn percentiles_json(p: Option<&Percentiles>) -> Value {
    match p {
        Some(p) => json!({"p50": p.p50, "p90": p.p90, "p99": p.p99, "p999": p.p999, "max": p.max}),
        None => Value::Null,
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Two aligned columns.
#[derive(Default)]
struct Table {
    rows: Vec<(&'static str, String)>,
}

impl Table {
    fn row(&mut self, key: &'static str, value: String) {
        self.rows.push((key, value));
    }

    fn render(&self) -> String {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in &self.rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
        out
    }
}
