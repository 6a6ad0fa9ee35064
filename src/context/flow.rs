//! Fan-out flow control: when a broadcast leaves recipients behind, slow its sender before
//! cutting anybody.
//!
//! One message read from a sender becomes one queued copy per recipient, so a sender can fill
//! every recipient's output queue far faster than loopback drains it. Cutting the recipients at
//! their hard limit would punish readers that read as fast as they can; instead, as NATS's
//! server stalls a producer whose consumers' pending output is high, the loop stops reading the
//! sender (the kernel's receive window then pushes back on it) until the recipients catch up.
//!
//! The rules, all in loop time:
//! - A recipient is *behind* from when a broadcast finds its queue at or above its high-water
//!   mark with the kernel full ([`Context::write_broadcast`] tries the kernel at that point
//!   rather than waiting for the end-of-turn flush) until its queue is empty again (Node's
//!   `drain`: the same hysteresis as `pipe()`).
//! - A broadcast that leaves a recipient behind *stalls* the socket whose input is being
//!   handled: it is not read (not even for the rest of its read budget this turn) until every
//!   recipient it waits on has drained, or [`MAX_SENDER_STALL`] has passed.
//! - A recipient that has been behind (its queue not emptied) for [`MAX_SENDER_STALL`] while
//!   other recipients kept up is a *laggard*: it had its chance while senders waited, so it
//!   stalls nobody any more, for [`LAGGARD_FOR`], even if it drains meanwhile. Its queue then
//!   grows to its hard limit and it is cut, while the others keep going. If no recipient keeps
//!   up (the machine is busy), nobody is singled out.
//! - While a recipient has been behind for less than the bound, its hard limit is not applied
//!   to broadcasts: every sender that feeds it is stalled after its current read, so what can
//!   pass the limit is the rest of those reads (each at most 64 KiB of one sender's input, as
//!   the service turns it into output). That is what makes "never cut a reader that keeps up"
//!   hold at any `max_buffer` and with any number of senders. Past the bound the limit holds
//!   again, laggard or not, so memory stays bounded even when nobody keeps up.
//!
//! So a client that stops reading costs the senders one pause of at most the bound, and is cut
//! at its limit; a client that reads, however slowly, slows the senders to its pace (one
//! stall at a time, each bounded) until it catches up or reaches its soft or hard limit.
//!
//! Stalls are counted in [`crate::Stats`] (`sender_stalls`, `sender_stall_ms`).

use std::collections::HashMap;
use std::time::Duration;

use crate::context::Context;
use crate::ids::SocketId;
use crate::write_queue::SharedBytes;

/// Longest a sender goes unread because recipients of its broadcasts are behind, and how long a
/// recipient may stay behind before it no longer stalls anyone (and its hard limit holds
/// again). NATS's server stalled producers for up to 1 s too. It must outlast the gaps between
/// a live reader's reads; a client process serving many connections on a busy machine reads
/// each in turn, and the flat-out benchmark with 100 receivers in one load process, on a
/// machine shared with compilers, saw rare gaps past 1 s. A client that never reads costs the
/// senders one pause this long.
pub const MAX_SENDER_STALL: Duration = Duration::from_millis(1000);

const MAX_STALL_MS: u64 = MAX_SENDER_STALL.as_millis() as u64;

/// How long a recipient judged a laggard stays one, even if its queue drains meanwhile: a
/// client that never reads can still drain into a socket buffer the kernel enlarges, and must
/// not stall the senders again each time it does.
pub const LAGGARD_FOR: Duration = Duration::from_secs(20);

/// The loop's fan-out flow state. Sockets carry `STALLED` (not read) and `HOLDING` (a stalled
/// sender waits on it) flags; the lists here find them again. Both lists hold each flagged
/// socket once, plus at most the entries that went stale since the last [`Context::settle_flow`].
#[derive(Debug, Default)]
pub(crate) struct Flow {
    /// The socket whose input the handler is handling (`on_data`): the sender to stall.
    pub reading: Option<SocketId>,
    /// Stalled senders and the loop time (ms) each stall began, oldest first.
    stalled: Vec<(SocketId, u64)>,
    /// Recipients with the `HOLDING` flag (stale entries are skipped and dropped on settle).
    holding: Vec<SocketId>,
    /// How many sockets carry `HOLDING`.
    holding_count: usize,
    /// A holding recipient drained or closed, or another recipient kept up, since the last
    /// settle: some stalls may end.
    changed: bool,
    /// Loop time (ms) a broadcast recipient last kept up: a broadcast found it below its mark,
    /// or the kernel took output it was behind on.
    last_kept_up: u64,
    /// Recipients judged laggards, and the loop time (ms) until which they stay ones. Only
    /// laggards are listed, and a socket leaves when it is destroyed.
    pub laggards: HashMap<SocketId, u64>,
}

