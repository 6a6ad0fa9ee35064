//! `netloop load`: a load generator that is itself one netloop program (a [`crate::Handler`]
//! on one [`crate::EventLoop`]), in the conventions of `tcpkali` and `wrk`.
//!
//! Modes: [`idle`] holds N connections; [`echo`] measures round trips and verifies every byte;
//! [`fanout`] measures chat/hub delivery latency, loss and reordering. The generic half (pacing
//! connects, failures by errno, phases, progress, the report) is in `runner`; each mode is a
//! `Workload` plugged into it. With a rate (`-r`, the total over all sending connections), echo
//! and fan-out send on a `schedule` and time latency from each message's scheduled send.
//!
//! The generator must never be the bottleneck, so the hot paths allocate nothing and touch only
//! the connection an event is about: a socket's slot is one table lookup, send buffers are
//! slices of one shared pattern or one reused message buffer, latencies go into HDR histograms.
//! See `docs/load.md` for usage and the JSON report's keys.

pub mod echo;
pub mod fanout;
pub mod idle;
pub mod report;
mod runner;
mod schedule;
mod sources;
pub mod split;
pub mod stats;

use std::io;
use std::net::IpAddr;
use std::time::Duration;

pub use echo::EchoConfig;
pub use fanout::{FanoutConfig, FanoutProtocol};
pub use report::Report;

use crate::addr::AddressSpec;
use crate::event_loop::EventLoop;
use crate::limits;
use crate::options::SocketOptions;
use runner::{RunSettings, Runner, Workload};
use sources::SourcePlan;

/// Settings every mode shares.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server to load.
    pub target: AddressSpec,
    /// Length of the measured phase (`-T`): the hold for idle, the traffic window otherwise.
    pub duration: Duration,
    /// New connections per second (`--connect-rate`); 0 = as fast as `max_connecting` allows.
    pub connect_rate: u32,
    /// Connects in flight at once (`--max-connecting`), so a burst does not overflow the
    /// server's accept backlog and stall on SYN retries.
    pub max_connecting: usize,
    /// A connect (and protocol handshake) slower than this fails with ETIMEDOUT.
    pub connect_timeout: Duration,
    /// After the window, how long fan-out waits for deliveries still in flight.
    pub drain_timeout: Duration,
    /// Source addresses to connect from (`--source`); `None` = automatic.
    pub sources: Option<Vec<IpAddr>>,
    /// Print the once-a-second progress line on stderr.
    pub progress: bool,
    /// This process runs share `.0` of `.1` of a split run (`--workers`): its part of the
    /// connections and of the rate, from its own source addresses.
    pub part: Option<(usize, usize)>,
}

/// The mode and its own settings.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Hold this many connections.
    Idle {
        /// Connections (`-c`).
        connections: usize,
    },
    /// Echo round trips.
    Echo(EchoConfig),
    /// Chat/hub fan-out.
    Fanout(FanoutConfig),
}

impl Mode {
    /// Connections the mode opens (fan-out: receivers and senders).
    pub fn connections(&self) -> usize {
        match self {
            Mode::Idle { connections } => *connections,
            Mode::Echo(e) => e.connections,
            Mode::Fanout(f) => f.receivers + f.senders,
        }
    }

    /// The mode's name as typed and reported.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Idle { .. } => "idle",
            Mode::Echo(_) => "echo",
            Mode::Fanout(_) => "fanout",
        }
    }
}

