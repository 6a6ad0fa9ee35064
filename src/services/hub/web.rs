//! The hub for browsers: the web endpoint's clients as hub members. A `/ws` WebSocket carries
//! the hub protocol, one JSON object per text frame each way ([`Framing::WebSocketText`]); a
//! socket.io socket sends hub requests as events (`socket.emit('sync', {clientName})`: the
//! event name is the request's `type`, its object the other fields) and gets every reply and
//! notice as an event named by its `type` ([`Framing::SocketIo`]).
//!
//! A polling session has no socket between polls, so its member is linked to one end of a
//! Unix socket pair ([`Framing::SocketIoPolling`]): the core writes to it like to any
//! socket (flow control included), and what arrives at the other end goes to the session's
//! outbox, bounded by the endpoint's outbox limit. When the session upgrades, the member is
//! relinked to its WebSocket and the pair is retired.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;

use serde_json::{Map, Value};

use super::core::HubCore;
use crate::context::Context;
use crate::frame::Frame;
use crate::handler::SocketId;
use crate::input_budget::InputCut;
use crate::services::member::{Framing, Link, MemberId};
use crate::timers::TimerId;
use crate::web::{ClientId, WebApp, WebClients, WebConfig, WebEndpoint};
use crate::wire::hub::ErrorCode;

/// The socket pair carrying a polling session's output.
#[derive(Debug)]
struct Pair {
    /// The end the member is linked to (the core writes here).
    writer: SocketId,
    /// The end the transport reads.
    reader: SocketId,
    /// A packet cut by a read, until its separator arrives (at most one message).
    partial: Vec<u8>,
    /// Set once the session upgraded: the writer was ended and the pair is on its way out.
    retired: bool,
}

/// One web client in the hub.
#[derive(Debug)]
struct WebMember {
    member: MemberId,
    pair: Option<Pair>,
    /// `auth.token` from the socket.io handshake (`io(url, {auth: {token}})`): a `sync` that
    /// carries no token of its own carries this one.
    token: Option<String>,
}

/// The pair ends, to the client they carry output for.
#[derive(Debug, Default)]
struct Pairs {
    by_socket: HashMap<SocketId, ClientId>,
}

/// The web clients of a hub.
#[derive(Debug)]
pub struct WebTransport {
    endpoint: WebEndpoint,
    members: HashMap<ClientId, WebMember>,
    pairs: Pairs,
}

impl WebTransport {
    /// A transport with no clients.
    pub fn new(config: WebConfig) -> Self {
        WebTransport { endpoint: WebEndpoint::new(config), members: HashMap::new(), pairs: Pairs::default() }
    }

    /// Whether `socket` is this transport's (a web connection or a pair end).
    pub fn owns(&self, socket: SocketId) -> bool {
        self.endpoint.has(socket) || self.pairs.by_socket.contains_key(&socket)
    }

    /// Whether this transport opened `socket` (a pair end).
    pub fn opened(&self, socket: SocketId) -> bool {
        self.pairs.by_socket.contains_key(&socket)
    }

    /// A web listener accepted `socket`.
    pub fn on_connection(&mut self, cx: &mut Context, socket: SocketId) {
        self.endpoint.on_connection(cx, socket);
    }

    /// Bytes from a web connection, or a polling member's output from its pair.
    pub fn on_data(&mut self, cx: &mut Context, core: &mut HubCore, socket: SocketId, data: &[u8]) {
        if let Some(&client) = self.pairs.by_socket.get(&socket) {
            return self.on_pair_data(cx, core, client, socket, data);
        }
        let mut app = HubApp { core, members: &mut self.members, pairs: &mut self.pairs };
        self.endpoint.on_data(cx, &mut app, socket, data);
    }

    /// A polling member's output: complete packets go to its session.
    fn on_pair_data(
        &mut self,
        cx: &mut Context,
        core: &mut HubCore,
        client: ClientId,
        socket: SocketId,
        data: &[u8],
    ) {
        let Some(pair) = self.members.get_mut(&client).and_then(|m| m.pair.as_mut()) else { return };
        if pair.reader != socket {
            return;
        }
        let Some(last) = data.iter().rposition(|&b| b == crate::web::engineio::SEPARATOR as u8) else {
            pair.partial.extend_from_slice(data);
            return;
        };
        let (complete, rest) = data.split_at(last + 1);
        // Most reads end on a separator with nothing held before: no copy then.
        let held = std::mem::take(&mut pair.partial);
        pair.partial.extend_from_slice(rest);
        let mut app = HubApp { core, members: &mut self.members, pairs: &mut self.pairs };
        if held.is_empty() {
            self.endpoint.push_packets(cx, &mut app, client, complete);
        } else {
            let mut packets = held;
            packets.extend_from_slice(complete);
            self.endpoint.push_packets(cx, &mut app, client, &packets);
        }
    }

