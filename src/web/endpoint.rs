//! The web endpoint: one HTTP/1.1 listener serving the chat page, `/ws` (WebSocket) and
//! `/socket.io/` (Engine.IO v4 polling and WebSocket, Socket.IO v5 on top) on the loop.
//!
//! The endpoint owns the connections and the Engine.IO sessions; what the messages mean is an
//! application's ([`WebApp`]): it sees clients open, send text or socket.io events, and go,
//! and answers through [`WebClients`], which frames each message for the client's transport
//! (a WebSocket text frame, or a packet in a polling session's outbox). Every buffer is
//! bounded: request heads and bodies, WebSocket frames and messages, polling outboxes; a head
//! or body that never finishes, a pong that never comes and a close handshake that never
//! completes are all cut by deadlines.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::engineio::{self, PacketType, RequestError, Timing, Transport};
use super::http::{parse_head, Head, HeadLimits, Request, Response, Status};
use super::socketio;
use super::websocket::{self, close_code, Decoder, FrameLimits, Incoming, Opcode};
use crate::context::Context;
use crate::handler::SocketId;
use crate::input_budget::InputCut;
use crate::options::HANG_UP_GRACE;
use crate::timers::TimerId;

use super::clients::{
    hang_up_ws, new_sid, poll_response, send_engineio, write_frame, ClientId, ClientKind, Session,
    SessionTransport, WebClients,
};

/// The chat page, served at `/`.
const CHAT_PAGE: &str = include_str!("page/chat.html");

/// What the endpoint lets the user tune.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Request head limits.
    pub head: HeadLimits,
    /// WebSocket frame and message limits (also the longest polling packet).
    pub frames: FrameLimits,
    /// Engine.IO's ping interval, ping timeout and payload limit.
    pub timing: Timing,
    /// `--web-origin`: the origins allowed to use `/ws` and `/socket.io/` (and given CORS
    /// headers for polling); `*` allows any. Empty: any origin may open a WebSocket, and
    /// polling gets no CORS headers (same-origin pages only, as socket.io's own default).
    pub origins: Vec<String>,
    /// How long a request head or body may take to arrive, and an idle keep-alive connection
    /// may stay open.
    pub request_timeout: Duration,
    /// The most output queued for one polling session between two polls; past it the
    /// session is closed (the slow-consumer rule for clients that stop polling).
    pub outbox_limit: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            head: HeadLimits::default(),
            frames: FrameLimits { max_frame: 1024 * 1024, max_message: 1024 * 1024 },
            timing: Timing::default(),
            origins: Vec::new(),
            request_timeout: Duration::from_secs(10),
            outbox_limit: 1024 * 1024,
        }
    }
}

/// What the application does with the endpoint's clients. Every method gets the clients
/// table to answer through.
#[allow(unused_variables)]
pub trait WebApp {
    /// A client connected: a `/ws` WebSocket (`auth` is `None`), or a socket.io socket that
    /// joined the default namespace with its `auth` object. Returns false to refuse it.
    fn on_open(
        &mut self,
        cx: &mut Context,
        web: &mut WebClients,
        client: ClientId,
        auth: Option<&Value>,
    ) -> bool {
        true
    }

    /// A text message from a `/ws` client.
    fn on_text(&mut self, cx: &mut Context, web: &mut WebClients, client: ClientId, text: &str) {}

    /// A socket.io event; `ack` is set when the client waits for an answer
    /// ([`WebClients::ack`]).
    fn on_event(
        &mut self,
        cx: &mut Context,
        web: &mut WebClients,
        client: ClientId,
        name: &str,
        args: &[Value],
        ack: Option<u64>,
    ) {
    }

    /// A socket.io session moved from polling to WebSocket (the upgrade finished): what was
    /// sent to it through a polling link must be sent to [`WebClients::socket`] from now on.
    fn on_upgrade(&mut self, cx: &mut Context, web: &mut WebClients, client: ClientId) {}

    /// A socket.io client answered an event emitted with [`WebClients::emit_with_ack`].
    fn on_ack(&mut self, cx: &mut Context, web: &mut WebClients, client: ClientId, id: u64, args: &[Value]) {}

    /// The client is gone (its last event): `reason` as socket.io names it (`transport
    /// close`, `ping timeout`, `client namespace disconnect`, ...).
    fn on_close(&mut self, cx: &mut Context, web: &mut WebClients, client: ClientId, reason: &str) {}
}

