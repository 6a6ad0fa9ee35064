//! Node `net` semantics, checked on real loopback sockets: the loop runs a recording handler
//! on its own thread; the test drives it with blocking std sockets.

mod loop_support;
mod support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use loop_support::{finish, inet, spawn, Cause, Ev, Log};
use netloop::{
    Context, Handler, ServerId, ServerOptions, SocketAddress, SocketError, SocketId, SocketOptions, TimerId,
};

fn opts(f: impl FnOnce(&mut ServerOptions)) -> ServerOptions {
    let mut o = ServerOptions::default();
    f(&mut o);
    o
}

/// Records `error` and `close`, the events every test checks the invariants of.
macro_rules! record_error_and_close {
    () => {
        fn on_close(&mut self, _cx: &mut Context, s: SocketId, error: Option<&SocketError>) {
            self.log.close(s, error);
        }
    };
}

/// Records `end`, `drain`, `error` and `close`; the tests below add their own behaviour.
macro_rules! record_all {
    () => {
        fn on_end(&mut self, _cx: &mut Context, s: SocketId) {
            self.log.push(s, Ev::End);
        }
        fn on_drain(&mut self, _cx: &mut Context, s: SocketId) {
            self.log.push(s, Ev::Drain);
        }
        record_error_and_close!();
    };
}

// ----- write(), drain, end() ----------------------------------------------------------------

struct FillUntilFalse {
    log: Log,
    server: ServerId,
    /// (return value, bufferSize after) of every write.
    writes: Vec<(bool, usize)>,
    total: usize,
}

impl Handler for FillUntilFalse {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        self.log.push(s, Ev::Connection);
        cx.close_server(self.server);
        let chunk = vec![b'x'; 16 * 1024];
        for _ in 0..20_000 {
            let ok = cx.write(s, &chunk);
            self.total += chunk.len();
            self.writes.push((ok, cx.buffer_size(s)));
            if !ok {
                return;
            }
        }
    }
    fn on_drain(&mut self, cx: &mut Context, s: SocketId) {
        self.log.push(s, Ev::Drain);
        cx.end(s);
    }
    fn on_end(&mut self, _cx: &mut Context, s: SocketId) {
        self.log.push(s, Ev::End);
    }
    record_error_and_close!();
}

#[test]
fn write_returns_false_at_the_high_water_mark_and_drain_fires_once() {
    let hwm = 64 * 1024;
    let (addr, done) = spawn("127.0.0.1:0", opts(|o| o.socket.high_water_mark = hwm), |_, server| {
        FillUntilFalse { log: Log::default(), server, writes: Vec::new(), total: 0 }
    });
    let mut client = support::connect(inet(&addr));
    // Let the server fill the kernel buffers and its queue before reading anything.
    std::thread::sleep(Duration::from_millis(200));
    let got = support::read_to_end(&mut client);
    drop(client);
    let h = finish(done);
    h.log.check_invariants();

    let (last_ok, last_queued) = *h.writes.last().unwrap();
    assert!(!last_ok, "write never returned false");
    assert!(last_queued >= hwm, "false with only {last_queued} queued");
    for &(ok, queued) in &h.writes[..h.writes.len() - 1] {
        assert!(ok && queued < hwm, "early false or overfull queue: {queued}");
    }
    assert_eq!(got.len(), h.total, "every byte written arrived");
    let s = h.log.sockets()[0];
    assert_eq!(h.log.count(s, |e| *e == Ev::Drain), 1);
    assert_eq!(h.log.of(s).last(), Some(&Ev::Close(false)));
}

struct WriteBigOnce {
    log: Log,
    server: ServerId,
    result: Option<(bool, usize)>,
}

impl Handler for WriteBigOnce {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.close_server(self.server);
        let ok = cx.write(s, &[7u8; 8192]);
        self.result = Some((ok, cx.buffer_size(s)));
        cx.end(s);
    }
    record_all!();
}

#[test]
fn a_write_the_kernel_takes_whole_returns_true_even_above_the_mark() {
    let (addr, done) = spawn("127.0.0.1:0", opts(|o| o.socket.high_water_mark = 1024), |_, server| {
        WriteBigOnce { log: Log::default(), server, result: None }
    });
    let mut client = support::connect(inet(&addr));
    assert_eq!(support::read_to_end(&mut client), vec![7u8; 8192]);
    drop(client);
    let h = finish(done);
    h.log.check_invariants();
    assert_eq!(h.result, Some((true, 0)), "8 KiB into an empty socket buffer is taken at once");
}

struct EndWithQueue {
    log: Log,
    server: ServerId,
    total: usize,
    write_after_end: Option<bool>,
}

impl Handler for EndWithQueue {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.close_server(self.server);
        let chunk = support::pattern(64 * 1024, 3);
        while cx.write(s, &chunk) {
            self.total += chunk.len();
        }
        self.total += chunk.len();
        cx.end(s);
        cx.end(s); // a second end() is ignored
        assert!(!cx.is_writable(s));
    }
    record_all!();
}

