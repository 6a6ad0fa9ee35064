//! `Serve` routes every socket event to the service that owns the socket: the one whose
//! listener accepted it, or the one an outbound socket was opened for. Services here are
//! test types plugged in through the `Service` trait, with no change to `serve`.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use netloop::addr::AddressSpec;
use netloop::context::Context;
use netloop::input_budget::InputCut;
use netloop::serve::{Serve, ServeConfig};
use netloop::services::Service;
use netloop::{EventLoop, ServerId, ServerOptions, SocketAddress, SocketId, TimerId};

type Journal = Rc<RefCell<Vec<String>>>;

/// Writes down every event it gets as `name:event`, answers `data` with `name:` + the data,
/// and arms one timer when an outbound socket connects. With `dial`, each accepted connection
/// makes it open one outbound socket there.
struct Recorder {
    name: &'static str,
    journal: Journal,
    timer: Option<TimerId>,
    dial: Option<SocketAddress>,
    dialed: Vec<SocketId>,
}

impl Recorder {
    fn boxed(name: &'static str, journal: &Journal) -> Box<dyn Service> {
        Recorder::dialing(name, journal, None)
    }

    fn dialing(name: &'static str, journal: &Journal, dial: Option<SocketAddress>) -> Box<dyn Service> {
        Box::new(Recorder { name, journal: journal.clone(), timer: None, dial, dialed: Vec::new() })
    }

    fn note(&self, event: &str) {
        self.journal.borrow_mut().push(format!("{}:{event}", self.name));
    }
}

impl Service for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }

    fn refusal(&self, _max: usize) -> Vec<u8> {
        format!("{} full\n", self.name).into_bytes()
    }

    fn opened(&self, socket: SocketId) -> bool {
        self.dialed.contains(&socket)
    }

    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, _socket: SocketId) {
        self.note("connection");
        if let Some(addr) = &self.dial {
            self.dialed.push(cx.connect(addr));
        }
    }

    fn on_connect(&mut self, cx: &mut Context, _socket: SocketId) {
        self.note("connect");
        self.timer = Some(cx.set_timer(Duration::from_millis(10)));
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        self.note(&format!("data {}", String::from_utf8_lossy(data)));
        let reply = format!("{}:{}", self.name, String::from_utf8_lossy(data));
        cx.write(socket, reply.as_bytes());
    }

    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        self.note("end");
        cx.end(socket);
    }

    fn on_close(&mut self, _cx: &mut Context, _socket: SocketId) {
        self.note("close");
    }

    fn on_timer(&mut self, _cx: &mut Context, timer: TimerId) -> bool {
        if self.timer != Some(timer) {
            return false;
        }
        self.note("timer");
        true
    }

    fn on_input_cut(&mut self, _cx: &mut Context, _socket: SocketId, _cut: &InputCut) {
        self.note("cut");
    }
}

/// Turns the loop until `done` holds; fails after a generous bound.
fn turn_until(
    event_loop: &mut EventLoop,
    serve: &mut Serve,
    journal: &Journal,
    done: impl Fn(&[String]) -> bool,
) {
    let start = Instant::now();
    while !done(&journal.borrow()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "gave up waiting; events so far: {:?}",
            journal.borrow()
        );
        event_loop.turn(serve).expect("turn");
    }
}

fn has(events: &[String], event: &str) -> bool {
    events.iter().any(|e| e == event)
}

#[test]
fn events_reach_the_service_that_owns_each_socket_accepted_or_outbound() {
    let journal: Journal = Rc::default();
    let mut event_loop = EventLoop::new().unwrap();
    let cx = event_loop.context();
    let mut serve = Serve::new(cx, &ServeConfig::default()).unwrap();
    let first = serve.add(Recorder::boxed("first", &journal));
    let second = serve.add(Recorder::boxed("second", &journal));
    let local = AddressSpec::Tcp { host: "127.0.0.1".into(), port: 0 };
    let server = serve.listen(cx, first, &local, ServerOptions::default()).unwrap();
    let Some(SocketAddress::Inet(listening)) = cx.server_address(server).cloned() else {
        panic!("no TCP address")
    };
    // Wakes every turn so a wait never blocks in poll; no service claims it.
    let tick = cx.set_interval(Duration::from_millis(20));
    cx.set_timer_ref(tick, false);

    // An outside server the second service is a client of.
    let store = TcpListener::bind("127.0.0.1:0").unwrap();
    let store_addr = SocketAddress::Inet(store.local_addr().unwrap());
    serve.connect(cx, second, &store_addr);
    let (mut store_side, _) = store.accept().unwrap();
    store_side.set_read_timeout(Some(Duration::from_secs(20))).unwrap();

    let mut client = TcpStream::connect(listening).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    client.write_all(b"ping").unwrap();
    store_side.write_all(b"pong").unwrap();
    turn_until(&mut event_loop, &mut serve, &journal, |e| {
        has(e, "first:data ping") && has(e, "second:data pong") && has(e, "second:timer")
    });
    let mut reply = [0u8; 10];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"first:ping", "the accepted socket's owner answered");
    let mut reply = [0u8; 11];
    store_side.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"second:pong", "the outbound socket's owner answered");

    // Both hang up: each close goes to its owner only.
    drop(client);
    drop(store_side);
    turn_until(&mut event_loop, &mut serve, &journal, |e| has(e, "first:close") && has(e, "second:close"));
    let events = journal.borrow().clone();
    let of = |name: &str| -> Vec<String> {
        events.iter().filter(|e| e.starts_with(name)).map(|e| e[name.len() + 1..].to_string()).collect()
    };
    assert_eq!(of("first"), ["connection", "data ping", "end", "close"]);
    let second_events = of("second");
    assert_eq!(second_events.len(), 5, "{second_events:?}");
    assert_eq!(second_events[0], "connect");
    assert!(second_events.contains(&"timer".to_string()), "its own timer came to it: {second_events:?}");
    assert!(second_events.ends_with(&["end".to_string(), "close".to_string()]), "{second_events:?}");
}

