//! Incremental framing of the hub's JSON stream.
//!
//! Hub clients send JSON values back to back (`{"a":1}{"b":2}`) or separated by
//! whitespace, and a frame may not contain a raw newline. [`FrameDecoder`] finds
//! the byte extent of each value without parsing it: a value starts with `{` or
//! `[` and ends at the bracket that brings the nesting depth back to zero, with
//! brackets inside JSON strings (and escaped quotes) ignored. The caller runs a
//! real JSON parser (serde_json) on each [`Frame::Json`] and reports `bad_json`
//! if that fails, so this scanner only needs to be exact about *where* frames
//! end, not about whether they are valid JSON (mismatched brackets such as
//! `{"a":1]` are framed and left to the parser).
//!
//! Rules:
//! - whitespace (space, `\t`, `\r`, `\n`) between values is skipped;
//! - a raw `\n` inside an unfinished value (inside a string or not) ends it:
//!   one [`Frame::Malformed`] is reported and scanning resumes after the `\n`;
//! - any other byte at top level starts a junk run: one [`Frame::Malformed`] is
//!   reported and everything up to and including the next `\n` is skipped;
//! - nesting deeper than [`MAX_DEPTH`] levels is reported as one
//!   [`Frame::TooDeep`] and the rest of the line is skipped as junk, which
//!   keeps hostile `[[[[...` away from any recursive JSON code;
//! - a value longer than `max_frame` bytes, or a junk run longer than
//!   `max_frame` bytes without a newline, fails with [`FrameTooLarge`].
//!
//! The scanner state persists across [`FrameDecoder::feed`] calls and buffered
//! bytes are never rescanned, so the total work is O(bytes) however the stream
//! is chunked (even one byte per read). A frame lying wholly inside one input
//! slice is handed out as a sub-slice of it (no copy); only an unfinished value
//! is copied into the internal buffer, which never exceeds `max_frame` bytes.

use std::fmt;

/// Deepest bracket nesting passed on as a frame; one level more is
/// [`Frame::TooDeep`].
///
/// It exists to keep hostile input such as `[[[[...` away from recursive JSON
/// code. It matches serde_json's own recursion limit (128), so a value this
/// framer passes on is never refused by a parser for its depth.
pub const MAX_DEPTH: u32 = 128;

/// Capacity above which an emptied buffer is given back to the allocator, so an
/// idle connection that once received a large partial frame does not keep that
/// memory for the rest of its life.
const RELEASE_ABOVE: usize = 4 * 1024;

/// One unit of the hub stream found by [`FrameDecoder::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The exact bytes of one bracket-balanced value, from its opening `{`/`[`
    /// to its matching close bracket. Not validated as JSON: the caller parses
    /// it and reports `bad_json` on failure.
    Json(&'a [u8]),
    /// Bytes that cannot be a frame (top-level junk, a value cut by a raw
    /// newline); the caller reports `bad_json` and the connection stays usable.
    Malformed,
    /// A value nested deeper than [`MAX_DEPTH`] levels; the rest of its line is
    /// skipped as junk. Reported apart from [`Frame::Malformed`] so the peer can
    /// be told the real reason: the JSON may well be valid, just too deep.
    TooDeep,
}

/// Error returned when a value, or a junk run without a newline, grows beyond
/// the configured maximum.
///
/// It exists so the connection handler can send the `frame_too_large` error and
/// close the connection instead of buffering without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge {
    /// The maximum frame size in bytes that was exceeded.
    pub max: usize,
}

impl fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frame too large (max {} bytes)", self.max)
    }
}

impl std::error::Error for FrameTooLarge {}

/// What the scanner is in the middle of, kept between `feed` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Between values: skipping whitespace.
    Top,
    /// Inside a value whose bytes so far are in `buf` (plus the current input).
    Value,
    /// Skipping a junk run up to and including the next `\n`.
    Junk,
}

