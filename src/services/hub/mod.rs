//! Hub: named clients exchanging JSON messages, with rooms (socket.io's everyday feature).
//! Clients send JSON objects back to back or one per line; the server writes one compact JSON
//! object per line. The messages are defined in [`crate::wire::hub`]; the wire format is in
//! `docs/protocol.md`.
//!
//! The hub never re-encodes a client's `message`: the frame is validated by serde_json as a
//! borrowed raw value, and `message` is relayed as the exact bytes the client sent. Every
//! message that goes to several clients is encoded once, framed once per transport kind, and
//! queued to each by reference. A client that stops reading costs at most the listener's
//! `max_buffer` of queued output before the core disconnects it.
//!
//! [`HubCore`] is the hub itself (members, names, rooms, requests, replies), apart from any
//! transport; `lines` carries members over raw TCP and Unix sockets. Names and cross-node
//! delivery go through a [`Bus`].

mod auth;
mod core;
mod lines;
mod presence;
#[cfg(feature = "web")]
mod web;

use std::time::Duration;

use crate::bus::{Bus, LocalBus};
use crate::context::Context;
use crate::handler::{ServerId, SocketId};
use crate::input_budget::InputCut;
use crate::timers::TimerId;
use crate::wire::hub::ErrorCode;

pub use self::core::HubCore;
pub use crate::wire::hub::MAX_LIST_LIMIT;

pub use auth::{
    BLOCK_FOR as AUTH_BLOCK_FOR, FAILURES_ALLOWED as AUTH_FAILURES_ALLOWED, MAX_SOURCES as AUTH_MAX_SOURCES,
};
pub use presence::{MAX_NOTICES as PRESENCE_MAX_NOTICES, PRESENCE_WINDOW};

use lines::LineTransport;

/// Default longest accepted frame in bytes (`--max-frame`).
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// Rooms one client may be in at once: hub state per client stays bounded even for a client
/// that reads its replies (names and rooms are at most 64 bytes each).
pub const MAX_ROOMS_PER_CLIENT: usize = 64;

/// Clients a `list` page holds unless the request asks for fewer (or more, up to
/// [`MAX_LIST_LIMIT`]).
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// A `list` page stops at the first client that starts beyond this many bytes, so one 16-byte
/// request never costs more than about this much output and work (the last client on a page
/// adds at most ~9 KiB: a 64-byte name and 64 rooms of 64 bytes).
pub const MAX_LIST_BYTES: usize = 64 * 1024;

/// What `netloop serve` lets the user tune about the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Longest frame accepted; a longer one gets `frame_too_large` and the connection is
    /// closed, so a peer can never make us buffer more than this per connection.
    pub max_frame: usize,
    /// When set, a connection's first frame must be a `sync` carrying `"token": SECRET`
    /// (`--hub-token`); until then it is invisible to the others.
    pub token: Option<String>,
    /// A connection that has sent no valid request (`sync`, `join`, `list`, ...) this long
    /// after connecting is closed with `register_timeout` (`--register-timeout`; slowloris defence, like
    /// nginx's preread timeout). `None` disables it.
    pub register_timeout: Option<Duration>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_frame: DEFAULT_MAX_FRAME,
            token: None,
            register_timeout: Some(Duration::from_secs(10)),
        }
    }
}

/// The hub service: the core, and the transports its members come through.
#[derive(Debug)]
pub struct Hub {
    core: HubCore,
    lines: LineTransport,
    /// Browsers: the web transport, once a web listener was added, and its listeners.
    #[cfg(feature = "web")]
    web: Option<web::WebTransport>,
    #[cfg(feature = "web")]
    web_servers: Vec<ServerId>,
}

impl Hub {
    /// A hub alone in its process, with no clients yet.
    pub fn new(config: HubConfig) -> Self {
        Hub::with_bus(config, Box::new(LocalBus::new()))
    }

    /// A hub sharing names and delivery through `bus`.
    pub fn with_bus(config: HubConfig, bus: Box<dyn Bus>) -> Self {
        Hub {
            core: HubCore::new(config, bus),
            lines: LineTransport::default(),
            #[cfg(feature = "web")]
            web: None,
            #[cfg(feature = "web")]
            web_servers: Vec::new(),
        }
    }

    /// Clients currently in the hub here (authenticated or not).
    pub fn connected(&self) -> usize {
        self.core.members()
    }
}

