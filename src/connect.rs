//! `netloop connect ADDR`: a line client for any netloop (or Node) server: Node's `readline`
//! chat clients as a real tool.
//!
//! stdin goes to the server as typed, everything the server sends goes to stdout unbuffered.
//! stdin EOF half-closes the connection (`end()`), and whatever the server still sends is
//! printed; the command exits 0 when the server closes, and 1 with Node's wording
//! (`connect ECONNREFUSED 127.0.0.1:9`) when it cannot connect or the connection fails.
//!
//! Everything runs on one poll loop. stdin is read by a helper thread that copies it into one
//! end of a `UnixStream::pair()`; the loop owns the other end as an ordinary socket
//! ([`crate::stdin::socket`]). That works for every kind of stdin (terminal, pipe, regular
//! file, `/dev/null`: epoll refuses the last two), never makes a terminal shared with the shell
//! non-blocking, and gives stdin the loop's backpressure for free: when the server stops
//! reading, the stdin socket is paused, the pair's buffer fills and the thread blocks.
//!
//! With `--hub-name NAME` it speaks the JSON hub through [`crate::wire::hub`]: it sends
//! `{"type":"sync","clientName":NAME}` first, turns typed lines into hub frames
//! ([`hub_frame`]) and prints each incoming message as one readable line
//! ([`describe_hub_line`]).
//!
//! A peer must not be able to drive the user's terminal (move the cursor back over a name,
//! clear the screen, ring the bell), so control characters are shown spelled out
//! ([`crate::printable::escape_controls`], tab kept): always in hub mode, and for raw server
//! output when stdout is a terminal ([`TerminalText`]). Piped, raw output stays byte-exact.

use std::io::{self, IsTerminal, Write};

use serde_json::Value;

use crate::addr::{AddressSpec, SocketAddress};
use crate::context::Context;
use crate::error;
use crate::event_loop::EventLoop;
use crate::handler::{Handler, SocketId};
use crate::line::LineSplitter;
use crate::options::SocketOptions;
use crate::printable::escape_controls;
use crate::socket_error::SocketError;
use crate::text::Utf8Decoder;
use crate::wire::hub::{Cursor, Reply, Request};
use crate::wire::json;

/// Longest line split out of the server's output or stdin in hub mode: no limit of its own
/// (the server bounds what it sends with `--max-frame`, and stdin is the user's).
const NO_LINE_LIMIT: usize = usize::MAX - 1;

/// What `netloop connect` was asked to do.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// The server: `HOST:PORT`, `PORT`, `[V6]:PORT` or `unix:PATH`.
    pub target: AddressSpec,
    /// Speak the hub protocol under this client name (`--hub-name`).
    pub hub_name: Option<String>,
}

/// Connects, pipes stdin and stdout until the server closes. `Ok` means the server closed the
/// connection normally; `Err` carries the message to show (`connect ECONNREFUSED 127.0.0.1:9`).
pub fn run(config: &ConnectConfig) -> io::Result<()> {
    let target = config.target.resolve_one()?;
    let mut event_loop = EventLoop::new()?;
    let cx = event_loop.context();
    cx.set_client_options(SocketOptions { no_delay: true, ..SocketOptions::default() });
    let server = cx.connect(&target);
    if let Some(name) = &config.hub_name {
        let mut sync = Vec::new();
        Request::Sync { client_name: name.into(), token: None }.encode(&mut sync);
        cx.write(server, &sync);
    }
    let stdin = crate::stdin::socket(cx)?;
    // Only the server connection keeps the loop alive: when it closes we exit, even if the
    // user is still typing.
    cx.set_socket_ref(stdin, false);

    let mut client = Client {
        server,
        stdin,
        target,
        hub: config.hub_name.is_some(),
        terminal: io::stdout().is_terminal().then(TerminalText::default),
        connected: false,
        server_lines: LineSplitter::new(NO_LINE_LIMIT),
        stdin_lines: LineSplitter::new(NO_LINE_LIMIT),
        outcome: None,
    };
    event_loop.run(&mut client)?;
    client.outcome.unwrap_or(Ok(()))
}

/// The client application on the loop: two sockets, the server and stdin's pipe.
struct Client {
    server: SocketId,
    stdin: SocketId,
    target: SocketAddress,
    hub: bool,
    /// Raw mode with stdout on a terminal: server output is shown with controls escaped.
    terminal: Option<TerminalText>,
    connected: bool,
    /// Hub mode: the server's output cut into lines.
    server_lines: LineSplitter,
    /// Hub mode: stdin cut into lines.
    stdin_lines: LineSplitter,
    outcome: Option<io::Result<()>>,
}