/// What one connection is doing.
#[derive(Debug)]
enum Conn {
    /// Reading HTTP requests (keep-alive: one after another).
    Http(HttpConn),
    /// Speaking WebSocket.
    WebSocket(WsConn),
}

#[derive(Debug)]
struct HttpConn {
    /// Bytes of the request not handled yet.
    buf: Vec<u8>,
    /// When the current request started (or the connection went idle).
    since: Duration,
    /// A POST whose body is still arriving: the request and the body's length.
    body: Option<(Box<Request>, usize)>,
    /// The polling session this GET is held for.
    held: Option<ClientId>,
}

#[derive(Debug)]
struct WsConn {
    decoder: Decoder,
    channel: Channel,
    /// Set once the connection is closing: later frames are ignored.
    closing: bool,
}

/// What a WebSocket carries.
#[derive(Debug, Clone, Copy)]
enum Channel {
    /// The application's text messages (`/ws`).
    Plain(ClientId),
    /// A socket.io session's packets (its transport, or a probe until the upgrade).
    SocketIo(ClientId),
}

/// The endpoint.
#[derive(Debug)]
pub struct WebEndpoint {
    config: WebConfig,
    conns: HashMap<SocketId, Conn>,
    clients: WebClients,
    /// The sweep for deadlines (heads, bodies, idle keep-alive, pings).
    sweep: Option<TimerId>,
}

impl WebEndpoint {
    /// An endpoint with no connections.
    pub fn new(config: WebConfig) -> Self {
        let clients = WebClients { outbox_limit: config.outbox_limit, ..WebClients::default() };
        WebEndpoint { config, conns: HashMap::new(), clients, sweep: None }
    }

    /// The clients table.
    pub fn clients(&mut self) -> &mut WebClients {
        &mut self.clients
    }

    /// How often deadlines are checked: a fifth of the shortest one, at most a second.
    fn sweep_every(&self) -> Duration {
        let t = &self.config.timing;
        [t.ping_interval, t.ping_timeout, self.config.request_timeout, Duration::from_secs(5)]
            .into_iter()
            .min()
            .unwrap_or(Duration::from_secs(5))
            / 5
    }

    /// A connection was accepted.
    pub fn on_connection(&mut self, cx: &mut Context, socket: SocketId) {
        if self.sweep.is_none() {
            let timer = cx.set_interval(self.sweep_every().max(Duration::from_millis(10)));
            cx.set_timer_ref(timer, false);
            self.sweep = Some(timer);
        }
        let conn = HttpConn { buf: Vec::new(), since: cx.elapsed(), body: None, held: None };
        self.conns.insert(socket, Conn::Http(conn));
    }

    /// Bytes arrived.
    pub fn on_data(&mut self, cx: &mut Context, app: &mut dyn WebApp, socket: SocketId, data: &[u8]) {
        self.clients.current = Some(socket);
        match self.conns.get_mut(&socket) {
            Some(Conn::Http(http)) => {
                http.buf.extend_from_slice(data);
                self.serve_http(cx, app, socket);
            }
            Some(Conn::WebSocket(_)) => self.on_ws_data(cx, app, socket, data),
            None => {}
        }
        self.notify_closed(cx, app);
    }

    /// The peer sent FIN: a WebSocket or session on it is gone; an HTTP connection finishes
    /// what it has.
    pub fn on_end(&mut self, cx: &mut Context, app: &mut dyn WebApp, socket: SocketId) {
        self.drop_conn(cx, socket);
        cx.end(socket);
        self.notify_closed(cx, app);
    }

    /// The socket closed.
    pub fn on_close(&mut self, cx: &mut Context, app: &mut dyn WebApp, socket: SocketId) {
        self.drop_conn(cx, socket);
        self.notify_closed(cx, app);
    }

    /// The loop cut the socket for input it held too long or too much of.
    pub fn on_input_cut(&mut self, cx: &mut Context, app: &mut dyn WebApp, socket: SocketId, cut: &InputCut) {
        let status = match cut {
            InputCut::Timeout { .. } => Status::RequestTimeout,
            InputCut::OverTotal { .. } => Status::ContentTooLarge,
        };
        match self.conns.get(&socket) {
            Some(Conn::Http(_)) => self.refuse(cx, socket, status),
            Some(Conn::WebSocket(_)) => {
                let code = if status == Status::RequestTimeout {
                    close_code::POLICY_VIOLATION
                } else {
                    close_code::TOO_BIG
                };
                hang_up_ws(cx, socket, code, &cut.to_string());
            }
            None => {}
        }
        self.drop_conn(cx, socket);
        self.notify_closed(cx, app);
    }

