//! The Redis connection on a real loop against a private `redis-server`: handshake with a
//! password, pub/sub, pipelined replies in order, reconnect and re-subscribe exactly once after a
//! restart, and a hung Redis noticed within the reply timeout.
#![cfg(feature = "cluster")]

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use netloop::cluster::conn::{Conn, ConnEvent, Endpoint, Timing};
use netloop::cluster::resp::Value;
use netloop::{Context, EventLoop, Handler, SocketError, SocketId, TimerId};
use support::redis::Redis;
use support::WAIT;

/// What the test thread asks the loop to do.
enum Ask {
    Publish(&'static str),
    Command(Vec<String>),
    Stop,
}

/// Owns a command connection and a subscriber, reports their events to the test.
struct Node {
    commands: Conn<u32>,
    subscriber: Conn<u32>,
    asks: mpsc::Receiver<Ask>,
    events: mpsc::Sender<String>,
    tick: Option<TimerId>,
    next_tag: u32,
}

impl Node {
    fn pump(&mut self) {
        while let Some(ev) = self.commands.poll_event() {
            let _ = self.events.send(format!("cmd {}", describe(ev)));
        }
        while let Some(ev) = self.subscriber.poll_event() {
            let _ = self.events.send(format!("sub {}", describe(ev)));
        }
    }
}

fn describe(ev: ConnEvent<u32>) -> String {
    match ev {
        ConnEvent::Up => "up".into(),
        ConnEvent::Down(why) => format!("down {why}"),
        ConnEvent::Reply(tag, Value::Int(n)) => format!("reply {tag} int {n}"),
        ConnEvent::Reply(tag, v) => format!("reply {tag} {v:?}"),
        ConnEvent::Message { channel, payload } => {
            format!("message {} {}", String::from_utf8_lossy(&channel), String::from_utf8_lossy(&payload))
        }
    }
}

impl Handler for Node {
    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {
        if self.commands.owns(socket) {
            self.commands.on_connect(cx);
        } else if self.subscriber.owns(socket) {
            self.subscriber.on_connect(cx);
        }
        self.pump();
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        if self.commands.owns(socket) {
            self.commands.on_data(cx, data);
        } else if self.subscriber.owns(socket) {
            self.subscriber.on_data(cx, data);
        }
        self.pump();
    }

    fn on_close(&mut self, cx: &mut Context, socket: SocketId, _error: Option<&SocketError>) {
        if self.commands.owns(socket) {
            self.commands.on_close(cx);
        } else if self.subscriber.owns(socket) {
            self.subscriber.on_close(cx);
        }
        self.pump();
    }

    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) {
        if Some(timer) != self.tick {
            return;
        }
        while let Ok(ask) = self.asks.try_recv() {
            match ask {
                Ask::Stop => {
                    cx.stop();
                    return;
                }
                Ask::Publish(text) => {
                    self.next_tag += 1;
                    let sent = self.commands.send(cx, self.next_tag, &[b"PUBLISH", b"ch", text.as_bytes()]);
                    let _ = self.events.send(format!("sent {sent}"));
                }
                Ask::Command(args) => {
                    self.next_tag += 1;
                    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
                    let sent = self.commands.send(cx, self.next_tag, &args);
                    let _ = self.events.send(format!("sent {sent}"));
                }
            }
        }
        self.commands.tick(cx);
        self.subscriber.tick(cx);
        self.commands.ping(cx);
        self.subscriber.ping(cx);
        self.pump();
    }
}

