//! Listening sockets (Node's `net.Server` handle): bind with a real backlog, accept, close.
//!
//! mio's own `TcpListener::bind` hard-codes a backlog of 128; a burst of thousands of connects
//! then overflows the accept queue and clients sit in SYN retries for seconds. We build the
//! socket with `socket2` to choose the backlog, then hand it to mio.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

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
    pub fn bind(addr: &SocketAddress, backlog: u32) -> io::Result<(Listener, SocketAddress)> {
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
    let sock = RawSocket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarting a server must not wait out TIME_WAIT (Node and mio set it too).
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    let std_listener: std::net::TcpListener = sock.into();
    let real = std_listener.local_addr()?;
    Ok((Listener::Tcp(TcpListener::from_std(std_listener)), SocketAddress::Inet(real)))
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
        if let Some(path) = self.unlink_on_close.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
