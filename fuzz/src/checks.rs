//! Invariant checks for the two decoders that face untrusted bytes:
//! [`LineSplitter`] (chat) and [`FrameDecoder`] (hub).
//!
//! This one file is shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`, through
//! the `netloop_fuzz` library) and by the stable corpus replay test
//! (`tests/fuzz_corpus.rs`, which includes it with `#[path]`), so a corpus entry
//! is judged by exactly the same rules in both places. It may only use `std`,
//! `netloop` and `serde_json`, which both crates depend on.
//!
//! # Input layout
//!
//! ```text
//! byte 0..2   max   u16 little-endian, taken modulo MAX_LIMIT + 1 (0..=4096)
//! byte 2      n     number of cut points, taken modulo MAX_CUTS + 1 (0..=16)
//! next 2*n    cuts  u16 little-endian each, taken modulo data.len() + 1
//! rest        data  the byte stream fed to the decoder
//! ```
//!
//! Inputs shorter than the 3-byte header are ignored. If fewer than `n` cut
//! points fit, only those that fit are used.
//!
//! # What is checked
//!
//! The data is fed three ways: in one call, in the chunks given by the cut
//! points (empty chunks included), and one byte per call. Each way must produce
//! the same items (lines, or JSON/malformed frames) and the same `Ok`/`Err`,
//! where a run stops at its first `Err`. On top of that, per run and per item,
//! see [`check_line_splitter`] and [`check_hub_frames`].

use netloop::frame::{Frame, FrameDecoder, FrameTooLarge, MAX_DEPTH};
use netloop::line::{LineSplitter, LineTooLong};
use serde_json::value::RawValue;

/// Largest `max_line` / `max_frame` a fuzz input can choose.
pub const MAX_LIMIT: usize = 4096;

/// Most cut points a fuzz input can choose.
pub const MAX_CUTS: usize = 16;

/// A decoded fuzz input: the limit, the stream, and where to cut it.
#[derive(Debug, Clone)]
pub struct Case<'a> {
    /// `max_line` or `max_frame` for the decoder.
    pub max: usize,
    /// Cut positions into `data`, sorted and deduplicated, each `<= data.len()`.
    pub cuts: Vec<usize>,
    /// The byte stream.
    pub data: &'a [u8],
}

impl<'a> Case<'a> {
    /// Splits a raw fuzz input into header and data; `None` if it is too short.
    pub fn parse(input: &'a [u8]) -> Option<Case<'a>> {
        let (header, rest) = input.split_at_checked(3)?;
        let max = usize::from(u16::from_le_bytes([header[0], header[1]])) % (MAX_LIMIT + 1);
        let n = (usize::from(header[2]) % (MAX_CUTS + 1)).min(rest.len() / 2);
        let (raw_cuts, data) = rest.split_at(2 * n);
        let mut cuts: Vec<usize> = raw_cuts
            .chunks_exact(2)
            .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (data.len() + 1))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        Some(Case { max, cuts, data })
    }

    /// The data cut at [`cuts`](Self::cuts); may contain empty chunks.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        let mut chunks = Vec::with_capacity(self.cuts.len() + 1);
        let mut prev = 0;
        for &c in &self.cuts {
            chunks.push(&self.data[prev..c]);
            prev = c;
        }
        chunks.push(&self.data[prev..]);
        chunks
    }
}