#[test]
fn end_flushes_the_queue_then_sends_fin_and_never_drains() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, server| EndWithQueue {
        log: Log::default(),
        server,
        total: 0,
        write_after_end: None,
    });
    let mut client = support::connect(inet(&addr));
    std::thread::sleep(Duration::from_millis(100));
    let got = support::read_to_end(&mut client);
    drop(client);
    let h = finish(done);
    h.log.check_invariants();
    assert_eq!(got.len(), h.total);
    let expected: Vec<u8> = support::pattern(64 * 1024, 3).repeat(h.total / (64 * 1024));
    assert!(got == expected, "stream corrupted");
    let s = h.log.sockets()[0];
    assert_eq!(h.log.count(s, |e| *e == Ev::Drain), 0, "no drain after end()");
    assert_eq!(h.log.of(s), vec![Ev::End, Ev::Close(false)]);
    assert!(h.write_after_end.is_none());
}

struct WriteAfterEnd {
    log: Log,
    server: ServerId,
    returned: Option<bool>,
}

impl Handler for WriteAfterEnd {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.close_server(self.server);
        cx.end(s);
        self.returned = Some(cx.write(s, b"late"));
    }
    record_all!();
}

#[test]
fn write_after_end_is_an_error_and_destroys() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, server| WriteAfterEnd {
        log: Log::default(),
        server,
        returned: None,
    });
    let mut client = support::connect(inet(&addr));
    let mut buf = Vec::new();
    let _ = client.read_to_end(&mut buf);
    let h = finish(done);
    h.log.check_invariants();
    assert_eq!(h.returned, Some(false));
    let s = h.log.sockets()[0];
    let evs = h.log.of(s);
    assert!(
        matches!(&evs[0], Ev::Error(Cause::WriteAfterEnd, Some("ERR_STREAM_WRITE_AFTER_END"), m) if m.contains("write after end")),
        "{evs:?}"
    );
    assert_eq!(evs[1], Ev::Close(true));
}

// ----- peer FIN, allowHalfOpen --------------------------------------------------------------

struct HalfOpen {
    log: Log,
    server: ServerId,
    timer: Option<(TimerId, SocketId)>,
}

impl Handler for HalfOpen {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        self.log.push(s, Ev::Connection);
        cx.close_server(self.server);
    }
    fn on_data(&mut self, cx: &mut Context, s: SocketId, data: &[u8]) {
        self.log.push(s, Ev::Data(data.len()));
        cx.write(s, b"got:");
        cx.write(s, data);
    }
    fn on_end(&mut self, cx: &mut Context, s: SocketId) {
        self.log.push(s, Ev::End);
        // A write inside 'end' is delivered in both modes.
        cx.write(s, b";end");
        if self.timer.is_none() {
            self.timer = Some((cx.set_timer(Duration::from_millis(100)), s));
        }
    }
    fn on_timer(&mut self, cx: &mut Context, _: TimerId) {
        let (_, s) = self.timer.unwrap();
        // Only a half-open socket can still write here.
        if cx.is_writable(s) {
            cx.write(s, b";late");
            cx.end(s);
        }
    }
    fn on_drain(&mut self, _cx: &mut Context, s: SocketId) {
        self.log.push(s, Ev::Drain);
    }
    record_error_and_close!();
}

fn half_open_case(allow_half_open: bool) -> (Vec<u8>, Log) {
    let (addr, done) =
        spawn("127.0.0.1:0", opts(|o| o.socket.allow_half_open = allow_half_open), |_, server| HalfOpen {
            log: Log::default(),
            server,
            timer: None,
        });
    let mut client = support::connect(inet(&addr));
    client.write_all(b"hello").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    client.shutdown(Shutdown::Write).unwrap();
    let got = support::read_to_end(&mut client);
    drop(client);
    let h = finish(done);
    h.log.check_invariants();
    (got, h.log)
}

#[test]
fn peer_fin_ends_our_side_after_flushing_by_default() {
    let (got, log) = half_open_case(false);
    assert_eq!(got, b"got:hello;end");
    let s = log.sockets()[0];
    assert_eq!(log.of(s), vec![Ev::Connection, Ev::Data(5), Ev::End, Ev::Close(false)]);
}

#[test]
fn allow_half_open_keeps_writing_after_peer_fin() {
    let (got, log) = half_open_case(true);
    assert_eq!(got, b"got:hello;end;late");
    let s = log.sockets()[0];
    assert_eq!(log.of(s), vec![Ev::Connection, Ev::Data(5), Ev::End, Ev::Close(false)]);
}

struct EndFirst {
    log: Log,
    server: ServerId,
}

impl Handler for EndFirst {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.close_server(self.server);
        cx.end_with(s, b"bye");
    }
    fn on_data(&mut self, _cx: &mut Context, s: SocketId, data: &[u8]) {
        self.log.push(s, Ev::Data(data.len()));
    }
    record_all!();
}

