//! Opening outbound connections (Node's `net.connect`): the non-blocking connect itself, from a
//! chosen source address when asked. [`crate::Context::connect_from`] adopts the stream.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::addr::SocketAddress;
use crate::socket::Stream;

/// Starts a non-blocking connect to `addr`, bound first to `source` if given (TCP only). The
/// stream completes, or fails, later: the loop watches it for writability.
pub(crate) fn start_connect(addr: &SocketAddress, source: Option<IpAddr>) -> io::Result<Stream> {
    match addr {
        SocketAddress::Inet(a) => match source {
            None => mio::net::TcpStream::connect(*a).map(Stream::Tcp),
            Some(ip) => connect_bound(*a, ip).map(Stream::Tcp),
        },
        SocketAddress::Unix(p) => mio::net::UnixStream::connect(p).map(Stream::Unix),
        SocketAddress::UnnamedUnix => Err(io::Error::new(io::ErrorKind::InvalidInput, "no path")),
    }
}

/// A non-blocking connect from a chosen source address (mio's `connect` cannot bind first).
fn connect_bound(addr: SocketAddr, source: IpAddr) -> io::Result<mio::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    bind_address_no_port(&sock);
    sock.bind(&SocketAddr::new(source, 0).into())?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(sock.into()))
}

/// Linux's `IP_BIND_ADDRESS_NO_PORT`: `bind(ip, 0)` leaves the port to `connect()`, which
/// picks one unique per destination and may reuse TIME_WAIT ports (`tcp_tw_reuse`). Without it
/// `bind` reserves a port for all destinations and skips TIME_WAIT ones, so a second load run
/// within a minute finds a source's ports used up. Best effort: older kernels just bind early.
fn bind_address_no_port(sock: &socket2::Socket) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads `on` (a c_int of the given size) and touches nothing else.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = sock;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_from_a_source_leaves_from_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = SocketAddress::Inet(listener.local_addr().expect("addr"));
        let source: IpAddr = "127.0.0.1".parse().expect("literal");
        let stream = start_connect(&target, Some(source)).expect("connect");
        let (_peer, from) = listener.accept().expect("accept");
        assert_eq!(from.ip(), source);
        assert_eq!(stream.local_addr().expect("local").port(), Some(from.port()));
    }

    #[test]
    fn an_unnamed_unix_address_cannot_be_connected_to() {
        let err = start_connect(&SocketAddress::UnnamedUnix, None).expect_err("no path");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
