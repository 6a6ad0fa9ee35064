//! Output limits and slab recycling, on real sockets (operations promises 4 and 6).

mod loop_support;
mod support;

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use loop_support::{finish, inet, spawn, Cause, Ev, Log};
use netloop::{Context, Handler, ServerId, ServerOptions, SocketError, SocketId, SocketOptions, TimerId};

/// Writes 16 KiB every 10 ms to a client that never reads.
struct Firehose {
    log: Log,
    server: ServerId,
    socket: Option<SocketId>,
    connected_at: Option<Instant>,
    closed_after: Option<Duration>,
    outputs: u64,
}

impl Handler for Firehose {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.close_server(self.server);
        self.socket = Some(s);
        self.connected_at = Some(Instant::now());
        cx.set_interval(Duration::from_millis(10));
    }
    fn on_timer(&mut self, cx: &mut Context, t: TimerId) {
        let s = self.socket.unwrap();
        if !cx.is_open(s) {
            cx.clear_timer(t);
            return;
        }
        cx.write(s, &[0u8; 16 * 1024]);
    }
    fn on_close(&mut self, cx: &mut Context, s: SocketId, error: Option<&SocketError>) {
        self.log.close(s, error);
        self.closed_after = Some(self.connected_at.unwrap().elapsed());
        self.outputs = cx.stats().output_limit_disconnects;
    }
}

fn firehose(socket: SocketOptions) -> (Firehose, TcpStream) {
    let options = ServerOptions { socket, ..Default::default() };
    let (addr, done) = spawn("127.0.0.1:0", options, |_, server| Firehose {
        log: Log::default(),
        server,
        socket: None,
        connected_at: None,
        closed_after: None,
        outputs: 0,
    });
    let client = support::connect(inet(&addr));
    // Shrink our receive window so the server's queue fills quickly.
    socket2::SockRef::from(&client).set_recv_buffer_size(4096).unwrap();
    let h = finish(done);
    (h, client)
}

#[test]
fn the_hard_limit_disconnects_a_client_that_never_reads() {
    let (h, _client) = firehose(SocketOptions { max_buffer: Some(256 * 1024), ..Default::default() });
    h.log.check_invariants();
    let evs = h.log.of(h.socket.unwrap());
    assert!(matches!(&evs[0], Ev::Error(Cause::OutputLimit, None, m) if m.contains("limit")), "{evs:?}");
    assert_eq!(evs[1], Ev::Close(true));
    assert_eq!(h.outputs, 1, "counted");
}

#[test]
fn the_soft_limit_disconnects_after_its_window_and_not_before() {
    let window = Duration::from_millis(600);
    let (h, _client) =
        firehose(SocketOptions { soft_limit: Some((64 * 1024, window)), ..Default::default() });
    h.log.check_invariants();
    let evs = h.log.of(h.socket.unwrap());
    assert!(
        matches!(&evs[0], Ev::Error(Cause::SoftOutputLimit, None, m) if m.contains("soft limit")),
        "{evs:?}"
    );
    let lived = h.closed_after.unwrap();
    assert!(lived >= window, "disconnected after {lived:?}, before the {window:?} window");
    assert!(lived < Duration::from_secs(10), "took {lived:?}");
    assert_eq!(h.outputs, 1);
}

/// Greets, counts, and stops after `total` connections have closed.
struct Churn {
    server: ServerId,
    total: usize,
    closed: usize,
    peak_slots: usize,
    final_slots: usize,
    final_live: usize,
}

impl Handler for Churn {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.write(s, b"k");
        self.peak_slots = self.peak_slots.max(cx.socket_slots());
    }
    fn on_close(&mut self, cx: &mut Context, _: SocketId, _: Option<&SocketError>) {
        self.closed += 1;
        if self.closed == self.total {
            cx.close_server(self.server);
        }
    }
    fn on_server_close(&mut self, cx: &mut Context, _: ServerId) {
        self.final_slots = cx.socket_slots();
        self.final_live = cx.socket_count();
    }
}

#[test]
fn ten_thousand_connect_close_cycles_leave_nothing_behind() {
    let _ = netloop::limits::raise_fd_limit();
    let (rounds, burst) = (5, 2000);
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), move |_, server| Churn {
        server,
        total: rounds * burst,
        closed: 0,
        peak_slots: 0,
        final_slots: 0,
        final_live: 0,
    });
    let addr = inet(&addr);
    for _ in 0..rounds {
        let mut conns: Vec<TcpStream> = (0..burst).map(|_| support::connect(addr)).collect();
        for c in &mut conns {
            let mut k = [0u8; 1];
            io::Read::read_exact(c, &mut k).unwrap();
        }
        drop(conns);
    }
    let h = finish(done);
    assert_eq!(h.closed, rounds * burst);
    assert_eq!(h.final_live, 0, "connection count back to zero");
    assert!(h.peak_slots >= burst, "the burst was concurrent ({} slots)", h.peak_slots);
    assert!(
        h.final_slots < 1024,
        "slab shrank back: {} slots after a peak of {}",
        h.final_slots,
        h.peak_slots
    );
}

