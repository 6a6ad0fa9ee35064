//! Hub: named clients exchanging JSON messages (a Node `net` JSON server's model), with rooms
//! (socket.io's everyday feature). Clients send JSON objects back to back or one per line; the
//! server writes one compact JSON object per line. The wire format is in `docs/protocol.md`.
//!
//! The hub never re-encodes a client's `message`: the frame is validated by serde_json as a
//! borrowed [`RawValue`], and `message` is relayed as the exact bytes the client sent. Every
//! message that goes to several clients is encoded once into [`SharedBytes`] and queued to each
//! by reference. A client that stops reading costs at most the listener's `max_buffer` of
//! queued output before the core disconnects it.

mod auth;
mod presence;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::ops::Bound;
use std::rc::Rc;
use std::time::Duration;

use serde_json::value::RawValue;

use crate::context::Context;
use crate::frame::{Frame, FrameDecoder, MAX_DEPTH};
use crate::handler::SocketId;
use crate::log_limit::LogBudget;
use crate::printable::{for_log, is_printable_name};
use crate::services::{peer_label, send, send_shared, Roster};
use crate::timers::TimerId;
use crate::write_queue::SharedBytes;

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

/// Longest client name and room name, in bytes.
const MAX_NAME: usize = 64;

/// Clients a `list` page holds unless the request asks for fewer (or more, up to
/// [`MAX_LIST_LIMIT`]).
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// Most clients one `list` page holds, whatever the request asks.
pub const MAX_LIST_LIMIT: usize = 1000;
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

/// The `code` of an error object; the set is fixed by the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorCode {
    BadJson,
    BadMessage,
    UnknownType,
    NameTaken,
    NoSuchClient,
    Unauthorized,
    FrameTooLarge,
    RegisterTimeout,
    InputLimit,
    InputTimeout,
}

impl ErrorCode {
    fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::NoSuchClient => "no_such_client",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::RegisterTimeout => "register_timeout",
            ErrorCode::InputLimit => "input_limit",
            ErrorCode::InputTimeout => "input_timeout",
        }
    }
}

const NOT_AN_OBJECT: &str = "expected an object with a string \"type\"";
/// Said of a string field holding a lone surrogate escape (`"\ud800"`): valid JSON, and
/// `JSON.parse` accepts it, but it is not Unicode text, so it can be no name.
const NOT_UNICODE: &str = "is not valid Unicode: it contains a lone surrogate escape (such as \\ud800)";

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

/// The fields of a request object the protocol reads, as raw JSON texts borrowed from the
/// frame (validated, never re-encoded).
#[derive(Debug, Default)]
struct Request<'a> {
    kind: Option<&'a str>,
    client_name: Option<&'a str>,
    message: Option<&'a str>,
    to: Option<&'a str>,
    room: Option<&'a str>,
    token: Option<&'a str>,
    cursor: Option<&'a str>,
    limit: Option<&'a str>,
    rooms: Option<&'a str>,
}

/// What a frame turned out to be.
#[derive(Debug)]
enum Parsed<'a> {
    /// Not valid JSON (or not UTF-8): `bad_json`.
    BadJson,
    /// Nested deeper than the framer passes on: `bad_json`, saying so.
    TooDeep,
    /// Valid JSON but an array: `bad_message`.
    NotObject,
    /// An object, with the fields we read.
    Object(Request<'a>),
}

/// Validates `frame` with serde_json and picks out the fields the protocol reads.
fn parse(frame: &[u8]) -> Parsed<'_> {
    let whole: &RawValue = match serde_json::from_slice(frame) {
        Ok(v) => v,
        Err(_) => return Parsed::BadJson,
    };
    let text = whole.get();
    if !text.starts_with('{') {
        return Parsed::NotObject;
    }
    let mut request = Request::default();
    for (key, value) in (ObjectMembers { text, at: 1 }) {
        // Later duplicates win, as with JSON.parse.
        let slot = match json_str(key).as_deref() {
            Some("type") => &mut request.kind,
            Some("clientName") => &mut request.client_name,
            Some("message") => &mut request.message,
            Some("to") => &mut request.to,
            Some("room") => &mut request.room,
            Some("token") => &mut request.token,
            Some("cursor") => &mut request.cursor,
            Some("limit") => &mut request.limit,
            Some("rooms") => &mut request.rooms,
            _ => continue,
        };
        *slot = Some(value);
    }
    Parsed::Object(request)
}

