//! The hub's side of its bus: what other nodes sent, delivered to the members here, and what
//! the other nodes must know about the members here.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use super::super::presence::Mark;
use super::HubCore;
use crate::bus::{BusEvent, Holder, MemberView};
use crate::context::Context;
use crate::frame::Frame;
use crate::handler::SocketId;
use crate::services::member::{self, MemberId, Outgoing};
use crate::wire::hub::{ErrorCode, Reply};
use crate::write_queue::SharedBytes;

/// The subject of presence notices about other nodes' members: no member here.
const ELSEWHERE: MemberId = MemberId { index: u32::MAX, generation: u32::MAX };

/// A request held while its member's `sync` is decided.
#[derive(Debug)]
enum HeldFrame {
    Json(Vec<u8>),
    Malformed,
    TooDeep,
}

/// What the hub keeps for its bus.
#[derive(Debug, Default)]
pub(super) struct Remote {
    /// Requests held per member while the bus decides a name: what a client sends after a
    /// `sync` is handled after its answer, as on a single node (a `broadcast` right after
    /// `sync` comes from the new name). The member's socket is paused meanwhile, so what is
    /// held is at most what one read had already brought.
    held: HashMap<MemberId, VecDeque<HeldFrame>>,
    /// The other nodes' members as one subject of presence notices: their `online`/`offline`
    /// go through this node's presence window like local ones, and whether the window holds
    /// one of their `online`s is read from this mark.
    presence: Mark,
}

impl Remote {
    /// Holds `frame` if `member` is waiting for a name; returns whether it did.
    pub(super) fn hold(&mut self, member: MemberId, frame: &Frame<'_>) -> bool {
        let Some(queue) = self.held.get_mut(&member) else { return false };
        queue.push_back(match frame {
            Frame::Json(bytes) => HeldFrame::Json(bytes.to_vec()),
            Frame::Malformed => HeldFrame::Malformed,
            Frame::TooDeep => HeldFrame::TooDeep,
        });
        true
    }

    /// The member left: what it had sent is dropped.
    pub(super) fn forget(&mut self, member: MemberId) {
        self.held.remove(&member);
    }
}

impl HubCore {
    /// The bus will answer `id`'s `sync` later: hold its next requests until then, and stop
    /// reading it.
    pub(super) fn defer_until_named(&mut self, cx: &mut Context, id: MemberId) {
        self.remote.held.entry(id).or_default();
        if let Some(socket) = self.router.members.get(id).and_then(|m| m.link.socket()) {
            cx.pause(socket);
        }
    }

    /// The bus answered `id`'s `sync`: its held requests are handled in order (one may be
    /// another `sync`, which holds the rest again), then it is read again.
    fn replay(&mut self, cx: &mut Context, id: MemberId) {
        let Some(mut queue) = self.remote.held.remove(&id) else { return };
        while let Some(held) = queue.pop_front() {
            if self.remote.held.contains_key(&id) {
                // Waiting again: the rest waits behind the new `sync`.
                self.remote.held.get_mut(&id).unwrap().push_back(held);
                continue;
            }
            let frame = match &held {
                HeldFrame::Json(bytes) => Frame::Json(bytes),
                HeldFrame::Malformed => Frame::Malformed,
                HeldFrame::TooDeep => Frame::TooDeep,
            };
            if !self.on_request(cx, id, frame) {
                return;
            }
        }
        if self.remote.held.contains_key(&id) {
            return;
        }
        if let Some(socket) = self.router.members.get(id).and_then(|m| m.link.socket()) {
            if cx.is_open(socket) {
                cx.resume(socket);
            }
        }
    }

    /// Starts the bus's connections (a bus across processes has some).
    pub fn start_bus(&mut self, cx: &mut Context) {
        self.bus.start(cx);
    }

    /// The process is shutting down: the other nodes are told, names given back.
    pub fn leave_bus(&mut self, cx: &mut Context) {
        self.bus.leave(cx);
    }

    /// An `online`/`offline` about another node's member: coalesced in this node's presence
    /// window like a local one, so a storm of joins elsewhere costs the members here a summary
    /// per window, not a line per join.
    fn notice_from_elsewhere(&mut self, cx: &mut Context, online: bool, line: SharedBytes) {
        let kind = if online { "online" } else { "offline" };
        if self.presence.event(cx, ELSEWHERE, &mut self.remote.presence, online, kind, &line) {
            self.router.broadcast(cx, None, &Outgoing::new(kind, &line).with_line(&line));
        }
    }

