//! The chat protocol, defined once: the lines the server writes (welcome, join/leave notices
//! and their summary, relayed messages `<name>: <text>`, command replies, errors) and what a
//! client sends (text, or a `/command`). Every server line ends in `\n`. The server writes
//! them into its reusable buffers through the `write_*` functions; clients read them with
//! [`ServerLine::decode`]. The byte-level contract is `docs/protocol.md`.

use std::fmt::Display;
use std::io::Write as _;

use crate::printable::escape_controls;

/// Longest nick in bytes.
pub const MAX_NICK: usize = 32;

/// The last words to `/quit`.
pub const BYE: &[u8] = b"* bye\n";

/// The reply to a `/nick` that is not 1 to [`MAX_NICK`] bytes of `A-Z a-z 0-9 _ . -`.
pub const INVALID_NAME: &[u8] = b"* error: invalid name\n";

/// A join or a leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A member entered the room.
    Joined,
    /// A member left it.
    Left,
}

impl Change {
    fn verb(self) -> &'static str {
        match self {
            Change::Joined => "joined",
            Change::Left => "left",
        }
    }
}

/// `* welcome <label>, online now: <N>`: a new member's first line.
pub fn write_welcome(out: &mut Vec<u8>, label: &str, online: usize) {
    out.clear();
    let _ = writeln!(out, "* welcome {label}, online now: {online}");
}

/// The notice for one change, appended: `* <name> joined, online now: N` or
/// `* <name> left, online now: N`.
pub fn write_change(out: &mut Vec<u8>, change: Change, name: &str, online: usize) {
    let _ = writeln!(out, "* {name} {}, online now: {online}", change.verb());
}

/// Names of one kind of change in a summary: the ones shown, and how many there were in all.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// The names listed.
    pub shown: &'a [String],
    /// All changes of this kind (at least `shown.len()`); the rest are counted.
    pub count: usize,
}

/// The summary of many changes, appended: `* joined: a, b and 12 more; left: c; online now: N`
/// (a kind with no change is left out).
pub fn write_summary(out: &mut Vec<u8>, joined: Names<'_>, left: Names<'_>, online: usize) {
    out.extend_from_slice(b"* ");
    for (label, names) in [("joined: ", joined), ("left: ", left)] {
        if names.count == 0 {
            continue;
        }
        out.extend_from_slice(label.as_bytes());
        for (i, name) in names.shown.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(name.as_bytes());
        }
        if names.count > names.shown.len() {
            let _ = write!(out, " and {} more", names.count - names.shown.len());
        }
        out.extend_from_slice(b"; ");
    }
    let _ = writeln!(out, "online now: {online}");
}

/// A relayed text line: `<name>: <text>`, control characters in the text spelled out (tab
/// kept), so no member can drive the others' terminals.
pub fn write_message(out: &mut Vec<u8>, from: &str, text: &str) {
    out.clear();
    let _ = writeln!(out, "{from}: {}", escape_controls(text, true));
}

/// `* you are now NAME`: the reply to `/nick`.
pub fn write_you_are_now(out: &mut Vec<u8>, name: &str) {
    out.clear();
    let _ = writeln!(out, "* you are now {name}");
}

/// `* <old> is now NAME`: the others hear of a `/nick`.
pub fn write_renamed(out: &mut Vec<u8>, old: &str, name: &str) {
    out.clear();
    let _ = writeln!(out, "* {old} is now {name}");
}

/// `* online now: N: a, b, ...`: the reply to `/who`.
pub fn write_who<'n>(out: &mut Vec<u8>, online: usize, names: impl Iterator<Item = &'n str>) {
    out.clear();
    let _ = write!(out, "* online now: {online}: ");
    for (i, name) in names.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(name.as_bytes());
    }
    out.push(b'\n');
}

/// `* error: <reason>`.
pub fn write_error(out: &mut Vec<u8>, reason: impl Display) {
    out.clear();
    let _ = writeln!(out, "* error: {reason}");
}

/// `* error: name NAME is taken`: the reply to a `/nick` another member holds.
pub fn write_name_taken(out: &mut Vec<u8>, name: &str) {
    write_error(out, format_args!("name {name} is taken"));
}

