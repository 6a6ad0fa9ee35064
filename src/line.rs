//! Incremental `\n`-delimited line splitting for the chat protocol.
//!
//! A TCP read hands us an arbitrary slice of the byte stream: it may hold several
//! lines, a fragment of one, or both. [`LineSplitter`] turns those slices into
//! complete lines without copying in the common case (a line lying wholly inside
//! one read is handed out as a sub-slice of that read) and without letting a
//! peer make us buffer an unbounded amount of memory: a line longer than the
//! configured maximum is reported as [`LineTooLong`] as soon as that is certain,
//! before its newline arrives, and at most `max + 1` bytes are ever held.
//!
//! Framing rules (see the chat section of the protocol contract):
//! - a line ends at `\n`; one `\r` directly before that `\n` is stripped too;
//! - a `\r` anywhere else is ordinary line content;
//! - empty lines are reported (the caller decides to ignore them);
//! - the maximum applies to the line without its terminator (`\n` or `\r\n`).
//!
//! Only std is used (`iter().position` for the newline search; no `memchr`).

use std::fmt;

/// Capacity above which an emptied buffer is given back to the allocator, so an
/// idle connection that once received a long partial line does not keep that
/// memory for the rest of its life.
const RELEASE_ABOVE: usize = 4 * 1024;

/// Error returned when a peer sends a line longer than the configured maximum.
///
/// It exists so the connection handler can answer
/// `* error: line too long (max N bytes)` and close the connection; its
/// [`Display`](fmt::Display) text is exactly `line too long (max N bytes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    /// The maximum line length in bytes (terminator excluded) that was exceeded.
    pub max: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line too long (max {} bytes)", self.max)
    }
}

impl std::error::Error for LineTooLong {}

/// Splits a byte stream, delivered in arbitrary chunks, into lines.
///
/// One splitter belongs to one connection: it keeps the unfinished tail of the
/// last chunk between [`feed`](Self::feed) calls.
///
/// After `feed` has returned `Err`, the splitter's state is unspecified (it never
/// panics and its memory stays bounded, but the lines it would report are
/// meaningless): the connection is meant to be closed and the splitter dropped.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    /// Unfinished tail of the stream (no `\n` in it); at most `max + 1` bytes.
    buf: Vec<u8>,
    /// Longest accepted line in bytes, terminator excluded.
    max: usize,
}

impl LineSplitter {
    /// Creates a splitter that accepts lines of at most `max_line` bytes
    /// (not counting the `\n` or `\r\n` terminator).
    ///
    /// No memory is allocated until a partial line must be kept.
    pub fn new(max_line: usize) -> Self {
        LineSplitter { buf: Vec::new(), max: max_line }
    }

