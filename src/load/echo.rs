//! `load echo`: C connections each keep K messages of `--size` bytes in flight against an echo
//! server (closed loop), or share a total message rate (`-r`); every echoed byte is checked.
//!
//! Each connection's byte stream is a window onto one shared pseudo-random pattern, starting
//! at an offset of its own: byte `p` of connection `c` is `pattern[(offset(c) + p) mod L]`,
//! with `L` prime so message boundaries wander over the pattern. Sending is a `write` of a
//! slice of the pattern and checking is a `memcmp` against it: no per-message allocation and
//! no per-byte arithmetic. A byte from another connection, a lost, duplicated or reordered
//! chunk, or a byte more than was sent shows up as a mismatch.
//!
//! A message's round trip ends when its last byte comes back. Its latency starts at the
//! message's intended send time with a rate (see `schedule`: a stalled server is charged for
//! the messages that had to wait), at its actual send in the closed loop. Those start times
//! live in one flat ring (K slots per connection), so recording a latency is two array
//! accesses.

use std::collections::VecDeque;
use std::time::Duration;

use crate::context::Context;
use crate::handler::SocketId;
use crate::load::report::{EchoReport, Histograms, LatencyFrom, ModeReport};
use crate::load::runner::{Handshake, Summary, Workload};
use crate::load::schedule::Schedule;
use crate::load::stats::{fmt_mb_per_s, fmt_ns, fmt_rate, per_second, LatencyRecorder};

/// Pattern period: prime, so consecutive messages start at different pattern offsets.
const PATTERN_LEN: usize = 65_521;
/// Longest single write; the pattern buffer extends this far past `PATTERN_LEN` so any write
/// is one contiguous slice.
const MAX_WRITE: usize = 64 * 1024;
/// Rate pacing interval.
const TICK: Duration = Duration::from_millis(1);

/// What `load echo` was asked to do.
#[derive(Debug, Clone)]
pub struct EchoConfig {
    /// Connections (`-c`).
    pub connections: usize,
    /// Message size in bytes (`--size`).
    pub size: usize,
    /// Messages in flight per connection (`--pipeline`).
    pub pipeline: usize,
    /// Total messages per second (`-r`); 0 = each connection sends as soon as an echo returns.
    pub rate: u64,
}

#[derive(Debug, Clone, Default)]
struct Conn {
    socket: Option<SocketId>,
    /// Pattern position of the next byte to send / to receive.
    send_pos: usize,
    recv_pos: usize,
    /// Messages sent; messages whose echo completed; bytes received.
    sent: u64,
    completed: u64,
    received: u64,
    /// Round trips completed inside the window.
    window_round_trips: u64,
    corrupt: bool,
    alive: bool,
    /// In `has_room` (rate mode).
    queued: bool,
}

/// The echo workload.
pub(crate) struct EchoLoad {
    cfg: EchoConfig,
    pattern: Box<[u8]>,
    conns: Vec<Conn>,
    /// Where each in-flight message's latency starts (run clock, ns): its intended send time
    /// with a rate, its actual one without. `pipeline` slots per connection.
    stamps: Vec<u64>,
    latency: LatencyRecorder,
    running: bool,
    round_trips: u64,
    interval_round_trips: u64,
    bytes_sent: u64,
    bytes_received: u64,
    interval_bytes: u64,
    corrupt_connections: u64,
    first_corruption: Option<String>,
    /// With a rate: when each message is due, and how far behind the generator is.
    schedule: Option<Schedule>,
    /// With a rate: connections with a free pipeline slot, in the order they freed it.
    has_room: VecDeque<u32>,
}

impl std::fmt::Debug for EchoLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoLoad").field("cfg", &self.cfg).field("round_trips", &self.round_trips).finish()
    }
}

