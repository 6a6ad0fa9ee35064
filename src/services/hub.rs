//! Hub: named clients exchanging JSON messages, with rooms (socket.io's everyday feature).
//! Clients send JSON objects back to back or one per line; the server writes one compact JSON
//! object per line. The messages are defined in [`crate::wire::hub`]; the wire format is in
//! `docs/protocol.md`.
//!
//! The hub never re-encodes a client's `message`: the frame is validated by serde_json as a
//! borrowed raw value, and `message` is relayed as the exact bytes the client sent. Every
//! message that goes to several clients is encoded once into [`SharedBytes`] and queued to each
//! by reference. A client that stops reading costs at most the listener's `max_buffer` of
//! queued output before the core disconnects it.

mod auth;
mod presence;

use std::collections::VecDeque;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::rc::Rc;
use std::time::Duration;

use crate::context::Context;
use crate::frame::{Frame, FrameDecoder};
use crate::handler::SocketId;
use crate::log_limit::LogBudget;
use crate::printable::for_log;
use crate::services::{peer_label, send, send_shared, Roster};
use crate::timers::TimerId;
use crate::wire::hub::{
    Counters, Cursor, ErrorCode, Fields, Kind, ListPage, Parsed, Refusal, Reply, Request,
};
use crate::write_queue::SharedBytes;

pub use crate::wire::hub::MAX_LIST_LIMIT;

pub use auth::{
    BLOCK_FOR as AUTH_BLOCK_FOR, FAILURES_ALLOWED as AUTH_FAILURES_ALLOWED, MAX_SOURCES as AUTH_MAX_SOURCES,
};
pub use presence::{MAX_NOTICES as PRESENCE_MAX_NOTICES, PRESENCE_WINDOW};

use auth::{AuthThrottle, Failure, Source, TokenCheck};
use presence::{Mark, Presence};

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

/// One connected hub client.
#[derive(Debug)]
struct Member {
    /// `remoteAddress:remotePort` or `unix:<n>`; fixed for the connection's life.
    session_id: String,
    /// The name it registered with `sync`, if any.
    name: Option<String>,
    /// Rooms it joined; sorted, as `list` reports them.
    rooms: BTreeSet<String>,
    /// The unfinished frame between reads.
    frames: FrameDecoder,
    /// False until the token-carrying `sync` when `--hub-token` is set; such a member is
    /// skipped by broadcasts and `list`.
    authed: bool,
    /// Set by the first request of a known type: the registration deadline is met. A
    /// listen-only client that just joins a room is legitimate; junk or a frame that never
    /// completes (slowloris) is not.
    useful: bool,
    /// Connection sequence number: `list`'s order and its cursor.
    seq: u64,
    /// Which presence notices of the current window are news to it.
    presence: Mark,
}

impl Member {
    /// SENDER in the protocol: the name, or the session id before `sync`.
    fn sender(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.session_id)
    }
}

/// Who is connected and how to reach them: members in connection order, the name table and
/// the room table. Every lookup a message needs is O(1); only fan-out walks members.
#[derive(Debug, Default)]
struct HubRouter {
    members: Roster<Member>,
    /// Registered name to its holder (one live connection per name).
    names: HashMap<String, SocketId>,
    /// Room to its members; a room exists while it has a member.
    rooms: HashMap<String, HashSet<SocketId>>,
    /// The members `list` shows (authenticated ones) by connection sequence number: a page
    /// starts with an O(log n) seek to its cursor, and a cursor stays valid when the member
    /// it names has left.
    listed: BTreeMap<u64, SocketId>,
}

impl HubRouter {
    /// Queues `line` to every authenticated member but `except`.
    fn broadcast(&self, cx: &mut Context, except: SocketId, line: &SharedBytes) {
        for (id, _) in self.authed() {
            if id != except {
                send_shared(cx, id, line);
            }
        }
    }

    /// Queues `line` to the members of `room` but `except`.
    fn broadcast_room(&self, cx: &mut Context, room: &str, except: SocketId, line: &SharedBytes) {
        for &id in self.rooms.get(room).into_iter().flatten() {
            if id != except {
                send_shared(cx, id, line);
            }
        }
    }

    fn in_room(&self, socket: SocketId, room: &str) -> bool {
        self.members.get(socket).is_some_and(|m| m.rooms.contains(room))
    }

