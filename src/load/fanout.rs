//! `load fanout`: R receivers and S senders on a chat or hub server; senders send at a total
//! rate, receivers time every delivery and check every sender's sequence.
//!
//! Each message's text is `NLM <run> <sender> <seq> <sent_ns>` (padded with `x` to `--size`):
//! the run tag (so lines from another generator on the same server are ignored), the sender's
//! slot, its sequence number (0, 1, 2, ...) and the time its latency starts on this process's
//! monotonic clock: with a rate, its intended send time (see `schedule`), so a message that
//! waited in the generator (every sender blocked by backpressure, or the generator busy with
//! a burst of deliveries) is charged for the wait; with no rate, its actual send. Chat carries it as a line (`text\n`, received as `<label>: text`); the hub as
//! `{"type":"broadcast","message":"NLM ..."}` (received as
//! `{"type":"broadcast","from":N,"message":"NLM ..."}`). Neither server echoes a message to
//! its sender, and senders are separate connections, so every receiver should get every
//! message: `deliveries == messages x receivers`.
//!
//! Readiness before the window starts: a chat connection is in the room once its
//! `* welcome ...` line arrives; a hub receiver sends `{"type":"join",...}` and waits for
//! `joined` (a cheap round trip that proves the server registered it, without the
//! `online` notice to every client that a `sync` costs), a hub sender syncs under a name
//! of its own and waits for `synced`.
//!
//! Per (receiver, sender) pair the receiver keeps the next expected sequence number and the
//! count of open gaps: a number past the expected one opens a gap (possibly lost), one below
//! it fills a gap (reordered) or, with no gap open, is a duplicate. Gaps still open at the end
//! are lost; messages after the last one seen that never arrived before the drain timeout are
//! reported apart, as undelivered (a server that is behind rather than one that drops).

use std::io::Write as _;
use std::time::Duration;

use crate::context::Context;
use crate::handler::SocketId;
use crate::line::LineSplitter;
use crate::load::report::{FanoutReport, Histograms, LatencyFrom, ModeReport};
use crate::load::runner::{Handshake, Summary, Workload};
use crate::load::schedule::Schedule;
use crate::load::stats::{fmt_count, fmt_ns, fmt_rate, per_second, LatencyRecorder};
use crate::wire::chat::{Input, ServerLine};
use crate::wire::hub::{Reply, Request};

/// Rate pacing interval.
const TICK: Duration = Duration::from_millis(1);
/// With no rate: messages one sender writes per tick at most, so one sender cannot hold the
/// loop while the kernel keeps taking data.
const BURST: usize = 256;
/// Longest line a receiver accepts (the servers' own default limits are 64 KiB and 1 MiB).
const MAX_LINE: usize = 1024 * 1024 + 64;
/// Marker that starts every message text.
const MARK: &[u8] = b"NLM ";

/// The server protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutProtocol {
    /// Line chat: `text\n` to every other client as `<label>: text`.
    Chat,
    /// JSON hub: `broadcast` to every other client.
    Hub,
}

impl FanoutProtocol {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FanoutProtocol::Chat => "chat",
            FanoutProtocol::Hub => "hub",
        }
    }
}

/// What `load fanout` was asked to do.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// `chat` or `hub`.
    pub protocol: FanoutProtocol,
    /// Receiving connections (`--receivers`).
    pub receivers: usize,
    /// Sending connections (`--senders`).
    pub senders: usize,
    /// Total messages per second over all senders (`-r`); 0 = as fast as the server takes them.
    pub rate: u64,
    /// Pad each message text to this many bytes (`--size`); 0 = no padding.
    pub size: usize,
    /// Where the senders connect when not to the receivers' server (`--senders-at`): another
    /// node of the same cluster, so every delivery crosses nodes.
    pub senders_at: Option<crate::addr::AddressSpec>,
    /// Where every other connection (receivers and senders alike) connects (`--half-at`):
    /// another node of the same cluster, so there are members on both and half of the
    /// deliveries cross nodes.
    pub half_at: Option<crate::addr::AddressSpec>,
}

