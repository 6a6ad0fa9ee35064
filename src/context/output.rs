//! Writing, corking, ending and destroying a socket: Node's `write`, `cork`, `end`,
//! `destroy`, with the output limits checked as bytes are queued.

use std::io::{self, Write};
use std::time::Duration;

use super::Context;
use crate::ids::SocketId;
use crate::socket::WriteAdmission;
use crate::socket_error::SocketError;
use crate::timers::TimerKind;
use crate::warnings::Warning;
use crate::write_queue::{Flush, SharedBytes};

impl Context {
    /// `socket.write(data)`: tries the kernel at once if nothing is queued, queues the rest
    /// (copied). Returns false once the queued bytes reach the high-water mark; `on_drain`
    /// follows when the queue empties. A write the kernel takes whole returns true even when
    /// it is larger than the mark (newer Node; Node 20 returned false).
    pub fn write(&mut self, socket: SocketId, data: &[u8]) -> bool {
        self.write_impl(socket, data, None, false)
    }

    /// `write()` of bytes shared with other sockets: whatever the kernel does not take at
    /// once is queued by reference, not copied. Use for broadcasts.
    pub fn write_shared(&mut self, socket: SocketId, data: &SharedBytes) -> bool {
        self.write_impl(socket, data, Some(data), false)
    }

