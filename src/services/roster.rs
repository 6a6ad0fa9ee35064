//! The member table chat and hub share: O(1) join, leave and lookup, iteration in connection
//! order.

use crate::handler::SocketId;

/// "No slot": end of the connection-order list.
const NIL: u32 = u32::MAX;

/// Per-connection state of a service, keyed by [`SocketId`] and kept in connection order.
///
/// Chat's `/who` and hub's `list` report members in the order they connected, and every
/// broadcast walks the members; a join, a leave and a lookup must not scan anyone. So the
/// slots are indexed by the loop's dense slab key ([`SocketId::index`]) and threaded on a
/// doubly linked list: lookup, insert and remove are O(1), iteration is in connection
/// order. Each slot remembers the full id, so a stale id (an older socket that had the same
/// key) never reaches a newer member.
#[derive(Debug)]
pub struct Roster<T> {
    slots: Vec<Option<Slot<T>>>,
    head: u32,
    tail: u32,
    len: usize,
}

#[derive(Debug)]
struct Slot<T> {
    id: SocketId,
    prev: u32,
    next: u32,
    value: T,
}

impl<T> Default for Roster<T> {
    fn default() -> Self {
        Roster { slots: Vec::new(), head: NIL, tail: NIL, len: 0 }
    }
}

impl<T> Roster<T> {
    /// An empty roster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Members present.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nobody is present.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `id` at the end of the connection order. A member still held under the same
    /// slot (which the loop never allows for live sockets) is replaced, not leaked.
    pub fn insert(&mut self, id: SocketId, value: T) {
        let index = id.index();
        if let Some(old) = self.slots.get(index).and_then(|s| s.as_ref()).map(|s| s.id) {
            self.remove(old);
        }
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        // Slab keys are u32 in the loop, so the index always fits.
        let me = index as u32;
        self.slots[index] = Some(Slot { id, prev: self.tail, next: NIL, value });
        match self.slot_mut(self.tail) {
            Some(last) => last.next = me,
            None => self.head = me,
        }
        self.tail = me;
        self.len += 1;
    }

    /// The member `id`, if present.
    pub fn get(&self, id: SocketId) -> Option<&T> {
        match self.slots.get(id.index()) {
            Some(Some(slot)) if slot.id == id => Some(&slot.value),
            _ => None,
        }
    }

    /// The member `id`, mutably, if present.
    pub fn get_mut(&mut self, id: SocketId) -> Option<&mut T> {
        match self.slots.get_mut(id.index()) {
            Some(Some(slot)) if slot.id == id => Some(&mut slot.value),
            _ => None,
        }
    }

    /// Takes `id` out of the roster, keeping everyone else's order.
    pub fn remove(&mut self, id: SocketId) -> Option<T> {
        let index = id.index();
        match self.slots.get(index) {
            Some(Some(slot)) if slot.id == id => {}
            _ => return None,
        }
        let slot = self.slots[index].take()?;
        match self.slot_mut(slot.prev) {
            Some(p) => p.next = slot.next,
            None => self.head = slot.next,
        }
        match self.slot_mut(slot.next) {
            Some(n) => n.prev = slot.prev,
            None => self.tail = slot.prev,
        }
        self.len -= 1;
        Some(slot.value)
    }

    /// Members in connection order.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { roster: self, at: self.head }
    }

    fn slot_mut(&mut self, at: u32) -> Option<&mut Slot<T>> {
        if at == NIL {
            return None;
        }
        self.slots.get_mut(at as usize).and_then(Option::as_mut)
    }
}

/// Iterator over a [`Roster`] in connection order.
#[derive(Debug)]
pub struct Iter<'a, T> {
    roster: &'a Roster<T>,
    at: u32,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = (SocketId, &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == NIL {
            return None;
        }
        let slot = self.roster.slots.get(self.at as usize)?.as_ref()?;
        self.at = slot.next;
        Some((slot.id, &slot.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: u32, gen: u32) -> SocketId {
        SocketId { key, gen }
    }

    fn order(r: &Roster<&'static str>) -> Vec<&'static str> {
        r.iter().map(|(_, v)| *v).collect()
    }

    #[test]
    fn keeps_connection_order_across_removals() {
        let mut r = Roster::new();
        r.insert(id(5, 1), "a");
        r.insert(id(2, 2), "b");
        r.insert(id(9, 3), "c");
        r.insert(id(0, 4), "d");
        assert_eq!(order(&r), ["a", "b", "c", "d"]);
        assert_eq!(r.remove(id(9, 3)), Some("c"));
        assert_eq!(r.remove(id(5, 1)), Some("a"));
        assert_eq!(order(&r), ["b", "d"]);
        r.insert(id(5, 7), "e");
        assert_eq!(order(&r), ["b", "d", "e"]);
        assert_eq!(r.remove(id(5, 7)), Some("e"));
        assert_eq!(r.remove(id(0, 4)), Some("d"));
        assert_eq!(r.remove(id(2, 2)), Some("b"));
        assert!(r.is_empty());
        assert_eq!(order(&r), Vec::<&str>::new());
        r.insert(id(1, 8), "f");
        assert_eq!(order(&r), ["f"]);
    }

    #[test]
    fn stale_ids_miss() {
        let mut r = Roster::new();
        r.insert(id(3, 1), "old");
        assert_eq!(r.get(id(3, 2)), None);
        assert_eq!(r.remove(id(3, 2)), None);
        r.insert(id(3, 2), "new");
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(id(3, 1)), None);
        assert_eq!(r.get(id(3, 2)), Some(&"new"));
    }
}