#[derive(Debug)]
struct Receiver {
    lines: LineSplitter,
    ready: bool,
    alive: bool,
    /// Unique deliveries to this receiver.
    delivered: u64,
}

#[derive(Debug)]
struct Sender {
    socket: Option<SocketId>,
    /// Only until the handshake line has arrived.
    lines: Option<LineSplitter>,
    ready: bool,
    alive: bool,
    blocked: bool,
    /// Messages sent (= the next sequence number).
    sent: u64,
}

/// Expected next sequence number and open gaps, per (receiver, sender).
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    next: u64,
    gaps: u64,
}

/// The fields a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    tag: u32,
    sender: usize,
    seq: u64,
    sent_ns: u64,
}

/// What one received line was.
enum Line {
    Handshake,
    Refused(String),
    Message(Stamp),
    Other,
}

/// The fan-out workload.
pub(crate) struct FanoutLoad {
    cfg: FanoutConfig,
    tag: u32,
    receivers: Vec<Receiver>,
    senders: Vec<Sender>,
    tracks: Vec<Track>,
    /// Message being composed (reused).
    msg: Vec<u8>,
    /// Its text (reused): for the hub, as the JSON string the request carries.
    text: Vec<u8>,
    latency: LatencyRecorder,
    running: bool,
    /// With a rate: when each message is due, and how far behind the senders are.
    schedule: Option<Schedule>,
    sent_total: u64,
    interval_sent: u64,
    next_sender: usize,
    deliveries: u64,
    interval_deliveries: u64,
    delivered_bytes: u64,
    /// Unique deliveries to receivers still connected (for `settled`).
    delivered_alive: u64,
    alive_receivers: u64,
    reordered: u64,
    duplicated: u64,
    open_gaps: u64,
    foreign: u64,
}

impl std::fmt::Debug for FanoutLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutLoad").field("cfg", &self.cfg).field("deliveries", &self.deliveries).finish()
    }
}

impl FanoutLoad {
    /// `cfg.receivers` and `cfg.senders` must be at least 1 (the CLI checks).
    pub(crate) fn new(cfg: FanoutConfig) -> Self {
        // A run tag from the pid and the clock: different for runs sharing one server.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tag = (std::process::id().wrapping_mul(2_654_435_761) ^ nanos) % 1_000_000_000;
        let receivers = (0..cfg.receivers)
            .map(|_| Receiver {
                lines: LineSplitter::new(MAX_LINE),
                ready: false,
                alive: false,
                delivered: 0,
            })
            .collect();
        let senders = (0..cfg.senders)
            .map(|_| Sender {
                socket: None,
                lines: Some(LineSplitter::new(MAX_LINE)),
                ready: false,
                alive: false,
                blocked: false,
                sent: 0,
            })
            .collect();
        FanoutLoad {
            tracks: vec![Track::default(); cfg.receivers * cfg.senders],
            msg: Vec::with_capacity(cfg.size + 128),
            text: Vec::with_capacity(cfg.size + 64),
            receivers,
            senders,
            tag,
            latency: LatencyRecorder::new(),
            running: false,
            schedule: (cfg.rate > 0).then(|| Schedule::new(cfg.rate, TICK)),
            sent_total: 0,
            interval_sent: 0,
            next_sender: 0,
            deliveries: 0,
            interval_deliveries: 0,
            delivered_bytes: 0,
            delivered_alive: 0,
            alive_receivers: 0,
            reordered: 0,
            duplicated: 0,
            open_gaps: 0,
            foreign: 0,
            cfg,
        }
    }

    fn room(&self) -> String {
        format!("netloop-load-{}", self.tag)
    }

