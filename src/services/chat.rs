//! Chat: the line protocol every Node chat tutorial builds, usable from `nc` or `telnet`.
//!
//! Each connection is a member with a label (`ip:port`, or `unix:<n>`) until it picks a nick.
//! A text line goes to every other member as `<name>: <text>`; `/nick`, `/who` and `/quit` are
//! the commands. The wire format is in `docs/protocol.md`.
//!
//! Clients are not all line clients. Node-style clients send text without newlines, so text
//! left without one is sent after [`FLUSH_AFTER`]; `telnet` mixes commands into its input, which
//! [`TelnetFilter`] takes out; a browser sends HTTP, answered by [`http_probe`] before the
//! connection is welcomed. Joins and leaves are told through [`Presence`], which coalesces
//! storms.
//!
//! Where Node's chat writes each broadcast once per client (a string copied into every socket's
//! buffer), we encode it once into [`SharedBytes`] and queue that by reference. A member that
//! stops reading costs at most the listener's `max_buffer` of queued output before the core
//! disconnects it; the sender is stalled for at most `flow::MAX_SENDER_STALL` on its account,
//! the others not at all.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use crate::bus::{Audience, Bus, Claim, LocalBus, Published};
use crate::context::Context;
use crate::handler::{ServerId, SocketId};
use crate::line::LineSplitter;
use crate::printable::for_log;
use crate::services::http_probe;
use crate::services::member::{self, Link, MemberId, Outgoing};
use crate::services::per_socket::PerSocket;
use crate::services::presence::{self, Change, Presence, PRESENCE_INTERVAL};
use crate::services::telnet::TelnetFilter;
use crate::services::{peer_label, send, Roster};
use crate::timers::TimerId;
use crate::wire::chat::{self as wire, Input};
use crate::write_queue::SharedBytes;

/// Default longest accepted line, terminator excluded (`--max-line`).
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// How long text without a newline waits for the rest of its line before it is sent as it is.
/// Long enough for a line that TCP cut in two to come together, short enough to feel instant.
pub const FLUSH_AFTER: Duration = Duration::from_millis(50);

/// How long a new connection waits for its welcome unless it speaks first. A browser sends its
/// request as soon as it is connected; waiting this long lets it be answered in HTTP with
/// nothing of the chat before the reply.
pub const WELCOME_WAIT: Duration = Duration::from_millis(50);

/// What `netloop serve` lets the user tune about chat.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Longest line accepted, terminator excluded; a longer one gets an error and the member
    /// is disconnected, so a peer can never make us buffer more than this per connection.
    pub max_line: usize,
    /// Also send a member's text lines back to it (`--chat-echo-self`, as some Node chats do).
    pub echo_self: bool,
    /// Only complete lines are messages (`--chat-strict-lines`): text without a newline waits
    /// for it however long, and is dropped at close. Off by default: such text is sent after
    /// [`FLUSH_AFTER`], as Node's chat servers relay each chunk.
    pub strict_lines: bool,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig { max_line: DEFAULT_MAX_LINE, echo_self: false, strict_lines: false }
    }
}

/// An unfinished line being held, in loop time.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// When its first byte arrived, or when the loop last held the sender's input back (the
    /// rest could not arrive meanwhile): it is sent [`FLUSH_AFTER`] later.
    since: Duration,
    /// When it last grew: still growing in this loop turn means more may be waiting unread.
    grew: Duration,
}

/// One connected chat client.
#[derive(Debug)]
struct Member {
    /// How it is reached.
    link: Link,
    /// What others see: the nick if one was picked, else the peer label.
    name: String,
    /// Whether `name` is a nick (and so held in the nick table).
    has_nick: bool,
    /// The unfinished line between reads.
    lines: LineSplitter,
    /// Takes telnet's commands out of the input.
    telnet: TelnetFilter,
    /// Welcomed and announced: counted online, sent broadcasts, listed by `/who`.
    in_room: bool,
    /// Whether a line was handled yet: the first one may be an HTTP request.
    spoke: bool,
    /// The unfinished line in `lines`, while one is held.
    held: Option<Held>,
    /// The timer that sends the held text; only while text is held.
    flush_timer: Option<TimerId>,
}

