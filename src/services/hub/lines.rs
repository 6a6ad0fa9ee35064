//! The hub over raw TCP and Unix sockets: JSON objects back to back or one per line in, one
//! compact object per line out ([`Link::line`]). Each socket is one member; a browser that
//! reaches this port by mistake is answered in HTTP and hung up on.

use super::core::HubCore;
use crate::context::Context;
use crate::frame::FrameDecoder;
use crate::handler::SocketId;
use crate::services::http_probe;
use crate::services::member::{self, Link, MemberId};
use crate::services::per_socket::PerSocket;
use crate::services::HANG_UP_GRACE;
use crate::wire::hub::ErrorCode;

/// One connection: its member and its unfinished frame.
#[derive(Debug)]
struct Peer {
    member: MemberId,
    frames: FrameDecoder,
}

/// The raw-socket members of a hub.
#[derive(Debug, Default)]
pub struct LineTransport {
    peers: PerSocket<Peer>,
}

impl LineTransport {
    /// A connection was accepted: it becomes a member, unless the hub refuses it.
    pub fn on_connection(&mut self, cx: &mut Context, core: &mut HubCore, socket: SocketId) {
        let peer = cx.remote_address(socket);
        if let Some(member) = core.admit(cx, Link::line(socket), peer) {
            self.peers.insert(socket, Peer { member, frames: FrameDecoder::new(core.max_frame()) });
        }
    }

    /// Bytes arrived: cut them into frames and hand each to the hub, in order.
    pub fn on_data(&mut self, cx: &mut Context, core: &mut HubCore, socket: SocketId, data: &[u8]) {
        let Some(peer) = self.peers.get_mut(socket) else { return };
        if !core.is_member(peer.member) {
            // Hung up on (deadline, token): what it still sends is dropped, with its buffer.
            self.peers.remove(socket);
            return;
        }
        let member = peer.member;
        // A browser pointed at the hub: answered in HTTP, then hung up on.
        if cx.bytes_read(socket) == data.len() as u64 && http_probe::starts_with_request(data) {
            let local = cx.local_address(socket);
            let reply = http_probe::refusal(http_probe::Port::Hub, data, local.as_ref());
            if cx.is_writable(socket) {
                cx.write(socket, &reply);
            }
            member::hang_up(cx, Link::line(socket), HANG_UP_GRACE);
            self.peers.remove(socket);
            return core.depart(cx, member);
        }
        let mut present = true;
        let result = peer.frames.feed(data, |frame| {
            // Stop at once if handling made it leave, or the core destroyed it (output limit).
            if present {
                present = cx.is_open(socket) && core.on_request(cx, member, frame);
            }
        });
        if !present {
            // Hung up on by the hub: nothing of it is kept. Destroyed by the loop (its output
            // limit) while its requests were handled: it stays until its close event, which
            // is when it departs.
            if !core.is_member(member) {
                self.peers.remove(socket);
            }
            return;
        }
        if let Err(too_large) = result {
            cx.stats_mut().input_limit_disconnects += 1;
            self.peers.remove(socket);
            core.hang_up(cx, member, ErrorCode::FrameTooLarge, &too_large.to_string());
        }
    }

    /// The socket is gone, or hung up on: its member, if it still had one.
    pub fn detach(&mut self, socket: SocketId) -> Option<MemberId> {
        self.peers.remove(socket).map(|p| p.member)
    }

    /// Bytes of an unfinished frame held for `socket`.
    pub fn held_input(&self, core: &HubCore, socket: SocketId) -> usize {
        match self.peers.get(socket) {
            Some(peer) if core.is_member(peer.member) => peer.frames.buffered(),
            _ => 0,
        }
    }
}
