//! The hub itself: members, names, rooms, requests and replies, whatever transport carries
//! each member. A transport hands it members ([`HubCore::admit`]), their requests
//! ([`HubCore::on_request`]) and their departures; the core answers through each member's
//! [`Link`] and shares names and cross-node delivery through its [`Bus`].

use std::collections::VecDeque;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::rc::Rc;
use std::time::Duration;

use super::auth::{self, AuthThrottle, Failure, Source, TokenCheck};
use super::presence::{Mark, Presence};
use super::{HubConfig, DEFAULT_LIST_LIMIT, MAX_LIST_BYTES, MAX_ROOMS_PER_CLIENT};
use crate::addr::SocketAddress;
use crate::bus::{Audience, Bus, Claim, Holder, Published};
use crate::context::Context;
use crate::frame::Frame;
use crate::log_limit::LogBudget;
use crate::printable::for_log;
use crate::services::member::{self, Link, MemberId, Outgoing};
use crate::services::{peer_label, Roster, HANG_UP_GRACE};
use crate::timers::TimerId;
use crate::wire::hub::{
    Counters, Cursor, ErrorCode, Fields, Kind, ListPage, Parsed, Refusal, Reply, Request, MAX_LIST_LIMIT,
};
use crate::write_queue::SharedBytes;

mod remote;

/// The `list` cursor of the first member of other nodes (their position counts from here):
/// past any admission sequence number of this node.
const ELSEWHERE_CURSOR: u64 = 1 << 62;

/// One hub member.
#[derive(Debug)]
struct Member {
    /// How it is reached.
    link: Link,
    /// `remoteAddress:remotePort` or `unix:<n>`; fixed for the member's life.
    session_id: String,
    /// The name it registered with `sync`, if any.
    name: Option<String>,
    /// Rooms it joined; sorted, as `list` reports them.
    rooms: BTreeSet<String>,
    /// False until the token-carrying `sync` when `--hub-token` is set; such a member is
    /// skipped by broadcasts and `list`.
    authed: bool,
    /// Set by the first request of a known type: the registration deadline is met. A
    /// listen-only client that just joins a room is legitimate; junk or a frame that never
    /// completes (slowloris) is not.
    useful: bool,
    /// Admission sequence number: `list`'s order and its cursor.
    seq: u64,
    /// Which presence notices of the current window are news to it.
    presence: Mark,
    /// Where it connects from, for the token throttle.
    source: Option<Source>,
}

impl Member {
    /// SENDER in the protocol: the name, or the session id before `sync`.
    fn sender(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.session_id)
    }
}

/// Who is here and how to reach them: members in admission order and the room table. Every
/// lookup a message needs is O(1); only fan-out walks members.
#[derive(Debug, Default)]
struct HubRouter {
    members: Roster<Member>,
    /// Room to its members; a room exists while it has a member.
    rooms: HashMap<String, HashSet<MemberId>>,
    /// The members `list` shows (authenticated ones) by sequence number: a page starts with
    /// an O(log n) seek to its cursor, and a cursor stays valid when the member it names has
    /// left.
    listed: BTreeMap<u64, MemberId>,
}

impl HubRouter {
    /// Delivers `message` to every authenticated member but `except`.
    fn broadcast(&self, cx: &mut Context, except: Option<MemberId>, message: &Outgoing<'_>) {
        for (id, m) in self.authed() {
            if Some(id) != except {
                member::deliver(cx, m.link, message);
            }
        }
    }

    /// Delivers `message` to the members of `room` but `except`.
    fn broadcast_room(&self, cx: &mut Context, room: &str, except: Option<MemberId>, message: &Outgoing<'_>) {
        for &id in self.rooms.get(room).into_iter().flatten() {
            if Some(id) != except {
                if let Some(m) = self.members.get(id) {
                    member::deliver(cx, m.link, message);
                }
            }
        }
    }

    fn in_room(&self, id: MemberId, room: &str) -> bool {
        self.members.get(id).is_some_and(|m| m.rooms.contains(room))
    }

    fn join(&mut self, id: MemberId, room: &str) {
        let Some(member) = self.members.get_mut(id) else { return };
        if !member.rooms.insert(room.to_string()) {
            return;
        }
        match self.rooms.get_mut(room) {
            Some(members) => {
                members.insert(id);
            }
            None => {
                self.rooms.insert(room.to_string(), HashSet::from([id]));
            }
        }
    }

