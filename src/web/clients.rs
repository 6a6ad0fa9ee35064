//! The endpoint's clients, as the application sees and answers them: `/ws` WebSockets and
//! socket.io sessions (an Engine.IO session each, on polling or WebSocket), with the framing
//! and the polling outbox that deliver a message to each whatever carries it.

use std::collections::HashMap;
use std::time::Duration;

use super::engineio::{self, PacketType};
use super::http::{Response, Status};
use super::socketio;
use super::websocket::{self, close_code, Opcode};
use crate::context::Context;
use crate::handler::SocketId;
use crate::options::HANG_UP_GRACE;
use crate::write_queue::SharedBytes;

/// One client of the application: a `/ws` WebSocket or a socket.io socket. Carries a
/// generation, so an id kept after the client left never reaches a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    pub(super) index: u32,
    pub(super) generation: u32,
}

/// How a socket.io session currently reaches its client.
#[derive(Debug)]
pub(super) enum SessionTransport {
    /// Long-polling: the GET waiting for output, if any.
    Polling { waiting: Option<SocketId> },
    /// A WebSocket.
    WebSocket(SocketId),
}

/// An Engine.IO session and the socket.io socket on it.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) sid: String,
    pub(super) transport: SessionTransport,
    /// The WebSocket probing an upgrade, until the client's `5`.
    pub(super) probe: Option<SocketId>,
    /// Packets waiting for the next poll, as a polling payload.
    pub(super) outbox: String,
    /// The allowed cross-origin of the session's polls, echoed in CORS headers on every
    /// answer, including those sent later to a held poll.
    pub(super) cors: Option<String>,
    /// Set when the socket.io CONNECT was accepted: the application knows the client.
    pub(super) connected: bool,
    /// When the session must have joined the namespace (socket.io's connect timeout).
    pub(super) connect_by: Duration,
    /// When the next ping is due, or, once sent, when its pong is overdue.
    pub(super) ping_due: Duration,
    pub(super) awaiting_pong: bool,
}

#[derive(Debug)]
pub(super) enum ClientKind {
    /// A `/ws` client on this socket.
    Plain(SocketId),
    /// A socket.io session.
    SocketIo(Box<Session>),
}

#[derive(Debug)]
pub(super) struct Client {
    pub(super) generation: u32,
    pub(super) kind: Option<ClientKind>,
}

