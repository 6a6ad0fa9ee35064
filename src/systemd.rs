//! systemd integration, without libsystemd: socket activation (`LISTEN_FDS`) and readiness
//! notification (`NOTIFY_SOCKET`). Both protocols are a few environment variables and one
//! datagram each (see `sd_listen_fds(3)`, `sd_notify(3)`), small enough to speak directly.
//!
//! Both variables are removed from the environment once read, as `sd_listen_fds(1)` does:
//! the processes netloop starts (workers) must not mistake them for their own.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::addr::SocketAddress;
use crate::listener;

/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;
/// More than any unit declares; a larger `LISTEN_FDS` is a corrupt environment.
const MAX_LISTEN_FDS: usize = 1024;

/// A listening socket the service manager handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivatedSocket {
    /// Its descriptor.
    pub fd: RawFd,
    /// The address it is bound to.
    pub address: SocketAddress,
    /// Its `FileDescriptorName=` (systemd names it after the socket unit by default).
    pub name: String,
}

/// The sockets passed by socket activation, if this process is the one they were meant for
/// (`LISTEN_PID`). Each is registered so that the listener configured for its address uses it
/// instead of binding; the caller decides what serves the others. Reads the variables once.
pub fn take_activated_sockets() -> io::Result<Vec<ActivatedSocket>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let (Some(pid), Some(count)) = (pid, count) else { return Ok(Vec::new()) };
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    let count: usize = count.parse().ok().filter(|n| *n <= MAX_LISTEN_FDS).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("LISTEN_FDS={count:?} is not a count"))
    })?;
    let names: Vec<String> = names.map(|n| n.split(':').map(str::to_string).collect()).unwrap_or_default();
    let mut sockets = Vec::with_capacity(count);
    for i in 0..count {
        let fd = LISTEN_FDS_START + i as RawFd;
        // Ours alone: workers get what they need explicitly.
        // SAFETY: fcntl on a descriptor the service manager passed to us.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
            return Err(io::Error::last_os_error());
        }
        let address = listener::local_address_of(fd).map_err(|e| {
            io::Error::new(e.kind(), format!("socket activation: descriptor {fd} is not a bound socket: {e}"))
        })?;
        let name = names.get(i).cloned().unwrap_or_default();
        log::info!("socket activation: {address} (descriptor {fd}, name {name:?})");
        // SAFETY: the service manager handed this descriptor to this process.
        unsafe { listener::inherit(address.clone(), fd) };
        sockets.push(ActivatedSocket { fd, address, name });
    }
    Ok(sockets)
}

/// Where readiness goes (`NOTIFY_SOCKET`), read once.
static NOTIFY: Mutex<Option<Notifier>> = Mutex::new(None);

#[derive(Debug)]
struct Notifier {
    socket: UnixDatagram,
    target: Target,
}

#[derive(Debug)]
enum Target {
    Path(PathBuf),
    /// Linux's abstract namespace (`@name`).
    Abstract(Vec<u8>),
}

/// Reads `NOTIFY_SOCKET` and removes it from the environment. True when the service manager
/// wants notifications.
pub fn init_notify() -> bool {
    let Some(value) = std::env::var_os("NOTIFY_SOCKET") else { return false };
    std::env::remove_var("NOTIFY_SOCKET");
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()).to_vec();
    let target = match bytes.first() {
        Some(b'@') => Target::Abstract(bytes[1..].to_vec()),
        Some(b'/') => Target::Path(PathBuf::from(value)),
        _ => {
            log::warn!("NOTIFY_SOCKET={value:?} is neither a path nor @abstract; not notifying");
            return false;
        }
    };
    match UnixDatagram::unbound() {
        Ok(socket) => {
            *NOTIFY.lock().unwrap_or_else(|e| e.into_inner()) = Some(Notifier { socket, target });
            true
        }
        Err(e) => {
            log::warn!("NOTIFY_SOCKET: {e}; not notifying");
            false
        }
    }
}

/// True when notifications go somewhere.
pub fn notifying() -> bool {
    NOTIFY.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// Sends `state` (`READY=1`, `STOPPING=1`, `STATUS=...`, newline-separated) to the service
/// manager, if it asked for it. Failures are logged, never fatal: a missed notification must
/// not stop the server.
pub fn notify(state: &str) {
    let guard = NOTIFY.lock().unwrap_or_else(|e| e.into_inner());
    let Some(n) = guard.as_ref() else { return };
    let sent = match &n.target {
        Target::Path(p) => n.socket.send_to(state.as_bytes(), p),
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| n.socket.send_to_addr(state.as_bytes(), &addr))
        }
    };
    if let Err(e) = sent {
        log::warn!("systemd notification {state:?} not sent: {e}");
    }
}

/// How often the `STATUS=` line is refreshed while notifications are wanted.
pub const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The `STATUS=` line: what `systemctl status` shows.
pub fn status_line(connections: u64, workers: Option<usize>) -> String {
    match workers {
        Some(w) => format!("STATUS={connections} connections over {w} workers"),
        None => format!("STATUS={connections} connections"),
    }
}