    fn leave_room(&mut self, id: MemberId, room: &str) {
        let Some(member) = self.members.get_mut(id) else { return };
        if member.rooms.remove(room) {
            self.forget_room_member(room, id);
        }
    }

    fn forget_room_member(&mut self, room: &str, id: MemberId) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// Authenticated members: the recipients of broadcasts and presence notices.
    fn authed(&self) -> impl Iterator<Item = (MemberId, &Member)> {
        self.members.iter().filter(|(_, m)| m.authed)
    }

    /// Presence recipients with their marks.
    fn marks(&self) -> impl Iterator<Item = (MemberId, Link, Mark)> + '_ {
        self.authed().map(|(id, m)| (id, m.link, m.presence))
    }

    /// Takes the member out of every table.
    fn remove(&mut self, id: MemberId) -> Option<Member> {
        let member = self.members.remove(id)?;
        self.listed.remove(&member.seq);
        for room in &member.rooms {
            self.forget_room_member(room, id);
        }
        Some(member)
    }
}

/// The registration sweep's timer. Unreferenced: a pending deadline must not keep a
/// shutting-down server alive.
fn deadline_timer(cx: &mut Context, delay: Duration) -> TimerId {
    let timer = cx.set_timer(delay);
    cx.set_timer_ref(timer, false);
    timer
}

/// The hub's log lines name the hub, whichever of its modules writes them.
const LOG_TARGET: &str = "netloop::services::hub";

/// Most client `info` messages logged per second; the rest are counted.
const INFO_LOG_PER_SECOND: u32 = 20;
/// Longest part of one `info` message that is logged.
const INFO_LOG_MAX_BYTES: usize = 1024;
/// Most failed or throttled token checks logged per second; the rest are counted.
const AUTH_LOG_PER_SECOND: u32 = 5;

/// The hub's state and rules, apart from any transport.
#[derive(Debug)]
pub struct HubCore {
    config: HubConfig,
    router: HubRouter,
    /// Names, and everything the members of other nodes must hear.
    bus: Box<dyn Bus>,
    /// Unix-socket peers seen so far; their session ids are `unix:1`, `unix:2`, ...
    unix_peers: u64,
    /// Members admitted so far: the next member's `seq`.
    admitted: u64,
    /// Where each outgoing message is built (so a reply costs no allocation once it has grown).
    out: Vec<u8>,
    /// Registration deadlines in admission order. All share one duration, so the queue is
    /// sorted by deadline and one timer (for the head) serves them all; registered or gone
    /// members are skipped when their turn comes.
    deadlines: VecDeque<(Duration, MemberId)>,
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
    /// What the bus needs kept here: requests held while a `sync` is decided, presence from
    /// other nodes.
    remote: remote::Remote,
}

impl HubCore {
    /// A hub with no members, sharing names and delivery through `bus`.
    pub fn new(config: HubConfig, bus: Box<dyn Bus>) -> Self {
        HubCore {
            token: config.token.as_deref().map(TokenCheck::new),
            config,
            router: HubRouter::default(),
            bus,
            unix_peers: 0,
            admitted: 0,
            out: Vec::new(),
            deadlines: VecDeque::new(),
            deadline_timer: None,
            info_log: LogBudget::new(INFO_LOG_PER_SECOND),
            throttle: AuthThrottle::default(),
            auth_log: LogBudget::new(AUTH_LOG_PER_SECOND),
            block_log: LogBudget::new(AUTH_LOG_PER_SECOND),
            presence: Presence::default(),
            remote: remote::Remote::default(),
        }
    }

    /// Members here (authenticated or not).
    pub fn members(&self) -> usize {
        self.router.members.len()
    }

    /// The longest frame a member may send (`--max-frame`), for transports' decoders.
    pub fn max_frame(&self) -> usize {
        self.config.max_frame
    }

    /// Whether `member` is still here.
    pub fn is_member(&self, member: MemberId) -> bool {
        self.router.members.get(member).is_some()
    }

