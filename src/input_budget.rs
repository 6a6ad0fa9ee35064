//! Unfinished input, accounted in one place: the partial chat lines and hub frames services
//! hold between reads, per socket and loop-wide, bounded together (Redis's
//! `client-query-buffer-limit` with `maxmemory-clients`) and in time (slowloris).
//!
//! A service reports what it holds for a socket after each read ([`Context::set_held_input`]).
//! Sockets that hold something are listed (the slot keeps its place in the list, so updates and
//! removal are O(1)); nothing scans all sockets. When the total passes the limit, the list is
//! scanned for the heaviest holder, which is cut; the same list, swept by a timer that exists
//! only while something is held, finds holds older than the timeout. A cut is delivered to the
//! handler as [`crate::Handler::on_input_cut`] so the service can say why in its own protocol;
//! then the loop makes sure the socket is hung up.
//!
//! [`Context::set_held_input`]: crate::Context::set_held_input

use std::fmt;
use std::time::Duration;

use slab::Slab;

use crate::socket::Socket;

/// The limits on unfinished input (`--max-input-total`, `--input-timeout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputLimits {
    /// Most bytes of unfinished input all sockets together may hold; past it the heaviest
    /// holder is cut. `None`: no limit.
    pub max_total: Option<usize>,
    /// Longest an unfinished line or frame may take to complete. `None`: no limit.
    pub timeout: Option<Duration>,
}

/// Why a socket's unfinished input was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputCut {
    /// All sockets together held more than `limit` bytes, and this one held the most.
    OverTotal {
        /// What this socket held.
        held: usize,
        /// `--max-input-total`.
        limit: usize,
    },
    /// Its unfinished line or frame did not complete within `timeout`.
    Timeout {
        /// What this socket held.
        held: usize,
        /// `--input-timeout`.
        timeout: Duration,
    },
}

impl fmt::Display for InputCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            InputCut::OverTotal { held, limit } => write!(
                f,
                "server input limit reached: your unfinished input ({held} bytes) was the largest \
                 of all connections, which together may hold {}",
                crate::units::format_size(limit)
            ),
            InputCut::Timeout { held, timeout } => {
                write!(f, "unfinished input ({held} bytes) not completed within {} ms", timeout.as_millis())
            }
        }
    }
}

/// One socket that holds unfinished input.
#[derive(Debug, Clone, Copy)]
struct Holder {
    key: u32,
    bytes: usize,
    /// Loop time (ms) since which the held input has made no progress.
    since: u64,
    /// The socket's `bytes_read` at the last report: tells whether input completed since.
    read_mark: u64,
}

/// The loop-wide account. Each holder's slot stores `position + 1` in `Socket::hold`.
#[derive(Debug, Default)]
pub(crate) struct InputBudget {
    holders: Vec<Holder>,
    total: usize,
    pub limits: InputLimits,
    /// The sweep timer for `limits.timeout` is armed.
    pub sweep_armed: bool,
}

impl InputBudget {
    /// Records that socket `key` holds `bytes` (0: none) as of loop time `now`.
    ///
    /// The hold's clock restarts whenever input completed since the last report, that is when
    /// fewer bytes are held than before plus what was read since: the bytes now held belong to
    /// a newer line or frame. So a busy client streaming frames is never timed out, and one
    /// that never finishes its frame is, however it drips.
    pub fn set(&mut self, sockets: &mut Slab<Socket>, key: usize, bytes: usize, now: u64) {
        let read = sockets[key].bytes_read;
        let slot = sockets[key].hold as usize;
        if bytes == 0 {
            self.release(sockets, key);
            return;
        }
        if slot == 0 {
            self.holders.push(Holder { key: key as u32, bytes, since: now, read_mark: read });
            sockets[key].hold = self.holders.len() as u32;
            self.total += bytes;
            return;
        }
        let h = &mut self.holders[slot - 1];
        let arrived = read.saturating_sub(h.read_mark) as usize;
        if bytes < h.bytes.saturating_add(arrived) {
            h.since = now;
        }
        self.total = self.total - h.bytes + bytes;
        h.bytes = bytes;
        h.read_mark = read;
    }

    /// Forgets what socket `key` held (it was cut, closed or finished its input).
    pub fn release(&mut self, sockets: &mut Slab<Socket>, key: usize) {
        let slot = std::mem::take(&mut sockets[key].hold) as usize;
        if slot == 0 {
            return;
        }
        let gone = self.holders.swap_remove(slot - 1);
        self.total -= gone.bytes;
        if let Some(moved) = self.holders.get(slot - 1) {
            sockets[moved.key as usize].hold = slot as u32;
        }
    }

    /// What socket `key` holds.
    pub fn held(&self, sockets: &Slab<Socket>, key: usize) -> usize {
        match sockets[key].hold as usize {
            0 => 0,
            slot => self.holders[slot - 1].bytes,
        }
    }