struct Running {
    asks: mpsc::Sender<Ask>,
    events: mpsc::Receiver<String>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(url: &str, timing: Timing) -> Running {
        let endpoint = Endpoint::parse(url).unwrap();
        let (ask_tx, ask_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut lp = EventLoop::new().unwrap();
            let mut node = Node {
                commands: Conn::commands("commands".into(), endpoint.clone(), timing),
                subscriber: Conn::subscriber("subscriber".into(), endpoint, timing, vec![b"ch".to_vec()]),
                asks: ask_rx,
                events: ev_tx,
                tick: None,
                next_tag: 0,
            };
            node.tick = Some(lp.context().set_interval(Duration::from_millis(20)));
            // Runs until the test says stop (on drop, also when it panics).
            lp.run(&mut node).unwrap();
        });
        Running { asks: ask_tx, events: ev_rx, thread: Some(thread) }
    }

    /// Waits (bounded) for an event starting with `prefix`; returns it and what came before.
    fn expect(&self, prefix: &str) -> (String, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) if ev.starts_with(prefix) => return (ev, before),
                Ok(ev) => before.push(ev),
                Err(_) => panic!("no event {prefix:?} within {WAIT:?}; saw {before:?}"),
            }
        }
    }

    fn both_up(&self) {
        let mut up = (false, false);
        let deadline = Instant::now() + WAIT;
        while !(up.0 && up.1) {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.events.recv_timeout(left).expect("both connections up");
            up.0 |= ev == "cmd up";
            up.1 |= ev == "sub up";
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.asks.send(Ask::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fast() -> Timing {
    Timing {
        reply_timeout: Duration::from_millis(1500),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    }
}

#[test]
fn publishes_reach_the_subscriber_and_pipelined_replies_come_back_in_order() {
    let redis = Redis::start();
    let node = Running::start(&redis.url(), fast());
    node.both_up();
    for text in ["one", "two", "three"] {
        node.asks.send(Ask::Publish(text)).unwrap();
    }
    let mut messages = Vec::new();
    let mut replies = Vec::new();
    let deadline = Instant::now() + WAIT;
    while messages.len() < 3 || replies.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = node.events.recv_timeout(left).expect("three messages and three replies");
        if ev.starts_with("sub message") {
            messages.push(ev);
        } else if ev.starts_with("cmd reply") {
            replies.push(ev);
        }
    }
    assert_eq!(messages, ["sub message ch one", "sub message ch two", "sub message ch three"]);
    // Every PUBLISH was answered with its receiver count, in the order sent.
    assert_eq!(replies, ["cmd reply 1 int 1", "cmd reply 2 int 1", "cmd reply 3 int 1"]);
}

#[test]
fn a_password_in_the_url_logs_in_and_a_wrong_one_never_comes_up() {
    let redis = Redis::start_tcp(&["--requirepass", "s3cret"]);
    assert!(redis.url().contains(":s3cret@"));
    let node = Running::start(&redis.url(), fast());
    node.both_up();
    node.asks.send(Ask::Command(vec!["SET".into(), "k".into(), "v".into()])).unwrap();
    let (ev, _) = node.expect("cmd reply");
    assert_eq!(ev, "cmd reply 1 Simple(\"OK\")");
    drop(node);

    let port = redis.url().rsplit(':').next().unwrap().to_string();
    let wrong = Running::start(&format!("redis://:nope@127.0.0.1:{port}"), fast());
    let (ev, before) = wrong.expect("cmd down");
    assert!(ev.contains("WRONGPASS") || ev.contains("invalid"), "{ev}");
    assert!(!before.contains(&"cmd up".to_string()), "{before:?}");
}

#[test]
fn after_a_redis_restart_both_connections_come_back_and_subscribe_exactly_once() {
    let mut redis = Redis::start();
    let node = Running::start(&redis.url(), fast());
    node.both_up();
    redis.restart();
    node.expect("sub down");
    node.both_up();
    // One subscription, however many attempts it took.
    let subs = redis.wait_for(&["PUBLISH", "ch", "after"], "the subscriber back", |r| r != ":0");
    assert_eq!(subs, ":1");
    let (ev, _) = node.expect("sub message");
    assert_eq!(ev, "sub message ch after");
    // And the command connection works again.
    node.asks.send(Ask::Publish("again")).unwrap();
    let (ev, _) = node.expect("sub message");
    assert_eq!(ev, "sub message ch again");
}

#[test]
fn a_hung_redis_is_noticed_within_the_reply_timeout() {
    let redis = Redis::start();
    let node = Running::start(&redis.url(), fast());
    node.both_up();
    // SIGSTOP: the socket stays open, nothing answers.
    unsafe { libc::kill(redis.pid(), libc::SIGSTOP) };
    let started = Instant::now();
    let (ev, _) = node.expect("cmd down");
    let took = started.elapsed();
    unsafe { libc::kill(redis.pid(), libc::SIGCONT) };
    assert!(ev.contains("no reply within"), "{ev}");
    assert!(took < Duration::from_secs(8), "noticed after {took:?}");
    node.both_up();
}

#[test]
fn an_unreachable_redis_is_retried_until_it_appears() {
    let dir = std::env::temp_dir().join(format!("netloop-conn-late-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("redis.sock");
    let node = Running::start(&format!("unix:{}", path.display()), fast());
    node.expect("cmd down");
    node.expect("cmd down");
    let redis = Redis::start_at(&path);
    node.both_up();
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
