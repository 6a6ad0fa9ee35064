//! Property tests for the line splitter, the hub frame decoder, the UTF-8 decoder and the
//! units / address helpers.

use netloop::addr::AddressSpec;
use netloop::frame::{Frame, FrameDecoder, FrameTooLarge};
use netloop::line::{LineSplitter, LineTooLong};
use netloop::text::Utf8Decoder;
use netloop::units::{format_size, parse_size};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// An owned record of one decoder callback.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Item(Vec<u8>),
    Malformed,
}

/// Cuts `data` at the given points (taken modulo `len + 1`, sorted, deduped).
fn split<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (data.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for c in cuts {
        chunks.push(&data[prev..c]);
        prev = c;
    }
    chunks.push(&data[prev..]);
    chunks
}

fn lines_of(max: usize, chunks: &[&[u8]]) -> (Vec<Ev>, Result<(), LineTooLong>) {
    let mut s = LineSplitter::new(max);
    let mut evs = Vec::new();
    for c in chunks {
        let r = s.feed(c, |l| evs.push(Ev::Item(l.to_vec())));
        assert!(s.buffered() <= max + 1, "buffered {} > max + 1", s.buffered());
        if r.is_err() {
            return (evs, r);
        }
    }
    (evs, Ok(()))
}

fn frames_of(max: usize, chunks: &[&[u8]]) -> (Vec<Ev>, Result<(), FrameTooLarge>) {
    let mut d = FrameDecoder::new(max);
    let mut evs = Vec::new();
    for c in chunks {
        let r = d.feed(c, |f| {
            evs.push(match f {
                Frame::Json(b) => Ev::Item(b.to_vec()),
                // The model does not tell the two apart: both skip to the next newline.
                Frame::Malformed | Frame::TooDeep => Ev::Malformed,
            })
        });
        assert!(d.buffered() <= max, "buffered {} > max {max}", d.buffered());
        if r.is_err() {
            return (evs, r);
        }
    }
    (evs, Ok(()))
}

/// A straightforward model of the line rules, for comparison.
fn model_lines(max: usize, data: &[u8]) -> (Vec<Ev>, Result<(), LineTooLong>) {
    let mut evs = Vec::new();
    let mut parts: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let tail = parts.pop().unwrap_or(&[]);
    for p in parts {
        let line = p.strip_suffix(b"\r").unwrap_or(p);
        if line.len() > max {
            return (evs, Err(LineTooLong { max }));
        }
        evs.push(Ev::Item(line.to_vec()));
    }
    let over = tail.len() > max + 1 || (tail.len() == max + 1 && tail.last() != Some(&b'\r'));
    if over {
        return (evs, Err(LineTooLong { max }));
    }
    (evs, Ok(()))
}

/// Bytes weighted towards the ones the line splitter cares about.
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<u8>(),
            2 => Just(b'\n'),
            2 => Just(b'\r'),
            4 => prop::sample::select(b"abc ".to_vec()),
        ],
        0..200,
    )
}

/// Bytes weighted towards JSON structure, with occasional deep bracket runs.
fn frame_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        30 => prop::sample::select(b"{}[]\"\\ \n\r\tax:,1".to_vec()).prop_map(|b| vec![b]),
        5 => any::<u8>().prop_map(|b| vec![b]),
        4 => Just(br#"{"a":"}"}"#.to_vec()),
        1 => (120usize..140, prop::bool::ANY)
            .prop_map(|(n, obj)| vec![if obj { b'{' } else { b'[' }; n]),
    ];
    prop::collection::vec(piece, 0..120).prop_map(|v| v.concat())
}

/// Mostly valid UTF-8 (1- to 4-byte characters) with some stray bytes mixed in.
fn text_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => any::<char>().prop_map(|c| c.to_string().into_bytes()),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

fn split_points() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..12)
}

/// Arbitrary JSON values (no raw newlines once serialized compactly).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop::sample::select(vec!["}", "]", "{[", "\\", "\"", "\\\"}", "\n", "\r\n"])
            .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((any::<String>(), json_value()), 0..6)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

