//! Fan-out flow control on real sockets: readers that read as fast as loopback allows are never
//! cut, whatever the senders do; senders are stalled, for a bounded moment, before anybody is
//! cut; a client that never reads is still cut at its limit.
//!
//! The `netloop load fanout` runs are flat out (`-r 0`) with 16 KiB messages: far more than
//! four readers can take, so the server must slow the senders to the readers' pace.

mod loop_support;
mod support;

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use loop_support::{finish, inet, spawn, Cause, Ev, Log};
use netloop::flow::MAX_SENDER_STALL;
use netloop::{Context, Handler, ServerId, ServerOptions, SharedBytes, SocketError, SocketId, SocketOptions};
use serde_json::Value;
use support::{Netloop, WAIT};

/// Runs `netloop load fanout` flat out for 2 s against `addr`; returns its exit status and
/// JSON report.
fn flat_out_fanout(addr: &str, protocol: &str, senders: usize) -> (Output, Value) {
    fanout(addr, protocol, senders, "0", "2s")
}

/// `netloop load fanout` with four receivers, `senders` senders, 16 KiB messages at `rate` in
/// all (`0`: flat out) for `duration`.
fn fanout(addr: &str, protocol: &str, senders: usize, rate: &str, duration: &str) -> (Output, Value) {
    // One run at a time: each keeps a server and a generator busy, and two at once on a small
    // machine starve each other's readers, which is not what these tests are about.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let senders = senders.to_string();
    let args = [
        "load",
        "fanout",
        addr,
        "--protocol",
        protocol,
        "--receivers",
        "4",
        "--senders",
        &senders,
        "-r",
        rate,
        "--size",
        "16k",
        "-T",
        duration,
        // Flat out, the senders' kernel buffers hold megabytes: a debug build on a busy
        // machine may need seconds to deliver them after the window.
        "--drain-timeout",
        "15s",
        "--json",
        "-q",
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netloop load");
    let (tx, rx) = mpsc::channel();
    let pid = child.id() as i32;
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let limit = WAIT + Duration::from_secs(20);
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.expect("netloop load output"),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("netloop load did not finish within {limit:?}");
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("no JSON report ({e}); stdout:\n{text}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr))
    });
    (out, report)
}

fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Four fast readers and `senders` flat-out senders on `netloop serve --<protocol>` with
/// `extra` flags: the run passes, no receiver is cut, every message reaches every receiver
/// once, in order, and the server logged no output-limit disconnect.
fn fast_readers_are_never_cut(protocol: &str, senders: usize, extra: &[&str]) {
    let (mut server, addr) = Netloop::serve_one(protocol, extra);
    let (out, report) = flat_out_fanout(&addr.to_string(), protocol, senders);
    server.kill();
    assert_complete(&mut server, &out, &report);
}

/// The run passed, no connection was cut, every message reached every receiver once, in
/// order, and the server (killed by now) logged no output-limit disconnect.
fn assert_complete(server: &mut Netloop, out: &Output, report: &Value) {
    assert_delivered(server, report, |context| {
        assert!(out.status.success() && report["ok"] == true, "run failed ({:?}): {context}", out.status);
    });
}

/// As [`assert_complete`], for a run whose senders the test itself held up: the generator
/// may rightly report that they fell behind their rate, and that must be its only complaint.
fn assert_complete_but_maybe_late(server: &mut Netloop, report: &Value) {
    assert_delivered(server, report, |context| {
        let problems = report["problems"].as_array().expect("problems");
        assert!(
            problems.iter().all(|p| p.as_str().is_some_and(|p| p.starts_with("rate not met"))),
            "run failed: {context}"
        );
    });
}