impl EchoLoad {
    /// `cfg.size` and `cfg.pipeline` must be at least 1 (the CLI checks).
    pub(crate) fn new(cfg: EchoConfig) -> Self {
        let mut pattern = vec![0u8; PATTERN_LEN + MAX_WRITE].into_boxed_slice();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for b in pattern[..PATTERN_LEN].iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 24) as u8;
        }
        // The tail repeats the period, so every write is one contiguous slice.
        for i in PATTERN_LEN..pattern.len() {
            pattern[i] = pattern[i - PATTERN_LEN];
        }
        let conns = (0..cfg.connections)
            .map(|i| {
                // Spread the starting offsets over the pattern (an odd multiplier visits all).
                let offset = (i.wrapping_mul(7919) + i / PATTERN_LEN) % PATTERN_LEN;
                Conn { send_pos: offset, recv_pos: offset, ..Conn::default() }
            })
            .collect();
        let stamps = vec![0; cfg.connections * cfg.pipeline];
        EchoLoad {
            pattern,
            conns,
            stamps,
            latency: LatencyRecorder::new(),
            running: false,
            round_trips: 0,
            interval_round_trips: 0,
            bytes_sent: 0,
            bytes_received: 0,
            interval_bytes: 0,
            corrupt_connections: 0,
            first_corruption: None,
            schedule: (cfg.rate > 0).then(|| Schedule::new(cfg.rate, TICK)),
            has_room: VecDeque::new(),
            cfg,
        }
    }

    fn in_flight(&self, slot: usize) -> u64 {
        let c = &self.conns[slot];
        c.sent - c.completed
    }

    fn can_send(&self, slot: usize) -> bool {
        let c = &self.conns[slot];
        c.alive && !c.corrupt && self.in_flight(slot) < self.cfg.pipeline as u64
    }

    /// Sends `n` messages on `slot` as one contiguous run of pattern bytes; their latency will
    /// be measured from `start` (run clock, ns).
    fn send(&mut self, cx: &mut Context, slot: usize, n: u64, start: u64) {
        let k = self.cfg.pipeline;
        let c = &mut self.conns[slot];
        let Some(socket) = c.socket else { return };
        for i in 0..n {
            self.stamps[slot * k + ((c.sent + i) % k as u64) as usize] = start;
        }
        let mut left = n as usize * self.cfg.size;
        self.bytes_sent += left as u64;
        while left > 0 {
            let chunk = left.min(MAX_WRITE);
            // Queued by the loop if the kernel is full; bounded by pipeline x size.
            cx.write(socket, &self.pattern[c.send_pos..c.send_pos + chunk]);
            c.send_pos = (c.send_pos + chunk) % PATTERN_LEN;
            left -= chunk;
        }
        c.sent += n;
    }

    /// Checks `data` against the pattern; records the first mismatch.
    fn verify(&mut self, slot: usize, data: &[u8]) -> bool {
        let size = self.cfg.size as u64;
        let c = &mut self.conns[slot];
        let outstanding = c.sent * size - c.received;
        if data.len() as u64 > outstanding {
            let msg = format!(
                "connection {slot}: received {} bytes with only {outstanding} outstanding (at stream byte {}): \
                 the server sent data we did not send (a banner?)",
                data.len(),
                c.received
            );
            self.first_corruption.get_or_insert(msg);
            return false;
        }
        let mut pos = c.recv_pos;
        let mut rest = data;
        let mut checked = 0u64;
        while !rest.is_empty() {
            let n = rest.len().min(PATTERN_LEN - pos);
            let want = &self.pattern[pos..pos + n];
            if rest[..n] != *want {
                let i = rest[..n].iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                let msg = format!(
                    "connection {slot}: byte {} of its stream is {:#04x}, expected {:#04x}",
                    c.received + checked + i as u64,
                    rest[i],
                    want[i]
                );
                self.first_corruption.get_or_insert(msg);
                return false;
            }
            checked += n as u64;
            pos = (pos + n) % PATTERN_LEN;
            rest = &rest[n..];
        }
        c.recv_pos = pos;
        true
    }

    fn enqueue(&mut self, slot: usize) {
        if !self.conns[slot].queued && self.can_send(slot) {
            self.conns[slot].queued = true;
            self.has_room.push_back(slot as u32);
        }
    }

    /// With a rate: sends the messages due by `now` on connections with room, each stamped
    /// with its intended send time. What finds no room stays due (the schedule counts it).
    fn pump(&mut self, cx: &mut Context, now: u64) {
        let Some(mut schedule) = self.schedule.take() else { return };
        let mut due = schedule.due(now);
        while due > 0 {
            let Some(slot) = self.has_room.pop_front() else { break };
            let slot = slot as usize;
            self.conns[slot].queued = false;
            if !self.can_send(slot) {
                continue;
            }
            let intended = schedule.take(now);
            self.send(cx, slot, 1, intended);
            due -= 1;
            self.enqueue(slot);
        }
        self.schedule = Some(schedule);
    }
}

