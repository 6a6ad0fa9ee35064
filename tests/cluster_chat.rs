//! Chat across nodes: two `netloop serve --chat --cluster` processes sharing a private
//! `redis-server`; lines, nicks, `/who` and the `online now` count span both.
#![cfg(feature = "cluster")]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::redis::Redis;
use support::{LineClient, Netloop, WAIT};

fn node(redis: &Redis) -> (Netloop, SocketAddr) {
    Netloop::serve_one("chat", &["--cluster", &redis.url(), "--cluster-heartbeat", "200ms"])
}

/// Connects and waits for the welcome line; returns it too.
fn join(addr: SocketAddr) -> (LineClient, String) {
    let mut c = LineClient::connect(addr);
    let welcome = c.line();
    assert!(welcome.starts_with("* welcome "), "{welcome}");
    (c, welcome)
}

/// `/who` until its reply satisfies `check` (bounded).
fn who_until(c: &mut LineClient, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        c.send("/who\n");
        let line = c.skip_until(1000, |l| l.starts_with("* online now: "));
        if check(&line) {
            return line;
        }
        assert!(Instant::now() < deadline, "{}: never saw {what}; last: {line}", c.id);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn lines_nicks_who_and_the_online_count_span_the_cluster() {
    let redis = Redis::start();
    let (_a, a) = node(&redis);
    let (_b, b) = node(&redis);
    let (mut ann, _) = join(a);
    ann.send("/nick ann\n");
    ann.expect("* you are now ann");
    let (mut bob, _) = join(b);
    // bob's node knows ann: /who lists her and counts two.
    let who = who_until(&mut bob, "ann", |l| l.contains("ann"));
    assert!(who.starts_with("* online now: 2: "), "{who}");
    // A newcomer's welcome counts the cluster.
    let (_cat, welcome) = join(b);
    assert!(welcome.ends_with("online now: 3"), "{welcome}");
    // Lines cross, in order, once.
    for i in 0..50 {
        ann.send(format!("hello {i}\n"));
    }
    for i in 0..50 {
        let line = bob.skip_until(100, |l| l.starts_with("ann: "));
        assert_eq!(line, format!("ann: hello {i}"));
    }
    bob.send("back at you\n");
    let line = ann.skip_until(100, |l| l.contains("back at you"));
    assert_eq!(line, format!("{}: back at you", bob.id));
    // A nick is unique across the cluster.
    bob.send("/nick ann\n");
    let line = bob.skip_until(100, |l| l.starts_with("* error") || l.starts_with("* you are now"));
    assert_eq!(line, "* error: name ann is taken");
    // ann leaves: bob's count drops.
    drop(ann);
    who_until(&mut bob, "ann gone", |l| !l.contains("ann") && l.starts_with("* online now: 2: "));
}

#[test]
fn lines_sent_right_after_a_nick_come_from_the_new_nick_as_on_one_node() {
    let redis = Redis::start();
    let (_a, a) = node(&redis);
    let (_b, b) = node(&redis);
    let (mut bob, _) = join(b);
    let (mut ann, _) = join(a);
    who_until(&mut bob, "two members", |l| l.starts_with("* online now: 2: "));
    // One write: the nick is asked of Redis, and the lines after it wait for the answer.
    ann.send("/nick ann\nhello\n/nick ann2\nagain\n");
    ann.expect("* you are now ann");
    ann.expect("* you are now ann2");
    assert_eq!(bob.skip_until(100, |l| l.contains("hello")), "ann: hello");
    assert_eq!(bob.skip_until(100, |l| l.contains("again")), "ann2: again");
}

#[test]
fn joins_and_leaves_are_told_on_every_node() {
    let redis = Redis::start();
    let (_a, a) = node(&redis);
    let (_b, b) = node(&redis);
    let (mut ann, _) = join(a);
    let (mut bob, _) = join(b);
    let joined = ann.skip_until(100, |l| l.starts_with("* ") && l.contains("joined"));
    assert_eq!(joined, format!("* {} joined, online now: 2", bob.id));
    bob.send("/nick bob\n");
    bob.expect("* you are now bob");
    who_until(&mut ann, "bob's nick", |l| l.contains("bob"));
    drop(bob);
    let left = ann.skip_until(100, |l| l.starts_with("* ") && l.contains("left"));
    assert_eq!(left, "* bob left, online now: 1");
}

#[test]
fn a_node_that_dies_or_stalls_is_told_as_left_and_back_on_the_others() {
    let redis = Redis::start();
    let (a, a_addr) = node(&redis);
    let (_b, b) = node(&redis);
    let (mut ann, _) = join(a_addr);
    let (mut bob, _) = join(b);
    ann.send("/nick ann\n");
    ann.skip_until(100, |l| l == "* you are now ann");
    who_until(&mut bob, "ann's nick", |l| l.contains("ann"));
    // Stalled past the heartbeat: the other node's room hears ann left, and that she is back
    // once her node resumes.
    a.signal(libc::SIGSTOP);
    let left = bob.skip_until(100, |l| l.starts_with("* ann left"));
    assert_eq!(left, "* ann left, online now: 1");
    who_until(&mut bob, "ann gone", |l| !l.contains("ann"));
    a.signal(libc::SIGCONT);
    let back = bob.skip_until(100, |l| l.starts_with("* ann joined"));
    assert_eq!(back, "* ann joined, online now: 2");
    // Killed: the same, within the dead time.
    let killed = Instant::now();
    a.signal(libc::SIGKILL);
    let left = bob.skip_until(100, |l| l.starts_with("* ann left"));
    assert_eq!(left, "* ann left, online now: 1");
    assert!(killed.elapsed() < Duration::from_secs(5), "told after {:?}", killed.elapsed());
    who_until(&mut bob, "ann gone", |l| !l.contains("ann"));
}