    fn join(&mut self, socket: SocketId, room: &str) {
        let Some(member) = self.members.get_mut(socket) else { return };
        if !member.rooms.insert(room.to_string()) {
            return;
        }
        match self.rooms.get_mut(room) {
            Some(members) => {
                members.insert(socket);
            }
            None => {
                self.rooms.insert(room.to_string(), HashSet::from([socket]));
            }
        }
    }

    fn leave_room(&mut self, socket: SocketId, room: &str) {
        let Some(member) = self.members.get_mut(socket) else { return };
        if member.rooms.remove(room) {
            self.forget_room_member(room, socket);
        }
    }

    fn forget_room_member(&mut self, room: &str, socket: SocketId) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(&socket);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// Authenticated members: the recipients of broadcasts and presence notices.
    fn authed(&self) -> impl Iterator<Item = (SocketId, &Member)> {
        self.members.iter().filter(|(_, m)| m.authed)
    }

    /// Takes the member out of every table.
    fn remove(&mut self, socket: SocketId) -> Option<Member> {
        let member = self.members.remove(socket)?;
        self.listed.remove(&member.seq);
        for room in &member.rooms {
            self.forget_room_member(room, socket);
        }
        if let Some(name) = &member.name {
            self.names.remove(name);
        }
        Some(member)
    }
}

/// The registration sweep's timer. Unreferenced: a pending deadline must not keep a
/// shutting-down server alive (it held SIGTERM for up to `--register-timeout`).
fn deadline_timer(cx: &mut Context, delay: Duration) -> TimerId {
    let timer = cx.set_timer(delay);
    cx.set_timer_ref(timer, false);
    timer
}

/// The hub service.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    router: HubRouter,
    /// Unix-socket peers seen so far; their session ids are `unix:1`, `unix:2`, ...
    unix_peers: u64,
    /// Connections seen so far: the next member's `seq`.
    connections: u64,
    /// Where each outgoing line is built (so a reply costs no allocation once it has grown).
    out: Vec<u8>,
    /// Registration deadlines in connection order. All share one duration, so the queue is
    /// sorted by deadline and one timer (for the head) serves them all; registered or gone
    /// clients are skipped when their turn comes.
    deadlines: VecDeque<(Duration, SocketId)>,
    /// The timer armed for the head of `deadlines`.
    deadline_timer: Option<TimerId>,
    /// Rate limit for logging client `info` messages.
    info_log: LogBudget,
    /// The `--hub-token` secret, as digests.
    token: Option<TokenCheck>,
    /// Failed token checks per source, and the sources refused for a while.
    throttle: AuthThrottle,
    /// Rate limit for logging failed and throttled token checks.
    auth_log: LogBudget,
    /// Rate limit for logging sources being blocked (apart, so a flood of failures cannot hide them).
    block_log: LogBudget,
    /// The `online`/`offline` notices being coalesced.
    presence: Presence,
}

/// Most client `info` messages logged per second; the rest are counted.
const INFO_LOG_PER_SECOND: u32 = 20;
/// Longest part of one `info` message that is logged.
const INFO_LOG_MAX_BYTES: usize = 1024;
/// Most failed or throttled token checks logged per second; the rest are counted.
const AUTH_LOG_PER_SECOND: u32 = 5;

impl Hub {
    /// A hub with no clients yet.
    pub fn new(config: HubConfig) -> Self {
        Hub {
            token: config.token.as_deref().map(TokenCheck::new),
            config,
            router: HubRouter::default(),
            unix_peers: 0,
            connections: 0,
            out: Vec::new(),
            deadlines: VecDeque::new(),
            deadline_timer: None,
            info_log: LogBudget::new(INFO_LOG_PER_SECOND),
            throttle: AuthThrottle::default(),
            auth_log: LogBudget::new(AUTH_LOG_PER_SECOND),
            block_log: LogBudget::new(AUTH_LOG_PER_SECOND),
            presence: Presence::default(),
        }
    }

    /// Connections currently in the hub (authenticated or not).
    pub fn connected(&self) -> usize {
        self.router.members.len()
    }

    /// The member joins the visible hub: listed, and sent broadcasts and notices from now on.
    fn authenticate(&mut self, socket: SocketId) {
        let mark = self.presence.mark();
        let Some(member) = self.router.members.get_mut(socket) else { return };
        member.authed = true;
        member.presence = mark;
        self.router.listed.insert(member.seq, socket);
    }