#[test]
fn after_our_fin_we_still_read_until_the_peer_ends() {
    let (addr, done) =
        spawn("127.0.0.1:0", ServerOptions::default(), |_, server| EndFirst { log: Log::default(), server });
    let mut client = support::connect(inet(&addr));
    let mut buf = [0u8; 16];
    let mut got = Vec::new();
    loop {
        let n = client.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"bye");
    client.write_all(b"still here").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    client.shutdown(Shutdown::Write).unwrap();
    let h = finish(done);
    h.log.check_invariants();
    let s = h.log.sockets()[0];
    assert_eq!(h.log.of(s), vec![Ev::Data(10), Ev::End, Ev::Close(false)]);
}

// ----- errors -------------------------------------------------------------------------------

struct Recorder {
    log: Log,
    server: ServerId,
    close_after: usize,
    seen: usize,
}

impl Handler for Recorder {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        self.log.push(s, Ev::Connection);
        self.seen += 1;
        if self.seen >= self.close_after {
            cx.close_server(self.server);
        }
    }
    fn on_data(&mut self, _cx: &mut Context, s: SocketId, data: &[u8]) {
        self.log.push(s, Ev::Data(data.len()));
    }
    record_all!();
}

fn recorder(close_after: usize) -> impl FnOnce(&mut Context, ServerId) -> Recorder {
    move |_, server| Recorder { log: Log::default(), server, close_after, seen: 0 }
}

#[test]
fn a_peer_reset_gives_error_then_close_true() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), recorder(1));
    let client = support::connect(inet(&addr));
    (&client).write_all(b"x").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client); // RST
    let h = finish(done);
    h.log.check_invariants();
    let evs = h.log.of(h.log.sockets()[0]);
    assert_eq!(evs[..2], [Ev::Connection, Ev::Data(1)]);
    assert!(
        matches!(&evs[2], Ev::Error(Cause::Io(io::ErrorKind::ConnectionReset), Some("ECONNRESET"), _)),
        "{evs:?}"
    );
    assert_eq!(evs[3], Ev::Close(true));
}

struct WriteToGone {
    log: Log,
    server: ServerId,
    socket: Option<SocketId>,
    interval: Option<TimerId>,
    ticks: usize,
}

impl Handler for WriteToGone {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.close_server(self.server);
        self.socket = Some(s);
    }
    fn on_end(&mut self, cx: &mut Context, s: SocketId) {
        self.log.push(s, Ev::End);
        self.interval = Some(cx.set_interval(Duration::from_millis(10)));
    }
    fn on_timer(&mut self, cx: &mut Context, t: TimerId) {
        self.ticks += 1;
        let s = self.socket.unwrap();
        if !cx.is_open(s) || self.ticks > 100 {
            cx.clear_timer(t);
            cx.destroy(s);
            return;
        }
        cx.write(s, b"anyone there?");
    }
    fn on_drain(&mut self, _cx: &mut Context, s: SocketId) {
        self.log.push(s, Ev::Drain);
    }
    record_error_and_close!();
}

#[test]
fn writing_to_a_closed_peer_gives_epipe_or_reset_then_close_true() {
    let (addr, done) = spawn("127.0.0.1:0", opts(|o| o.socket.allow_half_open = true), |_, server| {
        WriteToGone { log: Log::default(), server, socket: None, interval: None, ticks: 0 }
    });
    drop(support::connect(inet(&addr)));
    let h = finish(done);
    h.log.check_invariants();
    let evs = h.log.of(h.log.sockets()[0]);
    assert!(
        matches!(
            &evs[1],
            Ev::Error(
                Cause::Io(io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset),
                Some("EPIPE" | "ECONNRESET"),
                _
            )
        ),
        "{evs:?}"
    );
    assert_eq!(evs.last(), Some(&Ev::Close(true)));
}

// ----- timeout ------------------------------------------------------------------------------

struct Idle {
    log: Log,
    server: ServerId,
    start: Option<Instant>,
    /// (ms since connect, bytes) of data, and ms of timeouts.
    timeouts_at: Vec<u128>,
}

impl Handler for Idle {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.close_server(self.server);
        cx.set_timeout(s, Duration::from_millis(200));
        self.start = Some(Instant::now());
    }
    fn on_data(&mut self, _cx: &mut Context, s: SocketId, data: &[u8]) {
        self.log.push(s, Ev::Data(data.len()));
    }
    fn on_timeout(&mut self, _cx: &mut Context, s: SocketId) {
        self.log.push(s, Ev::Timeout);
        self.timeouts_at.push(self.start.unwrap().elapsed().as_millis());
    }
    record_all!();
}

