//! A socket's reading (`pause`, `resume`), its settings and what can be asked of it (Node's
//! `setTimeout`, `setNoDelay`, `bufferSize`, `remoteAddress`, ...).

use std::io;
use std::time::Duration;

use super::{clamp_ms, Context};
use crate::addr::SocketAddress;
use crate::ids::{ServerId, SocketId};
use crate::socket::NO_SERVER;

impl Context {
    /// `socket.pause()`: stop reading. Read interest is dropped, so a paused socket with
    /// unread data costs no wakeups; the kernel's receive window pushes back on the peer.
    pub fn pause(&mut self, socket: SocketId) {
        if let Some(key) = self.key_of(socket) {
            self.sockets[key].state.pause();
            self.sync_interest(key);
        }
    }

    /// `socket.resume()`: start reading again. The socket is read on this loop turn even if
    /// no new readiness edge arrives (data may have been left unread when it paused).
    pub fn resume(&mut self, socket: SocketId) {
        let Some(key) = self.key_of(socket) else { return };
        if !self.sockets[key].state.resume() {
            return;
        }
        self.sync_interest(key);
        self.mark_ready(key);
    }

    /// Services `key` again later in this turn without waiting for an edge (data may be left
    /// unread or unwritten); a socket is on the list at most once.
    pub(crate) fn mark_ready(&mut self, key: usize) {
        if self.sockets[key].state.mark_ready() {
            let id = self.id_of(key);
            self.ready.push(id);
        }
    }

    /// Node's `socket.allowHalfOpen`: after the peer's FIN the socket stays writable until
    /// the application calls `end()`.
    pub fn allows_half_open(&self, socket: SocketId) -> bool {
        self.key_of(socket).is_some_and(|k| self.sockets[k].state.allows_half_open())
    }

    /// True while paused.
    pub fn is_paused(&self, socket: SocketId) -> bool {
        self.key_of(socket).is_some_and(|k| self.sockets[k].state.is_paused())
    }

    /// True while more of the peer's input may be waiting unread in the kernel: the socket is
    /// paused by the application, stalled because its broadcasts left recipients behind
    /// ([`crate::flow`]), or queued to be read again (its read budget ran out, or it was just
    /// resumed). A service that holds an unfinished message uses it to tell "the peer has not
    /// sent the rest" from "we have not read the rest yet".
    pub fn may_have_unread_input(&self, socket: SocketId) -> bool {
        self.key_of(socket).is_some_and(|k| self.sockets[k].state.may_have_unread_input())
    }

    /// Node's `socket.writable`: `write()` would be accepted (not ended, not destroyed).
    pub fn is_writable(&self, socket: SocketId) -> bool {
        self.key_of(socket).is_some_and(|k| self.sockets[k].state.is_writable())
    }

    /// False once the socket is destroyed (its `on_close` may still be pending).
    pub fn is_open(&self, socket: SocketId) -> bool {
        self.key_of(socket).is_some_and(|k| !self.sockets[k].state.is_destroyed())
    }

    /// `socket.setTimeout(ms)`: `on_timeout` after this long without reads or writes;
    /// `Duration::ZERO` disables. Durations clamp to 2^31-1 ms, as Node's do.
    pub fn set_timeout(&mut self, socket: SocketId, idle: Duration) {
        // A destroyed socket's slot may be reused before its timer would fire.
        if let Some(key) = self.key_of(socket).filter(|&k| !self.sockets[k].state.is_destroyed()) {
            let now = self.clock.now32();
            self.idle.set(key, clamp_ms(idle), now);
        }
    }

    /// `socket.setNoDelay(on)`.
    pub fn set_no_delay(&mut self, socket: SocketId, on: bool) -> io::Result<()> {
        match self.key_of(socket) {
            Some(k) => self.sockets[k].io.set_nodelay(on),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// `socket.setKeepAlive(on, initialDelay)`.
    pub fn set_keep_alive(&mut self, socket: SocketId, on: bool, initial_delay: Duration) -> io::Result<()> {
        let Some(k) = self.key_of(socket) else { return Err(io::ErrorKind::NotConnected.into()) };
        let Some(s) = self.sockets[k].io.sock_ref() else { return Err(io::ErrorKind::NotConnected.into()) };
        if on {
            s.set_tcp_keepalive(
                &socket2::TcpKeepalive::new().with_time(initial_delay.max(Duration::from_secs(1))),
            )
        } else {
            s.set_keepalive(false)
        }
    }

    /// `socket.ref()` / `socket.unref()`: whether this socket keeps the loop running.
    pub fn set_socket_ref(&mut self, socket: SocketId, referenced: bool) {
        let Some(k) = self.key_of(socket) else { return };
        if !self.sockets[k].state.set_referenced(referenced) {
            return;
        }
        if referenced {
            self.referenced_sockets += 1;
        } else {
            self.referenced_sockets -= 1;
        }
    }

    /// Node's `bufferSize`: bytes queued and not yet taken by the kernel.
    pub fn buffer_size(&self, socket: SocketId) -> usize {
        self.key_of(socket).map_or(0, |k| self.sockets[k].queued())
    }

    /// Node's `bytesRead`.
    pub fn bytes_read(&self, socket: SocketId) -> u64 {
        self.key_of(socket).map_or(0, |k| self.sockets[k].bytes_read)
    }

    /// Node's `bytesWritten` (bytes the kernel accepted).
    pub fn bytes_written(&self, socket: SocketId) -> u64 {
        self.key_of(socket).map_or(0, |k| self.sockets[k].bytes_written)
    }

    /// Node's `remoteAddress`/`remotePort`/`remoteFamily`, asked of the kernel (not stored,
    /// to keep idle sockets small). `None` once the socket is destroyed.
    pub fn remote_address(&self, socket: SocketId) -> Option<SocketAddress> {
        self.key_of(socket).and_then(|k| self.sockets[k].io.peer_addr().ok())
    }

    /// Node's `localAddress`/`localPort`.
    pub fn local_address(&self, socket: SocketId) -> Option<SocketAddress> {
        self.key_of(socket).and_then(|k| self.sockets[k].io.local_addr().ok())
    }

    /// The server that accepted `socket` (`None` for outbound sockets).
    pub fn server_of(&self, socket: SocketId) -> Option<ServerId> {
        let k = self.key_of(socket)?;
        let s = self.sockets[k].server;
        (s != NO_SERVER).then(|| self.server_id(s as usize))
    }

    /// Every socket not yet closed, in slot order (for shutdown; not for hot paths).
    pub fn sockets(&self) -> Vec<SocketId> {
        self.sockets
            .iter()
            .filter(|(_, s)| !s.state.is_destroyed())
            .map(|(k, s)| SocketId { key: k as u32, gen: s.gen })
            .collect()
    }

    /// Open sockets (all servers and outbound); a destroyed one stops counting at once, even
    /// while its `'close'` is still to be delivered.
    pub fn socket_count(&self) -> usize {
        self.open_sockets
    }

    /// Slots the socket slab holds (live or free). Shrinks back after a burst of connections
    /// closes, so a spike does not pin its memory for the life of the process.
    pub fn socket_slots(&self) -> usize {
        self.sockets.capacity()
    }
}
