//! The poll loop: one thread, one `mio::Poll`, every listener, socket, timer and signal.
//!
//! One turn ([`EventLoop::turn`]) is, in order:
//!
//! 1. deliver owed `listening` events;
//! 2. poll, with a timeout of 0 if work is pending, else until the nearest timer (none: sleep);
//! 3. dispatch each readiness event: accept until `WouldBlock`; flush then read sockets;
//! 4. service sockets whose read/write budget ran out or that were resumed (`ready` list);
//! 5. fire due timers and idle timeouts;
//! 6. flush sockets corked during the turn (one `writev` each);
//! 7. deliver `close` (with the error, if any) for sockets destroyed during the turn, then
//!    free their slots;
//! 8. resume broadcast senders whose recipients caught up or whose stall ran out (`flow`).
//!
//! Slots are freed only in step 7, after every event of the batch has been dispatched, so an
//! event for a socket closed earlier in the batch finds its (destroyed) slot and is ignored;
//! it can never reach a new socket that reused the key. Ids carry a generation for the same
//! reason across turns.

use std::io::{self, Read};
use std::time::Duration;

use mio::{Events, Poll};

use crate::context::{listener_key, listener_token, Context, SIGNAL_TOKEN};
use crate::error;
use crate::handler::{Handler, SocketId};
use crate::reserve_fd::Shed;
use crate::socket::{AfterDrain, AfterPeerEnd};
use crate::timers::TimerKind;
use crate::write_queue::Flush;

/// Size of the one read buffer the whole loop shares (an idle socket owns none).
pub const READ_BUFFER_SIZE: usize = 64 * 1024;
/// Reads per socket per wake before others get a turn (libuv uses 32 x 64 KiB).
const READ_BUDGET: usize = 16;
/// Bytes flushed per socket per wake before others get a turn.
const WRITE_BUDGET: usize = 1024 * 1024;
/// Back-off before a listener retries accepting after running out of fds with no reserve.
const ACCEPT_RETRY_MS: u64 = 100;

/// Owns the poll and the shared read buffer; runs a [`Handler`] until nothing is left to do.
pub struct EventLoop {
    poll: Poll,
    events: Events,
    read_buf: Box<[u8]>,
    cx: Context,
    /// Scratch lists reused every turn so steady state allocates nothing.
    ready_scratch: Vec<SocketId>,
    expired_scratch: Vec<usize>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop").field("cx", &self.cx).finish_non_exhaustive()
    }
}