/// Splits a hub byte stream, delivered in arbitrary chunks, into JSON frames.
///
/// One decoder belongs to one connection. After [`feed`](Self::feed) has
/// returned `Err`, its state is unspecified (it never panics and its memory
/// stays bounded, but further frames are meaningless): the connection is meant
/// to be closed and the decoder dropped.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    /// Bytes of the unfinished value (only in `Mode::Value`); at most `max`.
    buf: Vec<u8>,
    /// Largest accepted value, and longest junk run skipped, in bytes.
    max: usize,
    mode: Mode,
    /// Bracket nesting depth of the current value (1 right after its opener).
    depth: u32,
    /// Inside a JSON string of the current value.
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escape: bool,
    /// Length of the current junk run so far (newline excluded).
    junk_len: usize,
}

impl FrameDecoder {
    /// Creates a decoder accepting frames of at most `max_frame` bytes.
    ///
    /// No memory is allocated until a partial frame must be kept.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            max: max_frame,
            mode: Mode::Top,
            depth: 0,
            in_string: false,
            escape: false,
            junk_len: 0,
        }
    }

    /// Feeds the next chunk of the stream, calling `on_frame` for every frame or
    /// malformed run completed or detected by it, in stream order.
    ///
    /// Returns `Err(FrameTooLarge)` as soon as the current value reaches
    /// `max_frame + 1` bytes, or a junk run reaches `max_frame + 1` bytes without
    /// a newline; frames before it have been delivered by then. After an `Err`
    /// the decoder should be dropped.
    pub fn feed(&mut self, input: &[u8], mut on_frame: impl FnMut(Frame<'_>)) -> Result<(), FrameTooLarge> {
        let mut i = 0;
        // Start in `input` of the current value's bytes; a value carried over
        // from an earlier feed continues at index 0 with its prefix in `buf`.
        let mut seg_start = 0;
        while i < input.len() {
            match self.mode {
                Mode::Top => {
                    match input[i] {
                        b' ' | b'\t' | b'\r' | b'\n' => {}
                        b'{' | b'[' => {
                            if self.max == 0 {
                                return Err(self.too_large());
                            }
                            self.mode = Mode::Value;
                            self.depth = 1;
                            self.in_string = false;
                            self.escape = false;
                            seg_start = i;
                        }
                        _ => {
                            on_frame(Frame::Malformed);
                            self.mode = Mode::Junk;
                            self.junk_len = 0;
                            // The junk byte itself is counted by the Junk arm.
                            continue;
                        }
                    }
                    i += 1;
                }
                Mode::Junk => {
                    let rest = &input[i..];
                    let (run, consumed) = match rest.iter().position(|&b| b == b'\n') {
                        Some(nl) => (nl, nl + 1),
                        None => (rest.len(), rest.len()),
                    };
                    self.junk_len = self.junk_len.saturating_add(run);
                    if self.junk_len > self.max {
                        return Err(self.too_large());
                    }
                    if consumed > run {
                        self.mode = Mode::Top;
                    }
                    i += consumed;
                }
                Mode::Value => {
                    let b = input[i];
                    if b == b'\n' {
                        on_frame(Frame::Malformed);
                        self.clear_buf();
                        self.mode = Mode::Top;
                        i += 1;
                        continue;
                    }
                    // Length of the value including `b`.
                    let len = self.buf.len() + (i - seg_start) + 1;
                    if len > self.max {
                        return Err(self.too_large());
                    }
                    if self.in_string {
                        if self.escape {
                            self.escape = false;
                        } else if b == b'\\' {
                            self.escape = true;
                        } else if b == b'"' {
                            self.in_string = false;
                        }
                    } else {
                        match b {
                            b'"' => self.in_string = true,
                            b'{' | b'[' => {
                                if self.depth >= MAX_DEPTH {
                                    on_frame(Frame::TooDeep);
                                    self.clear_buf();
                                    // The whole too-deep value so far counts
                                    // towards the junk run it turns into.
                                    self.mode = Mode::Junk;
                                    self.junk_len = len;
                                    i += 1;
                                    continue;
                                }
                                self.depth += 1;
                            }
                            b'}' | b']' => {
                                self.depth -= 1;
                                if self.depth == 0 {
                                    let tail = &input[seg_start..=i];
                                    if self.buf.is_empty() {
                                        on_frame(Frame::Json(tail));
                                    } else {
                                        self.buf.extend_from_slice(tail);
                                        on_frame(Frame::Json(&self.buf));
                                        self.clear_buf();
                                    }
                                    self.mode = Mode::Top;
                                }
                            }
                            _ => {}
                        }
                    }
                    i += 1;
                }
            }
        }
        if self.mode == Mode::Value {
            self.buf.extend_from_slice(&input[seg_start..]);
        }
        Ok(())
    }

    /// Number of bytes of an unfinished value currently held.
    ///
    /// Useful for memory accounting and for tests; it never exceeds `max_frame`.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Empties the buffer, giving large allocations back.
    fn clear_buf(&mut self) {
        if self.buf.capacity() > RELEASE_ABOVE {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    fn too_large(&self) -> FrameTooLarge {
        FrameTooLarge { max: self.max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owned copy of a [`Frame`], for comparisons.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        J(Vec<u8>),
        M,
        Deep,
    }

    fn j(s: &str) -> Ev {
        Ev::J(s.as_bytes().to_vec())
    }

    fn run(max: usize, chunks: &[&[u8]]) -> (Vec<Ev>, Result<(), FrameTooLarge>) {
        let mut d = FrameDecoder::new(max);
        let mut evs = Vec::new();
        for c in chunks {
            let r = d.feed(c, |f| {
                evs.push(match f {
                    Frame::Json(b) => Ev::J(b.to_vec()),
                    Frame::Malformed => Ev::M,
                    Frame::TooDeep => Ev::Deep,
                })
            });
            if r.is_err() {
                return (evs, r);
            }
        }
        (evs, Ok(()))
    }

    fn whole(max: usize, s: &str) -> (Vec<Ev>, Result<(), FrameTooLarge>) {
        run(max, &[s.as_bytes()])
    }

    fn bytewise(max: usize, s: &str) -> (Vec<Ev>, Result<(), FrameTooLarge>) {
        let chunks: Vec<&[u8]> = s.as_bytes().chunks(1).collect();
        run(max, &chunks)
    }

    /// Checks whole-input and one-byte-at-a-time feeding give `expected`.
    fn check(max: usize, s: &str, expected: Vec<Ev>, result: Result<(), FrameTooLarge>) {
        assert_eq!(whole(max, s), (expected.clone(), result), "whole: {s:?}");
        assert_eq!(bytewise(max, s), (expected, result), "bytewise: {s:?}");
    }

    #[test]
    fn back_to_back_objects() {
        check(100, r#"{"a":1}{"b":2}"#, vec![j(r#"{"a":1}"#), j(r#"{"b":2}"#)], Ok(()));
    }

    #[test]
    fn whitespace_between_values_is_skipped() {
        check(
            100,
            " \t\r\n{\"a\":1}\r\n \n\t[1,2]  {}\n",
            vec![j(r#"{"a":1}"#), j("[1,2]"), j("{}")],
            Ok(()),
        );
    }

    #[test]
    fn whitespace_inside_value_is_kept() {
        check(100, "{ \"a\" :\t1 }", vec![j("{ \"a\" :\t1 }")], Ok(()));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        check(100, r#"{"a":"}]{["}{"b":"x}"}"#, vec![j(r#"{"a":"}]{["}"#), j(r#"{"b":"x}"}"#)], Ok(()));
    }

    #[test]
    fn escaped_quote_does_not_end_string() {
        check(100, r#"{"a":"say \"}\" ok"}{}"#, vec![j(r#"{"a":"say \"}\" ok"}"#), j("{}")], Ok(()));
    }

    #[test]
    fn escaped_backslash_before_closing_quote() {
        // `"x\\"` is a complete string; the `}` after it closes the object.
        check(100, r#"{"a":"x\\"}{"b":"\\\""}"#, vec![j(r#"{"a":"x\\"}"#), j(r#"{"b":"\\\""}"#)], Ok(()));
    }

    #[test]
    fn nested_arrays_and_objects() {
        check(
            100,
            r#"[[1,[2,{"a":[3]}]],[]]{"x":{"y":{}}}"#,
            vec![j(r#"[[1,[2,{"a":[3]}]],[]]"#), j(r#"{"x":{"y":{}}}"#)],
            Ok(()),
        );
    }

    #[test]
    fn mismatched_brackets_are_framed_for_the_parser() {
        check(100, r#"{"a":1]"#, vec![j(r#"{"a":1]"#)], Ok(()));
    }

    #[test]
    fn newline_inside_value_is_malformed_and_resumes_after_it() {
        check(100, "{\"a\":\n{\"b\":1}", vec![Ev::M, j(r#"{"b":1}"#)], Ok(()));
        // Inside a string too.
        check(100, "{\"a\":\"x\ny\"}\n{}", vec![Ev::M, Ev::M, j("{}")], Ok(()));
        // Even right after a backslash in a string.
        check(100, "{\"a\":\"\\\n{}", vec![Ev::M, j("{}")], Ok(()));
    }

    #[test]
    fn junk_run_is_one_malformed_up_to_newline() {
        check(100, "hello {\"a\":1} world\n{\"b\":2}", vec![Ev::M, j(r#"{"b":2}"#)], Ok(()));
        check(100, "x\ny\n{}", vec![Ev::M, Ev::M, j("{}")], Ok(()));
        // A stray close bracket or top-level scalar is junk.
        check(100, "}\n\"s\"\n42\n{}", vec![Ev::M, Ev::M, Ev::M, j("{}")], Ok(()));
        // Junk right after a value, on the same line.
        check(100, "{}x{}\n{}", vec![j("{}"), Ev::M, j("{}")], Ok(()));
        // Unterminated junk at end of stream: one Malformed, nothing more.
        check(100, "abc", vec![Ev::M], Ok(()));
    }

    #[test]
    fn exactly_max_value_is_accepted_and_max_plus_one_rejected() {
        let v = r#"{"a":12}"#; // 8 bytes
        check(8, v, vec![j(v)], Ok(()));
        check(7, v, vec![], Err(FrameTooLarge { max: 7 }));
        check(8, r#"{}{"a":123}"#, vec![j("{}")], Err(FrameTooLarge { max: 8 }));
        check(0, "{}", vec![], Err(FrameTooLarge { max: 0 }));
        // Whitespace alone never counts.
        check(0, " \n\r\t", vec![], Ok(()));
    }

    #[test]
    fn too_large_detected_before_value_ends() {
        let mut d = FrameDecoder::new(4);
        assert_eq!(d.feed(b"{\"ab", |_| {}), Ok(()));
        assert_eq!(d.buffered(), 4);
        assert_eq!(d.feed(b"c", |_| {}), Err(FrameTooLarge { max: 4 }));
    }

    #[test]
    fn long_junk_run_is_an_error() {
        // 5 bytes of junk then newline with max 5: fine; 6 bytes: error.
        check(5, "abcde\n{}", vec![Ev::M, j("{}")], Ok(()));
        check(5, "abcdef\n{}", vec![Ev::M], Err(FrameTooLarge { max: 5 }));
        check(5, "abcdef", vec![Ev::M], Err(FrameTooLarge { max: 5 }));
    }

    #[test]
    fn newline_cut_value_may_be_exactly_max() {
        check(3, "{ab\n{}", vec![Ev::M, j("{}")], Ok(()));
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
        check(10_000, &ok, vec![Ev::J(ok.clone().into_bytes())], Ok(()));

        let deep = format!("{}{}\n{{}}", "[".repeat(129), "]".repeat(129));
        check(10_000, &deep, vec![Ev::Deep, j("{}")], Ok(()));

        // Deep nesting inside a string is fine.
        let s = format!("{{\"a\":\"{}\"}}", "[".repeat(500));
        check(10_000, &s, vec![Ev::J(s.clone().into_bytes())], Ok(()));
    }

    #[test]
    fn too_deep_value_counts_towards_junk_limit() {
        let deep = format!("{}xx\n{{}}", "[".repeat(129));
        // 129 + 2 = 131 bytes before the newline.
        check(131, &deep, vec![Ev::Deep, j("{}")], Ok(()));
        check(130, &deep, vec![Ev::Deep], Err(FrameTooLarge { max: 130 }));
    }

    #[test]
    fn zero_copy_for_frames_inside_input() {
        let input = br#" {"a":1}{"b":2}"#;
        let base = input.as_ptr() as usize;
        let mut offsets = Vec::new();
        let mut d = FrameDecoder::new(100);
        d.feed(input, |f| {
            if let Frame::Json(b) = f {
                offsets.push((b.as_ptr() as usize - base, b.len()));
            }
        })
        .expect("small frames");
        assert_eq!(offsets, vec![(1, 7), (8, 7)]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn only_unfinished_value_is_buffered() {
        let mut d = FrameDecoder::new(100);
        let mut evs = Vec::new();
        d.feed(b"  {}  {\"a\"", |f| evs.push(f == Frame::Json(b"{}"))).expect("small");
        assert_eq!(evs, vec![true]);
        assert_eq!(d.buffered(), 4);
        d.feed(b":1}", |f| evs.push(f == Frame::Json(br#"{"a":1}"#))).expect("small");
        assert_eq!(evs, vec![true, true]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn state_persists_across_feeds() {
        // String and escape state split at every interesting point.
        let chunks: [&[u8]; 6] = [b"{\"a\":\"x", b"\\", b"\"", b"}", b"\"", b"}"];
        assert_eq!(run(100, &chunks), (vec![j(r#"{"a":"x\"}"}"#)], Ok(())));
        // Junk state persists too: the `{}` is part of the junk line.
        assert_eq!(run(100, &[b"ju", b"nk {}", b" more\n", b"{}"]), (vec![Ev::M, j("{}")], Ok(())));
    }

    #[test]
    fn releases_large_buffer_when_emptied() {
        let mut d = FrameDecoder::new(1 << 20);
        let mut big = b"{\"a\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'x', 64 * 1024));
        d.feed(&big, |_| {}).expect("under max");
        assert!(d.buf.capacity() >= big.len());
        let mut got = 0;
        d.feed(b"\"}", |f| {
            if let Frame::Json(b) = f {
                got = b.len();
            }
        })
        .expect("under max");
        assert_eq!(got, big.len() + 2);
        assert_eq!(d.buf.capacity(), 0);

        // Also after a newline cut.
        d.feed(&big, |_| {}).expect("under max");
        d.feed(b"\n", |_| {}).expect("under max");
        assert_eq!(d.buf.capacity(), 0);
    }

    #[test]
    fn one_byte_feeding_of_a_large_frame_stays_linear() {
        // A rescanning decoder would do ~2^35 steps here and never finish.
        let mut frame = b"{\"a\":[\"".to_vec();
        frame.extend(std::iter::repeat_n(b'}', 256 * 1024));
        frame.extend_from_slice(b"\"]}");
        let mut d = FrameDecoder::new(frame.len());
        let mut got = Vec::new();
        for b in frame.chunks(1) {
            d.feed(b, |f| {
                if let Frame::Json(j) = f {
                    got = j.to_vec();
                }
            })
            .expect("exactly max");
        }
        assert_eq!(got, frame);
    }

    #[test]
    fn error_message() {
        assert_eq!(FrameTooLarge { max: 1024 }.to_string(), "frame too large (max 1024 bytes)");
    }
}
