//! [`ReserveFd`]: libuv's answer to running out of file descriptors while connections wait.
//!
//! With edge-triggered readiness, a listener whose `accept` failed with `EMFILE` leaves its
//! pending connections in the backlog and never fires again. An fd (`/dev/null`) is held in
//! reserve; when accept runs out, it is freed, every pending connection is accepted and closed
//! at once (clients see a prompt close instead of hanging), and the reserve is taken back.

use std::fs::File;
use std::io;

use crate::listener::Listener;

/// One spare file descriptor, held while one is free to take.
#[derive(Debug)]
pub(crate) struct ReserveFd(Option<File>);

/// What shedding a backlog did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shed {
    /// Pending connections accepted and closed.
    pub closed: u64,
    /// The backlog was emptied (accept said `WouldBlock`): only then will the listener's next
    /// connection raise a new edge.
    pub drained: bool,
}

impl ReserveFd {
    /// Takes the reserve now, if an fd is free.
    pub(crate) fn new() -> Self {
        let mut reserve = ReserveFd(None);
        reserve.refill();
        reserve
    }

    /// Re-opens the reserve if it is spent (and an fd is free to take).
    pub(crate) fn refill(&mut self) {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
    }

    /// Whether the reserve is held.
    pub(crate) fn is_held(&self) -> bool {
        self.0.is_some()
    }

    /// Frees the reserve, accepts and closes everything pending on `listener`, then takes the
    /// reserve back. Without a reserve nothing can be accepted: nothing is shed.
    pub(crate) fn shed_backlog(&mut self, listener: &Listener) -> Shed {
        let mut shed = Shed { closed: 0, drained: false };
        let Some(spare) = self.0.take() else { return shed };
        drop(spare);
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    drop(stream);
                    shed.closed += 1;
                }
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    shed.drained = e.kind() == io::ErrorKind::WouldBlock;
                    break;
                }
            }
        }
        self.refill();
        shed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::SocketAddress;

    fn listener() -> (Listener, std::net::SocketAddr) {
        let any = SocketAddress::Inet("127.0.0.1:0".parse().expect("literal"));
        let (listener, addr) = Listener::bind(&any, 16).expect("bind");
        let SocketAddress::Inet(addr) = addr else { panic!("not inet: {addr}") };
        (listener, addr)
    }

    #[test]
    fn shedding_closes_every_pending_connection_and_keeps_the_reserve() {
        let (listener, addr) = listener();
        let mut clients: Vec<_> =
            (0..3).map(|_| std::net::TcpStream::connect(addr).expect("connect")).collect();
        let mut reserve = ReserveFd::new();
        assert!(reserve.is_held());
        assert_eq!(reserve.shed_backlog(&listener), Shed { closed: 3, drained: true });
        assert!(reserve.is_held(), "taken back");
        for c in &mut clients {
            c.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
            let mut buf = [0u8; 1];
            // Closed by us: EOF, or a reset if the close raced the handshake.
            let read = io::Read::read(c, &mut buf);
            let reset = matches!(&read, Err(e) if e.kind() == io::ErrorKind::ConnectionReset);
            assert!(matches!(read, Ok(0)) || reset, "{read:?}");
        }
    }

    #[test]
    fn without_a_reserve_nothing_is_shed() {
        let (listener, addr) = listener();
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let mut spent = ReserveFd(None);
        assert_eq!(spent.shed_backlog(&listener), Shed { closed: 0, drained: false });
    }
}