    /// `write()`, `write_shared()` and [`Context::write_broadcast`]. A corked queue is handed to
    /// the kernel before the hard limit is checked, and for a broadcast once it reaches the
    /// mark: a limit measures how far the peer is behind what the kernel would take, not what
    /// one turn produced.
    pub(crate) fn write_impl(
        &mut self,
        socket: SocketId,
        data: &[u8],
        shared: Option<&SharedBytes>,
        broadcast: bool,
    ) -> bool {
        let Some(key) = self.key_of(socket) else { return false };
        let sock = &mut self.sockets[key];
        match sock.state.admit_write() {
            WriteAdmission::Open => {}
            WriteAdmission::Closed => return false,
            WriteAdmission::AfterEnd => {
                self.destroy_key(key, Some(SocketError::WriteAfterEnd));
                return false;
            }
        }
        let mut offset = 0;
        if sock.state.writes_directly(sock.queue.is_none()) {
            while offset < data.len() {
                match sock.io.write(&data[offset..]) {
                    Ok(n) => offset += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.destroy_key(key, Some(e.into()));
                        return false;
                    }
                }
            }
            if offset > 0 {
                sock.bytes_written += offset as u64;
                self.stats.bytes_out += offset as u64;
                self.idle.touch(key, self.clock.now32());
            }
            if offset == data.len() {
                return true;
            }
        }
        let sock = &mut self.sockets[key];
        let newly_queued = sock.queue.is_none();
        let spares = &mut self.spare_queues;
        let q = sock.queue.get_or_insert_with(|| spares.pop().unwrap_or_default());
        match shared {
            Some(s) => q.push_shared(s.clone(), offset),
            None => q.push_copy(&data[offset..]),
        }
        let mut queued = q.len();
        let (hwm, limit) = {
            let o = self.options_of(self.sockets[key].server);
            (o.high_water_mark, o.max_buffer)
        };
        let sock = &self.sockets[key];
        let untried = sock.state.corked_untried();
        if untried && ((broadcast && queued >= hwm) || limit.is_some_and(|l| queued > l)) {
            if !self.flush_corked(key) {
                return false;
            }
            queued = self.sockets[key].queued();
        }
        // A broadcast recipient that only just fell behind gets the grace its senders' stalls
        // give it: they add at most the rest of their current read (`crate::flow`).
        let grace = broadcast && self.in_stall_grace(key);
        if let Some(limit) = limit.filter(|&l| queued > l && !grace) {
            self.stats.output_limit_disconnects += 1;
            let err = SocketError::OutputLimit { queued, limit };
            if self.admit_warning(Warning::OutputLimit, 1) {
                log::warn!("{}: {err}", self.peer_label(key));
            }
            self.destroy_key(key, Some(err));
            return false;
        }
        if self.over_soft_limit(key) {
            return false;
        }
        if newly_queued {
            self.sync_interest(key);
        }
        self.sockets[key].state.on_write_queued(queued < hwm)
    }

    /// Hands a corked socket's queue to the kernel now rather than at the end of the turn.
    /// What the kernel took is gone from the queue; an emptied queue stays in place, so the
    /// end-of-turn flush still delivers a `drain` that is owed. Returns false if the write
    /// failed (the socket is destroyed).
    fn flush_corked(&mut self, key: usize) -> bool {
        let sock = &mut self.sockets[key];
        let Some(q) = sock.queue.as_mut() else { return true };
        let (how, n) = match q.flush_to(&mut sock.io, usize::MAX) {
            Ok(r) => r,
            Err(e) => {
                self.destroy_key(key, Some(e.into()));
                return false;
            }
        };
        if how == Flush::Blocked {
            sock.state.on_kernel_full();
        }
        if n > 0 {
            sock.bytes_written += n as u64;
            self.stats.bytes_out += n as u64;
            self.idle.touch(key, self.clock.now32());
            self.recipient_progressed(key);
        }
        true
    }

    /// Redis's soft output limit: a socket whose queue stays above `soft_limit.0` bytes for
    /// `soft_limit.1` is disconnected. Checked whenever output is queued or flushed; returns
    /// whether the socket was destroyed.
    pub(crate) fn over_soft_limit(&mut self, key: usize) -> bool {
        let Some((soft, window)) = self.options_of(self.sockets[key].server).soft_limit else { return false };
        let now = self.clock.now_ms();
        let Some(q) = self.sockets[key].queue.as_mut() else { return false };
        if q.len() <= soft {
            q.over_soft_since = None;
            return false;
        }
        let since = *q.over_soft_since.get_or_insert(now);
        if now.saturating_sub(since) < window.as_millis() as u64 {
            return false;
        }
        let queued = q.len();
        self.stats.output_limit_disconnects += 1;
        let err = SocketError::SoftOutputLimit { queued, soft, window };
        if self.admit_warning(Warning::OutputLimit, 1) {
            log::warn!("{}: {err}", self.peer_label(key));
        }
        self.destroy_key(key, Some(err));
        true
    }

    pub(crate) fn peer_label(&self, key: usize) -> String {
        self.sockets[key].io.peer_addr().map_or_else(|_| format!("socket {key}"), |a| a.to_string())
    }

    /// `socket.cork()` with an `uncork()` on the next tick, Node's batching idiom: until the
    /// end of this loop turn, writes to `socket` are queued without a syscall; the loop then
    /// flushes everything queued in one `writev`. A broadcast corks every recipient, so when
    /// the server is busy (many messages handled per turn) each recipient costs one syscall
    /// per turn instead of one per message; when it is not, nothing is delayed beyond the
    /// current turn. `write()`'s return value and `drain` are unchanged.
    pub fn cork(&mut self, socket: SocketId) {
        let Some(key) = self.key_of(socket) else { return };
        if self.sockets[key].state.cork() {
            self.corked.push(socket);
        }
    }

    /// `socket.end()`: flush what is queued, then send FIN. A second call does nothing.
    pub fn end(&mut self, socket: SocketId) {
        let Some(key) = self.key_of(socket) else { return };
        if self.sockets[key].state.end() {
            self.maybe_finish(key);
        }
    }

    /// `end()`, then `destroy()` if the socket is still open `grace` later: how a server
    /// hangs up on a peer that broke a limit or idled. `end()` alone waits for the peer's FIN,
    /// which a hostile or vanished peer never sends, and what it sends meanwhile is still read
    /// (the socket sits in FIN-WAIT-2 for good). A FIN first, rather than closing now, lets the
    /// last words (an error line) arrive: closing with unread input sends RST, which can
    /// discard them.
    pub fn end_within(&mut self, socket: SocketId, grace: Duration) {
        if !self.is_open(socket) {
            return;
        }
        self.end(socket);
        self.set_internal_timer(grace.as_millis() as u64, TimerKind::EndDeadline(socket));
    }

    /// `socket.end(data)`: `write(data)` then `end()`.
    pub fn end_with(&mut self, socket: SocketId, data: &[u8]) {
        self.write(socket, data);
        self.end(socket);
    }

    /// `socket.destroy()`: drop queued output and close now; `on_close(None)` follows.
    pub fn destroy(&mut self, socket: SocketId) {
        if let Some(key) = self.key_of(socket) {
            self.destroy_key(key, None);
        }
    }

    /// `socket.destroy(err)`: like `destroy` but `on_close(Some(err))` follows (Node's
    /// `'error'` then `'close'(true)`). Takes an `io::Error` or a [`SocketError`].
    pub fn destroy_with_error(&mut self, socket: SocketId, err: impl Into<SocketError>) {
        if let Some(key) = self.key_of(socket) {
            self.destroy_key(key, Some(err.into()));
        }
    }
}