/// No connection was cut, every message reached every receiver once, in order, the server
/// logged no output-limit disconnect, and `verdict` accepts the run's own verdict.
fn assert_delivered(server: &mut Netloop, report: &Value, verdict: impl FnOnce(&str)) {
    let log = server.stderr();
    let f = &report["fanout"];
    let context = format!("{report:#}\nserver log:\n{log}");
    verdict(&context);
    assert_eq!(int(&report["connections"]["dropped"]), 0, "a connection was cut: {context}");
    let sent = int(&f["messages_sent"]);
    assert!(sent > 100, "the senders hardly sent anything: {context}");
    assert_eq!(int(&f["deliveries"]), sent * 4, "not every receiver got every message: {context}");
    for key in ["lost", "undelivered", "reordered", "duplicated"] {
        assert_eq!(int(&f[key]), 0, "{key}: {context}");
    }
    assert!(!log.contains("output buffer limit exceeded"), "the server cut someone: {context}");
}

/// The server is stopped for 2 s (SIGSTOP, SIGCONT) under four senders of 2.6 MB/s each:
/// when it wakes, seconds of input wait in its sockets and a loop turn can read megabytes of
/// it. The readers, which kept reading, are slowed onto that backlog, not cut.
#[test]
fn chat_readers_are_not_cut_after_the_server_was_stopped_under_steady_senders() {
    let (mut server, addr) = Netloop::serve_one("chat", &[]);
    let pid = server.pid();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_secs(2));
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
    let (_out, report) = fanout(&addr.to_string(), "chat", 4, "640", "5s");
    stopper.join().unwrap();
    server.kill();
    // The stop holds the senders up for 2 s of the 5: on a busy machine they may not catch up
    // with their schedule, which the generator rightly reports.
    assert_complete_but_maybe_late(&mut server, &report);
}

#[test]
fn chat_one_flat_out_sender_cuts_no_reader_at_the_default_limits() {
    fast_readers_are_never_cut("chat", 1, &[]);
}

#[test]
fn chat_one_flat_out_sender_cuts_no_reader_at_max_buffer_1m() {
    fast_readers_are_never_cut("chat", 1, &["--max-buffer", "1m"]);
}

#[test]
fn chat_eight_flat_out_senders_cut_no_reader_at_the_default_limits() {
    fast_readers_are_never_cut("chat", 8, &[]);
}

#[test]
fn chat_eight_flat_out_senders_cut_no_reader_at_max_buffer_1m() {
    fast_readers_are_never_cut("chat", 8, &["--max-buffer", "1m"]);
}

/// The smallest hard limit there is (the high-water mark): a single 16 KiB message is over it
/// whenever the kernel is full, so only the stall grace keeps the readers in.
#[test]
fn chat_eight_flat_out_senders_cut_no_reader_at_max_buffer_16k() {
    fast_readers_are_never_cut("chat", 8, &["--max-buffer", "16k"]);
}

#[test]
fn hub_eight_flat_out_senders_cut_no_reader_at_max_buffer_16k() {
    fast_readers_are_never_cut("hub", 8, &["--max-buffer", "16k"]);
}

#[test]
fn hub_one_flat_out_sender_cuts_no_reader_at_the_default_limits() {
    fast_readers_are_never_cut("hub", 1, &[]);
}

#[test]
fn hub_one_flat_out_sender_cuts_no_reader_at_max_buffer_1m() {
    fast_readers_are_never_cut("hub", 1, &["--max-buffer", "1m"]);
}

#[test]
fn hub_eight_flat_out_senders_cut_no_reader_at_the_default_limits() {
    fast_readers_are_never_cut("hub", 8, &[]);
}

#[test]
fn hub_eight_flat_out_senders_cut_no_reader_at_max_buffer_1m() {
    fast_readers_are_never_cut("hub", 8, &["--max-buffer", "1m"]);
}

