//! A socket.io-style server API, beside the `net`-style [`crate::Handler`]: a connection
//! handler gets a [`Socket`] that can `emit` to its client, `broadcast` to everyone else, join
//! and leave rooms, emit `to(room)`, answer acknowledgements and disconnect; event and
//! disconnect handlers get the same. It runs on the web endpoint ([`crate::web`]), so socket.io
//! clients connect with polling, WebSocket, or polling then upgrade, as they choose.
//!
//! ```no_run
//! use netloop::socketio::{Ack, Server, Socket, SocketHandler};
//! use netloop::{EventLoop, ServerOptions};
//! use serde_json::{json, Value};
//!
//! struct Chat;
//! impl SocketHandler for Chat {
//!     fn on_connection(&mut self, socket: &mut Socket<'_>) {
//!         socket.emit("message", &[json!({"text": "you are online"})]);
//!     }
//!     fn on_event(&mut self, socket: &mut Socket<'_>, event: &str, args: &[Value], ack: Option<Ack>) {
//!         socket.broadcast().emit(event, args);
//!         if let Some(ack) = ack {
//!             socket.ack(ack, &[json!("ok")]);
//!         }
//!     }
//! }
//!
//! let mut event_loop = EventLoop::new()?;
//! let addr = "127.0.0.1:8081".parse::<netloop::AddressSpec>()?.resolve_one()?;
//! event_loop.context().listen(&addr, ServerOptions::default())?;
//! event_loop.run(&mut Server::new(Chat, Default::default()))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::context::Context;
use crate::handler::{Handler, ServerId, SocketId};
use crate::timers::TimerId;
use crate::web::{ClientId, WebApp, WebClients, WebConfig, WebEndpoint};
use crate::SocketAddress;

/// Rooms one socket may be in at once (its state stays bounded whatever its client asks).
pub const MAX_ROOMS_PER_SOCKET: usize = 64;

/// What the application does on socket.io's events. Every method has an empty default.
#[allow(unused_variables)]
pub trait SocketHandler {
    /// The server is listening on `addr` (`server.listen`'s callback).
    fn on_listening(&mut self, addr: &SocketAddress) {}

    /// `io.on('connection', socket => ...)`.
    fn on_connection(&mut self, socket: &mut Socket<'_>) {}

    /// `socket.on(event, (...args, callback) => ...)`: `ack` is set when the client passed a
    /// callback; answer it with [`Socket::ack`].
    fn on_event(&mut self, socket: &mut Socket<'_>, event: &str, args: &[Value], ack: Option<Ack>) {}

    /// `socket.on('disconnect', reason => ...)`: the socket's last event; it has left its rooms.
    fn on_disconnect(&mut self, socket: &mut Socket<'_>, reason: &str) {}
}

/// The client's callback for one event, answered once with [`Socket::ack`].
#[derive(Debug, PartialEq, Eq)]
pub struct Ack(u64);

/// Rooms and their members.
#[derive(Debug, Default)]
struct Rooms {
    members: HashMap<String, BTreeSet<ClientId>>,
    of: HashMap<ClientId, BTreeSet<String>>,
    /// Connected sockets (those `on_connection` saw), in id order.
    all: BTreeSet<ClientId>,
}

impl Rooms {
    fn join(&mut self, client: ClientId, room: &str) -> bool {
        let mine = self.of.entry(client).or_default();
        if mine.contains(room) {
            return true;
        }
        if mine.len() >= MAX_ROOMS_PER_SOCKET {
            return false;
        }
        mine.insert(room.to_string());
        self.members.entry(room.to_string()).or_default().insert(client);
        true
    }

    fn leave(&mut self, client: ClientId, room: &str) {
        if let Some(mine) = self.of.get_mut(&client) {
            mine.remove(room);
        }
        if let Some(members) = self.members.get_mut(room) {
            members.remove(&client);
            if members.is_empty() {
                self.members.remove(room);
            }
        }
    }

    fn forget(&mut self, client: ClientId) {
        self.all.remove(&client);
        for room in self.of.remove(&client).unwrap_or_default() {
            if let Some(members) = self.members.get_mut(&room) {
                members.remove(&client);
                if members.is_empty() {
                    self.members.remove(&room);
                }
            }
        }
    }
}

/// One connected client, as the handlers see it (socket.io's `socket`).
#[derive(Debug)]
pub struct Socket<'a> {
    cx: &'a mut Context,
    web: &'a mut WebClients,
    rooms: &'a mut Rooms,
    id: ClientId,
}

impl<'a> Socket<'a> {
    /// `socket.id`: the session id.
    pub fn id(&self) -> &str {
        self.web.sid(self.id).unwrap_or("")
    }

    /// The client's handle, to keep and compare across events.
    pub fn client(&self) -> ClientId {
        self.id
    }

    /// `socket.emit(event, ...args)`: to this socket's client only.
    pub fn emit(&mut self, event: &str, args: &[Value]) {
        let args = args_json(args);
        self.web.emit(self.cx, self.id, event, &args);
    }

    /// `socket.broadcast`: to every other connected socket.
    pub fn broadcast(&mut self) -> Emitter<'_, 'a> {
        Emitter { socket: self, rooms: Vec::new(), except_self: true }
    }

    /// `socket.to(room)`: to the sockets in `room`, this one excluded (chain `.to()` for more
    /// rooms).
    pub fn to(&mut self, room: &str) -> Emitter<'_, 'a> {
        Emitter { socket: self, rooms: vec![room.to_string()], except_self: true }
    }

    /// `io.emit` / `io.to(room).emit`: to every connected socket, this one included.
    pub fn everyone(&mut self) -> Emitter<'_, 'a> {
        Emitter { socket: self, rooms: Vec::new(), except_self: false }
    }

    /// `socket.join(room)`. Returns false (and does not join) when the socket is already in
    /// [`MAX_ROOMS_PER_SOCKET`] rooms.
    pub fn join(&mut self, room: &str) -> bool {
        self.rooms.join(self.id, room)
    }

    /// `socket.leave(room)`.
    pub fn leave(&mut self, room: &str) {
        self.rooms.leave(self.id, room);
    }

    /// The rooms this socket is in.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.of.get(&self.id).into_iter().flatten().map(String::as_str)
    }

    /// Answers the client's callback.
    pub fn ack(&mut self, ack: Ack, args: &[Value]) {
        let args = args_json(args);
        self.web.ack(self.cx, self.id, ack.0, &args);
    }

    /// `socket.disconnect(true)`.
    pub fn disconnect(&mut self) {
        self.web.disconnect(self.cx, self.id);
    }

    /// Connected sockets.
    pub fn count(&self) -> usize {
        self.rooms.all.len()
    }

    /// The loop's context (timers, counters).
    pub fn context(&mut self) -> &mut Context {
        self.cx
    }
}

/// A broadcast being aimed (`socket.broadcast`, `socket.to(room)`): finish it with `emit`.
#[derive(Debug)]
pub struct Emitter<'s, 'a> {
    socket: &'s mut Socket<'a>,
    rooms: Vec<String>,
    except_self: bool,
}

impl Emitter<'_, '_> {
    /// Adds a room: the sockets in any of the rooms receive it.
    pub fn to(mut self, room: &str) -> Self {
        self.rooms.push(room.to_string());
        self
    }

