//! [`Context`]: what a handler can do to sockets, servers and timers (Node's methods).
//!
//! Calls here act at once where Node does (`write` tries the kernel immediately, like libuv's
//! `uv_try_write`; `destroy` closes the fd now) but never call back into the handler: events
//! they cause (`'drain'`, `'error'`, `'close'`) are queued and delivered by the loop. That keeps
//! handlers free of re-entrancy and makes "close exactly once, always last" easy to hold.

use std::io::{self, Write};
use std::time::Duration;

use mio::{Registry, Token};
use slab::Slab;

use crate::addr::SocketAddress;
use crate::clock::LoopClock;
use crate::error;
use crate::flow::Flow;
use crate::handler::{ServerId, SocketId};
use crate::idle::IdleTimers;
use crate::input_budget::{InputBudget, InputCut, InputLimits};
use crate::listener::{Listener, Server};
use crate::options::{ServerOptions, SocketOptions};
use crate::outbound;
use crate::reserve_fd::ReserveFd;
use crate::socket::{Socket, SocketState, Stream, WriteAdmission, NO_SERVER};
use crate::socket_error::SocketError;
pub use crate::stats::Stats;
use crate::timers::{TimerId, TimerKind, Timers};
use crate::warnings::{Warning, Warnings, SUMMARY_DELAY};
use crate::write_queue::{Flush, SharedBytes, WriteQueue};

/// Token of the signal pipe. Listener tokens count down from just below it; socket tokens are
/// slab keys counting up from 0.
pub(crate) const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);
const LISTENER_TOKEN_BASE: usize = usize::MAX - 2;

pub(crate) fn listener_token(key: usize) -> Token {
    Token(LISTENER_TOKEN_BASE - key)
}

/// Slab key of the listener behind `token`, if it is a listener token.
pub(crate) fn listener_key(token: Token) -> Option<usize> {
    // Slab keys stay far below 2^32, so anything in the top 2^32 tokens is a listener.
    let k = LISTENER_TOKEN_BASE.checked_sub(token.0)?;
    (k < u32::MAX as usize).then_some(k)
}

/// Recycled write queues kept for reuse, so sockets that block and drain repeatedly do not
/// allocate each time. Bounded so a burst does not pin memory.
const SPARE_QUEUES: usize = 256;