impl Client {
    /// Prints server output. A closed stdout (`netloop connect ... | head -1`) ends the
    /// session quietly, as for any Unix filter.
    fn print(&mut self, cx: &mut Context, data: &[u8]) {
        let mut out = io::stdout().lock();
        if let Err(e) = out.write_all(data).and_then(|()| out.flush()) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                self.outcome = Some(Err(error::context(e, "writing to stdout")));
            }
            cx.destroy(self.server);
        }
    }

    /// Hub mode: prints every complete line of server output as one readable line.
    fn print_hub(&mut self, cx: &mut Context, data: &[u8], at_end: bool) {
        let mut text = String::new();
        let mut describe = |line: &[u8]| {
            if !line.iter().all(u8::is_ascii_whitespace) {
                text.push_str(&describe_hub_line(line));
                text.push('\n');
            }
        };
        // No limit, so no error.
        let _ = self.server_lines.feed(data, &mut describe);
        if at_end {
            self.server_lines.finish(describe);
        }
        if !text.is_empty() {
            self.print(cx, text.as_bytes());
        }
    }

    /// Forwards typed input: raw bytes, or in hub mode one frame per complete line.
    fn forward(&mut self, cx: &mut Context, data: &[u8], at_end: bool) {
        let accepted = if self.hub {
            let mut frames = Vec::new();
            // No limit, so no error.
            let _ = self.stdin_lines.feed(data, |line| push_frame(&mut frames, line));
            if at_end {
                self.stdin_lines.finish(|line| push_frame(&mut frames, line));
            }
            frames.is_empty() || cx.write(self.server, &frames)
        } else {
            cx.write(self.server, data)
        };
        if !accepted {
            // The server is behind: stop reading stdin until its queue drains.
            cx.pause(self.stdin);
        }
    }
}

/// Appends the hub frame for one typed line, or reports why there is none.
fn push_frame(frames: &mut Vec<u8>, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    match hub_frame(&text) {
        Ok(Some(frame)) => {
            frames.extend_from_slice(frame.as_bytes());
            frames.push(b'\n');
        }
        Ok(None) => {}
        Err(why) => eprintln!("netloop: {why}"),
    }
}

impl Handler for Client {
    fn on_connect(&mut self, _cx: &mut Context, socket: SocketId) {
        if socket == self.server {
            self.connected = true;
            if std::io::IsTerminal::is_terminal(&io::stdin()) {
                eprintln!("netloop: connected to {}", self.target);
            }
        }
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        if socket == self.server {
            if self.hub {
                self.print_hub(cx, data, false);
            } else if let Some(terminal) = &mut self.terminal {
                let text = terminal.show(data);
                self.print(cx, text.as_bytes());
            } else {
                self.print(cx, data);
            }
        } else if socket == self.stdin {
            self.forward(cx, data, false);
        }
    }

    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        if socket == self.stdin {
            self.forward(cx, &[], true);
            // Half-close: the server sees our FIN and may still answer; we keep printing.
            cx.end(self.server);
        } else if socket == self.server && self.hub {
            self.print_hub(cx, &[], true);
        } else if socket == self.server {
            if let Some(rest) = self.terminal.as_mut().and_then(TerminalText::end) {
                self.print(cx, rest.as_bytes());
            }
        }
    }

    fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {
        if socket == self.server {
            cx.resume(self.stdin);
        }
    }

    fn on_close(&mut self, cx: &mut Context, socket: SocketId, err: Option<&SocketError>) {
        if socket != self.server {
            return;
        }
        if self.outcome.is_none() {
            self.outcome = Some(match err.map(bare_error) {
                Some(e) if !self.connected => Err(connect_error(&e, &self.target)),
                Some(e) => Err(io::Error::new(
                    e.kind(),
                    format!("connection to {} failed: {}", self.target, error::describe(&e)),
                )),
                None => Ok(()),
            });
        }
        cx.stop();
    }
}

/// The error a session ends with, as the messages below want it: the bare OS error where there
/// is one (they name it themselves), else the error's words.
fn bare_error(err: &SocketError) -> io::Error {
    match (err.os_error_code(), err.io_error()) {
        (Some(code), _) => io::Error::from_raw_os_error(code),
        (None, Some(e)) => io::Error::new(e.kind(), e.to_string()),
        (None, None) => io::Error::other(err.to_string()),
    }
}

