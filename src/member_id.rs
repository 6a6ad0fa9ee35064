//! The id of a member of a service (chat, hub), whatever transport carries it: what the
//! services, the buses and the transports all name members by, so it sits below all of them.

/// One member of a service, whatever transport carries it. Minted by the service's
/// `Roster`; the generation keeps an id held after the member left from
/// ever reaching a newer member in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl MemberId {
    /// The slot this member occupies in its roster: dense, reused once it leaves.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "member {}.{}", self.index, self.generation)
    }
}