impl Workload for EchoLoad {
    fn connections(&self) -> usize {
        self.cfg.connections
    }

    fn on_connect(&mut self, _cx: &mut Context, slot: usize, socket: SocketId) -> Handshake {
        let c = &mut self.conns[slot];
        c.socket = Some(socket);
        c.alive = true;
        Handshake::Ready
    }

    fn on_data(&mut self, cx: &mut Context, slot: usize, _: SocketId, data: &[u8], now: u64) -> Handshake {
        if self.conns[slot].corrupt {
            return Handshake::Pending;
        }
        if !self.verify(slot, data) {
            self.conns[slot].corrupt = true;
            self.corrupt_connections += 1;
            return Handshake::Pending;
        }
        let size = self.cfg.size as u64;
        let k = self.cfg.pipeline;
        let c = &mut self.conns[slot];
        c.received += data.len() as u64;
        let done = c.received / size;
        let newly = done - c.completed;
        if self.running {
            for m in c.completed..done {
                let sent_at = self.stamps[slot * k + (m % k as u64) as usize];
                self.latency.record(now.saturating_sub(sent_at));
            }
            c.window_round_trips += newly;
            self.round_trips += newly;
            self.interval_round_trips += newly;
            self.bytes_received += data.len() as u64;
            self.interval_bytes += data.len() as u64;
        }
        c.completed = done;
        if self.running && newly > 0 {
            if self.schedule.is_none() {
                self.send(cx, slot, newly, now);
            } else {
                // Messages that waited for this slot go now, not at the next tick.
                self.enqueue(slot);
                self.pump(cx, now);
            }
        }
        Handshake::Pending
    }

    fn on_lost(&mut self, slot: usize) {
        self.conns[slot].alive = false;
    }

    fn start(&mut self, cx: &mut Context, now: u64) {
        self.running = true;
        if let Some(schedule) = &mut self.schedule {
            schedule.start(now);
        }
        for slot in 0..self.conns.len() {
            if self.schedule.is_none() {
                if self.can_send(slot) {
                    self.send(cx, slot, self.cfg.pipeline as u64, now);
                }
            } else {
                self.enqueue(slot);
            }
        }
    }

    fn tick_every(&self) -> Option<Duration> {
        self.schedule.is_some().then_some(TICK)
    }

    fn tick(&mut self, cx: &mut Context, now: u64) {
        self.pump(cx, now);
    }

    fn stop(&mut self) {
        self.running = false;
    }

    fn progress(&mut self, out: &mut String, seconds: f64) {
        let p99 = self.latency.take_interval_p99().map_or_else(|| "-".to_string(), fmt_ns);
        out.push_str(&format!(
            "  rtt/s {}  {}  p99 {p99}",
            fmt_rate(per_second(self.interval_round_trips, seconds)),
            fmt_mb_per_s(per_second(self.interval_bytes, seconds)),
        ));
        if let Some(schedule) = &mut self.schedule {
            schedule.progress(out, seconds);
        }
        if self.corrupt_connections > 0 {
            out.push_str(&format!("  CORRUPT {}", self.corrupt_connections));
        }
        self.interval_round_trips = 0;
        self.interval_bytes = 0;
    }