    /// Handles one frame. Returns false once the client has been disconnected, so the rest of
    /// the read is ignored.
    fn on_frame(&mut self, cx: &mut Context, socket: SocketId, frame: Frame<'_>) -> bool {
        let parsed = crate::wire::hub::parse(frame);
        let Some(member) = self.router.members.get(socket) else { return false };
        if !member.authed && !self.check_token(cx, socket, &parsed) {
            return false;
        }
        match parsed {
            Parsed::Object(fields) => self.handle(cx, socket, &fields),
            other => {
                if let Some(refusal) = other.refusal() {
                    self.refuse(cx, socket, &refusal);
                }
            }
        }
        true
    }

    /// The first frame with `--hub-token` set: a `sync` carrying the token lets the client in;
    /// anything else is a failed check, counted, logged within a budget and held against its
    /// source, and the connection is closed. Returns whether the client is in.
    fn check_token(&mut self, cx: &mut Context, socket: SocketId, parsed: &Parsed<'_>) -> bool {
        let Some(check) = &self.token else { return true };
        let authed = match parsed {
            Parsed::Object(fields) => fields.is_sync_with_token(|t| check.matches(t)),
            _ => false,
        };
        let source = Source::of(cx.remote_address(socket));
        if authed {
            if let Some(source) = source {
                self.throttle.succeeded(source);
            }
            self.authenticate(socket);
            return true;
        }
        cx.stats_mut().auth_failures += 1;
        let now = cx.elapsed();
        let failure = source.map(|s| (s, self.throttle.failed(s, now)));
        let peer = self.router.members.get(socket).map_or("?", |m| m.session_id.as_str());
        match failure {
            Some((source, Failure::Blocked)) => {
                if let Some(dropped) = self.block_log.admit(now) {
                    log::warn!(
                        "hub: {peer} failed the token check; blocking {source} for {}s after {} failures{}",
                        auth::BLOCK_FOR.as_secs(),
                        auth::FAILURES_ALLOWED + 1,
                        not_logged(dropped)
                    );
                }
            }
            failure => {
                if let Some(dropped) = self.auth_log.admit(now) {
                    let more = not_logged(dropped);
                    match failure {
                        Some((source, Failure::Counted(n))) => {
                            log::warn!(
                                "hub: {peer} failed the token check ({n} from {source} recently){more}"
                            )
                        }
                        _ => log::warn!("hub: {peer} failed the token check{more}"),
                    }
                }
            }
        }
        let reason = "the first frame must be a sync carrying the token";
        self.hang_up(cx, socket, ErrorCode::Unauthorized, reason);
        false
    }

    fn handle(&mut self, cx: &mut Context, socket: SocketId, fields: &Fields<'_>) {
        let kind = match Kind::of(fields) {
            Ok(kind) => kind,
            Err(refusal) => return self.refuse(cx, socket, &refusal),
        };
        // A request of a known type meets the registration deadline, even a malformed one.
        if let Some(m) = self.router.members.get_mut(socket) {
            m.useful = true;
        }
        let request = match Request::decode(kind, fields) {
            Ok(request) => request,
            Err(refusal) => return self.refuse(cx, socket, &refusal),
        };
        match request {
            Request::Sync { client_name, .. } => self.sync(cx, socket, &client_name),
            Request::Info { to, message } => self.info(cx, socket, to.as_deref(), message),
            Request::Broadcast { room, message } => self.broadcast(cx, socket, room.as_deref(), message),
            Request::Join { room } => self.join_or_leave(cx, socket, &room, true),
            Request::Leave { room } => self.join_or_leave(cx, socket, &room, false),
            Request::List { cursor, limit, rooms } => self.list(cx, socket, cursor, limit, rooms),
            Request::Stats => self.stats(cx, socket),
        }
    }

    /// Registers or renames this connection.
    fn sync(&mut self, cx: &mut Context, socket: SocketId, name: &str) {
        if self.router.names.get(name).is_some_and(|&holder| holder != socket) {
            return self.error(cx, socket, ErrorCode::NameTaken, &format!("name {name} is taken"));
        }
        let router = &mut self.router;
        let Some(me) = router.members.get_mut(socket) else { return };
        let previous = if me.name.as_deref() == Some(name) {
            None
        } else {
            let previous = me.name.replace(name.to_string());
            if let Some(old) = &previous {
                router.names.remove(old);
            }
            router.names.insert(name.to_string(), socket);
            previous
        };
        let session_id = me.session_id.as_str().into();
        Reply::Synced { client_name: name.into(), session_id }.encode(&mut self.out);
        send(cx, socket, &self.out);
        let session_id = me.session_id.as_str().into();
        Reply::Online { client_name: name.into(), session_id, previous: previous.as_deref().map(Into::into) }
            .encode(&mut self.out);
        let line: SharedBytes = Rc::from(&self.out[..]);
        if self.presence.event(cx, socket, &mut me.presence, true, &line) {
            self.router.broadcast(cx, socket, &line);
        }
    }

