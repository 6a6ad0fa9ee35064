//! The part every load mode shares: opening connections at a bounded pace, classifying
//! failures, the phases of a run, the progress line and the report's common half.
//!
//! A run has three phases. **Ramp-up**: connections open (at most `max_connecting` in flight,
//! optionally at `--connect-rate`), each may need a protocol handshake (a chat welcome, a hub
//! `synced`) before it counts as ready. **Run**: once every connection is ready or has failed,
//! the workload starts its traffic and the `-T` clock starts, so the window measures the server
//! at full strength and not our ramp-up. **Drain** (fan-out only): sending has stopped and we
//! wait, bounded, for deliveries still in flight.
//!
//! The [`Workload`] (idle, echo, fanout) sees connections as dense slot numbers `0..n` in
//! launch order and never scans them per event: the runner maps a socket to its slot with one
//! table lookup.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use crate::addr::SocketAddress;
use crate::context::Context;
use crate::error;
use crate::handler::{Handler, SocketId};
use crate::load::report::{ConnectionReport, Histograms, LatencyFrom, ModeReport, Report};
use crate::load::sources::SourcePlan;
use crate::load::stats::{
    fmt_count, fmt_rate, new_histogram, per_second, percentiles_of, Clock, Percentiles,
};
use crate::socket_error::SocketError;
use crate::timers::TimerId;

/// How to hold more connections than one process's open file limit allows. Each process needs
/// source addresses of its own: they would otherwise share the same ephemeral ports.
pub(crate) const PAST_ONE_PROCESS: &str =
    "to go past one process's limit, split the run over processes with --workers N \
     (each opens its share from source addresses of its own; the report adds them up)";

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often `--connect-rate` pacing releases connects.
const PACE_EVERY: Duration = Duration::from_millis(1);

/// What a workload says about a connection after an event.
#[derive(Debug)]
pub(crate) enum Handshake {
    /// Still waiting for the server's go-ahead (or already ready: nothing new).
    Pending,
    /// The connection is now ready for traffic.
    Ready,
    /// The server answered with something that makes the connection useless (the cause).
    Refused(String),
}

/// What a mode's run produced, for the common half of the report.
#[derive(Debug)]
pub(crate) struct Summary {
    /// Echo round trips or fan-out deliveries.
    pub completed: u64,
    /// Bytes received in the window (echoed, delivered, or whatever the server sent idle ones).
    pub bytes: u64,
    /// Their latency.
    pub latency: Option<Percentiles>,
    /// Where that latency starts; `None` when the mode measures none.
    pub latency_from: Option<LatencyFrom>,
    /// The mode's own figures.
    pub details: ModeReport,
    /// The distributions behind its percentiles (the connect times are the runner's).
    pub histograms: Histograms,
}

/// One load mode. Slots are `0..connections()` in launch order.
pub(crate) trait Workload {
    /// How many connections the mode opens.
    fn connections(&self) -> usize;
    /// Connection `slot` is established; start its handshake, if any.
    fn on_connect(&mut self, cx: &mut Context, slot: usize, socket: SocketId) -> Handshake;
    /// Data arrived on `slot` (`now_ns` from the run clock).
    fn on_data(
        &mut self,
        cx: &mut Context,
        slot: usize,
        socket: SocketId,
        data: &[u8],
        now_ns: u64,
    ) -> Handshake;
    /// A write that returned false has drained.
    fn on_drain(&mut self, _cx: &mut Context, _slot: usize, _socket: SocketId) {}
    /// A ready connection closed; it gets no more traffic.
    fn on_lost(&mut self, _slot: usize) {}
    /// Every connection is ready or failed: start the traffic.
    fn start(&mut self, cx: &mut Context, now_ns: u64);
    /// How often [`Workload::tick`] should run during the window (rate pacing).
    fn tick_every(&self) -> Option<Duration> {
        None
    }
    /// Pacing tick.
    fn tick(&mut self, _cx: &mut Context, _now_ns: u64) {}
    /// The window is over: stop sending and stop counting new work.
    fn stop(&mut self);
    /// Nothing is still owed (fan-out: every delivery arrived); ends the drain phase.
    fn settled(&self) -> bool {
        true
    }
    /// Appends this mode's progress fields for the last `seconds`, and restarts the interval.
    fn progress(&mut self, out: &mut String, seconds: f64);
    /// Final figures; pushes the reasons the run failed, if any.
    fn finish(&mut self, duration_s: f64, drain_s: f64, problems: &mut Vec<String>) -> Summary;
}