    /// Classifies one line a connection received.
    fn classify(&self, line: &[u8], ready: bool) -> Line {
        match self.cfg.protocol {
            FanoutProtocol::Chat => match ServerLine::decode(line) {
                ServerLine::Welcome { .. } if !ready => Line::Handshake,
                ServerLine::Message { text, .. } => parse_message(text).unwrap_or(Line::Other),
                _ => Line::Other,
            },
            // The server is trusted to write JSON: validating every delivery would make the
            // generator, not the server, the bottleneck.
            FanoutProtocol::Hub => match Reply::decode_trusted(line) {
                Some(Reply::Broadcast { message, .. }) => match message.strip_prefix('"') {
                    Some(text) => parse_message(text.as_bytes()).unwrap_or(Line::Other),
                    None => Line::Other,
                },
                Some(Reply::Joined { .. } | Reply::Synced { .. }) if !ready => Line::Handshake,
                Some(Reply::Error { code, .. }) if !ready => {
                    Line::Refused(format!("hub_error:{}", code.as_str()))
                }
                _ => Line::Other,
            },
        }
    }

    /// One message arrived at receiver `r`.
    fn deliver(&mut self, r: usize, stamp: Stamp, len: usize, now: u64) {
        let Stamp { tag, sender, seq, sent_ns } = stamp;
        if tag != self.tag || sender >= self.cfg.senders {
            self.foreign += 1;
            return;
        }
        let track = &mut self.tracks[r * self.cfg.senders + sender];
        // Saturating: the numbers come from the network and must not panic or wrap.
        let unique = if seq == track.next {
            track.next = track.next.saturating_add(1);
            true
        } else if seq > track.next {
            let gap = seq - track.next;
            track.gaps = track.gaps.saturating_add(gap);
            self.open_gaps = self.open_gaps.saturating_add(gap);
            track.next = seq.saturating_add(1);
            true
        } else if track.gaps > 0 {
            track.gaps -= 1;
            self.open_gaps = self.open_gaps.saturating_sub(1);
            self.reordered += 1;
            true
        } else {
            self.duplicated += 1;
            false
        };
        if !unique {
            return;
        }
        self.latency.record(now.saturating_sub(sent_ns));
        self.deliveries += 1;
        self.interval_deliveries += 1;
        self.delivered_bytes += len as u64 + 1;
        let rcv = &mut self.receivers[r];
        rcv.delivered += 1;
        if rcv.alive {
            self.delivered_alive += 1;
        }
    }

    /// Puts sender `s`'s message number `seq`, stamped `start` (where its latency starts),
    /// into `self.msg`.
    fn compose(&mut self, s: usize, seq: u64, start: u64) {
        let hub = self.cfg.protocol == FanoutProtocol::Hub;
        self.text.clear();
        if hub {
            self.text.push(b'"');
        }
        let text_start = self.text.len();
        // Writing into a Vec cannot fail.
        let _ = write!(self.text, "NLM {} {s} {seq} {start}", self.tag);
        let text_len = self.text.len() - text_start;
        if self.cfg.size > text_len {
            self.text.push(b' ');
            self.text.resize(text_start + self.cfg.size.max(text_len + 1), b'x');
        }
        if hub {
            self.text.push(b'"');
        }
        // ASCII throughout, and a JSON string needing no escapes for the hub.
        let text = std::str::from_utf8(&self.text).unwrap_or_default();
        if hub {
            Request::Broadcast { room: None, message: text }.encode(&mut self.msg);
        } else {
            Input::Text(text).encode(&mut self.msg);
        }
    }

    /// Writes one message from sender `s`, its latency starting at `start`; returns false when
    /// the sender must wait for drain.
    fn send_one(&mut self, cx: &mut Context, s: usize, start: u64) -> bool {
        let Some(socket) = self.senders[s].socket else { return false };
        let seq = self.senders[s].sent;
        self.compose(s, seq, start);
        self.senders[s].sent += 1;
        self.sent_total += 1;
        self.interval_sent += 1;
        if !cx.write(socket, &self.msg) {
            self.senders[s].blocked = true;
            return false;
        }
        true
    }

    fn can_send(&self, s: usize) -> bool {
        let sender = &self.senders[s];
        sender.ready && sender.alive && !sender.blocked
    }

    /// The next sender (round robin) that may send now.
    fn pick_sender(&mut self) -> Option<usize> {
        let n = self.senders.len();
        for _ in 0..n {
            let s = self.next_sender;
            self.next_sender = (self.next_sender + 1) % n;
            if self.can_send(s) {
                return Some(s);
            }
        }
        None
    }
}

