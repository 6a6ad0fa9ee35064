//! Node's `net.Socket` state as one small value with named, pure transitions.
//!
//! Every flag a socket carries lives here, and only the transitions below change them: each
//! says what the loop must do next (emit `drain`, send FIN, close, change interest), so the
//! rules can be read in one place and tested without a socket. [`crate::context::Context`] and
//! [`crate::event_loop`] do the syscalls and call the handler as told.
//!
//! Node's rules kept here: `drain` only after a `write()` returned false and never once
//! `end()` was called; `end()` takes effect once; `destroy()` once, so `close` is emitted
//! exactly once; a `write()` after `end()` is an error; after the peer's FIN the socket ends
//! its side too unless half-open is allowed, and is done once both sides have ended.

use mio::Interest;

/// Outbound connect in progress (`socket.connecting`).
const CONNECTING: u32 = 1 << 0;
/// `pause()` was called; reads stop until `resume()`.
const PAUSED: u32 = 1 << 1;
/// The peer's FIN was read (`'end'` emitted).
const READ_ENDED: u32 = 1 << 2;
/// `end()` was called: flush, then shut down the write side.
const ENDING: u32 = 1 << 3;
/// Our FIN was sent (`'finish'`).
const FINISHED: u32 = 1 << 4;
/// A `write()` returned false; `'drain'` is owed when the queue empties.
const NEED_DRAIN: u32 = 1 << 5;
/// Keep the write side open after the peer's FIN.
const ALLOW_HALF_OPEN: u32 = 1 << 6;
/// Closed; the slot waits for `'close'` to be emitted at the end of the batch.
const DESTROYED: u32 = 1 << 7;
/// Registered with `READABLE` interest.
const REG_READ: u32 = 1 << 8;
/// Registered with `WRITABLE` interest.
const REG_WRITE: u32 = 1 << 9;
/// `unref()`: does not keep the loop alive.
const UNREF: u32 = 1 << 10;
/// `cork()`: writes queue without a syscall until the loop flushes at the end of the turn.
const CORKED: u32 = 1 << 11;
/// epoll reported the peer's hang-up. That edge comes once, so every later read (a resume
/// after the read budget ran out, say) must go on to EOF instead of stopping at a short read.
const PEER_HUP: u32 = 1 << 12;
/// On the loop's `ready` list: queued once however many budgets ran out.
const READY: u32 = 1 << 13;
/// Cut for its unfinished input: what the application reports for it is ignored from now.
const INPUT_CUT: u32 = 1 << 14;
/// Not read for now: its broadcasts left recipients behind (`crate::flow`). Apart from
/// `PAUSED`, so the application's `pause()`/`resume()` stay its own.
const STALLED: u32 = 1 << 15;
/// A recipient that a stalled sender waits on (`crate::flow`).
const HOLDING: u32 = 1 << 16;
/// Corked, and the kernel refused more this turn: do not try it again before the end-of-turn
/// flush.
const KERNEL_FULL: u32 = 1 << 17;

/// One socket's flags (four bytes, so the slab slot stays small).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SocketState(u32);

/// What `write()` may do with a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteAdmission {
    /// Open for writing.
    Open,
    /// Destroyed: the data is dropped and `write()` returns false.
    Closed,
    /// `end()` was called: the socket is destroyed with a write-after-end error.
    AfterEnd,
}

/// What follows once the output queue has emptied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterDrain {
    /// `end()` was called: send FIN now (no `drain`).
    Finish,
    /// A `write()` returned false: emit `drain`.
    EmitDrain,
    /// Nothing owed.
    Nothing,
}

/// What follows the peer's FIN once `'end'` has been emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterPeerEnd {
    /// Destroyed meanwhile: nothing to do.
    Nothing,
    /// Our FIN was sent already: both sides are done, close.
    Close,
    /// End our side too (no half-open).
    End,
    /// Half-open: stay writable until the application calls `end()`.
    StayOpen,
}

