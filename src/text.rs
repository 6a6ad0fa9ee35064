//! Node's `socket.setEncoding('utf8')` (its `StringDecoder`): bytes in, text out, with a
//! character split across two reads held back until its last byte arrives.
//!
//! Handlers receive raw bytes, as Node's `'data'` does without `setEncoding`. TCP may cut a
//! multi-byte character anywhere, so decoding each chunk on its own (`from_utf8_lossy`) turns
//! `é` into two replacement characters now and then. A [`Utf8Decoder`] per socket keeps the at
//! most three bytes of an unfinished character for the next chunk; invalid bytes become
//! U+FFFD exactly as if the whole stream had been decoded at once.

use std::borrow::Cow;

/// The longest unfinished UTF-8 sequence: a 4-byte character missing its last byte.
const MAX_PENDING: usize = 3;

/// Decodes a UTF-8 byte stream chunk by chunk. One per socket; 4 bytes of state.
#[derive(Debug, Default, Clone)]
pub struct Utf8Decoder {
    pending: [u8; MAX_PENDING],
    pending_len: u8,
}

impl Utf8Decoder {
    /// A decoder with nothing held.
    pub fn new() -> Utf8Decoder {
        Utf8Decoder::default()
    }

    /// The text of `chunk`, minus an unfinished character at its end (held for the next
    /// call), plus the one held from the last call if `chunk` finishes it. Borrows `chunk`
    /// when it is valid UTF-8 and nothing was held: the common case allocates nothing.
    pub fn decode<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, str> {
        if self.pending_len == 0 {
            let keep = unfinished_tail(chunk);
            let (body, tail) = chunk.split_at(chunk.len() - keep);
            self.hold(tail);
            return String::from_utf8_lossy(body);
        }
        let mut joined = Vec::with_capacity(self.pending_len as usize + chunk.len());
        joined.extend_from_slice(&self.pending[..self.pending_len as usize]);
        joined.extend_from_slice(chunk);
        let keep = unfinished_tail(&joined);
        let split = joined.len() - keep;
        self.hold(&joined[split..]);
        joined.truncate(split);
        Cow::Owned(match String::from_utf8(joined) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// The stream ended: an unfinished character becomes U+FFFD, as Node's `decoder.end()`.
    pub fn end(&mut self) -> Option<String> {
        let held = &self.pending[..self.pending_len as usize];
        let text = (!held.is_empty()).then(|| String::from_utf8_lossy(held).into_owned());
        self.pending_len = 0;
        text
    }

    /// Bytes held back, waiting for the rest of their character (0 to 3).
    pub fn pending(&self) -> usize {
        self.pending_len as usize
    }

    fn hold(&mut self, tail: &[u8]) {
        self.pending[..tail.len()].copy_from_slice(tail);
        self.pending_len = tail.len() as u8;
    }
}

/// How many bytes at the end of `bytes` start a valid character that has not finished yet
/// (0 to 3). Invalid bytes are not held: they decode to U+FFFD now, as in a whole-stream decode.
pub fn unfinished_tail(bytes: &[u8]) -> usize {
    for back in 1..=MAX_PENDING.min(bytes.len()) {
        let start = bytes.len() - back;
        if bytes[start] & 0xC0 == 0x80 {
            continue; // a continuation byte: its lead is further back
        }
        return match std::str::from_utf8(&bytes[start..]) {
            Err(e) if e.valid_up_to() == 0 && e.error_len().is_none() => back,
            _ => 0,
        };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in(chunks: &[&[u8]]) -> String {
        let mut d = Utf8Decoder::new();
        let mut out: String = chunks.iter().map(|c| d.decode(c).into_owned()).collect();
        out.extend(d.end());
        out
    }

    #[test]
    fn a_character_split_across_chunks_comes_out_whole() {
        let e = "é".as_bytes();
        let mut d = Utf8Decoder::new();
        assert_eq!(d.decode(&[b'a', e[0]]), "a");
        assert_eq!(d.pending(), 1);
        assert_eq!(d.decode(&[e[1], b'b']), "éb");
        assert_eq!(d.end(), None);
        let crab = "🦀".as_bytes();
        assert_eq!(decode_in(&[&crab[..1], &crab[1..2], &crab[2..3], &crab[3..]]), "🦀");
    }

    #[test]
    fn valid_chunks_are_borrowed() {
        let mut d = Utf8Decoder::new();
        assert!(matches!(d.decode("plain ascii and é".as_bytes()), Cow::Borrowed(_)));
    }

    #[test]
    fn invalid_and_unfinished_bytes_become_replacement_characters() {
        assert_eq!(decode_in(&[b"a\xffb"]), "a\u{fffd}b");
        // An unfinished character followed by something else, and one cut off by the end.
        assert_eq!(decode_in(&[b"\xe2\x82", b"x"]), "\u{fffd}x");
        assert_eq!(decode_in(&[b"ok\xf0\x9f"]), "ok\u{fffd}");
    }
}