    /// A new member reached through `link`, connecting from `peer`. It gets a session id; it
    /// is announced once it `sync`s. With a token, a source that kept failing the check is
    /// refused for a while: it is told why and hung up on, and `None` is returned.
    pub fn admit(&mut self, cx: &mut Context, link: Link, peer: Option<SocketAddress>) -> Option<MemberId> {
        let source = Source::of(peer.clone());
        if self.token.is_some() {
            let blocked = source.and_then(|s| Some((s, self.throttle.blocked(s, cx.elapsed())?)));
            if let Some((source, wait)) = blocked {
                cx.stats_mut().auth_throttled += 1;
                if let Some(dropped) = self.auth_log.admit(cx.elapsed()) {
                    log::warn!(target: LOG_TARGET,
                        "hub: refused a connection from {source}: blocked for failed token checks{}",
                        not_logged(dropped)
                    );
                }
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let reason = format!("too many failed token checks from this address; try again in {secs} s");
                Reply::Error { code: ErrorCode::Unauthorized, reason: reason.into() }.encode(&mut self.out);
                member::send(cx, link, &Outgoing::new("error", &self.out));
                member::hang_up(cx, link, HANG_UP_GRACE);
                return None;
            }
        }
        let session_id = peer_label(peer, &mut self.unix_peers);
        self.admitted += 1;
        let member = Member {
            link,
            session_id,
            name: None,
            rooms: BTreeSet::new(),
            authed: false,
            useful: false,
            seq: self.admitted,
            presence: Mark::default(),
            source,
        };
        let id = self.router.members.insert(member);
        if self.token.is_none() {
            self.authenticate(cx, id);
        }
        if let Some(limit) = self.config.register_timeout {
            self.deadlines.push_back((cx.elapsed() + limit, id));
            if self.deadline_timer.is_none() {
                self.deadline_timer = Some(deadline_timer(cx, limit));
            }
        }
        Some(id)
    }

    /// The member is now reached through `link` (its transport changed under it).
    pub fn relink(&mut self, member: MemberId, link: Link) {
        if let Some(m) = self.router.members.get_mut(member) {
            m.link = link;
        }
    }

    /// Handles one frame from `member`. Returns false once the member has been hung up on,
    /// so the rest of its input is ignored.
    pub fn on_request(&mut self, cx: &mut Context, member: MemberId, frame: Frame<'_>) -> bool {
        if self.remote.hold(member, &frame) {
            return true;
        }
        let parsed = crate::wire::hub::parse(frame);
        let Some(m) = self.router.members.get(member) else { return false };
        if !m.authed && !self.check_token(cx, member, &parsed) {
            return false;
        }
        match parsed {
            Parsed::Object(fields) => self.handle(cx, member, &fields),
            other => {
                if let Some(refusal) = other.refusal() {
                    self.refuse(cx, member, &refusal);
                }
            }
        }
        true
    }

    /// The member joins the visible hub: listed, and sent broadcasts and notices from now on.
    fn authenticate(&mut self, cx: &mut Context, id: MemberId) {
        let mark = self.presence.mark();
        let Some(member) = self.router.members.get_mut(id) else { return };
        member.authed = true;
        member.presence = mark;
        self.router.listed.insert(member.seq, id);
        self.tell_bus(cx, id);
    }