    /// Disconnects `client` (a socket.io session gets the DISCONNECT packet first), telling the
    /// application.
    pub fn close_client(
        &mut self,
        cx: &mut Context,
        app: &mut dyn WebApp,
        client: ClientId,
        reason: &'static str,
    ) {
        if self.clients.is_socketio(client) {
            self.clients.send_socketio(cx, client, "1");
        }
        self.clients.close(cx, client, reason, true);
        self.notify_closed(cx, app);
    }

    /// Whether `socket` is one of the endpoint's connections.
    pub fn has(&self, socket: SocketId) -> bool {
        self.conns.contains_key(&socket)
    }

    /// Queues encoded packets for a socket.io client ([`WebClients::push_packets`]), telling
    /// the application if that closed it.
    pub fn push_packets(&mut self, cx: &mut Context, app: &mut dyn WebApp, client: ClientId, packets: &[u8]) {
        self.clients.push_packets(cx, client, packets);
        self.notify_closed(cx, app);
    }

    /// Bytes of unfinished input held for `socket`.
    pub fn held_input(&self, socket: SocketId) -> usize {
        match self.conns.get(&socket) {
            Some(Conn::Http(h)) => h.buf.len(),
            Some(Conn::WebSocket(w)) => w.decoder.held(),
            None => 0,
        }
    }

    /// Whether `timer` is the endpoint's; if so, runs the sweep.
    pub fn on_timer(&mut self, cx: &mut Context, app: &mut dyn WebApp, timer: TimerId) -> bool {
        if self.sweep != Some(timer) {
            return false;
        }
        self.run_sweep(cx);
        self.notify_closed(cx, app);
        true
    }