    /// A message to the server (logged) or to one named client.
    fn info(&mut self, cx: &mut Context, socket: SocketId, to: Option<&str>, message: &str) {
        let Some(me) = self.router.members.get(socket) else { return };
        let Some(to) = to else {
            if let Some(dropped) = self.info_log.admit(cx.elapsed()) {
                if dropped > 0 {
                    log::info!("{dropped} info messages not logged (over {INFO_LOG_PER_SECOND} a second)");
                }
                let mut cut = message.len().min(INFO_LOG_MAX_BYTES);
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                let more = if cut < message.len() {
                    format!("... ({} bytes)", message.len())
                } else {
                    String::new()
                };
                log::info!("info from {}: {}{more}", for_log(me.sender()), for_log(&message[..cut]));
            }
            return;
        };
        let Some(&dest) = self.router.names.get(to) else {
            return self.error(cx, socket, ErrorCode::NoSuchClient, &format!("no client named {to}"));
        };
        self.settle_presence(cx, socket);
        let Some(me) = self.router.members.get(socket) else { return };
        Reply::Info { from: me.sender().into(), message }.encode(&mut self.out);
        send(cx, dest, &self.out);
    }

    /// To every other client, or to a room's other members.
    fn broadcast(&mut self, cx: &mut Context, socket: SocketId, room: Option<&str>, message: &str) {
        self.settle_presence(cx, socket);
        let Some(me) = self.router.members.get(socket) else { return };
        Reply::Broadcast { from: me.sender().into(), room: room.map(Into::into), message }
            .encode(&mut self.out);
        let line: SharedBytes = Rc::from(&self.out[..]);
        match room {
            Some(room) => self.router.broadcast_room(cx, room, socket, &line),
            None => self.router.broadcast(cx, socket, &line),
        }
    }

    /// Ends the presence window early when it holds this member's own `online`: the others
    /// must hear it is online before they hear from it.
    fn settle_presence(&mut self, cx: &mut Context, socket: SocketId) {
        let held = self.router.members.get(socket).is_some_and(|m| self.presence.holds_own(&m.presence));
        if held {
            let recipients = self.router.authed().map(|(id, m)| (id, m.presence));
            self.presence.flush_now(cx, recipients);
        }
    }

    fn join_or_leave(&mut self, cx: &mut Context, socket: SocketId, room: &str, join: bool) {
        if join {
            let rooms = self.router.members.get(socket).map_or(0, |m| m.rooms.len());
            if rooms >= MAX_ROOMS_PER_CLIENT && !self.router.in_room(socket, room) {
                let reason = format!("too many rooms (max {MAX_ROOMS_PER_CLIENT} per client)");
                return self.error(cx, socket, ErrorCode::BadMessage, &reason);
            }
            self.router.join(socket, room);
        } else {
            self.router.leave_room(socket, room);
        }
        let room = room.into();
        let reply = if join { Reply::Joined { room } } else { Reply::Left { room } };
        reply.encode(&mut self.out);
        send(cx, socket, &self.out);
    }

    /// The server's counters, one line.
    fn stats(&mut self, cx: &mut Context, socket: SocketId) {
        let st = cx.stats();
        let counters = Counters {
            connections: cx.socket_count() as u64,
            hub_clients: self.router.members.len() as u64,
            accepted: st.accepted,
            rejected: st.rejected,
            rejected_no_fd: st.rejected_no_fd,
            output_limit_disconnects: st.output_limit_disconnects,
            input_limit_disconnects: st.input_limit_disconnects,
            timeout_disconnects: st.timeout_disconnects,
            input_total_disconnects: st.input_total_disconnects,
            input_timeout_disconnects: st.input_timeout_disconnects,
            bytes_in: st.bytes_in,
            bytes_out: st.bytes_out,
            auth_failures: st.auth_failures,
            auth_throttled: st.auth_throttled,
        };
        Reply::Stats(counters).encode(&mut self.out);
        send(cx, socket, &self.out);
    }