impl SocketState {
    /// A socket that is connected (accepted, or wrapped around an open stream).
    pub fn connected(allow_half_open: bool) -> Self {
        SocketState(if allow_half_open { ALLOW_HALF_OPEN } else { 0 })
    }

    /// An outbound socket whose connect is in progress.
    pub fn connecting(allow_half_open: bool) -> Self {
        SocketState(Self::connected(allow_half_open).0 | CONNECTING)
    }

    #[inline]
    fn has(self, bits: u32) -> bool {
        self.0 & bits != 0
    }

    // ----- queries ----------------------------------------------------------------------------

    /// Closed (`'close'` may still be pending).
    #[inline]
    pub fn is_destroyed(self) -> bool {
        self.has(DESTROYED)
    }

    /// Node's `socket.writable`: neither ended nor destroyed.
    #[inline]
    pub fn is_writable(self) -> bool {
        !self.has(ENDING | DESTROYED)
    }

    #[inline]
    pub fn is_connecting(self) -> bool {
        self.has(CONNECTING)
    }

    #[inline]
    pub fn is_paused(self) -> bool {
        self.has(PAUSED)
    }

    #[inline]
    pub fn allows_half_open(self) -> bool {
        self.has(ALLOW_HALF_OPEN)
    }

    /// Whether the socket keeps the loop alive (not `unref()`ed).
    #[inline]
    pub fn is_referenced(self) -> bool {
        !self.has(UNREF)
    }

    /// Paused, stalled, or queued to be read again: input may be waiting unread.
    #[inline]
    pub fn may_have_unread_input(self) -> bool {
        self.has(PAUSED | STALLED | READY)
    }

    /// Reading is off for now (paused, stalled or the peer ended); destroyed aside.
    #[inline]
    pub fn reads_stopped(self) -> bool {
        self.has(PAUSED | STALLED | READ_ENDED)
    }

    /// Another read may be tried now.
    #[inline]
    pub fn can_read(self) -> bool {
        !self.has(DESTROYED | PAUSED | STALLED | READ_ENDED)
    }

    /// The peer's hang-up was reported: read on to EOF.
    #[inline]
    pub fn peer_hung_up(self) -> bool {
        self.has(PEER_HUP)
    }

    /// A `write()` may go straight to the kernel: nothing queued before it, not connecting, not
    /// corked.
    #[inline]
    pub fn writes_directly(self, queue_empty: bool) -> bool {
        queue_empty && !self.has(CONNECTING | CORKED)
    }

    /// Corked with a kernel not yet found full this turn: a flush before the end of the turn
    /// may still help.
    #[inline]
    pub fn corked_untried(self) -> bool {
        self.has(CORKED) && !self.has(CONNECTING | KERNEL_FULL)
    }

    /// The application's reports of unfinished input still count (not destroyed, not cut).
    #[inline]
    pub fn accepts_input_report(self) -> bool {
        !self.has(DESTROYED | INPUT_CUT)
    }

    // ----- interest ---------------------------------------------------------------------------

    /// The interest the socket is registered with, `None` when not registered.
    pub fn registered(self) -> Option<Interest> {
        interest_of(self.has(REG_READ), self.has(REG_WRITE))
    }

    /// The interest the socket should be registered with now.
    ///
    /// Read interest only while reading is wanted (`pause()` or a stall deregisters it, so a
    /// paused socket costs no wakeups); write interest only while output is queued or a connect
    /// is pending. A corked socket is flushed by the loop at the end of the turn, not on
    /// readiness.
    pub fn wanted_interest(self, has_output: bool) -> Option<Interest> {
        let read = !self.has(PAUSED | STALLED | READ_ENDED | DESTROYED);
        let write = !self.has(DESTROYED) && ((has_output && !self.has(CORKED)) || self.has(CONNECTING));
        interest_of(read, write)
    }

    /// The registration changed to `interest`.
    pub fn set_registered(&mut self, interest: Option<Interest>) {
        self.0 &= !(REG_READ | REG_WRITE);
        if let Some(i) = interest {
            if i.is_readable() {
                self.0 |= REG_READ;
            }
            if i.is_writable() {
                self.0 |= REG_WRITE;
            }
        }
    }

