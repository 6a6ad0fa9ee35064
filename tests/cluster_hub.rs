//! The hub across nodes: two or three `netloop serve --hub --cluster` processes sharing a
//! private `redis-server`, with clients on different nodes. Every test starts its own Redis.
#![cfg(feature = "cluster")]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::redis::Redis;
use support::{LineClient, Netloop, WAIT};

/// The heartbeat the tests run with: nodes are declared gone after three of them.
const HEARTBEAT: &str = "200ms";

/// A hub node of the cluster on `redis`.
fn node(redis: &Redis, extra: &[&str]) -> (Netloop, SocketAddr) {
    let url = redis.url();
    let mut args = vec!["--cluster", url.as_str(), "--cluster-heartbeat", HEARTBEAT];
    args.extend_from_slice(extra);
    Netloop::serve_one("hub", &args)
}

/// Connects and registers as `name`.
fn named(addr: SocketAddr, name: &str) -> LineClient {
    let mut c = LineClient::connect(addr);
    sync(&mut c, name);
    c
}

/// Registers as `name`. The name is asked of Redis, so notices about other members may come
/// before the `synced` reply.
fn sync(c: &mut LineClient, name: &str) {
    c.send(format!(r#"{{"type":"sync","clientName":"{name}"}}"#));
    let sid = c.id.clone();
    let line = c.skip_until(100, not_presence);
    assert_eq!(line, format!(r#"{{"type":"synced","clientName":"{name}","sessionId":"{sid}"}}"#));
}

/// Lines other than `online`/`offline` notices, which may come at any time.
fn not_presence(line: &str) -> bool {
    !line.contains(r#""type":"online""#) && !line.contains(r#""type":"offline""#)
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// `list` from `c` until `check` holds for the reply (bounded): the directory is replicated,
/// so what another node did shows up within a heartbeat or so.
fn list_until(
    c: &mut LineClient,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        c.send(r#"{"type":"list"}"#);
        let line = c.skip_until(10_000, |l| l.starts_with(r#"{"type":"list""#));
        let v = json(&line);
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{}: never saw {what}; last list: {line}", c.id);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn names_in(list: &serde_json::Value) -> Vec<String> {
    list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["clientName"].as_str().map(String::from))
        .collect()
}

fn sees(c: &mut LineClient, name: &str) {
    list_until(c, &format!("{name} listed"), |v| names_in(v).iter().any(|n| n == name));
}

fn sees_no(c: &mut LineClient, name: &str) {
    list_until(c, &format!("{name} gone"), |v| !names_in(v).iter().any(|n| n == name));
}

#[test]
fn broadcasts_reach_every_other_node_once_in_the_order_sent() {
    let redis = Redis::start();
    let (_a, a) = node(&redis, &[]);
    let (_b, b) = node(&redis, &[]);
    let (_c, c) = node(&redis, &[]);
    let mut ann = named(a, "ann");
    let mut bob = named(b, "bob");
    let mut cat = named(c, "cat");
    let mut ann2 = named(a, "ann2");
    sees(&mut bob, "ann");
    sees(&mut cat, "ann");
    sees(&mut ann, "cat");
    for i in 0..300 {
        ann.send(format!(r#"{{"type":"broadcast","message":{i}}}"#));
    }
    for who in [&mut bob, &mut cat, &mut ann2] {
        for i in 0..300 {
            let line = who.skip_until(100, |l| l.starts_with(r#"{"type":"broadcast""#));
            assert_eq!(line, format!(r#"{{"type":"broadcast","from":"ann","message":{i}}}"#), "{}", who.id);
        }
    }
    // Exactly once: nothing more after a round trip that follows them.
    bob.send(r#"{"type":"broadcast","message":"end"}"#);
    let end = ann.skip_until(1000, |l| l.starts_with(r#"{"type":"broadcast""#));
    assert_eq!(end, r#"{"type":"broadcast","from":"bob","message":"end"}"#, "ann never hears her own");
    let end = cat.skip_until(1000, |l| l.starts_with(r#"{"type":"broadcast""#));
    assert_eq!(end, r#"{"type":"broadcast","from":"bob","message":"end"}"#, "a duplicate reached cat");
}

#[test]
fn room_broadcasts_reach_the_room_on_every_node_only() {
    let redis = Redis::start();
    let (_a, a) = node(&redis, &[]);
    let (_b, b) = node(&redis, &[]);
    let mut ann = named(a, "ann");
    let mut bob = named(b, "bob");
    let mut cat = named(b, "cat");
    bob.send(r#"{"type":"join","room":"ops"}"#);
    assert_eq!(bob.skip_until(100, not_presence), r#"{"type":"joined","room":"ops"}"#);
    list_until(&mut ann, "bob in ops", |v| {
        v["clients"].as_array().unwrap().iter().any(|c| c["clientName"] == "bob" && c["rooms"][0] == "ops")
    });
    ann.send(r#"{"type":"broadcast","room":"ops","message":"for ops"}"#);
    ann.send(r#"{"type":"broadcast","message":"for all"}"#);
    let got = bob.skip_until(100, |l| l.contains(r#""type":"broadcast""#));
    assert_eq!(got, r#"{"type":"broadcast","from":"ann","room":"ops","message":"for ops"}"#);
    let got = cat.skip_until(100, |l| l.contains(r#""type":"broadcast""#));
    assert_eq!(got, r#"{"type":"broadcast","from":"ann","message":"for all"}"#, "cat is not in ops");
}

#[test]
fn a_name_is_unique_across_the_cluster_and_free_again_when_its_holder_leaves() {
    let redis = Redis::start();
    let (_a, a) = node(&redis, &[]);
    let (_b, b) = node(&redis, &[]);
    let ann = named(a, "ann");
    let mut other = LineClient::connect(b);
    // Refused whether node b already knew of ann or asked Redis (her lease is there).
    other.send(r#"{"type":"sync","clientName":"ann"}"#);
    let line = other.skip_until(100, not_presence);
    assert!(line.starts_with(r#"{"type":"error","code":"name_taken""#), "{line}");
    assert_eq!(redis.command(&["EXISTS", "netloop:hub:name:ann"]), ":1", "the lease is in Redis");
    drop(ann);
    redis.wait_for(&["EXISTS", "netloop:hub:name:ann"], "ann's lease released", |r| r == ":0");
    let deadline = Instant::now() + WAIT;
    loop {
        other.send(r#"{"type":"sync","clientName":"ann"}"#);
        let line = other.skip_until(100, not_presence);
        if line.starts_with(r#"{"type":"synced""#) {
            break;
        }
        assert!(Instant::now() < deadline, "ann never free on node b: {line}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn info_reaches_a_name_on_another_node_and_an_unknown_name_is_refused_at_once() {
    let redis = Redis::start();
    let (_a, a) = node(&redis, &[]);
    let (_b, b) = node(&redis, &[]);
    let mut ann = named(a, "ann");
    let mut bob = named(b, "bob");
    sees(&mut ann, "bob");
    ann.send(r#"{"type":"info","to":"bob","message":{"x":[1, 2]}}"#);
    let got = bob.skip_until(100, not_presence);
    assert_eq!(got, r#"{"type":"info","from":"ann","message":{"x":[1, 2]}}"#);
    let started = Instant::now();
    ann.send(r#"{"type":"info","to":"nobody","message":1}"#);
    let line = ann.skip_until(100, |l| l.contains("error"));
    assert!(line.starts_with(r#"{"type":"error","code":"no_such_client""#), "{line}");
    assert!(started.elapsed() < Duration::from_secs(2), "answered from the directory, not a timeout");
}

#[test]
fn list_counts_and_presence_cover_the_cluster() {
    let redis = Redis::start();
    let (_a, a) = node(&redis, &[]);
    let (_b, b) = node(&redis, &[]);
    let mut bob = named(b, "bob");
    sees(&mut bob, "bob");
    let ann = named(a, "ann");
    let online = bob.skip_until(100, |l| l.contains(r#""type":"online""#));
    assert_eq!(json(&online)["clientName"], "ann");
    assert_eq!(json(&online)["sessionId"], ann.id.as_str());
    let list = list_until(&mut bob, "ann and bob", |v| v["count"] == 2);
    assert_eq!(names_in(&list).len(), 2);
    bob.send(r#"{"type":"stats"}"#);
    let stats = json(&bob.skip_until(100, |l| l.contains(r#""type":"stats""#)));
    assert_eq!(stats["hubClients"], 2);
    drop(ann);
    let offline = bob.skip_until(100, |l| l.contains(r#""type":"offline""#));
    assert_eq!(json(&offline)["clientName"], "ann");
    sees_no(&mut bob, "ann");
}

#[test]
fn a_node_killed_with_sigkill_is_offline_everywhere_and_its_names_free_within_the_dead_time() {
    let redis = Redis::start();
    let (a, a_addr) = node(&redis, &[]);
    let (_b, b) = node(&redis, &[]);
    let _ann = named(a_addr, "ann");
    let mut bob = named(b, "bob");
    sees(&mut bob, "ann");
    let killed = Instant::now();
    a.signal(9);
    let offline = bob.skip_until(100, |l| l.contains(r#""type":"offline""#));
    let took = killed.elapsed();
    assert_eq!(json(&offline)["clientName"], "ann");
    // Three heartbeats of 200 ms, plus a tick and scheduling noise.
    assert!(took < Duration::from_secs(5), "offline after {took:?}");
    let mut again = LineClient::connect(b);
    let deadline = Instant::now() + WAIT;
    loop {
        again.send(r#"{"type":"sync","clientName":"ann"}"#);
        if again.skip_until(100, not_presence).starts_with(r#"{"type":"synced""#) {
            break;
        }
        assert!(Instant::now() < deadline, "ann's name never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(killed.elapsed() < Duration::from_secs(5), "name freed after {:?}", killed.elapsed());
}

#[test]
fn a_stalled_node_is_treated_as_gone_and_rejoins_cleanly_when_it_resumes() {
    let redis = Redis::start();
    let (a, a_addr) = node(&redis, &[]);
    let (_b, b) = node(&redis, &[]);
    let mut ann = named(a_addr, "ann");
    let mut bob = named(b, "bob");
    sees(&mut bob, "ann");
    sees(&mut ann, "bob");
    a.signal(libc::SIGSTOP);
    let offline = bob.skip_until(100, |l| l.contains(r#""type":"offline""#));
    assert_eq!(json(&offline)["clientName"], "ann");
    sees_no(&mut bob, "ann");
    a.signal(libc::SIGCONT);
    // Back: bob hears ann is online again (and sees her listed), ann sees bob, and messages
    // flow both ways.
    let online = bob.skip_until(100, |l| l.contains(r#""type":"online""#));
    assert_eq!(json(&online)["clientName"], "ann");
    sees(&mut bob, "ann");
    sees(&mut ann, "bob");
    bob.send(r#"{"type":"broadcast","message":"welcome back"}"#);
    let got = ann.skip_until(1000, |l| l.contains("welcome back"));
    assert_eq!(got, r#"{"type":"broadcast","from":"bob","message":"welcome back"}"#);
    ann.send(r#"{"type":"info","to":"bob","message":"hi"}"#);
    let got = bob.skip_until(1000, |l| l.contains(r#""type":"info""#));
    assert_eq!(got, r#"{"type":"info","from":"ann","message":"hi"}"#);
}

#[test]
fn a_redis_restart_loses_only_cross_node_messages_of_the_outage_and_everything_comes_back() {
    let mut redis = Redis::start();
    let (mut a_node, a) = node(&redis, &[]);
    let (mut b_node, b) = node(&redis, &[]);
    let mut ann = named(a, "ann");
    let mut ann_local = named(a, "ann-local");
    let mut bob = named(b, "bob");
    sees(&mut bob, "ann");
    redis.stop();
    // Local delivery never stops.
    ann.send(r#"{"type":"broadcast","message":"during"}"#);
    let got = ann_local.skip_until(100, |l| l.contains("during"));
    assert_eq!(got, r#"{"type":"broadcast","from":"ann","message":"during"}"#);
    redis.restart();
    // Names re-asserted, presence re-announced, one subscription per node.
    redis.wait_for(&["EXISTS", "netloop:hub:name:ann"], "ann's lease re-asserted", |r| r == ":1");
    redis.wait_for(&["EXISTS", "netloop:hub:name:bob"], "bob's lease re-asserted", |r| r == ":1");
    sees(&mut bob, "ann");
    sees(&mut ann, "bob");
    let subs = redis
        .wait_for(&["PUBLISH", "netloop:hub:bus", "not a bus message"], "both nodes back", |r| r == ":2");
    assert_eq!(subs, ":2");
    ann.send(r#"{"type":"broadcast","message":"after"}"#);
    let got = bob.skip_until(1000, |l| l.contains(r#""type":"broadcast""#));
    assert_eq!(got, r#"{"type":"broadcast","from":"ann","message":"after"}"#, "'during' never crosses");
    // The loss is reported: the sender counts what it could not send, the receiver the gap
    // in the sender's sequence numbers (logged, and in the SIGUSR1 counters).
    b_node.signal(libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(300));
    drop((ann, ann_local, bob));
    for node in [&mut a_node, &mut b_node] {
        node.signal(15);
        assert!(node.wait_exit(WAIT).is_some_and(|st| st.success()));
    }
    let a_log = a_node.stderr();
    assert!(a_log.contains("cluster: Redis back after "), "{a_log}");
    let b_log = b_node.stderr();
    assert!(b_log.contains("cluster: missed "), "{b_log}");
    let missed = counted(&b_log, "missed=", " ");
    assert!(missed >= 1, "{b_log}");
}

/// The number logged between `before` (and anything up to the first ':' or digit run) and
/// `after`, on the first line holding both.
fn counted(log: &str, before: &str, after: &str) -> u64 {
    for line in log.lines() {
        let Some(at) = line.find(before) else { continue };
        let rest = &line[at + before.len()..];
        let Some(end) = rest.find(after) else { continue };
        let number: String = rest[..end].chars().rev().take_while(char::is_ascii_digit).collect();
        let number: String = number.chars().rev().collect();
        if let Ok(n) = number.parse() {
            return n;
        }
    }
    panic!("no {before:?}...{after:?} in the log:\n{log}");
}

#[test]
fn an_unreachable_redis_at_start_is_a_clear_error_unless_retry_is_asked() {
    let dir = std::env::temp_dir().join(format!("netloop-cluster-none-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("redis.sock");
    let url = format!("unix:{}", path.display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["serve", "--hub", "127.0.0.1:0", "--cluster", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach Redis") && err.contains("--cluster-retry"), "{err}");

    // With --cluster-retry it serves at once, alone, and joins when Redis appears.
    let (_a, a) =
        Netloop::serve_one("hub", &["--cluster", &url, "--cluster-retry", "--cluster-heartbeat", HEARTBEAT]);
    let mut ann = named(a, "ann");
    let redis = Redis::start_at(&path);
    let (_b, b) = node(&redis, &[]);
    let mut bob = named(b, "bob");
    sees(&mut bob, "ann");
    sees(&mut ann, "bob");
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_subscriber_cut_at_its_output_limit_reconnects_and_says_so() {
    let redis = Redis::start();
    let (mut slow, slow_addr) = node(&redis, &[]);
    let (_fast, fast) = node(&redis, &[]);
    let mut ann = named(fast, "ann");
    let mut bob = named(slow_addr, "bob");
    sees(&mut bob, "ann");
    // Tiny pubsub output limit, and the slow node stopped so it cannot read its subscription.
    redis.command(&["CONFIG", "SET", "client-output-buffer-limit", "pubsub 64kb 32kb 1"]);
    slow.signal(libc::SIGSTOP);
    let big = "x".repeat(16 * 1024);
    for _ in 0..32 {
        ann.send(format!(r#"{{"type":"broadcast","message":"{big}"}}"#));
    }
    // Redis drops the slow subscriber; the fast node's publish says so (one receiver left).
    redis.wait_for(&["PUBSUB", "NUMSUB", "netloop:hub:bus"], "the slow subscriber cut", |r| {
        r.starts_with('*')
    });
    let deadline = Instant::now() + WAIT;
    while redis.command(&["PUBLISH", "netloop:hub:bus", "probe"]) != ":1" {
        assert!(Instant::now() < deadline, "redis never cut the slow subscriber");
        std::thread::sleep(Duration::from_millis(20));
    }
    redis.command(&["CONFIG", "SET", "client-output-buffer-limit", "pubsub 32mb 8mb 60"]);
    slow.signal(libc::SIGCONT);
    // It reconnects, re-subscribes once and hears new messages.
    redis.wait_for(&["PUBLISH", "netloop:hub:bus", "probe"], "the slow node back", |r| r == ":2");
    ann.send(r#"{"type":"broadcast","message":"after the cut"}"#);
    bob.skip_until(10_000, |l| l.contains("after the cut"));
    slow.signal(15);
    slow.wait_exit(WAIT);
    let log = slow.stderr();
    assert!(log.contains("client-output-buffer-limit"), "{log}");
}

#[test]
fn a_node_that_shuts_down_says_goodbye_at_once_and_gives_its_names_back() {
    let redis = Redis::start();
    let (a, a_addr) = node(&redis, &[]);
    let (_b, b) = node(&redis, &[]);
    let ann = named(a_addr, "ann");
    let mut bob = named(b, "bob");
    sees(&mut bob, "ann");
    drop(ann);
    let offline = bob.skip_until(100, |l| l.contains(r#""type":"offline""#));
    assert_eq!(json(&offline)["clientName"], "ann");
    let _cat = named(a_addr, "cat");
    sees(&mut bob, "cat");
    let stopped = Instant::now();
    a.signal(15);
    let offline = bob.skip_until(100, |l| l.contains(r#""type":"offline""#));
    let took = stopped.elapsed();
    assert_eq!(json(&offline)["clientName"], "cat");
    // Released, not left to expire.
    redis.wait_for(&["EXISTS", "netloop:hub:name:cat"], "cat's lease released", |r| r == ":0");
    // Sooner than silence would have told (three 200 ms heartbeats): the node said goodbye.
    assert!(took < Duration::from_millis(600), "offline after {took:?}");
}

/// `netloop load fanout` with its senders on one node and its receivers on another (every
/// delivery crosses Redis), or with both on both (`--half-at`): none is lost, duplicated or
/// reordered.
fn load_across(protocol: &str, split: &str) {
    let redis = Redis::start();
    let url = redis.url();
    let flag = format!("--{protocol}");
    let args = [flag.as_str(), "127.0.0.1:0", "--cluster", url.as_str()];
    let a = Netloop::serve(&args, 1);
    let b = Netloop::serve(&args, 1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["load", "fanout", &b.addr(protocol), split, &a.addr(protocol)])
        .args(["--protocol", protocol, "-c", "20", "--senders", "2", "-r", "200", "-T", "1s", "-q", "--json"])
        .output()
        .unwrap();
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let f = &report["fanout"];
    assert_eq!(f["deliveries"], f["deliveries_expected"], "{report}");
    assert!(f["deliveries"].as_u64().unwrap() >= 20 * 150, "{report}");
    for key in ["lost", "undelivered", "duplicated", "reordered"] {
        assert_eq!(f[key], 0, "{key}: {report}");
    }
}

#[test]
fn load_fanout_with_senders_on_another_hub_node_delivers_everything() {
    load_across("hub", "--senders-at");
}

#[test]
fn load_fanout_with_receivers_and_senders_on_both_hub_nodes_delivers_everything() {
    load_across("hub", "--half-at");
}

#[test]
fn load_fanout_with_senders_on_another_chat_node_delivers_everything() {
    load_across("chat", "--senders-at");
}

#[test]
fn requests_sent_right_after_a_sync_are_handled_after_its_answer_as_on_one_node() {
    let redis = Redis::start();
    let (_a, a) = node(&redis, &[]);
    let (_b, b) = node(&redis, &[]);
    let mut bob = named(b, "bob");
    let mut ann = LineClient::connect(a);
    sees(&mut ann, "bob");
    // One write: the name is asked of Redis, and what follows waits for the answer.
    ann.send(concat!(
        r#"{"type":"sync","clientName":"ann"}"#,
        r#"{"type":"broadcast","message":1}"#,
        r#"{"type":"sync","clientName":"bob"}"#,
        r#"{"type":"broadcast","message":2}"#,
        r#"{"type":"sync","clientName":"ann2"}"#,
        r#"{"type":"info","to":"bob","message":3}"#,
    ));
    let sid = ann.id.clone();
    let replies: Vec<String> = (0..3).map(|_| ann.skip_until(100, not_presence)).collect();
    assert_eq!(replies[0], format!(r#"{{"type":"synced","clientName":"ann","sessionId":"{sid}"}}"#));
    assert!(replies[1].starts_with(r#"{"type":"error","code":"name_taken""#), "{}", replies[1]);
    assert_eq!(replies[2], format!(r#"{{"type":"synced","clientName":"ann2","sessionId":"{sid}"}}"#));
    let got: Vec<String> = (0..3).map(|_| bob.skip_until(100, not_presence)).collect();
    assert_eq!(
        got,
        [
            r#"{"type":"broadcast","from":"ann","message":1}"#,
            r#"{"type":"broadcast","from":"ann","message":2}"#,
            r#"{"type":"info","from":"ann2","message":3}"#,
        ]
    );
}

#[test]
fn a_storm_of_joins_on_one_node_reaches_the_others_coalesced_and_never_after_the_joiner_speaks() {
    let redis = Redis::start();
    let (_a, a) = node(&redis, &[]);
    let (_b, b) = node(&redis, &[]);
    let mut bob = named(b, "bob");
    let mut first = named(a, "first");
    sees(&mut bob, "first");
    sees(&mut first, "bob");
    // 40 joins at once on node a, then one of them speaks.
    let mut crowd: Vec<LineClient> = (0..40).map(|_| LineClient::connect(a)).collect();
    for (i, c) in crowd.iter_mut().enumerate() {
        c.send(format!(r#"{{"type":"sync","clientName":"c{i}"}}"#));
    }
    for c in crowd.iter_mut() {
        c.skip_until(1000, |l| l.contains(r#""type":"synced""#));
    }
    crowd[39].send(r#"{"type":"broadcast","message":"hi"}"#);
    // bob hears of c39 (one by one or in a summary) before hearing from it.
    let mut presence_lines = 0;
    let mut online_c39 = false;
    loop {
        let line = bob.line();
        if line.contains(r#""type":"broadcast""#) {
            assert_eq!(line, r#"{"type":"broadcast","from":"c39","message":"hi"}"#);
            break;
        }
        presence_lines += 1;
        online_c39 |= line.contains(r#""clientName":"c39""#) || line.contains(r#""type":"presence""#);
    }
    assert!(online_c39, "the broadcast came before any notice of c39");
    assert!(presence_lines < 20, "{presence_lines} notice lines for 40 joins: not coalesced");
    list_until(&mut bob, "all 42", |v| v["count"] == 42);
}

#[test]
fn a_password_in_the_url_logs_in_and_a_wrong_one_is_a_clear_error_at_start() {
    let redis = Redis::start_tcp(&["--requirepass", "s3cret"]);
    let url = redis.url();
    let wrong = url.replace("s3cret", "nope");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["serve", "--hub", "127.0.0.1:0", "--cluster", &wrong])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused") && (err.contains("WRONGPASS") || err.contains("invalid")), "{err}");
    assert!(!err.contains("nope"), "the password stays out of the message: {err}");
    let (_a, a) = node(&redis, &[]);
    let (_b, b) = node(&redis, &[]);
    let mut ann = named(a, "ann");
    let mut bob = named(b, "bob");
    sees(&mut ann, "bob");
    bob.send(r#"{"type":"info","to":"ann","message":"over tcp, with a password"}"#);
    let got = ann.skip_until(100, |l| l.contains(r#""type":"info""#));
    assert_eq!(got, r#"{"type":"info","from":"bob","message":"over tcp, with a password"}"#);
}

#[test]
fn a_hung_redis_never_hangs_the_node() {
    let redis = Redis::start();
    let (_a, a) = node(&redis, &[]);
    let mut ann = named(a, "ann");
    let mut bob = named(a, "bob");
    // Redis stops answering but keeps its connections open.
    unsafe { libc::kill(redis.pid(), libc::SIGSTOP) };
    ann.send(r#"{"type":"broadcast","message":"still here"}"#);
    assert_eq!(
        bob.skip_until(100, not_presence),
        r#"{"type":"broadcast","from":"ann","message":"still here"}"#
    );
    // A new name waits for Redis at most the reply timeout (2 s), then is granted for now.
    let started = Instant::now();
    let mut cat = LineClient::connect(a);
    sync(&mut cat, "cat");
    let took = started.elapsed();
    unsafe { libc::kill(redis.pid(), libc::SIGCONT) };
    assert!(took < Duration::from_secs(6), "sync took {took:?}");
    // Back: cat's name is asserted in Redis.
    redis.wait_for(&["EXISTS", "netloop:hub:name:cat"], "cat's lease asserted", |r| r == ":1");
}

#[test]
fn with_workers_every_worker_is_a_node_and_the_hub_is_one_community() {
    let redis = Redis::start();
    let url = redis.url();
    let mut hub = Netloop::serve(
        &["--hub", "127.0.0.1:0", "--workers", "2", "--cluster", &url, "--cluster-heartbeat", HEARTBEAT],
        1,
    );
    let addr = hub.tcp("hub");
    // Two workers, two nodes: each subscribed once.
    redis.wait_for(&["PUBLISH", "netloop:hub:bus", "probe"], "both workers subscribed", |r| r == ":2");
    let mut clients: Vec<LineClient> = (0..8).map(|i| named(addr, &format!("c{i}"))).collect();
    for c in clients.iter_mut() {
        list_until(c, "all eight", |v| v["count"] == 8);
    }
    clients[0].send(r#"{"type":"broadcast","message":"to everyone"}"#);
    for c in clients.iter_mut().skip(1) {
        assert_eq!(
            c.skip_until(100, not_presence),
            r#"{"type":"broadcast","from":"c0","message":"to everyone"}"#
        );
    }
    drop(clients);
    hub.signal(15);
    assert!(hub.wait_exit(WAIT).is_some_and(|st| st.success()));
}

#[test]
fn with_workers_chat_and_hub_without_cluster_are_still_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["serve", "--hub", "127.0.0.1:0", "--workers", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cluster URL"), "{err}");
}