/// The top-level members of a JSON object as raw `(key, value)` texts.
///
/// serde_json (without serde's derive, which this crate does not depend on) cannot hand out
/// borrowed fields of an object, so we find them ourselves. It only ever runs on text that
/// serde_json has just validated, which makes it a boundary finder, not a parser; on anything
/// else it stops early and never panics.
struct ObjectMembers<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for ObjectMembers<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.text.as_bytes();
        let mut i = skip_ws(bytes, self.at);
        if bytes.get(i) == Some(&b',') {
            i = skip_ws(bytes, i + 1);
        }
        self.at = bytes.len();
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(bytes, i)?;
        let colon = skip_ws(bytes, key_end);
        if bytes.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(bytes, colon + 1);
        let value_end = value_end(bytes, value_start)?;
        self.at = value_end;
        // Every boundary is at an ASCII byte, so these are char boundaries.
        Some((self.text.get(i..key_end)?, self.text.get(value_start..value_end)?))
    }
}

/// The registration sweep's timer. Unreferenced: a pending deadline must not keep a
/// shutting-down server alive (it held SIGTERM for up to `--register-timeout`).
fn deadline_timer(cx: &mut Context, delay: Duration) -> TimerId {
    let timer = cx.set_timer(delay);
    cx.set_timer_ref(timer, false);
    timer
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// End (exclusive) of the JSON string whose opening quote is at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// End (exclusive) of the JSON value starting at `start`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while let Some(&b) = bytes.get(i) {
                match b {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = start;
            while bytes
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                i += 1;
            }
            Some(i)
        }
    }
}

/// The string a raw JSON text stands for, or `None` when it is not a string (or, see
/// [`string_field`], not Unicode). Borrowed unless it holds escapes (rare), which serde_json
/// decodes.
fn json_str(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// A string field of a request, or the reason to refuse it: absent or another type, or a
/// string that is not Unicode. The raw text was validated by serde_json with the whole frame,
/// so a string that still fails to decode holds a lone surrogate escape.
fn string_field<'a>(raw: Option<&'a str>, key: &str) -> Result<Cow<'a, str>, String> {
    let raw = raw.ok_or_else(|| format!("{key} must be a string"))?;
    if !raw.starts_with('"') {
        return Err(format!("{key} must be a string"));
    }
    json_str(raw).ok_or_else(|| format!("{key} {NOT_UNICODE}"))
}

/// A client or room name: a non-empty string of at most 64 bytes of printable text (no
/// control characters, tab included, and none of the separators or direction overrides that
/// could rewrite what another member's terminal shows).
fn name_field<'a>(raw: Option<&'a str>, key: &str) -> Result<Cow<'a, str>, String> {
    let shape = || format!("{key} must be a non-empty string of at most {MAX_NAME} bytes");
    let name = match string_field(raw, key) {
        Ok(name) => name,
        Err(_) if raw.is_none_or(|r| !r.starts_with('"')) => return Err(shape()),
        Err(unicode) => return Err(unicode),
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(shape());
    }
    if !is_printable_name(&name) {
        return Err(format!(
            "{key} must be printable text: no control characters (tab, CR, LF, ESC, ...), line \
             separators or direction overrides"
        ));
    }
    Ok(name)
}

