//! One connection's state: its stream, its pending output and Node's stream flags.
//!
//! A `Socket` is what a slab slot holds, so its size is the memory an idle connection costs:
//! a file descriptor, a null pointer for the (absent) write queue, two byte counters and a few
//! small integers. Node's stream flags and their transitions (`end`, `destroy`, peer FIN, ...)
//! live in [`state`]; [`crate::context::Context`] and [`crate::event_loop`] do what they say.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};

use crate::addr::SocketAddress;
use crate::write_queue::WriteQueue;

mod state;

pub(crate) use state::{AfterDrain, AfterPeerEnd, SocketState, WriteAdmission};

/// A TCP or Unix-domain stream, or nothing once destroyed (the fd is closed at once; the slot
/// lives on until `'close'` has been delivered).
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Closed,
}

impl Stream {
    pub fn source(&mut self) -> Option<&mut dyn Source> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Unix(s) => Some(s),
            Stream::Closed => None,
        }
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Closed => Ok(()),
        }
    }

    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
            Stream::Closed => Ok(None),
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddress> {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(SocketAddress::Inet),
            Stream::Unix(s) => s.peer_addr().map(|a| SocketAddress::from_unix(&a)),
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddress> {
        match self {
            Stream::Tcp(s) => s.local_addr().map(SocketAddress::Inet),
            Stream::Unix(s) => s.local_addr().map(|a| SocketAddress::from_unix(&a)),
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// `socket2` view for options mio does not wrap (keepalive).
    pub fn sock_ref(&self) -> Option<socket2::SockRef<'_>> {
        match self {
            Stream::Tcp(s) => Some(socket2::SockRef::from(s)),
            Stream::Unix(s) => Some(socket2::SockRef::from(s)),
            Stream::Closed => None,
        }
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(on),
            _ => Ok(()),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "socket is closed")
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Closed => Err(closed()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Closed => Err(closed()),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Closed => Err(closed()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a slab slot holds for one connection.
#[derive(Debug)]
pub(crate) struct Socket {
    pub io: Stream,
    /// Pending output; `None` whenever nothing is queued, so idle sockets own no buffer.
    pub queue: Option<Box<WriteQueue>>,
    /// Node's `bytesRead`.
    pub bytes_read: u64,
    /// Node's `bytesWritten` (bytes the kernel accepted).
    pub bytes_written: u64,
    /// Generation of the [`crate::SocketId`] handed out for this slot.
    pub gen: u32,
    /// Slot of the server that accepted this socket (its options apply), or `NO_SERVER`.
    pub server: u32,
    /// Node's stream flags.
    pub state: SocketState,
    /// Place + 1 in the loop's list of sockets holding unfinished input
    /// ([`crate::input_budget`]), 0 when it holds none. Fills what was padding.
    pub hold: u32,
}

/// `Socket::server` of outbound sockets.
pub(crate) const NO_SERVER: u32 = u32::MAX;

impl Socket {
    pub fn new(io: Stream, gen: u32, server: u32, state: SocketState) -> Self {
        Socket { io, queue: None, bytes_read: 0, bytes_written: 0, gen, server, state, hold: 0 }
    }

    /// Bytes queued and not yet taken by the kernel (Node's `bufferSize`).
    #[inline]
    pub fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_socket_slot_is_small() {
        // The whole user-space cost of an idle echo connection, so keep it small on purpose.
        // Debug builds of mio add a 16-byte registration check to every stream.
        let limit = if cfg!(debug_assertions) { 64 } else { 48 };
        assert!(std::mem::size_of::<Socket>() <= limit, "{}", std::mem::size_of::<Socket>());
    }
}