/// The chat service: members in connection order, their nicks, and a scratch buffer that
/// every outgoing line is built in (so a reply costs no allocation once it has grown).
#[derive(Debug)]
pub struct Chat {
    config: ChatConfig,
    members: Members,
    /// Members in the room (welcomed), the "online now" count.
    in_room: usize,
    /// Nick to holder, so `/nick` checks uniqueness without scanning. Labels never collide
    /// with nicks: they contain ':', which a nick may not.
    /// Nicks, and what the members of other nodes must hear.
    bus: Box<dyn Bus>,
    /// Unix-socket peers seen so far; labels them `unix:1`, `unix:2`, ...
    unix_peers: u64,
    /// Where each outgoing line is built.
    out: Vec<u8>,
    /// Connections waiting for their welcome, in connection order. All wait the same
    /// [`WELCOME_WAIT`], so the queue is sorted by deadline and one timer serves them all;
    /// those welcomed early (they spoke) or gone are skipped when their turn comes.
    waiting: VecDeque<(Duration, SocketId)>,
    /// The timer armed for the head of `waiting`.
    welcome_timer: Option<TimerId>,
    /// Whose held text each flush timer sends.
    flush_timers: HashMap<TimerId, SocketId>,
    /// Joins and leaves not yet told, how many were told one by one in the current interval,
    /// and the timer that ends it (none while presence is quiet).
    presence: Presence,
    presence_told: usize,
    presence_timer: Option<TimerId>,
    /// Where presence notices are built (apart from `out`, which may hold a message).
    notice: Vec<u8>,
    /// Answers to telnet negotiation, before they are sent.
    replies: Vec<u8>,
    /// Lines of members whose `/nick` the bus is still deciding, held in order until it has.
    deferred: remote::Deferred,
}

impl Chat {
    /// A chat service alone in its process, with no members yet.
    pub fn new(config: ChatConfig) -> Self {
        Chat::with_bus(config, Box::new(LocalBus::new()))
    }

    /// A chat service sharing nicks and lines through `bus`.
    pub fn with_bus(config: ChatConfig, bus: Box<dyn Bus>) -> Self {
        Chat {
            config,
            members: Members::default(),
            in_room: 0,
            bus,
            unix_peers: 0,
            out: Vec::new(),
            waiting: VecDeque::new(),
            welcome_timer: None,
            flush_timers: HashMap::new(),
            presence: Presence::new(),
            presence_told: 0,
            presence_timer: None,
            notice: Vec::new(),
            replies: Vec::new(),
            deferred: remote::Deferred::default(),
        }
    }

    /// Members currently in the chat (not counting those already told `* bye`, nor those not
    /// welcomed yet).
    pub fn online(&self) -> usize {
        self.in_room
    }

    /// Welcomes the members whose wait is over.
    fn welcome_due(&mut self, cx: &mut Context) {
        let now = cx.elapsed();
        while let Some(&(due, socket)) = self.waiting.front() {
            if due > now {
                self.welcome_timer = Some(unreferenced_timer(cx, due - now));
                break;
            }
            self.waiting.pop_front();
            // Not one the server is already hanging up on (shutdown ends every socket).
            if cx.is_writable(socket) {
                self.welcome(cx, socket);
            }
        }
    }

    /// Brings a member into the room: its welcome, and the others are told.
    fn welcome(&mut self, cx: &mut Context, socket: SocketId) {
        let Some(me) = self.members.get_mut(socket) else { return };
        if me.in_room {
            return;
        }
        me.in_room = true;
        self.in_room += 1;
        wire::write_welcome(&mut self.out, &me.name, self.in_room + self.bus.members_elsewhere());
        send(cx, socket, &self.out);
        let name = me.name.clone();
        let Some(id) = self.members.id(socket) else { return };
        self.tell_bus(cx, id);
        self.announce(cx, Change::Joined, id, &name);
    }

