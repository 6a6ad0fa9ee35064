//! Idle timeouts for sockets (`socket.setTimeout(ms)`), re-armed in O(1) on every read and write.
//!
//! Node keeps one intrusive list per distinct duration (`lib/internal/timers.js`): every timer in
//! a list has the same duration, so appending a refreshed timer keeps the list sorted by expiry.
//! We do the same. Refreshing moves a socket to its list's tail; expiry pops from the heads;
//! the poll timeout is the earliest head. Nothing ever scans all sockets.
//!
//! Links live in a side table indexed by the socket's slab key, so sockets without a timeout
//! pay nothing, and the module can be tested without sockets.

/// Marks "no neighbour" / "no list".
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    /// Index into `lists`, or NIL when this key has no timeout set.
    list: u32,
    /// Loop time (ms) of the last activity; meaningful while linked.
    last_active: u32,
    /// Whether the key is in its list. After a timeout fires it stays unlinked (but keeps its
    /// duration) until the next activity re-arms it, as Node's `Timeout.refresh()` does.
    linked: bool,
}

const UNSET: Link = Link { prev: NIL, next: NIL, list: NIL, last_active: 0, linked: false };

struct List {
    ms: u32,
    head: u32,
    tail: u32,
}

/// Per-socket idle timers, grouped by duration.
#[derive(Default)]
pub struct IdleTimers {
    links: Vec<Link>,
    lists: Vec<List>,
}

impl std::fmt::Debug for IdleTimers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleTimers").field("lists", &self.lists.len()).finish()
    }
}

impl IdleTimers {
    /// Sets (ms > 0) or clears (ms == 0) the idle timeout of `key`, starting the countdown now.
    pub fn set(&mut self, key: usize, ms: u32, now: u32) {
        self.remove(key);
        if ms == 0 {
            return;
        }
        let list = match self.lists.iter().position(|l| l.ms == ms) {
            Some(i) => i,
            None => {
                self.lists.push(List { ms, head: NIL, tail: NIL });
                self.lists.len() - 1
            }
        };
        if key >= self.links.len() {
            self.links.resize(key + 1, UNSET);
        }
        self.links[key].list = list as u32;
        self.append(key as u32, now);
    }

    /// Records activity on `key`: its countdown restarts. O(1).
    #[inline]
    pub fn touch(&mut self, key: usize, now: u32) {
        let Some(link) = self.links.get(key) else { return };
        if link.list == NIL {
            return;
        }
        if link.linked {
            if link.last_active == now {
                return;
            }
            self.unlink(key as u32);
        }
        self.append(key as u32, now);
    }

    /// Forgets `key` entirely (the socket closed; its slab key may be reused).
    pub fn remove(&mut self, key: usize) {
        if key >= self.links.len() {
            return;
        }
        if self.links[key].linked {
            self.unlink(key as u32);
        }
        self.links[key] = UNSET;
    }

    /// Whether `key`'s countdown is running: false once it fired, until the next activity.
    pub fn is_armed(&self, key: usize) -> bool {
        self.links.get(key).is_some_and(|l| l.linked)
    }

    /// Drops the side table beyond `len` keys (the slab shrank; those keys are all free).
    pub fn truncate(&mut self, len: usize) {
        for key in len..self.links.len() {
            self.remove(key);
        }
        self.links.truncate(len);
        self.links.shrink_to_fit();
    }

    /// Loop time (ms) at which the earliest timer expires, if any is armed.
    pub fn next_deadline(&self) -> Option<u32> {
        self.lists
            .iter()
            .filter(|l| l.head != NIL)
            .map(|l| self.links[l.head as usize].last_active.wrapping_add(l.ms))
            .min_by_key(|&d| d)
    }

    /// Moves every key whose timeout has expired at `now` into `out` and disarms it until its
    /// next activity.
    pub fn expire(&mut self, now: u32, out: &mut Vec<usize>) {
        for li in 0..self.lists.len() {
            loop {
                let head = self.lists[li].head;
                if head == NIL {
                    break;
                }
                let link = self.links[head as usize];
                // Wrapping difference: loop time is a u32 of milliseconds (49 days per lap);
                // durations are clamped below 2^31 ms, as Node clamps TIMEOUT_MAX.
                let idle = now.wrapping_sub(link.last_active);
                if (idle as i32) < self.lists[li].ms as i32 {
                    break;
                }
                self.unlink(head);
                out.push(head as usize);
            }
        }
    }