/// Everything a [`crate::Handler`] may touch: sockets, servers, timers, signals.
pub struct Context {
    pub(crate) registry: Registry,
    pub(crate) sockets: Slab<Socket>,
    pub(crate) servers: Slab<Server>,
    pub(crate) timers: Timers,
    pub(crate) idle: IdleTimers,
    /// Sockets to service again without waiting for an edge: their read or write budget ran
    /// out, or they were resumed. Edge-triggered readiness would never report them again.
    pub(crate) ready: Vec<SocketId>,
    /// Corked sockets the loop flushes at the end of this turn.
    pub(crate) corked: Vec<SocketId>,
    /// Broadcast senders stalled for recipients that are behind.
    pub(crate) flow: Flow,
    /// Destroyed sockets whose `'error'`/`'close'` the loop still owes, in order.
    pub(crate) closing: Vec<(usize, Option<SocketError>)>,
    /// Closed servers whose last connection is gone; `'close'` is owed.
    pub(crate) servers_closing: Vec<usize>,
    /// Servers whose `'listening'` is owed.
    pub(crate) listening: Vec<ServerId>,
    /// Sockets that keep the loop alive (not `unref`-ed, not yet removed).
    referenced_sockets: usize,
    /// Sockets not yet destroyed (slots waiting for their `'close'` are not counted).
    open_sockets: usize,
    next_gen: u32,
    pub(crate) clock: LoopClock,
    // Boxed because that is how a socket holds its queue: reuse moves the box, no copy.
    #[allow(clippy::vec_box)]
    spare_queues: Vec<Box<WriteQueue>>,
    pub(crate) signals: Option<signal_hook_mio::v1_0::Signals>,
    /// Spent when accept runs out of fds, to shed the backlog.
    pub(crate) reserve_fd: ReserveFd,
    /// Loop-wide cap on open sockets, checked at accept ([`Context::set_max_sockets`]).
    pub(crate) max_sockets: Option<usize>,
    pub(crate) stopped: bool,
    /// Socket count below which the next slab shrink is attempted (see `remove`).
    shrink_below: usize,
    client_options: SocketOptions,
    pub(crate) stats: Stats,
    /// Unfinished input the application holds, per socket and in total.
    input: InputBudget,
    /// Sockets cut for their unfinished input whose `on_input_cut` the loop owes.
    pub(crate) input_cuts: Vec<(SocketId, InputCut)>,
    /// Budgets for the loop's repeated warnings.
    pub(crate) warnings: Warnings,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("sockets", &self.sockets.len())
            .field("servers", &self.servers.len())
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(registry: Registry) -> Self {
        Context {
            registry,
            sockets: Slab::new(),
            servers: Slab::new(),
            timers: Timers::default(),
            idle: IdleTimers::default(),
            ready: Vec::new(),
            corked: Vec::new(),
            flow: Flow::default(),
            closing: Vec::new(),
            servers_closing: Vec::new(),
            listening: Vec::new(),
            referenced_sockets: 0,
            open_sockets: 0,
            next_gen: 0,
            clock: LoopClock::new(),
            spare_queues: Vec::new(),
            signals: None,
            reserve_fd: ReserveFd::new(),
            max_sockets: None,
            stopped: false,
            shrink_below: 0,
            client_options: SocketOptions::default(),
            stats: Stats::default(),
            input: InputBudget::default(),
            input_cuts: Vec::new(),
            warnings: Warnings::default(),
        }
    }

    // ----- loop bookkeeping ---------------------------------------------------------------

    /// True while anything referenced could still produce an event (Node's loop liveness).
    pub(crate) fn alive(&self) -> bool {
        if self.stopped {
            return false;
        }
        let servers = self.servers.iter().any(|(_, s)| s.listener.is_some() && !s.unref);
        self.referenced_sockets > 0
            || servers
            || self.timers.referenced() > 0
            || !self.closing.is_empty()
            || !self.servers_closing.is_empty()
            || !self.listening.is_empty()
    }

    fn next_gen(&mut self) -> u32 {
        self.next_gen = self.next_gen.wrapping_add(1);
        self.next_gen
    }