    /// Splits `data` into lines and handles each; then starts or stops the wait of the
    /// unfinished line left over, if any.
    fn feed(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        let Some(member) = self.members.get_mut(socket) else { return };
        // The splitter is borrowed out of the member while its lines are handled, because
        // handling a line needs the whole service (it may broadcast, rename or remove).
        let mut lines = std::mem::replace(&mut member.lines, LineSplitter::new(0));
        let mut present = true;
        let mut completed = false;
        let result = lines.feed(data, |line| {
            completed = true;
            // Stop at once if handling made it leave, or the core destroyed it (output limit).
            if present {
                present = cx.is_open(socket) && self.on_line(cx, socket, line);
            }
        });
        if !present {
            return;
        }
        match result {
            Ok(()) => {
                let now = cx.elapsed();
                let Some(member) = self.members.get_mut(socket) else { return };
                let holding = lines.buffered() > 0;
                member.lines = lines;
                if !holding {
                    member.held = None;
                    if let Some(timer) = member.flush_timer.take() {
                        cx.clear_timer(timer);
                        self.flush_timers.remove(&timer);
                    }
                    return;
                }
                member.held = match member.held {
                    Some(held) if !completed => Some(Held { grew: now, ..held }),
                    _ => Some(Held { since: now, grew: now }),
                };
                if !self.config.strict_lines && member.flush_timer.is_none() {
                    let timer = unreferenced_timer(cx, FLUSH_AFTER);
                    member.flush_timer = Some(timer);
                    self.flush_timers.insert(timer, socket);
                }
            }
            Err(too_long) => {
                cx.stats_mut().input_limit_disconnects += 1;
                wire::write_error(&mut self.out, too_long);
                self.hang_up_with_out(cx, socket)
            }
        }
    }

    /// A member's flush timer fired: its held text goes out as a message, unless the rest of
    /// the line may be waiting unread (then it waits a little longer).
    fn flush_due(&mut self, cx: &mut Context, socket: SocketId) {
        let Some(member) = self.members.get_mut(socket) else { return };
        member.flush_timer = None;
        let Some(held) = member.held else { return };
        let now = cx.elapsed();
        let due = held.since + FLUSH_AFTER;
        let wait = if cx.may_have_unread_input(socket) {
            // Paused, stalled by flow control, or due another read: the rest of the line may
            // be in the kernel already. The peer gets a whole window once we read again.
            if let Some(held) = member.held.as_mut() {
                held.since = now;
            }
            Some(FLUSH_AFTER)
        } else if held.grew == now {
            // Read this very turn and still unfinished: its read budget may have run out
            // with more to come in the next turn.
            Some(Duration::from_millis(1))
        } else if now < due {
            // The line it was armed for completed and a newer one started since.
            Some(due - now)
        } else {
            None
        };
        if let Some(wait) = wait {
            let timer = unreferenced_timer(cx, wait);
            member.flush_timer = Some(timer);
            self.flush_timers.insert(timer, socket);
            return;
        }
        self.flush_held(cx, socket);
    }

    /// Sends the member's held text now, as if its newline had come.
    fn flush_held(&mut self, cx: &mut Context, socket: SocketId) {
        let Some(member) = self.members.get_mut(socket) else { return };
        member.held = None;
        if let Some(timer) = member.flush_timer.take() {
            cx.clear_timer(timer);
            self.flush_timers.remove(&timer);
        }
        let mut lines = std::mem::replace(&mut member.lines, LineSplitter::new(0));
        let mut present = true;
        lines.flush_partial(|text| present = cx.is_open(socket) && self.on_line(cx, socket, text));
        if present {
            if let Some(member) = self.members.get_mut(socket) {
                member.lines = lines;
                // Outside a read, so the loop's input accounting hears it from us.
                cx.set_held_input(socket, member.lines.buffered());
            }
        }
    }

    /// Handles one complete line. Returns false once the member has left (after `/quit`), so
    /// the rest of the read is ignored.
    fn on_line(&mut self, cx: &mut Context, socket: SocketId, line: &[u8]) -> bool {
        if self.deferred.hold(socket, line) {
            return true;
        }
        let Some(me) = self.members.get_mut(socket) else { return false };
        if !me.spoke {
            me.spoke = true;
            if http_probe::is_request_line(line) {
                self.refuse_http(cx, socket, line);
                return false;
            }
        }
        // Borrowed unless the line holds invalid UTF-8, which is replaced (lossy).
        let text = String::from_utf8_lossy(line);
        let text = match Input::parse(&text) {
            None => return true,
            Some(Input::Text(text)) => text,
            Some(command) => return self.command(cx, socket, command),
        };
        let Some(me) = self.members.get(socket) else { return false };
        // Control characters shown, not obeyed: a `\r` or an ESC sequence must not rewrite
        // the others' screens.
        wire::write_message(&mut self.out, &me.name, text);
        let (me, link) = (self.members.id(socket), me.link);
        let shared = self.broadcast(cx, me);
        if self.config.echo_self {
            member::deliver(cx, link, &Outgoing::new(MESSAGE, &shared).with_line(&shared));
        }
        true
    }