/// Runs one load test to the end (or to SIGINT/SIGTERM) and returns its report. `Err` only
/// when the run could not start: the target does not resolve, settings are impossible, or the
/// poll cannot be created. Everything that goes wrong during the run is in the report.
pub fn run(config: &LoadConfig, mode: &Mode) -> io::Result<Report> {
    let share;
    let mode = match config.part {
        Some((part, parts)) => {
            share = split::share_of(mode, part, parts)?;
            &share
        }
        None => mode,
    };
    check_memory_bounds(mode)?;
    let target = config.target.resolve_one()?;
    // Our own descriptors: the poll, the signal pipe, stdio, the EMFILE reserve; the rest may
    // be connections.
    let (fd_limit, raise_error) = match limits::raise_fd_limit() {
        Ok((_, after)) => (after, None),
        Err(e) => (limits::fd_limit().unwrap_or(1024), Some(e)),
    };
    if let Some(e) = raise_error {
        log::warn!("could not raise the open file limit: {e}");
    }
    let fd_capacity = limits::connection_capacity(fd_limit);
    let mut sources = SourcePlan::new(&target, config.sources.as_deref());
    if let Some((part, parts)) = config.part {
        sources = sources.for_part(part, parts, mode.connections());
    }
    if let Mode::Fanout(f) = mode {
        let needed = f.receivers + f.senders;
        let allowed = fd_capacity.min(sources.capacity());
        if needed > allowed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "fanout needs {needed} connections but only {allowed} fit (open file limit {fd_limit}, \
                     ulimit -n); lower -c/--receivers; {}",
                    runner::PAST_ONE_PROCESS
                ),
            ));
        }
    }
    let split_target = match mode {
        Mode::Fanout(FanoutConfig { receivers, senders_at: Some(addr), .. }) => {
            Some((runner::SlotSplit::From(*receivers), addr.resolve_one()?))
        }
        Mode::Fanout(FanoutConfig { half_at: Some(addr), .. }) => {
            Some((runner::SlotSplit::Odd, addr.resolve_one()?))
        }
        _ => None,
    };
    let settings = RunSettings {
        mode: mode.name(),
        target,
        split_target,
        target_text: config.target.to_string(),
        duration: config.duration,
        // A split run's connect rate is the total, as -r is.
        connect_rate: match config.part {
            Some((part, parts)) => split::split(u64::from(config.connect_rate), part, parts) as u32,
            None => config.connect_rate,
        },
        max_connecting: config.max_connecting.max(1),
        connect_timeout: config.connect_timeout,
        drain_timeout: config.drain_timeout,
        progress: config.progress,
        sources,
        fd_capacity,
        fd_limit,
        fd_hard_limit: crate::limits::hard_fd_limit(),
    };
    match mode {
        Mode::Idle { connections } => drive(idle::IdleLoad::new(*connections), settings),
        Mode::Echo(cfg) => drive(echo::EchoLoad::new(cfg.clone()), settings),
        Mode::Fanout(cfg) => drive(fanout::FanoutLoad::new(cfg.clone()), settings),
    }
}

fn drive<W: Workload>(workload: W, settings: RunSettings) -> io::Result<Report> {
    let mut event_loop = EventLoop::new()?;
    let cx = event_loop.context();
    cx.set_client_options(SocketOptions {
        // Latency is what we measure: no Nagle delay on our side.
        no_delay: true,
        // Our writes are bounded by the workloads themselves (pipeline x size, or a sender
        // waiting for drain); a 64 KiB mark keeps large echo messages from being flagged.
        high_water_mark: 64 * 1024,
        ..SocketOptions::default()
    });
    let mut runner = Runner::new(workload, settings);
    runner.begin(cx)?;
    event_loop.run(&mut runner)?;
    if let Some(signal) = runner.second_signal() {
        return Err(io::Error::other(SecondSignal(signal)));
    }
    Ok(runner.into_report())
}

/// A run stopped by a second SIGINT/SIGTERM, with no report: the process should exit with
/// 128 + [`SecondSignal::0`], as a shell reports a process killed by that signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondSignal(pub i32);

impl std::fmt::Display for SecondSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "second signal ({}), exiting now", self.0)
    }
}

impl std::error::Error for SecondSignal {}

impl SecondSignal {
    /// The second signal behind `err`, if that is what ended the run.
    pub fn of(err: &io::Error) -> Option<i32> {
        err.get_ref().and_then(|e| e.downcast_ref::<SecondSignal>()).map(|s| s.0)
    }
}

/// Most per-pair tracking entries (echo: connections x pipeline send stamps; fan-out:
/// receivers x senders sequence trackers) the generator will allocate: 128 MiB of them.
const MAX_TABLE_ENTRIES: usize = 8 * 1024 * 1024;
/// Most bytes one echo connection may have in flight (size x pipeline).
const MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

/// Refuses settings whose tables would not fit in memory, before anything is allocated.
fn check_memory_bounds(mode: &Mode) -> io::Result<()> {
    let too_big = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    match mode {
        Mode::Echo(e) => {
            if e.connections.saturating_mul(e.pipeline) > MAX_TABLE_ENTRIES {
                return too_big(format!(
                    "connections x pipeline is {} x {}; at most {MAX_TABLE_ENTRIES} messages in flight",
                    e.connections, e.pipeline
                ));
            }
            if e.size.saturating_mul(e.pipeline) > MAX_IN_FLIGHT_BYTES {
                return too_big(format!(
                    "size x pipeline is {} bytes per connection; at most {MAX_IN_FLIGHT_BYTES}",
                    e.size.saturating_mul(e.pipeline)
                ));
            }
        }
        Mode::Fanout(f) if f.receivers.saturating_mul(f.senders) > MAX_TABLE_ENTRIES => {
            return too_big(format!(
                "receivers x senders is {} x {}; at most {MAX_TABLE_ENTRIES} pairs are tracked",
                f.receivers, f.senders
            ));
        }
        _ => {}
    }
    Ok(())
}
