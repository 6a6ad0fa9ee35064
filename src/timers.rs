//! Application timers: Node's `setTimeout` / `setInterval` / `clearTimeout` / `unref`, on the
//! loop's clock.
//!
//! A binary heap ordered by deadline decides the poll timeout; cancelled timers are dropped
//! lazily when they reach the top (their slab entry is gone or has a newer generation).
//! Applications set few timers, so this stays small; per-socket idle timeouts, which are many
//! and re-armed constantly, live in [`crate::idle`] instead.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use slab::Slab;

/// Names a timer so it can be cleared; stale ids (fired or cleared) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    key: u32,
    gen: u32,
}

/// What the loop does when a timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// Deliver `Handler::on_timer`.
    App,
    /// Re-arm a listener that stopped accepting because no fd was free.
    AcceptRetry(usize),
    /// `Context::end_within`: destroy the socket if it is still open.
    EndDeadline(crate::ids::SocketId),
    /// Cut sockets whose unfinished input is older than the input timeout.
    InputSweep,
    /// Log what the warning budgets dropped.
    WarningSummary,
}

struct Entry {
    gen: u32,
    deadline: u64,
    interval: Option<u64>,
    referenced: bool,
    kind: TimerKind,
}

/// The loop's one-shot and repeating timers, in loop milliseconds.
#[derive(Default)]
pub(crate) struct Timers {
    entries: Slab<Entry>,
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    next_gen: u32,
    referenced: usize,
}

impl Timers {
    /// Arms a timer `delay` ms after `now`, repeating every `interval` ms if given.
    pub fn insert(&mut self, now: u64, delay: u64, interval: Option<u64>, kind: TimerKind) -> TimerId {
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let deadline = now.saturating_add(delay);
        let key = self.entries.insert(Entry { gen, deadline, interval, referenced: true, kind }) as u32;
        self.referenced += 1;
        self.heap.push(Reverse((deadline, key, gen)));
        TimerId { key, gen }
    }

    /// Cancels a timer; a stale id is a no-op. Returns whether a live timer was removed.
    pub fn remove(&mut self, id: TimerId) -> bool {
        match self.entries.get(id.key as usize) {
            Some(e) if e.gen == id.gen => {
                if e.referenced {
                    self.referenced -= 1;
                }
                self.entries.remove(id.key as usize);
                true
            }
            _ => false,
        }
    }

    /// Sets whether the timer keeps the loop alive (Node's `ref()` / `unref()`).
    pub fn set_ref(&mut self, id: TimerId, referenced: bool) {
        if let Some(e) = self.entries.get_mut(id.key as usize) {
            if e.gen == id.gen && e.referenced != referenced {
                e.referenced = referenced;
                if referenced {
                    self.referenced += 1;
                } else {
                    self.referenced -= 1;
                }
            }
        }
    }

    /// Number of live timers that keep the loop running.
    pub fn referenced(&self) -> usize {
        self.referenced
    }

    /// Deadline of the earliest live timer.
    pub fn next_deadline(&mut self) -> Option<u64> {
        while let Some(&Reverse((deadline, key, gen))) = self.heap.peek() {
            match self.entries.get(key as usize) {
                Some(e) if e.gen == gen && e.deadline == deadline => return Some(deadline),
                _ => {
                    self.heap.pop();
                }
            }
        }
        None
    }

    /// Pops one timer due at `now`, re-arming it if it repeats.
    pub fn pop_due(&mut self, now: u64) -> Option<(TimerId, TimerKind)> {
        let deadline = self.next_deadline()?;
        if deadline > now {
            return None;
        }
        let Reverse((_, key, gen)) = self.heap.pop()?;
        let id = TimerId { key, gen };
        let e = &mut self.entries[key as usize];
        let kind = e.kind;
        match e.interval {
            Some(every) => {
                // Schedule from the previous deadline so an interval does not drift, but never
                // in the past (a stalled loop fires once, not a burst of catch-ups).
                e.deadline = (e.deadline + every.max(1)).max(now + 1);
                self.heap.push(Reverse((e.deadline, key, gen)));
            }
            None => {
                self.remove(id);
            }
        }
        Some((id, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shots_fire_in_deadline_order_once() {
        let mut t = Timers::default();
        let b = t.insert(0, 20, None, TimerKind::App);
        let a = t.insert(0, 10, None, TimerKind::App);
        assert_eq!(t.next_deadline(), Some(10));
        assert_eq!(t.pop_due(9), None);
        assert_eq!(t.pop_due(25), Some((a, TimerKind::App)));
        assert_eq!(t.pop_due(25), Some((b, TimerKind::App)));
        assert_eq!(t.pop_due(1000), None);
        assert_eq!(t.referenced(), 0);
    }

    #[test]
    fn intervals_repeat_without_bursting() {
        let mut t = Timers::default();
        let i = t.insert(0, 10, Some(10), TimerKind::App);
        assert_eq!(t.pop_due(10).map(|x| x.0), Some(i));
        assert_eq!(t.next_deadline(), Some(20));
        assert_eq!(t.pop_due(100).map(|x| x.0), Some(i));
        assert_eq!(t.pop_due(100), None, "one catch-up, not eight");
        assert!(t.remove(i));
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn cleared_and_unrefed_timers() {
        let mut t = Timers::default();
        let a = t.insert(0, 10, None, TimerKind::App);
        let b = t.insert(0, 10, None, TimerKind::App);
        t.set_ref(b, false);
        assert_eq!(t.referenced(), 1);
        assert!(t.remove(a));
        assert!(!t.remove(a), "stale id");
        assert_eq!(t.referenced(), 0);
        assert_eq!(t.pop_due(10).map(|x| x.0), Some(b));
    }
}