impl Workload for FanoutLoad {
    fn connections(&self) -> usize {
        self.cfg.receivers + self.cfg.senders
    }

    fn on_connect(&mut self, cx: &mut Context, slot: usize, socket: SocketId) -> Handshake {
        let r = self.cfg.receivers;
        if slot < r {
            self.receivers[slot].alive = true;
        } else {
            self.senders[slot - r].socket = Some(socket);
            self.senders[slot - r].alive = true;
        }
        if self.cfg.protocol == FanoutProtocol::Hub {
            let request = if slot < r {
                Request::Join { room: self.room().into() }
            } else {
                Request::Sync { client_name: format!("load-{}-s{}", self.tag, slot - r).into(), token: None }
            };
            let mut frame = Vec::new();
            request.encode(&mut frame);
            cx.write(socket, &frame);
        }
        Handshake::Pending
    }

    fn on_data(&mut self, _cx: &mut Context, slot: usize, _: SocketId, data: &[u8], now: u64) -> Handshake {
        let r = self.cfg.receivers;
        let mut outcome = Handshake::Pending;
        if slot >= r {
            // Senders only look for their handshake, then ignore what they receive (other
            // senders' messages, notices) without parsing it.
            let s = slot - r;
            let Some(mut lines) = self.senders[s].lines.take() else { return outcome };
            let fed = lines.feed(data, |line| {
                if !matches!(outcome, Handshake::Pending) {
                    return;
                }
                match self.classify(line, false) {
                    Line::Handshake => outcome = Handshake::Ready,
                    Line::Refused(why) => outcome = Handshake::Refused(why),
                    _ => {}
                }
            });
            if fed.is_err() {
                return Handshake::Refused("line_too_long".into());
            }
            match outcome {
                Handshake::Ready => self.senders[s].ready = true,
                _ => self.senders[s].lines = Some(lines),
            }
            return outcome;
        }
        // The splitter is moved out for the duration of the call so the closure can update
        // the counters; it is put back afterwards (no allocation: a move of three words).
        let mut lines = std::mem::replace(&mut self.receivers[slot].lines, LineSplitter::new(0));
        let mut ready = self.receivers[slot].ready;
        let fed = lines.feed(data, |line| match self.classify(line, ready) {
            Line::Message(stamp) if ready => self.deliver(slot, stamp, line.len(), now),
            Line::Handshake if !ready => {
                ready = true;
                outcome = Handshake::Ready;
            }
            Line::Refused(why) if !ready => outcome = Handshake::Refused(why),
            _ => {}
        });
        self.receivers[slot].lines = lines;
        if fed.is_err() {
            return Handshake::Refused("line_too_long".into());
        }
        if ready && !self.receivers[slot].ready {
            self.receivers[slot].ready = true;
            self.alive_receivers += 1;
        }
        outcome
    }

    fn on_drain(&mut self, _cx: &mut Context, slot: usize, _socket: SocketId) {
        if let Some(s) = slot.checked_sub(self.cfg.receivers) {
            self.senders[s].blocked = false;
        }
    }

    fn on_lost(&mut self, slot: usize) {
        let r = self.cfg.receivers;
        if slot < r {
            let rcv = &mut self.receivers[slot];
            if rcv.alive {
                rcv.alive = false;
                if rcv.ready {
                    self.alive_receivers -= 1;
                    self.delivered_alive -= rcv.delivered;
                }
            }
        } else {
            self.senders[slot - r].alive = false;
        }
    }

    fn start(&mut self, _cx: &mut Context, now: u64) {
        self.running = true;
        if let Some(schedule) = &mut self.schedule {
            schedule.start(now);
        }
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(TICK)
    }

