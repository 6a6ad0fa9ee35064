//! Unfinished input held for sockets: reported by services, bounded by
//! [`crate::input_budget`], cut when over its limits.

use super::Context;
use crate::ids::SocketId;
use crate::input_budget::{InputCut, InputLimits};
use crate::timers::TimerKind;

impl Context {
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
}
