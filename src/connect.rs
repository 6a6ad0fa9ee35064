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
//! ([`Context::stdin_socket`]). That works for every kind of stdin (terminal, pipe, regular
//! file, `/dev/null`: epoll refuses the last two), never makes a terminal shared with the shell
//! non-blocking, and gives stdin the loop's backpressure for free: when the server stops
//! reading, the stdin socket is paused, the pair's buffer fills and the thread blocks.
//!
//! With `--hub-name NAME` it speaks the JSON hub: it sends `{"type":"sync","clientName":NAME}`
//! first, turns typed lines into hub frames ([`hub_frame`]) and prints each incoming message
//! as one readable line ([`describe_hub_line`]).
//!
//! A peer must not be able to drive the user's terminal (move the cursor back over a name,
//! clear the screen, ring the bell), so control characters are shown spelled out
//! ([`crate::printable::escape_controls`], tab kept): always in hub mode, and for raw server
//! output when stdout is a terminal ([`TerminalText`]). Piped, raw output stays byte-exact.

use std::io::{self, IsTerminal, Write};

use serde_json::{json, Value};

use crate::addr::{Address, SocketAddress};
use crate::context::Context;
use crate::error;
use crate::event_loop::EventLoop;
use crate::handler::{Handler, SocketId};
use crate::options::SocketOptions;
use crate::printable::escape_controls;
use crate::text::Utf8Decoder;