#[test]
fn timeout_fires_when_idle_not_while_busy_and_does_not_close() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, server| Idle {
        log: Log::default(),
        server,
        start: None,
        timeouts_at: Vec::new(),
    });
    let mut client = support::connect(inet(&addr));
    let start = Instant::now();
    for _ in 0..12 {
        client.write_all(b"b").unwrap(); // busy: a byte every 50 ms for 600 ms
        std::thread::sleep(Duration::from_millis(50));
    }
    let busy_ms = start.elapsed().as_millis();
    std::thread::sleep(Duration::from_millis(700)); // idle: fires once, not again
    client.write_all(b"still open").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(client);
    let h = finish(done);
    h.log.check_invariants();
    assert_eq!(h.timeouts_at.len(), 1, "exactly one timeout while idle: {:?}", h.timeouts_at);
    assert!(h.timeouts_at[0] >= busy_ms.saturating_sub(60), "timeout fired while busy: {:?}", h.timeouts_at);
    let s = h.log.sockets()[0];
    let evs = h.log.of(s);
    let t = evs.iter().position(|e| *e == Ev::Timeout).unwrap();
    assert_eq!(evs[t + 1], Ev::Data(10), "socket stayed open after timeout: {evs:?}");
}

// ----- pause / resume -----------------------------------------------------------------------

struct Paused {
    log: Log,
    server: ServerId,
    socket: Option<SocketId>,
    resumed_at: Option<usize>,
    received: usize,
}

impl Handler for Paused {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.close_server(self.server);
        cx.pause(s);
        assert!(cx.is_paused(s));
        self.socket = Some(s);
        cx.set_timer(Duration::from_millis(300));
    }
    fn on_timer(&mut self, cx: &mut Context, _: TimerId) {
        self.resumed_at = Some(self.log.events.len());
        cx.resume(self.socket.unwrap());
    }
    fn on_data(&mut self, cx: &mut Context, s: SocketId, data: &[u8]) {
        self.log.push(s, Ev::Data(data.len()));
        self.received += data.len();
        if self.received == 100_000 {
            cx.end_with(s, b"ok");
        }
    }
    record_all!();
}

#[test]
fn pause_stops_reading_and_resume_reads_without_a_new_edge() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, server| Paused {
        log: Log::default(),
        server,
        socket: None,
        resumed_at: None,
        received: 0,
    });
    let mut client = support::connect(inet(&addr));
    client.write_all(&[1u8; 100_000]).unwrap(); // then silence: no new edge after resume
    let got = support::read_to_end(&mut client);
    assert_eq!(got, b"ok");
    drop(client);
    let h = finish(done);
    h.log.check_invariants();
    assert_eq!(h.resumed_at, Some(0), "no data while paused: {:?}", h.log.events);
    assert_eq!(h.received, 100_000);
}

/// Counts bytes and records `end`/`close` of one adopted socket. With `pause_for`, pauses
/// at the first data and resumes on a timer. An unref'd guard timer bounds the run.
struct ReadToEnd {
    log: Log,
    received: usize,
    pause_for: Option<Duration>,
    resume: Option<(TimerId, SocketId)>,
}

impl Handler for ReadToEnd {
    fn on_data(&mut self, cx: &mut Context, s: SocketId, data: &[u8]) {
        self.received += data.len();
        if let Some(delay) = self.pause_for.take() {
            cx.pause(s);
            self.resume = Some((cx.set_timer(delay), s));
        }
    }
    fn on_timer(&mut self, cx: &mut Context, t: TimerId) {
        match self.resume {
            Some((timer, s)) if timer == t => cx.resume(s),
            _ => cx.stop(), // the guard
        }
    }
    record_all!();
}

/// Queues `len` bytes and a FIN on a Unix pair before the loop first looks at it, then runs
/// the loop over the other end; returns what the handler saw and the socket's id.
fn read_queued_burst(len: usize, pause_for: Option<Duration>) -> (ReadToEnd, SocketId) {
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let want = len + (64 << 10);
    let sock = socket2::SockRef::from(&theirs);
    let _ = sock.set_send_buffer_size(want * 2);
    if sock.send_buffer_size().unwrap() < want {
        // Past net.core.wmem_max: root may still force it.
        let size = (want * 2) as libc::c_int;
        let size_ptr = (&size as *const libc::c_int).cast();
        let optlen = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&theirs);
        // SAFETY: a valid fd and a pointer to a c_int of the given length.
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, size_ptr, optlen) };
    }
    assert!(
        sock.send_buffer_size().unwrap() >= want,
        "this test needs a {want}-byte socket buffer (raise net.core.wmem_max or run as root)"
    );
    theirs.set_nonblocking(true).unwrap();
    theirs.write_all(&vec![7u8; len]).expect("the whole burst fits in the socket buffer");
    theirs.shutdown(Shutdown::Write).unwrap();

    let mut el = netloop::EventLoop::new().unwrap();
    let cx = el.context();
    let s = cx.wrap_unix_stream(ours).unwrap();
    let guard = cx.set_timer(Duration::from_secs(5));
    cx.set_timer_ref(guard, false);
    let mut h = ReadToEnd { log: Log::default(), received: 0, pause_for, resume: None };
    el.run(&mut h).unwrap();
    h.log.check_invariants();
    (h, s)
}

#[test]
fn end_arrives_after_a_burst_longer_than_the_read_budget() {
    // epoll reports the hang-up once; the read budget (16 x 64 KiB) runs out before the data
    // does, and the reads resumed on the next turn must still go on to EOF rather than stop
    // at the short tail read and wait for an edge that never comes.
    let len = (1 << 20) + 1000;
    let (h, s) = read_queued_burst(len, None);
    assert_eq!(h.received, len);
    assert_eq!(h.log.of(s).first(), Some(&Ev::End), "{:?}", h.log.events);
}