    /// The peer sent FIN.
    pub fn on_end(&mut self, cx: &mut Context, core: &mut HubCore, socket: SocketId) {
        if let Some(&client) = self.pairs.by_socket.get(&socket) {
            // The writer ended: after an upgrade the pair is done; otherwise the hub hung up on
            // the member, and its session ends too (a waiting poll gets what was left).
            let retired = self.members.get(&client).and_then(|m| m.pair.as_ref()).is_none_or(|p| p.retired);
            cx.destroy(socket);
            if !retired {
                let mut app = HubApp { core, members: &mut self.members, pairs: &mut self.pairs };
                self.endpoint.close_client(cx, &mut app, client, "server namespace disconnect");
            }
            return;
        }
        let mut app = HubApp { core, members: &mut self.members, pairs: &mut self.pairs };
        self.endpoint.on_end(cx, &mut app, socket);
    }

    /// A socket closed.
    pub fn on_close(&mut self, cx: &mut Context, core: &mut HubCore, socket: SocketId) {
        if let Some(client) = self.pairs.by_socket.remove(&socket) {
            // A pair end closed (retired after an upgrade, or failed): both ends go.
            let pair = self
                .members
                .get_mut(&client)
                .and_then(|m| m.pair.take_if(|p| p.writer == socket || p.reader == socket));
            if let Some(pair) = pair {
                self.pairs.by_socket.remove(&pair.writer);
                self.pairs.by_socket.remove(&pair.reader);
                cx.destroy(pair.writer);
                cx.destroy(pair.reader);
            }
            return;
        }
        let mut app = HubApp { core, members: &mut self.members, pairs: &mut self.pairs };
        self.endpoint.on_close(cx, &mut app, socket);
    }

    /// A timer fired: the endpoint's sweep, if it is its.
    pub fn on_timer(&mut self, cx: &mut Context, core: &mut HubCore, timer: TimerId) -> bool {
        let mut app = HubApp { core, members: &mut self.members, pairs: &mut self.pairs };
        self.endpoint.on_timer(cx, &mut app, timer)
    }

    /// The loop cut a web connection for its unfinished input.
    pub fn on_input_cut(&mut self, cx: &mut Context, core: &mut HubCore, socket: SocketId, cut: &InputCut) {
        let mut app = HubApp { core, members: &mut self.members, pairs: &mut self.pairs };
        self.endpoint.on_input_cut(cx, &mut app, socket, cut);
    }

    /// Unfinished input held for `socket`.
    pub fn held_input(&self, socket: SocketId) -> usize {
        self.endpoint.held_input(socket)
    }
}

/// The hub as the endpoint's application, for the length of one event.
struct HubApp<'a> {
    core: &'a mut HubCore,
    members: &'a mut HashMap<ClientId, WebMember>,
    pairs: &'a mut Pairs,
}

impl HubApp<'_> {
    /// A socket pair for a polling session's output; its writer end is the member's link.
    fn open_pair(&mut self, cx: &mut Context, client: ClientId) -> Option<Pair> {
        let (a, b) = UnixStream::pair().ok()?;
        let writer = cx.wrap_unix_stream(a).ok()?;
        let reader = match cx.wrap_unix_stream(b) {
            Ok(r) => r,
            Err(_) => {
                cx.destroy(writer);
                return None;
            }
        };
        self.pairs.by_socket.insert(writer, client);
        self.pairs.by_socket.insert(reader, client);
        Some(Pair { writer, reader, partial: Vec::new(), retired: false })
    }

    fn close_pair(&mut self, cx: &mut Context, pair: Pair) {
        self.pairs.by_socket.remove(&pair.writer);
        self.pairs.by_socket.remove(&pair.reader);
        cx.destroy(pair.writer);
        cx.destroy(pair.reader);
    }

    /// Hands one hub request (a JSON object's text) to the core. One over `--max-frame` (a
    /// socket.io event over polling, whose payload limit is the endpoint's) gets
    /// `frame_too_large` and the member is hung up on, as on the raw port.
    fn request(&mut self, cx: &mut Context, client: ClientId, json: &[u8]) -> bool {
        let Some(m) = self.members.get(&client) else { return false };
        let max = self.core.max_frame();
        if json.len() > max {
            cx.stats_mut().input_limit_disconnects += 1;
            let reason = format!("frame too large (max {max} bytes)");
            self.core.hang_up(cx, m.member, ErrorCode::FrameTooLarge, &reason);
            return false;
        }
        self.core.on_request(cx, m.member, Frame::Json(json))
    }
}