/// Encodes a fuzz input (the inverse of [`Case::parse`]); used to write seeds.
pub fn encode(max: u16, cuts: &[u16], data: &[u8]) -> Vec<u8> {
    assert!(cuts.len() <= MAX_CUTS, "at most {MAX_CUTS} cuts");
    let mut out = Vec::with_capacity(3 + 2 * cuts.len() + data.len());
    out.extend_from_slice(&max.to_le_bytes());
    out.push(cuts.len() as u8);
    for c in cuts {
        out.extend_from_slice(&c.to_le_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// One item reported by a decoder, owned so runs can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A line, or the bytes of a [`Frame::Json`].
    Bytes(Vec<u8>),
    /// A [`Frame::Malformed`].
    Malformed,
}

/// Everything one way of feeding produced, up to and including the first `Err`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run<E> {
    /// Items in callback order.
    pub items: Vec<Item>,
    /// `Ok` if every feed succeeded, else the first error.
    pub result: Result<(), E>,
}

/// Makes `Err(message)` unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Start offset of `part` inside `whole`, if `part` is a sub-slice of it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    (p >= start && p + part.len() <= start + whole.len()).then(|| p - start)
}

/// Checks that items handed out from a single `feed` call are sub-slices of its
/// input (the documented zero-copy path) in stream order, without overlap.
fn check_zero_copy(what: &str, offsets: &[Option<usize>], items: &[Item]) -> Result<(), String> {
    let mut end = 0;
    let lens = items.iter().filter_map(|i| match i {
        Item::Bytes(b) => Some(b.len()),
        Item::Malformed => None,
    });
    for (k, (off, len)) in offsets.iter().zip(lens).enumerate() {
        let Some(off) = *off else {
            return Err(format!("{what} #{k} was copied although it lies inside a single input"));
        };
        ensure!(
            off >= end,
            "{what} #{k} at offset {off} overlaps or precedes the previous one ending at {end}"
        );
        end = off + len;
    }
    Ok(())
}

/// Formats bytes for messages, cut short if long.
fn show(bytes: &[u8]) -> String {
    const MAX_SHOWN: usize = 80;
    let shown = &bytes[..bytes.len().min(MAX_SHOWN)];
    let more = if bytes.len() > MAX_SHOWN { format!("... ({} bytes)", bytes.len()) } else { String::new() };
    format!("{:?}{more}", String::from_utf8_lossy(shown))
}

// ---------------------------------------------------------------------------
// Lines
// ---------------------------------------------------------------------------

/// Feeds `chunks` to a fresh [`LineSplitter`], checking per-item and per-feed
/// invariants; for a single chunk also returns where each line lay in it.
fn run_lines(max: usize, chunks: &[&[u8]]) -> Result<(Run<LineTooLong>, Vec<Option<usize>>), String> {
    let mut splitter = LineSplitter::new(max);
    let mut items = Vec::new();
    let mut offsets = Vec::new();
    let mut bad = None;
    for chunk in chunks {
        let result = splitter.feed(chunk, |line| {
            if bad.is_none() {
                if line.len() > max {
                    bad = Some(format!("line of {} bytes > max {max}: {}", line.len(), show(line)));
                } else if line.contains(&b'\n') {
                    bad = Some(format!("line contains a raw \\n: {}", show(line)));
                }
            }
            offsets.push(offset_in(chunk, line));
            items.push(Item::Bytes(line.to_vec()));
        });
        if let Some(msg) = bad {
            return Err(msg);
        }
        if let Err(e) = result {
            ensure!(e.max == max, "LineTooLong reports max {} instead of {max}", e.max);
            return Ok((Run { items, result }, offsets));
        }
        ensure!(
            splitter.buffered() <= max + 1,
            "splitter buffers {} bytes > max + 1 = {}",
            splitter.buffered(),
            max + 1
        );
    }
    Ok((Run { items, result: Ok(()) }, offsets))
}

/// What the framing rules in `src/line.rs` say one call with all of `data`
/// yields, computed naively from the whole stream.
pub fn reference_lines(max: usize, data: &[u8]) -> Run<LineTooLong> {
    let mut items = Vec::new();
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    // The part after the last `\n` (possibly empty) is an unfinished line.
    let tail = pieces.pop().unwrap_or_default();
    let err = Err(LineTooLong { max });
    for piece in pieces {
        let line = piece.strip_suffix(b"\r").unwrap_or(piece);
        if line.len() > max {
            return Run { items, result: err };
        }
        items.push(Item::Bytes(line.to_vec()));
    }
    // An unfinished line of `max + 1` bytes may still be `max` bytes plus the
    // `\r` of a `\r\n`; anything longer is already known to be too long.
    let may_fit = tail.len() <= max || (tail.len() == max + 1 && tail.last() == Some(&b'\r'));
    Run { items, result: if may_fit { Ok(()) } else { err } }
}

