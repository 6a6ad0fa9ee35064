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
use crate::handler::SocketId;
use crate::member_id::MemberId;
use crate::timers::TimerId;

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

    /// Starts the bus's own connections and timers (once, when the service starts).
    fn start(&mut self, cx: &mut Context) {
        let _ = cx;
    }

    /// Whether `socket` is one of the bus's own connections (its service routes that socket's
    /// events here).
    fn owns(&self, socket: SocketId) -> bool {
        let _ = socket;
        false
    }

    /// One of the bus's connections connected.
    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {
        let _ = (cx, socket);
    }

    /// Bytes on one of the bus's connections.
    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        let _ = (cx, socket, data);
    }

    /// One of the bus's connections closed.
    fn on_close(&mut self, cx: &mut Context, socket: SocketId) {
        let _ = (cx, socket);
    }

    /// A timer fired: whether it was the bus's.
    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) -> bool {
        let _ = (cx, timer);
        false
    }

    /// What other nodes sent, and answers to [`Claim::Pending`], for the service to act on
    /// (after each event it routed to the bus).
    fn poll_event(&mut self) -> Option<BusEvent> {
        None
    }

    /// A member of this node is now as `view` says (visible, named, renamed, joined or left a
    /// room), for the other nodes' directories (`list`, counts, names).
    fn member_changed(&mut self, cx: &mut Context, view: &MemberView<'_>) {
        let _ = (cx, view);
    }

    /// A member of this node with this session id left.
    fn member_gone(&mut self, cx: &mut Context, session: &str) {
        let _ = (cx, session);
    }

    /// The other nodes' members, from position `from` on, in a stable order, until `each`
    /// returns false.
    fn members_elsewhere_from(&self, from: usize, each: &mut dyn FnMut(&MemberView<'_>) -> bool) {
        let _ = (from, each);
    }

    /// The bus's counters as `key=value` pairs for the stats log line, if it keeps any.
    fn counters(&self) -> Option<String> {
        None
    }

    /// The process is shutting down: tell the other nodes and give the names back.
    fn leave(&mut self, cx: &mut Context) {
        let _ = cx;
    }
}

/// A member as the other nodes see it.
#[derive(Debug, Clone)]
pub struct MemberView<'a> {
    /// Its session id on its node.
    pub session: &'a str,
    /// Its name, if it registered one.
    pub name: Option<&'a str>,
    /// Its rooms, sorted.
    pub rooms: Vec<&'a str>,
}

/// What a bus tells its service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A message another node's member sent for members here: to every member (`room` and
    /// `to` both `None`), a room's members, or the member holding the name `to`.
    Deliver {
        /// Only this room's members.
        room: Option<String>,
        /// Only the holder of this name.
        to: Option<String>,
        /// Its type (`"broadcast"`, `"online"`, ...).
        kind: String,
        /// The message and its `\n`.
        line: Vec<u8>,
    },
    /// Members of another node are gone without a word from it (it died, stalled, or was
    /// cut off): `(name, session)` of each, for `offline` notices.
    Vanished(Vec<(Option<String>, String)>),
    /// A named member of another node is known again after an absence (its node, or this one,
    /// was cut off): `(name, session)`, for an `online` notice.
    Returned(String, String),
    /// Tell the bus about every member here again ([`Bus::member_changed`]): a node asked.
    Announce,
    /// A [`Claim::Pending`] was granted.
    Granted(MemberId, String),
    /// A [`Claim::Pending`] was refused: another node's member holds the name.
    Refused(MemberId, String),
    /// A name the member held is now another node's (taken while this node was cut off).
    NameLost(MemberId, String),
}
