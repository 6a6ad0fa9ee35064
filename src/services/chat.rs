//! Chat: the line protocol every Node chat tutorial builds, usable from `nc` or `telnet`.
//!
//! Each connection is a member with a label (`ip:port`, or `unix:<n>`) until it picks a nick.
//! A text line goes to every other member as `<name>: <text>`; `/nick`, `/who` and `/quit` are
//! the commands. The wire format is in `docs/protocol.md`.
//!
//! Where Node's chat writes each broadcast once per client (a string copied into every socket's
//! buffer), we encode it once into [`SharedBytes`] and queue that by reference. A member that
//! stops reading costs at most the listener's `max_buffer` of queued output before the core
//! disconnects it; the sender and the others are never slowed down by it.

use std::collections::HashMap;
use std::io::Write as _;
use std::rc::Rc;

use crate::context::Context;
use crate::handler::SocketId;
use crate::line::LineSplitter;
use crate::services::{peer_label, send, send_shared, Roster};
use crate::write_queue::SharedBytes;

/// Default longest accepted line, terminator excluded (`--max-line`).
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Longest nick in bytes.
const MAX_NICK: usize = 32;

/// What `netloop serve` lets the user tune about chat.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Longest line accepted, terminator excluded; a longer one gets an error and the member
    /// is disconnected, so a peer can never make us buffer more than this per connection.
    pub max_line: usize,
    /// Also send a member's text lines back to it (`--chat-echo-self`, seed 004's behaviour).
    pub echo_self: bool,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig { max_line: DEFAULT_MAX_LINE, echo_self: false }
    }
}

/// One connected chat client.
#[derive(Debug)]
struct Member {
    /// What others see: the nick if one was picked, else the peer label.
    name: String,
    /// Whether `name` is a nick (and so held in the nick table).
    has_nick: bool,
    /// The unfinished line between reads.
    lines: LineSplitter,
}

/// The chat service: members in connection order, their nicks, and a scratch buffer that
/// every outgoing line is built in (so a reply costs no allocation once it has grown).
#[derive(Debug)]
pub struct Chat {
    config: ChatConfig,
    members: Roster<Member>,
    /// Nick to holder, so `/nick` checks uniqueness without scanning. Labels never collide
    /// with nicks: they contain ':', which a nick may not.
    nicks: HashMap<String, SocketId>,
    /// Unix-socket peers seen so far; labels them `unix:1`, `unix:2`, ...
    unix_peers: u64,
    /// Where each outgoing line is built.
    out: Vec<u8>,
}

impl Chat {
    /// A chat service with no members yet.
    pub fn new(config: ChatConfig) -> Self {
        Chat { config, members: Roster::new(), nicks: HashMap::new(), unix_peers: 0, out: Vec::new() }
    }

    /// Members currently in the chat (not counting those already told `* bye`).
    pub fn online(&self) -> usize {
        self.members.len()
    }

    /// A client connected: welcome it and tell the others.
    pub fn on_connection(&mut self, cx: &mut Context, socket: SocketId) {
        let label = peer_label(cx, socket, &mut self.unix_peers);
        let lines = LineSplitter::new(self.config.max_line);
        self.members.insert(socket, Member { name: label, has_nick: false, lines });
        let online = self.members.len();
        let Some(me) = self.members.get(socket) else { return };
        self.out.clear();
        let _ = writeln!(self.out, "* welcome {}, online now: {online}", me.name);
        send(cx, socket, &self.out);
        self.out.clear();
        let _ = writeln!(self.out, "* {} joined, online now: {online}", me.name);
        self.broadcast(cx, Some(socket));
    }

