//! Chat's side of its bus: lines from the other nodes' members delivered to the room here,
//! and what the other nodes must know of the members here (their names, for `/who` and the
//! `online now` count).

use std::collections::{HashMap, VecDeque};

use super::{send_to_room, Chat, MESSAGE};
use crate::bus::{Audience, BusEvent, MemberView, Published};
use crate::context::Context;
use crate::handler::SocketId;
use crate::services::member::{self, MemberId, Outgoing};
use crate::services::presence::{self, Change};
use crate::wire::chat as wire;

/// How the other nodes tell this node's members apart: the member id, unique here.
pub(super) fn session_of(id: MemberId) -> String {
    id.to_string()
}

/// Lines held per member while the bus decides a nick: what a client sends after `/nick` is
/// handled after the answer, as on a single node (the next line comes from the new nick). The
/// member's socket is paused meanwhile, so what is held is at most what one read brought.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    held: HashMap<SocketId, VecDeque<Vec<u8>>>,
}

impl Deferred {
    /// Holds `line` if the member on `socket` is waiting for a nick; returns whether it did.
    pub(super) fn hold(&mut self, socket: SocketId, line: &[u8]) -> bool {
        let Some(queue) = self.held.get_mut(&socket) else { return false };
        queue.push_back(line.to_vec());
        true
    }

    /// The member left: what it had sent is dropped.
    pub(super) fn forget(&mut self, socket: SocketId) {
        self.held.remove(&socket);
    }
}

impl Chat {
    /// The bus answers the member's `/nick` later: hold its next lines until then, and stop
    /// reading it.
    pub(super) fn defer_until_named(&mut self, cx: &mut Context, socket: SocketId) {
        self.deferred.held.entry(socket).or_default();
        cx.pause(socket);
    }

    /// The bus answered member `id`'s `/nick`: its held lines are handled in order (one may be
    /// another `/nick`, which holds the rest again), then it is read again.
    fn replay(&mut self, cx: &mut Context, id: MemberId) {
        let Some(socket) = self.members.roster.get(id).and_then(|m| m.link.socket()) else { return };
        let Some(mut queue) = self.deferred.held.remove(&socket) else { return };
        while let Some(line) = queue.pop_front() {
            if let Some(again) = self.deferred.held.get_mut(&socket) {
                again.push_back(line);
                continue;
            }
            if !(cx.is_open(socket) && self.on_line(cx, socket, &line)) {
                return;
            }
        }
        if !self.deferred.held.contains_key(&socket) && cx.is_open(socket) {
            cx.resume(socket);
        }
    }

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

    /// The other nodes' rooms hear the join or leave notice in `notice` too (already coalesced
    /// here, so a storm costs them what it costs this node's members).
    pub(super) fn publish_notice(&mut self, cx: &mut Context) {
        let published = Published { audience: Audience::Everyone, kind: MESSAGE, line: &self.notice };
        self.bus.publish(cx, &published);
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

    /// Members of another node are gone without a word (it died, stalled or was cut off):
    /// the room here hears they left, which their node can no longer say. Told to this node's
    /// members only: every node hears of it from its own bus. Many at once make one summary.
    fn tell_vanished(&mut self, cx: &mut Context, members: Vec<(Option<String>, String)>) {
        let names: Vec<String> = members.into_iter().map(|(name, session)| name.unwrap_or(session)).collect();
        if names.is_empty() {
            return;
        }
        let online = self.in_room + self.bus.members_elsewhere();
        let mut notice = Vec::new();
        if names.len() <= presence::BURST {
            for name in &names {
                presence::write_single(&mut notice, Change::Left, name, online);
            }
        } else {
            let none = wire::Names { shown: &[], count: 0 };
            let shown = &names[..names.len().min(presence::SHOWN)];
            wire::write_summary(&mut notice, none, wire::Names { shown, count: names.len() }, online);
        }
        send_to_room(&self.members.roster, cx, &notice, None);
    }

    /// Acts on what the bus has for the members here.
    pub(super) fn bus_events(&mut self, cx: &mut Context) {
        while let Some(event) = self.bus.poll_event() {
            match event {
                // Chat has no rooms and no directed lines: everything is for the room.
                BusEvent::Deliver { room: None, to: None, line, .. } => {
                    send_to_room(&self.members.roster, cx, &line, None);
                }
                BusEvent::Vanished(members) => self.tell_vanished(cx, members),
                BusEvent::Returned(name, _) => {
                    // Its node is heard from again: the room here hears it is back.
                    let mut notice = Vec::new();
                    let online = self.in_room + self.bus.members_elsewhere();
                    presence::write_single(&mut notice, Change::Joined, &name, online);
                    send_to_room(&self.members.roster, cx, &notice, None);
                }
                BusEvent::Deliver { .. } => {}
                BusEvent::Announce => {
                    let ids: Vec<MemberId> = self.members.roster.iter().map(|(id, _)| id).collect();
                    for id in ids {
                        self.tell_bus(cx, id);
                    }
                }
                BusEvent::Granted(id, name) => {
                    self.nick_granted(cx, id, &name);
                    self.replay(cx, id);
                }
                BusEvent::Refused(id, name) => {
                    self.nick_refused(cx, id, &name);
                    self.replay(cx, id);
                }
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