/// What `netloop connect` was asked to do.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// The server: `HOST:PORT`, `PORT`, `[V6]:PORT` or `unix:PATH`.
    pub target: Address,
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
        let sync = json!({"type": "sync", "clientName": name});
        cx.write(server, format!("{sync}\n").as_bytes());
    }
    let stdin = cx.stdin_socket()?;
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
        server_lines: Vec::new(),
        stdin_lines: Vec::new(),
        last_error: None,
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
    /// Hub mode: an unfinished line from the server.
    server_lines: Vec<u8>,
    /// Hub mode: an unfinished line typed on stdin.
    stdin_lines: Vec<u8>,
    last_error: Option<io::Error>,
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
        self.server_lines.extend_from_slice(data);
        let mut text = String::new();
        let mut start = 0;
        while let Some(nl) = self.server_lines[start..].iter().position(|&b| b == b'\n') {
            let line = &self.server_lines[start..start + nl];
            start += nl + 1;
            if !line.iter().all(u8::is_ascii_whitespace) {
                text.push_str(&describe_hub_line(line));
                text.push('\n');
            }
        }
        self.server_lines.drain(..start);
        if at_end && !self.server_lines.is_empty() {
            text.push_str(&describe_hub_line(&self.server_lines));
            text.push('\n');
            self.server_lines.clear();
        }
        if !text.is_empty() {
            self.print(cx, text.as_bytes());
        }
    }

    /// Forwards typed input: raw bytes, or in hub mode one frame per complete line.
    fn forward(&mut self, cx: &mut Context, data: &[u8], at_end: bool) {
        let accepted = if self.hub {
            self.stdin_lines.extend_from_slice(data);
            let mut frames = Vec::new();
            let mut start = 0;
            while let Some(nl) = self.stdin_lines[start..].iter().position(|&b| b == b'\n') {
                push_frame(&mut frames, &self.stdin_lines[start..start + nl]);
                start += nl + 1;
            }
            self.stdin_lines.drain(..start);
            if at_end && !self.stdin_lines.is_empty() {
                push_frame(&mut frames, &self.stdin_lines);
                self.stdin_lines.clear();
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

    fn on_error(&mut self, _cx: &mut Context, socket: SocketId, err: &io::Error) {
        if socket == self.server {
            // Keep the bare OS error where there is one: the messages name it themselves.
            self.last_error = Some(match error::os_error_code(err) {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(err.kind(), err.to_string()),
            });
        }
    }

    fn on_close(&mut self, cx: &mut Context, socket: SocketId, had_error: bool) {
        if socket != self.server {
            return;
        }
        if self.outcome.is_none() {
            self.outcome = Some(match (had_error, self.last_error.take()) {
                (true, Some(e)) if !self.connected => Err(connect_error(&e, &self.target)),
                (true, Some(e)) => Err(io::Error::new(
                    e.kind(),
                    format!("connection to {} failed: {}", self.target, error::describe(&e)),
                )),
                _ => Ok(()),
            });
        }
        cx.stop();
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
    let Some(command) = trimmed.strip_prefix('/') else {
        return Ok(Some(json!({"type": "broadcast", "message": text}).to_string()));
    };
    let (word, arg) = match command.split_once(char::is_whitespace) {
        Some((w, a)) => (w, a.trim()),
        None => (command, ""),
    };
    let frame = match (word, arg) {
        ("join" | "leave", room) if !room.is_empty() => json!({"type": word, "room": room}),
        ("list", "") => json!({"type": "list"}),
        ("list", cursor) => json!({"type": "list", "cursor": cursor, "rooms": true}),
        ("name", name) if !name.is_empty() => json!({"type": "sync", "clientName": name}),
        ("to", rest) => match rest.split_once(char::is_whitespace) {
            Some((to, message)) => json!({"type": "info", "to": to, "message": message.trim()}),
            None => return Err("usage: /to NAME TEXT".into()),
        },
        _ => {
            return Err(format!(
                "unknown or incomplete command /{word} (commands: /join ROOM, /leave ROOM, /list [CURSOR], \
                 /to NAME TEXT, /name NAME; other lines are broadcast, lines starting with {{ are sent raw)"
            ))
        }
    };
    Ok(Some(frame.to_string()))
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
    let Ok(Value::Object(msg)) = serde_json::from_slice::<Value>(line) else { return raw() };
    let field = |k: &str| match msg.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "?".to_string(),
        Some(v) => v.to_string(),
    };
    let message = || match msg.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let Some(kind) = msg.get("type").and_then(Value::as_str) else { return raw() };
    match kind {
        "broadcast" if msg.contains_key("room") => {
            format!("[broadcast from {} in {}] {}", field("from"), field("room"), message())
        }
        "broadcast" => format!("[broadcast from {}] {}", field("from"), message()),
        "info" => format!("[info from {}] {}", field("from"), message()),
        "synced" => format!("[synced as {}, session {}]", field("clientName"), field("sessionId")),
        "online" if msg.contains_key("previous") => format!(
            "[online {} (was {}), session {}]",
            field("clientName"),
            field("previous"),
            field("sessionId")
        ),
        "online" | "offline" => format!("[{kind} {}, session {}]", field("clientName"), field("sessionId")),
        "joined" | "left" => format!("[{kind} {}]", field("room")),
        "error" => format!("[error {}] {}", field("code"), field("reason")),
        "list" => {
            let clients = msg.get("clients").and_then(Value::as_array).map_or_else(Vec::new, |cs| {
                cs.iter()
                    .map(|c| {
                        let name = c.get("clientName").and_then(Value::as_str).unwrap_or("(no name)");
                        let sid = c.get("sessionId").and_then(Value::as_str).unwrap_or("?");
                        let rooms: Vec<&str> = c
                            .get("rooms")
                            .and_then(Value::as_array)
                            .map_or_else(Vec::new, |r| r.iter().filter_map(Value::as_str).collect());
                        if rooms.is_empty() {
                            format!("{name} ({sid})")
                        } else {
                            format!("{name} ({sid}) in {}", rooms.join(","))
                        }
                    })
                    .collect()
            });
            let more = match msg.get("next").and_then(Value::as_str) {
                Some(next) => format!(" (more: /list {next})"),
                None => String::new(),
            };
            format!("[list: {} online] {}{more}", field("count"), clients.join(", "))
        }
        "presence" => {
            format!("[presence: {} online, {} offline (/list for names)]", field("online"), field("offline"))
        }
        other => format!("[{other}] {}", Value::Object(msg.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_lines_become_hub_frames() {
        let frame = |s: &str| hub_frame(s).expect("valid").expect("a frame");
        assert_eq!(frame("hello there"), r#"{"message":"hello there","type":"broadcast"}"#);
        assert_eq!(frame("say \"hi\"\r"), r#"{"message":"say \"hi\"","type":"broadcast"}"#);
        assert_eq!(frame(r#"{"type":"list"}"#), r#"{"type":"list"}"#);
        assert_eq!(frame("/join lobby"), r#"{"room":"lobby","type":"join"}"#);
        assert_eq!(frame("/leave lobby"), r#"{"room":"lobby","type":"leave"}"#);
        assert_eq!(frame("/list"), r#"{"type":"list"}"#);
        assert_eq!(frame("/list 42"), r#"{"cursor":"42","rooms":true,"type":"list"}"#);
        assert_eq!(frame("/name Bob"), r#"{"clientName":"Bob","type":"sync"}"#);
        assert_eq!(frame("/to Bob hi  there"), r#"{"message":"hi  there","to":"Bob","type":"info"}"#);
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