// ----- a recycled write queue starts clean ---------------------------------------------------

/// Queues 32 KiB (over an 8 KiB soft limit) on a corked Unix socket, which the end-of-turn
/// flush hands to the kernel whole; 400 ms later, past the 300 ms soft window, does the same on
/// a second socket, which gets the first one's recycled queue.
struct Recycled {
    peers: Vec<std::os::unix::net::UnixStream>,
    second: Option<SocketId>,
    second_open: Option<bool>,
    cuts: u64,
}

impl Recycled {
    fn queue_burst(&mut self, cx: &mut Context) -> SocketId {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        self.peers.push(theirs);
        let s = cx.wrap_unix_stream(ours).unwrap();
        cx.cork(s);
        cx.write(s, &[b'x'; 32 * 1024]);
        s
    }
}

impl Handler for Recycled {
    fn on_timer(&mut self, cx: &mut Context, _: TimerId) {
        if self.second.is_none() {
            let s = self.queue_burst(cx);
            self.second = Some(s);
            self.second_open = Some(cx.is_open(s));
            self.cuts = cx.stats().output_limit_disconnects;
        }
        cx.stop();
    }
}

#[test]
fn a_recycled_write_queue_does_not_inherit_the_soft_limit_clock_of_its_last_owner() {
    let mut el = netloop::EventLoop::new().unwrap();
    let cx = el.context();
    cx.set_client_options(SocketOptions {
        soft_limit: Some((8 * 1024, Duration::from_millis(300))),
        ..Default::default()
    });
    let mut h = Recycled { peers: Vec::new(), second: None, second_open: None, cuts: 0 };
    let first = h.queue_burst(cx);
    assert_eq!(cx.buffer_size(first), 32 * 1024, "corked: queued, over the soft limit");
    cx.set_timer(Duration::from_millis(400));
    el.run(&mut h).unwrap();
    assert_eq!(h.second_open, Some(true), "the second socket was cut the moment it queued");
    assert_eq!(h.cuts, 0);
}

// ----- hanging up: a peer that does not close in turn is cut off -----------------------------

/// Reads the server's last words up to its FIN, then keeps sending (as a hostile peer would)
/// until a write fails; returns the last words, when the FIN came and how long after it the
/// server let go.
fn last_words_then_keep_sending(mut c: TcpStream) -> (String, Instant, Duration) {
    use std::io::{Read, Write};
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut words = Vec::new();
    c.read_to_end(&mut words).expect("the server's last words, then its FIN");
    let fin = Instant::now();
    while fin.elapsed() < Duration::from_secs(8) {
        if c.write_all(&[b'x'; 100]).is_err() {
            return (String::from_utf8_lossy(&words).into_owned(), fin, fin.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("still connected 8 s after the server's FIN: {}", String::from_utf8_lossy(&words));
}

/// Within the 2 s grace (`services::HANG_UP_GRACE`), give or take scheduling.
fn assert_cut_off_within_the_grace(after_fin: Duration) {
    assert!(after_fin < Duration::from_millis(4500), "cut off {after_fin:?} after the FIN");
}

/// Breaks an input limit of `service` with `payload`, keeps sending after the server's FIN,
/// checks it is cut off within the grace, and returns the server's last words.
fn break_the_limit_and_keep_sending(args: &[&str], service: &str, payload: &[u8]) -> String {
    let server = support::Netloop::serve(args, 1);
    let mut c = support::connect(server.tcp(service));
    support::send(&mut c, payload);
    let (words, _, after_fin) = last_words_then_keep_sending(c);
    assert_cut_off_within_the_grace(after_fin);
    words
}

#[test]
fn a_chat_client_over_the_line_limit_is_cut_off_even_if_it_keeps_sending() {
    let words = break_the_limit_and_keep_sending(
        &["--chat", "127.0.0.1:0", "--max-line", "100"],
        "chat",
        &[b'a'; 150],
    );
    assert!(words.ends_with("* error: line too long (max 100 bytes)\n"), "{words:?}");
}

#[test]
fn a_hub_client_over_the_frame_limit_is_cut_off_even_if_it_keeps_sending() {
    let words = break_the_limit_and_keep_sending(
        &["--hub", "127.0.0.1:0", "--max-frame", "200"],
        "hub",
        &[b'['; 300],
    );
    assert!(words.contains(r#""code":"frame_too_large""#), "{words:?}");
}

#[test]
fn an_idle_client_is_ended_then_cut_off_even_if_it_wakes_up() {
    let server = support::Netloop::serve(&["--echo", "127.0.0.1:0", "--idle-timeout", "300ms"], 1);
    let start = Instant::now();
    let c = support::connect(server.tcp("echo"));
    let (words, fin, after_fin) = last_words_then_keep_sending(c);
    assert_eq!(words, "");
    assert!(fin - start >= Duration::from_millis(250), "ended {:?} after connecting", fin - start);
    assert_cut_off_within_the_grace(after_fin);
}
