//! Listening sockets (Node's `net.Server` handle): bind with a real backlog, accept, close.
//!
//! mio's own `TcpListener::bind` hard-codes a backlog of 128; a burst of thousands of connects
//! then overflows the accept queue and clients sit in SYN retries for seconds. We build the
//! socket with `socket2` to choose the backlog, then hand it to mio.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mio::event::Source;
use mio::net::{TcpListener, UnixListener};
use socket2::{Domain, SockAddr, Socket as RawSocket, Type};

use crate::addr::SocketAddress;
use crate::error;
use crate::options::ServerOptions;
use crate::socket::Stream;

/// A bound, listening socket.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds and listens on `addr`. Returns the listener and its real address (port 0
    /// resolved). Errors read like Node's: `listen EADDRINUSE: Address in use 127.0.0.1:80`.
    /// A listening socket handed over for `addr` (see [`inherit`]) is used instead of a new
    /// bind.
    pub fn bind(addr: &SocketAddress, backlog: u32) -> io::Result<(Listener, SocketAddress)> {
        if let Some(fd) = take_inherited(addr) {
            return adopt(fd)
                .map_err(|e| io::Error::new(e.kind(), format!("listen {addr} (inherited): {e}")));
        }
        let backlog = backlog.min(i32::MAX as u32) as i32;
        let result = match addr {
            SocketAddress::Inet(a) => bind_tcp(*a, backlog),
            SocketAddress::Unix(path) => bind_unix(path, backlog),
            SocketAddress::UnnamedUnix => Err(io::Error::new(io::ErrorKind::InvalidInput, "no path")),
        };
        result.map_err(|e| {
            let name = error::errno_name(&e).unwrap_or("error");
            io::Error::new(e.kind(), format!("listen {name}: {} {addr}", error::message(&e)))
        })
    }

    pub fn accept(&self) -> io::Result<(Stream, SocketAddress)> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), SocketAddress::Inet(a))),
            Listener::Unix(l) => l.accept().map(|(s, a)| (Stream::Unix(s), SocketAddress::from_unix(&a))),
        }
    }

    pub fn source(&mut self) -> &mut dyn Source {
        match self {
            Listener::Tcp(l) => l,
            Listener::Unix(l) => l,
        }
    }
}

fn bind_tcp(addr: std::net::SocketAddr, backlog: i32) -> io::Result<(Listener, SocketAddress)> {
    let sock = listen_tcp(addr, backlog, false)?;
    let std_listener: std::net::TcpListener = sock.into();
    let real = std_listener.local_addr()?;
    Ok((Listener::Tcp(TcpListener::from_std(std_listener)), SocketAddress::Inet(real)))
}

/// A non-blocking, close-on-exec TCP listener on `addr`; with `reuse_port`, one member of an
/// `SO_REUSEPORT` group the kernel balances new connections over.
fn listen_tcp(addr: std::net::SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<RawSocket> {
    let sock = RawSocket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarting a server must not wait out TIME_WAIT (Node and mio set it too).
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    Ok(sock)
}

/// Listening sockets of one address, bound by a supervisor for its workers: one per worker
/// for TCP (an `SO_REUSEPORT` group), or one shared by all for a Unix path.
#[derive(Debug)]
pub struct ListenerGroup {
    /// The real address (port 0 resolved).
    pub address: SocketAddress,
    /// The sockets; a Unix path has one, shared.
    pub sockets: Vec<OwnedFd>,
    /// Handed over by a service manager, which owns its Unix socket file, if any.
    pub inherited: bool,
}

impl ListenerGroup {
    /// Binds `addr` for `workers` workers. A TCP address already in use by anyone, including
    /// another netloop supervisor of the same user, is refused: a plain bind probes the port
    /// first, since a reuse-port bind alone would let a second group join the first silently.
    /// A socket inherited for `addr` (socket activation) is shared by every worker instead.
    pub fn bind(addr: &SocketAddress, backlog: u32, workers: usize) -> io::Result<ListenerGroup> {
        if let Some(fd) = take_inherited(addr) {
            let address = local_address_of(fd.as_raw_fd())?;
            return Ok(ListenerGroup { address, sockets: vec![fd], inherited: true });
        }
        let backlog_i = backlog.min(i32::MAX as u32) as i32;
        let named = |e: io::Error| {
            let name = error::errno_name(&e).unwrap_or("error");
            io::Error::new(e.kind(), format!("listen {name}: {} {addr}", error::message(&e)))
        };
        match addr {
            SocketAddress::Inet(a) => {
                if a.port() != 0 {
                    // Dropped at once: it only asks whether the port is free.
                    listen_tcp(*a, 1, false).map_err(|e| {
                        let e = named(e);
                        let hint =
                            "(workers share an address only with the other workers of their own supervisor)";
                        io::Error::new(e.kind(), format!("{e} {hint}"))
                    })?;
                }
                let first = listen_tcp(*a, backlog_i, true).map_err(named)?;
                let real = first.local_addr()?.as_socket().unwrap_or(*a);
                let mut sockets = vec![OwnedFd::from(first)];
                for _ in 1..workers {
                    sockets.push(OwnedFd::from(listen_tcp(real, backlog_i, true).map_err(named)?));
                }
                Ok(ListenerGroup { address: SocketAddress::Inet(real), sockets, inherited: false })
            }
            _ => {
                let (listener, address) = Listener::bind(addr, backlog)?;
                let fd = match listener {
                    Listener::Unix(l) => OwnedFd::from(std::os::unix::net::UnixListener::from(l)),
                    Listener::Tcp(l) => OwnedFd::from(std::net::TcpListener::from(l)),
                };
                Ok(ListenerGroup { address, sockets: vec![fd], inherited: false })
            }
        }
    }

    /// The socket worker `index` accepts on.
    pub fn socket_for(&self, index: usize) -> &OwnedFd {
        &self.sockets[index % self.sockets.len()]
    }
}

/// A listening socket handed to this process (by a supervisor or by systemd), waiting for the
/// listener whose address it stands for.
struct Inherited {
    key: SocketAddress,
    fd: OwnedFd,
}

static INHERITED: Mutex<Vec<Inherited>> = Mutex::new(Vec::new());
/// Unix paths of inherited sockets: whoever made them removes them, not us.
static INHERITED_PATHS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Registers `fd`, a listening socket this process inherited, to be used by the next
/// [`Listener::bind`] of `key` instead of binding anew. Takes ownership of `fd`.
///
/// # Safety
/// `fd` must be an open descriptor this process owns and nothing else will close.
pub unsafe fn inherit(key: SocketAddress, fd: RawFd) {
    // SAFETY: the caller hands us the descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if let SocketAddress::Unix(p) = &key {
        INHERITED_PATHS.lock().unwrap_or_else(|e| e.into_inner()).push(p.clone());
    }
    INHERITED.lock().unwrap_or_else(|e| e.into_inner()).push(Inherited { key, fd });
}

