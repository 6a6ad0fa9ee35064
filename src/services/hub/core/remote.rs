//! The hub's side of its bus: what other nodes sent, delivered to the members here, and what
//! the other nodes must know about the members here.

use std::rc::Rc;

use super::HubCore;
use crate::bus::{BusEvent, Holder, MemberView};
use crate::context::Context;
use crate::handler::SocketId;
use crate::services::member::{self, MemberId, Outgoing};
use crate::wire::hub::{ErrorCode, Reply};
use crate::write_queue::SharedBytes;

impl HubCore {
    /// Starts the bus's connections (a bus across processes has some).
    pub fn start_bus(&mut self, cx: &mut Context) {
        self.bus.start(cx);
    }

    /// The process is shutting down: the other nodes are told, names given back.
    pub fn leave_bus(&mut self, cx: &mut Context) {
        self.bus.leave(cx);
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
                BusEvent::Deliver { room, to, kind, line } => {
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
                        let message = Outgoing::new("offline", &line).with_line(&line);
                        self.router.broadcast(cx, None, &message);
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
                    let message = Outgoing::new("online", &line).with_line(&line);
                    self.router.broadcast(cx, None, &message);
                }
                BusEvent::Announce => {
                    let ids: Vec<MemberId> = self.router.authed().map(|(id, _)| id).collect();
                    for id in ids {
                        self.tell_bus(cx, id);
                    }
                }
                BusEvent::Granted(id, name) => self.name_granted(cx, id, &name),
                BusEvent::Refused(id, name) => self.name_refused(cx, id, &name),
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