#[test]
fn end_arrives_after_resume_when_the_fin_came_while_paused() {
    let len = (1 << 20) + 1000;
    let (h, s) = read_queued_burst(len, Some(Duration::from_millis(50)));
    assert!(h.resume.is_some(), "paused at the first data");
    assert_eq!(h.received, len);
    assert_eq!(h.log.of(s).first(), Some(&Ev::End), "{:?}", h.log.events);
}

// ----- server: maxConnections, close(), getConnections() ------------------------------------

struct Capped {
    log: Log,
    server: ServerId,
    drops: Vec<(SocketAddress, usize)>,
}

impl Handler for Capped {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        self.log.push(s, Ev::Connection);
        cx.write(s, b"hi\n");
    }
    fn on_drop(&mut self, cx: &mut Context, server: ServerId, peer: &SocketAddress) {
        self.drops.push((peer.clone(), cx.connections(server)));
        cx.close_server(self.server);
    }
    record_all!();
}

#[test]
fn max_connections_refuses_the_extra_connection_and_counts_it() {
    let options = opts(|o| {
        o.max_connections = Some(2);
        o.reject_message = Some(b"full\n".to_vec());
    });
    let (addr, done) =
        spawn("127.0.0.1:0", options, |_, server| Capped { log: Log::default(), server, drops: Vec::new() });
    let addr = inet(&addr);
    let mut a = support::connect(addr);
    let mut b = support::connect(addr);
    let mut buf = [0u8; 3];
    a.read_exact(&mut buf).unwrap();
    b.read_exact(&mut buf).unwrap();
    let mut c = support::connect(addr);
    let c_port = c.local_addr().unwrap().port();
    let refused = support::read_to_end(&mut c);
    assert_eq!(refused, b"full\n", "the refused client is told why, then closed");
    (&a).write_all(b"a still works").unwrap();
    drop((a, b, c));
    let h = finish(done);
    h.log.check_invariants();
    assert_eq!(h.drops.len(), 1);
    assert_eq!(h.drops[0].1, 2, "getConnections() at the time of the drop");
    assert_eq!(h.drops[0].0.port(), Some(c_port), "the drop names the refused peer");
    assert_eq!(h.log.sockets().len(), 2, "the refused socket never became a connection");
}

#[derive(Debug, PartialEq)]
enum Step {
    Closed(SocketId),
    ServerClosed(usize),
}

struct Closer {
    server: ServerId,
    steps: Vec<Step>,
    accepted: usize,
}

impl Handler for Closer {
    fn on_connection(&mut self, cx: &mut Context, server: ServerId, s: SocketId) {
        self.accepted += 1;
        if self.accepted == 2 {
            cx.close_server(server);
            assert!(!cx.is_listening(server));
        }
        // Written after close_server, so a client that reads it knows the listener is gone.
        cx.write(s, b"k");
    }
    fn on_close(&mut self, _cx: &mut Context, s: SocketId, _: Option<&SocketError>) {
        self.steps.push(Step::Closed(s));
    }
    fn on_server_close(&mut self, cx: &mut Context, server: ServerId) {
        assert_eq!(server, self.server);
        self.steps.push(Step::ServerClosed(cx.connections(server)));
    }
}

#[test]
fn server_close_stops_accepting_and_fires_after_the_last_connection() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, server| Closer {
        server,
        steps: Vec::new(),
        accepted: 0,
    });
    let addr = inet(&addr);
    let mut a = support::connect(addr);
    let mut b = support::connect(addr);
    let mut k = [0u8; 1];
    a.read_exact(&mut k).unwrap();
    b.read_exact(&mut k).unwrap();
    let refused = TcpStream::connect(addr).map(|_| ()).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    drop(a);
    std::thread::sleep(Duration::from_millis(100));
    drop(b);
    // The loop returns by itself: nothing referenced is left.
    let h = finish(done);
    assert_eq!(h.steps.len(), 3, "{:?}", h.steps);
    assert!(matches!(h.steps[0], Step::Closed(_)) && matches!(h.steps[1], Step::Closed(_)));
    assert_eq!(h.steps[2], Step::ServerClosed(0));
}

// ----- ids and slot reuse -------------------------------------------------------------------

struct Reuse {
    server: ServerId,
    first: Option<SocketId>,
    stale_write: Option<bool>,
    second: Option<SocketId>,
}

impl Handler for Reuse {
    fn on_connection(&mut self, cx: &mut Context, server: ServerId, s: SocketId) {
        match self.first {
            None => self.first = Some(s),
            Some(old) => {
                assert_eq!(old.index(), s.index(), "slab key reused");
                self.second = Some(s);
                self.stale_write = Some(cx.write(old, b"stale"));
                cx.write(s, b"fresh");
                cx.end(s);
                cx.close_server(server);
            }
        }
        let _ = self.server;
    }
}