/// Appends `s` as a JSON string, escaped as `JSON.stringify` does.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes one compact JSON object, keys in the order they are added, then `\n`. Key order is
/// part of the contract (clients compare lines byte for byte).
struct JsonLine<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> JsonLine<'o> {
    fn start(out: &'o mut Vec<u8>) -> Self {
        out.clear();
        out.push(b'{');
        JsonLine { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_json_str(self.out, key);
        self.out.push(b':');
    }

    fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        write_json_str(self.out, value);
        self
    }

    /// A value that is already JSON text (a client's `message`).
    fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
        self
    }

    fn end(self) {
        self.out.extend_from_slice(b"}\n");
    }
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

    /// A client connected: give it a session; it is announced once it `sync`s. With a token,
    /// a source that kept failing the check is refused for a while.
    pub fn on_connection(&mut self, cx: &mut Context, socket: SocketId) {
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

    /// The member joins the visible hub: listed, and sent broadcasts and notices from now on.
    fn authenticate(&mut self, socket: SocketId) {
        let mark = self.presence.mark();
        let Some(member) = self.router.members.get_mut(socket) else { return };
        member.authed = true;
        member.presence = mark;
        self.router.listed.insert(member.seq, socket);
    }

    /// A timer fired; if it is the registration deadline, close clients that missed it; if it
    /// ends a presence window, send what the window held. Returns whether the timer was the
    /// hub's.
    pub fn on_timer(&mut self, cx: &mut Context, timer: TimerId) -> bool {
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

    /// Bytes arrived: cut them into frames and act on each, in order.
    pub fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
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

    /// Bytes of an unfinished frame held for `socket`, for the loop's input accounting.
    pub fn held_input(&self, socket: SocketId) -> usize {
        self.router.members.get(socket).map_or(0, |m| m.frames.buffered())
    }

    /// The loop cut `socket` for its unfinished input: say why, and hang up.
    pub fn cut_input(&mut self, cx: &mut Context, socket: SocketId, cut: &crate::input_budget::InputCut) {
        let code = match cut {
            crate::input_budget::InputCut::OverTotal { .. } => ErrorCode::InputLimit,
            crate::input_budget::InputCut::Timeout { .. } => ErrorCode::InputTimeout,
        };
        self.hang_up(cx, socket, code, &cut.to_string());
    }

    /// The client sent FIN: it has left, and our side is ended. With half-open allowed
    /// (`--allow-half-open`) it stays registered and keeps receiving until it closes.
    pub fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        if cx.allows_half_open(socket) {
            return;
        }
        self.depart(cx, socket);
        cx.end(socket);
    }

    /// The socket closed (any reason, including the output limit): it leaves if it had not.
    pub fn on_close(&mut self, cx: &mut Context, socket: SocketId) {
        self.depart(cx, socket);
    }

    /// Handles one frame. Returns false once the client has been disconnected, so the rest of
    /// the read is ignored.
    fn on_frame(&mut self, cx: &mut Context, socket: SocketId, frame: Frame<'_>) -> bool {
        let parsed = match frame {
            Frame::Json(bytes) => parse(bytes),
            Frame::Malformed => Parsed::BadJson,
            Frame::TooDeep => Parsed::TooDeep,
        };
        let Some(member) = self.router.members.get(socket) else { return false };
        if !member.authed && !self.check_token(cx, socket, &parsed) {
            return false;
        }
        match parsed {
            Parsed::BadJson => self.error(cx, socket, ErrorCode::BadJson, "frame is not valid JSON"),
            Parsed::TooDeep => {
                let reason =
                    format!("frame is nested too deeply (at most {MAX_DEPTH} levels of arrays and objects)");
                self.error(cx, socket, ErrorCode::BadJson, &reason)
            }
            Parsed::NotObject => self.error(cx, socket, ErrorCode::BadMessage, NOT_AN_OBJECT),
            Parsed::Object(request) => self.handle(cx, socket, &request),
        }
        true
    }

    /// The first frame with `--hub-token` set: a `sync` carrying the token lets the client in;
    /// anything else is a failed check, counted, logged within a budget and held against its
    /// source, and the connection is closed. Returns whether the client is in.
    fn check_token(&mut self, cx: &mut Context, socket: SocketId, parsed: &Parsed<'_>) -> bool {
        let Some(check) = &self.token else { return true };
        let authed = match parsed {
            Parsed::Object(r) => {
                r.kind.and_then(json_str).as_deref() == Some("sync")
                    && r.token.and_then(json_str).is_some_and(|t| check.matches(&t))
            }
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

    fn handle(&mut self, cx: &mut Context, socket: SocketId, request: &Request<'_>) {
        let kind = match string_field(request.kind, "type") {
            Ok(kind) => kind,
            Err(_) if request.kind.is_none_or(|k| !k.starts_with('"')) => {
                return self.error(cx, socket, ErrorCode::BadMessage, NOT_AN_OBJECT)
            }
            Err(reason) => return self.error(cx, socket, ErrorCode::BadMessage, &reason),
        };
        if matches!(&*kind, "sync" | "info" | "broadcast" | "join" | "leave" | "list" | "stats") {
            if let Some(m) = self.router.members.get_mut(socket) {
                m.useful = true;
            }
        }
        match &*kind {
            "sync" => self.sync(cx, socket, request),
            "info" => self.info(cx, socket, request),
            "broadcast" => self.broadcast(cx, socket, request),
            "join" => self.join_or_leave(cx, socket, request, true),
            "leave" => self.join_or_leave(cx, socket, request, false),
            "list" => self.list(cx, socket, request),
            "stats" => self.stats(cx, socket),
            other => {
                let reason = format!("unknown message type {other}");
                self.error(cx, socket, ErrorCode::UnknownType, &reason);
            }
        }
    }

    /// Registers or renames this connection.
    fn sync(&mut self, cx: &mut Context, socket: SocketId, request: &Request<'_>) {
        let name = match name_field(request.client_name, "clientName") {
            Ok(name) => name,
            Err(reason) => return self.error(cx, socket, ErrorCode::BadMessage, &reason),
        };
        if self.router.names.get(&*name).is_some_and(|&holder| holder != socket) {
            return self.error(cx, socket, ErrorCode::NameTaken, &format!("name {name} is taken"));
        }
        let router = &mut self.router;
        let Some(me) = router.members.get_mut(socket) else { return };
        let previous = if me.name.as_deref() == Some(&*name) {
            None
        } else {
            let previous = me.name.replace(name.to_string());
            if let Some(old) = &previous {
                router.names.remove(old);
            }
            router.names.insert(name.to_string(), socket);
            previous
        };
        JsonLine::start(&mut self.out)
            .str("type", "synced")
            .str("clientName", &name)
            .str("sessionId", &me.session_id)
            .end();
        send(cx, socket, &self.out);
        let mut online = JsonLine::start(&mut self.out)
            .str("type", "online")
            .str("clientName", &name)
            .str("sessionId", &me.session_id);
        if let Some(old) = &previous {
            online = online.str("previous", old);
        }
        online.end();
        let line: SharedBytes = Rc::from(&self.out[..]);
        if self.presence.event(cx, socket, &mut me.presence, true, &line) {
            self.router.broadcast(cx, socket, &line);
        }
    }

    /// A message to the server (logged) or to one named client.
    fn info(&mut self, cx: &mut Context, socket: SocketId, request: &Request<'_>) {
        let Some(message) = request.message else {
            return self.error(cx, socket, ErrorCode::BadMessage, "info needs a message");
        };
        let Some(me) = self.router.members.get(socket) else { return };
        let Some(to) = request.to else {
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
        let to = match string_field(Some(to), "to") {
            Ok(to) => to,
            Err(reason) => return self.error(cx, socket, ErrorCode::BadMessage, &reason),
        };
        let Some(&dest) = self.router.names.get(&*to) else {
            return self.error(cx, socket, ErrorCode::NoSuchClient, &format!("no client named {to}"));
        };
        self.settle_presence(cx, socket);
        let Some(me) = self.router.members.get(socket) else { return };
        JsonLine::start(&mut self.out)
            .str("type", "info")
            .str("from", me.sender())
            .raw("message", message)
            .end();
        send(cx, dest, &self.out);
    }

    /// To every other client, or to a room's other members.
    fn broadcast(&mut self, cx: &mut Context, socket: SocketId, request: &Request<'_>) {
        let Some(message) = request.message else {
            return self.error(cx, socket, ErrorCode::BadMessage, "broadcast needs a message");
        };
        self.settle_presence(cx, socket);
        let Some(me) = self.router.members.get(socket) else { return };
        let line = JsonLine::start(&mut self.out).str("type", "broadcast").str("from", me.sender());
        let Some(room) = request.room else {
            line.raw("message", message).end();
            let line: SharedBytes = Rc::from(&self.out[..]);
            return self.router.broadcast(cx, socket, &line);
        };
        let room = match name_field(Some(room), "room") {
            Ok(room) => room,
            Err(reason) => return self.error(cx, socket, ErrorCode::BadMessage, &reason),
        };
        line.str("room", &room).raw("message", message).end();
        let line: SharedBytes = Rc::from(&self.out[..]);
        self.router.broadcast_room(cx, &room, socket, &line);
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

    fn join_or_leave(&mut self, cx: &mut Context, socket: SocketId, request: &Request<'_>, join: bool) {
        let room = match name_field(request.room, "room") {
            Ok(room) => room,
            Err(reason) => return self.error(cx, socket, ErrorCode::BadMessage, &reason),
        };
        if join {
            let rooms = self.router.members.get(socket).map_or(0, |m| m.rooms.len());
            if rooms >= MAX_ROOMS_PER_CLIENT && !self.router.in_room(socket, &room) {
                let reason = format!("too many rooms (max {MAX_ROOMS_PER_CLIENT} per client)");
                return self.error(cx, socket, ErrorCode::BadMessage, &reason);
            }
            self.router.join(socket, &room);
        } else {
            self.router.leave_room(socket, &room);
        }
        let kind = if join { "joined" } else { "left" };
        JsonLine::start(&mut self.out).str("type", kind).str("room", &room).end();
        send(cx, socket, &self.out);
    }

    /// The server's counters (the "Counters" promise in `docs/operations.md`), one line.
    fn stats(&mut self, cx: &mut Context, socket: SocketId) {
        let st = cx.stats().clone();
        let mut line = JsonLine::start(&mut self.out).str("type", "stats");
        for (key, value) in [
            ("connections", cx.socket_count() as u64),
            ("hubClients", self.router.members.len() as u64),
            ("accepted", st.accepted),
            ("rejected", st.rejected),
            ("rejectedNoFd", st.rejected_no_fd),
            ("outputLimitDisconnects", st.output_limit_disconnects),
            ("inputLimitDisconnects", st.input_limit_disconnects),
            ("timeoutDisconnects", st.timeout_disconnects),
            ("inputTotalDisconnects", st.input_total_disconnects),
            ("inputTimeoutDisconnects", st.input_timeout_disconnects),
            ("bytesIn", st.bytes_in),
            ("bytesOut", st.bytes_out),
            ("authFailures", st.auth_failures),
            ("authThrottled", st.auth_throttled),
        ] {
            line = line.raw(key, &value.to_string());
        }
        line.end();
        send(cx, socket, &self.out);
    }

    /// One page of the authenticated clients, in connection order, from just after `cursor`.
    /// The bare `{"type":"list"}` is the first page with rooms, which for a hub that fits one
    /// page is the whole list, as it always was; with `cursor` or `limit`, rooms are listed
    /// only when asked for (`"rooms":true`). A page holds at most `limit` clients and stops
    /// once past [`MAX_LIST_BYTES`]; when clients remain, `next` is the cursor for the rest.
    fn list(&mut self, cx: &mut Context, socket: SocketId, request: &Request<'_>) {
        let paged = request.cursor.is_some() || request.limit.is_some();
        let with_rooms = match request.rooms {
            None => !paged,
            Some("true") => true,
            Some("false") => false,
            Some(_) => return self.error(cx, socket, ErrorCode::BadMessage, "rooms must be true or false"),
        };
        let limit = match request.limit {
            None => DEFAULT_LIST_LIMIT,
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if n > 0 => n.min(MAX_LIST_LIMIT as u64) as usize,
                _ => {
                    let reason =
                        format!("limit must be a positive integer (pages hold at most {MAX_LIST_LIMIT})");
                    return self.error(cx, socket, ErrorCode::BadMessage, &reason);
                }
            },
        };
        let start = match request.cursor {
            None | Some("null") => Bound::Unbounded,
            Some(raw) => match json_str(raw).and_then(|c| c.parse::<u64>().ok()) {
                Some(after) => Bound::Excluded(after),
                None => {
                    let reason = "cursor must be the next value of an earlier list reply";
                    return self.error(cx, socket, ErrorCode::BadMessage, reason);
                }
            },
        };
        let router = &self.router;
        let out = &mut self.out;
        out.clear();
        let _ = write!(out, "{{\"type\":\"list\",\"count\":{},\"clients\":[", router.listed.len());
        let mut listed = 0;
        let mut next = None;
        for (&seq, &id) in router.listed.range((start, Bound::Unbounded)) {
            if listed == limit || out.len() >= MAX_LIST_BYTES {
                next = Some(seq - 1);
                break;
            }
            let Some(m) = router.members.get(id) else { continue };
            if listed > 0 {
                out.push(b',');
            }
            listed += 1;
            out.extend_from_slice(b"{\"clientName\":");
            match &m.name {
                Some(name) => write_json_str(out, name),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"sessionId\":");
            write_json_str(out, &m.session_id);
            if with_rooms {
                out.extend_from_slice(b",\"rooms\":[");
                for (j, room) in m.rooms.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_json_str(out, room);
                }
                out.push(b']');
            }
            out.push(b'}');
        }
        out.push(b']');
        if let Some(next) = next {
            let _ = write!(out, ",\"next\":\"{next}\"");
        }
        out.extend_from_slice(b"}\n");
        send(cx, socket, &self.out);
    }

    fn error(&mut self, cx: &mut Context, socket: SocketId, code: ErrorCode, reason: &str) {
        JsonLine::start(&mut self.out)
            .str("type", "error")
            .str("code", code.as_str())
            .str("reason", reason)
            .end();
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
        JsonLine::start(&mut self.out)
            .str("type", "offline")
            .str("clientName", name)
            .str("sessionId", &gone.session_id)
            .end();
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
        crate::serve::refusal_of(crate::serve::ServiceKind::Hub, max)
    }

    fn on_connection(&mut self, cx: &mut crate::context::Context, socket: crate::handler::SocketId) {
        Hub::on_connection(self, cx, socket)
    }

    fn on_data(&mut self, cx: &mut crate::context::Context, socket: crate::handler::SocketId, data: &[u8]) {
        Hub::on_data(self, cx, socket, data)
    }

    fn on_end(&mut self, cx: &mut crate::context::Context, socket: crate::handler::SocketId) {
        Hub::on_end(self, cx, socket)
    }

    // Drain needs nothing: hub never pauses a reader, and a client that does not read is
    // bounded by the core's output limit instead.

    fn on_close(&mut self, cx: &mut crate::context::Context, socket: crate::handler::SocketId) {
        Hub::on_close(self, cx, socket)
    }

    fn on_timer(&mut self, cx: &mut crate::context::Context, timer: crate::timers::TimerId) -> bool {
        Hub::on_timer(self, cx, timer)
    }

    fn on_input_cut(
        &mut self,
        cx: &mut crate::context::Context,
        socket: crate::handler::SocketId,
        cut: &crate::input_budget::InputCut,
    ) {
        self.cut_input(cx, socket, cut)
    }

    fn held_input(&self, socket: crate::handler::SocketId) -> Option<usize> {
        Some(Hub::held_input(self, socket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(frame: &str) -> Request<'_> {
        match parse(frame.as_bytes()) {
            Parsed::Object(r) => r,
            other => panic!("{frame}: {other:?}"),
        }
    }

    #[test]
    fn picks_fields_and_keeps_raw_values() {
        let r = fields(r#" { "type" : "sync" , "message" : {"a": [1, "}"]} ,"x":[{}],"clientName":"n"}"#);
        assert_eq!(r.kind, Some(r#""sync""#));
        assert_eq!(r.message, Some(r#"{"a": [1, "}"]}"#));
        assert_eq!(r.client_name, Some(r#""n""#));
        assert_eq!(r.to, None);
        let r = fields(r#"{"typ\u0065":"list","type":"x","message":-1.5e3,"to":null}"#);
        assert_eq!(r.kind, Some(r#""x""#), "escaped key matches; the later duplicate wins");
        assert_eq!(r.message, Some("-1.5e3"));
        assert_eq!(r.to, Some("null"));
        assert_eq!(fields("{}").kind, None);
    }

    #[test]
    fn classifies_frames() {
        assert!(matches!(parse(b"[1,2]"), Parsed::NotObject));
        assert!(matches!(parse(b"[1,}"), Parsed::BadJson));
        assert!(matches!(parse(b"{\"a\":1,}"), Parsed::BadJson));
        assert!(matches!(parse(b"{\"a\":\"\xff\"}"), Parsed::BadJson));
        assert!(matches!(parse(b"{\"a\":\"\x01\"}"), Parsed::BadJson));
    }

    #[test]
    fn strings() {
        assert_eq!(json_str(r#""abc""#).as_deref(), Some("abc"));
        assert_eq!(json_str(r#""a\"b\u00e9""#).as_deref(), Some("a\"bé"));
        assert_eq!(json_str("12"), None);
        assert_eq!(json_str("\""), None);
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"\\\n\r\t\u{8}\u{c}\u{1}\u{1f}é/\u{7f}");
        assert_eq!(String::from_utf8_lossy(&out), "\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001fé/\u{7f}\"");
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Floats only from a fixed set: serde_json's default float parsing is not
            // round-trip exact, which would fail the comparison for reasons not ours.
            prop_oneof![Just(0.5), Just(-1.25e-3), Just(1e300)].prop_map(Value::from),
            "[ -~\\u{0}-\\u{1f}\\u{e9}\\u{2028}\\u{1f600}{}\\[\\]\"\\\\]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::vec(("(type|message|to|x|\\{\\})", inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever object serde_json writes (compact or pretty), the fields we pick are the
        /// ones serde_json itself sees, as raw texts that parse back to the same values.
        #[test]
        fn picks_the_same_fields_as_serde_json(
            fields in proptest::collection::vec(("(type|clientName|message|to|room|token|other)", json_value()), 0..8),
            pretty in proptest::prelude::any::<bool>(),
        ) {
            let object: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
            let value = serde_json::Value::Object(object.clone());
            let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) };
            let text = text.expect("serialisable");
            let Parsed::Object(r) = parse(text.as_bytes()) else { panic!("not an object: {text}") };
            let got = [
                ("type", r.kind), ("clientName", r.client_name), ("message", r.message),
                ("to", r.to), ("room", r.room), ("token", r.token),
            ];
            for (key, raw) in got {
                let raw: Option<serde_json::Value> = raw.map(|t| serde_json::from_str(t).expect("raw field is JSON"));
                proptest::prop_assert_eq!(raw.as_ref(), object.get(key), "{}", key);
            }
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut frame = b"{".to_vec();
            frame.extend_from_slice(&bytes);
            let _ = parse(&frame);
            let _ = parse(&bytes);
        }
    }
}