    // ----- transitions ------------------------------------------------------------------------

    /// `destroy()`: returns true the first time only, when `'close'` becomes owed.
    pub fn destroy(&mut self) -> bool {
        if self.has(DESTROYED) {
            return false;
        }
        self.0 |= DESTROYED;
        true
    }

    /// `end()`: returns true the first time only, on a socket not destroyed.
    pub fn end(&mut self) -> bool {
        if self.has(ENDING | DESTROYED) {
            return false;
        }
        self.0 |= ENDING;
        true
    }

    /// Whether `write()` may proceed.
    pub fn admit_write(self) -> WriteAdmission {
        if self.has(DESTROYED) {
            WriteAdmission::Closed
        } else if self.has(ENDING) {
            WriteAdmission::AfterEnd
        } else {
            WriteAdmission::Open
        }
    }

    /// Output was queued by `write()`; returns `write()`'s value. Past the high-water mark it
    /// is false, and `'drain'` is owed once the queue empties.
    pub fn on_write_queued(&mut self, below_high_water: bool) -> bool {
        if !below_high_water {
            self.0 |= NEED_DRAIN;
        }
        below_high_water
    }

    /// The output queue emptied.
    pub fn on_drained(&mut self) -> AfterDrain {
        let owed = self.has(NEED_DRAIN);
        self.0 &= !NEED_DRAIN;
        if self.has(ENDING) {
            // Node never emits 'drain' once end() was called.
            AfterDrain::Finish
        } else if owed {
            AfterDrain::EmitDrain
        } else {
            AfterDrain::Nothing
        }
    }

    /// Whether our FIN is due: `end()` was called, connected, and nothing is left to write.
    pub fn fin_due(self, queue_empty: bool) -> bool {
        self.has(ENDING) && !self.has(FINISHED | DESTROYED | CONNECTING) && queue_empty
    }

    /// Our FIN was sent; returns true when the peer had ended too (the socket is done).
    pub fn on_fin_sent(&mut self) -> bool {
        self.0 |= FINISHED;
        self.has(READ_ENDED)
    }

    /// The peer's FIN was read (`'end'` is to be emitted).
    pub fn peer_fin(&mut self) {
        self.0 |= READ_ENDED;
    }

    /// What follows the peer's FIN once `'end'` was emitted.
    pub fn after_peer_end(self) -> AfterPeerEnd {
        if self.has(DESTROYED) {
            AfterPeerEnd::Nothing
        } else if self.has(FINISHED) {
            AfterPeerEnd::Close
        } else if self.has(ALLOW_HALF_OPEN) {
            AfterPeerEnd::StayOpen
        } else {
            AfterPeerEnd::End
        }
    }

    /// epoll reported the peer's hang-up.
    pub fn peer_hup(&mut self) {
        self.0 |= PEER_HUP;
    }

    /// The outbound connect completed.
    pub fn on_connected(&mut self) {
        self.0 &= !CONNECTING;
    }

    /// `pause()`.
    pub fn pause(&mut self) {
        self.0 |= PAUSED;
    }

    /// `resume()`: returns true if the socket was paused (it should be read again now).
    pub fn resume(&mut self) -> bool {
        let was = self.has(PAUSED);
        self.0 &= !PAUSED;
        was
    }

    /// `cork()`: returns true if newly corked (the loop must uncork it at the end of the turn).
    pub fn cork(&mut self) -> bool {
        if self.has(CORKED | DESTROYED) {
            return false;
        }
        self.0 |= CORKED;
        true
    }

    /// The end-of-turn uncork: writes go to the kernel again.
    pub fn uncork(&mut self) {
        self.0 &= !(CORKED | KERNEL_FULL);
    }

    /// The kernel refused more of a corked socket's output this turn.
    pub fn on_kernel_full(&mut self) {
        self.0 |= KERNEL_FULL;
    }

