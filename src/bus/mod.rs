//! The delivery bus: what a service's members share beyond this process.
//!
//! A service keeps its own members (and delivers to them through their links); everything
//! that must hold for the whole community goes through its [`Bus`]: who holds a name, what
//! the other nodes' members must hear (broadcasts, room broadcasts, a directed message to a
//! name held elsewhere, presence) and how many members are elsewhere. [`LocalBus`] is the
//! bus of a service alone in its process: it holds the name table, and there is nobody else
//! to tell. A bus that spans processes implements the same trait, so the services do not
//! change when one is plugged in.

mod local;

pub use local::LocalBus;

use crate::context::Context;
use crate::services::member::MemberId;

/// The answer to [`Bus::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The name is the member's now (or already was).
    Granted,
    /// Another member holds it.
    Taken,
    /// The bus asked elsewhere; the answer comes later, from the bus.
    Pending,
}

/// Who holds a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A member of this service, in this process.
    Local(MemberId),
    /// A member of another node.
    Remote,
}

/// Who a published message is for, beyond this process's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    /// Every member.
    Everyone,
    /// The members of a room.
    Room(&'a str),
    /// The member holding a name.
    Name(&'a str),
}

/// A message for the members of other nodes: already encoded, as a line (see
/// [`crate::services::member::Outgoing`]), with its type.
#[derive(Debug, Clone, Copy)]
pub struct Published<'a> {
    /// Who it is for.
    pub audience: Audience<'a>,
    /// The name of the member it is from, so a node never sends it back to its sender.
    pub from: Option<&'a str>,
    /// Its type (`"broadcast"`, `"online"`, ...).
    pub kind: &'a str,
    /// The message and its `\n`.
    pub line: &'a [u8],
}

/// What members share beyond this process: names, cross-node delivery, counts.
pub trait Bus: std::fmt::Debug {
    /// Claims `name` for local `member`, which may hold another name it keeps until it
    /// [`Bus::release`]s it.
    fn claim(&mut self, cx: &mut Context, member: MemberId, name: &str) -> Claim;

    /// Gives back a name `member` held (it renamed or left).
    fn release(&mut self, cx: &mut Context, member: MemberId, name: &str);

    /// Who holds `name`, if anyone.
    fn holder(&self, name: &str) -> Option<Holder>;

    /// Sends `message` to the members of other nodes it is for. This process's members are
    /// the service's to reach.
    fn publish(&mut self, cx: &mut Context, message: &Published<'_>);

    /// Members of other nodes, for counts.
    fn members_elsewhere(&self) -> usize;
}