    /// All that is held.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// Slab keys of every holder.
    #[cfg(test)]
    fn holder_keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.holders.iter().map(|h| h.key as usize)
    }

    /// While the total is over the limit: the heaviest holder and the cut it gets. A scan of
    /// the holders, done only when over the limit.
    pub fn heaviest_over_limit(&self) -> Option<(usize, InputCut)> {
        let limit = self.limits.max_total?;
        if self.total <= limit {
            return None;
        }
        let h = self.holders.iter().max_by_key(|h| h.bytes)?;
        Some((h.key as usize, InputCut::OverTotal { held: h.bytes, limit }))
    }

    /// Holders whose input made no progress for the timeout, as of `now`, with their cuts.
    pub fn expired(&self, now: u64, out: &mut Vec<(usize, InputCut)>) {
        let Some(timeout) = self.limits.timeout else { return };
        let ms = timeout.as_millis() as u64;
        for h in self.holders.iter().filter(|h| h.since.saturating_add(ms) <= now) {
            out.push((h.key as usize, InputCut::Timeout { held: h.bytes, timeout }));
        }
    }

    /// Loop time at which the oldest hold times out.
    pub fn next_due(&self) -> Option<u64> {
        let ms = self.limits.timeout?.as_millis() as u64;
        self.holders.iter().map(|h| h.since.saturating_add(ms)).min()
    }
}

/// Delivers the owed cuts: counted, logged (within the warning budget), told to the handler,
/// and hung up if the handler left the socket writable.
pub(crate) fn deliver_cuts<H: crate::Handler>(cx: &mut crate::Context, h: &mut H) {
    while !cx.input_cuts.is_empty() {
        for (socket, cut) in std::mem::take(&mut cx.input_cuts) {
            // Closed or already hung up for another reason meanwhile: nothing left to cut.
            if !cx.is_writable(socket) {
                continue;
            }
            match cut {
                InputCut::OverTotal { .. } => cx.stats_mut().input_total_disconnects += 1,
                InputCut::Timeout { .. } => cx.stats_mut().input_timeout_disconnects += 1,
            }
            if cx.admit_warning(crate::warnings::Warning::InputCut, 1) {
                log::warn!("{}: cut: {cut}", cx.peer_label(socket.index()));
            }
            h.on_input_cut(cx, socket, &cut);
            if cx.is_writable(socket) {
                cx.destroy_with_error(socket, crate::SocketError::InputCut(cut));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::{Socket, SocketState, Stream};

    fn slab(n: usize) -> Slab<Socket> {
        let mut s = Slab::new();
        for _ in 0..n {
            s.insert(Socket::new(Stream::Closed, 1, 0, SocketState::default()));
        }
        s
    }

    #[test]
    fn holders_are_listed_and_released_in_constant_time() {
        let mut sockets = slab(3);
        let mut b = InputBudget::default();
        b.set(&mut sockets, 0, 10, 0);
        b.set(&mut sockets, 1, 20, 0);
        b.set(&mut sockets, 2, 30, 0);
        assert_eq!(b.total(), 60);
        // Releasing the first moves the last into its place; its slot follows.
        b.release(&mut sockets, 0);
        assert_eq!((b.total(), sockets[0].hold, sockets[2].hold), (50, 0, 1));
        assert_eq!(b.held(&sockets, 2), 30);
        b.set(&mut sockets, 2, 0, 0);
        assert_eq!((b.total(), sockets[2].hold), (20, 0));
        assert_eq!(b.holder_keys().collect::<Vec<_>>(), [1]);
        b.release(&mut sockets, 1);
        assert!(b.is_empty());
    }

    #[test]
    fn the_heaviest_is_cut_only_over_the_limit() {
        let mut sockets = slab(3);
        let mut b =
            InputBudget { limits: InputLimits { max_total: Some(100), timeout: None }, ..Default::default() };
        b.set(&mut sockets, 0, 40, 0);
        b.set(&mut sockets, 1, 60, 0);
        assert_eq!(b.heaviest_over_limit(), None, "at the limit is allowed");
        b.set(&mut sockets, 2, 1, 0);
        assert_eq!(b.heaviest_over_limit(), Some((1, InputCut::OverTotal { held: 60, limit: 100 })));
    }

    #[test]
    fn the_clock_restarts_only_when_input_completed() {
        let mut sockets = slab(1);
        let timeout = Duration::from_millis(1000);
        let mut b = InputBudget {
            limits: InputLimits { max_total: None, timeout: Some(timeout) },
            ..Default::default()
        };
        sockets[0].bytes_read = 5;
        b.set(&mut sockets, 0, 5, 100);
        // A drip: one more byte read, one more held. No progress, the clock runs on.
        sockets[0].bytes_read = 6;
        b.set(&mut sockets, 0, 6, 900);
        assert_eq!(b.next_due(), Some(1100));
        let mut out = Vec::new();
        b.expired(1099, &mut out);
        assert!(out.is_empty());
        b.expired(1100, &mut out);
        assert_eq!(out, [(0, InputCut::Timeout { held: 6, timeout })]);
        // 10 bytes read, 4 held: a frame completed and a new one began.
        sockets[0].bytes_read = 16;
        b.set(&mut sockets, 0, 4, 1050);
        assert_eq!(b.next_due(), Some(2050));
    }
}