impl EventLoop {
    /// A loop with nothing registered yet.
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let cx = Context::new(poll.registry().try_clone()?);
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(1024),
            read_buf: vec![0; READ_BUFFER_SIZE].into_boxed_slice(),
            cx,
            ready_scratch: Vec::new(),
            expired_scratch: Vec::new(),
        })
    }

    /// The context, for setting things up (listen, connect, timers) before `run`.
    pub fn context(&mut self) -> &mut Context {
        &mut self.cx
    }

    /// Runs turns until no referenced server, socket or timer is left, or `Context::stop`.
    pub fn run<H: Handler>(&mut self, handler: &mut H) -> io::Result<()> {
        self.cx.clock.update();
        while self.cx.alive() {
            self.turn(handler)?;
        }
        // What the warning budgets dropped is reported even when the process exits next.
        self.cx.warnings.flush();
        Ok(())
    }

    /// One turn of the loop (see the module docs). Public so tests and embedders can step it.
    pub fn turn<H: Handler>(&mut self, h: &mut H) -> io::Result<()> {
        for id in std::mem::take(&mut self.cx.listening) {
            h.on_listening(&mut self.cx, id);
        }
        let timeout = self.poll_timeout();
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        self.cx.clock.update();
        for event in self.events.iter() {
            let ev = Readiness {
                readable: event.is_readable(),
                writable: event.is_writable(),
                closed: event.is_read_closed() || event.is_error(),
                error: event.is_error(),
            };
            match event.token() {
                SIGNAL_TOKEN => on_signals(&mut self.cx, h),
                token => match listener_key(token) {
                    Some(key) => on_acceptable(&mut self.cx, h, key),
                    None => on_socket(&mut self.cx, &mut self.read_buf, h, token.0, ev),
                },
            }
        }
        self.run_ready(h);
        self.run_timers(h);
        crate::input_budget::deliver_cuts(&mut self.cx, h);
        self.run_uncork(h);
        self.run_closing(h);
        // `close` handlers may have broadcast (a "left" notice): flush before sleeping.
        self.run_uncork(h);
        self.cx.settle_flow();
        Ok(())
    }

    /// Sleep until the nearest timer; don't sleep at all if work is already pending.
    fn poll_timeout(&mut self) -> Option<Duration> {
        let cx = &mut self.cx;
        if !cx.ready.is_empty()
            || !cx.listening.is_empty()
            || !cx.closing.is_empty()
            || !cx.servers_closing.is_empty()
            || !cx.corked.is_empty()
            || !cx.input_cuts.is_empty()
            || cx.stopped
        {
            return Some(Duration::ZERO);
        }
        let idle = cx.idle.next_deadline().map(|d| {
            let wait = d.wrapping_sub(cx.clock.now32()) as i32;
            cx.clock.now_ms() + wait.max(0) as u64
        });
        let deadline = [cx.timers.next_deadline(), idle, cx.flow.deadline()].into_iter().flatten().min()?;
        Some(cx.clock.instant_of(deadline).saturating_duration_since(std::time::Instant::now()))
    }

    fn run_ready(&mut self, h: &mut impl Handler) {
        let mut ready = std::mem::take(&mut self.ready_scratch);
        std::mem::swap(&mut ready, &mut self.cx.ready);
        for id in ready.drain(..) {
            let Some(key) = self.cx.key_of(id) else { continue };
            self.cx.sockets[key].state.take_ready();
            let ev = Readiness { readable: true, writable: true, closed: false, error: false };
            on_socket(&mut self.cx, &mut self.read_buf, h, key, ev);
        }
        self.ready_scratch = ready;
    }

    /// Flushes every socket corked during the turn: one `writev` each for all it queued.
    fn run_uncork(&mut self, h: &mut impl Handler) {
        while !self.cx.corked.is_empty() {
            let mut corked = std::mem::take(&mut self.ready_scratch);
            std::mem::swap(&mut corked, &mut self.cx.corked);
            for id in corked.drain(..) {
                let Some(key) = self.cx.key_of(id) else { continue };
                let sock = &mut self.cx.sockets[key];
                sock.state.uncork();
                // An empty queue may still be there: emptied early by a broadcast, with a
                // `drain` owed (the flush below recycles it and delivers that).
                if sock.state.is_destroyed() || sock.queue.is_none() {
                    continue;
                }
                flush(&mut self.cx, h, key);
                // Still queued (the kernel is full): now it needs WRITABLE interest.
                if self.cx.sockets[key].queued() > 0 {
                    self.cx.sync_interest(key);
                }
            }
            self.ready_scratch = corked;
        }
    }

    fn run_timers(&mut self, h: &mut impl Handler) {
        let now = self.cx.clock.now_ms();
        while let Some((id, kind)) = self.cx.timers.pop_due(now) {
            match kind {
                TimerKind::App => h.on_timer(&mut self.cx, id),
                TimerKind::AcceptRetry(key) => resume_accepting(&mut self.cx, h, key),
                TimerKind::EndDeadline(socket) => self.cx.destroy(socket),
                TimerKind::InputSweep => self.cx.sweep_input(),
                TimerKind::WarningSummary => self.cx.warnings.flush(),
            }
        }
        let mut expired = std::mem::take(&mut self.expired_scratch);
        self.cx.idle.expire(self.cx.clock.now32(), &mut expired);
        for key in expired.drain(..) {
            // An earlier `on_timeout` of this batch may have destroyed this socket, or written
            // to it or re-armed its timer (so it is no longer idle).
            let live = self.cx.sockets.get(key).is_some_and(|s| !s.state.is_destroyed());
            if live && !self.cx.idle.is_armed(key) {
                let id = self.cx.id_of(key);
                h.on_timeout(&mut self.cx, id);
            }
        }
        self.expired_scratch = expired;
    }

    /// Delivers `close` (with its error: Node's `error` and `close` in one) for every destroyed
    /// socket, then frees its slot; then `close` for servers whose last connection is gone.
    /// Handlers may destroy more sockets while we do this; they are delivered in the same pass.
    fn run_closing(&mut self, h: &mut impl Handler) {
        let cx = &mut self.cx;
        let mut i = 0;
        while i < cx.closing.len() {
            let key = cx.closing[i].0;
            let err = cx.closing[i].1.take();
            i += 1;
            let id = cx.id_of(key);
            if let Some(e) = &err {
                log::debug!("socket {key}: {}", e.describe());
            }
            h.on_close(cx, id, err.as_ref());
            cx.remove(key);
            if i == cx.closing.len() {
                cx.closing.clear();
                i = 0;
            }
        }
        while let Some(key) = cx.servers_closing.pop() {
            let id = cx.server_id(key);
            h.on_server_close(cx, id);
            cx.servers.remove(key);
        }
    }
}