    fn tick(&mut self, cx: &mut Context, now: u64) {
        if !self.running {
            return;
        }
        let Some(mut schedule) = self.schedule.take() else {
            for s in 0..self.senders.len() {
                for _ in 0..BURST {
                    if !self.can_send(s) || !self.send_one(cx, s, now) {
                        break;
                    }
                }
            }
            return;
        };
        // What finds every sender blocked stays due (the schedule counts it).
        let mut due = schedule.due(now);
        while due > 0 {
            let Some(s) = self.pick_sender() else { break };
            let intended = schedule.take(now);
            self.send_one(cx, s, intended);
            due -= 1;
        }
        self.schedule = Some(schedule);
    }

    fn stop(&mut self) {
        self.running = false;
    }

    fn settled(&self) -> bool {
        self.delivered_alive >= self.sent_total * self.alive_receivers
    }

    fn progress(&mut self, out: &mut String, seconds: f64) {
        let p99 = self.latency.take_interval_p99().map_or_else(|| "-".to_string(), fmt_ns);
        out.push_str(&format!(
            "  sent/s {}  deliveries/s {}  p99 {p99}  missing {}",
            fmt_rate(per_second(self.interval_sent, seconds)),
            fmt_rate(per_second(self.interval_deliveries, seconds)),
            fmt_count(self.open_gaps),
        ));
        if let Some(schedule) = &mut self.schedule {
            schedule.progress(out, seconds);
        }
        self.interval_sent = 0;
        self.interval_deliveries = 0;
    }

    fn finish(&mut self, duration_s: f64, drain_s: f64, problems: &mut Vec<String>) -> Summary {
        let s_count = self.cfg.senders;
        let mut lost = 0u64;
        let mut undelivered = 0u64;
        for (r, rcv) in self.receivers.iter().enumerate() {
            if !(rcv.ready && rcv.alive) {
                continue;
            }
            for (s, sender) in self.senders.iter().enumerate() {
                let t = self.tracks[r * s_count + s];
                lost = lost.saturating_add(t.gaps);
                undelivered = undelivered.saturating_add(sender.sent.saturating_sub(t.next));
            }
        }
        let ready_senders = self.senders.iter().filter(|s| s.ready).count();
        if ready_senders == 0 {
            problems.push("no sender became ready".into());
        } else if self.sent_total == 0 {
            problems.push("no message was sent".into());
        }
        if self.alive_receivers == 0 {
            problems.push("no receiver stayed connected".into());
        }
        if lost > 0 {
            problems.push(format!("{} deliveries lost (gaps in a sender's sequence)", fmt_count(lost)));
        }
        if undelivered > 0 {
            problems.push(format!(
                "{} deliveries still missing after {drain_s:.1}s of draining (the server is behind: \
                 lower -r or raise --drain-timeout)",
                fmt_count(undelivered)
            ));
        }
        if self.duplicated > 0 {
            problems.push(format!("{} deliveries duplicated", fmt_count(self.duplicated)));
        }
        if self.reordered > 0 {
            problems.push(format!("{} deliveries reordered", fmt_count(self.reordered)));
        }
        if let Some(schedule) = &self.schedule {
            schedule.check(
                duration_s,
                "the senders were blocked (the server, or this generator: check its CPU, cannot take \
                 messages that fast): lower -r",
                problems,
            );
        }
        Summary {
            histograms: Histograms {
                latency: Some(self.latency.histogram().clone()),
                send_delay: self.schedule.as_ref().map(|s| s.delay_histogram().clone()),
                connect_time: None,
            },
            completed: self.deliveries,
            bytes: self.delivered_bytes,
            latency: self.latency.percentiles(),
            latency_from: Some(if self.schedule.is_some() {
                LatencyFrom::ScheduledSend
            } else {
                LatencyFrom::ActualSend
            }),
            details: ModeReport::Fanout(FanoutReport {
                protocol: self.cfg.protocol.name(),
                receivers: self.cfg.receivers,
                senders: self.cfg.senders,
                rate: self.cfg.rate,
                size: self.cfg.size,
                messages_sent: self.sent_total,
                messages_per_s: per_second(self.sent_total, duration_s),
                deliveries: self.deliveries,
                deliveries_expected: self.sent_total * self.alive_receivers,
                lost,
                undelivered,
                reordered: self.reordered,
                duplicated: self.duplicated,
                foreign: self.foreign,
                drain_s,
                behind_schedule: self.schedule.as_ref().map_or(0, Schedule::behind),
                send_delay: self.schedule.as_ref().and_then(Schedule::delay),
            }),
        }
    }
}