/// A member that never reads joins four fast readers and two flat-out senders: the readers
/// get everything, the never-reader is cut at its limit, and the stall it caused ended.
fn a_never_reader_is_cut_and_the_others_keep_going(protocol: &str) {
    let (mut server, addr) =
        Netloop::serve_one(protocol, &["--max-buffer", "1m", "--stats-interval", "100ms"]);
    let mut never = support::connect(addr);
    socket2::SockRef::from(&never).set_recv_buffer_size(4096).unwrap();
    let mut first = String::new();
    if protocol == "hub" {
        support::send(&mut never, b"{\"type\":\"sync\",\"clientName\":\"never\"}\n");
    }
    // One line proves it is a member (chat's welcome, hub's synced); then it stops reading.
    let mut byte = [0u8; 1];
    while !first.ends_with('\n') {
        never.read_exact(&mut byte).expect("first line");
        first.push(byte[0] as char);
    }
    // Several stall bounds long, so the senders are seen to go on after the never-reader's stall.
    let (out, report) = fanout(&addr.to_string(), protocol, 2, "0", "4s");
    // Let one more stats line come out after the run.
    std::thread::sleep(Duration::from_millis(300));
    // The hub's `stats` reply carries the stall counters too.
    let replied = (protocol == "hub").then(|| {
        let mut admin = support::LineClient::connect(addr);
        admin.send(r#"{"type":"stats"}"#);
        let line = admin.skip_until(100, |l| l.contains(r#""type":"stats""#));
        let stats: Value = serde_json::from_str(&line).expect("stats reply is JSON");
        (int(&stats["senderStalls"]), int(&stats["senderStallMs"]))
    });
    server.kill();
    let log = server.stderr();
    let context = format!("{report:#}\nserver log:\n{log}");
    let f = &report["fanout"];
    assert!(out.status.success() && report["ok"] == true, "run failed ({:?}): {context}", out.status);
    let sent = int(&f["messages_sent"]);
    assert_eq!(int(&f["deliveries"]), sent * 4, "{context}");
    // Had the senders waited for the never-reader for good, or each time it was behind (one
    // stall bound per 64 KiB read), they would have sent a few dozen messages.
    assert!(sent > 500, "the senders were held back: {context}");
    // Only the never-reader was cut (the log line names the peer). Reading what the kernel
    // still holds for it, through its tiny window, would take minutes: it is not read.
    let cut = format!("{}: output buffer limit exceeded", never.local_addr().unwrap());
    let cuts = log.matches("output buffer limit exceeded").count();
    assert!(cuts == 1 && log.contains(&cut), "only the never-reader is cut: {context}");
    let last = log.lines().rfind(|l| l.contains("stats:")).expect("a stats line");
    let stalls = stat(last, "sender_stalls");
    let stalled_ms = stat(last, "sender_stall_ms");
    assert!(stalls >= 1, "the senders were never stalled: {last}");
    // Each stall ends within the bound; the loop may notice up to a turn late.
    let bound = MAX_SENDER_STALL.as_millis() as u64 + 100;
    assert!(stalled_ms <= stalls * bound, "a stall outlasted the bound: {last}");
    if let Some((stalls, stalled_ms)) = replied {
        assert!(stalls >= 1, "the stats reply counts no stall: {stalls}");
        assert!(stalled_ms <= stalls * bound, "the stats reply: {stalled_ms} ms in {stalls} stalls");
    }
}

/// `name=N` from a stats log line.
fn stat(line: &str, name: &str) -> u64 {
    let at = line.find(&format!(" {name}=")).unwrap_or_else(|| panic!("no {name} in {line}"));
    let rest = &line[at + name.len() + 2..];
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn chat_a_never_reader_is_cut_while_fast_readers_get_everything() {
    a_never_reader_is_cut_and_the_others_keep_going("chat");
}

#[test]
fn hub_a_never_reader_is_cut_while_fast_readers_get_everything() {
    a_never_reader_is_cut_and_the_others_keep_going("hub");
}

// ----- the core rule, on a bare loop ----------------------------------------------------------

const NEVER: usize = 0;
const FAST: usize = 1;
const SENDER: usize = 2;

/// Relays everything the third connection sends to the first two with `write_broadcast`, and
/// records when each of the sender's reads was handled and whether it was stalled by then.
struct Relay {
    server: ServerId,
    log: Log,
    peers: Vec<SocketId>,
    /// Per read of the sender: when it was handled, and the stall count after broadcasting it.
    reads: Vec<(Instant, u64)>,
    relayed: usize,
}

impl Handler for Relay {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        self.peers.push(s);
        if self.peers.len() == 3 {
            cx.close_server(self.server);
        }
    }
    fn on_data(&mut self, cx: &mut Context, s: SocketId, data: &[u8]) {
        assert_eq!(self.peers.iter().position(|&p| p == s), Some(SENDER), "only the sender sends");
        let shared: SharedBytes = Rc::from(data);
        for &to in &self.peers[..SENDER] {
            if cx.is_open(to) {
                cx.write_broadcast(to, &shared);
            }
        }
        self.relayed += data.len();
        self.reads.push((Instant::now(), cx.stats().sender_stalls));
    }
    fn on_end(&mut self, cx: &mut Context, _: SocketId) {
        for &p in &self.peers {
            cx.end(p);
        }
    }
    fn on_close(&mut self, _: &mut Context, s: SocketId, error: Option<&SocketError>) {
        self.log.close(s, error);
    }
}

#[test]
fn a_sender_is_stalled_for_a_bounded_moment_then_the_never_reader_is_cut() {
    const TOTAL: usize = 24 << 20;
    let socket = SocketOptions { max_buffer: Some(1 << 20), ..Default::default() };
    let options = ServerOptions { socket, ..Default::default() };
    let (addr, done) = spawn("127.0.0.1:0", options, |_, server| Relay {
        server,
        log: Log::default(),
        peers: Vec::new(),
        reads: Vec::new(),
        relayed: 0,
    });
    let addr = inet(&addr);
    let never = support::connect(addr);
    socket2::SockRef::from(&never).set_recv_buffer_size(4096).unwrap();
    let mut fast = support::connect(addr);
    // Connections are accepted in order: wait until the first two are in before the sender.
    std::thread::sleep(Duration::from_millis(100));
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(TOTAL);
        fast.read_to_end(&mut got).expect("fast reader");
        got
    });
    let mut sender = support::connect(addr);
    let data = support::pattern(TOTAL, 7);
    for chunk in data.chunks(64 * 1024) {
        support::send(&mut sender, chunk);
    }
    sender.shutdown(std::net::Shutdown::Write).unwrap();
    let got = reader.join().expect("reader thread");
    let h = finish(done);
    drop(never);

    assert!(got == data, "the fast reader got {} of {TOTAL} bytes, or out of order", got.len());
    h.log.check_invariants();
    let never_evs = h.log.of(h.peers[NEVER]);
    assert!(
        matches!(&never_evs[0], Ev::Error(Cause::OutputLimit, None, m) if m.contains("limit")),
        "the never-reader was not cut at its limit: {never_evs:?}"
    );
    assert_eq!(h.log.of(h.peers[FAST]), vec![Ev::Close(false)], "the fast reader was not cut");
    assert_eq!(h.relayed, TOTAL);

    // The never-reader stalled the sender for the bound, and no read came until the stall
    // ended: it took effect at once, not after the rest of the read budget. It may do so again
    // when the kernel grows its socket buffer and takes the queue (it then counts as having
    // caught up), but every stall is bounded, and once a laggard it stalled nobody.
    let bound = MAX_SENDER_STALL;
    let long = bound * 8 / 10;
    let gaps: Vec<(usize, Duration)> = h.reads.windows(2).map(|w| w[1].0 - w[0].0).enumerate().collect();
    let long_gaps: Vec<usize> = gaps.iter().filter(|&&(_, g)| g >= long).map(|&(i, _)| i).collect();
    let stalls: Vec<(usize, Duration, u64)> =
        long_gaps.iter().map(|&i| (i, gaps[i].1, h.reads[i].1)).collect();
    let context = format!("{} reads; long gaps (read, gap, stalls so far): {stalls:?}", h.reads.len());
    assert!((1..=3).contains(&long_gaps.len()), "expected one to three stalls of about {bound:?}: {context}");
    for &i in &long_gaps {
        let stalls_before = if i == 0 { 0 } else { h.reads[i - 1].1 };
        assert!(
            h.reads[i].1 > stalls_before,
            "read {i} stalled nobody, yet no read followed for long: {context}"
        );
    }
    // Bounded, with generous slack for a busy machine.
    let longest = gaps.iter().map(|&(_, g)| g).max().unwrap_or_default();
    assert!(longest < bound + Duration::from_millis(1500), "a stall lasted {longest:?}: {context}");
}