    /// The first line was an HTTP request: answer it in HTTP and hang up, telling no one.
    fn refuse_http(&mut self, cx: &mut Context, socket: SocketId, request_line: &[u8]) {
        let reply =
            http_probe::refusal(http_probe::Port::Chat, request_line, cx.local_address(socket).as_ref());
        log::debug!(
            "chat: answered an HTTP request with 400: {}",
            for_log(&String::from_utf8_lossy(request_line))
        );
        send(cx, socket, &reply);
        cx.end_within(socket, super::HANG_UP_GRACE);
        self.leave(cx, socket);
    }

    /// A command. Returns false once the member has left.
    fn command(&mut self, cx: &mut Context, socket: SocketId, command: Input<'_>) -> bool {
        match command {
            Input::Nick(name) => self.nick(cx, socket, name),
            Input::Who => {
                let elsewhere = self.names_elsewhere();
                let names = self.members.iter().filter(|(_, m)| m.in_room).map(|(_, m)| m.name.as_str());
                let names = names.chain(elsewhere.iter().map(String::as_str));
                wire::write_who(&mut self.out, self.in_room + elsewhere.len(), names);
                send(cx, socket, &self.out);
            }
            Input::Quit => {
                self.hang_up(cx, socket, wire::BYE);
                return false;
            }
            Input::Unknown(word) => {
                wire::write_unknown_command(&mut self.out, word);
                send(cx, socket, &self.out);
            }
            // Text never reaches here; relayed by `on_line`.
            Input::Text(_) => {}
        }
        true
    }

    /// `/nick NAME`: rename, unless the name is invalid or another member holds it.
    fn nick(&mut self, cx: &mut Context, socket: SocketId, name: &str) {
        if !wire::is_valid_nick(name) {
            send(cx, socket, wire::INVALID_NAME);
            return;
        }
        let Some(id) = self.members.id(socket) else { return };
        match self.bus.claim(cx, id, name) {
            Claim::Taken => self.nick_refused(cx, id, name),
            Claim::Granted => self.nick_granted(cx, id, name),
            // A bus that asks elsewhere answers through `nick_granted` or `nick_refused`;
            // what the member sends meanwhile waits for the answer.
            Claim::Pending => self.defer_until_named(cx, socket),
        }
    }

    /// The bus granted `name` to `id`: renamed (its old nick given back), told so, and the
    /// others hear of it.
    pub fn nick_granted(&mut self, cx: &mut Context, id: MemberId, name: &str) {
        let Some(me) = self.members.roster.get_mut(id) else {
            // Gone while the bus was asked.
            return self.bus.release(cx, id, name);
        };
        let old = std::mem::replace(&mut me.name, name.to_string());
        if me.has_nick && old != name {
            self.bus.release(cx, id, &old);
        }
        me.has_nick = true;
        let link = me.link;
        self.tell_bus(cx, id);
        wire::write_you_are_now(&mut self.out, name);
        member::send(cx, link, &Outgoing::new(NOTICE, &self.out));
        wire::write_renamed(&mut self.out, &old, name);
        self.broadcast(cx, Some(id));
    }

    /// The bus refused `name` to `id` (another member holds it).
    pub fn nick_refused(&mut self, cx: &mut Context, id: MemberId, name: &str) {
        let Some(link) = self.members.roster.get(id).map(|m| m.link) else { return };
        wire::write_name_taken(&mut self.out, name);
        member::send(cx, link, &Outgoing::new(NOTICE, &self.out));
    }

    /// Sends `last_words`, ends the connection and removes the member at once, so the others
    /// hear "left" now rather than when the socket finally closes.
    fn hang_up(&mut self, cx: &mut Context, socket: SocketId, last_words: &[u8]) {
        send(cx, socket, last_words);
        cx.end_within(socket, super::HANG_UP_GRACE);
        self.leave(cx, socket);
    }

    /// [`Chat::hang_up`] with the line written in `out`.
    fn hang_up_with_out(&mut self, cx: &mut Context, socket: SocketId) {
        let last_words = std::mem::take(&mut self.out);
        self.hang_up(cx, socket, &last_words);
        self.out = last_words;
    }

    /// Removes the member, if still present, and tells the others if it was in the room.
    fn leave(&mut self, cx: &mut Context, socket: SocketId) {
        let Some((id, gone)) = self.members.remove(socket) else { return };
        self.deferred.forget(socket);
        if gone.has_nick {
            self.bus.release(cx, id, &gone.name);
        }
        if let Some(timer) = gone.flush_timer {
            cx.clear_timer(timer);
            self.flush_timers.remove(&timer);
        }
        if gone.in_room {
            self.in_room -= 1;
            self.bus.member_gone(cx, &session_of(id));
            self.announce(cx, Change::Left, id, &gone.name);
        }
    }

