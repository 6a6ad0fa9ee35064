//! [`Context`]: what a handler can do to sockets, servers and timers (Node's methods).
//!
//! Calls here act at once where Node does (`write` tries the kernel immediately, like libuv's
//! `uv_try_write`; `destroy` closes the fd now) but never call back into the handler: events
//! they cause (`'drain'`, `'error'`, `'close'`) are queued and delivered by the loop. That keeps
//! handlers free of re-entrancy and makes "close exactly once, always last" easy to hold.
//!
//! This file holds the state and the bookkeeping the loop shares with it (ids, interest,
//! adopting and destroying sockets, freeing slots); the methods handlers call are grouped by
//! what they act on: `output` (write, cork, end, destroy, the output limits), `sockets`
//! (pause, resume, settings, queries), `servers` (listen, close, limits, outbound connect),
//! `input` (unfinished input) and `timers` (timers, signals, stop).

use std::time::Duration;

use mio::{Registry, Token};
use slab::Slab;

use self::flow::Flow;
use crate::clock::LoopClock;
use crate::idle::IdleTimers;
use crate::ids::{ServerId, SocketId};
use crate::input_budget::{InputBudget, InputCut};
use crate::listener::Server;
use crate::options::SocketOptions;
use crate::reserve_fd::ReserveFd;
use crate::socket::{Socket, SocketState, Stream, NO_SERVER};
use crate::socket_error::SocketError;
pub use crate::stats::Stats;
use crate::timers::{TimerKind, Timers};
use crate::warnings::{Warning, Warnings, SUMMARY_DELAY};
use crate::write_queue::WriteQueue;

pub mod flow;
mod input;
mod output;
mod servers;
mod sockets;
mod timers;

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

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
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
}

fn clamp_ms(d: Duration) -> u32 {
    d.as_millis().min(i32::MAX as u128) as u32
}