    /// Slab key of a live (not yet removed) socket, if `id` still names it.
    #[inline]
    pub(crate) fn key_of(&self, id: SocketId) -> Option<usize> {
        match self.sockets.get(id.key as usize) {
            Some(s) if s.gen == id.gen => Some(id.key as usize),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn id_of(&self, key: usize) -> SocketId {
        SocketId { key: key as u32, gen: self.sockets[key].gen }
    }

    pub(crate) fn server_key(&self, id: ServerId) -> Option<usize> {
        match self.servers.get(id.key as usize) {
            Some(s) if s.gen == id.gen => Some(id.key as usize),
            _ => None,
        }
    }

    pub(crate) fn server_id(&self, key: usize) -> ServerId {
        ServerId { key: key as u32, gen: self.servers[key].gen }
    }

    pub(crate) fn options_of(&self, server: u32) -> &SocketOptions {
        match self.servers.get(server as usize) {
            Some(s) if server != NO_SERVER => &s.options.socket,
            _ => &self.client_options,
        }
    }

    /// Brings the socket's registration in line with what it wants (read while not paused or
    /// ended; write while output is queued). Costs an `epoll_ctl` only on a change.
    pub(crate) fn sync_interest(&mut self, key: usize) {
        let sock = &mut self.sockets[key];
        let have = sock.state.registered();
        let want = sock.state.wanted_interest(sock.queued() > 0);
        if have == want {
            return;
        }
        let Some(source) = sock.io.source() else { return };
        let result = match (have, want) {
            (None, Some(i)) => self.registry.register(source, Token(key), i),
            (Some(_), Some(i)) => self.registry.reregister(source, Token(key), i),
            (Some(_), None) => self.registry.deregister(source),
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) => sock.state.set_registered(want),
            Err(e) => self.destroy_key(key, Some(e.into())),
        }
    }

    /// Adds a freshly accepted or connecting stream to the slab.
    pub(crate) fn adopt(&mut self, io: Stream, server: u32, connecting: bool) -> SocketId {
        let opts = self.options_of(server).clone();
        if let Some(s) = io.sock_ref() {
            // Best effort: a failure here (e.g. the peer already reset) surfaces on first I/O.
            if opts.no_delay {
                let _ = io.set_nodelay(true);
            }
            if let Some(delay) = opts.keep_alive {
                let _ = s.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(delay));
            }
        }
        let state = if connecting {
            SocketState::connecting(opts.allow_half_open)
        } else {
            SocketState::connected(opts.allow_half_open)
        };
        let gen = self.next_gen();
        let key = self.sockets.insert(Socket::new(io, gen, server, state));
        self.referenced_sockets += 1;
        self.open_sockets += 1;
        if let Some(t) = opts.idle_timeout {
            self.idle.set(key, clamp_ms(t), self.clock.now32());
        }
        self.sync_interest(key);
        SocketId { key: key as u32, gen }
    }

    /// Closes a socket now and queues its `'error'` (if any) and `'close'`. Idempotent.
    pub(crate) fn destroy_key(&mut self, key: usize, err: Option<SocketError>) {
        if !self.sockets[key].state.destroy() {
            return;
        }
        self.open_sockets -= 1;
        self.release_holding(key);
        if !self.flow.laggards.is_empty() {
            let id = self.id_of(key);
            self.flow.laggards.remove(&id);
        }
        let sock = &mut self.sockets[key];
        if let Some(mut q) = sock.queue.take() {
            q.clear();
            if self.spare_queues.len() < SPARE_QUEUES {
                self.spare_queues.push(q);
            }
        }
        if sock.state.registered().is_some() {
            if let Some(source) = sock.io.source() {
                let _ = self.registry.deregister(source);
            }
        }
        sock.io = Stream::Closed;
        let server = sock.server;
        self.idle.remove(key);
        self.input.release(&mut self.sockets, key);
        if let Some(s) = self.servers.get_mut(server as usize).filter(|_| server != NO_SERVER) {
            // Counted down now, as Node's `_destroy` does, so getConnections() is exact.
            s.connections -= 1;
            if s.listener.is_none() && s.connections == 0 {
                self.servers_closing.push(server as usize);
            }
        }
        self.closing.push((key, err));
    }

    /// Removes a socket whose `'close'` has been delivered; its key may now be reused.
    pub(crate) fn remove(&mut self, key: usize) {
        self.idle.remove(key);
        let sock = self.sockets.remove(key);
        if sock.state.is_referenced() {
            self.referenced_sockets -= 1;
        }
        // An fd was just freed: take it back as the EMFILE reserve if it was spent.
        self.reserve_fd.refill();
        self.maybe_shrink();
    }

    /// After a burst, give the slab's memory back. Shrinking costs O(capacity) and can only
    /// drop vacant slots after the last live one, so it is tried when the slab is at most a
    /// quarter full and then not again until the count halves: amortised O(1) per close.
    fn maybe_shrink(&mut self) {
        let (len, cap) = (self.sockets.len(), self.sockets.capacity());
        if cap < 1024 || len * 4 > cap || (len >= self.shrink_below && self.shrink_below != 0) {
            return;
        }
        self.sockets.shrink_to_fit();
        self.spare_queues.truncate(len.min(SPARE_QUEUES));
        self.idle.truncate(self.sockets.capacity());
        self.shrink_below = len / 2;
    }