/// `* error: unknown command /word`, the word's control characters spelled out.
pub fn write_unknown_command(out: &mut Vec<u8>, word: &str) {
    write_error(out, format_args!("unknown command /{}", escape_controls(word, true)));
}

/// The refusal a connection gets at `--max-connections`, before the server closes it.
pub fn write_server_full(out: &mut Vec<u8>, max: usize) {
    write_error(out, format_args!("server full (max connections {max})"));
}

/// Whether `name` may be a nick: 1 to [`MAX_NICK`] bytes of `A-Z a-z 0-9 _ . -`. Printable
/// ASCII without ':' (which labels have) or spaces: names stay unambiguous in every notice
/// and can never carry a control character.
pub fn is_valid_nick(name: &str) -> bool {
    (1..=MAX_NICK).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// What one client line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// Text to relay.
    Text(&'a str),
    /// `/nick NAME` (the name as typed, not yet checked).
    Nick(&'a str),
    /// `/who`.
    Who,
    /// `/quit`.
    Quit,
    /// Any other `/word`.
    Unknown(&'a str),
}

impl<'a> Input<'a> {
    /// Reads one line (already decoded, without its newline): trimmed of whitespace at both
    /// ends, `None` when nothing is left. A command is the first word after `/`; the rest,
    /// trimmed, is its argument.
    pub fn parse(line: &'a str) -> Option<Input<'a>> {
        let text = line.trim();
        if text.is_empty() {
            return None;
        }
        let Some(command) = text.strip_prefix('/') else { return Some(Input::Text(text)) };
        let (word, arg) = match command.find(char::is_whitespace) {
            Some(at) => (&command[..at], command[at..].trim()),
            None => (command, ""),
        };
        Some(match word {
            "nick" => Input::Nick(arg),
            "who" => Input::Who,
            "quit" => Input::Quit,
            _ => Input::Unknown(word),
        })
    }

    /// Writes the line a client sends for this input into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        let _ = match self {
            Input::Text(text) => writeln!(out, "{text}"),
            Input::Nick(name) => writeln!(out, "/nick {name}"),
            Input::Who => writeln!(out, "/who"),
            Input::Quit => writeln!(out, "/quit"),
            Input::Unknown(word) => writeln!(out, "/{word}"),
        };
    }
}

/// A line the server wrote, as a client reads it (without its newline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerLine<'a> {
    /// `* welcome <label>, online now: <N>`.
    Welcome {
        /// The client's own label.
        label: &'a [u8],
    },
    /// Any other `* ...` line (notices, replies, errors): the text after `* `.
    Notice(&'a [u8]),
    /// `<name>: <text>`; labels and nicks never contain `": "`.
    Message {
        /// The sender's name.
        from: &'a [u8],
        /// The text as relayed.
        text: &'a [u8],
    },
    /// None of those.
    Other(&'a [u8]),
}

impl<'a> ServerLine<'a> {
    /// Reads one line.
    pub fn decode(line: &'a [u8]) -> ServerLine<'a> {
        if let Some(notice) = line.strip_prefix(b"* ") {
            if let Some(rest) = notice.strip_prefix(b"welcome ") {
                if let Some(at) = find(rest, b", online now: ") {
                    return ServerLine::Welcome { label: &rest[..at] };
                }
            }
            return ServerLine::Notice(notice);
        }
        match find(line, b": ") {
            Some(at) => ServerLine::Message { from: &line[..at], text: &line[at + 2..] },
            None => ServerLine::Other(line),
        }
    }
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = b"stale".to_vec();
        write(&mut out);
        String::from_utf8(out).expect("UTF-8")
    }

    /// Every server line's exact bytes, as `docs/protocol.md` shows them.
    #[test]
    fn server_lines_have_the_documented_bytes() {
        assert_eq!(
            text(|o| write_welcome(o, "127.0.0.1:58300", 1)),
            "* welcome 127.0.0.1:58300, online now: 1\n"
        );
        assert_eq!(text(|o| write_message(o, "ann", "hi\tthere\r\u{1b}[2J")), "ann: hi\tthere\\r\\e[2J\n");
        assert_eq!(text(|o| write_you_are_now(o, "ann")), "* you are now ann\n");
        assert_eq!(text(|o| write_renamed(o, "127.0.0.1:1", "ann")), "* 127.0.0.1:1 is now ann\n");
        assert_eq!(
            text(|o| write_who(o, 2, ["ann", "127.0.0.1:5"].into_iter())),
            "* online now: 2: ann, 127.0.0.1:5\n"
        );
        assert_eq!(text(|o| write_name_taken(o, "ann")), "* error: name ann is taken\n");
        assert_eq!(text(|o| write_unknown_command(o, "fr\u{7}ob")), "* error: unknown command /fr\\x07ob\n");
        assert_eq!(text(|o| write_server_full(o, 3)), "* error: server full (max connections 3)\n");
        assert_eq!(
            text(|o| write_error(o, "line too long (max 65536 bytes)")),
            "* error: line too long (max 65536 bytes)\n"
        );
        assert_eq!(BYE, b"* bye\n");
        assert_eq!(INVALID_NAME, b"* error: invalid name\n");
    }

    #[test]
    fn notices_of_joins_and_leaves() {
        let mut out = Vec::new();
        write_change(&mut out, Change::Joined, "127.0.0.1:5001", 3);
        write_change(&mut out, Change::Left, "ann", 2);
        assert_eq!(out, b"* 127.0.0.1:5001 joined, online now: 3\n* ann left, online now: 2\n");
        let joined: Vec<String> = (0..5).map(|n| format!("10.0.0.1:{n}")).collect();
        let left = ["ann".to_string()];
        out.clear();
        write_summary(
            &mut out,
            Names { shown: &joined, count: 9817 },
            Names { shown: &left, count: 1 },
            9818,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "* joined: 10.0.0.1:0, 10.0.0.1:1, 10.0.0.1:2, 10.0.0.1:3, 10.0.0.1:4 and 9812 more; left: ann; \
             online now: 9818\n"
        );
        out.clear();
        write_summary(&mut out, Names { shown: &[], count: 0 }, Names { shown: &joined[..2], count: 2 }, 3);
        assert_eq!(out, b"* left: 10.0.0.1:0, 10.0.0.1:1; online now: 3\n");
    }

    #[test]
    fn client_lines_are_read_as_documented() {
        assert_eq!(Input::parse("  hello  "), Some(Input::Text("hello")));
        assert_eq!(Input::parse(" \t "), None);
        assert_eq!(Input::parse("/nick   ann "), Some(Input::Nick("ann")));
        assert_eq!(Input::parse("/nick"), Some(Input::Nick("")));
        assert_eq!(Input::parse("/who"), Some(Input::Who));
        assert_eq!(Input::parse("/quit now"), Some(Input::Quit));
        assert_eq!(Input::parse("/Who"), Some(Input::Unknown("Who")));
        assert!(
            is_valid_nick("a.b-c_9") && !is_valid_nick("") && !is_valid_nick("a b") && !is_valid_nick("a:b")
        );
        assert!(is_valid_nick(&"x".repeat(MAX_NICK)) && !is_valid_nick(&"x".repeat(MAX_NICK + 1)));
    }

    #[test]
    fn inputs_round_trip() {
        let mut out = Vec::new();
        for input in
            [Input::Text("hi there"), Input::Nick("ann"), Input::Who, Input::Quit, Input::Unknown("x")]
        {
            input.encode(&mut out);
            let line = std::str::from_utf8(out.strip_suffix(b"\n").expect("a line")).expect("UTF-8");
            assert_eq!(Input::parse(line), Some(input), "{line}");
        }
    }

    #[test]
    fn server_lines_round_trip() {
        let mut out = Vec::new();
        write_welcome(&mut out, "[::1]:5", 4);
        assert_eq!(ServerLine::decode(out.trim_ascii_end()), ServerLine::Welcome { label: b"[::1]:5" });
        write_message(&mut out, "[::1]:5", "NLM 1: 2");
        assert_eq!(
            ServerLine::decode(out.trim_ascii_end()),
            ServerLine::Message { from: b"[::1]:5", text: b"NLM 1: 2" }
        );
        write_renamed(&mut out, "a", "b");
        assert_eq!(ServerLine::decode(out.trim_ascii_end()), ServerLine::Notice(b"a is now b"));
        assert_eq!(ServerLine::decode(b"* welcome x"), ServerLine::Notice(b"welcome x"));
        assert_eq!(ServerLine::decode(b"plain"), ServerLine::Other(b"plain"));
    }
}
