//! The member table chat and hub share: O(1) join, leave and lookup, iteration in connection
//! order, and the [`MemberId`]s it mints.

use crate::services::member::MemberId;

/// "No slot": end of the connection-order list.
const NIL: u32 = u32::MAX;

/// A service's members, each under a [`MemberId`] the roster mints, kept in connection order.
///
/// Chat's `/who` and hub's `list` report members in the order they connected, and every
/// broadcast walks the members; a join, a leave and a lookup must not scan anyone. So members
/// live in dense slots (a freed slot is reused by the next member) threaded on a doubly linked
/// list: lookup, insert and remove are O(1), iteration is in connection order. Each slot
/// counts its occupants, so a stale id (a member that left) never reaches a newer one.
#[derive(Debug)]
pub struct Roster<T> {
    slots: Vec<Slot<T>>,
    /// Empty slots, reused last-freed first.
    free: Vec<u32>,
    head: u32,
    tail: u32,
    len: usize,
    /// Members ever inserted: each one's generation, unique across slots (until 2^32 joins),
    /// so an id stays stale even after its slot was given back and made again.
    joined: u32,
}

#[derive(Debug)]
struct Slot<T> {
    /// The generation of the member that took the slot last, so old ids miss.
    generation: u32,
    entry: Option<Entry<T>>,
}

#[derive(Debug)]
struct Entry<T> {
    prev: u32,
    next: u32,
    value: T,
}

impl<T> Default for Roster<T> {
    fn default() -> Self {
        Roster { slots: Vec::new(), free: Vec::new(), head: NIL, tail: NIL, len: 0, joined: 0 }
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

    /// Adds a member at the end of the connection order; returns its id.
    pub fn insert(&mut self, value: T) -> MemberId {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 members");
                self.slots.push(Slot { generation: 0, entry: None });
                index
            }
        };
        self.joined = self.joined.wrapping_add(1);
        let slot = &mut self.slots[index as usize];
        slot.generation = self.joined;
        slot.entry = Some(Entry { prev: self.tail, next: NIL, value });
        let id = MemberId { index, generation: slot.generation };
        match self.entry_mut(self.tail) {
            Some(last) => last.next = index,
            None => self.head = index,
        }
        self.tail = index;
        self.len += 1;
        id
    }

    /// The member `id`, if present.
    pub fn get(&self, id: MemberId) -> Option<&T> {
        match self.slots.get(id.index()) {
            Some(Slot { generation, entry: Some(entry) }) if *generation == id.generation => {
                Some(&entry.value)
            }
            _ => None,
        }
    }

    /// The member `id`, mutably, if present.
    pub fn get_mut(&mut self, id: MemberId) -> Option<&mut T> {
        match self.slots.get_mut(id.index()) {
            Some(Slot { generation, entry: Some(entry) }) if *generation == id.generation => {
                Some(&mut entry.value)
            }
            _ => None,
        }
    }

    /// Takes `id` out of the roster, keeping everyone else's order.
    pub fn remove(&mut self, id: MemberId) -> Option<T> {
        self.get(id)?;
        let entry = self.slots[id.index()].entry.take()?;
        match self.entry_mut(entry.prev) {
            Some(p) => p.next = entry.next,
            None => self.head = entry.next,
        }
        match self.entry_mut(entry.next) {
            Some(n) => n.prev = entry.prev,
            None => self.tail = entry.prev,
        }
        self.len -= 1;
        self.free.push(id.index);
        // After a spike, give back the empty tail, as the socket slab does.
        if self.len < self.slots.len() / 4 && self.slots.last().is_some_and(|s| s.entry.is_none()) {
            while self.slots.last().is_some_and(|s| s.entry.is_none()) {
                self.slots.pop();
            }
            let kept = self.slots.len();
            self.free.retain(|&i| (i as usize) < kept);
            self.slots.shrink_to(2 * kept);
            self.free.shrink_to(kept);
        }
        Some(entry.value)
    }

    /// Members in connection order.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { roster: self, at: self.head }
    }

    fn entry_mut(&mut self, at: u32) -> Option<&mut Entry<T>> {
        if at == NIL {
            return None;
        }
        self.slots.get_mut(at as usize).and_then(|s| s.entry.as_mut())
    }
}

/// Iterator over a [`Roster`] in connection order.
#[derive(Debug)]
pub struct Iter<'a, T> {
    roster: &'a Roster<T>,
    at: u32,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = (MemberId, &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == NIL {
            return None;
        }
        let index = self.at;
        let slot = self.roster.slots.get(index as usize)?;
        let entry = slot.entry.as_ref()?;
        self.at = entry.next;
        Some((MemberId { index, generation: slot.generation }, &entry.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(r: &Roster<&'static str>) -> Vec<&'static str> {
        r.iter().map(|(_, v)| *v).collect()
    }

    #[test]
    fn keeps_connection_order_across_removals() {
        let mut r = Roster::new();
        let a = r.insert("a");
        let b = r.insert("b");
        let c = r.insert("c");
        let d = r.insert("d");
        assert_eq!(order(&r), ["a", "b", "c", "d"]);
        assert_eq!(r.remove(c), Some("c"));
        assert_eq!(r.remove(a), Some("a"));
        assert_eq!(order(&r), ["b", "d"]);
        let e = r.insert("e");
        assert_eq!(order(&r), ["b", "d", "e"]);
        assert_eq!(r.remove(e), Some("e"));
        assert_eq!(r.remove(d), Some("d"));
        assert_eq!(r.remove(b), Some("b"));
        assert!(r.is_empty());
        assert_eq!(order(&r), Vec::<&str>::new());
        r.insert("f");
        assert_eq!(order(&r), ["f"]);
    }

    #[test]
    fn stale_ids_miss_and_slots_are_reused() {
        let mut r = Roster::new();
        let old = r.insert("old");
        assert_eq!(r.remove(old), Some("old"));
        let new = r.insert("new");
        assert_eq!(new.index(), old.index(), "the freed slot is reused");
        assert_ne!(new, old);
        assert_eq!(r.get(old), None);
        assert_eq!(r.remove(old), None);
        assert_eq!(r.get(new), Some(&"new"));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn iteration_yields_the_ids_lookups_take() {
        let mut r = Roster::new();
        let ids: Vec<_> = ["a", "b", "c"].into_iter().map(|v| r.insert(v)).collect();
        r.remove(ids[1]);
        for (id, value) in r.iter() {
            assert_eq!(r.get(id), Some(value));
        }
    }

    #[test]
    fn a_spike_gives_its_slots_back() {
        let mut r = Roster::new();
        let ids: Vec<_> = (0..1000).map(|_| r.insert("x")).collect();
        for id in &ids[1..] {
            r.remove(*id);
        }
        assert!(r.slots.len() < 10, "{} slots kept for one member", r.slots.len());
        let again: Vec<_> = (0..10).map(|_| r.insert("y")).collect();
        assert!(ids[1..].iter().all(|id| r.get(*id).is_none()), "ids of slots made again stay stale");
        assert_eq!(r.len(), 11);
        assert!(again.iter().all(|id| r.get(*id) == Some(&"y")));
    }
}