    /// A join or leave: told at once while the interval's burst allows, else gathered into
    /// the summary that ends the interval.
    fn announce(&mut self, cx: &mut Context, change: Change, id: MemberId, name: &str) {
        if self.presence_told >= presence::BURST || !self.presence.is_empty() {
            self.presence.record(change, id, name);
            return;
        }
        self.presence_told += 1;
        self.notice.clear();
        presence::write_single(&mut self.notice, change, name, self.in_room + self.bus.members_elsewhere());
        let except = (change == Change::Joined).then_some(id);
        send_to_room(&self.members.roster, cx, &self.notice, except);
        self.publish_notice(cx);
        if self.presence_timer.is_none() {
            self.presence_timer = Some(unreferenced_timer(cx, PRESENCE_INTERVAL));
        }
    }

    /// Tells the gathered joins and leaves now, if any.
    fn flush_presence(&mut self, cx: &mut Context) {
        if self.presence.is_empty() {
            return;
        }
        let online = self.in_room + self.bus.members_elsewhere();
        let except = self.presence.take_notice(online, &mut self.notice);
        send_to_room(&self.members.roster, cx, &self.notice, except);
        self.publish_notice(cx);
    }

    /// Sends the line in `out` to every member in the room except `except`, encoded once and
    /// shared by all their queues; returns it so the caller may send it to `except` too.
    /// Joins and leaves gathered so far are told first, so everyone hears of a member before
    /// it speaks.
    /// The other nodes' members hear it too, through the bus.
    fn broadcast(&mut self, cx: &mut Context, except: Option<MemberId>) -> SharedBytes {
        self.flush_presence(cx);
        let published = Published { audience: Audience::Everyone, kind: MESSAGE, line: &self.out };
        self.bus.publish(cx, &published);
        send_to_room(&self.members.roster, cx, &self.out, except)
    }
}

mod remote;
use remote::session_of;

/// The type chat gives its broadcast lines, for transports that name messages.
const MESSAGE: &str = "message";
/// The type of chat's replies to one member.
const NOTICE: &str = "notice";

/// Sends `line` to every member in the room but `except`, one allocation shared by all.
fn send_to_room(
    members: &Roster<Member>,
    cx: &mut Context,
    line: &[u8],
    except: Option<MemberId>,
) -> SharedBytes {
    let line: SharedBytes = Rc::from(line);
    let message = Outgoing::new(MESSAGE, &line).with_line(&line);
    for (id, member) in members.iter() {
        if member.in_room && Some(id) != except {
            member::deliver(cx, member.link, &message);
        }
    }
    line
}

/// Chat's members, and which socket carries each.
#[derive(Debug, Default)]
struct Members {
    roster: Roster<Member>,
    by_socket: PerSocket<MemberId>,
}

impl Members {
    fn insert(&mut self, socket: SocketId, member: Member) {
        let id = self.roster.insert(member);
        self.by_socket.insert(socket, id);
    }

    fn id(&self, socket: SocketId) -> Option<MemberId> {
        self.by_socket.get(socket).copied()
    }

    fn get(&self, socket: SocketId) -> Option<&Member> {
        self.roster.get(self.id(socket)?)
    }

    fn get_mut(&mut self, socket: SocketId) -> Option<&mut Member> {
        let id = self.id(socket)?;
        self.roster.get_mut(id)
    }

    fn remove(&mut self, socket: SocketId) -> Option<(MemberId, Member)> {
        let id = self.by_socket.remove(socket)?;
        Some((id, self.roster.remove(id)?))
    }

    fn iter(&self) -> crate::services::RosterIter<'_, Member> {
        self.roster.iter()
    }
}

/// Chat's timers never keep a shutting-down server alive: they only matter while members do.
fn unreferenced_timer(cx: &mut Context, delay: Duration) -> TimerId {
    let timer = cx.set_timer(delay);
    cx.set_timer_ref(timer, false);
    timer
}

