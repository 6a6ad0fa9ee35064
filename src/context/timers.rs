//! Application timers (Node's `setTimeout`/`setInterval`), the loop's own, signals, and
//! stopping the loop.

use std::io;
use std::time::Duration;

use super::{Context, SIGNAL_TOKEN};
use crate::timers::{TimerId, TimerKind};

impl Context {
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