impl Flow {
    /// Loop time (ms) at which the oldest stall ends, if any sender is stalled.
    pub fn deadline(&self) -> Option<u64> {
        self.stalled.first().map(|&(_, since)| since + MAX_STALL_MS)
    }
}

impl Context {
    /// `write()` to one recipient of a broadcast: `data` is queued by reference (as
    /// [`Context::write_shared`]) and corked (as [`Context::cork`]), so every broadcast of this
    /// loop turn reaches the recipient in one `writev`. Once the recipient's queue reaches its
    /// high-water mark, the kernel is tried at once rather than at the end of the turn, so its
    /// limits measure how far it is behind what the kernel would take. If it is still behind,
    /// the socket whose data is being handled is stalled (see the [module docs](crate::flow)).
    ///
    /// Returns whether the recipient is below its high-water mark; `on_drain` follows a false
    /// return as for `write()`.
    pub fn write_broadcast(&mut self, socket: SocketId, data: &SharedBytes) -> bool {
        self.cork(socket);
        if self.write_impl(socket, data, Some(data), true) {
            self.kept_up();
            return true;
        }
        let Some(key) = self.key_of(socket) else { return false };
        let sock = &self.sockets[key];
        if sock.state.is_destroyed() || sock.queued() < self.options_of(sock.server).high_water_mark {
            return false;
        }
        self.recipient_behind(key);
        false
    }

    /// A recipient behind since `behind_since` is a laggard once that has lasted the bound while
    /// another recipient kept up. When every recipient is stuck (the machine,
    /// or the one process reading them all, is busy), nobody is singled out: the senders stay
    /// slowed, one bounded stall after another.
    fn is_laggard(&self, behind_since: u64) -> bool {
        self.clock.now_ms().saturating_sub(behind_since) >= MAX_STALL_MS
            && self.flow.last_kept_up > behind_since
    }

    /// Whether `key` was judged a laggard less than [`LAGGARD_FOR`] ago.
    fn was_laggard(&self, key: usize) -> bool {
        !self.flow.laggards.is_empty()
            && self.flow.laggards.get(&self.id_of(key)).is_some_and(|&until| self.clock.now_ms() < until)
    }

    fn judge_laggard(&mut self, key: usize) {
        let id = self.id_of(key);
        self.flow.laggards.insert(id, self.clock.now_ms() + LAGGARD_FOR.as_millis() as u64);
        self.release_holding(key);
    }

    /// True while `key` has been behind for less than the bound: it is not a laggard (yet), and
    /// every sender that feeds it is stalled after its current read, so its queue may pass its
    /// hard limit by what those reads produce. Past the bound, the hard limit holds again.
    pub(crate) fn in_stall_grace(&self, key: usize) -> bool {
        let stuck = self.sockets[key].queue.as_ref().and_then(|q| q.behind_since);
        stuck.is_none_or(|since| self.clock.now_ms().saturating_sub(since) < MAX_STALL_MS)
            && !self.was_laggard(key)
    }

    fn kept_up(&mut self) {
        if self.clock.now_ms() > self.flow.last_kept_up {
            self.flow.last_kept_up = self.clock.now_ms();
            // Recipients stuck for the bound may now count as laggards.
            self.flow.changed |= self.flow.holding_count > 0;
        }
    }