impl WebApp for HubApp<'_> {
    fn on_open(
        &mut self,
        cx: &mut Context,
        web: &mut WebClients,
        client: ClientId,
        auth: Option<&Value>,
    ) -> bool {
        let token = auth.and_then(|a| a.get("token")).and_then(Value::as_str).map(str::to_string);
        let peer = web.current_socket().and_then(|s| cx.remote_address(s));
        let mut pair = None;
        let link = if !web.is_socketio(client) {
            let Some(socket) = web.socket(client) else { return false };
            Link::Socket { socket, framing: Framing::WebSocketText }
        } else if web.is_polling(client) {
            let Some(p) = self.open_pair(cx, client) else { return false };
            let link = Link::Socket { socket: p.writer, framing: Framing::SocketIoPolling };
            pair = Some(p);
            link
        } else {
            let Some(socket) = web.socket(client) else { return false };
            Link::Socket { socket, framing: Framing::SocketIo }
        };
        match self.core.admit(cx, link, peer) {
            Some(member) => {
                self.members.insert(client, WebMember { member, pair, token });
                true
            }
            None => {
                if let Some(p) = pair {
                    self.close_pair(cx, p);
                }
                false
            }
        }
    }

    fn on_text(&mut self, cx: &mut Context, _web: &mut WebClients, client: ClientId, text: &str) {
        self.request(cx, client, text.as_bytes());
    }

    /// `socket.emit(type, fields)`: the request `{"type": type, ...fields}`; a lone value that
    /// is not an object is the request's `message` (`socket.emit('broadcast', 'hi')`).
    fn on_event(
        &mut self,
        cx: &mut Context,
        web: &mut WebClients,
        client: ClientId,
        name: &str,
        args: &[Value],
        ack: Option<u64>,
    ) {
        let mut fields = match args.first() {
            Some(Value::Object(map)) => map.clone(),
            Some(value) => Map::from_iter([("message".to_string(), value.clone())]),
            None => Map::new(),
        };
        fields.insert("type".to_string(), Value::String(name.to_string()));
        if name == "sync" && !fields.contains_key("token") {
            if let Some(token) = self.members.get(&client).and_then(|m| m.token.clone()) {
                fields.insert("token".to_string(), Value::String(token));
            }
        }
        let json = Value::Object(fields).to_string();
        if self.request(cx, client, json.as_bytes()) {
            if let Some(id) = ack {
                // The reply (if any) arrives as its own event; the ack says it was taken, after
                // the reply: over polling it follows the reply through the pair.
                match self.members.get(&client).and_then(|m| m.pair.as_ref()).filter(|p| !p.retired) {
                    Some(pair) => {
                        use crate::web::engineio::{self, PacketType};
                        let mut packet =
                            engineio::encode(PacketType::Message, &crate::web::socketio::ack(id, ""));
                        packet.push(engineio::SEPARATOR);
                        if cx.is_writable(pair.writer) {
                            cx.write(pair.writer, packet.as_bytes());
                        }
                    }
                    None => web.ack(cx, client, id, ""),
                }
            }
        }
    }

    fn on_upgrade(&mut self, cx: &mut Context, web: &mut WebClients, client: ClientId) {
        let Some(socket) = web.socket(client) else { return };
        let Some(m) = self.members.get_mut(&client) else { return };
        self.core.relink(m.member, Link::Socket { socket, framing: Framing::SocketIo });
        // What the core already wrote to the pair still reaches the session (as frames now);
        // the writer's FIN, after it, retires the pair.
        if let Some(pair) = &mut m.pair {
            pair.retired = true;
            cx.end(pair.writer);
        }
    }

    fn on_close(&mut self, cx: &mut Context, _web: &mut WebClients, client: ClientId, _reason: &str) {
        let Some(m) = self.members.remove(&client) else { return };
        self.core.depart(cx, m.member);
        if let Some(pair) = m.pair {
            self.close_pair(cx, pair);
        }
    }
}