    /// Bytes arrived: split them into lines and act on each, in order.
    pub fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        let Some(member) = self.members.get_mut(socket) else { return };
        // The splitter is borrowed out of the member while its lines are handled, because
        // handling a line needs the whole service (it may broadcast, rename or remove).
        let mut lines = std::mem::replace(&mut member.lines, LineSplitter::new(0));
        let mut present = true;
        let result = lines.feed(data, |line| {
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
                if let Some(member) = self.members.get_mut(socket) {
                    member.lines = lines;
                }
            }
            Err(too_long) => {
                cx.stats_mut().input_limit_disconnects += 1;
                self.hang_up(cx, socket, &format!("* error: {too_long}\n"))
            }
        }
    }

    /// The client sent FIN: it has left, and our side is ended. With half-open allowed
    /// (`--allow-half-open`) it stays a member that only listens (`nc -N`, or
    /// `netloop connect` after stdin EOF), until it closes.
    pub fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        if cx.allows_half_open(socket) {
            return;
        }
        self.leave(cx, socket);
        cx.end(socket);
    }

    /// The socket closed (any reason, including the output limit): it leaves if it had not.
    pub fn on_close(&mut self, cx: &mut Context, socket: SocketId) {
        self.leave(cx, socket);
    }

    /// Bytes of an unfinished line held for `socket`, for the loop's input accounting.
    pub fn held_input(&self, socket: SocketId) -> usize {
        self.members.get(socket).map_or(0, |m| m.lines.buffered())
    }

    /// The loop cut `socket` for its unfinished input: say why, and hang up.
    pub fn cut_input(&mut self, cx: &mut Context, socket: SocketId, cut: &crate::input_budget::InputCut) {
        self.hang_up(cx, socket, &format!("* error: {cut}\n"));
    }

    /// Handles one complete line. Returns false once the member has left (after `/quit`), so
    /// the rest of the read is ignored.
    fn on_line(&mut self, cx: &mut Context, socket: SocketId, line: &[u8]) -> bool {
        // Borrowed unless the line holds invalid UTF-8, which is replaced (lossy).
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return true;
        }
        if let Some(command) = text.strip_prefix('/') {
            return self.command(cx, socket, command);
        }
        let Some(me) = self.members.get(socket) else { return false };
        self.out.clear();
        let _ = writeln!(self.out, "{}: {text}", me.name);
        let shared = self.broadcast(cx, Some(socket));
        if self.config.echo_self {
            send_shared(cx, socket, &shared);
        }
        true
    }

    /// `/word arg`. Returns false once the member has left.
    fn command(&mut self, cx: &mut Context, socket: SocketId, command: &str) -> bool {
        let (word, arg) = match command.find(char::is_whitespace) {
            Some(at) => (&command[..at], command[at..].trim()),
            None => (command, ""),
        };
        self.out.clear();
        match word {
            "nick" => self.nick(cx, socket, arg),
            "who" => {
                let _ = write!(self.out, "* online now: {}: ", self.members.len());
                for (i, (_, m)) in self.members.iter().enumerate() {
                    if i > 0 {
                        self.out.extend_from_slice(b", ");
                    }
                    self.out.extend_from_slice(m.name.as_bytes());
                }
                self.out.push(b'\n');
                send(cx, socket, &self.out);
            }
            "quit" => {
                self.hang_up(cx, socket, "* bye\n");
                return false;
            }
            _ => {
                let _ = writeln!(self.out, "* error: unknown command /{word}");
                send(cx, socket, &self.out);
            }
        }
        true
    }

    /// `/nick NAME`: rename, unless the name is invalid or another member holds it.
    fn nick(&mut self, cx: &mut Context, socket: SocketId, name: &str) {
        let valid = (1..=MAX_NICK).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            send(cx, socket, b"* error: invalid name\n");
            return;
        }
        if self.nicks.get(name).is_some_and(|&holder| holder != socket) {
            let _ = writeln!(self.out, "* error: name {name} is taken");
            send(cx, socket, &self.out);
            return;
        }
        let Some(me) = self.members.get_mut(socket) else { return };
        let old = std::mem::replace(&mut me.name, name.to_string());
        if me.has_nick {
            self.nicks.remove(&old);
        }
        me.has_nick = true;
        self.nicks.insert(name.to_string(), socket);
        let _ = writeln!(self.out, "* you are now {name}");
        send(cx, socket, &self.out);
        self.out.clear();
        let _ = writeln!(self.out, "* {old} is now {name}");
        self.broadcast(cx, Some(socket));
    }

    /// Sends `last_words`, ends the connection and removes the member at once, so the others
    /// hear "left" now rather than when the socket finally closes.
    fn hang_up(&mut self, cx: &mut Context, socket: SocketId, last_words: &str) {
        send(cx, socket, last_words.as_bytes());
        cx.end_within(socket, super::HANG_UP_GRACE);
        self.leave(cx, socket);
    }

    /// Removes the member, if still present, and tells the others.
    fn leave(&mut self, cx: &mut Context, socket: SocketId) {
        let Some(gone) = self.members.remove(socket) else { return };
        if gone.has_nick {
            self.nicks.remove(&gone.name);
        }
        self.out.clear();
        let _ = writeln!(self.out, "* {} left, online now: {}", gone.name, self.members.len());
        self.broadcast(cx, None);
    }

    /// Sends the line in `out` to every member except `except`, encoded once and shared by
    /// all their queues; returns it so the caller may send it to `except` too.
    fn broadcast(&self, cx: &mut Context, except: Option<SocketId>) -> SharedBytes {
        let line: SharedBytes = Rc::from(&self.out[..]);
        for (id, _) in self.members.iter() {
            if Some(id) != except {
                send_shared(cx, id, &line);
            }
        }
        line
    }
}