fn take_inherited(addr: &SocketAddress) -> Option<OwnedFd> {
    let mut list = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
    let at = list.iter().position(|i| &i.key == addr)?;
    Some(list.remove(at).fd)
}

fn was_inherited(path: &Path) -> bool {
    INHERITED_PATHS.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|p| p == path)
}

/// The address a listening socket is bound to (`getsockname`).
pub fn local_address_of(fd: RawFd) -> io::Result<SocketAddress> {
    // SAFETY: borrowed only for the call; ManuallyDrop keeps the caller's descriptor open.
    let sock = std::mem::ManuallyDrop::new(unsafe { RawSocket::from_raw_fd(fd) });
    let addr = sock.local_addr()?;
    if let Some(inet) = addr.as_socket() {
        return Ok(SocketAddress::Inet(inet));
    }
    match addr.as_pathname() {
        Some(p) => Ok(SocketAddress::Unix(p.to_path_buf())),
        None => Ok(SocketAddress::UnnamedUnix),
    }
}

/// A handed-over listening socket as a loop listener: made non-blocking and close-on-exec
/// (a service manager may pass it blocking).
fn adopt(fd: OwnedFd) -> io::Result<(Listener, SocketAddress)> {
    let sock = RawSocket::from(fd);
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    let address = local_address_of(sock.as_raw_fd())?;
    let listener = match &address {
        SocketAddress::Inet(_) => Listener::Tcp(TcpListener::from_std(sock.into())),
        _ => Listener::Unix(UnixListener::from_std(sock.into())),
    };
    Ok((listener, address))
}

fn bind_unix(path: &Path, backlog: i32) -> io::Result<(Listener, SocketAddress)> {
    let bind = || -> io::Result<RawSocket> {
        let sock = RawSocket::new(Domain::UNIX, Type::STREAM, None)?;
        sock.bind(&SockAddr::unix(path)?)?;
        Ok(sock)
    };
    let sock = match bind() {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && is_stale_socket(path) => {
            // A socket file nobody listens on is left over from a crash. Node refuses
            // (EADDRINUSE); a daemon that restarts under systemd is better served by removing
            // it. A file that is not a socket, or one still served, is never touched.
            log::warn!("removing stale unix socket {}", path.display());
            std::fs::remove_file(path)?;
            bind()?
        }
        other => other?,
    };
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    let std_listener: std::os::unix::net::UnixListener = sock.into();
    Ok((Listener::Unix(UnixListener::from_std(std_listener)), SocketAddress::Unix(path.to_path_buf())))
}

/// True when `path` is a socket file and connecting to it is refused (no one listens).
fn is_stale_socket(path: &Path) -> bool {
    let is_socket = std::fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false);
    is_socket
        && matches!(
            std::os::unix::net::UnixStream::connect(path),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
        )
}

/// A listening server's slot in the loop.
#[derive(Debug)]
pub(crate) struct Server {
    /// `None` once closed (the fd is released at once; the slot lives until `'close'`).
    pub listener: Option<Listener>,
    pub address: SocketAddress,
    pub options: ServerOptions,
    /// Live connections accepted by this server (Node's `_connections`).
    pub connections: usize,
    pub gen: u32,
    /// Does not keep the loop alive (`server.unref()`).
    pub unref: bool,
    /// Registered for accept readiness (false while paused after fd exhaustion).
    pub registered: bool,
    /// Unix socket file to remove when the server closes (Node unlinks it too).
    pub unlink_on_close: Option<PathBuf>,
}

impl Server {
    /// Stops listening: closes the fd and removes a Unix socket file we created.
    pub fn close_listener(&mut self) {
        self.listener = None;
        if let Some(path) = self.unlink_on_close.take().filter(|p| !was_inherited(p)) {
            let _ = std::fs::remove_file(path);
        }
    }
}
