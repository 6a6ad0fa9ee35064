//! The bound on unfinished input (docs/operations.md, "Bounded input"): all partial hub
//! frames together stay under `--max-input-total` by cutting the heaviest holders, and a frame
//! that never completes is cut after `--input-timeout`, while busy clients are untouched.

mod loop_support;
mod support;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use loop_support::{finish, inet, spawn};
use netloop::input_budget::{InputCut, InputLimits};
use netloop::line::LineSplitter;
use netloop::{Context, Handler, ServerId, ServerOptions, SocketError, SocketId};
use support::{read_line, Netloop};

/// A hub client that has said nothing yet (the tests turn the registration deadline off, and
/// a registered client would receive everyone's presence notices), and a reader on it.
fn client(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    support::connect_lines(addr)
}

/// The start of a `stats` request padded to `len` bytes, unfinished (no closing `"}`).
fn unfinished_stats_frame(len: usize) -> Vec<u8> {
    let mut frame = br#"{"type":"stats","pad":""#.to_vec();
    frame.resize(len, b'a');
    frame
}

/// What a client got within `wait`: everything read until EOF, or until nothing more came.
fn received_within(c: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let eof = loop {
        match c.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                break false
            }
            Err(_) => break true,
        }
    };
    // The short wait must not leak into later reads on the stream (or its clones): a busy
    // server may take longer than that to answer them.
    c.set_read_timeout(Some(support::WAIT)).unwrap();
    (got, eof)
}