#[test]
fn a_stale_id_never_reaches_the_socket_that_reused_its_slot() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, server| Reuse {
        server,
        first: None,
        stale_write: None,
        second: None,
    });
    let addr = inet(&addr);
    drop(support::connect(addr));
    std::thread::sleep(Duration::from_millis(100));
    let mut second = support::connect(addr);
    assert_eq!(support::read_to_end(&mut second), b"fresh");
    drop(second);
    let h = finish(done);
    assert_eq!(h.stale_write, Some(false));
    assert_ne!(h.first, h.second);
}

// ----- outbound connect ---------------------------------------------------------------------

struct Dialer {
    log: Log,
    server: ServerId,
    client: Option<SocketId>,
    refused: Option<SocketId>,
    reply: Vec<u8>,
}

impl Handler for Dialer {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.close_server(self.server);
        cx.end_with(s, b"welcome");
    }
    fn on_connect(&mut self, _cx: &mut Context, s: SocketId) {
        self.log.push(s, Ev::Connect);
    }
    fn on_data(&mut self, _cx: &mut Context, s: SocketId, data: &[u8]) {
        if Some(s) == self.client {
            self.reply.extend_from_slice(data);
        }
    }
    fn on_end(&mut self, _cx: &mut Context, s: SocketId) {
        if Some(s) == self.client {
            self.log.push(s, Ev::End);
        }
    }
    fn on_close(&mut self, _cx: &mut Context, s: SocketId, error: Option<&SocketError>) {
        if Some(s) == self.client || Some(s) == self.refused {
            self.log.close(s, error);
        } else if let Some(e) = error {
            self.log.push(s, Ev::error(e));
        }
    }
}

#[test]
fn connect_delivers_connect_data_end_close_and_refusal_as_error() {
    // A port that was just free: nothing listens there.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), move |cx, server| {
        let own = cx.server_address(server).unwrap().clone();
        let client = cx.connect(&own);
        // Written before the connection completes: queued, then flushed on connect.
        cx.write(client, b"early");
        let refused = cx.connect(&SocketAddress::Inet(closed_port));
        Dialer {
            log: Log::default(),
            server,
            client: Some(client),
            refused: Some(refused),
            reply: Vec::new(),
        }
    });
    let _ = addr;
    let h = finish(done);
    h.log.check_invariants();
    let client = h.client.unwrap();
    assert_eq!(h.log.of(client), vec![Ev::Connect, Ev::End, Ev::Close(false)]);
    assert_eq!(h.reply, b"welcome");
    let refused = h.log.of(h.refused.unwrap());
    assert!(
        matches!(&refused[0], Ev::Error(Cause::Io(io::ErrorKind::ConnectionRefused), Some("ECONNREFUSED"), m) if m.contains("ECONNREFUSED"))
    );
    assert_eq!(refused[1], Ev::Close(true));
}

// ----- unix sockets -------------------------------------------------------------------------

#[test]
fn unix_sockets_carry_the_same_events_and_the_file_is_removed_on_close() {
    let path = support::unix_path("events");
    let (addr, done) = spawn(&format!("unix:{}", path.display()), ServerOptions::default(), recorder(1));
    assert_eq!(addr, SocketAddress::Unix(path.clone()));
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.write_all(b"hello").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let h = finish(done);
    h.log.check_invariants();
    assert_eq!(h.log.of(h.log.sockets()[0]), vec![Ev::Connection, Ev::Data(5), Ev::End, Ev::Close(false)]);
    assert!(!path.exists(), "socket file removed when the server closed");
}

// ----- timers and loop liveness -------------------------------------------------------------

struct Ticks {
    fired: Vec<TimerId>,
    interval: Option<TimerId>,
}

impl Handler for Ticks {
    fn on_timer(&mut self, cx: &mut Context, t: TimerId) {
        self.fired.push(t);
        if Some(t) == self.interval && self.fired.iter().filter(|x| Some(**x) == self.interval).count() == 3 {
            cx.clear_timer(t);
        }
    }
}

#[test]
fn the_loop_runs_while_referenced_timers_exist_then_returns() {
    let mut el = netloop::EventLoop::new().unwrap();
    let cx = el.context();
    let once = cx.set_timer(Duration::from_millis(30));
    let interval = cx.set_interval(Duration::from_millis(10));
    let unrefed = cx.set_timer(Duration::from_secs(3600));
    cx.set_timer_ref(unrefed, false);
    let server =
        cx.listen(&SocketAddress::Inet("127.0.0.1:0".parse().unwrap()), ServerOptions::default()).unwrap();
    cx.set_server_ref(server, false);
    let mut h = Ticks { fired: Vec::new(), interval: Some(interval) };
    let start = Instant::now();
    el.run(&mut h).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5), "unref'd handles kept the loop alive");
    assert_eq!(h.fired.iter().filter(|t| **t == interval).count(), 3);
    assert_eq!(h.fired.iter().filter(|t| **t == once).count(), 1);
    assert!(!h.fired.contains(&unrefed));
}