/// Node's wording for a failed connect: `connect ECONNREFUSED 127.0.0.1:9`.
pub fn connect_error(err: &io::Error, target: &SocketAddress) -> io::Error {
    let text = match error::errno_name(err) {
        Some(name) => format!("connect {name} {target}"),
        None => format!("connect {target}: {}", error::describe(err)),
    };
    io::Error::new(err.kind(), text)
}

/// Server output made safe for a terminal, chunk by chunk: characters split across reads are
/// kept whole, control characters are spelled out except tab and the line ends (`\n`, and the
/// `\r` of a `\r\n`), and bytes that are not UTF-8 show as U+FFFD.
#[derive(Debug, Default)]
pub struct TerminalText {
    utf8: Utf8Decoder,
    /// The last chunk ended in `\r`: whether it ends a line depends on the next byte.
    cr: bool,
}

impl TerminalText {
    /// The next chunk, ready to print.
    pub fn show(&mut self, chunk: &[u8]) -> String {
        let mut text = String::new();
        if std::mem::take(&mut self.cr) {
            text.push('\r');
        }
        text.push_str(&self.utf8.decode(chunk));
        if text.ends_with('\r') {
            text.pop();
            self.cr = true;
        }
        let mut out = String::with_capacity(text.len());
        let mut lines = text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let last = lines.peek().is_none();
            let (body, crlf) = match line.strip_suffix('\r') {
                Some(body) if !last => (body, true),
                _ => (line, false),
            };
            out.push_str(&escape_controls(body, true));
            if crlf {
                out.push('\r');
            }
            if !last {
                out.push('\n');
            }
        }
        out
    }

    /// What was held back at the end of the stream.
    pub fn end(&mut self) -> Option<String> {
        let mut rest = self.utf8.end().unwrap_or_default();
        if std::mem::take(&mut self.cr) {
            rest.push('\r');
        }
        (!rest.is_empty()).then(|| escape_controls(&rest, true).into_owned())
    }
}

/// The hub frame for one typed line (without its newline): `None` for a blank line.
///
/// A line starting with `{` is sent as typed (raw JSON, for testing the server); a few
/// commands build the other frames (`/join ROOM`, `/leave ROOM`, `/list`, `/list CURSOR` for
/// the page after a `more` hint, `/to NAME TEXT`, `/name NAME`); anything else is a broadcast of the line's text. `Err` names an unknown or
/// incomplete command.
pub fn hub_frame(line: &str) -> Result<Option<String>, String> {
    let text = line.trim_end_matches('\r');
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.starts_with('{') {
        return Ok(Some(trimmed.to_string()));
    }
    let message;
    let request = match trimmed.strip_prefix('/') {
        None => {
            message = json::string(text);
            Request::Broadcast { room: None, message: &message }
        }
        Some(command) => {
            let (word, arg) = match command.split_once(char::is_whitespace) {
                Some((w, a)) => (w, a.trim()),
                None => (command, ""),
            };
            match (word, arg) {
                ("join", room) if !room.is_empty() => Request::Join { room: room.into() },
                ("leave", room) if !room.is_empty() => Request::Leave { room: room.into() },
                ("list", "") => Request::List { cursor: None, limit: None, rooms: None },
                ("list", cursor) => {
                    Request::List { cursor: Some(Cursor::After(cursor.into())), limit: None, rooms: Some(true) }
                }
                ("name", name) if !name.is_empty() => Request::Sync { client_name: name.into(), token: None },
                ("to", rest) => match rest.split_once(char::is_whitespace) {
                    Some((to, text)) => {
                        message = json::string(text.trim());
                        Request::Info { to: Some(to.into()), message: &message }
                    }
                    None => return Err("usage: /to NAME TEXT".into()),
                },
                _ => {
                    return Err(format!(
                        "unknown or incomplete command /{word} (commands: /join ROOM, /leave ROOM, /list \
                         [CURSOR], /to NAME TEXT, /name NAME; other lines are broadcast, lines starting with {{ \
                         are sent raw)"
                    ))
                }
            }
        }
    };
    let mut frame = Vec::new();
    request.encode(&mut frame);
    frame.pop();
    // The encoder writes UTF-8 from UTF-8.
    Ok(Some(String::from_utf8_lossy(&frame).into_owned()))
}

