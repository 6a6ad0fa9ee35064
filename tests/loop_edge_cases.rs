//! Lifecycle edge cases of the loop, each a bug found in review: a timer armed on a destroyed
//! socket, `'listening'` owed from inside a handler, a server closed before its `'listening'`,
//! zero-delay timers re-armed forever, `socket_count()` while closes are being delivered, and a
//! timeout re-armed by another one of the same batch.

mod loop_support;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use loop_support::{finish, inet, spawn, Ev, Log};
use netloop::{Context, Handler, ServerId, ServerOptions, SocketAddress, SocketError, SocketId, TimerId};

// ----- a timer armed on a destroyed socket must not reach the socket that reuses its slot -----
struct StaleIdle {
    log: Log,
    server: ServerId,
    n: usize,
}
impl Handler for StaleIdle {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        self.n += 1;
        self.log.push(s, Ev::Connection);
        if self.n == 1 {
            // e.g. a greeting write() failed (peer reset) and destroyed it, then the handler
            // goes on to arm its idle timeout as usual.
            cx.destroy(s);
            cx.set_timeout(s, Duration::from_millis(150));
        }
        // the second connection never asks for a timeout
    }
    fn on_timeout(&mut self, cx: &mut Context, s: SocketId) {
        self.log.push(s, Ev::Timeout);
        cx.destroy(s);
    }
    fn on_close(&mut self, cx: &mut Context, s: SocketId, e: Option<&SocketError>) {
        self.log.push(s, Ev::Close(e.is_some()));
        if self.n == 2 {
            cx.close_server(self.server);
        }
    }
}

#[test]
fn a_timeout_set_after_destroy_never_reaches_the_socket_that_reuses_the_slot() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, server| StaleIdle {
        log: Log::default(),
        server,
        n: 0,
    });
    let mut c1 = TcpStream::connect(inet(&addr)).unwrap();
    let mut b = [0u8; 16];
    let _ = c1.read(&mut b); // closed by the server
    std::thread::sleep(Duration::from_millis(50));
    let c2 = TcpStream::connect(inet(&addr)).unwrap(); // reuses slab key 0
    std::thread::sleep(Duration::from_millis(600));
    drop(c2);
    let h = finish(done);
    let second = h.log.sockets()[1];
    assert_eq!(second.index(), h.log.sockets()[0].index(), "slot reused");
    assert!(
        !h.log.of(second).contains(&Ev::Timeout),
        "second socket never set a timeout: {:?}",
        h.log.of(second)
    );
}

// ----- 'listening' owed from inside on_listening is delivered without another event ---------
struct NestedListen {
    first: ServerId,
    times: Vec<(ServerId, Instant)>,
}
impl Handler for NestedListen {
    fn on_listening(&mut self, cx: &mut Context, sv: ServerId) {
        self.times.push((sv, Instant::now()));
        if sv == self.first {
            cx.listen(&SocketAddress::Inet("127.0.0.1:0".parse().unwrap()), ServerOptions::default())
                .unwrap();
        }
    }
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.destroy(s);
        for sv in cx.servers() {
            cx.close_server(sv);
        }
    }
}

#[test]
fn listening_owed_from_on_listening_is_delivered_without_another_event() {
    let (addr, done) =
        spawn("127.0.0.1:0", ServerOptions::default(), |_, first| NestedListen { first, times: vec![] });
    std::thread::sleep(Duration::from_millis(1000));
    let _c = TcpStream::connect(inet(&addr)).unwrap(); // wakes the loop
    let h = finish(done);
    assert_eq!(h.times.len(), 2);
    let lag = h.times[1].1 - h.times[0].1;
    assert!(
        lag < Duration::from_millis(300),
        "second on_listening delivered {lag:?} late (only when a connection woke the loop)"
    );
}

// ----- a zero-delay timer re-armed from on_timer must not starve I/O (Node: at least 1 ms) ---
struct ZeroTimer {
    start: Instant,
    fired: u64,
    chain_end: Option<Instant>,
    conn: Option<Instant>,
}
impl Handler for ZeroTimer {
    fn on_listening(&mut self, cx: &mut Context, _: ServerId) {
        cx.set_timer(Duration::ZERO);
    }
    fn on_timer(&mut self, cx: &mut Context, _: TimerId) {
        self.fired += 1;
        if self.start.elapsed() < Duration::from_secs(2) {
            cx.set_timer(Duration::ZERO);
        } else {
            self.chain_end = Some(Instant::now());
        }
    }
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        self.conn = Some(Instant::now());
        cx.destroy(s);
        for sv in cx.servers() {
            cx.close_server(sv);
        }
    }
}

#[test]
fn zero_delay_timer_chain_does_not_starve_io() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, _| ZeroTimer {
        start: Instant::now(),
        fired: 0,
        chain_end: None,
        conn: None,
    });
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let _c = TcpStream::connect(inet(&addr)).unwrap();
    let h = finish(done);
    let lag = h.conn.unwrap() - t;
    assert!(
        lag < Duration::from_millis(500),
        "connection seen {lag:?} after connect ({} timer callbacks in one turn)",
        h.fired
    );
}