/// Which slots connect to the other address of a run that has two.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SlotSplit {
    /// This slot and every later one (fan-out senders, placed after the receivers).
    From(usize),
    /// Every odd slot: half of the receivers and half of the senders.
    Odd,
}

impl SlotSplit {
    fn takes(self, slot: usize) -> bool {
        match self {
            SlotSplit::From(first) => slot >= first,
            SlotSplit::Odd => slot % 2 == 1,
        }
    }
}

/// Settings of the generic half of a run.
#[derive(Debug)]
pub(crate) struct RunSettings {
    /// `idle`, `echo` or `fanout`, for the report.
    pub mode: &'static str,
    /// Where to connect (resolved once, before the run).
    pub target: SocketAddress,
    /// Slots that connect to this other address instead (fan-out connections on another node
    /// of a cluster).
    pub split_target: Option<(SlotSplit, SocketAddress)>,
    /// The target as the user typed it, for the report.
    pub target_text: String,
    /// The window (`-T`).
    pub duration: Duration,
    /// Connects per second; 0 = only `max_connecting` bounds them.
    pub connect_rate: u32,
    /// Connects in flight at once.
    pub max_connecting: usize,
    /// Connect (and handshake) timeout.
    pub connect_timeout: Duration,
    /// Longest drain phase.
    pub drain_timeout: Duration,
    /// Print the progress line.
    pub progress: bool,
    /// Source address of each slot.
    pub sources: SourcePlan,
    /// Connections the open file limit allows.
    pub fd_capacity: usize,
    /// The (raised) soft open file limit, and the hard one, for the limit message.
    pub fd_limit: u64,
    pub fd_hard_limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    RampUp,
    Run,
    Drain,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Waiting,
    Connecting,
    Handshaking,
    Ready,
    Failed,
    Dropped,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    socket: Option<SocketId>,
    state: SlotState,
    started_ns: u64,
}

/// The [`Handler`] of a load run: generic bookkeeping around one [`Workload`].
pub(crate) struct Runner<W: Workload> {
    w: W,
    s: RunSettings,
    clock: Clock,
    phase: Phase,
    requested: usize,
    /// Slots that will be attempted: `requested` less what the fd or port limits allow.
    planned: usize,
    slots: Vec<Slot>,
    /// Slot of each socket, by `SocketId::index()`.
    slot_of: Vec<u32>,
    next_slot: usize,
    /// Connections started but not yet ready (connecting, or waiting for the server's
    /// handshake reply): what `max_connecting` bounds. Counting handshakes too paces the ramp
    /// to the rate the server really takes connections in, not just the kernel's accept queue.
    unready: usize,
    resolved: usize,
    established: u64,
    live: u64,
    failed: u64,
    failures: BTreeMap<String, u64>,
    dropped: u64,
    drops: BTreeMap<String, u64>,
    connect_times: hdrhistogram::Histogram<u64>,
    ramp_start_ns: u64,
    ramp_end_ns: Option<u64>,
    run_start_ns: Option<u64>,
    run_end_ns: Option<u64>,
    done_ns: u64,
    phase_timer: Option<TimerId>,
    pace_timer: Option<TimerId>,
    tick_timer: Option<TimerId>,
    progress_timer: Option<TimerId>,
    last_progress_ns: u64,
    established_at_last_progress: u64,
    interrupted: Option<i32>,
    /// A second signal: the run stops at once, with no report.
    second_signal: Option<i32>,
}

impl<W: Workload> std::fmt::Debug for Runner<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("mode", &self.s.mode)
            .field("phase", &self.phase)
            .field("established", &self.established)
            .finish_non_exhaustive()
    }
}

impl<W: Workload> Runner<W> {
    /// A run of `w` with `s`; nothing happens until [`Runner::begin`].
    pub(crate) fn new(w: W, s: RunSettings) -> Self {
        let requested = w.connections();
        let planned = requested.min(s.fd_capacity).min(s.sources.capacity());
        Runner {
            w,
            s,
            clock: Clock::new(),
            phase: Phase::RampUp,
            requested,
            planned,
            slots: vec![Slot { socket: None, state: SlotState::Waiting, started_ns: 0 }; planned],
            slot_of: Vec::new(),
            next_slot: 0,
            unready: 0,
            resolved: 0,
            established: 0,
            live: 0,
            failed: 0,
            failures: BTreeMap::new(),
            dropped: 0,
            drops: BTreeMap::new(),
            connect_times: new_histogram(),
            ramp_start_ns: 0,
            ramp_end_ns: None,
            run_start_ns: None,
            run_end_ns: None,
            done_ns: 0,
            phase_timer: None,
            pace_timer: None,
            tick_timer: None,
            progress_timer: None,
            last_progress_ns: 0,
            established_at_last_progress: 0,
            interrupted: None,
            second_signal: None,
        }
    }

