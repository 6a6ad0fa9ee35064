//! [`LoopClock`]: the loop's time, read once per wake so every timer and idle stamp of a turn
//! agrees on "now" and the hot path makes no clock syscall.

use std::time::{Duration, Instant};

/// Milliseconds since the loop started, as of the last [`LoopClock::update`].
#[derive(Debug)]
pub(crate) struct LoopClock {
    start: Instant,
    now_ms: u64,
}

impl LoopClock {
    pub(crate) fn new() -> Self {
        LoopClock { start: Instant::now(), now_ms: 0 }
    }

    /// Reads the OS clock; the loop calls it once per wake.
    pub(crate) fn update(&mut self) {
        self.now_ms = self.start.elapsed().as_millis() as u64;
    }

    /// Loop time in ms.
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Loop time in ms, wrapped to 32 bits: the idle timers' stamps, which only compare
    /// times less than 2^31 ms apart.
    #[inline]
    pub(crate) fn now32(&self) -> u32 {
        self.now_ms as u32
    }

    /// The instant that loop time `ms` stands for.
    pub(crate) fn instant_of(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Loop time as a duration since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        Duration::from_millis(self.now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_moves_only_on_update() {
        let mut clock = LoopClock::new();
        assert_eq!(clock.now_ms(), 0);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now_ms(), 0, "no update, no new time");
        clock.update();
        assert!(clock.now_ms() >= 5);
        assert_eq!(clock.elapsed(), Duration::from_millis(clock.now_ms()));
        assert_eq!(clock.instant_of(clock.now_ms()) - clock.instant_of(0), clock.elapsed());
        assert_eq!(clock.now32(), clock.now_ms() as u32);
    }
}