    /// One page of the authenticated clients, in connection order, from just after `cursor`.
    /// The bare `{"type":"list"}` is the first page with rooms, which for a hub that fits one
    /// page is the whole list, as it always was; with `cursor` or `limit`, rooms are listed
    /// only when asked for (`"rooms":true`). A page holds at most `limit` clients and stops
    /// once past [`MAX_LIST_BYTES`]; when clients remain, `next` is the cursor for the rest.
    fn list(
        &mut self,
        cx: &mut Context,
        socket: SocketId,
        cursor: Option<Cursor<'_>>,
        limit: Option<u64>,
        rooms: Option<bool>,
    ) {
        let with_rooms = rooms.unwrap_or(cursor.is_none() && limit.is_none());
        let limit = limit.map_or(DEFAULT_LIST_LIMIT, |n| n.min(MAX_LIST_LIMIT as u64) as usize);
        let start = match cursor.as_ref().and_then(Cursor::after) {
            None => Bound::Unbounded,
            Some(after) => Bound::Excluded(after),
        };
        let router = &self.router;
        let mut page = ListPage::start(&mut self.out, router.listed.len());
        let mut listed = 0;
        let mut next = None;
        for (&seq, &id) in router.listed.range((start, Bound::Unbounded)) {
            if listed == limit || page.len() >= MAX_LIST_BYTES {
                next = Some(seq - 1);
                break;
            }
            let Some(m) = router.members.get(id) else { continue };
            listed += 1;
            let rooms = with_rooms.then(|| m.rooms.iter().map(String::as_str));
            page.entry(m.name.as_deref(), &m.session_id, rooms);
        }
        page.finish(next);
        send(cx, socket, &self.out);
    }

    fn refuse(&mut self, cx: &mut Context, socket: SocketId, refusal: &Refusal) {
        self.error(cx, socket, refusal.code, &refusal.reason);
    }

    fn error(&mut self, cx: &mut Context, socket: SocketId, code: ErrorCode, reason: &str) {
        Reply::Error { code, reason: reason.into() }.encode(&mut self.out);
        send(cx, socket, &self.out);
    }

    /// Sends the error, ends the connection and removes the client at once, so the others
    /// hear "offline" now rather than when the socket finally closes.
    fn hang_up(&mut self, cx: &mut Context, socket: SocketId, code: ErrorCode, reason: &str) {
        self.error(cx, socket, code, reason);
        cx.end_within(socket, super::HANG_UP_GRACE);
        self.depart(cx, socket);
    }

    /// Removes the client, if still present; a named one is announced `offline`.
    fn depart(&mut self, cx: &mut Context, socket: SocketId) {
        let Some(mut gone) = self.router.remove(socket) else { return };
        let Some(name) = &gone.name else { return };
        let session_id = gone.session_id.as_str().into();
        Reply::Offline { client_name: name.as_str().into(), session_id }.encode(&mut self.out);
        let line: SharedBytes = Rc::from(&self.out[..]);
        if self.presence.event(cx, socket, &mut gone.presence, false, &line) {
            self.router.broadcast(cx, socket, &line);
        }
    }
}

