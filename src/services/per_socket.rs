//! A table keyed by socket: O(1) by the loop's dense slot index, stale ids missing.

use crate::handler::SocketId;

/// Values per open socket, indexed by [`SocketId::index`]. Each slot keeps the full id, so an
/// older socket that had the same slot never reaches the newer one's value. As long as the
/// highest slot in use, and given back as the loop's socket slab empties.
#[derive(Debug)]
pub struct PerSocket<T> {
    slots: Vec<Option<(SocketId, T)>>,
}

impl<T> Default for PerSocket<T> {
    fn default() -> Self {
        PerSocket { slots: Vec::new() }
    }
}

impl<T> PerSocket<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the value of `socket`, replacing any held for its slot.
    pub fn insert(&mut self, socket: SocketId, value: T) {
        let index = socket.index();
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some((socket, value));
    }

    /// The value of `socket`, if it has one.
    pub fn get(&self, socket: SocketId) -> Option<&T> {
        match self.slots.get(socket.index()) {
            Some(Some((id, value))) if *id == socket => Some(value),
            _ => None,
        }
    }

    /// The value of `socket`, mutably.
    pub fn get_mut(&mut self, socket: SocketId) -> Option<&mut T> {
        match self.slots.get_mut(socket.index()) {
            Some(Some((id, value))) if *id == socket => Some(value),
            _ => None,
        }
    }

    /// Takes the value of `socket` out.
    pub fn remove(&mut self, socket: SocketId) -> Option<T> {
        let slot = self.slots.get_mut(socket.index())?;
        if !matches!(slot, Some((id, _)) if *id == socket) {
            return None;
        }
        let (_, value) = slot.take()?;
        // After a burst the slots freed last leave empty ones at the tail: give them back.
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        if self.slots.capacity() > 1024 && self.slots.capacity() > 4 * self.slots.len() {
            self.slots.shrink_to(2 * self.slots.len());
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_miss_and_the_tail_is_given_back() {
        let mut t = PerSocket::new();
        let old = SocketId { key: 3, gen: 1 };
        let new = SocketId { key: 3, gen: 2 };
        t.insert(old, "old");
        assert_eq!(t.get(new), None);
        assert_eq!(t.remove(new), None);
        t.insert(new, "new");
        assert_eq!(t.get(old), None);
        assert_eq!(t.get_mut(new).map(|v| *v), Some("new"));
        assert_eq!(t.remove(new), Some("new"));
        assert!(t.slots.is_empty());
    }
}