/// What one readiness event said about a socket.
#[derive(Clone, Copy)]
struct Readiness {
    readable: bool,
    writable: bool,
    /// The peer hung up or the socket has an error: read on to EOF/error even after a short
    /// read.
    closed: bool,
    error: bool,
}

/// A socket is ready: finish a pending connect, flush queued output, then read.
fn on_socket<H: Handler>(cx: &mut Context, buf: &mut [u8], h: &mut H, key: usize, ev: Readiness) {
    let Some(sock) = cx.sockets.get_mut(key) else { return };
    if sock.state.is_destroyed() {
        // Closed earlier in this batch; its slot is freed at the end of the turn.
        return;
    }
    if ev.closed {
        // Kept even while paused: the hang-up is reported once.
        sock.state.peer_hup();
    }
    if sock.state.is_connecting() && (!(ev.writable || ev.closed) || !finish_connect(cx, h, key)) {
        return;
    }
    let sock = &cx.sockets[key];
    if ev.writable && sock.queued() > 0 {
        flush(cx, h, key);
    }
    let sock = &cx.sockets[key];
    if sock.state.is_destroyed() {
        return;
    }
    if sock.state.reads_stopped() {
        // Not reading, so a reset would go unnoticed until the next write: ask for it.
        if ev.error {
            if let Ok(Some(e)) | Err(e) = sock.io.take_error() {
                cx.destroy_key(key, Some(e.into()));
            }
        }
        return;
    }
    if ev.readable || ev.closed {
        read(cx, buf, h, key);
    }
}