/// `" (N more not logged)"` when a log budget dropped lines, else nothing.
fn not_logged(dropped: u64) -> String {
    if dropped == 0 {
        String::new()
    } else {
        format!(" ({dropped} more not logged)")
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

    /// A client connected: give it a session; it is announced once it `sync`s. With a token,
    /// a source that kept failing the check is refused for a while.
    fn on_connection(&mut self, cx: &mut Context, socket: SocketId) {
        if self.token.is_some() {
            let source = Source::of(cx.remote_address(socket));
            let blocked = source.and_then(|s| Some((s, self.throttle.blocked(s, cx.elapsed())?)));
            if let Some((source, wait)) = blocked {
                cx.stats_mut().auth_throttled += 1;
                if let Some(dropped) = self.auth_log.admit(cx.elapsed()) {
                    log::warn!(
                        "hub: refused a connection from {source}: blocked for failed token checks{}",
                        not_logged(dropped)
                    );
                }
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let reason = format!("too many failed token checks from this address; try again in {secs} s");
                self.error(cx, socket, ErrorCode::Unauthorized, &reason);
                cx.end_within(socket, super::HANG_UP_GRACE);
                return;
            }
        }
        let session_id = peer_label(cx, socket, &mut self.unix_peers);
        self.connections += 1;
        let member = Member {
            session_id,
            name: None,
            rooms: BTreeSet::new(),
            frames: FrameDecoder::new(self.config.max_frame),
            authed: false,
            useful: false,
            seq: self.connections,
            presence: Mark::default(),
        };
        self.router.members.insert(socket, member);
        if self.token.is_none() {
            self.authenticate(socket);
        }
        if let Some(limit) = self.config.register_timeout {
            self.deadlines.push_back((cx.elapsed() + limit, socket));
            if self.deadline_timer.is_none() {
                self.deadline_timer = Some(deadline_timer(cx, limit));
            }
        }
    }

    /// Bytes arrived: cut them into frames and act on each, in order.
    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        // A browser pointed at the hub: answered in HTTP, then hung up on.
        if cx.bytes_read(socket) == data.len() as u64 && super::http_probe::starts_with_request(data) {
            let local = cx.local_address(socket);
            let reply = super::http_probe::refusal(super::http_probe::Port::Hub, data, local.as_ref());
            send(cx, socket, &reply);
            cx.end_within(socket, super::HANG_UP_GRACE);
            return self.depart(cx, socket);
        }
        let Some(member) = self.router.members.get_mut(socket) else { return };
        // Borrowed out while its frames are handled, which needs the whole hub.
        let mut frames = std::mem::replace(&mut member.frames, FrameDecoder::new(0));
        let mut present = true;
        let result = frames.feed(data, |frame| {
            // Stop at once if handling made it leave, or the core destroyed it (output limit).
            if present {
                present = cx.is_open(socket) && self.on_frame(cx, socket, frame);
            }
        });
        if !present {
            return;
        }
        match result {
            Ok(()) => {
                if let Some(member) = self.router.members.get_mut(socket) {
                    member.frames = frames;
                }
            }
            Err(too_large) => {
                cx.stats_mut().input_limit_disconnects += 1;
                self.hang_up(cx, socket, ErrorCode::FrameTooLarge, &too_large.to_string())
            }
        }
    }

    /// The client sent FIN: it has left, and our side is ended. With half-open allowed
    /// (`--allow-half-open`) it stays registered and keeps receiving until it closes.
    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        if cx.allows_half_open(socket) {
            return;
        }
        self.depart(cx, socket);
        cx.end(socket);
    }

    /// The socket closed (any reason, including the output limit): it leaves if it had not.
    fn on_close(&mut self, cx: &mut Context, socket: SocketId) {
        self.depart(cx, socket);
    }

    /// A timer fired; if it is the registration deadline, close clients that missed it; if it
    /// ends a presence window, send what the window held. Returns whether the timer was the
    /// hub's.
    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) -> bool {
        if self.presence.is_timer(timer) {
            let recipients = self.router.authed().map(|(id, m)| (id, m.presence));
            self.presence.flush(cx, recipients);
            return true;
        }
        if self.deadline_timer != Some(timer) {
            return false;
        }
        self.deadline_timer = None;
        let now = cx.elapsed();
        while let Some(&(deadline, socket)) = self.deadlines.front() {
            if deadline > now {
                self.deadline_timer = Some(deadline_timer(cx, deadline - now));
                break;
            }
            self.deadlines.pop_front();
            let idle = self.router.members.get(socket).is_some_and(|m| !m.useful);
            if idle {
                cx.stats_mut().timeout_disconnects += 1;
                let reason = "no valid request within the registration timeout";
                self.hang_up(cx, socket, ErrorCode::RegisterTimeout, reason);
            }
        }
        true
    }

    /// The loop cut `socket` for its unfinished input: say why, and hang up.
    fn on_input_cut(&mut self, cx: &mut Context, socket: SocketId, cut: &crate::input_budget::InputCut) {
        let code = match cut {
            crate::input_budget::InputCut::OverTotal { .. } => ErrorCode::InputLimit,
            crate::input_budget::InputCut::Timeout { .. } => ErrorCode::InputTimeout,
        };
        self.hang_up(cx, socket, code, &cut.to_string());
    }

    /// Bytes of an unfinished frame held for `socket`, for the loop's input accounting.
    fn held_input(&self, socket: SocketId) -> Option<usize> {
        Some(self.router.members.get(socket).map_or(0, |m| m.frames.buffered()))
    }
}