    fn finish(&mut self, duration_s: f64, _drain_s: f64, problems: &mut Vec<String>) -> Summary {
        let zero =
            self.conns.iter().filter(|c| c.socket.is_some() && c.window_round_trips == 0).count() as u64;
        if self.corrupt_connections > 0 {
            problems.push(format!(
                "{} connection(s) received corrupt echo data; first: {}",
                self.corrupt_connections,
                self.first_corruption.as_deref().unwrap_or("?")
            ));
        }
        let established = self.conns.iter().any(|c| c.socket.is_some());
        if established && self.round_trips == 0 {
            problems.push("no round trip completed (is the target an echo server?)".into());
        }
        if let Some(schedule) = &self.schedule {
            let advice = format!(
                "the server (or this generator: check its CPU) cannot sustain it with {} connection(s) \
                 at pipeline {}: lower -r, or raise -c or --pipeline",
                self.cfg.connections, self.cfg.pipeline
            );
            schedule.check(duration_s, &advice, problems);
        }
        let messages_sent = self.bytes_sent / self.cfg.size as u64;
        let histograms = Histograms {
            latency: Some(self.latency.histogram().clone()),
            send_delay: self.schedule.as_ref().map(|s| s.delay_histogram().clone()),
            connect_time: None,
        };
        Summary {
            histograms,
            completed: self.round_trips,
            bytes: self.bytes_received,
            latency: self.latency.percentiles(),
            latency_from: Some(if self.schedule.is_some() {
                LatencyFrom::ScheduledSend
            } else {
                LatencyFrom::ActualSend
            }),
            details: ModeReport::Echo(EchoReport {
                size: self.cfg.size,
                pipeline: self.cfg.pipeline,
                rate: self.cfg.rate,
                bytes_sent: self.bytes_sent,
                bytes_received: self.bytes_received,
                corrupt_connections: self.corrupt_connections,
                first_corruption: self.first_corruption.clone(),
                zero_round_trip_connections: zero,
                messages_sent,
                messages_per_s: per_second(messages_sent, duration_s),
                behind_schedule: self.schedule.as_ref().map_or(0, Schedule::behind),
                send_delay: self.schedule.as_ref().and_then(Schedule::delay),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_wraps_contiguously() {
        let e = EchoLoad::new(EchoConfig { connections: 3, size: 64, pipeline: 2, rate: 0 });
        for i in PATTERN_LEN..PATTERN_LEN + MAX_WRITE {
            assert_eq!(e.pattern[i], e.pattern[i % PATTERN_LEN]);
        }
        assert_ne!(e.conns[1].send_pos, e.conns[2].send_pos);
        // Not a short cycle: the pattern is not constant over a message.
        assert!(e.pattern[..64].iter().any(|&b| b != e.pattern[0]));
    }

    #[test]
    fn verify_catches_wrong_and_extra_bytes() {
        let mut e = EchoLoad::new(EchoConfig { connections: 2, size: 8, pipeline: 1, rate: 0 });
        e.conns[0].sent = 1;
        let start = e.conns[0].recv_pos;
        let good = e.pattern[start..start + 8].to_vec();
        assert!(e.verify(0, &good[..5]));
        e.conns[0].received = 5;
        let mut bad = good[5..].to_vec();
        bad[1] ^= 1;
        assert!(!e.verify(0, &bad));
        assert!(
            e.first_corruption.as_deref().is_some_and(|m| m.contains("byte 6")),
            "{:?}",
            e.first_corruption
        );
        e.conns[1].sent = 1;
        assert!(!e.verify(1, &[0; 9]), "more bytes than were sent");
    }
}