    /// Emits to the chosen sockets. The packet is encoded once.
    pub fn emit(self, event: &str, args: &[Value]) {
        let s = self.socket;
        let targets: Vec<ClientId> = if self.rooms.is_empty() {
            s.rooms.all.iter().copied().collect()
        } else {
            let mut set = BTreeSet::new();
            for room in &self.rooms {
                set.extend(s.rooms.members.get(room).into_iter().flatten().copied());
            }
            set.into_iter().collect()
        };
        let packet = crate::web::socketio::event(event, &args_json(args));
        let me = s.id;
        let recipients = targets.into_iter().filter(|&c| !(self.except_self && c == me));
        s.web.send_packet_to(s.cx, recipients, &packet);
    }
}

/// The JSON text of `args`, comma-separated.
fn args_json(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&a.to_string());
    }
    out
}

/// The socket.io layer over the web endpoint's events.
#[derive(Debug)]
struct App<H> {
    handler: H,
    rooms: Rooms,
}

impl<H: SocketHandler> WebApp for App<H> {
    fn on_open(
        &mut self,
        cx: &mut Context,
        web: &mut WebClients,
        client: ClientId,
        _auth: Option<&Value>,
    ) -> bool {
        if !web.is_socketio(client) {
            // `/ws` is the hub's; this server speaks socket.io only.
            return false;
        }
        self.rooms.all.insert(client);
        let mut socket = Socket { cx, web, rooms: &mut self.rooms, id: client };
        self.handler.on_connection(&mut socket);
        true
    }

    fn on_event(
        &mut self,
        cx: &mut Context,
        web: &mut WebClients,
        client: ClientId,
        name: &str,
        args: &[Value],
        ack: Option<u64>,
    ) {
        let mut socket = Socket { cx, web, rooms: &mut self.rooms, id: client };
        self.handler.on_event(&mut socket, name, args, ack.map(Ack));
    }

    fn on_close(&mut self, cx: &mut Context, web: &mut WebClients, client: ClientId, reason: &str) {
        if !self.rooms.all.contains(&client) {
            return;
        }
        self.rooms.forget(client);
        let mut socket = Socket { cx, web, rooms: &mut self.rooms, id: client };
        self.handler.on_disconnect(&mut socket, reason);
    }
}

/// A socket.io server: the web endpoint with `H` handling its sockets, run as the loop's
/// [`Handler`] on the listeners of its [`Context`].
#[derive(Debug)]
pub struct Server<H> {
    endpoint: WebEndpoint,
    app: App<H>,
}

impl<H: SocketHandler> Server<H> {
    /// `new Server(options)`, with `handler` for its events.
    pub fn new(handler: H, config: WebConfig) -> Self {
        Server { endpoint: WebEndpoint::new(config), app: App { handler, rooms: Rooms::default() } }
    }

    /// The handler.
    pub fn handler(&mut self) -> &mut H {
        &mut self.app.handler
    }

    /// Connected sockets.
    pub fn count(&self) -> usize {
        self.app.rooms.all.len()
    }
}

impl<H: SocketHandler> Handler for Server<H> {
    fn on_listening(&mut self, cx: &mut Context, server: ServerId) {
        if let Some(addr) = cx.server_address(server) {
            self.app.handler.on_listening(addr);
        }
    }

    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        self.endpoint.on_connection(cx, socket);
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        self.endpoint.on_data(cx, &mut self.app, socket, data);
    }

    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        self.endpoint.on_end(cx, &mut self.app, socket);
    }

    fn on_close(&mut self, cx: &mut Context, socket: SocketId, _error: Option<&crate::SocketError>) {
        self.endpoint.on_close(cx, &mut self.app, socket);
    }

    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) {
        self.endpoint.on_timer(cx, &mut self.app, timer);
    }

    fn on_input_cut(&mut self, cx: &mut Context, socket: SocketId, cut: &crate::input_budget::InputCut) {
        self.endpoint.on_input_cut(cx, &mut self.app, socket, cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_joined_as_json() {
        assert_eq!(args_json(&[]), "");
        assert_eq!(args_json(&[serde_json::json!({"a": 1}), serde_json::json!("x")]), r#"{"a":1},"x""#);
    }
}
