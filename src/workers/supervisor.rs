//! The supervisor: binds the listeners, starts and restarts the workers, drains them on a
//! signal and logs the sum of their counters. It serves no connection itself.
//!
//! Workers are the netloop binary executed again (`serve ... --worker I`), not a `fork()` of
//! this process: each starts from a clean `main` with its own allocator, logger and signal
//! state, shows in `ps` with its own command line, and nothing this process set up (threads,
//! locks, buffered output) can leak into it half-done.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::addr::{AddressSpec, SocketAddress};
use crate::listener::ListenerGroup;
use crate::workers::counters::Counters;

/// What `netloop serve --workers N` was asked to do.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Worker processes.
    pub workers: usize,
    /// `(service name, address)` of every listener, in the order workers configure them.
    pub listeners: Vec<(&'static str, AddressSpec)>,
    /// `listen()` backlog of every socket.
    pub backlog: u32,
    /// The `serve` arguments each worker runs with, without `--workers`, `--stats-interval`
    /// (the supervisor asks workers for their counters itself) and the listeners (each worker
    /// is given the bound addresses, in the order of `listeners`).
    pub worker_args: Vec<OsString>,
    /// How long workers may take to drain after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Log the workers' summed counters this often.
    pub stats_interval: Option<Duration>,
}

/// A worker that lived shorter than this counts toward a crash loop.
const QUICK_DEATH: Duration = Duration::from_secs(10);
/// Quick deaths in a row that make a crash loop.
const CRASH_LOOP: u32 = 5;
/// First restart delay; doubled for each quick death in a row, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long workers get to answer a request for their counters.
const STATS_WAIT: Duration = Duration::from_secs(1);
/// After the drain deadline, how long workers get to exit before they are killed.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// Longest report line a worker may send; a longer one is cut off.
const MAX_REPORT_LINE: usize = 4096;

const SIGNALS: Token = Token(usize::MAX);

/// One worker's place: the process in it now, if any, and its history.
#[derive(Debug)]
struct Slot {
    child: Option<Child>,
    started: Instant,
    report: Option<mio::net::UnixStream>,
    pending: Vec<u8>,
    ready: bool,
    /// Counters from its last report.
    last: Counters,
    /// Asked for counters, no answer yet.
    asked: bool,
    quick_deaths: u32,
    restart_at: Option<Instant>,
    /// Why the last process in this slot died.
    last_death: String,
}

struct Supervisor {
    config: SupervisorConfig,
    groups: Vec<ListenerGroup>,
    poll: Poll,
    slots: Vec<Slot>,
    /// Cumulative counters of workers that are gone.
    retired: Counters,
    next_stats: Option<Instant>,
    /// When the current request for counters gives up on late workers.
    stats_deadline: Option<Instant>,
    /// Set by the first SIGTERM/SIGINT: the time by which every worker must have exited.
    draining: Option<Instant>,
    killed_stragglers: bool,
    /// systemd's `READY=1` was sent (once every worker first reported ready).
    announced: bool,
    /// When to refresh systemd's `STATUS=` line next, if systemd wants notifications.
    next_status: Option<Instant>,
    /// The current request for counters only refreshes `STATUS=`: it is not logged.
    quiet: bool,
}

/// Runs the supervisor until its workers drained after a signal (`Ok(None)`: exit 0), or a
/// second signal made everyone exit at once (`Ok(Some(128 + signal))`). `Err` when a listener
/// cannot be bound or every worker is crash-looping.
pub fn run(config: SupervisorConfig) -> io::Result<Option<u8>> {
    let mut groups = Vec::with_capacity(config.listeners.len());
    for (name, addr) in &config.listeners {
        let target = addr.resolve_one().map_err(|e| crate::error::context(e, &format!("listen {addr}")))?;
        let group = ListenerGroup::bind(&target, config.backlog, config.workers)?;
        groups.push(group);
        let real = &groups[groups.len() - 1].address;
        // Scripts and tests wait for this exact line: once per address, not per worker.
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{name} listening on {real}");
        let _ = out.flush();
        log::info!("{name} listening on {real} ({} workers)", config.workers);
    }
    let poll = Poll::new()?;
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGCHLD])?;
    poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
    let now = Instant::now();
    let slots = (0..config.workers)
        .map(|_| Slot {
            child: None,
            started: now,
            report: None,
            pending: Vec::new(),
            ready: false,
            last: Counters::default(),
            asked: false,
            quick_deaths: 0,
            restart_at: Some(now),
            last_death: String::new(),
        })
        .collect();
    let mut sup = Supervisor {
        next_stats: config.stats_interval.map(|d| now + d),
        config,
        groups,
        poll,
        slots,
        retired: Counters::default(),
        stats_deadline: None,
        draining: None,
        killed_stragglers: false,
        announced: false,
        next_status: crate::systemd::notifying().then(|| now + crate::systemd::STATUS_EVERY),
        quiet: false,
    };
    let result = sup.run(&mut signals);
    sup.remove_unix_paths();
    result
}