proptest! {
    // (a) chunking never changes the result, for lines...
    #[test]
    fn lines_independent_of_split_points(
        data in line_bytes(),
        max in 0usize..24,
        points in split_points(),
    ) {
        let whole = lines_of(max, &[&data]);
        let chunked = lines_of(max, &split(&data, &points));
        prop_assert_eq!(&chunked, &whole);
        let bytewise: Vec<&[u8]> = data.chunks(1).collect();
        prop_assert_eq!(&lines_of(max, &bytewise), &whole);
    }

    // ... and the splitter matches a direct model of the rules.
    #[test]
    fn lines_match_model(data in line_bytes(), max in 0usize..24, points in split_points()) {
        prop_assert_eq!(lines_of(max, &split(&data, &points)), model_lines(max, &data));
    }

    // (a) ... and for frames.
    #[test]
    fn frames_independent_of_split_points(
        data in frame_bytes(),
        max in 1usize..300,
        points in split_points(),
    ) {
        let whole = frames_of(max, &[&data]);
        let chunked = frames_of(max, &split(&data, &points));
        prop_assert_eq!(&chunked, &whole);
        let bytewise: Vec<&[u8]> = data.chunks(1).collect();
        prop_assert_eq!(&frames_of(max, &bytewise), &whole);
    }

    // (b) arbitrary bytes never panic, even when feeding goes on after an error.
    #[test]
    fn arbitrary_bytes_never_panic(
        data in prop::collection::vec(any::<u8>(), 0..512),
        max in 0usize..64,
        points in split_points(),
    ) {
        let mut s = LineSplitter::new(max);
        let mut d = FrameDecoder::new(max);
        for c in split(&data, &points) {
            let _ = s.feed(c, |l| assert!(l.len() <= max));
            let _ = d.feed(c, |f| {
                if let Frame::Json(b) = f {
                    assert!(b.len() <= max);
                }
            });
        }
    }

    // (c) serialized objects with any separators come back exactly.
    #[test]
    fn decodes_concatenated_json_objects(
        items in prop::collection::vec(
            (json_object(), prop::sample::select(vec!["", " ", "\n", "\r\n", " \t\n "])),
            0..8,
        ),
        points in split_points(),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (value, sep) in &items {
            let bytes = serde_json::to_vec(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
            stream.extend_from_slice(&bytes);
            stream.extend_from_slice(sep.as_bytes());
            expected.push(Ev::Item(bytes));
        }
        let (evs, r) = frames_of(1 << 20, &split(&stream, &points));
        prop_assert_eq!(r, Ok(()));
        prop_assert_eq!(&evs, &expected);
        // Each frame is accepted by the parser the caller will use.
        for ev in &evs {
            if let Ev::Item(bytes) = ev {
                let back: Value = serde_json::from_slice(bytes)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(back.is_object());
            }
        }
    }

    #[test]
    fn format_size_round_trips(n in 0..=netloop::units::MAX_SIZE) {
        prop_assert_eq!(parse_size(&format_size(n)), Ok(n));
    }

    #[test]
    fn parse_size_never_panics(s in "\\PC{0,12}") {
        let _ = parse_size(&s);
        let _ = netloop::units::parse_duration(&s);
    }

    #[test]
    fn address_display_round_trips(
        a in prop_oneof![
            any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
            any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
            Just("localhost".to_string()),
        ],
        port in any::<u16>(),
    ) {
        let addr = AddressSpec::Tcp { host: a, port };
        let text = addr.to_string();
        prop_assert_eq!(text.parse::<AddressSpec>(), Ok(addr));
    }

    #[test]
    fn address_parse_never_panics(s in "\\PC{0,24}") {
        let _ = s.parse::<AddressSpec>();
    }

    // Node's setEncoding('utf8'): however the stream is cut, the text is that of the whole.
    #[test]
    fn utf8_text_independent_of_split_points(data in text_bytes(), points in split_points()) {
        let mut d = Utf8Decoder::new();
        let mut text = String::new();
        for chunk in split(&data, &points) {
            text.push_str(&d.decode(chunk));
            prop_assert!(d.pending() <= 3);
        }
        text.extend(d.end());
        prop_assert_eq!(text, String::from_utf8_lossy(&data));
    }
}
