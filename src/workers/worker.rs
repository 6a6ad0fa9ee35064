//! A worker's side of the supervisor: the listening sockets it inherited and the channel on
//! which it reports that it is ready and what its counters are.
//!
//! The channel is one end of a Unix socket pair the supervisor made; lines on it are
//! `ready` once the worker serves, and `stats NAME=VALUE ...` each time the counters would be
//! logged (the supervisor asks with SIGUSR1 and logs the sum itself).

use std::io::{self, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use crate::addr::AddressSpec;
use crate::listener;
use crate::workers::counters::Counters;

/// The channel to the supervisor, once this process is a worker.
static REPORT: Mutex<Option<UnixStream>> = Mutex::new(None);

/// What a supervisor handed a worker on its command line.
#[derive(Debug, Clone)]
pub struct WorkerSetup {
    /// The worker's number, 0-based, for its log lines.
    pub index: usize,
    /// The reporting channel's descriptor.
    pub report_fd: RawFd,
    /// One listening socket per configured listener, in the order of the listeners.
    pub listener_fds: Vec<RawFd>,
}

/// Makes this process a worker: each configured listener takes its inherited socket instead of
/// binding, and counters go to the supervisor instead of the log.
///
/// # Safety
/// The descriptors in `setup` must be open, owned by this process and used by nothing else.
pub unsafe fn become_worker(setup: &WorkerSetup, listeners: &[AddressSpec]) -> io::Result<()> {
    if setup.listener_fds.len() != listeners.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} inherited listeners for {} addresses", setup.listener_fds.len(), listeners.len()),
        ));
    }
    for (addr, &fd) in listeners.iter().zip(&setup.listener_fds) {
        let key = addr.resolve_one()?;
        // SAFETY: the caller owns the descriptors.
        unsafe { listener::inherit(key, fd) };
    }
    // SAFETY: as above.
    let report = unsafe { UnixStream::from_raw_fd(setup.report_fd) };
    // A supervisor that stopped reading must not stall the loop: a report that does not fit
    // is dropped.
    report.set_nonblocking(true)?;
    *REPORT.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
    Ok(())
}

/// True when this process is a supervised worker.
pub fn is_worker() -> bool {
    REPORT.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

fn send(line: &str) -> bool {
    let mut report = REPORT.lock().unwrap_or_else(|e| e.into_inner());
    let Some(stream) = report.as_mut() else { return false };
    if let Err(e) = stream.write_all(line.as_bytes()) {
        log::debug!("report to the supervisor dropped: {e}");
    }
    true
}

/// Tells the supervisor this worker serves (its signal handlers are in place).
pub fn report_ready() {
    send("ready\n");
}

/// Sends `counters` to the supervisor; false when this process is not a worker (the caller
/// logs them itself).
pub fn report_counters(counters: &Counters) -> bool {
    send(&format!("stats {}\n", counters.to_wire()))
}