    fn append(&mut self, key: u32, now: u32) {
        let li = self.links[key as usize].list as usize;
        let tail = self.lists[li].tail;
        {
            let link = &mut self.links[key as usize];
            link.prev = tail;
            link.next = NIL;
            link.last_active = now;
            link.linked = true;
        }
        if tail == NIL {
            self.lists[li].head = key;
        } else {
            self.links[tail as usize].next = key;
        }
        self.lists[li].tail = key;
    }

    fn unlink(&mut self, key: u32) {
        let Link { prev, next, list, .. } = self.links[key as usize];
        let li = list as usize;
        if prev == NIL {
            self.lists[li].head = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[li].tail = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
        let link = &mut self.links[key as usize];
        link.prev = NIL;
        link.next = NIL;
        link.linked = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expire(t: &mut IdleTimers, now: u32) -> Vec<usize> {
        let mut out = Vec::new();
        t.expire(now, &mut out);
        out
    }

    #[test]
    fn fires_after_idle_duration_in_order() {
        let mut t = IdleTimers::default();
        t.set(3, 100, 0);
        t.set(1, 100, 10);
        t.set(2, 50, 20);
        assert_eq!(t.next_deadline(), Some(70));
        assert_eq!(expire(&mut t, 69), Vec::<usize>::new());
        assert_eq!(expire(&mut t, 100), vec![3, 2]);
        assert_eq!(expire(&mut t, 110), vec![1]);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn touch_postpones_and_keeps_list_sorted() {
        let mut t = IdleTimers::default();
        t.set(1, 100, 0);
        t.set(2, 100, 0);
        t.touch(1, 60);
        assert_eq!(expire(&mut t, 100), vec![2]);
        assert_eq!(t.next_deadline(), Some(160));
        assert_eq!(expire(&mut t, 159), Vec::<usize>::new());
        assert_eq!(expire(&mut t, 160), vec![1]);
    }

    #[test]
    fn a_fired_timer_is_disarmed_until_activity() {
        let mut t = IdleTimers::default();
        t.set(1, 100, 0);
        assert!(t.is_armed(1));
        assert_eq!(expire(&mut t, 100), vec![1]);
        assert!(!t.is_armed(1));
        t.touch(1, 150);
        assert!(t.is_armed(1));
        assert!(!t.is_armed(7), "never set");
    }

    #[test]
    fn fired_timer_rearms_on_next_activity_only() {
        let mut t = IdleTimers::default();
        t.set(5, 10, 0);
        assert_eq!(expire(&mut t, 10), vec![5]);
        assert_eq!(expire(&mut t, 100), Vec::<usize>::new(), "not re-armed by itself");
        t.touch(5, 200);
        assert_eq!(expire(&mut t, 210), vec![5]);
    }

    #[test]
    fn clearing_and_removing_disarm() {
        let mut t = IdleTimers::default();
        t.set(0, 10, 0);
        t.set(1, 10, 0);
        t.set(0, 0, 5);
        t.remove(1);
        t.touch(0, 6);
        t.touch(1, 6);
        assert_eq!(expire(&mut t, 1000), Vec::<usize>::new());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn unlink_from_middle_keeps_neighbours_linked() {
        let mut t = IdleTimers::default();
        for k in 0..5 {
            t.set(k, 10, k as u32);
        }
        t.remove(2);
        t.touch(0, 20);
        assert_eq!(expire(&mut t, 14), vec![1, 3, 4]);
        assert_eq!(expire(&mut t, 30), vec![0]);
    }

    #[test]
    fn survives_clock_wrap() {
        let mut t = IdleTimers::default();
        let start = u32::MAX - 5;
        t.set(0, 10, start);
        assert_eq!(expire(&mut t, start.wrapping_add(9)), Vec::<usize>::new());
        assert_eq!(expire(&mut t, start.wrapping_add(10)), vec![0]);
    }
}