#[test]
fn a_socket_a_service_opens_inside_its_own_event_is_that_services() {
    let journal: Journal = Rc::default();
    let store = TcpListener::bind("127.0.0.1:0").unwrap();
    let store_addr = SocketAddress::Inet(store.local_addr().unwrap());
    let mut event_loop = EventLoop::new().unwrap();
    let cx = event_loop.context();
    let mut serve = Serve::new(cx, &ServeConfig::default()).unwrap();
    // A bystander first, so routing by position alone would pick the wrong one.
    serve.add(Recorder::boxed("bystander", &journal));
    let dialer = serve.add(Recorder::dialing("dialer", &journal, Some(store_addr)));
    let local = AddressSpec::Tcp { host: "127.0.0.1".into(), port: 0 };
    let server = serve.listen(cx, dialer, &local, ServerOptions::default()).unwrap();
    let Some(SocketAddress::Inet(listening)) = cx.server_address(server).cloned() else {
        panic!("no TCP address")
    };
    let tick = cx.set_interval(Duration::from_millis(20));
    cx.set_timer_ref(tick, false);

    let _client = TcpStream::connect(listening).unwrap();
    turn_until(&mut event_loop, &mut serve, &journal, |e| has(e, "dialer:connection"));
    let (mut store_side, _) = store.accept().unwrap();
    store_side.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    store_side.write_all(b"pong").unwrap();
    turn_until(&mut event_loop, &mut serve, &journal, |e| has(e, "dialer:data pong"));
    let mut reply = [0u8; 11];
    store_side.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"dialer:pong");
    drop(store_side);
    turn_until(&mut event_loop, &mut serve, &journal, |e| {
        e.iter().filter(|e| e.ends_with(":close")).count() == 1
    });
    // Its timer may fire anywhere after the connect; the order of the socket's events is fixed.
    let events: Vec<String> = journal.borrow().iter().filter(|e| *e != "dialer:timer").cloned().collect();
    assert!(events.iter().all(|e| e.starts_with("dialer:")), "the bystander got nothing: {events:?}");
    assert_eq!(events[..3], ["dialer:connection", "dialer:connect", "dialer:data pong"], "{events:?}");
    assert!(events.ends_with(&["dialer:end".to_string(), "dialer:close".to_string()]), "{events:?}");
}

#[test]
fn a_connection_over_the_cap_gets_the_refusal_of_its_listeners_service() {
    let journal: Journal = Rc::default();
    let mut event_loop = EventLoop::new().unwrap();
    let cx = event_loop.context();
    let config = ServeConfig { max_sockets: Some(1), ..ServeConfig::default() };
    let mut serve = Serve::new(cx, &config).unwrap();
    let first = serve.add(Recorder::boxed("first", &journal));
    let second = serve.add(Recorder::boxed("second", &journal));
    let local = AddressSpec::Tcp { host: "127.0.0.1".into(), port: 0 };
    serve.listen(cx, first, &local, ServerOptions::default()).unwrap();
    let server = serve.listen(cx, second, &local, ServerOptions::default()).unwrap();
    let Some(SocketAddress::Inet(to_second)) = cx.server_address(server).cloned() else {
        panic!("no TCP address")
    };
    let tick = cx.set_interval(Duration::from_millis(20));
    cx.set_timer_ref(tick, false);

    let _held = TcpStream::connect(to_second).unwrap();
    turn_until(&mut event_loop, &mut serve, &journal, |e| has(e, "second:connection"));
    let mut refused = TcpStream::connect(to_second).unwrap();
    refused.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut said = Vec::new();
    let start = Instant::now();
    while !said.ends_with(b"\n") {
        assert!(start.elapsed() < Duration::from_secs(20), "no refusal line: {said:?}");
        event_loop.turn(&mut serve).unwrap();
        refused.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        match refused.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => said.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(said, b"second full\n");
}