impl super::Service for Hub {
    fn name(&self) -> &'static str {
        "hub"
    }

    fn refusal(&self, max: usize) -> Vec<u8> {
        let mut line = Vec::new();
        crate::wire::hub::write_server_full(&mut line, max);
        line
    }

    // Drain needs nothing: hub never pauses a reader, and a client that does not read is
    // bounded by the core's output limit instead.

    #[cfg(feature = "web")]
    fn serve_web(&mut self, server: ServerId, config: &crate::web::WebConfig) -> bool {
        let mut config = config.clone();
        // A WebSocket message is one hub frame: the same limit applies.
        config.frames.max_message = config.frames.max_message.min(self.core.max_frame());
        config.frames.max_frame = config.frames.max_frame.min(self.core.max_frame());
        self.web.get_or_insert_with(|| web::WebTransport::new(config));
        self.web_servers.push(server);
        true
    }

    fn start(&mut self, cx: &mut Context) {
        self.core.start_bus(cx);
    }

    fn on_shutdown(&mut self, cx: &mut Context) {
        self.core.leave_bus(cx);
    }

    fn log_counters(&self) {
        if let Some(counters) = self.core.bus_counters() {
            log::info!("hub cluster: {counters}");
        }
    }

    /// The bus's own connections (to Redis) are the hub's, and so are the web transport's
    /// socket pairs.
    fn opened(&self, socket: SocketId) -> bool {
        #[cfg(feature = "web")]
        if self.web.as_ref().is_some_and(|w| w.opened(socket)) {
            return true;
        }
        self.core.bus_owns(socket)
    }

    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {
        self.core.bus_connected(cx, socket);
    }

    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        #[cfg(feature = "web")]
        if self.web_servers.contains(&_server) {
            if let Some(web) = &mut self.web {
                web.on_connection(cx, socket);
            }
            return;
        }
        self.lines.on_connection(cx, &mut self.core, socket);
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        #[cfg(feature = "web")]
        if let Some(web) = self.web.as_mut().filter(|w| w.owns(socket)) {
            return web.on_data(cx, &mut self.core, socket, data);
        }
        if self.core.bus_owns(socket) {
            return self.core.bus_data(cx, socket, data);
        }
        self.lines.on_data(cx, &mut self.core, socket, data);
    }

    /// The client sent FIN: it has left, and our side is ended. With half-open allowed
    /// (`--allow-half-open`) it stays registered and keeps receiving until it closes.
    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        #[cfg(feature = "web")]
        if let Some(web) = self.web.as_mut().filter(|w| w.owns(socket)) {
            return web.on_end(cx, &mut self.core, socket);
        }
        if cx.allows_half_open(socket) {
            return;
        }
        if let Some(member) = self.lines.detach(socket) {
            self.core.depart(cx, member);
        }
        cx.end(socket);
    }

    /// The socket closed (any reason, including the output limit): its member leaves if it
    /// had not.
    fn on_close(&mut self, cx: &mut Context, socket: SocketId) {
        #[cfg(feature = "web")]
        if let Some(web) = self.web.as_mut().filter(|w| w.owns(socket)) {
            return web.on_close(cx, &mut self.core, socket);
        }
        if self.core.bus_owns(socket) {
            return self.core.bus_closed(cx, socket);
        }
        if let Some(member) = self.lines.detach(socket) {
            self.core.depart(cx, member);
        }
    }

    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) -> bool {
        #[cfg(feature = "web")]
        if let Some(web) = &mut self.web {
            if web.on_timer(cx, &mut self.core, timer) {
                return true;
            }
        }
        self.core.on_timer(cx, timer)
    }

    /// The loop cut `socket` for its unfinished input: say why, and hang up.
    fn on_input_cut(&mut self, cx: &mut Context, socket: SocketId, cut: &InputCut) {
        #[cfg(feature = "web")]
        if let Some(web) = self.web.as_mut().filter(|w| w.owns(socket)) {
            return web.on_input_cut(cx, &mut self.core, socket, cut);
        }
        let code = match cut {
            InputCut::OverTotal { .. } => ErrorCode::InputLimit,
            InputCut::Timeout { .. } => ErrorCode::InputTimeout,
        };
        if let Some(member) = self.lines.detach(socket) {
            self.core.hang_up(cx, member, code, &cut.to_string());
        }
    }

    /// Bytes of an unfinished frame held for `socket`, for the loop's input accounting.
    fn held_input(&self, socket: SocketId) -> Option<usize> {
        #[cfg(feature = "web")]
        if let Some(web) = self.web.as_ref().filter(|w| w.owns(socket)) {
            return Some(web.held_input(socket));
        }
        Some(self.lines.held_input(&self.core, socket))
    }
}