// ----- socket_count() inside on_close while several sockets close in one turn ----------------
struct CountInClose {
    log: Log,
    server: ServerId,
    socks: Vec<SocketId>,
    counts: Vec<usize>,
}
impl Handler for CountInClose {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        self.socks.push(s);
        if self.socks.len() == 3 {
            cx.close_server(self.server);
            for &s in &self.socks {
                cx.destroy(s);
            }
        }
    }
    fn on_close(&mut self, cx: &mut Context, s: SocketId, e: Option<&SocketError>) {
        self.log.push(s, Ev::Close(e.is_some()));
        self.counts.push(cx.socket_count());
    }
}

#[test]
fn socket_count_excludes_sockets_whose_close_is_being_delivered() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, server| CountInClose {
        log: Log::default(),
        server,
        socks: vec![],
        counts: vec![],
    });
    let cs: Vec<_> = (0..3)
        .map(|_| {
            let c = TcpStream::connect(inet(&addr)).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            c
        })
        .collect();
    let h = finish(done);
    drop(cs);
    assert_eq!(h.counts, vec![0, 0, 0]);
}

// ----- a server closed before its 'listening': no 'listening', and run() returns -------------
/// Its first timer listens and closes that server in the same breath; a later timer (an
/// unref'd guard, if the test sets one) records that it had to wake the loop, and stops it.
#[derive(Default)]
struct ListenThenClose {
    evs: Vec<String>,
    timers: u32,
}

impl Handler for ListenThenClose {
    fn on_timer(&mut self, cx: &mut Context, _: TimerId) {
        self.timers += 1;
        if self.timers == 1 {
            let sv = cx
                .listen(&SocketAddress::Inet("127.0.0.1:0".parse().unwrap()), ServerOptions::default())
                .unwrap();
            cx.close_server(sv);
        } else {
            self.evs.push("the guard timer woke the loop".into());
            cx.stop();
        }
    }
    fn on_listening(&mut self, _: &mut Context, _: ServerId) {
        self.evs.push("listening".into());
    }
    fn on_server_close(&mut self, _: &mut Context, _: ServerId) {
        self.evs.push("close".into());
    }
}

#[test]
fn listen_then_close_in_a_timer_lets_run_return() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut el = netloop::EventLoop::new().unwrap();
        el.context().set_timer(Duration::from_millis(10));
        let mut h = ListenThenClose::default();
        el.run(&mut h).unwrap();
        tx.send(h.evs).unwrap();
    });
    let evs = rx.recv_timeout(Duration::from_secs(3)).expect("run() did not return within 3 s");
    assert_eq!(evs, vec!["close".to_string()]);
}

#[test]
fn a_server_closed_before_listening_never_reports_listening() {
    let mut el = netloop::EventLoop::new().unwrap();
    el.context().set_timer(Duration::from_millis(10));
    let guard = el.context().set_timer(Duration::from_millis(1000));
    el.context().set_timer_ref(guard, false);
    let mut h = ListenThenClose::default();
    el.run(&mut h).unwrap();
    assert_eq!(h.evs, vec!["close".to_string()]);
}

// ----- a socket re-armed by an earlier on_timeout of the same batch is not timed out ----------

struct ReArm {
    server: ServerId,
    socks: Vec<SocketId>,
    /// (socket, when) of every on_timeout.
    timeouts: Vec<(SocketId, Instant)>,
}

impl Handler for ReArm {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        self.socks.push(s);
        if self.socks.len() == 2 {
            cx.close_server(self.server);
            // Same loop time, same duration: both expire in one batch.
            for &s in &self.socks {
                cx.set_timeout(s, Duration::from_millis(200));
            }
        }
    }
    fn on_timeout(&mut self, cx: &mut Context, s: SocketId) {
        self.timeouts.push((s, Instant::now()));
        if self.timeouts.len() == 1 {
            // The first to time out re-arms the other one's countdown.
            let other = *self.socks.iter().find(|&&o| o != s).unwrap();
            cx.set_timeout(other, Duration::from_millis(200));
        } else {
            for &s in &self.socks {
                cx.destroy(s);
            }
        }
    }
}

#[test]
fn a_timeout_re_armed_by_an_earlier_one_in_the_same_batch_waits_its_new_time() {
    let (addr, done) = spawn("127.0.0.1:0", ServerOptions::default(), |_, server| ReArm {
        server,
        socks: Vec::new(),
        timeouts: Vec::new(),
    });
    let a = TcpStream::connect(inet(&addr)).unwrap();
    let b = TcpStream::connect(inet(&addr)).unwrap();
    let h = finish(done);
    drop((a, b));
    assert_eq!(h.timeouts.len(), 2, "{:?}", h.timeouts);
    let (first, second) = (h.timeouts[0], h.timeouts[1]);
    assert_ne!(first.0, second.0);
    let gap = second.1 - first.1;
    assert!(gap >= Duration::from_millis(150), "re-armed socket timed out {gap:?} after the re-arm");
}