impl Supervisor {
    fn run(&mut self, signals: &mut Signals) -> io::Result<Option<u8>> {
        let mut events = Events::with_capacity(64);
        loop {
            self.start_due_workers()?;
            if self.draining.is_some() && self.slots.iter().all(|s| s.child.is_none()) {
                if self.killed_stragglers {
                    return Ok(Some(1));
                }
                log::info!("all workers exited; exiting");
                return Ok(None);
            }
            let timeout = self.next_deadline().map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        let pending: Vec<i32> = signals.pending().collect();
                        for signal in pending {
                            if let Some(status) = self.on_signal(signal) {
                                return Ok(Some(status));
                            }
                        }
                    }
                    Token(i) => self.read_reports(i),
                }
            }
            self.reap();
            self.on_timers();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let restarts = self.slots.iter().filter_map(|s| s.restart_at);
        let drain = self.draining.map(|d| if self.killed_stragglers { d + EXIT_GRACE } else { d });
        restarts.chain(self.next_stats).chain(self.next_status).chain(self.stats_deadline).chain(drain).min()
    }

    fn on_signal(&mut self, signal: i32) -> Option<u8> {
        match signal {
            SIGCHLD => {}
            SIGHUP => log::info!("SIGHUP: ignored (netloop has nothing to reload; SIGTERM stops it)"),
            SIGUSR1 => self.ask_for_counters(false),
            _ if self.draining.is_some() => {
                log::warn!("second signal ({signal}): workers exit now");
                self.signal_workers(signal);
                return Some(u8::try_from(128 + signal).unwrap_or(u8::MAX));
            }
            _ => {
                log::info!(
                    "signal {signal}: draining {} worker(s) (up to {:?}); signal again to exit now",
                    self.live_workers(),
                    self.config.shutdown_timeout
                );
                crate::systemd::notify("STOPPING=1");
                self.draining = Some(Instant::now() + self.config.shutdown_timeout + EXIT_GRACE);
                // Our copies of the listening sockets would keep them accepting into a
                // backlog no one drains; workers close theirs as they drain.
                for group in &mut self.groups {
                    group.sockets.clear();
                }
                for slot in &mut self.slots {
                    slot.restart_at = None;
                }
                self.signal_workers(SIGTERM);
            }
        }
        None
    }

    fn live_workers(&self) -> usize {
        self.slots.iter().filter(|s| s.child.is_some()).count()
    }

    fn signal_workers(&self, signal: i32) {
        for slot in &self.slots {
            if let Some(child) = &slot.child {
                // SAFETY: kill(2) on our own child, which we have not reaped yet.
                unsafe { libc::kill(child.id() as i32, signal) };
            }
        }
    }

    fn start_due_workers(&mut self) -> io::Result<()> {
        let now = Instant::now();
        for index in 0..self.slots.len() {
            if self.slots[index].restart_at.is_some_and(|t| t <= now) {
                self.slots[index].restart_at = None;
                if let Err(e) = self.spawn(index) {
                    log::error!("worker {index}: could not start: {e}");
                    self.died(index, format!("could not start: {e}"));
                }
            }
        }
        let all_looping = self.slots.iter().all(|s| s.child.is_none() && s.quick_deaths >= CRASH_LOOP);
        if all_looping {
            let last = &self.slots[0].last_death;
            return Err(io::Error::other(format!(
                "every worker is crash-looping ({CRASH_LOOP} deaths in a row, each within {QUICK_DEATH:?} of \
                 starting); last: {last}"
            )));
        }
        Ok(())
    }

    fn spawn(&mut self, index: usize) -> io::Result<()> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let listener_fds: Vec<RawFd> = self.groups.iter().map(|g| g.socket_for(index).as_raw_fd()).collect();
        let report_fd = theirs.as_raw_fd();
        let fds_text = listener_fds.iter().map(|fd| fd.to_string()).collect::<Vec<_>>().join(",");
        // The running binary itself, even if its file was replaced (an upgrade) or removed
        // since: a restarted worker must speak this supervisor's protocol.
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0(std::env::current_exe()?);
        cmd.arg("serve").args(&self.config.worker_args);
        for ((name, _), group) in self.config.listeners.iter().zip(&self.groups) {
            cmd.arg(format!("--{name}")).arg(group.address.to_string());
        }
        cmd.arg("--worker").arg(index.to_string()).arg("--worker-report-fd").arg(report_fd.to_string());
        if !listener_fds.is_empty() {
            cmd.arg("--worker-listeners").arg(fds_text);
        }
        // The listening lines are ours; workers log on the shared stderr.
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        // Signals reach workers through the supervisor only: a Ctrl-C sent to the terminal's
        // process group would otherwise hit every worker too, and the supervisor's SIGTERM
        // would then be their second signal, which exits at once instead of draining.
        cmd.process_group(0);
        let mut inherit = listener_fds.clone();
        inherit.push(report_fd);
        let supervisor = std::process::id();
        // SAFETY: the closure only makes async-signal-safe calls (fcntl, prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &inherit {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                // A worker whose supervisor died drains and exits instead of serving alone.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // The supervisor may have died before the line above took effect.
                if libc::getppid() as u32 != supervisor {
                    return Err(io::Error::other("the supervisor is gone"));
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        ours.set_nonblocking(true)?;
        let mut report = mio::net::UnixStream::from_std(ours);
        self.poll.registry().register(&mut report, Token(index), Interest::READABLE)?;
        log::info!("worker {index} started (pid {})", child.id());
        let slot = &mut self.slots[index];
        slot.child = Some(child);
        slot.started = Instant::now();
        slot.report = Some(report);
        slot.pending.clear();
        slot.ready = false;
        slot.asked = false;
        slot.last = Counters::default();
        Ok(())
    }

    /// Reads what worker `index` reported: `ready`, or its counters.
    fn read_reports(&mut self, index: usize) {
        let Some(slot) = self.slots.get_mut(index) else { return };
        let Some(report) = slot.report.as_mut() else { return };
        let mut buf = [0u8; 4096];
        loop {
            match report.read(&mut buf) {
                Ok(0) => {
                    // The worker is gone; SIGCHLD says how.
                    let mut gone = slot.report.take();
                    if let Some(r) = gone.as_mut() {
                        let _ = self.poll.registry().deregister(r);
                    }
                    break;
                }
                Ok(n) => {
                    slot.pending.extend_from_slice(&buf[..n]);
                    if slot.pending.len() > MAX_REPORT_LINE && !slot.pending.contains(&b'\n') {
                        slot.pending.clear();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let mut lines = Vec::new();
        while let Some(end) = slot.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = slot.pending.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        for line in lines {
            let slot = &mut self.slots[index];
            if line == "ready" {
                slot.ready = true;
                log::debug!("worker {index} ready");
                if !self.announced && self.slots.iter().all(|s| s.ready) {
                    self.announced = true;
                    crate::systemd::notify(&format!(
                        "READY=1\n{}",
                        crate::systemd::status_line(0, Some(self.slots.len()))
                    ));
                }
            } else if let Some(c) = line.strip_prefix("stats ").and_then(Counters::from_wire) {
                slot.last = c;
                slot.asked = false;
            }
        }
        if self.stats_deadline.is_some() && !self.slots.iter().any(|s| s.asked && s.child.is_some()) {
            self.log_counters();
        }
    }

    /// Collects every worker that exited: logs why, and schedules its restart.
    fn reap(&mut self) {
        for index in 0..self.slots.len() {
            let status = match self.slots[index].child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => status,
                _ => continue,
            };
            let pid = self.slots[index].child.take().map_or(0, |c| c.id());
            let slot = &mut self.slots[index];
            if let Some(mut r) = slot.report.take() {
                let _ = self.poll.registry().deregister(&mut r);
            }
            self.retired = self.retired.add(&slot.last.cumulative());
            slot.last = Counters::default();
            slot.asked = false;
            let why = describe_exit(status);
            if self.draining.is_some() {
                if status.success() {
                    log::info!("worker {index} (pid {pid}) drained and exited");
                } else {
                    log::warn!("worker {index} (pid {pid}) {why} while draining");
                }
                continue;
            }
            log::warn!("worker {index} (pid {pid}) {why}; restarting it");
            self.died(index, why);
        }
    }

    /// Schedules the restart of slot `index` after a death, backing off when it keeps dying.
    fn died(&mut self, index: usize, why: String) {
        let slot = &mut self.slots[index];
        let quick = slot.started.elapsed() < QUICK_DEATH;
        slot.quick_deaths = if quick { slot.quick_deaths + 1 } else { 1 };
        let doublings = slot.quick_deaths.saturating_sub(1).min(16);
        let backoff = FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF);
        if slot.quick_deaths >= CRASH_LOOP {
            log::error!(
                "worker {index} is crash-looping: {} deaths in a row, each within {QUICK_DEATH:?} of starting \
                 (last: {why}); next start in {backoff:?}",
                slot.quick_deaths
            );
        }
        slot.last_death = why;
        slot.restart_at = Some(Instant::now() + backoff);
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        if self.next_stats.is_some_and(|t| t <= now) {
            self.next_stats = self.config.stats_interval.map(|d| now + d);
            self.ask_for_counters(false);
        }
        if self.next_status.is_some_and(|t| t <= now) {
            self.next_status = Some(now + crate::systemd::STATUS_EVERY);
            self.ask_for_counters(true);
        }
        if self.stats_deadline.is_some_and(|t| t <= now) {
            let late = self.slots.iter().filter(|s| s.asked && s.child.is_some()).count();
            log::debug!("{late} worker(s) did not report counters in time; using their last report");
            self.log_counters();
        }
        if let Some(deadline) = self.draining {
            if !self.killed_stragglers && deadline <= now {
                log::error!(
                    "{} worker(s) still running after the drain deadline: killing them",
                    self.live_workers()
                );
                self.signal_workers(libc::SIGKILL);
                self.killed_stragglers = true;
            }
        }
    }

    /// Asks every ready worker for its counters; they are logged (unless `quiet`) and shown
    /// to systemd once all answered (or after `STATS_WAIT`, with the last report of those
    /// that did not).
    fn ask_for_counters(&mut self, quiet: bool) {
        if self.stats_deadline.is_some() {
            // A request is under way; its answer is logged unless both were quiet.
            self.quiet &= quiet;
            return;
        }
        self.quiet = quiet;
        let mut asked = 0;
        for slot in &mut self.slots {
            // A worker not yet ready may not have its handler in place: SIGUSR1 would kill it.
            if let (Some(child), true) = (&slot.child, slot.ready) {
                // SAFETY: kill(2) on our own, unreaped child.
                unsafe { libc::kill(child.id() as i32, SIGUSR1) };
                slot.asked = true;
                asked += 1;
            }
        }
        if asked == 0 {
            self.stats_deadline = Some(Instant::now());
            self.log_counters();
        } else {
            self.stats_deadline = Some(Instant::now() + STATS_WAIT);
        }
    }

    fn log_counters(&mut self) {
        self.stats_deadline = None;
        let live = self.slots.iter().filter(|s| s.child.is_some());
        let sum = live.fold(self.retired, |acc, s| acc.add(&s.last));
        crate::systemd::notify(&crate::systemd::status_line(sum.connections, Some(self.live_workers())));
        if !self.quiet {
            log::info!("stats: workers={} {sum}", self.live_workers());
        }
        for slot in &mut self.slots {
            slot.asked = false;
        }
    }

    fn remove_unix_paths(&self) {
        for group in self.groups.iter().filter(|g| !g.inherited) {
            if let SocketAddress::Unix(path) = &group.address {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Why a worker exited, in words: `exited with status 1`, `was killed by signal 9 (SIGKILL)`.
fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    let Some(signal) = status.signal() else { return format!("exited ({status})") };
    let core = if status.core_dumped() { ", core dumped" } else { "" };
    format!("was killed by signal {signal} ({}{core})", signal_name(signal))
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