    /// Gives a drained queue back for reuse.
    pub(crate) fn recycle_queue(&mut self, key: usize) {
        if let Some(mut q) = self.sockets[key].queue.take() {
            // Empty already; this resets its timestamps, which the next owner must not inherit.
            q.clear();
            if self.spare_queues.len() < SPARE_QUEUES {
                self.spare_queues.push(q);
            }
        }
    }

    /// After the queue empties: if `end()` was called, send FIN; if the peer had ended too,
    /// the socket is done.
    pub(crate) fn maybe_finish(&mut self, key: usize) {
        let sock = &mut self.sockets[key];
        if !sock.state.fin_due(sock.queued() == 0) {
            return;
        }
        if let Err(e) = sock.io.shutdown_write() {
            self.destroy_key(key, Some(e.into()));
            return;
        }
        if sock.state.on_fin_sent() {
            self.destroy_key(key, None);
        } else {
            self.sync_interest(key);
        }
    }

    pub(crate) fn add_read(&mut self, n: usize) {
        self.stats.bytes_in += n as u64;
    }

    pub(crate) fn add_written(&mut self, n: usize) {
        self.stats.bytes_out += n as u64;
    }

    /// Counters, for applications to record their own disconnect reasons.
    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    // ----- servers ------------------------------------------------------------------------

    /// `server.listen()`: binds `addr` (port 0 picks a free port) and starts accepting.
    /// `on_listening` follows from the loop. Bind errors are returned at once and read like
    /// Node's (`listen EADDRINUSE: Address in use 127.0.0.1:8080`).
    pub fn listen(&mut self, addr: &SocketAddress, options: ServerOptions) -> io::Result<ServerId> {
        let (mut listener, address) = Listener::bind(addr, options.backlog)?;
        let gen = self.next_gen();
        let entry = self.servers.vacant_entry();
        let key = entry.key();
        self.registry.register(listener.source(), listener_token(key), mio::Interest::READABLE)?;
        let unlink_on_close = match &address {
            SocketAddress::Unix(p) => Some(p.clone()),
            _ => None,
        };
        entry.insert(Server {
            listener: Some(listener),
            address,
            options,
            connections: 0,
            gen,
            unref: false,
            registered: true,
            unlink_on_close,
        });
        let id = ServerId { key: key as u32, gen };
        self.listening.push(id);
        Ok(id)
    }

    /// `server.address()`: the bound address with the real port.
    pub fn server_address(&self, server: ServerId) -> Option<&SocketAddress> {
        self.server_key(server).map(|k| &self.servers[k].address)
    }

    /// `server.close()`: stops accepting now; `on_server_close` fires once its last
    /// connection has closed. Existing connections are untouched.
    pub fn close_server(&mut self, server: ServerId) {
        let Some(key) = self.server_key(server) else { return };
        let s = &mut self.servers[key];
        let Some(mut listener) = s.listener.take() else { return };
        if s.registered {
            let _ = self.registry.deregister(listener.source());
        }
        drop(listener);
        s.close_listener();
        if s.connections == 0 {
            self.servers_closing.push(key);
        }
        // Closed before its 'listening' was delivered: Node skips it too.
        self.listening.retain(|&l| l != server);
    }

    /// True until `close_server` was called.
    pub fn is_listening(&self, server: ServerId) -> bool {
        self.server_key(server).is_some_and(|k| self.servers[k].listener.is_some())
    }

    /// `server.getConnections()`: live connections accepted by this server.
    pub fn connections(&self, server: ServerId) -> usize {
        self.server_key(server).map_or(0, |k| self.servers[k].connections)
    }

    /// `server.maxConnections = n` (`None` for no limit).
    pub fn set_max_connections(&mut self, server: ServerId, max: Option<usize>) {
        if let Some(k) = self.server_key(server) {
            self.servers[k].options.max_connections = max;
        }
    }