    /// `key`'s queue is at or above its mark with the kernel full: stall the sender, unless
    /// `key` is a laggard.
    fn recipient_behind(&mut self, key: usize) {
        let now = self.clock.now_ms();
        let Some(q) = self.sockets[key].queue.as_mut() else { return };
        let since = *q.behind_since.get_or_insert(now);
        if self.was_laggard(key) {
            return;
        }
        if self.is_laggard(since) {
            // A laggard: senders waited for it; now it is on its own (and its hard limit).
            self.judge_laggard(key);
            return;
        }
        let Some(sender) = self.flow.reading else { return };
        let Some(sender_key) = self.key_of(sender) else { return };
        if self.sockets[sender_key].state.is_destroyed() {
            return;
        }
        if self.sockets[key].state.hold() {
            self.flow.holding_count += 1;
            let id = self.id_of(key);
            self.flow.holding.push(id);
        }
        if self.sockets[sender_key].state.stall() {
            self.flow.stalled.push((sender, now));
            self.stats.sender_stalls += 1;
            self.sync_interest(sender_key);
        }
    }

    /// Some of `key`'s output reached the kernel: it kept up; once its queue is empty (Node's
    /// `drain`) it is no longer behind, and senders no longer wait on it.
    pub(crate) fn recipient_progressed(&mut self, key: usize) {
        let sock = &mut self.sockets[key];
        let Some(q) = sock.queue.as_mut() else { return self.release_holding(key) };
        if q.behind_since.is_none() {
            return;
        }
        // Only an empty queue ends "behind": a client that never reads still drains into a
        // socket buffer the kernel enlarges, a piece at a time.
        if q.is_empty() {
            q.behind_since = None;
            self.release_holding(key);
        }
        self.kept_up();
    }

    /// Senders no longer wait on `key` (it drained, became a laggard or closed).
    pub(crate) fn release_holding(&mut self, key: usize) {
        if self.sockets[key].state.release_hold() {
            self.flow.holding_count -= 1;
            self.flow.changed = true;
        }
    }

    /// Run by the loop once per turn: resumes stalled senders whose recipients all caught up
    /// (or became laggards), and any whose stall has lasted [`MAX_SENDER_STALL`].
    pub(crate) fn settle_flow(&mut self) {
        let now = self.clock.now_ms();
        let due = self.flow.deadline().is_some_and(|d| now >= d);
        if !self.flow.changed && !due {
            return;
        }
        self.flow.changed = false;
        // Recipients stuck for the whole bound become laggards: nobody waits on them. A socket
        // flagged again after its entry went stale is listed twice: its flag is cleared at the
        // first entry kept, so the second is dropped, then set again.
        let mut holding = std::mem::take(&mut self.flow.holding);
        let mut judged = Vec::new();
        holding.retain(|&id| {
            let Some(key) = self.key_of(id) else { return false };
            if !self.sockets[key].state.release_hold() {
                return false;
            }
            let since = self.sockets[key].queue.as_ref().and_then(|q| q.behind_since).unwrap_or(now);
            if self.is_laggard(since) {
                self.flow.holding_count -= 1;
                judged.push(id);
                return false;
            }
            true
        });
        for id in judged.drain(..) {
            self.flow.laggards.insert(id, now + LAGGARD_FOR.as_millis() as u64);
        }
        for &id in &holding {
            let key = id.key as usize;
            self.sockets[key].state.hold();
        }
        self.flow.holding = holding;
        let resume = if self.flow.holding_count == 0 {
            self.flow.stalled.len()
        } else {
            self.flow.stalled.iter().take_while(|&&(_, since)| now >= since + MAX_STALL_MS).count()
        };
        let mut stalled = std::mem::take(&mut self.flow.stalled);
        for (id, since) in stalled.drain(..resume) {
            self.stats.sender_stall_ms += now.saturating_sub(since);
            let Some(key) = self.key_of(id) else { continue };
            if !self.sockets[key].state.unstall() {
                continue;
            }
            self.sync_interest(key);
            // Input may have been left unread, and no new edge will come for it.
            self.mark_ready(key);
        }
        self.flow.stalled = stalled;
        if self.flow.stalled.is_empty() {
            // Nobody waits: what recipients were holding no longer matters.
            for id in std::mem::take(&mut self.flow.holding) {
                if let Some(key) = self.key_of(id) {
                    self.sockets[key].state.release_hold();
                }
            }
            self.flow.holding_count = 0;
        }
    }
}