#[test]
fn unfinished_hub_frames_past_the_total_limit_cut_the_heaviest_and_the_rest_keep_working() {
    const CLIENTS: usize = 200;
    const FRAME: usize = 256 * 1024;
    const LIMIT: usize = 16 * 1024 * 1024;
    let (mut server, addr) = Netloop::serve_one(
        "hub",
        &["--max-input-total", "16m", "--register-timeout", "0", "--stats-interval", "0"],
    );
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| client(addr)).collect();
    let before = server.rss();
    let frame = unfinished_stats_frame(FRAME);
    for (c, _) in &mut clients {
        // A client cut meanwhile may see its write fail; what it was told is checked below.
        let _ = c.write_all(&frame);
    }
    // Wait until the server has read everything (its byte count stops moving).
    let (mut probe, mut probe_r) = client(addr);
    let request = br#"{"type":"stats"}"#;
    let mut last_in = 0;
    let deadline = Instant::now() + support::WAIT;
    for probes in 1.. {
        probe.write_all(request).unwrap();
        let v: serde_json::Value = serde_json::from_str(&read_line(&mut probe_r)).unwrap();
        let bytes_in = v["bytesIn"].as_u64().unwrap() - (probes * request.len()) as u64;
        if bytes_in == last_in || bytes_in >= (CLIENTS * FRAME) as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "the server never read all input ({bytes_in} bytes)");
        last_in = bytes_in;
        std::thread::sleep(Duration::from_millis(300));
    }
    // Every client either holds its frame, or was told why it was cut and hung up on.
    let held_all_at_once = server.rss();
    let mut cut = Vec::new();
    let mut holding = Vec::new();
    for (i, (c, _)) in clients.iter_mut().enumerate() {
        let (got, eof) = received_within(c, Duration::from_millis(20));
        if got.is_empty() && !eof {
            holding.push(i);
            continue;
        }
        let (rest, _) = if eof { (Vec::new(), true) } else { received_within(c, support::WAIT) };
        let text = String::from_utf8_lossy(&[got, rest].concat()).into_owned();
        assert!(
            text.starts_with(r#"{"type":"error","code":"input_limit","reason":"server input limit reached"#),
            "{text}"
        );
        assert!(text.contains("16 MiB"), "{text}");
        cut.push(i);
    }
    // At most the limit is held: 64 frames of 256 KiB; the rest were cut.
    assert!(holding.len() <= LIMIT / FRAME, "{} clients still hold a frame", holding.len());
    assert!(holding.len() >= LIMIT / FRAME - 2, "only {} clients were left holding", holding.len());
    assert_eq!(cut.len() + holding.len(), CLIENTS);
    // Memory stayed near the limit, not the 50 MiB the clients sent.
    let growth = held_all_at_once.saturating_sub(before);
    assert!(growth < 40 * 1024 * 1024, "RSS grew by {} MiB", growth >> 20);
    // The others finish their frames and are served.
    for &i in &holding {
        let (c, r) = &mut clients[i];
        c.write_all(b"\"}").unwrap();
        let reply = read_line(r);
        assert!(reply.starts_with(r#"{"type":"stats""#), "{reply}");
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(v["inputTotalDisconnects"], cut.len() as u64, "{reply}");
    }
    drop(clients);
    server.signal(libc::SIGTERM);
    server.wait_exit(support::WAIT).expect("exits");
    let err = server.stderr();
    // Each cut is logged or counted in a summary, within the warning budget.
    let accounted =
        support::logged_events(&err, "cut: server input limit reached", "cut for unfinished input");
    assert_eq!(accounted, cut.len() as u64, "{err}");
    assert!(err.lines().filter(|l| l.contains("cut")).count() <= 30, "{err}");
}

#[test]
fn a_hub_frame_dripped_a_byte_a_second_is_cut_after_the_input_timeout_and_a_busy_client_is_not() {
    let (_server, addr) = Netloop::serve_one("hub", &["--input-timeout", "2s", "--register-timeout", "0"]);
    let (mut busy, mut busy_r) = client(addr);
    let (mut slow, _) = client(addr);
    let start = Instant::now();
    busy.write_all(&unfinished_stats_frame(64)).unwrap();
    slow.write_all(&unfinished_stats_frame(64)).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut got = Vec::new();
    let mut next_drip = Instant::now();
    let ended = loop {
        assert!(start.elapsed() < support::WAIT, "never cut: {}", String::from_utf8_lossy(&got));
        if Instant::now() >= next_drip {
            // One byte a second, never the end of the frame.
            let _ = slow.write_all(b"a");
            next_drip += Duration::from_secs(1);
        }
        // The busy client keeps some frame unfinished at every moment, but completes one every
        // 50 ms: it always holds input, yet its input progresses.
        busy.write_all(br#"a"}{"type":"stats","pad":""#).unwrap();
        let mut buf = [0u8; 1024];
        match slow.read(&mut buf) {
            Ok(0) => break start.elapsed(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break start.elapsed(),
        }
    };
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with(r#"{"type":"error","code":"input_timeout","reason":"unfinished input"#),
        "{text}"
    );
    assert!(text.contains("not completed within 2000 ms"), "{text}");
    assert!(ended >= Duration::from_millis(1900) && ended < Duration::from_secs(8), "cut after {ended:?}");
    // The busy client was never cut: a reply for every frame it completed, the last one
    // counting the slow client's cut.
    busy.write_all(b"\"}").unwrap();
    loop {
        let line = read_line(&mut busy_r);
        assert!(line.starts_with(r#"{"type":"stats""#), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["inputTimeoutDisconnects"] == 1 {
            break;
        }
    }
}

/// A strict line service on the bare loop: keeps partial lines in a `LineSplitter`, reports
/// them to the loop's input accounting, acknowledges each read with what it holds, and says
/// `* error: ...` when the loop cuts a client. Stops listening after `clients` connections.
struct LineHolder {
    server: ServerId,
    clients: usize,
    lines: HashMap<SocketId, LineSplitter>,
    cuts: Vec<InputCut>,
}

impl Handler for LineHolder {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        self.lines.insert(s, LineSplitter::new(1 << 20));
        self.clients -= 1;
        if self.clients == 0 {
            cx.close_server(self.server);
        }
    }
    fn on_data(&mut self, cx: &mut Context, s: SocketId, data: &[u8]) {
        let Some(lines) = self.lines.get_mut(&s) else { return };
        let mut complete = 0;
        lines.feed(data, |_| complete += 1).unwrap();
        cx.set_held_input(s, lines.buffered());
        if cx.is_writable(s) {
            cx.write(s, format!("lines {complete} held {}\n", cx.held_input(s)).as_bytes());
        }
    }
    fn on_input_cut(&mut self, cx: &mut Context, s: SocketId, cut: &InputCut) {
        self.cuts.push(*cut);
        self.lines.remove(&s);
        cx.write(s, format!("* error: {cut}\n").as_bytes());
        cx.end_within(s, Duration::from_secs(2));
    }
    fn on_close(&mut self, _: &mut Context, s: SocketId, _: Option<&SocketError>) {
        self.lines.remove(&s);
    }
}

#[test]
fn partial_lines_are_bounded_together_and_in_time_by_the_loop() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |cx, server| {
        cx.set_input_limits(InputLimits { max_total: Some(100), timeout: Some(Duration::from_millis(400)) });
        LineHolder { server, clients: 3, lines: HashMap::new(), cuts: Vec::new() }
    });
    let addr = inet(&addr);
    let open = |text: &[u8]| {
        let (mut c, mut r) = client(addr);
        c.write_all(text).unwrap();
        let ack = read_line(&mut r);
        (c, r, ack)
    };
    let (mut heavy, mut heavy_r, ack) = open(&[b'h'; 60]);
    assert_eq!(ack, "lines 0 held 60");
    let (mut busy, mut busy_r, ack) = open(&[b'b'; 30]);
    assert_eq!(ack, "lines 0 held 30");
    // 110 bytes held in all: the heaviest is cut, whoever pushed the total over.
    let (mut slow, mut slow_r, ack) = open(&[b's'; 20]);
    assert_eq!(ack, "lines 0 held 20");
    let words = read_line(&mut heavy_r);
    assert!(
        words.starts_with("* error: server input limit reached: your unfinished input (60 bytes)"),
        "{words}"
    );
    assert!(support::read_to_end(&mut heavy).is_empty());
    // The busy client completes a line every 100 ms, always holding a new partial one; the
    // slow one drips a byte at a time and never finishes. Only the slow one is timed out.
    let start = Instant::now();
    let mut slow_words = None;
    while slow_words.is_none() {
        assert!(start.elapsed() < support::WAIT, "the slow client was never cut");
        busy.write_all(b"\nbbb").unwrap();
        assert!(read_line(&mut busy_r).starts_with("lines 1 held"));
        if slow.write_all(b"s").is_ok() {
            let line = read_line(&mut slow_r);
            if line.starts_with("* error") {
                slow_words = Some((line, start.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (words, after) = slow_words.unwrap();
    assert!(words.starts_with("* error: unfinished input ("), "{words}");
    assert!(words.ends_with("not completed within 400 ms"), "{words}");
    assert!(after < Duration::from_secs(5), "cut after {after:?}");
    drop((busy, busy_r, slow, slow_r, heavy_r));
    let h = finish(done);
    assert_eq!(h.cuts.len(), 2, "{:?}", h.cuts);
    assert!(matches!(h.cuts[0], InputCut::OverTotal { held: 60, limit: 100 }), "{:?}", h.cuts);
    assert!(matches!(h.cuts[1], InputCut::Timeout { .. }), "{:?}", h.cuts);
}

#[test]
fn chat_text_delivered_without_a_newline_is_no_longer_held_input() {
    // Chat hands on text without a newline after a short wait; once it has, nothing is held,
    // so the sender must not later be cut for "unfinished input".
    let (mut server, addr) = Netloop::serve_one("chat", &["--input-timeout", "1s", "--stats-interval", "0"]);
    let (mut alice, mut alice_r) = client(addr);
    let (mut bob, mut bob_r) = client(addr);
    assert!(read_line(&mut alice_r).starts_with("* welcome"));
    alice.write_all(b"/nick alice\n").unwrap();
    assert!(read_line(&mut bob_r).starts_with("* welcome"));
    bob.write_all(b"/nick bob\n").unwrap();
    alice.write_all(b"no newline here").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line = read_line(&mut bob_r);
        if line.contains("no newline here") {
            break;
        }
        assert!(Instant::now() < deadline, "bob never got alice's text; last line {line:?}");
    }
    // Three input timeouts later alice is still a member and still heard.
    std::thread::sleep(Duration::from_secs(3));
    alice.write_all(b"still here\n").unwrap();
    loop {
        let line = read_line(&mut bob_r);
        assert!(!line.contains("error"), "unexpected error line {line:?}");
        if line.contains("still here") {
            break;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(5), "alice was cut; last line {line:?}");
    }
    let (got, _) = received_within(&mut alice, Duration::from_millis(200));
    assert!(!String::from_utf8_lossy(&got).contains("unfinished input"), "alice was told {got:?}");
    drop(alice_r);
    server.kill();
}