#[test]
fn eaddrinuse_names_the_code_and_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut el = netloop::EventLoop::new().unwrap();
    let err = el.context().listen(&SocketAddress::Inet(addr), ServerOptions::default()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    let msg = err.to_string();
    assert!(msg.contains("EADDRINUSE") && msg.contains(&addr.to_string()), "{msg}");
}

// ----- options applied to accepted sockets --------------------------------------------------

struct Props {
    server: ServerId,
    seen: Option<(Option<SocketAddress>, Option<SocketAddress>, u64, u64)>,
}

impl Handler for Props {
    fn on_data(&mut self, cx: &mut Context, s: SocketId, data: &[u8]) {
        cx.write(s, data);
        self.seen = Some((cx.remote_address(s), cx.local_address(s), cx.bytes_read(s), cx.bytes_written(s)));
        cx.end(s);
        cx.close_server(self.server);
    }
}

#[test]
fn socket_properties_are_readable() {
    let so =
        SocketOptions { no_delay: true, keep_alive: Some(Duration::from_secs(30)), ..Default::default() };
    let (addr, done) =
        spawn("127.0.0.1:0", opts(|o| o.socket = so), |_, server| Props { server, seen: None });
    let mut c = support::connect(inet(&addr));
    c.write_all(b"12345").unwrap();
    assert_eq!(support::read_to_end(&mut c), b"12345");
    let client_port = c.local_addr().unwrap().port();
    drop(c);
    let h = finish(done);
    let (remote, local, read, written) = h.seen.unwrap();
    let remote = remote.unwrap();
    assert_eq!(remote.family(), "IPv4");
    assert_eq!(remote.port(), Some(client_port));
    assert_eq!(local.unwrap(), addr);
    assert_eq!((read, written), (5, 5));
}

/// The loop's end of `client`'s connection, found among this process's fds (the loop runs on
/// a thread of the test), so its options can be read back: (TCP_NODELAY, keepalive time).
/// Waits (bounded) for the loop to accept it.
fn options_of_the_server_end(client: &TcpStream) -> (bool, Option<Duration>) {
    let deadline = Instant::now() + support::WAIT;
    loop {
        if let Some(found) = find_the_server_end(client) {
            return found;
        }
        assert!(Instant::now() < deadline, "no fd in this process is the server end of {client:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn find_the_server_end(client: &TcpStream) -> Option<(bool, Option<Duration>)> {
    use std::os::fd::BorrowedFd;
    let (ours, theirs) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Some(fd) = entry.unwrap().file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: borrowed only for these getsockopt/getsockname calls; a stale fd number just
        // fails them or names another socket, which the address check rejects.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let s = socket2::SockRef::from(&fd);
        let addr = |a: io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
        if addr(s.local_addr()) == Some(theirs) && addr(s.peer_addr()) == Some(ours) {
            let keepalive = s.keepalive().unwrap().then(|| s.tcp_keepalive_time().unwrap());
            return Some((s.tcp_nodelay().unwrap(), keepalive));
        }
    }
    None
}

/// `set` turns TCP_NODELAY and keepalive on, `unset` off, `ping` changes nothing; each is
/// answered with `ok`.
struct SocketOptionSetter;

impl Handler for SocketOptionSetter {
    fn on_data(&mut self, cx: &mut Context, s: SocketId, data: &[u8]) {
        if data != b"ping" {
            let on = data == b"set";
            cx.set_no_delay(s, on).unwrap();
            cx.set_keep_alive(s, on, Duration::from_secs(7)).unwrap();
        }
        cx.write(s, b"ok");
    }
    fn on_end(&mut self, cx: &mut Context, _s: SocketId) {
        cx.stop();
    }
}

#[test]
fn no_delay_and_keep_alive_reach_the_socket_from_options_and_from_calls() {
    // From the server's SocketOptions.
    let so =
        SocketOptions { no_delay: true, keep_alive: Some(Duration::from_secs(30)), ..Default::default() };
    let (addr, done) = spawn("127.0.0.1:0", opts(|o| o.socket = so), |_, _| SocketOptionSetter);
    let mut c = support::connect(inet(&addr));
    let mut ok = [0u8; 2];
    c.write_all(b"ping").unwrap(); // accepted and configured once it answers
    c.read_exact(&mut ok).unwrap();
    assert_eq!(options_of_the_server_end(&c), (true, Some(Duration::from_secs(30))));
    drop(c);
    finish(done);

    // From setNoDelay / setKeepAlive calls, both ways.
    let so = SocketOptions { no_delay: false, keep_alive: None, ..Default::default() };
    let (addr, done) = spawn("127.0.0.1:0", opts(|o| o.socket = so), |_, _| SocketOptionSetter);
    let mut c = support::connect(inet(&addr));
    c.write_all(b"unset").unwrap();
    c.read_exact(&mut ok).unwrap();
    assert_eq!(options_of_the_server_end(&c), (false, None));
    c.write_all(b"set").unwrap();
    c.read_exact(&mut ok).unwrap();
    assert_eq!(options_of_the_server_end(&c), (true, Some(Duration::from_secs(7))));
    c.write_all(b"unset").unwrap();
    c.read_exact(&mut ok).unwrap();
    assert_eq!(options_of_the_server_end(&c), (false, None));
    drop(c);
    finish(done);
}

/// Writes until 256 KiB are queued (the client is not reading), then destroys the socket.
struct Destroyer {
    log: Log,
    server: ServerId,
    written: usize,
    queued_before: usize,
}

impl Handler for Destroyer {
    fn on_data(&mut self, cx: &mut Context, s: SocketId, _data: &[u8]) {
        cx.close_server(self.server);
        while cx.buffer_size(s) < 256 << 10 && self.written < 64 << 20 {
            cx.write(s, &[b'z'; 16 << 10]);
            self.written += 16 << 10;
        }
        self.queued_before = cx.buffer_size(s);
        cx.destroy(s);
        assert!(!cx.is_open(s) && !cx.is_writable(s));
        assert!(!cx.write(s, b"after"), "writes after destroy() are refused");
    }
    record_all!();
}

#[test]
fn destroy_drops_queued_output_and_closes_without_an_error() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, server| Destroyer {
        log: Log::default(),
        server,
        written: 0,
        queued_before: 0,
    });
    let mut c = support::connect(inet(&addr));
    c.write_all(b"go").unwrap();
    let h = finish(done);
    // What the kernel had taken may still arrive; the queued rest never does.
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got); // EOF or a reset, either way the end
    h.log.check_invariants();
    let s = h.log.sockets()[0];
    assert_eq!(h.log.of(s), vec![Ev::Close(false)], "no error, no drain, no end");
    assert!(h.queued_before >= 256 << 10, "only {} bytes queued", h.queued_before);
    assert!(got.len() + h.queued_before <= h.written, "received {} of {}", got.len(), h.written);
}