    /// Feeds the next chunk of the stream, calling `on_line` once for every line
    /// completed by it, in order, without the `\n` and without a `\r` directly
    /// before that `\n`.
    ///
    /// A line lying wholly inside `input` is passed as a sub-slice of `input`
    /// (no copy); only an unfinished tail is copied into the internal buffer.
    ///
    /// Returns `Err(LineTooLong)` as soon as some line is known to exceed the
    /// maximum: either its `\n` has arrived, or more than `max` bytes without a
    /// newline have arrived and they can no longer be a line of `max` bytes
    /// followed by `\r\n`. Lines before the offending one have been passed to
    /// `on_line` by then. After an `Err` the splitter should be dropped.
    pub fn feed(&mut self, input: &[u8], mut on_line: impl FnMut(&[u8])) -> Result<(), LineTooLong> {
        let mut rest = input;
        while !rest.is_empty() {
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                return self.keep_tail(rest);
            };
            let chunk = &rest[..nl];
            rest = &rest[nl + 1..];
            if self.buf.is_empty() {
                let line = strip_cr(chunk);
                if line.len() > self.max {
                    return Err(self.too_long());
                }
                on_line(line);
            } else {
                let total = self.buf.len() + chunk.len();
                let last = chunk.last().or(self.buf.last()).copied();
                let line_len = if last == Some(b'\r') { total - 1 } else { total };
                if line_len > self.max {
                    return Err(self.too_long());
                }
                self.buf.extend_from_slice(chunk);
                on_line(&self.buf[..line_len]);
                self.clear_buf();
            }
        }
        Ok(())
    }

    /// Number of bytes of an unfinished line currently held.
    ///
    /// Useful for memory accounting and for tests; it never exceeds `max + 1`.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stores an unfinished tail (no `\n` in it), failing if it already proves
    /// the line too long.
    fn keep_tail(&mut self, tail: &[u8]) -> Result<(), LineTooLong> {
        let total = self.buf.len() + tail.len();
        let limit = self.max.saturating_add(1);
        // With `max + 1` bytes the line may still be `max` bytes plus a `\r`
        // whose `\n` has not arrived yet; anything more is certainly too long.
        let too_long = total > limit || (total == limit && tail.last() != Some(&b'\r'));
        if too_long {
            return Err(self.too_long());
        }
        self.buf.extend_from_slice(tail);
        Ok(())
    }

    /// Hands the unfinished line held so far to `on_text`, as if its newline had come, and
    /// forgets it: for a peer that sends text without newlines. The last bytes are kept back
    /// if they are the start of a UTF-8 character that has not finished arriving (at most 3),
    /// so the text handed out never ends in half a character. Does nothing if there is no
    /// complete character to hand out.
    pub fn flush_partial(&mut self, on_text: impl FnOnce(&[u8])) {
        let end = self.buf.len() - crate::text::unfinished_tail(&self.buf);
        if end == 0 {
            return;
        }
        on_text(&self.buf[..end]);
        if end == self.buf.len() {
            self.clear_buf();
        } else {
            self.buf.drain(..end);
        }
    }

    /// Hands whatever is held to `on_text`, unfinished characters included, and forgets it:
    /// the end of a stream, where no more bytes will come. Does nothing if nothing is held.
    pub fn finish(&mut self, on_text: impl FnOnce(&[u8])) {
        if !self.buf.is_empty() {
            on_text(&self.buf);
            self.clear_buf();
        }
    }

    /// Empties the buffer, giving large allocations back.
    fn clear_buf(&mut self) {
        if self.buf.capacity() > RELEASE_ABOVE {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    fn too_long(&self) -> LineTooLong {
        LineTooLong { max: self.max }
    }
}

/// Removes one trailing `\r` (the `\r` of a `\r\n` terminator).
fn strip_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', head)) => head,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds each chunk in turn, collecting owned lines; stops at the first error.
    fn run(max: usize, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Result<(), LineTooLong>) {
        let mut s = LineSplitter::new(max);
        let mut lines = Vec::new();
        for c in chunks {
            let r = s.feed(c, |l| lines.push(l.to_vec()));
            if r.is_err() {
                return (lines, r);
            }
        }
        (lines, Ok(()))
    }

    fn v(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn finish_hands_out_everything_held() {
        let mut s = LineSplitter::new(100);
        let mut got = Vec::new();
        s.feed(b"a\nb\xc3", |l| got.push(l.to_vec())).expect("fits");
        s.finish(|rest| got.push(rest.to_vec()));
        assert_eq!(got, [b"a".to_vec(), b"b\xc3".to_vec()], "an unfinished character too");
        assert_eq!(s.buffered(), 0);
        s.finish(|_| panic!("nothing held"));
    }

    #[test]
    fn splits_lines_in_one_chunk() {
        let (lines, r) = run(100, &[b"a\nbb\nccc\n"]);
        assert_eq!(r, Ok(()));
        assert_eq!(lines, v(&["a", "bb", "ccc"]));
    }

    #[test]
    fn strips_crlf_but_keeps_lone_cr() {
        let (lines, r) = run(100, &[b"a\r\nb\rc\n\r\r\n\rx\n"]);
        assert_eq!(r, Ok(()));
        assert_eq!(lines, v(&["a", "b\rc", "\r", "\rx"]));
    }

    #[test]
    fn reports_empty_lines() {
        let (lines, r) = run(100, &[b"\n\r\n\n"]);
        assert_eq!(r, Ok(()));
        assert_eq!(lines, v(&["", "", ""]));
    }

    #[test]
    fn keeps_unfinished_tail_across_feeds() {
        let mut s = LineSplitter::new(100);
        let mut lines = Vec::new();
        assert_eq!(s.feed(b"hel", |l| lines.push(l.to_vec())), Ok(()));
        assert_eq!(s.buffered(), 3);
        assert!(lines.is_empty());
        assert_eq!(s.feed(b"lo\r", |l| lines.push(l.to_vec())), Ok(()));
        assert_eq!(s.buffered(), 6);
        assert_eq!(s.feed(b"\nworld\n!", |l| lines.push(l.to_vec())), Ok(()));
        assert_eq!(lines, v(&["hello", "world"]));
        assert_eq!(s.buffered(), 1);
    }

    #[test]
    fn cr_at_end_of_one_chunk_and_lf_at_start_of_next() {
        let (lines, r) = run(100, &[b"ab\r", b"\ncd\r", b"x\n"]);
        assert_eq!(r, Ok(()));
        assert_eq!(lines, v(&["ab", "cd\rx"]));
    }

    #[test]
    fn one_byte_at_a_time() {
        let data = b"one\r\ntwo\n\nthr\ree\n";
        let chunks: Vec<&[u8]> = data.chunks(1).collect();
        let (lines, r) = run(100, &chunks);
        assert_eq!(r, Ok(()));
        assert_eq!(lines, v(&["one", "two", "", "thr\ree"]));
    }

    #[test]
    fn zero_copy_for_lines_inside_input() {
        let input = b"abc\ndef\n";
        let mut s = LineSplitter::new(100);
        let base = input.as_ptr() as usize;
        let mut offsets = Vec::new();
        s.feed(input, |l| offsets.push(l.as_ptr() as usize - base)).expect("short lines");
        assert_eq!(offsets, vec![0, 4]);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn exactly_max_is_accepted() {
        assert_eq!(run(3, &[b"abc\n"]), (v(&["abc"]), Ok(())));
        assert_eq!(run(3, &[b"abc\r\n"]), (v(&["abc"]), Ok(())));
        assert_eq!(run(3, &[b"ab", b"c\r", b"\n"]), (v(&["abc"]), Ok(())));
        assert_eq!(run(3, &[b"a", b"b", b"c", b"\r", b"\n"]), (v(&["abc"]), Ok(())));
        assert_eq!(run(0, &[b"\n\r\n"]), (v(&["", ""]), Ok(())));
    }

    #[test]
    fn max_plus_one_is_rejected() {
        let err = Err(LineTooLong { max: 3 });
        assert_eq!(run(3, &[b"ok\nabcd\n"]), (v(&["ok"]), err));
        assert_eq!(run(3, &[b"abcd\r\n"]), (vec![], err));
        // A `\r` not followed by `\n` counts as content.
        assert_eq!(run(3, &[b"abc\rx"]), (vec![], err));
        assert_eq!(run(3, &[b"ab\r\r\n"]), (v(&["ab\r"]), Ok(())));
        assert_eq!(run(3, &[b"abc\r\r\n"]), (vec![], err));
        assert_eq!(run(0, &[b"x\n"]), (vec![], Err(LineTooLong { max: 0 })));
    }

    #[test]
    fn too_long_detected_before_newline() {
        let mut s = LineSplitter::new(3);
        assert_eq!(s.feed(b"abc", |_| {}), Ok(()));
        // Four bytes, last not `\r`: cannot become a 3-byte line any more.
        assert_eq!(s.feed(b"d", |_| {}), Err(LineTooLong { max: 3 }));

        let mut s = LineSplitter::new(3);
        assert_eq!(s.feed(b"abcd", |_| {}), Err(LineTooLong { max: 3 }));

        // `abc\r` may still be `abc` + `\r\n`: wait for the next byte.
        let mut s = LineSplitter::new(3);
        assert_eq!(s.feed(b"abc\r", |_| {}), Ok(()));
        assert_eq!(s.buffered(), 4);
        assert_eq!(s.feed(b"x", |_| {}), Err(LineTooLong { max: 3 }));
    }

    #[test]
    fn never_buffers_more_than_max_plus_one() {
        let max = 10;
        let mut s = LineSplitter::new(max);
        for _ in 0..max {
            assert_eq!(s.feed(b"a", |_| {}), Ok(()));
            assert!(s.buffered() <= max + 1);
        }
        assert_eq!(s.feed(b"\r", |_| {}), Ok(()));
        assert_eq!(s.buffered(), max + 1);
        assert!(s.feed(b"\r", |_| {}).is_err());
        assert!(s.buffered() <= max + 1);
    }

    #[test]
    fn lines_before_the_long_one_are_delivered() {
        let (lines, r) = run(4, &[b"a\nbb\n", b"ccc\ntoolong"]);
        assert_eq!(lines, v(&["a", "bb", "ccc"]));
        assert_eq!(r, Err(LineTooLong { max: 4 }));
    }

    #[test]
    fn huge_max_does_not_overflow() {
        let (lines, r) = run(usize::MAX, &[b"abc", b"def\n"]);
        assert_eq!(r, Ok(()));
        assert_eq!(lines, v(&["abcdef"]));
    }

    #[test]
    fn releases_large_buffer_when_emptied() {
        let mut s = LineSplitter::new(1 << 20);
        let big = vec![b'x'; 64 * 1024];
        assert_eq!(s.feed(&big, |_| {}), Ok(()));
        assert!(s.buf.capacity() >= big.len());
        let mut n = 0;
        assert_eq!(s.feed(b"\n", |l| n = l.len()), Ok(()));
        assert_eq!(n, big.len());
        assert_eq!(s.buffered(), 0);
        assert_eq!(s.buf.capacity(), 0);
    }

    #[test]
    fn keeps_small_buffer_when_emptied() {
        let mut s = LineSplitter::new(100);
        assert_eq!(s.feed(b"abc", |_| {}), Ok(()));
        assert_eq!(s.feed(b"\n", |_| {}), Ok(()));
        assert_eq!(s.buffered(), 0);
        assert!(s.buf.capacity() > 0);
    }

    #[test]
    fn one_byte_feeding_of_a_long_line_stays_linear() {
        let mut data = vec![b'x'; 256 * 1024];
        data.extend_from_slice(b"\r\n");
        let mut s = LineSplitter::new(256 * 1024);
        let mut n = None;
        for b in data.chunks(1) {
            s.feed(b, |l| n = Some(l.len())).expect("exactly max");
        }
        assert_eq!(n, Some(256 * 1024));
    }

    #[test]
    fn flushing_hands_out_the_partial_line_but_not_half_a_character() {
        let mut s = LineSplitter::new(100);
        let mut got = Vec::new();
        assert_eq!(s.feed("caf\u{e9} \u{1f980}".as_bytes().split_at(9).0, |_| {}), Ok(()));
        assert_eq!(s.buffered(), 9); // "café " and the crab but its last byte
        s.flush_partial(|t| got.push(t.to_vec()));
        assert_eq!(got, v(&["caf\u{e9} "]));
        assert_eq!(s.buffered(), 3, "the unfinished character waits for the rest");
        s.flush_partial(|t| got.push(t.to_vec()));
        assert_eq!(got.len(), 1, "nothing complete to hand out");
        assert_eq!(s.feed(&"\u{1f980}".as_bytes()[3..], |_| {}), Ok(()));
        assert_eq!(s.feed(b"!\n", |l| got.push(l.to_vec())), Ok(()));
        assert_eq!(got, v(&["caf\u{e9} ", "\u{1f980}!"]));
        assert_eq!(s.buffered(), 0);
        // A long partial gives its memory back once handed out.
        assert_eq!(s.feed(&[b'x'; 90], |_| {}), Ok(()));
        s.flush_partial(|t| assert_eq!(t.len(), 90));
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn error_message_matches_contract() {
        assert_eq!(LineTooLong { max: 65536 }.to_string(), "line too long (max 65536 bytes)");
    }
}