    /// Refuse new connections on every server while `max` sockets (accepted or outbound) are
    /// open; `None` for no limit. Node's `maxConnections` is per server, so with several
    /// listeners it cannot protect the process's fds; this cap can (`netloop serve` derives it
    /// from the fd limit). A refused connection is handled as for `max_connections`.
    pub fn set_max_sockets(&mut self, max: Option<usize>) {
        self.max_sockets = max;
    }

    /// `server.unref()` / `server.ref()`.
    pub fn set_server_ref(&mut self, server: ServerId, referenced: bool) {
        if let Some(k) = self.server_key(server) {
            self.servers[k].unref = !referenced;
        }
    }

    /// Every server still listening.
    pub fn servers(&self) -> Vec<ServerId> {
        self.servers.iter().filter(|(_, s)| s.listener.is_some()).map(|(k, _)| self.server_id(k)).collect()
    }

    // ----- outbound sockets ---------------------------------------------------------------

    /// Options for sockets made by [`Context::connect`].
    pub fn set_client_options(&mut self, options: SocketOptions) {
        self.client_options = options;
    }

    /// `net.connect()`: starts a non-blocking connect; `on_connect` or `on_close` with the
    /// error follows. Writes made before the connection completes are queued.
    pub fn connect(&mut self, addr: &SocketAddress) -> SocketId {
        self.connect_from(addr, None)
    }

    /// `net.connect({localAddress})`: like [`Context::connect`], bound first to `source`
    /// (port chosen by the kernel). One source IP has ~28k ephemeral ports per destination;
    /// load generators spread connections over 127.0.0.2, 127.0.0.3, ... to go past that.
    pub fn connect_from(&mut self, addr: &SocketAddress, source: Option<std::net::IpAddr>) -> SocketId {
        match outbound::start_connect(addr, source) {
            Ok(io) => self.adopt(io, NO_SERVER, true),
            Err(e) => {
                // Failures the OS reports at once (e.g. a Unix path with no listener) still
                // arrive as events, as in Node.
                let id = self.adopt(Stream::Closed, NO_SERVER, true);
                self.destroy_key(id.key as usize, Some(error::context(e, &format!("connect {addr}")).into()));
                id
            }
        }
    }

    // ----- socket operations --------------------------------------------------------------

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

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    // ----- unfinished input ---------------------------------------------------------------

    /// Sets the bounds on unfinished input ([`crate::input_budget`]).
    pub fn set_input_limits(&mut self, limits: InputLimits) {
        self.input.limits = limits;
        self.arm_input_sweep();
    }

    /// The application holds `bytes` of unfinished input for `socket` (a partial line or frame
    /// it keeps between reads; 0 for none). Report after every read that changes it, and when
    /// anything else (a timer) does. If all sockets together now hold more than the limit, the
    /// heaviest are cut: `on_input_cut` follows from the loop for each.
    pub fn set_held_input(&mut self, socket: SocketId, bytes: usize) {
        let Some(key) = self.key_of(socket) else { return };
        if !self.sockets[key].state.accepts_input_report() {
            return;
        }
        self.input.set(&mut self.sockets, key, bytes, self.clock.now_ms());
        while let Some((heaviest, cut)) = self.input.heaviest_over_limit() {
            self.cut_input(heaviest, cut);
        }
        self.arm_input_sweep();
    }

    /// Bytes of unfinished input last reported for `socket`.
    pub fn held_input(&self, socket: SocketId) -> usize {
        self.key_of(socket).map_or(0, |k| self.input.held(&self.sockets, k))
    }

    /// Bytes of unfinished input held for all sockets together.
    pub fn total_held_input(&self) -> usize {
        self.input.total()
    }

    fn cut_input(&mut self, key: usize, cut: InputCut) {
        self.input.release(&mut self.sockets, key);
        self.sockets[key].state.cut_input();
        let id = self.id_of(key);
        self.input_cuts.push((id, cut));
    }

