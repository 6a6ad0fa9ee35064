//! One connection's state: its stream, its pending output and Node's stream flags.
//!
//! A `Socket` is what a slab slot holds, so its size is the memory an idle connection costs:
//! a file descriptor, a null pointer for the (absent) write queue, two byte counters and a few
//! small integers. The transitions (`end`, `destroy`, peer FIN, ...) are driven by
//! [`crate::context::Context`] and [`crate::event_loop`]; this module only holds the state and
//! the syscalls on it.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::Interest;

use crate::addr::SocketAddress;
use crate::write_queue::WriteQueue;

/// Node's `net.Socket` flags, as bits.
pub(crate) mod flag {
    /// Outbound connect in progress (`socket.connecting`).
    pub const CONNECTING: u32 = 1 << 0;
    /// `pause()` was called; reads stop until `resume()`.
    pub const PAUSED: u32 = 1 << 1;
    /// The peer's FIN was read (`'end'` emitted).
    pub const READ_ENDED: u32 = 1 << 2;
    /// `end()` was called: flush, then shut down the write side.
    pub const ENDING: u32 = 1 << 3;
    /// Our FIN was sent (`'finish'`).
    pub const FINISHED: u32 = 1 << 4;
    /// A `write()` returned false; `'drain'` is owed when the queue empties.
    pub const NEED_DRAIN: u32 = 1 << 5;
    /// Keep the write side open after the peer's FIN.
    pub const ALLOW_HALF_OPEN: u32 = 1 << 6;
    /// Closed; the slot waits for `'close'` to be emitted at the end of the batch.
    pub const DESTROYED: u32 = 1 << 7;
    /// Registered with `READABLE` interest.
    pub const REG_READ: u32 = 1 << 8;
    /// Registered with `WRITABLE` interest.
    pub const REG_WRITE: u32 = 1 << 9;
    /// `unref()`: does not keep the loop alive.
    pub const UNREF: u32 = 1 << 10;
    /// `cork()`: writes queue without a syscall until the loop flushes at the end of the turn.
    pub const CORKED: u32 = 1 << 11;
    /// epoll reported the peer's hang-up. That edge comes once, so every later read (a resume
    /// after the read budget ran out, say) must go on to EOF instead of stopping at a short
    /// read.
    pub const PEER_HUP: u32 = 1 << 12;
    /// On the loop's `ready` list: queued once however many budgets ran out.
    pub const READY: u32 = 1 << 13;
    /// Cut for its unfinished input: what the application reports for it is ignored from now.
    pub const INPUT_CUT: u32 = 1 << 14;
    /// Not read for now: its broadcasts left recipients behind (`crate::flow`). Apart from
    /// `PAUSED`, so the application's `pause()`/`resume()` stay its own.
    pub const STALLED: u32 = 1 << 15;
    /// A recipient that a stalled sender waits on (`crate::flow`).
    pub const HOLDING: u32 = 1 << 16;
    /// Corked, and the kernel refused more this turn: do not try it again before the
    /// end-of-turn flush.
    pub const KERNEL_FULL: u32 = 1 << 17;
}

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
    /// Bits from [`flag`].
    pub flags: u32,
    /// Place + 1 in the loop's list of sockets holding unfinished input
    /// ([`crate::input_budget`]), 0 when it holds none. Fills what was padding.
    pub hold: u32,
}

/// `Socket::server` of outbound sockets.
pub(crate) const NO_SERVER: u32 = u32::MAX;

impl Socket {
    pub fn new(io: Stream, gen: u32, server: u32, flags: u32) -> Self {
        Socket { io, queue: None, bytes_read: 0, bytes_written: 0, gen, server, flags, hold: 0 }
    }

    #[inline]
    pub fn has(&self, bits: u32) -> bool {
        self.flags & bits != 0
    }

    /// Bytes queued and not yet taken by the kernel (Node's `bufferSize`).
    #[inline]
    pub fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }

    /// The interest this socket should be registered with now, as `REG_*` bits.
    ///
    /// Read interest only while reading is wanted (`pause()` or a stall deregisters it, so a
    /// paused socket costs no wakeups); write interest only while output is queued or a
    /// connect is pending.
    pub fn wanted_interest(&self) -> u32 {
        use flag::*;
        let mut want = 0;
        if !self.has(PAUSED | STALLED | READ_ENDED | DESTROYED) {
            want |= REG_READ;
        }
        // A corked socket is flushed by the loop at the end of the turn, not on readiness.
        if !self.has(DESTROYED) && ((self.queued() > 0 && !self.has(CORKED)) || self.has(CONNECTING)) {
            want |= REG_WRITE;
        }
        want
    }
}

/// `REG_*` bits as a mio `Interest` (`None` when neither is set).
pub(crate) fn interest_of(bits: u32) -> Option<Interest> {
    match (bits & flag::REG_READ != 0, bits & flag::REG_WRITE != 0) {
        (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
        (true, false) => Some(Interest::READABLE),
        (false, true) => Some(Interest::WRITABLE),
        (false, false) => None,
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