/// The endpoint's clients: the application's way to send to them.
#[derive(Debug, Default)]
pub struct WebClients {
    pub(super) slots: Vec<Client>,
    pub(super) free: Vec<u32>,
    /// Session ids to their client.
    pub(super) sids: HashMap<String, ClientId>,
    /// Clients whose close the application has not been told yet (closed from inside one of
    /// its calls), and the reason.
    pub(super) closed: Vec<(ClientId, &'static str, Option<String>)>,
    /// The client whose `on_close` is being delivered, and its session id (it is gone from
    /// the table, but handlers still ask who it was).
    pub(super) departing: Option<(ClientId, Option<String>)>,
    /// The connection being handled.
    pub(super) current: Option<SocketId>,
    pub(super) outbox_limit: usize,
}

impl WebClients {
    pub(super) fn insert(&mut self, kind: ClientKind) -> ClientId {
        match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.kind = Some(kind);
                ClientId { index, generation: slot.generation }
            }
            None => {
                let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 clients");
                self.slots.push(Client { generation: 0, kind: Some(kind) });
                ClientId { index, generation: 0 }
            }
        }
    }

    pub(super) fn get(&self, id: ClientId) -> Option<&ClientKind> {
        let slot = self.slots.get(id.index as usize)?;
        (slot.generation == id.generation).then_some(slot.kind.as_ref()).flatten()
    }

    pub(super) fn get_mut(&mut self, id: ClientId) -> Option<&mut ClientKind> {
        let slot = self.slots.get_mut(id.index as usize)?;
        (slot.generation == id.generation).then_some(slot.kind.as_mut()).flatten()
    }

    pub(super) fn session_mut(&mut self, id: ClientId) -> Option<&mut Session> {
        match self.get_mut(id)? {
            ClientKind::SocketIo(s) => Some(s),
            ClientKind::Plain(_) => None,
        }
    }

    pub(super) fn remove(&mut self, id: ClientId) -> Option<ClientKind> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let kind = slot.kind.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        if let ClientKind::SocketIo(s) = &kind {
            self.sids.remove(&s.sid);
        }
        Some(kind)
    }

    /// Whether `client` is still connected.
    pub fn is_open(&self, client: ClientId) -> bool {
        self.get(client).is_some()
    }

    /// The connection whose bytes are being handled now (the one that made the current
    /// request), e.g. for the peer's address.
    pub fn current_socket(&self) -> Option<SocketId> {
        self.current
    }

    /// Whether `client` is a socket.io session on long-polling now.
    pub fn is_polling(&self, client: ClientId) -> bool {
        matches!(self.get(client), Some(ClientKind::SocketIo(s)) if matches!(s.transport, SessionTransport::Polling { .. }))
    }

    /// Queues already encoded Engine.IO packets for a socket.io client: `packets` is one or
    /// more packets each ending with the record separator (a polling link's output). A polling
    /// session gets them in its next poll (over the outbox limit, the session is closed: the
    /// slow-consumer rule); a session that has upgraded meanwhile gets one frame each.
    pub fn push_packets(&mut self, cx: &mut Context, client: ClientId, packets: &[u8]) {
        let limit = self.outbox_limit;
        let Some(session) = self.session_mut(client) else { return };
        let Ok(text) = std::str::from_utf8(packets) else { return };
        let text = text.strip_suffix(engineio::SEPARATOR).unwrap_or(text);
        if text.is_empty() {
            return;
        }
        match session.transport {
            SessionTransport::WebSocket(socket) => {
                for packet in text.split(engineio::SEPARATOR) {
                    write_frame(cx, socket, Opcode::Text, packet.as_bytes());
                }
            }
            SessionTransport::Polling { ref mut waiting } => {
                if !session.outbox.is_empty() {
                    session.outbox.push(engineio::SEPARATOR);
                }
                session.outbox.push_str(text);
                if let Some(socket) = waiting.take() {
                    let body = std::mem::take(&mut session.outbox);
                    cx.write(socket, &poll_response(Status::Ok, body, session.cors.as_deref()));
                } else if session.outbox.len() > limit {
                    cx.stats_mut().output_limit_disconnects += 1;
                    self.close(cx, client, "transport error", true);
                }
            }
        }
    }

    /// Whether `client` came by socket.io (rather than `/ws`).
    pub fn is_socketio(&self, client: ClientId) -> bool {
        matches!(self.get(client), Some(ClientKind::SocketIo(_)))
    }

    /// The socket.io session id (`socket.id`), for a socket.io client.
    pub fn sid(&self, client: ClientId) -> Option<&str> {
        if let Some((departing, sid)) = &self.departing {
            if *departing == client {
                return sid.as_deref();
            }
        }
        match self.get(client)? {
            ClientKind::SocketIo(s) => Some(&s.sid),
            ClientKind::Plain(_) => None,
        }
    }

    /// The socket carrying `client` now (none for a polling session between polls).
    pub fn socket(&self, client: ClientId) -> Option<SocketId> {
        match self.get(client)? {
            ClientKind::Plain(s) => Some(*s),
            ClientKind::SocketIo(s) => match s.transport {
                SessionTransport::WebSocket(socket) => Some(socket),
                SessionTransport::Polling { waiting } => waiting,
            },
        }
    }

    /// Sends a text message to a `/ws` client (one text frame).
    pub fn send_text(&mut self, cx: &mut Context, client: ClientId, text: &str) {
        if let Some(ClientKind::Plain(socket)) = self.get(client) {
            let socket = *socket;
            write_frame(cx, socket, Opcode::Text, text.as_bytes());
        }
    }

    /// Emits event `name` to a socket.io client; `args_json` is the JSON text of the
    /// arguments after the name, comma-separated (empty for none).
    pub fn emit(&mut self, cx: &mut Context, client: ClientId, name: &str, args_json: &str) {
        self.send_socketio(cx, client, &socketio::event(name, args_json));
    }

    /// Emits event `name` asking the client to acknowledge it with id `id` (answered through
    /// [`WebApp::on_ack`](super::WebApp::on_ack)).
    pub fn emit_with_ack(
        &mut self,
        cx: &mut Context,
        client: ClientId,
        name: &str,
        args_json: &str,
        id: u64,
    ) {
        self.send_socketio(cx, client, &socketio::event_with_ack(name, args_json, id));
    }

    /// Answers the client's event that carried ack id `id`.
    pub fn ack(&mut self, cx: &mut Context, client: ClientId, id: u64, args_json: &str) {
        self.send_socketio(cx, client, &socketio::ack(id, args_json));
    }

    /// Disconnects `client` (socket.io's `socket.disconnect(true)`); the application hears
    /// `on_close` with `server namespace disconnect` once its current call returns.
    pub fn disconnect(&mut self, cx: &mut Context, client: ClientId) {
        if self.is_socketio(client) {
            self.send_socketio(cx, client, "1");
        }
        self.close(cx, client, "server namespace disconnect", true);
    }

    /// Sends one socket.io packet (built once, e.g. with [`super::socketio::event`]) to many
    /// clients: WebSocket recipients share one encoded frame, queued by reference with the
    /// loop's broadcast flow control; polling recipients get it in their outbox.
    pub fn send_packet_to(
        &mut self,
        cx: &mut Context,
        clients: impl IntoIterator<Item = ClientId>,
        packet: &str,
    ) {
        let mut frame: Option<SharedBytes> = None;
        let limit = self.outbox_limit;
        let mut over = Vec::new();
        for client in clients {
            let Some(session) = self.session_mut(client) else { continue };
            if !session.connected {
                continue;
            }
            match session.transport {
                SessionTransport::WebSocket(socket) => {
                    let frame = frame.get_or_insert_with(|| {
                        let mut text = String::with_capacity(packet.len() + 1);
                        text.push(PacketType::Message.digit());
                        text.push_str(packet);
                        SharedBytes::from(websocket::encode(Opcode::Text, text.as_bytes()))
                    });
                    if cx.is_writable(socket) {
                        cx.write_broadcast(socket, frame);
                    }
                }
                SessionTransport::Polling { .. } => {
                    if !send_engineio(cx, session, PacketType::Message, packet, limit) {
                        over.push(client);
                    }
                }
            }
        }
        for client in over {
            self.close(cx, client, "transport error", true);
        }
    }

    pub(super) fn send_socketio(&mut self, cx: &mut Context, client: ClientId, packet: &str) {
        let limit = self.outbox_limit;
        let Some(session) = self.session_mut(client) else { return };
        if !session.connected && !packet.starts_with('0') && !packet.starts_with('4') {
            return;
        }
        if !send_engineio(cx, session, PacketType::Message, packet, limit) {
            self.close(cx, client, "transport error", true);
        }
    }

    /// Ends `client`'s transport and forgets it; its `on_close` is owed to the application.
    pub(super) fn close(&mut self, cx: &mut Context, client: ClientId, reason: &'static str, notify: bool) {
        let Some(kind) = self.remove(client) else { return };
        let sid = match &kind {
            ClientKind::SocketIo(s) => Some(s.sid.clone()),
            ClientKind::Plain(_) => None,
        };
        match kind {
            ClientKind::Plain(socket) => hang_up_ws(cx, socket, close_code::NORMAL, ""),
            ClientKind::SocketIo(session) => {
                match session.transport {
                    SessionTransport::WebSocket(socket) => {
                        hang_up_ws(cx, socket, close_code::NORMAL, "");
                    }
                    SessionTransport::Polling { waiting: Some(socket) } => {
                        let mut body = session.outbox;
                        engineio::push_payload(&mut body, PacketType::Close, "");
                        cx.write(socket, &poll_response(Status::Ok, body, session.cors.as_deref()));
                    }
                    SessionTransport::Polling { waiting: None } => {}
                }
                if let Some(probe) = session.probe {
                    hang_up_ws(cx, probe, close_code::NORMAL, "");
                }
                if !session.connected {
                    return;
                }
            }
        }
        if notify {
            self.closed.push((client, reason, sid));
        }
    }
}