    /// Deadlines: heads and bodies that never finish (408), idle keep-alive connections,
    /// pings due and pongs overdue.
    fn run_sweep(&mut self, cx: &mut Context) {
        let now = cx.elapsed();
        let timeout = self.config.request_timeout;
        let held: Vec<SocketId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, Conn::Http(h) if h.held.is_some()))
            .map(|(&s, _)| s)
            .filter(|&s| !self.is_held(s))
            .collect();
        for socket in held {
            // Its poll was answered: the keep-alive clock starts now.
            if let Some(Conn::Http(h)) = self.conns.get_mut(&socket) {
                h.held = None;
                h.since = now;
            }
        }
        let late: Vec<(SocketId, bool)> = self
            .conns
            .iter()
            .filter_map(|(&s, c)| match c {
                Conn::Http(h) if h.held.is_none() && now.saturating_sub(h.since) >= timeout => {
                    Some((s, !h.buf.is_empty() || h.body.is_some()))
                }
                _ => None,
            })
            .collect();
        for (socket, unfinished) in late {
            if unfinished {
                self.refuse(cx, socket, Status::RequestTimeout);
            } else {
                cx.end(socket);
            }
            self.conns.remove(&socket);
        }
        let timing = self.config.timing;
        let limit = self.config.outbox_limit;
        let mut dead = Vec::new();
        for (index, slot) in self.clients.slots.iter_mut().enumerate() {
            let Some(ClientKind::SocketIo(session)) = &mut slot.kind else { continue };
            let id = ClientId { index: index as u32, generation: slot.generation };
            if !session.connected && now >= session.connect_by {
                // An Engine.IO session that never joined the namespace.
                dead.push((id, "connect timeout"));
                continue;
            }
            if now < session.ping_due {
                continue;
            }
            if session.awaiting_pong {
                dead.push((id, "ping timeout"));
            } else {
                session.awaiting_pong = true;
                session.ping_due = now + timing.ping_timeout;
                if !send_engineio(cx, session, PacketType::Ping, "", limit) {
                    dead.push((id, "transport error"));
                }
            }
        }
        for (id, reason) in dead {
            self.clients.close(cx, id, reason, true);
        }
    }

    /// Tells the application of clients that closed during the last event.
    fn notify_closed(&mut self, cx: &mut Context, app: &mut dyn WebApp) {
        while let Some((client, reason, sid)) = self.clients.closed.pop() {
            self.clients.departing = Some((client, sid));
            app.on_close(cx, &mut self.clients, client, reason);
            self.clients.departing = None;
        }
    }

    /// Forgets a connection that ended: its `/ws` client or the socket.io session it carried
    /// goes; a held poll is released (the session waits for the next one).
    fn drop_conn(&mut self, cx: &mut Context, socket: SocketId) {
        match self.conns.remove(&socket) {
            Some(Conn::Http(h)) => {
                if let Some(session) = h.held.and_then(|c| self.clients.session_mut(c)) {
                    if let SessionTransport::Polling { waiting } = &mut session.transport {
                        if *waiting == Some(socket) {
                            *waiting = None;
                        }
                    }
                }
            }
            Some(Conn::WebSocket(ws)) => match ws.channel {
                Channel::Plain(client) => self.clients.close(cx, client, "transport close", true),
                Channel::SocketIo(client) => {
                    let Some(session) = self.clients.session_mut(client) else { return };
                    if session.probe == Some(socket) {
                        session.probe = None;
                    } else if matches!(session.transport, SessionTransport::WebSocket(s) if s == socket) {
                        self.clients.close(cx, client, "transport close", true);
                    }
                }
            },
            None => {}
        }
    }

    /// Answers with an error status and closes the connection after it.
    fn refuse(&mut self, cx: &mut Context, socket: SocketId, status: Status) {
        if cx.is_writable(socket) {
            cx.write(socket, &Response::error(status).into_bytes());
        }
        cx.end_within(socket, HANG_UP_GRACE);
        if let Some(Conn::Http(h)) = self.conns.get_mut(&socket) {
            h.buf.clear();
            h.body = None;
        }
        self.conns.remove(&socket);
    }

    /// Handles every complete request in the connection's buffer, one at a time.
    fn serve_http(&mut self, cx: &mut Context, app: &mut dyn WebApp, socket: SocketId) {
        loop {
            let held = self.is_held(socket);
            let Some(Conn::Http(http)) = self.conns.get_mut(&socket) else { return };
            if held {
                // A client sends nothing more while its poll is held; keep the bytes bounded.
                if http.buf.len() > self.config.head.max_head {
                    self.refuse(cx, socket, Status::HeaderFieldsTooLarge);
                }
                return;
            }
            if let Some((_, len)) = &http.body {
                let len = *len;
                if http.buf.len() < len {
                    return;
                }
                let Some((req, _)) = http.body.take() else { return };
                let body: Vec<u8> = http.buf.drain(..len).collect();
                http.since = cx.elapsed();
                let rest = std::mem::take(&mut http.buf);
                self.route(cx, app, socket, &req, &body);
                if !self.restore(cx, app, socket, rest) {
                    return;
                }
                continue;
            }
            if http.buf.is_empty() {
                // An idle keep-alive connection keeps no buffer.
                http.buf = Vec::new();
                return;
            }
            match parse_head(&http.buf, &self.config.head) {
                Head::Partial => return,
                Head::Invalid(status) => return self.refuse(cx, socket, status),
                Head::Complete(req, used) => {
                    http.buf.drain(..used);
                    if req.transfer_encoding {
                        return self.refuse(cx, socket, Status::NotImplemented);
                    }
                    match req.content_length {
                        Some(len) if len > 0 => {
                            if len > self.config.timing.max_payload {
                                return self.refuse(cx, socket, Status::ContentTooLarge);
                            }
                            http.body = Some((req, len));
                        }
                        _ => {
                            http.since = cx.elapsed();
                            let rest = std::mem::take(&mut http.buf);
                            self.route(cx, app, socket, &req, &[]);
                            if !self.restore(cx, app, socket, rest) {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    /// After a request was routed: the bytes that followed it go back to the connection,
    /// or to the WebSocket it became. Returns whether to go on reading requests.
    fn restore(&mut self, cx: &mut Context, app: &mut dyn WebApp, socket: SocketId, rest: Vec<u8>) -> bool {
        match self.conns.get_mut(&socket) {
            Some(Conn::Http(h)) => {
                h.buf = rest;
                true
            }
            Some(Conn::WebSocket(_)) => {
                if !rest.is_empty() {
                    self.on_ws_data(cx, app, socket, &rest);
                }
                false
            }
            None => false,
        }
    }

    /// Whether `socket` is a poll held open for its session.
    fn is_held(&self, socket: SocketId) -> bool {
        let Some(Conn::Http(h)) = self.conns.get(&socket) else { return false };
        let Some(client) = h.held else { return false };
        matches!(
            self.clients.get(client),
            Some(ClientKind::SocketIo(s)) if matches!(s.transport, SessionTransport::Polling { waiting: Some(w) } if w == socket)
        )
    }

    /// The origin check: with an allow-list, a request whose Origin is not on it is refused;
    /// returns the origin to echo in CORS headers, if any.
    fn allowed_origin<'r>(&self, req: &'r Request) -> Result<Option<&'r str>, ()> {
        let Some(origin) = req.origin.as_deref() else { return Ok(None) };
        if self.config.origins.is_empty() || same_origin(origin, req.host.as_deref()) {
            // Our own page (same origin) needs no CORS and is always allowed.
            return Ok(None);
        }
        if self.config.origins.iter().any(|o| o == "*" || o == origin) {
            Ok(Some(origin))
        } else {
            Err(())
        }
    }

    /// One complete request.
    fn route(
        &mut self,
        cx: &mut Context,
        app: &mut dyn WebApp,
        socket: SocketId,
        req: &Request,
        body: &[u8],
    ) {
        let close_after = req.http10 || req.connection_has("close");
        match req.path.as_str() {
            "/" | "/index.html" => {
                if req.method != "GET" && req.method != "HEAD" {
                    return self.refuse(cx, socket, Status::MethodNotAllowed);
                }
                let mut bytes = Response::new(Status::Ok)
                    .header("Content-Type", "text/html; charset=utf-8")
                    .header("Cache-Control", "no-cache")
                    .header("X-Content-Type-Options", "nosniff")
                    .body(CHAT_PAGE.as_bytes().to_vec())
                    .into_bytes();
                if req.method == "HEAD" {
                    // The GET's headers (its Content-Length included), without the body.
                    bytes.truncate(bytes.len() - CHAT_PAGE.len());
                }
                cx.write(socket, &bytes);
            }
            "/favicon.ico" => {
                cx.write(socket, &Response::new(Status::NoContent).into_bytes());
            }
            "/ws" => {
                if self.allowed_origin(req).is_err() {
                    return self.refuse(cx, socket, Status::Forbidden);
                }
                match websocket::handshake(req) {
                    Err(r) => {
                        cx.write(socket, &r.into_bytes());
                        cx.end_within(socket, HANG_UP_GRACE);
                        self.conns.remove(&socket);
                    }
                    Ok(r) => {
                        cx.write(socket, &r.into_bytes());
                        let client = self.clients.insert(ClientKind::Plain(socket));
                        self.conns.insert(
                            socket,
                            Conn::WebSocket(WsConn {
                                decoder: Decoder::new(self.config.frames),
                                channel: Channel::Plain(client),
                                closing: false,
                            }),
                        );
                        if !app.on_open(cx, &mut self.clients, client, None) {
                            self.clients.close(cx, client, "refused", false);
                        }
                    }
                }
                return;
            }
            "/socket.io/" | "/socket.io" => {
                return self.engineio_request(cx, app, socket, req, body, close_after)
            }
            _ => {
                cx.write(socket, &Response::error(Status::NotFound).into_bytes());
            }
        }
        if close_after {
            cx.end(socket);
            self.conns.remove(&socket);
        }
    }

    /// A request to `/socket.io/`: a handshake, a poll, a POST of packets, or a WebSocket.
    fn engineio_request(
        &mut self,
        cx: &mut Context,
        app: &mut dyn WebApp,
        socket: SocketId,
        req: &Request,
        body: &[u8],
        close_after: bool,
    ) {
        let Ok(origin) = self.allowed_origin(req) else {
            return self.eio_error(cx, socket, Status::Forbidden, RequestError::Forbidden, None);
        };
        if req.method == "OPTIONS" {
            // CORS preflight.
            let mut r = Response::new(Status::NoContent);
            if let Some(o) = origin {
                r = r
                    .header("Access-Control-Allow-Origin", o)
                    .header("Access-Control-Allow-Credentials", "true")
                    .header("Access-Control-Allow-Methods", "GET, POST")
                    .header("Access-Control-Allow-Headers", "content-type");
            }
            cx.write(socket, &r.into_bytes());
            return;
        }
        if req.query_param("EIO") != Some("4") {
            return self.eio_error(
                cx,
                socket,
                Status::BadRequest,
                RequestError::UnsupportedProtocolVersion,
                origin,
            );
        }
        let Some(transport) = Transport::from_query(req.query_param("transport")) else {
            return self.eio_error(cx, socket, Status::BadRequest, RequestError::UnknownTransport, origin);
        };
        let sid = req.query_param("sid");
        let client = match sid {
            Some(sid) => match self.clients.sids.get(sid) {
                Some(&c) => Some(c),
                None => {
                    return self.eio_error(cx, socket, Status::BadRequest, RequestError::UnknownSid, origin)
                }
            },
            None => None,
        };
        match (transport, client) {
            (Transport::Polling, None) => {
                if req.method != "GET" {
                    return self.eio_error(
                        cx,
                        socket,
                        Status::BadRequest,
                        RequestError::BadHandshakeMethod,
                        origin,
                    );
                }
                let sid = new_sid();
                let open =
                    engineio::encode(PacketType::Open, &engineio::open_data(&sid, true, &self.config.timing));
                let client = self.new_session(cx, sid, SessionTransport::Polling { waiting: None });
                if let Some(session) = self.clients.session_mut(client) {
                    session.cors = origin.map(str::to_string);
                }
                cx.write(socket, &poll_response(Status::Ok, open, origin));
            }
            (Transport::Polling, Some(client)) => {
                let Some(session) = self.clients.session_mut(client) else { return };
                if session.cors.as_deref() != origin {
                    session.cors = origin.map(str::to_string);
                }
                let SessionTransport::Polling { waiting } = &mut session.transport else {
                    return self.eio_error(cx, socket, Status::BadRequest, RequestError::BadRequest, origin);
                };
                match req.method.as_str() {
                    "GET" => {
                        if waiting.is_some() {
                            // Two polls at once: engine.io closes the session.
                            self.eio_error(cx, socket, Status::BadRequest, RequestError::BadRequest, origin);
                            self.clients.close(cx, client, "transport error", true);
                            return;
                        }
                        if session.probe.is_some() {
                            // An upgrade is under way: the client waits for this poll to end
                            // before it sends the upgrade, so it is answered at once.
                            let mut body = std::mem::take(&mut session.outbox);
                            engineio::push_payload(&mut body, PacketType::Noop, "");
                            cx.write(socket, &poll_response(Status::Ok, body, origin));
                        } else if session.outbox.is_empty() {
                            *waiting = Some(socket);
                            if let Some(Conn::Http(h)) = self.conns.get_mut(&socket) {
                                h.held = Some(client);
                            }
                            return;
                        } else {
                            let body = std::mem::take(&mut session.outbox);
                            cx.write(socket, &poll_response(Status::Ok, body, origin));
                        }
                    }
                    "POST" => {
                        let Ok(text) = std::str::from_utf8(body) else {
                            self.eio_error(cx, socket, Status::BadRequest, RequestError::BadRequest, origin);
                            self.clients.close(cx, client, "parse error", true);
                            return;
                        };
                        // Every packet is checked before any is handled; each is then handed
                        // on as the slice of the body it is (no copy).
                        if engineio::decode_payload(text).is_err() {
                            self.eio_error(cx, socket, Status::BadRequest, RequestError::BadRequest, origin);
                            self.clients.close(cx, client, "parse error", true);
                            return;
                        }
                        cx.write(socket, &poll_response(Status::Ok, "ok".to_string(), origin));
                        for packet in text.split(engineio::SEPARATOR) {
                            if !self.clients.is_open(client) {
                                break;
                            }
                            self.engineio_packet(cx, app, client, packet, None);
                        }
                    }
                    _ => {
                        return self.eio_error(
                            cx,
                            socket,
                            Status::BadRequest,
                            RequestError::BadHandshakeMethod,
                            origin,
                        )
                    }
                }
            }
            (Transport::WebSocket, client) => {
                match websocket::handshake(req) {
                    Err(r) => {
                        cx.write(socket, &r.into_bytes());
                        cx.end_within(socket, HANG_UP_GRACE);
                        self.conns.remove(&socket);
                        return;
                    }
                    Ok(r) => {
                        cx.write(socket, &r.into_bytes());
                    }
                }
                let client = match client {
                    Some(client) => {
                        // An upgrade probe for a polling session.
                        let Some(session) = self.clients.session_mut(client) else { return };
                        if session.probe.is_some()
                            || matches!(session.transport, SessionTransport::WebSocket(_))
                        {
                            hang_up_ws(cx, socket, close_code::POLICY_VIOLATION, "upgrade already under way");
                            self.conns.remove(&socket);
                            return;
                        }
                        session.probe = Some(socket);
                        client
                    }
                    None => {
                        let sid = new_sid();
                        let open = engineio::encode(
                            PacketType::Open,
                            &engineio::open_data(&sid, false, &self.config.timing),
                        );
                        write_frame(cx, socket, Opcode::Text, open.as_bytes());
                        self.new_session(cx, sid, SessionTransport::WebSocket(socket))
                    }
                };
                self.conns.insert(
                    socket,
                    Conn::WebSocket(WsConn {
                        decoder: Decoder::new(self.config.frames),
                        channel: Channel::SocketIo(client),
                        closing: false,
                    }),
                );
                return;
            }
        }
        if close_after {
            cx.end(socket);
            self.conns.remove(&socket);
        }
    }

    fn new_session(&mut self, cx: &mut Context, sid: String, transport: SessionTransport) -> ClientId {
        let session = Session {
            sid: sid.clone(),
            transport,
            probe: None,
            outbox: String::new(),
            cors: None,
            connected: false,
            connect_by: cx.elapsed() + self.config.request_timeout,
            ping_due: cx.elapsed() + self.config.timing.ping_interval,
            awaiting_pong: false,
        };
        let client = self.clients.insert(ClientKind::SocketIo(Box::new(session)));
        self.clients.sids.insert(sid, client);
        client
    }

    /// A refused Engine.IO request: the status, engine.io's JSON error body, and the
    /// connection closes.
    fn eio_error(
        &mut self,
        cx: &mut Context,
        socket: SocketId,
        status: Status,
        error: RequestError,
        origin: Option<&str>,
    ) {
        let mut r =
            Response::new(status).header("Content-Type", "application/json").header("Connection", "close");
        if let Some(o) = origin {
            r = r.header("Access-Control-Allow-Origin", o).header("Access-Control-Allow-Credentials", "true");
        }
        cx.write(socket, &r.body(error.body().as_bytes().to_vec()).into_bytes());
        cx.end_within(socket, HANG_UP_GRACE);
        self.conns.remove(&socket);
    }

    /// WebSocket bytes.
    fn on_ws_data(&mut self, cx: &mut Context, app: &mut dyn WebApp, socket: SocketId, data: &[u8]) {
        let Some(Conn::WebSocket(ws)) = self.conns.get_mut(&socket) else { return };
        if ws.closing {
            return;
        }
        let channel = ws.channel;
        let mut incoming = Vec::new();
        let result = ws.decoder.feed(data, |m| incoming.push(m));
        for message in incoming {
            let Some(Conn::WebSocket(ws)) = self.conns.get_mut(&socket) else { return };
            if ws.closing {
                return;
            }
            match message {
                Incoming::Ping(payload) => write_frame(cx, socket, Opcode::Pong, &payload),
                Incoming::Pong(_) => {}
                Incoming::Close(code, _) => {
                    ws.closing = true;
                    // Echo the code (RFC 6455 5.5.1), then close once the peer has read it.
                    let reply = if code == 1005 {
                        websocket::encode(Opcode::Close, &[])
                    } else {
                        websocket::encode_close(code, "")
                    };
                    if cx.is_writable(socket) {
                        cx.write(socket, &reply);
                    }
                    cx.end_within(socket, HANG_UP_GRACE);
                    self.drop_conn(cx, socket);
                    return;
                }
                Incoming::Binary(_) => {
                    self.ws_violation(
                        cx,
                        socket,
                        close_code::UNSUPPORTED_DATA,
                        "binary messages are not accepted",
                    );
                    return;
                }
                Incoming::Text(text) => match channel {
                    Channel::Plain(client) => app.on_text(cx, &mut self.clients, client, &text),
                    Channel::SocketIo(client) => self.engineio_packet(cx, app, client, &text, Some(socket)),
                },
            }
        }
        if let Err(v) = result {
            self.ws_violation(cx, socket, v.code, v.reason);
        }
    }

    /// Closes a WebSocket for breaking the protocol, with the close code the RFC names.
    fn ws_violation(&mut self, cx: &mut Context, socket: SocketId, code: u16, reason: &str) {
        if let Some(Conn::WebSocket(ws)) = self.conns.get_mut(&socket) {
            ws.closing = true;
        }
        hang_up_ws(cx, socket, code, reason);
        self.drop_conn(cx, socket);
    }

    /// One Engine.IO packet from a session's client; `via` is the WebSocket it came on (none
    /// for a POST).
    fn engineio_packet(
        &mut self,
        cx: &mut Context,
        app: &mut dyn WebApp,
        client: ClientId,
        text: &str,
        via: Option<SocketId>,
    ) {
        let limit = self.config.outbox_limit;
        let interval = self.config.timing.ping_interval;
        let now = cx.elapsed();
        let Some(session) = self.clients.session_mut(client) else { return };
        let probing = via.is_some() && session.probe == via;
        let Ok(packet) = engineio::decode(text) else {
            return self.clients.close(cx, client, "parse error", true);
        };
        if probing {
            let socket = via.expect("probing implies a socket");
            match (packet.kind, packet.data) {
                (PacketType::Ping, "probe") => {
                    write_frame(cx, socket, Opcode::Text, b"3probe");
                    // Release the held poll so the client can finish the upgrade.
                    if let SessionTransport::Polling { waiting: Some(poll) } = session.transport {
                        session.transport = SessionTransport::Polling { waiting: None };
                        let mut body = std::mem::take(&mut session.outbox);
                        engineio::push_payload(&mut body, PacketType::Noop, "");
                        cx.write(poll, &poll_response(Status::Ok, body, session.cors.as_deref()));
                    }
                }
                (PacketType::Upgrade, "") => {
                    session.probe = None;
                    session.transport = SessionTransport::WebSocket(socket);
                    // What waited for a poll goes on the WebSocket now, packet by packet.
                    let outbox = std::mem::take(&mut session.outbox);
                    if !outbox.is_empty() {
                        for p in outbox.split(engineio::SEPARATOR) {
                            write_frame(cx, socket, Opcode::Text, p.as_bytes());
                        }
                    }
                    if session.connected {
                        app.on_upgrade(cx, &mut self.clients, client);
                    }
                }
                _ => {
                    session.probe = None;
                    hang_up_ws(cx, socket, close_code::POLICY_VIOLATION, "bad upgrade");
                    self.conns.remove(&socket);
                }
            }
            return;
        }
        match packet.kind {
            PacketType::Pong => {
                session.awaiting_pong = false;
                session.ping_due = now + interval;
            }
            PacketType::Ping => {
                if !send_engineio(cx, session, PacketType::Pong, packet.data, limit) {
                    self.clients.close(cx, client, "transport error", true);
                }
            }
            PacketType::Close => self.clients.close(cx, client, "transport close", true),
            PacketType::Noop => {}
            PacketType::Open | PacketType::Upgrade => self.clients.close(cx, client, "parse error", true),
            PacketType::Message => self.socketio_packet(cx, app, client, packet.data),
        }
    }

    /// One Socket.IO packet.
    fn socketio_packet(&mut self, cx: &mut Context, app: &mut dyn WebApp, client: ClientId, text: &str) {
        let Some(session) = self.clients.session_mut(client) else { return };
        let connected = session.connected;
        let packet = match socketio::decode(text) {
            Ok(p) => p,
            Err(_) => return self.clients.close(cx, client, "parse error", true),
        };
        match packet {
            socketio::Packet::Connect { namespace, auth } => {
                if namespace != "/" {
                    let refusal = socketio::connect_error(&namespace, "Invalid namespace");
                    self.clients.send_socketio(cx, client, &refusal);
                    return;
                }
                if connected {
                    return self.clients.close(cx, client, "parse error", true);
                }
                let sid = session.sid.clone();
                session.connected = true;
                self.clients.send_socketio(cx, client, &socketio::connect_ok(&sid));
                if !app.on_open(cx, &mut self.clients, client, auth.as_ref()) {
                    self.clients.send_socketio(cx, client, "1");
                    self.clients.close(cx, client, "server namespace disconnect", false);
                }
            }
            _ if !connected => self.clients.close(cx, client, "parse error", true),
            socketio::Packet::Disconnect { .. } => {
                self.clients.close(cx, client, "client namespace disconnect", true)
            }
            socketio::Packet::Event { namespace, name, args, ack } => {
                if namespace == "/" {
                    app.on_event(cx, &mut self.clients, client, &name, &args, ack);
                }
            }
            socketio::Packet::Ack { namespace, id, args } => {
                if namespace == "/" {
                    app.on_ack(cx, &mut self.clients, client, id, &args);
                }
            }
        }
    }
}

/// Whether `origin` is the endpoint's own (`http://` or `https://` and the request's Host).
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let rest = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    rest.is_some_and(|r| r.eq_ignore_ascii_case(host))
}