    /// The bus's counters for the stats log line, if it keeps any.
    pub fn bus_counters(&self) -> Option<String> {
        self.bus.counters()
    }

    /// Whether `socket` is one of the bus's own connections.
    pub fn bus_owns(&self, socket: SocketId) -> bool {
        self.bus.owns(socket)
    }

    /// A bus connection connected.
    pub fn bus_connected(&mut self, cx: &mut Context, socket: SocketId) {
        self.bus.on_connect(cx, socket);
        self.bus_events(cx);
    }

    /// Bytes on a bus connection.
    pub fn bus_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        self.bus.on_data(cx, socket, data);
        self.bus_events(cx);
    }

    /// A bus connection closed.
    pub fn bus_closed(&mut self, cx: &mut Context, socket: SocketId) {
        self.bus.on_close(cx, socket);
        self.bus_events(cx);
    }

    /// Tells the bus how member `id` looks now (for the other nodes' `list`, counts, names).
    pub(super) fn tell_bus(&mut self, cx: &mut Context, id: MemberId) {
        let Some(m) = self.router.members.get(id) else { return };
        if !m.authed {
            return;
        }
        let view = MemberView {
            session: &m.session_id,
            name: m.name.as_deref(),
            rooms: m.rooms.iter().map(String::as_str).collect(),
        };
        self.bus.member_changed(cx, &view);
    }

    /// Acts on what the bus has for the members here.
    pub(super) fn bus_events(&mut self, cx: &mut Context) {
        while let Some(event) = self.bus.poll_event() {
            match event {
                BusEvent::Deliver { room: None, to: None, kind, line }
                    if kind == "online" || kind == "offline" =>
                {
                    self.notice_from_elsewhere(cx, kind == "online", Rc::from(&line[..]));
                }
                BusEvent::Deliver { room, to, kind, line } => {
                    // Nobody hears from a member before hearing it is online.
                    if self.presence.holds_own(&self.remote.presence) {
                        self.presence.flush_now(cx, self.router.marks());
                    }
                    let message = Outgoing::new(&kind, &line);
                    match (to, room) {
                        (Some(to), _) => {
                            let Some(Holder::Local(id)) = self.bus.holder(&to) else { continue };
                            if let Some(m) = self.router.members.get(id) {
                                member::send(cx, m.link, &message);
                            }
                        }
                        (None, Some(room)) => self.router.broadcast_room(cx, &room, None, &message),
                        (None, None) => self.router.broadcast(cx, None, &message),
                    }
                }
                BusEvent::Vanished(members) => {
                    // Their node cannot say it: this node tells its members they are offline.
                    for (name, session) in members {
                        let Some(name) = name else { continue };
                        let notice = Reply::Offline {
                            client_name: name.as_str().into(),
                            session_id: session.as_str().into(),
                        };
                        notice.encode(&mut self.out);
                        let line: SharedBytes = Rc::from(&self.out[..]);
                        self.notice_from_elsewhere(cx, false, line);
                    }
                }
                BusEvent::Returned(name, session) => {
                    let notice = Reply::Online {
                        client_name: name.as_str().into(),
                        session_id: session.as_str().into(),
                        previous: None,
                    };
                    notice.encode(&mut self.out);
                    let line: SharedBytes = Rc::from(&self.out[..]);
                    self.notice_from_elsewhere(cx, true, line);
                }
                BusEvent::Announce => {
                    let ids: Vec<MemberId> = self.router.authed().map(|(id, _)| id).collect();
                    for id in ids {
                        self.tell_bus(cx, id);
                    }
                }
                BusEvent::Granted(id, name) => {
                    self.name_granted(cx, id, &name);
                    self.replay(cx, id);
                }
                BusEvent::Refused(id, name) => {
                    self.name_refused(cx, id, &name);
                    self.replay(cx, id);
                }
                BusEvent::NameLost(id, name) => {
                    if self.router.members.get(id).is_some_and(|m| m.name.as_deref() == Some(&name)) {
                        let reason = format!(
                            "name {name} was taken on another node while this one was cut off from the cluster"
                        );
                        self.hang_up(cx, id, ErrorCode::NameTaken, &reason);
                    }
                }
            }
        }
    }
}