    /// Arms signals and the progress line and starts connecting. Call once, before
    /// `EventLoop::run`.
    pub(crate) fn begin(&mut self, cx: &mut Context) -> io::Result<()> {
        cx.listen_signals(&[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
        self.progress_timer = Some(cx.set_interval(PROGRESS_EVERY));
        self.ramp_start_ns = self.clock.now_ns();
        if self.s.connect_rate > 0 {
            self.pace_timer = Some(cx.set_interval(PACE_EVERY));
        }
        self.launch_more(cx);
        self.check_ramp_done(cx);
        Ok(())
    }

    fn slot(&self, socket: SocketId) -> Option<usize> {
        let slot = *self.slot_of.get(socket.index())? as usize;
        (self.slots.get(slot)?.socket == Some(socket)).then_some(slot)
    }

    /// Starts connects while slots remain, fewer than `max_connecting` are in flight, and the
    /// connect rate (if any) allows.
    fn launch_more(&mut self, cx: &mut Context) {
        if self.phase != Phase::RampUp {
            return;
        }
        let now = self.clock.now_ns();
        let allowed = if self.s.connect_rate > 0 {
            let elapsed = now.saturating_sub(self.ramp_start_ns) as u128;
            (elapsed * self.s.connect_rate as u128 / 1_000_000_000) as usize + 1
        } else {
            usize::MAX
        };
        while self.next_slot < self.planned
            && self.unready < self.s.max_connecting
            && self.next_slot < allowed
        {
            let slot = self.next_slot;
            self.next_slot += 1;
            let target = match &self.s.split_target {
                Some((split, other)) if split.takes(slot) => other,
                _ => &self.s.target,
            };
            let socket = cx.connect_from(target, self.s.sources.source_for(slot));
            if self.slot_of.len() <= socket.index() {
                self.slot_of.resize(socket.index() + 1, u32::MAX);
            }
            self.slot_of[socket.index()] = slot as u32;
            self.slots[slot] = Slot { socket: Some(socket), state: SlotState::Connecting, started_ns: now };
            self.unready += 1;
            if cx.is_open(socket) {
                // The loop's O(1) idle timer doubles as the connect (and handshake) timeout.
                cx.set_timeout(socket, self.s.connect_timeout);
            }
        }
        if self.next_slot >= self.planned {
            if let Some(t) = self.pace_timer.take() {
                cx.clear_timer(t);
            }
        }
    }

    fn mark_ready(&mut self, cx: &mut Context, slot: usize, socket: SocketId) {
        if self.slots[slot].state == SlotState::Handshaking {
            self.slots[slot].state = SlotState::Ready;
            self.resolved += 1;
            self.unready -= 1;
            cx.set_timeout(socket, Duration::ZERO);
            self.launch_more(cx);
            self.check_ramp_done(cx);
        }
    }

    /// Destroys `socket` with `cause`. The cause travels with the socket's own error (the loop
    /// hands it to `on_close`), so several sockets failed in one turn each keep theirs.
    fn fail(&mut self, cx: &mut Context, socket: SocketId, cause: String) {
        cx.destroy_with_error(socket, io::Error::other(FailCause(cause)));
    }

    fn check_ramp_done(&mut self, cx: &mut Context) {
        if self.phase != Phase::RampUp || self.resolved < self.planned || self.next_slot < self.planned {
            return;
        }
        let now = self.clock.now_ns();
        self.ramp_end_ns = Some(now);
        if self.live == 0 {
            // Nothing to measure: report the failures at once.
            return self.finish(cx);
        }
        self.phase = Phase::Run;
        self.run_start_ns = Some(now);
        self.w.start(cx, now);
        self.phase_timer = Some(cx.set_timer(self.s.duration));
        if let Some(every) = self.w.tick_every() {
            self.tick_timer = Some(cx.set_interval(every));
        }
    }

    /// The window is over (or a signal came): stop traffic, then drain or finish.
    fn end_run(&mut self, cx: &mut Context) {
        self.run_end_ns = Some(self.clock.now_ns());
        self.w.stop();
        if let Some(t) = self.tick_timer.take() {
            cx.clear_timer(t);
        }
        if let Some(t) = self.phase_timer.take() {
            cx.clear_timer(t);
        }
        if self.w.settled() || self.interrupted.is_some() {
            self.finish(cx);
        } else {
            self.phase = Phase::Drain;
            self.phase_timer = Some(cx.set_timer(self.s.drain_timeout));
        }
    }

    fn finish(&mut self, cx: &mut Context) {
        if self.phase == Phase::Done {
            return;
        }
        if self.phase == Phase::RampUp && self.ramp_end_ns.is_none() {
            self.ramp_end_ns = Some(self.clock.now_ns());
        }
        self.phase = Phase::Done;
        self.done_ns = self.clock.now_ns();
        cx.stop();
    }

    fn print_progress(&mut self) {
        let now = self.clock.now_ns();
        let seconds = now.saturating_sub(self.last_progress_ns) as f64 / 1e9;
        self.last_progress_ns = now;
        let mut line = format!("[{}s] ", (now as f64 / 1e9).round());
        match self.phase {
            Phase::RampUp => {
                let new = self.established - self.established_at_last_progress;
                line.push_str(&format!(
                    "connecting {}/{} up  connects/s {}  failed {}",
                    fmt_count(self.live),
                    fmt_count(self.requested as u64),
                    fmt_rate(per_second(new, seconds)),
                    fmt_count(self.failed)
                ));
            }
            Phase::Run | Phase::Drain => {
                if self.phase == Phase::Drain {
                    line.push_str("draining  ");
                }
                line.push_str(&format!(
                    "conns {}/{}",
                    fmt_count(self.live),
                    fmt_count(self.requested as u64)
                ));
                self.w.progress(&mut line, seconds);
                line.push_str(&format!("  errors {}", fmt_count(self.failed + self.dropped)));
            }
            Phase::Done => return,
        }
        self.established_at_last_progress = self.established;
        if self.s.progress {
            eprintln!("{line}");
        }
    }

    /// Words for the limit that stopped the generator, if one did.
    fn limit_note(&self) -> Option<String> {
        let fd_note = || {
            let hard = match self.s.fd_hard_limit {
                Some(h) if h == self.s.fd_limit => {
                    "; it is the hard limit too: raise it with ulimit -Hn or LimitNOFILE="
                }
                _ => "",
            };
            format!("open file limit {} (ulimit -n{hard}); {PAST_ONE_PROCESS}", self.s.fd_limit)
        };
        if self.planned < self.requested {
            return Some(if self.planned == self.s.fd_capacity {
                fd_note()
            } else {
                self.s.sources.limit_reason()
            });
        }
        if self.failed == 0 && self.dropped > 0 {
            return Some(format!(
                "the server closed {} established connection(s) ({}): a connection limit on the server, \
                 or its own open file limit?",
                fmt_count(self.dropped),
                causes(&self.drops)
            ));
        }
        let (cause, _) = self.failures.iter().max_by_key(|(_, n)| **n)?;
        let note = match cause.as_str() {
            "EMFILE" => fd_note(),
            "ENFILE" => "the system-wide open file limit (fs.file-max)".to_string(),
            "EADDRNOTAVAIL" | "EADDRINUSE" => self.s.sources.limit_reason(),
            "ECONNREFUSED" => {
                "the server refused connections (nothing listening, or its backlog overflowed)".into()
            }
            "ETIMEDOUT" => {
                "connects timed out (the server's backlog is full or the host does not answer)".into()
            }
            "EAGAIN" => "the server's accept backlog is full (EAGAIN on a Unix socket)".into(),
            "ENOBUFS" | "ENOMEM" => "kernel memory for sockets".into(),
            "handshake_timeout" => "the server did not answer the protocol's greeting in time (wrong \
                                    --protocol, or a server too busy to register new clients)"
                .into(),
            _ => return None,
        };
        Some(note)
    }

    /// The report of the finished run.
    /// The second signal that stopped the run, if one did: there is no report then.
    pub(crate) fn second_signal(&self) -> Option<i32> {
        self.second_signal
    }

    pub(crate) fn into_report(mut self) -> Report {
        let now = if self.done_ns > 0 { self.done_ns } else { self.clock.now_ns() };
        let ramp_end = self.ramp_end_ns.unwrap_or(now);
        let ramp_up_s = ramp_end.saturating_sub(self.ramp_start_ns) as f64 / 1e9;
        let (duration_s, drain_s) = match (self.run_start_ns, self.run_end_ns) {
            (Some(a), Some(b)) => (b.saturating_sub(a) as f64 / 1e9, now.saturating_sub(b) as f64 / 1e9),
            (Some(a), None) => (now.saturating_sub(a) as f64 / 1e9, 0.0),
            _ => (0.0, 0.0),
        };
        let mut problems = Vec::new();
        if let Some(sig) = self.interrupted {
            problems.push(format!("interrupted by signal {sig}"));
        }
        let limit = self.limit_note();
        if self.planned < self.requested {
            problems.push(format!(
                "stopped at {} connections of {}: {}",
                fmt_count(self.live),
                fmt_count(self.requested as u64),
                limit.as_deref().unwrap_or("a limit")
            ));
        }
        if self.failed > 0 {
            problems.push(format!(
                "{} connection(s) failed ({})",
                fmt_count(self.failed),
                causes(&self.failures)
            ));
        }
        if self.dropped > 0 {
            problems.push(format!(
                "{} connection(s) closed during the run ({})",
                fmt_count(self.dropped),
                causes(&self.drops)
            ));
        }
        let summary = self.w.finish(duration_s, drain_s, &mut problems);
        Report {
            mode: self.s.mode,
            target: self.s.target_text.clone(),
            duration_s,
            ramp_up_s,
            connections: ConnectionReport {
                requested: self.requested as u64,
                attempted: self.next_slot as u64,
                established: self.established,
                failed: self.failed,
                failures: std::mem::take(&mut self.failures),
                dropped: self.dropped,
                drops: std::mem::take(&mut self.drops),
                open_at_end: self.live,
                connects_per_s: per_second(self.established, ramp_up_s),
                connect_time: percentiles_of(&self.connect_times),
                limit,
                sources: self.s.sources.describe(self.next_slot),
            },
            completed: summary.completed,
            // Over sending plus draining: results that arrive after the window still took
            // that long, so a server that falls behind cannot look like it kept up.
            completed_per_s: per_second(summary.completed, duration_s + drain_s),
            bytes_per_s: per_second(summary.bytes, duration_s + drain_s),
            latency: summary.latency,
            latency_from: summary.latency_from,
            details: summary.details,
            problems,
            interrupted: self.interrupted.is_some(),
            histograms: Histograms { connect_time: Some(self.connect_times.clone()), ..summary.histograms },
        }
    }
}

/// `ECONNREFUSED x3, EOF x1`.
fn causes(map: &BTreeMap<String, u64>) -> String {
    map.iter().map(|(k, v)| format!("{k} x{}", fmt_count(*v))).collect::<Vec<_>>().join(", ")
}

/// Why the generator itself gave up on a connection (`handshake_timeout`, `hub_error:...`).
#[derive(Debug)]
struct FailCause(String);

impl std::fmt::Display for FailCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FailCause {}

/// A short, stable name for why a socket failed: the errno name where there is one.
pub(crate) fn cause_of(err: &SocketError) -> String {
    let io = match err {
        SocketError::Io(io) => io,
        SocketError::OutputLimit { .. } | SocketError::SoftOutputLimit { .. } => {
            return "output_limit".into()
        }
        SocketError::WriteAfterEnd => return "write_after_end".into(),
        SocketError::InputCut(_) => return "input_cut".into(),
    };
    if let Some(FailCause(cause)) = io.get_ref().and_then(|e| e.downcast_ref::<FailCause>()) {
        return cause.clone();
    }
    if let Some(name) = error::errno_name(io) {
        return name.to_string();
    }
    if let Some(code) = error::os_error_code(io) {
        return format!("errno_{code}");
    }
    format!("{:?}", io.kind())
}

impl<W: Workload> Handler for Runner<W> {
    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {
        let Some(slot) = self.slot(socket) else { return };
        let now = self.clock.now_ns();
        self.established += 1;
        self.live += 1;
        self.connect_times.saturating_record(now.saturating_sub(self.slots[slot].started_ns).max(1));
        self.slots[slot].state = SlotState::Handshaking;
        match self.w.on_connect(cx, slot, socket) {
            Handshake::Ready => self.mark_ready(cx, slot, socket),
            Handshake::Refused(cause) => self.fail(cx, socket, cause),
            Handshake::Pending => {}
        }
        self.launch_more(cx);
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        let Some(slot) = self.slot(socket) else { return };
        let now = self.clock.now_ns();
        match self.w.on_data(cx, slot, socket, data, now) {
            Handshake::Pending => {}
            Handshake::Ready => self.mark_ready(cx, slot, socket),
            Handshake::Refused(cause) => self.fail(cx, socket, cause),
        }
        if self.phase == Phase::Drain && self.w.settled() {
            self.finish(cx);
        }
    }

    fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {
        if let Some(slot) = self.slot(socket) {
            self.w.on_drain(cx, slot, socket);
        }
    }

    fn on_timeout(&mut self, cx: &mut Context, socket: SocketId) {
        let Some(slot) = self.slot(socket) else { return };
        match self.slots[slot].state {
            SlotState::Connecting => {
                cx.destroy_with_error(socket, io::Error::from_raw_os_error(libc::ETIMEDOUT))
            }
            SlotState::Handshaking => self.fail(cx, socket, "handshake_timeout".into()),
            _ => {}
        }
    }

    fn on_close(&mut self, cx: &mut Context, socket: SocketId, error: Option<&SocketError>) {
        let Some(slot) = self.slot(socket) else { return };
        self.slot_of[socket.index()] = u32::MAX;
        let cause = error.map_or_else(|| "EOF".to_string(), cause_of);
        let state = self.slots[slot].state;
        match state {
            SlotState::Connecting | SlotState::Handshaking => {
                self.unready -= 1;
                if state == SlotState::Handshaking {
                    self.live -= 1;
                }
                self.failed += 1;
                *self.failures.entry(cause).or_default() += 1;
                self.slots[slot].state = SlotState::Failed;
                self.resolved += 1;
                self.launch_more(cx);
                self.check_ramp_done(cx);
            }
            SlotState::Ready => {
                self.live -= 1;
                if self.phase != Phase::Done {
                    self.dropped += 1;
                    *self.drops.entry(cause).or_default() += 1;
                }
                self.slots[slot].state = SlotState::Dropped;
                self.w.on_lost(slot);
                if self.phase == Phase::Drain && self.w.settled() {
                    self.finish(cx);
                }
            }
            SlotState::Waiting | SlotState::Failed | SlotState::Dropped => {}
        }
        self.slots[slot].socket = None;
    }

    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) {
        if Some(timer) == self.tick_timer {
            let now = self.clock.now_ns();
            self.w.tick(cx, now);
        } else if Some(timer) == self.pace_timer {
            self.launch_more(cx);
        } else if Some(timer) == self.progress_timer {
            self.print_progress();
        } else if Some(timer) == self.phase_timer {
            self.phase_timer = None;
            match self.phase {
                Phase::Run => self.end_run(cx),
                Phase::Drain => self.finish(cx),
                Phase::RampUp | Phase::Done => {}
            }
        }
    }

    fn on_signal(&mut self, cx: &mut Context, signal: i32) {
        if self.interrupted.is_some() {
            // The caller exits with 128 + the signal, as a shell reports a process it killed.
            self.second_signal = Some(signal);
            cx.stop();
            return;
        }
        self.interrupted = Some(signal);
        match self.phase {
            Phase::Run => self.end_run(cx),
            Phase::RampUp | Phase::Drain => self.finish(cx),
            Phase::Done => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_errno_names_or_our_own_words() {
        let io = |e: io::Error| SocketError::Io(e);
        let refused = error::context(io::Error::from_raw_os_error(libc::ECONNREFUSED), "connect");
        assert_eq!(cause_of(&io(refused)), "ECONNREFUSED");
        assert_eq!(cause_of(&io(io::Error::from_raw_os_error(libc::ETIMEDOUT))), "ETIMEDOUT");
        assert_eq!(
            cause_of(&io(io::Error::other(FailCause("handshake_timeout".into())))),
            "handshake_timeout"
        );
        assert_eq!(cause_of(&io(io::Error::from_raw_os_error(4095))), "errno_4095");
        assert_eq!(cause_of(&SocketError::OutputLimit { queued: 2, limit: 1 }), "output_limit");
        let soft =
            SocketError::SoftOutputLimit { queued: 2, soft: 1, window: std::time::Duration::from_secs(1) };
        assert_eq!(cause_of(&soft), "output_limit");
        assert_eq!(cause_of(&SocketError::WriteAfterEnd), "write_after_end");
    }
}
