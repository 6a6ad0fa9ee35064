//! Chat's side of its bus: lines from the other nodes' members delivered to the room here,
//! and what the other nodes must know of the members here (their names, for `/who` and the
//! `online now` count).

use super::{send_to_room, Chat};
use crate::bus::{BusEvent, MemberView};
use crate::context::Context;
use crate::services::member::{self, MemberId, Outgoing};
use crate::wire::chat as wire;

/// How the other nodes tell this node's members apart: the member id, unique here.
pub(super) fn session_of(id: MemberId) -> String {
    id.to_string()
}

impl Chat {
    /// Tells the bus about member `id` (in the room, with its name now).
    pub(super) fn tell_bus(&mut self, cx: &mut Context, id: MemberId) {
        let Some(m) = self.members.roster.get(id) else { return };
        if !m.in_room {
            return;
        }
        let session = session_of(id);
        let view = MemberView { session: &session, name: Some(&m.name), rooms: Vec::new() };
        self.bus.member_changed(cx, &view);
    }

    /// The names of the other nodes' members, for `/who`.
    pub(super) fn names_elsewhere(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.bus.members_elsewhere());
        self.bus.members_elsewhere_from(0, &mut |m| {
            names.push(m.name.unwrap_or(m.session).to_string());
            true
        });
        names
    }

    /// Acts on what the bus has for the members here.
    pub(super) fn bus_events(&mut self, cx: &mut Context) {
        while let Some(event) = self.bus.poll_event() {
            match event {
                // Chat has no rooms and no directed lines: everything is for the room.
                BusEvent::Deliver { room: None, to: None, line, .. } => {
                    send_to_room(&self.members.roster, cx, &line, None);
                }
                BusEvent::Deliver { .. } | BusEvent::Vanished(_) | BusEvent::Returned(..) => {}
                BusEvent::Announce => {
                    let ids: Vec<MemberId> = self.members.roster.iter().map(|(id, _)| id).collect();
                    for id in ids {
                        self.tell_bus(cx, id);
                    }
                }
                BusEvent::Granted(id, name) => self.nick_granted(cx, id, &name),
                BusEvent::Refused(id, name) => self.nick_refused(cx, id, &name),
                BusEvent::NameLost(id, name) => {
                    // Taken on another node while this one was cut off: the member is told and
                    // hung up on, rather than two members answering to one nick.
                    let Some(link) = self.members.roster.get(id).map(|m| m.link) else { continue };
                    wire::write_name_taken(&mut self.out, &name);
                    member::send(cx, link, &Outgoing::new(super::NOTICE, &self.out));
                    if let Some(socket) = link.socket() {
                        self.hang_up(cx, socket, b"");
                    }
                }
            }
        }
    }
}