/// Reads until `WouldBlock`, a short read, EOF, an error, `pause()`, a stall, or the budget.
/// Both pause and stall take effect before the next read, inside the same turn.
fn read<H: Handler>(cx: &mut Context, buf: &mut [u8], h: &mut H, key: usize) {
    let id = cx.id_of(key);
    for _ in 0..READ_BUDGET {
        let sock = &mut cx.sockets[key];
        if !sock.state.can_read() {
            return;
        }
        let hup = sock.state.peer_hung_up();
        match sock.io.read(buf) {
            Ok(0) => return peer_ended(cx, h, key),
            Ok(n) => {
                sock.bytes_read += n as u64;
                cx.add_read(n);
                let now = cx.clock.now32();
                cx.idle.touch(key, now);
                // Broadcasts made while handling this data may stall this socket (`flow`).
                cx.flow.reading = Some(id);
                h.on_data(cx, id, &buf[..n]);
                cx.flow.reading = None;
                // A short read emptied the socket: new data brings a new edge, so the extra
                // read that would only say WouldBlock is skipped (it costs ~16% per round
                // trip). After a hang-up no edge is left to come: read on to EOF.
                if n < buf.len() && !hup {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return cx.destroy_key(key, Some(e.into())),
        }
    }
    // Budget spent with data possibly left: no new edge will come, so come back ourselves.
    cx.mark_ready(key);
}

/// The peer sent FIN: `'end'`, then end our side too unless half-open is allowed.
fn peer_ended<H: Handler>(cx: &mut Context, h: &mut H, key: usize) {
    let id = cx.id_of(key);
    cx.sockets[key].state.peer_fin();
    cx.sync_interest(key);
    h.on_end(cx, id);
    match cx.sockets[key].state.after_peer_end() {
        AfterPeerEnd::Nothing | AfterPeerEnd::StayOpen => {}
        AfterPeerEnd::Close => cx.destroy_key(key, None),
        AfterPeerEnd::End => cx.end(id),
    }
}

/// Writes queued output; on empty: FIN if ending, else `'drain'` if a write returned false.
fn flush<H: Handler>(cx: &mut Context, h: &mut H, key: usize) {
    let sock = &mut cx.sockets[key];
    // Whatever the kernel refused before, it is being asked again now.
    sock.state.on_kernel_retry();
    let Some(q) = sock.queue.as_mut() else { return };
    let (how, n) = match q.flush_to(&mut sock.io, WRITE_BUDGET) {
        Ok(r) => r,
        Err(e) => return cx.destroy_key(key, Some(e.into())),
    };
    sock.bytes_written += n as u64;
    cx.add_written(n);
    if n > 0 {
        let now = cx.clock.now32();
        cx.idle.touch(key, now);
        cx.recipient_progressed(key);
    }
    if how != Flush::Drained && cx.over_soft_limit(key) {
        return;
    }
    match how {
        Flush::Blocked => {}
        Flush::Budget => cx.mark_ready(key),
        Flush::Drained => {
            cx.recycle_queue(key);
            match cx.sockets[key].state.on_drained() {
                AfterDrain::Finish => cx.maybe_finish(key),
                AfterDrain::EmitDrain => {
                    cx.sync_interest(key);
                    let id = cx.id_of(key);
                    h.on_drain(cx, id);
                }
                AfterDrain::Nothing => cx.sync_interest(key),
            }
        }
    }
}

/// A non-blocking connect reported progress. It succeeded only if the socket has no pending
/// error and has a peer (mio's documented rule); returns whether the socket is now connected.
fn finish_connect<H: Handler>(cx: &mut Context, h: &mut H, key: usize) -> bool {
    let sock = &cx.sockets[key];
    match sock.io.take_error() {
        Ok(None) => {}
        Ok(Some(e)) | Err(e) => {
            cx.destroy_key(key, Some(error::context(e, "connect").into()));
            return false;
        }
    }
    match sock.io.peer_addr() {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotConnected => return false, // spurious wakeup
        Err(e) => {
            cx.destroy_key(key, Some(e.into()));
            return false;
        }
    }
    cx.sockets[key].state.on_connected();
    cx.sync_interest(key);
    let id = cx.id_of(key);
    h.on_connect(cx, id);
    // end() may have been called before the connection completed.
    cx.maybe_finish(key);
    !cx.sockets[key].state.is_destroyed()
}

/// A listener is readable: accept until `WouldBlock` (mio is edge-triggered).
fn on_acceptable<H: Handler>(cx: &mut Context, h: &mut H, key: usize) {
    loop {
        let Some(server) = cx.servers.get(key) else { return };
        let Some(listener) = &server.listener else { return };
        match listener.accept() {
            Ok((stream, peer)) => {
                let sid = cx.server_id(key);
                let server = &cx.servers[key];
                let per_server = server.options.max_connections.filter(|&max| server.connections >= max);
                let loop_wide = cx.max_sockets.filter(|&max| cx.socket_count() >= max);
                if let Some(limit) = per_server.or(loop_wide) {
                    refuse(cx, h, key, stream, &peer, limit);
                    continue;
                }
                cx.servers[key].connections += 1;
                cx.stats_mut().accepted += 1;
                let id = cx.adopt(stream, key as u32, false);
                h.on_connection(cx, sid, id);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                return out_of_fds(cx, key, e);
            }
            Err(e) => {
                log::error!("accept on {}: {}", cx.servers[key].address, error::describe(&e));
                let sid = cx.server_id(key);
                h.on_server_error(cx, sid, &e);
                return;
            }
        }
    }
}

/// Over `max_connections` or `max_sockets` (`limit`): say why (best effort), close, count,
/// and tell the handler.
fn refuse<H: Handler>(
    cx: &mut Context,
    h: &mut H,
    key: usize,
    mut stream: crate::socket::Stream,
    peer: &crate::SocketAddress,
    limit: usize,
) {
    let server = &cx.servers[key];
    if let Some(msg) = &server.options.reject_message {
        let _ = io::Write::write(&mut stream, msg);
        // Closing with unread input makes the kernel send RST, which can destroy the reason
        // before the client reads it: send FIN and discard what already arrived first.
        let _ = stream.shutdown_write();
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            if !matches!(io::Read::read(&mut stream, &mut scratch), Ok(n) if n > 0) {
                break;
            }
        }
    }
    if cx.admit_warning(crate::warnings::Warning::Refused, 1) {
        log::warn!("{}: refused {peer}: max connections ({limit}) reached", cx.servers[key].address);
    }
    drop(stream);
    cx.stats_mut().rejected += 1;
    let sid = cx.server_id(key);
    h.on_drop(cx, sid, peer);
}

/// accept failed with EMFILE/ENFILE. Pending connections would sit in the backlog and, with
/// edge-triggered readiness, the listener would never fire again. Free the reserve fd, accept
/// and close everything pending (clients see a prompt close, not a hang), take the reserve
/// back. Without a reserve, stop watching the listener and retry on a timer (nginx's way), so
/// the loop neither spins nor stalls.
fn out_of_fds(cx: &mut Context, key: usize, e: io::Error) {
    let limit = crate::limits::fd_limit().map_or("?".to_string(), |n| n.to_string());
    let addr = cx.servers[key].address.clone();
    let Shed { closed: shed, drained } = match &cx.servers[key].listener {
        Some(listener) => cx.reserve_fd.shed_backlog(listener),
        None => Shed { closed: 0, drained: false },
    };
    cx.stats_mut().rejected_no_fd += shed;
    if cx.admit_warning(crate::warnings::Warning::OutOfFds, shed) {
        log::warn!(
            "{addr}: {} (open file limit {limit}): closed {shed} pending connection(s); \
         raise `ulimit -n` or lower --max-connections",
            error::describe(&e)
        );
    }
    if !cx.reserve_fd.is_held() || !drained {
        let server = &mut cx.servers[key];
        if let Some(l) = server.listener.as_mut() {
            let _ = cx.registry.deregister(l.source());
            server.registered = false;
        }
        cx.set_internal_timer(ACCEPT_RETRY_MS, TimerKind::AcceptRetry(key));
    }
}

/// Re-registers a listener paused by `out_of_fds`; registration reports pending connections.
fn resume_accepting<H: Handler>(cx: &mut Context, h: &mut H, key: usize) {
    cx.reserve_fd.refill();
    let Some(server) = cx.servers.get_mut(key) else { return };
    if server.registered {
        return;
    }
    let Some(l) = server.listener.as_mut() else { return };
    match cx.registry.register(l.source(), listener_token(key), mio::Interest::READABLE) {
        Ok(()) => server.registered = true,
        Err(e) => {
            // Try again later rather than never watch this listener again.
            log::error!("re-arming listener {}: {}", server.address, error::describe(&e));
            cx.set_internal_timer(ACCEPT_RETRY_MS, TimerKind::AcceptRetry(key));
            return;
        }
    }
    on_acceptable(cx, h, key);
}

fn on_signals<H: Handler>(cx: &mut Context, h: &mut H) {
    let pending: Vec<i32> = match cx.signals.as_mut() {
        Some(s) => s.pending().collect(),
        None => return,
    };
    for sig in pending {
        h.on_signal(cx, sig);
    }
}