/// The `line_splitter` target: all invariants for one fuzz input.
///
/// - every line is at most `max` bytes and contains no `\n`;
/// - `buffered()` never exceeds `max + 1` after a successful feed;
/// - the error, if any, names the configured `max`;
/// - one call, the cut chunks, and one byte per call give the same lines and
///   the same `Ok`/`Err`;
/// - those equal [`reference_lines`], a naive model of the framing rules;
/// - with one call, every line is a sub-slice of the input (zero-copy).
pub fn check_line_splitter(input: &[u8]) -> Result<(), String> {
    let Some(case) = Case::parse(input) else { return Ok(()) };
    let max = case.max;
    let (whole, offsets) = run_lines(max, &[case.data])?;
    check_zero_copy("line", &offsets, &whole.items)?;
    let (chunked, _) = run_lines(max, &case.chunks())?;
    ensure!(chunked == whole, "max {max}, cuts {:?}: chunked {chunked:?} != whole {whole:?}", case.cuts);
    let bytes: Vec<&[u8]> = case.data.chunks(1).collect();
    let (bytewise, _) = run_lines(max, &bytes)?;
    ensure!(bytewise == whole, "max {max}: one byte per feed {bytewise:?} != whole {whole:?}");
    let reference = reference_lines(max, case.data);
    ensure!(whole == reference, "max {max}: splitter {whole:?} != reference model {reference:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// Hub frames
// ---------------------------------------------------------------------------

/// Checks the shape of one [`Frame::Json`] independently of the decoder's own
/// state: `{`/`[` … `}`/`]`, no raw `\n`, brackets (outside strings) balanced
/// with the depth first returning to zero at the last byte, at most
/// [`MAX_DEPTH`] deep, and not ending inside a string.
fn check_json_frame(frame: &[u8], max: usize) -> Result<(), String> {
    ensure!(frame.len() <= max, "frame of {} bytes > max {max}: {}", frame.len(), show(frame));
    ensure!(matches!(frame.first(), Some(b'{' | b'[')), "frame does not start with {{ or [: {}", show(frame));
    ensure!(matches!(frame.last(), Some(b'}' | b']')), "frame does not end with }} or ]: {}", show(frame));
    ensure!(!frame.contains(&b'\n'), "frame contains a raw \\n: {}", show(frame));
    let (mut depth, mut deepest, mut in_string, mut escape) = (0u32, 0u32, false, false);
    for (i, &b) in frame.iter().enumerate() {
        ensure!(i == 0 || depth > 0, "frame's brackets close before its end (byte {i}): {}", show(frame));
        if in_string {
            if escape {
                escape = false;
            } else if b == b'\\' {
                escape = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    ensure!(depth == 0 && !in_string, "frame is not closed at its end: {}", show(frame));
    ensure!(deepest <= MAX_DEPTH, "frame nests {deepest} > MAX_DEPTH {MAX_DEPTH} levels: {}", show(frame));
    Ok(())
}

/// What the hub does next with a frame: parse it with serde_json. Must not
/// panic; when the frame is a valid JSON value, the borrowed [`RawValue`] parse
/// the hub uses must accept it too and cover exactly the frame's bytes.
fn check_json_parse(frame: &[u8]) -> Result<(), String> {
    let value = serde_json::from_slice::<serde_json::Value>(frame);
    let raw = serde_json::from_slice::<&RawValue>(frame);
    if value.is_ok() {
        match raw {
            Ok(raw) => ensure!(
                raw.get().as_bytes() == frame,
                "RawValue {} is not the whole frame {}",
                show(raw.get().as_bytes()),
                show(frame)
            ),
            Err(e) => {
                return Err(format!("serde_json::Value accepts but &RawValue rejects ({e}): {}", show(frame)))
            }
        }
    }
    Ok(())
}

/// Feeds `chunks` to a fresh [`FrameDecoder`], checking per-frame and per-feed
/// invariants; for a single chunk also returns where each JSON frame lay in it.
fn run_frames(max: usize, chunks: &[&[u8]]) -> Result<(Run<FrameTooLarge>, Vec<Option<usize>>), String> {
    let mut decoder = FrameDecoder::new(max);
    let mut items = Vec::new();
    let mut offsets = Vec::new();
    let mut bad = None;
    for chunk in chunks {
        let result = decoder.feed(chunk, |frame| match frame {
            Frame::Json(bytes) => {
                if bad.is_none() {
                    bad = check_json_frame(bytes, max).err();
                }
                offsets.push(offset_in(chunk, bytes));
                items.push(Item::Bytes(bytes.to_vec()));
            }
            Frame::Malformed | Frame::TooDeep => items.push(Item::Malformed),
        });
        if let Some(msg) = bad {
            return Err(msg);
        }
        if let Err(e) = result {
            ensure!(e.max == max, "FrameTooLarge reports max {} instead of {max}", e.max);
            return Ok((Run { items, result }, offsets));
        }
        ensure!(decoder.buffered() <= max, "decoder buffers {} bytes > max {max}", decoder.buffered());
    }
    Ok((Run { items, result: Ok(()) }, offsets))
}

/// The `hub_frames` target: all invariants for one fuzz input.
///
/// - every JSON frame passes the shape checks of `check_json_frame` (at most
///   `max` bytes, starts with `{`/`[`, ends with `}`/`]`, no raw `\n`,
///   balanced outside strings, at most [`MAX_DEPTH`] deep);
/// - `buffered()` never exceeds `max` after a successful feed;
/// - the error, if any, names the configured `max`;
/// - one call, the cut chunks, and one byte per call give the same frames
///   (JSON bytes and malformed markers) and the same `Ok`/`Err`;
/// - with one call, every JSON frame is a sub-slice of the input (zero-copy);
/// - serde_json parses every JSON frame without panicking, and a frame valid
///   as `serde_json::Value` is also accepted whole as the hub's `&RawValue`.
pub fn check_hub_frames(input: &[u8]) -> Result<(), String> {
    let Some(case) = Case::parse(input) else { return Ok(()) };
    let max = case.max;
    let (whole, offsets) = run_frames(max, &[case.data])?;
    check_zero_copy("frame", &offsets, &whole.items)?;
    let (chunked, _) = run_frames(max, &case.chunks())?;
    ensure!(chunked == whole, "max {max}, cuts {:?}: chunked {chunked:?} != whole {whole:?}", case.cuts);
    let bytes: Vec<&[u8]> = case.data.chunks(1).collect();
    let (bytewise, _) = run_frames(max, &bytes)?;
    ensure!(bytewise == whole, "max {max}: one byte per feed {bytewise:?} != whole {whole:?}");
    for item in &whole.items {
        if let Item::Bytes(frame) = item {
            check_json_parse(frame)?;
        }
    }
    Ok(())
}

/// One target's check: `Err` describes the first violated invariant.
pub type Check = fn(&[u8]) -> Result<(), String>;

/// The check for a fuzz target's name (its corpus directory name).
pub fn check_for_target(target: &str) -> Option<Check> {
    match target {
        "line_splitter" => Some(check_line_splitter),
        "hub_frames" => Some(check_hub_frames),
        _ => None,
    }
}

/// Names of all fuzz targets, i.e. the expected `fuzz/corpus/*` directories.
pub const TARGETS: [&str; 2] = ["line_splitter", "hub_frames"];