    /// The kernel is being asked again (a flush on writability).
    pub fn on_kernel_retry(&mut self) {
        self.0 &= !KERNEL_FULL;
    }

    /// Queue for service later this turn: returns true if not queued already.
    pub fn mark_ready(&mut self) -> bool {
        if self.has(READY) {
            return false;
        }
        self.0 |= READY;
        true
    }

    /// Taken off the ready list.
    pub fn take_ready(&mut self) {
        self.0 &= !READY;
    }

    /// `ref()`/`unref()`: returns true if that changed whether the socket keeps the loop alive.
    pub fn set_referenced(&mut self, referenced: bool) -> bool {
        if self.is_referenced() == referenced {
            return false;
        }
        self.0 ^= UNREF;
        true
    }

    /// Its unfinished input was cut.
    pub fn cut_input(&mut self) {
        self.0 |= INPUT_CUT;
    }

    /// Stall the sender (not read until released): returns true if newly stalled.
    pub fn stall(&mut self) -> bool {
        if self.has(STALLED) {
            return false;
        }
        self.0 |= STALLED;
        true
    }

    /// End a stall: returns true if the socket was stalled and is open (read interest and a
    /// read are due).
    pub fn unstall(&mut self) -> bool {
        if !self.has(STALLED) || self.has(DESTROYED) {
            return false;
        }
        self.0 &= !STALLED;
        true
    }

    /// A stalled sender waits on this recipient: returns true if it was not holding already.
    pub fn hold(&mut self) -> bool {
        if self.has(HOLDING) {
            return false;
        }
        self.0 |= HOLDING;
        true
    }

    /// Nobody waits on this recipient any more: returns true if it was holding.
    pub fn release_hold(&mut self) -> bool {
        let was = self.has(HOLDING);
        self.0 &= !HOLDING;
        was
    }
}