    /// The input timeout's sweep: cut holds that made no progress for the timeout.
    pub(crate) fn sweep_input(&mut self) {
        self.input.sweep_armed = false;
        let mut expired = Vec::new();
        self.input.expired(self.clock.now_ms(), &mut expired);
        for (key, cut) in expired {
            self.cut_input(key, cut);
        }
        self.arm_input_sweep();
    }

    /// Arms the sweep for the earliest hold to time out, if something is held. Sweeps are at
    /// least a tenth of the timeout apart (10 ms to 1 s), so holds that start one after another
    /// cost a bounded number of scans.
    fn arm_input_sweep(&mut self) {
        let Some(timeout) = self.input.limits.timeout else { return };
        if self.input.sweep_armed || self.input.is_empty() {
            return;
        }
        let spacing = (timeout.as_millis() as u64 / 10).clamp(10, 1000);
        let next = self.input.next_due().unwrap_or(self.clock.now_ms());
        let delay = next.saturating_sub(self.clock.now_ms()).max(spacing);
        self.set_internal_timer(delay, TimerKind::InputSweep);
        self.input.sweep_armed = true;
    }

    /// Whether a repeated warning of `kind` (standing for `items` events) may be logged now;
    /// if not, it is counted and its summary timer armed.
    pub(crate) fn admit_warning(&mut self, kind: Warning, items: u64) -> bool {
        if self.warnings.admit(kind, self.elapsed(), items) {
            return true;
        }
        if !self.warnings.summary_armed {
            self.warnings.summary_armed = true;
            self.set_internal_timer(SUMMARY_DELAY.as_millis() as u64, TimerKind::WarningSummary);
        }
        false
    }

    // ----- timers, signals, loop ----------------------------------------------------------

    /// Node's `setTimeout(fn, delay)`: `on_timer(id)` once after `delay`.
    pub fn set_timer(&mut self, delay: Duration) -> TimerId {
        // At least 1 ms, as in Node: a zero-delay timer re-armed from `on_timer` would
        // otherwise be due again in the same pass and never let the loop poll.
        let ms = (delay.as_millis() as u64).max(1);
        self.timers.insert(self.clock.now_ms(), ms, None, TimerKind::App)
    }

    /// Node's `setInterval(fn, every)`: `on_timer(id)` every `every`.
    pub fn set_interval(&mut self, every: Duration) -> TimerId {
        let ms = (every.as_millis() as u64).max(1);
        self.timers.insert(self.clock.now_ms(), ms, Some(ms), TimerKind::App)
    }

    /// `clearTimeout` / `clearInterval`.
    pub fn clear_timer(&mut self, timer: TimerId) {
        self.timers.remove(timer);
    }

    /// `timer.ref()` / `timer.unref()`.
    pub fn set_timer_ref(&mut self, timer: TimerId, referenced: bool) {
        self.timers.set_ref(timer, referenced);
    }

    pub(crate) fn set_internal_timer(&mut self, delay_ms: u64, kind: TimerKind) {
        let id = self.timers.insert(self.clock.now_ms(), delay_ms, None, kind);
        self.timers.set_ref(id, false);
    }

    /// Delivers these signals to `on_signal` through the poll loop (a self-pipe; the handler
    /// runs on the loop thread, not in signal context). Signals do not keep the loop alive.
    pub fn listen_signals(&mut self, signals: &[i32]) -> io::Result<()> {
        let mut s = signal_hook_mio::v1_0::Signals::new(signals)?;
        self.registry.register(&mut s, SIGNAL_TOKEN, mio::Interest::READABLE)?;
        self.signals = Some(s);
        Ok(())
    }

    /// Makes `run` return after this turn, whatever is still open.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Time since the loop started, as the loop sees it (read once per wake).
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }
}

fn clamp_ms(d: Duration) -> u32 {
    d.as_millis().min(i32::MAX as u128) as u32
}