/// One hub message as a readable line: `[broadcast from Client-2] hello`,
/// `[synced as Client-1, session 127.0.0.1:5000]`, `[error name_taken] name x is taken`. A
/// string `message` is shown as its text, any other value as compact JSON; a line that is not
/// a JSON object is shown as received. Control characters are spelled out (tab kept), so the
/// line is safe to print on a terminal and is one line.
pub fn describe_hub_line(line: &[u8]) -> String {
    let text = describe(line);
    match escape_controls(&text, true) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

fn describe(line: &[u8]) -> String {
    let raw = || String::from_utf8_lossy(line).trim_end_matches('\r').to_string();
    let described = match Reply::decode(line) {
        // The counters are shown as sent, like any message connect has no words for.
        None | Some(Reply::Stats(_)) => None,
        Some(reply) => describe_reply(&reply),
    };
    if let Some(text) = described {
        return text;
    }
    let Ok(Value::Object(msg)) = serde_json::from_slice::<Value>(line) else { return raw() };
    match msg.get("type").and_then(Value::as_str) {
        Some(kind) => format!("[{kind}] {}", Value::Object(msg.clone())),
        None => raw(),
    }
}

/// A reply in words; `None` when a message in it is not valid JSON text to show.
fn describe_reply(reply: &Reply<'_>) -> Option<String> {
    Some(match reply {
        Reply::Broadcast { from, room: Some(room), message } => {
            format!("[broadcast from {from} in {room}] {}", show_message(message)?)
        }
        Reply::Broadcast { from, room: None, message } => {
            format!("[broadcast from {from}] {}", show_message(message)?)
        }
        Reply::Info { from, message } => format!("[info from {from}] {}", show_message(message)?),
        Reply::Synced { client_name, session_id } => {
            format!("[synced as {client_name}, session {session_id}]")
        }
        Reply::Online { client_name, session_id, previous: Some(previous) } => {
            format!("[online {client_name} (was {previous}), session {session_id}]")
        }
        Reply::Online { client_name, session_id, previous: None } => {
            format!("[online {client_name}, session {session_id}]")
        }
        Reply::Offline { client_name, session_id } => {
            format!("[offline {client_name}, session {session_id}]")
        }
        Reply::Joined { room } => format!("[joined {room}]"),
        Reply::Left { room } => format!("[left {room}]"),
        Reply::Error { code, reason } => format!("[error {}] {reason}", code.as_str()),
        Reply::List { count, clients, next } => {
            let clients: Vec<String> = clients
                .iter()
                .map(|c| {
                    let name = c.client_name.as_deref().unwrap_or("(no name)");
                    match c.rooms.as_deref() {
                        Some(rooms) if !rooms.is_empty() => {
                            format!("{name} ({}) in {}", c.session_id, rooms.join(","))
                        }
                        _ => format!("{name} ({})", c.session_id),
                    }
                })
                .collect();
            let more = match next {
                Some(next) => format!(" (more: /list {next})"),
                None => String::new(),
            };
            format!("[list: {count} online] {}{more}", clients.join(", "))
        }
        Reply::Presence { online, offline } => {
            format!("[presence: {online} online, {offline} offline (/list for names)]")
        }
        Reply::Stats(_) => return None,
    })
}

/// A relayed message as text: a string as its text, any other value as compact JSON.
fn show_message(raw: &str) -> Option<String> {
    match json::str_value(raw) {
        Some(text) => Some(text.into_owned()),
        None => serde_json::from_str::<Value>(raw).ok().map(|v| v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_lines_become_hub_frames() {
        let frame = |s: &str| hub_frame(s).expect("valid").expect("a frame");
        assert_eq!(frame("hello there"), r#"{"type":"broadcast","message":"hello there"}"#);
        assert_eq!(frame("say \"hi\"\r"), r#"{"type":"broadcast","message":"say \"hi\""}"#);
        assert_eq!(frame(r#"{"type":"list"}"#), r#"{"type":"list"}"#);
        assert_eq!(frame("/join lobby"), r#"{"type":"join","room":"lobby"}"#);
        assert_eq!(frame("/leave lobby"), r#"{"type":"leave","room":"lobby"}"#);
        assert_eq!(frame("/list"), r#"{"type":"list"}"#);
        assert_eq!(frame("/list 42"), r#"{"type":"list","cursor":"42","rooms":true}"#);
        assert_eq!(frame("/name Bob"), r#"{"type":"sync","clientName":"Bob"}"#);
        assert_eq!(frame("/to Bob hi  there"), r#"{"type":"info","to":"Bob","message":"hi  there"}"#);
        assert_eq!(hub_frame("   "), Ok(None));
        assert!(hub_frame("/to Bob").is_err());
        assert!(hub_frame("/join").is_err());
        assert!(hub_frame("/frobnicate").is_err());
    }

    #[test]
    fn hub_messages_read_as_one_line_each() {
        let d = |s: &str| describe_hub_line(s.as_bytes());
        assert_eq!(
            d(r#"{"type":"broadcast","from":"Client-2","message":"hi"}"#),
            "[broadcast from Client-2] hi"
        );
        assert_eq!(
            d(r#"{"type":"broadcast","from":"A","message":{"x":[1,2]}}"#),
            r#"[broadcast from A] {"x":[1,2]}"#
        );
        assert_eq!(
            d(r#"{"type":"broadcast","from":"A","room":"r","message":1}"#),
            "[broadcast from A in r] 1"
        );
        assert_eq!(
            d(r#"{"type":"synced","clientName":"Me","sessionId":"127.0.0.1:5"}"#),
            "[synced as Me, session 127.0.0.1:5]"
        );
        assert_eq!(
            d(r#"{"type":"online","clientName":"B","sessionId":"s","previous":"A"}"#),
            "[online B (was A), session s]"
        );
        assert_eq!(d(r#"{"type":"offline","clientName":"B","sessionId":"s"}"#), "[offline B, session s]");
        assert_eq!(d(r#"{"type":"error","code":"bad_json","reason":"no"}"#), "[error bad_json] no");
        assert_eq!(d(r#"{"type":"joined","room":"r"}"#), "[joined r]");
        assert_eq!(
            d(
                r#"{"type":"list","count":2,"clients":[{"clientName":null,"sessionId":"s1","rooms":[]},{"clientName":"B","sessionId":"s2","rooms":["a","b"]}]}"#
            ),
            "[list: 2 online] (no name) (s1), B (s2) in a,b"
        );
        assert_eq!(
            d(r#"{"type":"list","count":9,"clients":[{"clientName":"A","sessionId":"s1"}],"next":"7"}"#),
            "[list: 9 online] A (s1) (more: /list 7)"
        );
        assert_eq!(
            d(r#"{"type":"presence","online":12,"offline":3}"#),
            "[presence: 12 online, 3 offline (/list for names)]"
        );
        // Whatever a peer put in a message or a line, the terminal sees no control characters.
        assert_eq!(
            d(r#"{"type":"broadcast","from":"A","message":"\u001b[2Jx\rforged\u0007\ttab"}"#),
            "[broadcast from A] \\e[2Jx\\rforged\\x07\ttab"
        );
        assert_eq!(d("raw \u{1b}]0;title\u{7}"), "raw \\e]0;title\\x07");
        assert_eq!(d("not json"), "not json");
        assert_eq!(d("[1,2]"), "[1,2]");
        assert_eq!(d(r#"{"type":"new","x":1}"#), r#"[new] {"type":"new","x":1}"#);
    }

    #[test]
    fn terminal_text_escapes_controls_but_keeps_lines_and_tabs() {
        let mut t = TerminalText::default();
        assert_eq!(t.show(b"a\tb\r\nc\x1b[2J\n"), "a\tb\r\nc\\e[2J\n");
        assert_eq!(t.show(b"over\rwrite\x07\x00\n"), "over\\rwrite\\x07\\x00\n");
        // A character and a CRLF split across reads.
        assert_eq!(t.show(b"\xc3"), "");
        assert_eq!(t.show(b"\xa9 x\r"), "\u{e9} x");
        assert_eq!(t.show(b"\ny"), "\r\ny");
        assert_eq!(t.show(b"\r"), "");
        assert_eq!(t.end().as_deref(), Some("\\r"));
        assert_eq!(t.show(b"\xff\n"), "\u{fffd}\n");
    }

    #[test]
    fn connect_errors_read_like_node() {
        let target = SocketAddress::Inet("127.0.0.1:9".parse().expect("literal"));
        let err = error::context(io::Error::from_raw_os_error(libc::ECONNREFUSED), "connect");
        assert_eq!(connect_error(&err, &target).to_string(), "connect ECONNREFUSED 127.0.0.1:9");
    }
}