    /// The first frame with `--hub-token` set: a `sync` carrying the token lets the member in;
    /// anything else is a failed check, counted, logged within a budget and held against its
    /// source, and the member is hung up on. Returns whether the member is in.
    fn check_token(&mut self, cx: &mut Context, id: MemberId, parsed: &Parsed<'_>) -> bool {
        let Some(check) = &self.token else { return true };
        let authed = match parsed {
            Parsed::Object(fields) => fields.is_sync_with_token(|t| check.matches(t)),
            _ => false,
        };
        let Some(member) = self.router.members.get(id) else { return false };
        let source = member.source;
        if authed {
            if let Some(source) = source {
                self.throttle.succeeded(source);
            }
            self.authenticate(cx, id);
            return true;
        }
        cx.stats_mut().auth_failures += 1;
        let now = cx.elapsed();
        let failure = source.map(|s| (s, self.throttle.failed(s, now)));
        let peer = member.session_id.as_str();
        match failure {
            Some((source, Failure::Blocked)) => {
                if let Some(dropped) = self.block_log.admit(now) {
                    log::warn!(target: LOG_TARGET,
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
                            log::warn!(target: LOG_TARGET,
                                "hub: {peer} failed the token check ({n} from {source} recently){more}"
                            )
                        }
                        _ => log::warn!(target: LOG_TARGET, "hub: {peer} failed the token check{more}"),
                    }
                }
            }
        }
        let reason = "the first frame must be a sync carrying the token";
        self.hang_up(cx, id, ErrorCode::Unauthorized, reason);
        false
    }

    fn handle(&mut self, cx: &mut Context, id: MemberId, fields: &Fields<'_>) {
        let kind = match Kind::of(fields) {
            Ok(kind) => kind,
            Err(refusal) => return self.refuse(cx, id, &refusal),
        };
        // A request of a known type meets the registration deadline, even a malformed one.
        if let Some(m) = self.router.members.get_mut(id) {
            m.useful = true;
        }
        let request = match Request::decode(kind, fields) {
            Ok(request) => request,
            Err(refusal) => return self.refuse(cx, id, &refusal),
        };
        match request {
            Request::Sync { client_name, .. } => self.sync(cx, id, &client_name),
            Request::Info { to, message } => self.info(cx, id, to.as_deref(), message),
            Request::Broadcast { room, message } => self.broadcast(cx, id, room.as_deref(), message),
            Request::Join { room } => self.join_or_leave(cx, id, &room, true),
            Request::Leave { room } => self.join_or_leave(cx, id, &room, false),
            Request::List { cursor, limit, rooms } => self.list(cx, id, cursor, limit, rooms),
            Request::Stats => self.stats(cx, id),
        }
    }

    /// Registers or renames this member, once the bus grants it the name.
    fn sync(&mut self, cx: &mut Context, id: MemberId, name: &str) {
        match self.bus.claim(cx, id, name) {
            Claim::Taken => self.error(cx, id, ErrorCode::NameTaken, &format!("name {name} is taken")),
            Claim::Granted => self.name_granted(cx, id, name),
            // A bus that asks elsewhere answers through `name_granted` or `name_refused`.
            Claim::Pending => self.defer_until_named(cx, id),
        }
    }

    /// The bus granted `name` to `id`: the member is registered (or renamed, giving its old
    /// name back), told so, and everyone hears it is `online`.
    pub fn name_granted(&mut self, cx: &mut Context, id: MemberId, name: &str) {
        let Some(me) = self.router.members.get_mut(id) else {
            // Gone while the bus was asked.
            return self.bus.release(cx, id, name);
        };
        let previous =
            if me.name.as_deref() == Some(name) { None } else { me.name.replace(name.to_string()) };
        if let Some(old) = &previous {
            self.bus.release(cx, id, old);
        }
        // The other nodes' directories know the name before they hear it is online.
        self.tell_bus(cx, id);
        let Some(me) = self.router.members.get(id) else { return };
        let (link, session_id) = (me.link, me.session_id.as_str());
        let reply = Reply::Synced { client_name: name.into(), session_id: session_id.into() };
        reply.encode(&mut self.out);
        member::send(cx, link, &Outgoing::new(reply.kind(), &self.out));
        let notice = Reply::Online {
            client_name: name.into(),
            session_id: session_id.into(),
            previous: previous.as_deref().map(Into::into),
        };
        notice.encode(&mut self.out);
        let line: SharedBytes = Rc::from(&self.out[..]);
        let Some(me) = self.router.members.get_mut(id) else { return };
        let now = self.presence.event(cx, id, &mut me.presence, true, "online", &line);
        let message = Outgoing::new("online", &line).with_line(&line);
        if now {
            self.router.broadcast(cx, Some(id), &message);
        }
        self.publish(cx, Audience::Everyone, &message);
    }

    /// The bus refused `name` to `id` (another node's member holds it).
    pub fn name_refused(&mut self, cx: &mut Context, id: MemberId, name: &str) {
        self.error(cx, id, ErrorCode::NameTaken, &format!("name {name} is taken"));
    }

    /// A message to the server (logged) or to one named member, here or elsewhere.
    fn info(&mut self, cx: &mut Context, id: MemberId, to: Option<&str>, message: &str) {
        let Some(me) = self.router.members.get(id) else { return };
        let Some(to) = to else {
            if let Some(dropped) = self.info_log.admit(cx.elapsed()) {
                if dropped > 0 {
                    log::info!(target: LOG_TARGET, "{dropped} info messages not logged (over {INFO_LOG_PER_SECOND} a second)");
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
                log::info!(target: LOG_TARGET, "info from {}: {}{more}", for_log(me.sender()), for_log(&message[..cut]));
            }
            return;
        };
        let Some(holder) = self.bus.holder(to) else {
            return self.error(cx, id, ErrorCode::NoSuchClient, &format!("no client named {to}"));
        };
        self.settle_presence(cx, id);
        let Some(me) = self.router.members.get(id) else { return };
        let reply = Reply::Info { from: me.sender().into(), message };
        reply.encode(&mut self.out);
        let message = Outgoing::new(reply.kind(), &self.out);
        match holder {
            Holder::Local(dest) => {
                if let Some(dest) = self.router.members.get(dest) {
                    member::send(cx, dest.link, &message);
                }
            }
            Holder::Remote => {
                let published =
                    Published { audience: Audience::Name(to), kind: message.kind, line: message.line };
                self.bus.publish(cx, &published);
            }
        }
    }

    /// To every other member, or to a room's other members, here and elsewhere.
    fn broadcast(&mut self, cx: &mut Context, id: MemberId, room: Option<&str>, message: &str) {
        self.settle_presence(cx, id);
        let Some(me) = self.router.members.get(id) else { return };
        let reply = Reply::Broadcast { from: me.sender().into(), room: room.map(Into::into), message };
        reply.encode(&mut self.out);
        let message = Outgoing::new(reply.kind(), &self.out);
        let audience = match room {
            Some(room) => {
                self.router.broadcast_room(cx, room, Some(id), &message);
                Audience::Room(room)
            }
            None => {
                self.router.broadcast(cx, Some(id), &message);
                Audience::Everyone
            }
        };
        let published = Published { audience, kind: message.kind, line: message.line };
        self.bus.publish(cx, &published);
    }

    /// Tells the other nodes' members `message`.
    fn publish(&mut self, cx: &mut Context, audience: Audience<'_>, message: &Outgoing<'_>) {
        self.bus.publish(cx, &Published { audience, kind: message.kind, line: message.line });
    }

    /// Ends the presence window early when it holds this member's own `online`: the others
    /// must hear it is online before they hear from it.
    fn settle_presence(&mut self, cx: &mut Context, id: MemberId) {
        let held = self.router.members.get(id).is_some_and(|m| self.presence.holds_own(&m.presence));
        if held {
            self.presence.flush_now(cx, self.router.marks());
        }
    }

    fn join_or_leave(&mut self, cx: &mut Context, id: MemberId, room: &str, join: bool) {
        if join {
            let rooms = self.router.members.get(id).map_or(0, |m| m.rooms.len());
            if rooms >= MAX_ROOMS_PER_CLIENT && !self.router.in_room(id, room) {
                let reason = format!("too many rooms (max {MAX_ROOMS_PER_CLIENT} per client)");
                return self.error(cx, id, ErrorCode::BadMessage, &reason);
            }
            self.router.join(id, room);
        } else {
            self.router.leave_room(id, room);
        }
        self.tell_bus(cx, id);
        let room = room.into();
        let reply = if join { Reply::Joined { room } } else { Reply::Left { room } };
        self.reply(cx, id, &reply);
    }

    /// The server's counters, one line.
    fn stats(&mut self, cx: &mut Context, id: MemberId) {
        let st = cx.stats();
        let counters = Counters {
            connections: cx.socket_count() as u64,
            hub_clients: (self.router.members.len() + self.bus.members_elsewhere()) as u64,
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
            sender_stalls: st.sender_stalls,
            sender_stall_ms: st.sender_stall_ms,
        };
        self.reply(cx, id, &Reply::Stats(counters));
    }

    /// One page of the authenticated members, in admission order, from just after `cursor`.
    /// The bare `{"type":"list"}` is the first page with rooms, which for a hub that fits one
    /// page is the whole list; with `cursor` or `limit`, rooms are listed only when asked for
    /// (`"rooms":true`). A page holds at most `limit` members and stops once past
    /// [`MAX_LIST_BYTES`]; when members remain, `next` is the cursor for the rest.
    fn list(
        &mut self,
        cx: &mut Context,
        id: MemberId,
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
        let elsewhere = self.bus.members_elsewhere();
        let mut page = ListPage::start(&mut self.out, router.listed.len() + elsewhere);
        let mut listed = 0;
        let mut next = None;
        for (&seq, &member) in router.listed.range((start, Bound::Unbounded)) {
            if listed == limit || page.len() >= MAX_LIST_BYTES {
                next = Some(seq - 1);
                break;
            }
            let Some(m) = router.members.get(member) else { continue };
            listed += 1;
            let rooms = with_rooms.then(|| m.rooms.iter().map(String::as_str));
            page.entry(m.name.as_deref(), &m.session_id, rooms);
        }
        if next.is_none() && elsewhere > 0 {
            // Other nodes' members follow this node's; their cursors lie past every local one.
            let from = match start {
                Bound::Excluded(after) if after >= ELSEWHERE_CURSOR => {
                    (after - ELSEWHERE_CURSOR + 1) as usize
                }
                _ => 0,
            };
            let mut at = from;
            self.bus.members_elsewhere_from(from, &mut |m| {
                if listed == limit || page.len() >= MAX_LIST_BYTES {
                    next = Some(ELSEWHERE_CURSOR + at as u64 - 1);
                    return false;
                }
                listed += 1;
                at += 1;
                page.entry(m.name, m.session, with_rooms.then(|| m.rooms.iter().copied()));
                true
            });
        }
        page.finish(next);
        if let Some(link) = self.router.members.get(id).map(|m| m.link) {
            member::send(cx, link, &Outgoing::new("list", &self.out));
        }
    }

    /// Encodes `reply` and sends it to `id`.
    fn reply(&mut self, cx: &mut Context, id: MemberId, reply: &Reply<'_>) {
        let Some(link) = self.router.members.get(id).map(|m| m.link) else { return };
        reply.encode(&mut self.out);
        member::send(cx, link, &Outgoing::new(reply.kind(), &self.out));
    }

    fn refuse(&mut self, cx: &mut Context, id: MemberId, refusal: &Refusal) {
        self.error(cx, id, refusal.code, &refusal.reason);
    }

    /// An `error` reply.
    pub fn error(&mut self, cx: &mut Context, id: MemberId, code: ErrorCode, reason: &str) {
        self.reply(cx, id, &Reply::Error { code, reason: reason.into() });
    }

    /// Sends the error, hangs up on the member and removes it at once, so the others hear
    /// "offline" now rather than when its transport finally closes.
    pub fn hang_up(&mut self, cx: &mut Context, id: MemberId, code: ErrorCode, reason: &str) {
        self.error(cx, id, code, reason);
        if let Some(m) = self.router.members.get(id) {
            member::hang_up(cx, m.link, HANG_UP_GRACE);
        }
        self.depart(cx, id);
    }

    /// Removes the member, if still here; a named one gives its name back and is announced
    /// `offline`.
    pub fn depart(&mut self, cx: &mut Context, id: MemberId) {
        let Some(mut gone) = self.router.remove(id) else { return };
        self.remote.forget(id);
        if gone.authed {
            self.bus.member_gone(cx, &gone.session_id);
        }
        let Some(name) = &gone.name else { return };
        self.bus.release(cx, id, name);
        let notice =
            Reply::Offline { client_name: name.as_str().into(), session_id: gone.session_id.as_str().into() };
        notice.encode(&mut self.out);
        let line: SharedBytes = Rc::from(&self.out[..]);
        let now = self.presence.event(cx, id, &mut gone.presence, false, "offline", &line);
        let message = Outgoing::new("offline", &line).with_line(&line);
        if now {
            self.router.broadcast(cx, Some(id), &message);
        }
        self.publish(cx, Audience::Everyone, &message);
    }

    /// A timer fired; if it is the registration deadline, hang up on members that missed it;
    /// if it ends a presence window, send what the window held. Returns whether the timer was
    /// the hub's.
    pub fn on_timer(&mut self, cx: &mut Context, timer: TimerId) -> bool {
        if self.bus.on_timer(cx, timer) {
            self.bus_events(cx);
            return true;
        }
        if self.presence.is_timer(timer) {
            self.presence.flush(cx, self.router.marks());
            return true;
        }
        if self.deadline_timer != Some(timer) {
            return false;
        }
        self.deadline_timer = None;
        let now = cx.elapsed();
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now {
                self.deadline_timer = Some(deadline_timer(cx, deadline - now));
                break;
            }
            self.deadlines.pop_front();
            let idle = self.router.members.get(id).is_some_and(|m| !m.useful);
            if idle {
                cx.stats_mut().timeout_disconnects += 1;
                let reason = "no valid request within the registration timeout";
                self.hang_up(cx, id, ErrorCode::RegisterTimeout, reason);
            }
        }
        true
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
