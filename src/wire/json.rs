//! The JSON the hub protocol needs, and no more: a compact writer whose key order is the
//! caller's (key order is part of the hub's contract), and a finder of the top-level members
//! of an object or items of an array as borrowed raw texts, so a client's `message` can be
//! relayed byte for byte.
//!
//! serde_json (without serde's derive, which this crate does not depend on) cannot hand out
//! borrowed fields of an object, so the boundaries are found here. The finders only ever run
//! on text that serde_json has just validated, which makes them boundary finders, not
//! parsers; on anything else they stop early and never panic.

use std::borrow::Cow;

/// Appends `s` as a JSON string, escaped as `JSON.stringify` does.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
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

/// `s` as JSON string text (`JSON.stringify(s)`), for building a request's raw `message`.
pub fn string(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_str(&mut out, s);
    // Escaping keeps UTF-8 valid: only ASCII bytes are replaced.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes one compact JSON object, keys in the order they are added, into a reusable buffer
/// (cleared first), ending with `}` and `\n` when [`JsonLine::end`] is called.
#[derive(Debug)]
pub struct JsonLine<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> JsonLine<'o> {
    /// Clears `out` and opens the object.
    pub fn start(out: &'o mut Vec<u8>) -> Self {
        out.clear();
        out.push(b'{');
        JsonLine { out, empty: true }
    }

    /// Writes `"key":` (with the comma before it when needed); the value must follow.
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    /// A string member.
    pub fn str(mut self, key: &str, value: &str) -> Self {
        write_str(self.key(key), value);
        self
    }

    /// A member whose value is already JSON text (a client's `message`, a number, `true`).
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key).extend_from_slice(json.as_bytes());
        self
    }

    /// A number member.
    pub fn num(mut self, key: &str, value: u64) -> Self {
        let out = self.key(key);
        // Writing into a Vec cannot fail.
        let _ = std::io::Write::write_fmt(out, format_args!("{value}"));
        self
    }

    /// The buffer, to go on writing by hand after [`JsonLine::key`] (closing it is then the
    /// caller's).
    pub fn into_inner(self) -> &'o mut Vec<u8> {
        self.out
    }

    /// Closes the object and the line.
    pub fn end(self) {
        self.out.extend_from_slice(b"}\n");
    }
}

/// The string a raw JSON text stands for, or `None` when it is not a string or holds a lone
/// surrogate escape (`"\ud800"`: valid JSON, not Unicode). Borrowed unless it holds escapes
/// (rare), which serde_json decodes.
pub fn str_value(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// The JSON string at the start of `text` and the text after it: `None` when `text` does not
/// start with a string or the string is not Unicode.
pub fn split_str(text: &str) -> Option<(Cow<'_, str>, &str)> {
    if !text.starts_with('"') {
        return None;
    }
    let end = string_end(text.as_bytes(), 0)?;
    // The string ends at an ASCII quote, a char boundary.
    let (string, rest) = text.split_at_checked(end)?;
    Some((str_value(string)?, rest))
}

/// The top-level members of a validated JSON object text, as raw `(key, value)` texts.
#[derive(Debug, Clone)]
pub struct ObjectMembers<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> ObjectMembers<'a> {
    /// The members of `text`, which must be a JSON object serde_json has validated; for any
    /// other text the iteration ends early.
    pub fn new(text: &'a str) -> Self {
        let at = if text.starts_with('{') { 1 } else { text.len() };
        ObjectMembers { text, at }
    }
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

/// The items of a validated JSON array text, as raw texts.
#[derive(Debug, Clone)]
pub struct ArrayItems<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> ArrayItems<'a> {
    /// The items of `text`, which must be a JSON array serde_json has validated; for any other
    /// text the iteration ends early.
    pub fn new(text: &'a str) -> Self {
        let at = if text.starts_with('[') { 1 } else { text.len() };
        ArrayItems { text, at }
    }
}

impl<'a> Iterator for ArrayItems<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.text.as_bytes();
        let mut i = skip_ws(bytes, self.at);
        if bytes.get(i) == Some(&b',') {
            i = skip_ws(bytes, i + 1);
        }
        self.at = bytes.len();
        if matches!(bytes.get(i), None | Some(b']')) {
            return None;
        }
        let end = value_end(bytes, i)?;
        self.at = end;
        self.text.get(i..end)
    }
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
    loop {
        // The common case, a run of plain characters, in one tight search.
        i += bytes.get(i..)?.iter().position(|&b| b == b'"' || b == b'\\')?;
        if bytes[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        assert_eq!(str_value(r#""abc""#).as_deref(), Some("abc"));
        assert_eq!(str_value(r#""a\"b\u00e9""#).as_deref(), Some("a\"bé"));
        assert_eq!(str_value("12"), None);
        assert_eq!(str_value("\""), None);
        assert_eq!(str_value(r#""\ud800""#), None);
        let mut out = Vec::new();
        write_str(&mut out, "a\"\\\n\r\t\u{8}\u{c}\u{1}\u{1f}é/\u{7f}");
        assert_eq!(String::from_utf8_lossy(&out), "\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001fé/\u{7f}\"");
        assert_eq!(string("say \"hi\""), r#""say \"hi\"""#);
        assert_eq!(split_str(r#""a\"b",1"#), Some(("a\"b".into(), ",1")));
        assert_eq!(split_str(r#"1,"a""#), None);
        assert_eq!(split_str(r#""open"#), None);
    }

    #[test]
    fn lines_keep_key_order() {
        let mut out = b"junk".to_vec();
        JsonLine::start(&mut out).str("type", "x").raw("message", "{\"a\": 1}").num("n", 42).end();
        assert_eq!(out, b"{\"type\":\"x\",\"message\":{\"a\": 1},\"n\":42}\n");
    }

    #[test]
    fn finds_members_and_items() {
        let members: Vec<_> =
            ObjectMembers::new(r#"{ "a" : [1, "]"] , "b":{"c":null},"d":-1.5e3 }"#).collect();
        assert_eq!(members, [(r#""a""#, r#"[1, "]"]"#), (r#""b""#, r#"{"c":null}"#), (r#""d""#, "-1.5e3")]);
        let items: Vec<_> = ArrayItems::new(r#"[ {"x":[1]}, "a,b" ,3,null]"#).collect();
        assert_eq!(items, [r#"{"x":[1]}"#, r#""a,b""#, "3", "null"]);
        assert_eq!(ArrayItems::new("[]").count(), 0);
        assert_eq!(ArrayItems::new("{}").count(), 0);
        assert_eq!(ObjectMembers::new("[1]").count(), 0);
    }
}