struct RefCounting {
    closed: Vec<SocketId>,
}

impl Handler for RefCounting {
    fn on_close(&mut self, _cx: &mut Context, s: SocketId, _: Option<&SocketError>) {
        self.closed.push(s);
    }
}

#[test]
fn an_unref_socket_does_not_keep_the_loop_alive_and_a_referenced_one_does() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = SocketAddress::Inet(listener.local_addr().unwrap());
    let mut el = netloop::EventLoop::new().unwrap();
    let cx = el.context();
    let unrefed = cx.connect(&target);
    cx.set_socket_ref(unrefed, false);
    let referenced = cx.connect(&target);
    let (a, _) = listener.accept().unwrap();
    let (b, _) = listener.accept().unwrap();
    // Close both peers in 300 ms: only the referenced socket's close may end the run, and the
    // unref'd one must not hold it either.
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop((a, b));
    });
    let start = Instant::now();
    let mut h = RefCounting { closed: Vec::new() };
    el.run(&mut h).unwrap();
    let took = start.elapsed();
    closer.join().unwrap();
    assert!(took >= Duration::from_millis(250), "returned after {took:?}, with a referenced socket open");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(h.closed.contains(&referenced), "{:?}", h.closed);

    // Alone, an unref'd socket lets run() return at once.
    let cx = el.context();
    let lone = cx.connect(&target);
    cx.set_socket_ref(lone, false);
    let start = Instant::now();
    el.run(&mut h).unwrap();
    assert!(start.elapsed() < Duration::from_millis(200), "{:?}", start.elapsed());
    assert!(!h.closed.contains(&lone));
}

// ----- cork ---------------------------------------------------------------------------------

struct Corked {
    server: ServerId,
    queued_while_corked: Vec<usize>,
    big_writes: Vec<bool>,
}

impl Handler for Corked {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.close_server(self.server);
        cx.cork(s);
        for part in [&b"one,"[..], b"two,", b"three"] {
            assert!(cx.write(s, part), "small corked writes stay under the mark");
            self.queued_while_corked.push(cx.buffer_size(s));
        }
        // As in Node (checked: writableLength 16397 -> write() false with a 16 KiB mark),
        // corked bytes count toward the high-water mark.
        let big = vec![b'.'; 4096];
        for _ in 0..5 {
            self.big_writes.push(cx.write(s, &big));
        }
        cx.end(s); // FIN only after the end-of-turn flush
    }
}

#[test]
fn cork_queues_without_a_syscall_until_the_end_of_the_turn() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, server| Corked {
        server,
        queued_while_corked: Vec::new(),
        big_writes: Vec::new(),
    });
    let mut c = support::connect(inet(&addr));
    let mut want = b"one,two,three".to_vec();
    want.extend_from_slice(&[b'.'; 5 * 4096]);
    assert_eq!(support::read_to_end(&mut c), want);
    drop(c);
    let h = finish(done);
    assert_eq!(h.queued_while_corked, vec![4, 8, 13], "nothing reached the kernel while corked");
    assert_eq!(h.big_writes, vec![true, true, true, false, false], "false once 16 KiB is queued");
}