impl super::Service for Chat {
    fn name(&self) -> &'static str {
        "chat"
    }

    fn refusal(&self, max: usize) -> Vec<u8> {
        let mut line = Vec::new();
        crate::wire::chat::write_server_full(&mut line, max);
        line
    }

    // Drain needs nothing: chat never pauses a reader, and a client that does not read is
    // bounded by the core's output limit instead.

    fn start(&mut self, cx: &mut Context) {
        self.bus.start(cx);
    }

    fn on_shutdown(&mut self, cx: &mut Context) {
        self.bus.leave(cx);
    }

    fn log_counters(&self) {
        if let Some(counters) = self.bus.counters() {
            log::info!("chat cluster: {counters}");
        }
    }

    /// The bus's own connections (to Redis) are chat's.
    fn opened(&self, socket: SocketId) -> bool {
        self.bus.owns(socket)
    }

    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {
        self.bus.on_connect(cx, socket);
        self.bus_events(cx);
    }

    /// A client connected. It is welcomed, and the others told, when it first sends something
    /// or [`WELCOME_WAIT`] later, whichever comes first.
    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        let label = peer_label(cx.remote_address(socket), &mut self.unix_peers);
        let member = Member {
            link: Link::line(socket),
            name: label,
            has_nick: false,
            lines: LineSplitter::new(self.config.max_line),
            telnet: TelnetFilter::new(),
            in_room: false,
            spoke: false,
            held: None,
            flush_timer: None,
        };
        self.members.insert(socket, member);
        self.waiting.push_back((cx.elapsed() + WELCOME_WAIT, socket));
        if self.welcome_timer.is_none() {
            self.welcome_timer = Some(unreferenced_timer(cx, WELCOME_WAIT));
        }
    }

    /// Bytes arrived: telnet commands out, then split into lines and act on each, in order.
    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        if self.bus.owns(socket) {
            self.bus.on_data(cx, socket, data);
            return self.bus_events(cx);
        }
        let Some(member) = self.members.get_mut(socket) else { return };
        let data = member.telnet.filter(data, &mut self.replies);
        let in_room = member.in_room;
        if !self.replies.is_empty() {
            send(cx, socket, &self.replies);
            self.replies.clear();
        }
        if data.is_empty() {
            return;
        }
        // A browser gets its answer in HTTP, with no chat line before it.
        if !in_room && !http_probe::starts_with_request(&data) {
            self.welcome(cx, socket);
        }
        self.feed(cx, socket, &data);
    }

    /// The client sent FIN: it has left, and our side is ended. With half-open allowed
    /// (`--allow-half-open`) it stays a member that only listens (`nc -N`, or
    /// `netloop connect` after stdin EOF), until it closes. Either way its text without a
    /// newline is complete now (dropped with `--chat-strict-lines`).
    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        if !self.config.strict_lines {
            self.flush_held(cx, socket);
        }
        if cx.allows_half_open(socket) {
            return;
        }
        self.leave(cx, socket);
        cx.end(socket);
    }

    /// The socket closed (any reason, including the output limit): it leaves if it had not.
    fn on_close(&mut self, cx: &mut Context, socket: SocketId) {
        if self.bus.owns(socket) {
            self.bus.on_close(cx, socket);
            return self.bus_events(cx);
        }
        self.leave(cx, socket);
    }

    /// A timer fired. Returns whether it was chat's.
    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) -> bool {
        if self.bus.on_timer(cx, timer) {
            self.bus_events(cx);
        } else if self.welcome_timer == Some(timer) {
            self.welcome_timer = None;
            self.welcome_due(cx);
        } else if self.presence_timer == Some(timer) {
            self.presence_timer = None;
            self.presence_told = 0;
            // Changes were gathered during the interval: tell them, and start the next one.
            if !self.presence.is_empty() {
                self.flush_presence(cx);
                self.presence_timer = Some(unreferenced_timer(cx, PRESENCE_INTERVAL));
            }
        } else if let Some(socket) = self.flush_timers.remove(&timer) {
            self.flush_due(cx, socket);
        } else {
            return false;
        }
        true
    }

    /// The loop cut `socket` for its unfinished input: say why, and hang up.
    fn on_input_cut(&mut self, cx: &mut Context, socket: SocketId, cut: &crate::input_budget::InputCut) {
        wire::write_error(&mut self.out, cut);
        self.hang_up_with_out(cx, socket);
    }

    /// Bytes of an unfinished line held for `socket`, for the loop's input accounting.
    fn held_input(&self, socket: SocketId) -> Option<usize> {
        Some(self.members.get(socket).map_or(0, |m| m.lines.buffered()))
    }
}