fn interest_of(read: bool, write: bool) -> Option<Interest> {
    match (read, write) {
        (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
        (true, false) => Some(Interest::READABLE),
        (false, true) => Some(Interest::WRITABLE),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Option<Interest> = Some(Interest::READABLE);
    const W: Option<Interest> = Some(Interest::WRITABLE);

    fn rw() -> Option<Interest> {
        Some(Interest::READABLE | Interest::WRITABLE)
    }

    #[test]
    fn drain_is_owed_only_after_a_write_returned_false() {
        let mut s = SocketState::connected(false);
        assert!(s.on_write_queued(true));
        assert_eq!(s.on_drained(), AfterDrain::Nothing);
        assert!(!s.on_write_queued(false));
        assert_eq!(s.on_drained(), AfterDrain::EmitDrain);
        // Once only per false return.
        assert_eq!(s.on_drained(), AfterDrain::Nothing);
    }

    #[test]
    fn no_drain_once_ended_the_fin_follows_instead() {
        let mut s = SocketState::connected(false);
        assert!(!s.on_write_queued(false));
        assert!(s.end());
        assert!(!s.fin_due(false), "not while output is queued");
        assert_eq!(s.on_drained(), AfterDrain::Finish);
        assert!(s.fin_due(true));
        assert!(!s.on_fin_sent(), "the peer has not ended: not done yet");
        assert!(!s.fin_due(true), "FIN is sent once");
    }

    #[test]
    fn end_takes_effect_once_and_writes_after_it_are_errors() {
        let mut s = SocketState::connected(false);
        assert_eq!(s.admit_write(), WriteAdmission::Open);
        assert!(s.is_writable());
        assert!(s.end());
        assert!(!s.end());
        assert!(!s.is_writable());
        assert_eq!(s.admit_write(), WriteAdmission::AfterEnd);
    }

    #[test]
    fn destroy_owes_close_exactly_once_and_drops_later_writes() {
        let mut s = SocketState::connected(false);
        assert!(s.destroy());
        assert!(!s.destroy());
        assert_eq!(s.admit_write(), WriteAdmission::Closed);
        assert!(!s.end(), "end() after destroy() does nothing");
        assert!(!s.cork());
        assert!(!s.fin_due(true));
        assert_eq!(s.wanted_interest(true), None);
        assert!(!s.is_writable());
    }

    #[test]
    fn peer_fin_ends_our_side_unless_half_open() {
        let mut s = SocketState::connected(false);
        s.peer_fin();
        assert_eq!(s.after_peer_end(), AfterPeerEnd::End);
        assert!(!s.can_read());

        let mut s = SocketState::connected(true);
        s.peer_fin();
        assert_eq!(s.after_peer_end(), AfterPeerEnd::StayOpen);
        assert!(s.is_writable(), "half-open: still writable");
        assert!(s.end());
        assert!(s.on_fin_sent(), "both sides ended: the socket is done");

        let mut s = SocketState::connected(false);
        assert!(s.end());
        assert!(!s.on_fin_sent());
        s.peer_fin();
        assert_eq!(s.after_peer_end(), AfterPeerEnd::Close);

        let mut s = SocketState::connected(false);
        s.peer_fin();
        s.destroy();
        assert_eq!(s.after_peer_end(), AfterPeerEnd::Nothing);
    }

    #[test]
    fn fin_waits_for_the_connect() {
        let mut s = SocketState::connecting(false);
        assert!(s.end());
        assert!(!s.fin_due(true));
        s.on_connected();
        assert!(s.fin_due(true));
    }

    #[test]
    fn interest_follows_pause_output_cork_and_connect() {
        let mut s = SocketState::connected(false);
        assert_eq!(s.wanted_interest(false), R);
        assert_eq!(s.wanted_interest(true), rw());
        s.pause();
        assert_eq!(s.wanted_interest(false), None);
        assert!(s.may_have_unread_input() && s.reads_stopped());
        assert!(s.resume());
        assert!(!s.resume(), "resume() of a socket not paused does nothing");
        assert!(s.cork());
        assert!(!s.cork(), "corked once per turn");
        assert_eq!(s.wanted_interest(true), R, "a corked socket is flushed by the loop");
        assert!(!s.writes_directly(true));
        s.uncork();
        assert!(s.writes_directly(true));
        assert!(!s.writes_directly(false), "behind queued output");
        assert_eq!(SocketState::connecting(false).wanted_interest(false), rw());
        let mut s = SocketState::connected(false);
        s.peer_fin();
        assert_eq!(s.wanted_interest(true), W);
    }

    #[test]
    fn registration_round_trips() {
        let mut s = SocketState::connected(false);
        assert_eq!(s.registered(), None);
        for i in [R, W, rw(), None] {
            s.set_registered(i);
            assert_eq!(s.registered(), i);
        }
        assert_eq!(s, SocketState::connected(false), "no other flag touched");
    }

    #[test]
    fn a_corked_socket_whose_kernel_was_full_is_not_tried_again_this_turn() {
        let mut s = SocketState::connected(false);
        assert!(!s.corked_untried());
        s.cork();
        assert!(s.corked_untried());
        s.on_kernel_full();
        assert!(!s.corked_untried());
        s.uncork();
        s.cork();
        assert!(s.corked_untried(), "uncork forgets the full kernel");
    }

    #[test]
    fn ready_stall_hold_and_ref_change_once() {
        let mut s = SocketState::connected(false);
        assert!(s.mark_ready() && !s.mark_ready());
        s.take_ready();
        assert!(s.mark_ready());
        assert!(s.stall() && !s.stall());
        assert!(!s.can_read());
        assert!(s.unstall() && !s.unstall());
        assert!(s.hold() && !s.hold());
        assert!(s.release_hold() && !s.release_hold());
        assert!(!s.set_referenced(true));
        assert!(s.set_referenced(false) && !s.is_referenced());
        assert!(s.set_referenced(true) && s.is_referenced());
        s.stall();
        s.destroy();
        assert!(!s.unstall(), "a destroyed socket is not read again");
        assert!(!s.accepts_input_report());
        let mut s = SocketState::connected(false);
        s.cut_input();
        assert!(!s.accepts_input_report());
    }
}