/// Parses `NLM <tag> <sender> <seq> <sent_ns>[ padding]` at the start of `text` (which may
/// run on: a closing quote and brace for the hub).
fn parse_message(text: &[u8]) -> Option<Line> {
    let mut rest = text.strip_prefix(MARK)?;
    let mut field = || -> Option<u64> {
        let end = rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        let mut n: u64 = 0;
        for &d in &rest[..end] {
            n = n.checked_mul(10)?.checked_add((d - b'0') as u64)?;
        }
        rest = rest.get(end..)?;
        rest = rest.strip_prefix(b" ").unwrap_or(rest);
        Some(n)
    };
    let tag = u32::try_from(field()?).ok()?;
    let sender = usize::try_from(field()?).ok()?;
    let seq = field()?;
    let sent_ns = field()?;
    Some(Line::Message(Stamp { tag, sender, seq, sent_ns }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(protocol: FanoutProtocol) -> FanoutLoad {
        FanoutLoad::new(FanoutConfig {
            protocol,
            receivers: 2,
            senders: 2,
            rate: 10,
            size: 0,
            senders_at: None,
            half_at: None,
        })
    }

    fn message(l: &FanoutLoad, line: &str) -> Option<(u32, usize, u64, u64)> {
        match l.classify(line.as_bytes(), true) {
            Line::Message(m) => Some((m.tag, m.sender, m.seq, m.sent_ns)),
            _ => None,
        }
    }

    #[test]
    fn chat_lines_are_classified() {
        let l = load(FanoutProtocol::Chat);
        assert!(matches!(l.classify(b"* welcome 127.0.0.1:5, online now: 3", false), Line::Handshake));
        assert!(matches!(l.classify(b"* welcome 127.0.0.1:5, online now: 3", true), Line::Other));
        assert!(matches!(l.classify(b"* 127.0.0.1:6 joined, online now: 4", false), Line::Other));
        assert_eq!(message(&l, "127.0.0.1:5000: NLM 7 1 42 123456"), Some((7, 1, 42, 123456)));
        assert_eq!(message(&l, "[::1]:5000: NLM 7 0 0 1 xxxxxxxx"), Some((7, 0, 0, 1)));
        assert_eq!(message(&l, "bob: hello"), None);
        assert_eq!(message(&l, "bob: NLM 7 x"), None);
        assert_eq!(message(&l, "bob: NLM 99999999999999999999 1 1 1"), None);
        assert_eq!(message(&l, "bob: NLM 7 1 18446744073709551616 1"), None, "u64 overflow");
        assert_eq!(message(&l, "bob: NLM 7 1 18446744073709551615 1"), Some((7, 1, u64::MAX, 1)));
    }

    #[test]
    fn hub_lines_are_classified_in_any_key_order() {
        let l = load(FanoutProtocol::Hub);
        let node = r#"{"type":"broadcast","from":"load-1-s0","message":"NLM 7 1 42 99"}"#;
        let sorted = r#"{"from":"s","message":"NLM 7 1 42 99 xxxx","type":"broadcast"}"#;
        assert_eq!(message(&l, node), Some((7, 1, 42, 99)));
        assert_eq!(message(&l, sorted), Some((7, 1, 42, 99)));
        assert!(matches!(l.classify(br#"{"type":"joined","room":"r"}"#, false), Line::Handshake));
        assert!(matches!(
            l.classify(br#"{"type":"synced","clientName":"a","sessionId":"s"}"#, false),
            Line::Handshake
        ));
        match l.classify(br#"{"type":"error","code":"name_taken","reason":"x"}"#, false) {
            Line::Refused(why) => assert_eq!(why, "hub_error:name_taken"),
            _ => panic!("an error line refuses the handshake"),
        }
        assert!(matches!(
            l.classify(br#"{"type":"online","clientName":"a","sessionId":"s"}"#, true),
            Line::Other
        ));
    }

    #[test]
    fn gaps_reorders_and_duplicates_are_told_apart() {
        let mut l = load(FanoutProtocol::Chat);
        l.receivers[0].alive = true;
        l.receivers[0].ready = true;
        l.alive_receivers = 1;
        l.senders[1].sent = 5;
        l.sent_total = 5;
        let tag = l.tag;
        for seq in [0, 2, 1, 1, 4] {
            l.deliver(0, Stamp { tag, sender: 1, seq, sent_ns: 0 }, 10, 1);
        }
        l.deliver(0, Stamp { tag: tag.wrapping_add(1), sender: 1, seq: 0, sent_ns: 0 }, 10, 1);

        assert_eq!(l.deliveries, 4);
        assert_eq!(l.reordered, 1);
        assert_eq!(l.duplicated, 1);
        assert_eq!(l.foreign, 1);
        assert_eq!(l.open_gaps, 1, "3 is still missing");
        assert!(!l.settled());
        let mut problems = Vec::new();
        let summary = l.finish(1.0, 0.0, &mut problems);
        match summary.details {
            ModeReport::Fanout(f) => {
                assert_eq!(f.lost, 1, "3 never came although 4 did");
                assert_eq!(f.undelivered, 0);
            }
            _ => panic!("fanout details"),
        }
        assert!(problems.iter().any(|p| p.contains("lost")), "{problems:?}");
    }

    #[test]
    fn hostile_sequence_numbers_neither_panic_nor_wrap() {
        let mut l = load(FanoutProtocol::Hub);
        l.receivers[0].alive = true;
        l.receivers[0].ready = true;
        l.alive_receivers = 1;
        let tag = l.tag;
        for seq in [u64::MAX, u64::MAX, 0, u64::MAX - 1, 5] {
            l.deliver(0, Stamp { tag, sender: 0, seq, sent_ns: u64::MAX }, 10, 1);
        }
        let mut problems = Vec::new();
        let summary = l.finish(1.0, 0.0, &mut problems);
        match summary.details {
            ModeReport::Fanout(f) => assert!(f.lost > 0 && f.reordered > 0, "{f:?}"),
            _ => panic!("fanout details"),
        }
    }

    #[test]
    fn messages_are_padded_to_size_and_parse_back() {
        for protocol in [FanoutProtocol::Chat, FanoutProtocol::Hub] {
            let mut l = FanoutLoad::new(FanoutConfig {
                protocol,
                receivers: 1,
                senders: 3,
                rate: 1,
                size: 100,
                senders_at: None,
                half_at: None,
            });
            l.compose(2, 17, 123_456_789);
            let line = l.msg.strip_suffix(b"\n").expect("newline-terminated").to_vec();
            let text = match protocol {
                FanoutProtocol::Chat => line.clone(),
                FanoutProtocol::Hub => {
                    let v: serde_json::Value = serde_json::from_slice(&line).expect("valid JSON");
                    assert_eq!(v["type"], "broadcast");
                    v["message"].as_str().expect("string message").as_bytes().to_vec()
                }
            };
            assert_eq!(text.len(), 100, "{}", String::from_utf8_lossy(&text));
            let received = match protocol {
                FanoutProtocol::Chat => [b"127.0.0.1:1: ".as_slice(), &line].concat(),
                // Relayed the way the hub relays a broadcast: the same message, with its sender.
                FanoutProtocol::Hub => {
                    let Ok(Request::Broadcast { message, .. }) = Request::from_json(&line) else {
                        panic!("a broadcast request")
                    };
                    let mut relayed = Vec::new();
                    Reply::Broadcast { from: "load-1-s2".into(), room: None, message }.encode(&mut relayed);
                    relayed.pop();
                    relayed
                }
            };
            assert_eq!(
                message(&l, std::str::from_utf8(&received).expect("ascii")),
                Some((l.tag, 2, 17, 123_456_789))
            );
            l.cfg.size = 0;
            l.compose(0, 0, 1);
            assert!(l.msg.len() < 60);
        }
    }
}
