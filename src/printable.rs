//! Text from peers, made safe to show: on another member's terminal, in `netloop connect`'s
//! output and in the server's log.
//!
//! A peer that can put a carriage return, an ESC sequence or a line feed in front of someone
//! else can overwrite what they see (`\r` back over the sender's label, `ESC [2J` clearing the
//! screen) or forge a log line. Names are therefore limited to printable text
//! ([`is_printable_name`]), and free text is shown with its control characters spelled out
//! ([`escape_controls`]): `\r`, `\n`, `\e`, or `\xHH` / `\u{HHHH}` for the rest. Tab is the one
//! control character left alone where the caller asks for it; it moves the cursor but cannot
//! hide text.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must be spelled out: C0 controls, DEL, C1 controls (Unicode's `Cc`), and the
/// Unicode line and paragraph separators, which some terminals and log viewers treat as new
/// lines, and the bidirectional overrides that reorder what a line appears to say.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Whether a name (chat nick, hub client name, room name) is printable text only: no
/// character [`is_unsafe_char`] would spell out, tab included. Emptiness and length are the
/// caller's rules.
pub fn is_printable_name(name: &str) -> bool {
    !name.chars().any(is_unsafe_char)
}

/// `text` with every unsafe character spelled out visibly, except tab when `keep_tab` is set.
/// Borrows when there is nothing to escape (the common case allocates nothing).
///
/// A backslash is left as is: escaping only makes control characters visible, it is not meant
/// to be reversible.
pub fn escape_controls(text: &str, keep_tab: bool) -> Cow<'_, str> {
    let needs = |c: char| is_unsafe_char(c) && !(keep_tab && c == '\t');
    let Some(first) = text.find(needs) else { return Cow::Borrowed(text) };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if !needs(c) {
            out.push(c);
            continue;
        }
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// Log-safe form of a peer-supplied string: every unsafe character spelled out, tab included,
/// so one log record stays one line and cannot carry terminal escapes.
pub fn for_log(text: &str) -> Cow<'_, str> {
    escape_controls(text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape_controls("hello, wörld", true), Cow::Borrowed(_)));
        assert!(matches!(for_log("a\tb"), Cow::Owned(_)));
    }

    #[test]
    fn controls_are_spelled_out() {
        assert_eq!(escape_controls("harmless\rmallory: hi", true), "harmless\\rmallory: hi");
        assert_eq!(escape_controls("\u{1b}[2J\u{7}\0", true), "\\e[2J\\x07\\x00");
        assert_eq!(escape_controls("a\tb\x7f", true), "a\tb\\x7f");
        assert_eq!(escape_controls("a\tb", false), "a\\tb");
        assert_eq!(escape_controls("x\u{85}y\u{202e}z", true), "x\\x85y\\u{202e}z");
        assert_eq!(for_log("forged\nINFO line"), "forged\\nINFO line");
    }

    #[test]
    fn printable_names() {
        assert!(is_printable_name("Client-1"));
        assert!(is_printable_name("名前 with spaces"));
        for bad in ["a\rb", "a\nb", "\u{1b}[31m", "bell\u{7}", "tab\tname", "rtl\u{202e}x", "nul\0"] {
            assert!(!is_printable_name(bad), "{bad:?}");
        }
    }
}