/// Queues one Engine.IO packet to the session's client: a WebSocket frame, the waiting poll's
/// answer, or the outbox. Returns false when the outbox is over its limit.
pub(super) fn send_engineio(
    cx: &mut Context,
    session: &mut Session,
    kind: PacketType,
    data: &str,
    limit: usize,
) -> bool {
    match session.transport {
        SessionTransport::WebSocket(socket) => {
            write_frame(cx, socket, Opcode::Text, engineio::encode(kind, data).as_bytes());
            true
        }
        SessionTransport::Polling { ref mut waiting } => {
            engineio::push_payload(&mut session.outbox, kind, data);
            if let Some(socket) = waiting.take() {
                let body = std::mem::take(&mut session.outbox);
                cx.write(socket, &poll_response(Status::Ok, body, session.cors.as_deref()));
                return true;
            }
            session.outbox.len() <= limit
        }
    }
}

pub(super) fn write_frame(cx: &mut Context, socket: SocketId, opcode: Opcode, payload: &[u8]) {
    if cx.is_writable(socket) {
        cx.write(socket, &websocket::encode(opcode, payload));
    }
}

/// Sends a close frame and gives the peer [`HANG_UP_GRACE`] to answer and close.
pub(super) fn hang_up_ws(cx: &mut Context, socket: SocketId, code: u16, reason: &str) {
    if cx.is_writable(socket) {
        cx.write(socket, &websocket::encode_close(code, reason));
    }
    cx.end_within(socket, HANG_UP_GRACE);
}

/// A polling answer (CORS headers are added by the caller through `origin`).
pub(super) fn poll_response(status: Status, body: String, origin: Option<&str>) -> Vec<u8> {
    let mut r = Response::new(status).header("Content-Type", "text/plain; charset=UTF-8");
    if let Some(origin) = origin {
        r = r
            .header("Access-Control-Allow-Origin", origin)
            .header("Access-Control-Allow-Credentials", "true");
    }
    r.body(body.into_bytes()).into_bytes()
}

/// A fresh session id: 16 random bytes, base64url (22 characters), as unguessable as
/// socket.io's, since it is all a polling request carries.
pub(super) fn new_sid() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `bytes`.
        let n = unsafe { libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
