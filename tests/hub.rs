//! Black-box tests of `netloop serve --hub`: every row and rule of the hub contract over real
//! TCP sockets, the Node client check over TCP and Unix sockets (with and without a token),
//! hostile input, and slow consumers.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{assert_node_ok, connect, node, LineClient, Netloop, WAIT};

/// One hub client; `id` is its session id.
type Client = LineClient;

impl Client {
    /// Connects from another loopback address (`127.0.0.N`), a source of its own to the server.
    fn connect_from(addr: SocketAddr, source: &str) -> Client {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        let local: SocketAddr = format!("{source}:0").parse().expect("source address");
        socket.bind(&local.into()).expect("bind the source address");
        socket.connect_timeout(&addr.into(), WAIT).expect("connect");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client::over(stream)
    }

    /// Connects and registers as `name`, checking the `synced` reply.
    fn named(addr: SocketAddr, name: &str) -> Client {
        let mut c = Client::connect(addr);
        c.sync(name);
        c
    }

    fn sync(&mut self, name: &str) {
        self.send(format!(r#"{{"type":"sync","clientName":"{name}"}}"#));
        let sid = self.id.clone();
        self.expect(&format!(r#"{{"type":"synced","clientName":"{name}","sessionId":"{sid}"}}"#));
    }

    /// The next line is an error with this code: exactly the keys type, code, reason.
    fn expect_error(&mut self, code: &str) {
        self.expect_error_saying(code, "");
    }

    /// The next line is an error with this code whose reason contains `words`.
    fn expect_error_saying(&mut self, code: &str, words: &str) {
        let line = self.line();
        let prefix = format!(r#"{{"type":"error","code":"{code}","reason":""#);
        assert!(line.starts_with(&prefix) && line.ends_with("\"}"), "{}: want {code}, got {line}", self.id);
        let v: serde_json::Value = serde_json::from_str(&line).expect("error is JSON");
        assert_eq!(v.as_object().map(|o| o.len()), Some(3), "{line}");
        let reason = v["reason"].as_str().expect("reason");
        assert!(reason.contains(words), "{}: want a reason saying {words:?}, got {line}", self.id);
    }

    /// Sends `list` and returns the reply: a round trip proving everything sent before it
    /// was handled.
    fn list(&mut self) -> String {
        self.send(r#"{"type":"list"}"#);
        self.line()
    }
}

/// The `list` reply for `(name, session id, rooms)` entries.
fn list_of(clients: &[(Option<&str>, &str, &[&str])]) -> String {
    let entries: Vec<String> = clients
        .iter()
        .map(|(name, sid, rooms)| {
            let name = name.map_or("null".to_string(), |n| format!("\"{n}\""));
            let rooms: Vec<String> = rooms.iter().map(|r| format!("\"{r}\"")).collect();
            format!(r#"{{"clientName":{name},"sessionId":"{sid}","rooms":[{}]}}"#, rooms.join(","))
        })
        .collect();
    format!(r#"{{"type":"list","count":{},"clients":[{}]}}"#, clients.len(), entries.join(","))
}

#[test]
fn node_pair_over_tcp() {
    let (server, _) = Netloop::serve_one("hub", &[]);
    assert_node_ok(&node("hub_pair.js", &[&server.addr("hub")]));
}

#[test]
fn node_pair_over_unix() {
    let (_server, addr) = Netloop::serve_unix("hub");
    let out = node("hub_pair.js", &[&addr]);
    assert_node_ok(&out);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains(r#""client1":"unix:1","client2":"unix:2""#), "{summary}");
}

#[test]
fn node_pair_with_token() {
    let (server, _) = Netloop::serve_one("hub", &["--hub-token", "s3 cr\"et"]);
    assert_node_ok(&node("hub_pair.js", &[&server.addr("hub"), "--token", "s3 cr\"et"]));
}

#[test]
fn sync_registers_renames_and_announces() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    // The optional message is accepted and ignored.
    a.send(r#"{"type":"sync","clientName":"alice","message":{"hello":[1,2]}}"#);
    a.expect(&format!(r#"{{"type":"synced","clientName":"alice","sessionId":"{}"}}"#, a.id));
    b.expect(&format!(r#"{{"type":"online","clientName":"alice","sessionId":"{}"}}"#, a.id));
    b.sync("bob");
    a.expect(&format!(r#"{{"type":"online","clientName":"bob","sessionId":"{}"}}"#, b.id));
    // A rename carries the previous name; re-syncing the same name does not.
    a.sync("alice2");
    b.expect(&format!(
        r#"{{"type":"online","clientName":"alice2","sessionId":"{}","previous":"alice"}}"#,
        a.id
    ));
    a.sync("alice2");
    b.expect(&format!(r#"{{"type":"online","clientName":"alice2","sessionId":"{}"}}"#, a.id));
    // The old name is free again.
    let mut c = Client::named(addr, "alice");
    a.expect(&format!(r#"{{"type":"online","clientName":"alice","sessionId":"{}"}}"#, c.id));
    // Escapes in the name are decoded, then written back as JSON.stringify would.
    c.send(r#"{"type":"sync","clientName":"\u00e9t\u00e9 \"q\" \\"}"#);
    c.expect(&format!(r#"{{"type":"synced","clientName":"été \"q\" \\","sessionId":"{}"}}"#, c.id));
    let want = format!(
        r#"{{"type":"online","clientName":"été \"q\" \\","sessionId":"{}","previous":"alice"}}"#,
        c.id
    );
    a.expect(&want);
    b.line();
    b.expect(&want);
}

#[test]
fn sync_needs_a_short_string_name() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::connect(addr);
    let sid = a.id.clone();
    for bad in [
        r#"{"type":"sync"}"#.to_string(),
        r#"{"type":"sync","clientName":1}"#.to_string(),
        r#"{"type":"sync","clientName":null}"#.to_string(),
        r#"{"type":"sync","clientName":["a"]}"#.to_string(),
        r#"{"type":"sync","clientName":""}"#.to_string(),
        format!(r#"{{"type":"sync","clientName":"{}"}}"#, "n".repeat(65)),
        format!(r#"{{"type":"sync","clientName":"{}"}}"#, "é".repeat(33)),
    ] {
        a.send(&bad);
        a.expect_error("bad_message");
    }
    a.sync(&"n".repeat(64));
    a.sync(&"é".repeat(32));
    assert_eq!(a.list(), list_of(&[(Some("é".repeat(32).as_str()), &sid, &[])]));
}

#[test]
fn name_taken_keeps_the_connection_and_frees_on_close() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::named(addr, "taken");
    let mut b = Client::connect(addr);
    b.send(r#"{"type":"sync","clientName":"taken"}"#);
    b.expect_error("name_taken");
    b.sync("other");
    a.expect(&format!(r#"{{"type":"online","clientName":"other","sessionId":"{}"}}"#, b.id));
    b.send(r#"{"type":"sync","clientName":"taken"}"#);
    b.expect_error("name_taken");
    let a_sid = a.id.clone();
    drop(a);
    b.expect(&format!(r#"{{"type":"offline","clientName":"taken","sessionId":"{a_sid}"}}"#));
    b.send(r#"{"type":"sync","clientName":"taken"}"#);
    b.expect(&format!(r#"{{"type":"synced","clientName":"taken","sessionId":"{}"}}"#, b.id));
}

#[test]
fn info_to_the_server_or_to_a_named_client() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::named(addr, "a");
    let mut b = Client::named(addr, "b");
    a.line(); // b online
    let mut anon = Client::connect(addr);

    // To the server: logged, no reply; the next line is the list reply.
    a.send(r#"{"type":"info","message":"for the server"}"#);
    assert_eq!(
        a.list(),
        list_of(&[
            (Some("a"), &a.id.clone(), &[]),
            (Some("b"), &b.id.clone(), &[]),
            (None, &anon.id.clone(), &[])
        ])
    );
    // To a name: from is the sender's name, or its session id before sync; to oneself works.
    a.send(r#"{"type":"info","to":"b","message":{"n":1}}"#);
    b.expect(r#"{"type":"info","from":"a","message":{"n":1}}"#);
    anon.send(r#"{"type":"info","to":"b","message":[true, null]}"#);
    b.expect(&format!(r#"{{"type":"info","from":"{}","message":[true, null]}}"#, anon.id));
    b.send(r#"{"type":"info","to":"b","message":"self"}"#);
    b.expect(r#"{"type":"info","from":"b","message":"self"}"#);
    // Errors, each leaving the connection usable.
    a.send(r#"{"type":"info","to":"nobody","message":1}"#);
    a.expect_error("no_such_client");
    a.send(r#"{"type":"info","to":7,"message":1}"#);
    a.expect_error("bad_message");
    a.send(r#"{"type":"info","to":"b"}"#);
    a.expect_error("bad_message");
    a.send(r#"{"type":"info"}"#);
    a.expect_error("bad_message");
    // An explicit null message is a message.
    a.send(r#"{"type":"info","to":"b","message":null}"#);
    b.expect(r#"{"type":"info","from":"a","message":null}"#);
}

#[test]
fn info_to_the_server_is_logged_at_the_default_level_within_a_rate_limit() {
    let (mut server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::named(addr, "a");
    a.send(r#"{"type":"info","message":"hello server"}"#);
    // A flood: at most 20 a second reach the log; the count of the rest follows.
    for i in 0..60 {
        a.send(format!(r#"{{"type":"info","message":"flood {i}"}}"#));
    }
    a.list(); // all handled
    std::thread::sleep(Duration::from_millis(1100));
    a.send(r#"{"type":"info","message":"after the flood"}"#);
    a.list();
    server.kill();
    let log = server.stderr();
    assert!(log.contains(r#"INFO  netloop::services::hub] info from a: "hello server""#), "{log}");
    let logged = log.matches("info from a: \"flood").count();
    assert!((19..=40).contains(&logged), "{logged} flood lines logged:\n{log}");
    assert!(log.contains("info messages not logged (over 20 a second)"), "{log}");
    assert!(log.contains(r#"info from a: "after the flood""#), "{log}");
}

#[test]
fn a_half_closed_client_departs_unless_half_open_is_allowed() {
    for allow in [false, true] {
        let (_server, addr) = Netloop::serve_one("hub", if allow { &["--allow-half-open"] } else { &[] });
        let mut a = Client::named(addr, "a");
        let mut b = Client::named(addr, "b");
        a.line(); // b online
        b.writer.shutdown(std::net::Shutdown::Write).unwrap();
        if allow {
            // Still registered, and still receiving.
            assert!(a.list().starts_with(r#"{"type":"list","count":2,"#));
            a.send(r#"{"type":"info","to":"b","message":"still there?"}"#);
            b.expect(r#"{"type":"info","from":"a","message":"still there?"}"#);
        } else {
            let offline = a.line();
            assert!(offline.starts_with(r#"{"type":"offline","clientName":"b""#), "{offline}");
            b.expect_eof();
        }
    }
}

#[test]
fn broadcast_reaches_every_other_client_byte_exact() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::named(addr, "a");
    let mut b = Client::named(addr, "b");
    a.line();
    let mut anon = Client::connect(addr);
    // The message is relayed exactly as sent: spacing, number forms and escapes kept.
    let message = r#"{"x" : [1.50, 1e3, "\u0041\n", {}], "y":null}"#;
    a.send(format!(r#"{{"type":"broadcast","message":{message}}}"#));
    let want = format!(r#"{{"type":"broadcast","from":"a","message":{message}}}"#);
    b.expect(&want);
    anon.expect(&want);
    anon.send(r#"{"type":"broadcast","message":"from anon"}"#);
    let want = format!(r#"{{"type":"broadcast","from":"{}","message":"from anon"}}"#, anon.id);
    a.expect(&want);
    b.expect(&want);
    // Not to the sender: its next line is the list reply.
    assert!(a.list().starts_with(r#"{"type":"list","count":3,"#));
    a.send(r#"{"type":"broadcast"}"#);
    a.expect_error("bad_message");
}

#[test]
fn rooms() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::named(addr, "a");
    let mut b = Client::named(addr, "b");
    let mut c = Client::named(addr, "c");
    a.line();
    a.line();
    b.line();
    let (sa, sb, sc) = (a.id.clone(), b.id.clone(), c.id.clone());

    let join = |client: &mut Client, room: &str| {
        client.send(format!(r#"{{"type":"join","room":"{room}"}}"#));
        client.expect(&format!(r#"{{"type":"joined","room":"{room}"}}"#));
    };
    join(&mut a, "zeta");
    join(&mut a, "alpha");
    join(&mut a, "Beta");
    join(&mut b, "alpha");
    join(&mut b, "\u{e9}");
    // Joining twice is harmless.
    b.send(r#"{"type":"join","room":"alpha"}"#);
    b.expect(r#"{"type":"joined","room":"alpha"}"#);
    // Rooms listed sorted by bytes.
    let full = list_of(&[
        (Some("a"), &sa, &["Beta", "alpha", "zeta"]),
        (Some("b"), &sb, &["alpha", "é"]),
        (Some("c"), &sc, &[]),
    ]);
    assert_eq!(c.list(), full);

    // A room broadcast reaches the room's other members only; the sender need not be in it.
    a.send(r#"{"type":"broadcast","room":"alpha","message":1}"#);
    b.expect(r#"{"type":"broadcast","from":"a","room":"alpha","message":1}"#);
    c.send(r#"{"type":"broadcast","room":"alpha","message":{"k":"v"}}"#);
    a.expect(r#"{"type":"broadcast","from":"c","room":"alpha","message":{"k":"v"}}"#);
    b.expect(r#"{"type":"broadcast","from":"c","room":"alpha","message":{"k":"v"}}"#);
    c.send(r#"{"type":"broadcast","room":"empty","message":2}"#);
    assert_eq!(c.list(), full, "c got nothing from its own broadcasts");

    b.send(r#"{"type":"leave","room":"alpha"}"#);
    b.expect(r#"{"type":"left","room":"alpha"}"#);
    b.send(r#"{"type":"leave","room":"never-joined"}"#);
    b.expect(r#"{"type":"left","room":"never-joined"}"#);
    c.send(r#"{"type":"broadcast","room":"alpha","message":3}"#);
    a.expect(r#"{"type":"broadcast","from":"c","room":"alpha","message":3}"#);
    assert_eq!(
        b.list(),
        list_of(&[
            (Some("a"), &sa, &["Beta", "alpha", "zeta"]),
            (Some("b"), &sb, &["é"]),
            (Some("c"), &sc, &[])
        ])
    );

    for bad in [
        r#"{"type":"join"}"#.to_string(),
        r#"{"type":"join","room":1}"#.to_string(),
        r#"{"type":"leave","room":""}"#.to_string(),
        format!(r#"{{"type":"join","room":"{}"}}"#, "r".repeat(65)),
        r#"{"type":"broadcast","room":null,"message":1}"#.to_string(),
        r#"{"type":"broadcast","room":"","message":1}"#.to_string(),
    ] {
        c.send(&bad);
        c.expect_error("bad_message");
    }
    c.send(format!(r#"{{"type":"join","room":"{}"}}"#, "r".repeat(64)));
    c.expect(&format!(r#"{{"type":"joined","room":"{}"}}"#, "r".repeat(64)));

    // A closed client leaves its rooms.
    drop(a);
    b.expect(&format!(r#"{{"type":"offline","clientName":"a","sessionId":"{sa}"}}"#));
    c.line();
    c.send(r#"{"type":"broadcast","room":"zeta","message":4}"#);
    let r64 = "r".repeat(64);
    assert_eq!(c.list(), list_of(&[(Some("b"), &sb, &["é"]), (Some("c"), &sc, &[&r64])]));
}

#[test]
fn list_is_in_connection_order_with_null_names() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    let c = Client::connect(addr);
    b.sync("bee");
    a.line(); // bee online
    assert_eq!(
        a.list(),
        list_of(&[(None, &a.id.clone(), &[]), (Some("bee"), &b.id.clone(), &[]), (None, &c.id, &[])])
    );
}

#[test]
fn malformed_frames_get_errors_and_the_connection_stays_usable() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::connect(addr);
    let sid = a.id.clone();
    let alone = list_of(&[(None, &sid, &[])]);
    let cases: &[(&[u8], &str)] = &[
        (br#"{"type":}"#, "bad_json"),
        (br#"{"type":"list",}"#, "bad_json"),
        (b"[1,}", "bad_json"),
        (b"{\"type\":\"list\"\n", "bad_json"),
        (b"{\"type\":\"\xff\"}", "bad_json"),
        (b"{\"type\":\"a\x01\"}", "bad_json"),
        (b"[1,2]", "bad_message"),
        (b"[]", "bad_message"),
        (b"{}", "bad_message"),
        (br#"{"type":1}"#, "bad_message"),
        (br#"{"type":null}"#, "bad_message"),
        (br#"{"message":"x"}"#, "bad_message"),
        (br#"{"type":"frobnicate"}"#, "unknown_type"),
        (br#"{"type":"SYNC","clientName":"x"}"#, "unknown_type"),
    ];
    for (frame, code) in cases {
        a.send(frame);
        a.expect_error(code);
        assert_eq!(a.list(), alone, "after {}", String::from_utf8_lossy(frame));
    }
    // Bytes that cannot start a frame: bad_json (how many errors one junk line earns is the
    // decoder's business; the contract only says decoding resumes after the newline).
    // A newline cutting a value leaves the rest of that line as junk too.
    for junk in
        [&b"hello world\n"[..], b"}\n", b"x{\"type\":\"list\"}\n", b"\xff\xfe\n", b"{\"type\":\"li\nst\"}\n"]
    {
        a.send(junk);
        a.send(br#"{"type":"list"}"#);
        a.expect_error("bad_json");
        let next = a.skip_until(10, |l| !l.contains(r#""code":"bad_json""#));
        assert_eq!(next, alone, "after {}", String::from_utf8_lossy(junk));
    }
    // The newline-cut value and the frame after it, in one write.
    a.send("{\"type\":\n{\"type\":\"list\"}");
    a.expect_error("bad_json");
    a.expect(&alone);
}

#[test]
fn coalesced_and_split_frames() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::connect(addr);
    let sid = a.id.clone();
    // Two frames in one write, no separator.
    a.send(r#"{"type":"sync","clientName":"one"}{"type":"list"}"#);
    a.expect(&format!(r#"{{"type":"synced","clientName":"one","sessionId":"{sid}"}}"#));
    a.expect(&list_of(&[(Some("one"), &sid, &[])]));
    // Whitespace and newlines between frames, and inside one.
    a.send(" \r\n\t{ \"type\" : \"join\",\r\"room\":\"r\" }\n\n{\"type\":\"list\"}\r\n");
    a.expect(r#"{"type":"joined","room":"r"}"#);
    a.expect(&list_of(&[(Some("one"), &sid, &["r"])]));
    // One byte per write, braces inside strings included.
    let frame = r#"{"type":"sync","clientName":"t}w{o\"]"}"#;
    for byte in frame.bytes() {
        a.send([byte]);
        std::thread::sleep(Duration::from_millis(1));
    }
    a.expect(&format!(r#"{{"type":"synced","clientName":"t}}w{{o\"]","sessionId":"{sid}"}}"#));
}

#[test]
fn offline_on_close_for_named_clients_only() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut watcher = Client::named(addr, "watcher");
    let mut named = Client::named(addr, "leaver");
    watcher.line();
    let anon = Client::connect(addr);
    let anon_sid = anon.id.clone();
    drop(anon);
    // A FIN: the server closes too and the others hear "offline".
    named.writer.shutdown(Shutdown::Write).expect("shutdown");
    named.expect_eof();
    watcher.expect(&format!(r#"{{"type":"offline","clientName":"leaver","sessionId":"{}"}}"#, named.id));
    // The anonymous one left silently.
    let list = watcher.list();
    assert!(!list.contains(&anon_sid), "{list}");
    assert_eq!(list, list_of(&[(Some("watcher"), &watcher.id.clone(), &[])]));
}

#[test]
fn token_is_required_first_and_pending_clients_are_invisible() {
    let (_server, addr) = Netloop::serve_one("hub", &["--hub-token", "open sesame"]);
    let sync = |name: &str, extra: &str| format!(r#"{{"type":"sync","clientName":"{name}"{extra}}}"#);
    let rejected: Vec<Vec<u8>> = vec![
        sync("x", "").into_bytes(),
        sync("x", r#","token":"wrong""#).into_bytes(),
        sync("x", r#","token":"open sesam""#).into_bytes(),
        sync("x", r#","token":1"#).into_bytes(),
        br#"{"type":"list","token":"open sesame"}"#.to_vec(),
        b"garbage\n".to_vec(),
        b"[\"open sesame\"]".to_vec(),
    ];
    // Each from a source of its own: one source failing this often would be throttled.
    for (i, first) in rejected.into_iter().enumerate() {
        let mut c = Client::connect_from(addr, &format!("127.0.0.{}", 10 + i));
        c.send(&first);
        c.expect_error("unauthorized");
        c.expect_eof();
    }
    let mut a = Client::connect(addr);
    a.send(sync("a", r#","token":"open sesame""#));
    a.expect(&format!(r#"{{"type":"synced","clientName":"a","sessionId":"{}"}}"#, a.id));
    // Pending: connected, not yet authenticated. Not listed, not broadcast to.
    let mut pending = Client::connect(addr);
    assert_eq!(a.list(), list_of(&[(Some("a"), &a.id.clone(), &[])]));
    a.send(r#"{"type":"broadcast","message":"not for pending"}"#);
    a.list();
    // Escaped token text is compared after decoding; later frames need no token.
    pending.send(r#"{"type":"sync","clientName":"p","token":"open\u0020sesame"}{"type":"list"}"#);
    pending.expect(&format!(r#"{{"type":"synced","clientName":"p","sessionId":"{}"}}"#, pending.id));
    pending.expect(&list_of(&[(Some("a"), &a.id.clone(), &[]), (Some("p"), &pending.id.clone(), &[])]));
    a.expect(&format!(r#"{{"type":"online","clientName":"p","sessionId":"{}"}}"#, pending.id));
    // An authenticated sync with a bad name is just bad_message (the connection stays).
    let mut d = Client::connect(addr);
    d.send(r#"{"type":"sync","clientName":"","token":"open sesame"}"#);
    d.expect_error("bad_message");
    d.sync("d");
}

#[test]
fn frame_limit_is_exact_and_closes_the_offender() {
    let (_server, addr) = Netloop::serve_one("hub", &["--max-frame", "64"]);
    let mut a = Client::named(addr, "a");
    let frame = |len: usize| {
        let head = r#"{"type":"info","message":""#;
        format!("{head}{}\"}}", "x".repeat(len - head.len() - 2))
    };
    assert_eq!(frame(64).len(), 64);
    a.send(frame(64));
    a.send(frame(65));
    a.expect_error("frame_too_large");
    a.expect_eof();
    // A junk run without a newline is bounded the same way.
    let mut b = Client::connect(addr);
    b.send("x".repeat(65));
    b.skip_until(2, |l| l.contains(r#""code":"frame_too_large""#));
    b.expect_eof();
}

#[test]
fn default_frame_limit_is_1_mib() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::named(addr, "a");
    let mut b = Client::named(addr, "b");
    a.line();
    let head = r#"{"type":"info","to":"b","message":""#;
    let pad = |len: usize| "x".repeat(len - head.len() - 2);
    a.send(format!("{head}{}\"}}", pad(1 << 20)));
    let got = b.line();
    assert_eq!(got.len(), r#"{"type":"info","from":"a","message":""#.len() + pad(1 << 20).len() + 2);
    a.send(format!("{head}{}\"}}", pad((1 << 20) + 1)));
    a.expect_error("frame_too_large");
    a.expect_eof();
}

#[test]
fn binary_junk_never_hurts_the_server_or_the_others() {
    let (_server, addr) = Netloop::serve_one("hub", &["--max-frame", "64k"]);
    let mut watcher = Client::named(addr, "watcher");
    let mut junk = Client::connect(addr);
    // A few hundred KB of random bytes: many bad frames, each answered, none fatal.
    junk.send(support::pattern(300 * 1024, 11));
    junk.send("\n{\"type\":\"list\"}");
    let seen = junk.skip_until(100_000, |l| l.starts_with(r#"{"type":"list""#));
    assert!(seen.contains(r#""clientName":"watcher""#), "{seen}");
    // Random bytes without a newline: one over-long junk run, then the server hangs up.
    let mut flood = Client::connect(addr);
    let mut bytes = support::pattern(300 * 1024, 13);
    bytes.retain(|&b| b != b'\n');
    // The server may close while we are still writing; that is the point.
    let _ = flood.writer.write_all(&bytes);
    flood.skip_until(10, |l| l.contains(r#""code":"frame_too_large""#));
    // Everyone else carries on.
    let mut fresh = Client::named(addr, "fresh");
    watcher.expect(&format!(r#"{{"type":"online","clientName":"fresh","sessionId":"{}"}}"#, fresh.id));
    fresh.send(r#"{"type":"broadcast","message":"after junk"}"#);
    watcher.expect(r#"{"type":"broadcast","from":"fresh","message":"after junk"}"#);
    let list = watcher.list();
    assert!(list.starts_with(r#"{"type":"list","count":3,"#), "{list}");
}

#[test]
fn server_full_is_refused_in_the_hub_protocol() {
    let (_server, addr) = Netloop::serve_one("hub", &["--max-connections", "1"]);
    let mut a = Client::named(addr, "a");
    let mut refused = Client::connect(addr);
    refused.expect(r#"{"type":"error","code":"server_full","reason":"max connections 1"}"#);
    refused.expect_eof();
    assert_eq!(a.list(), list_of(&[(Some("a"), &a.id.clone(), &[])]));
}

/// 100 clients connect and never read while a sender blasts ~64 KiB broadcasts at a few
/// healthy readers, with `--max-buffer 1m`. The bounds are derived as in the chat test: no
/// queue holds more than `max_buffer` plus the message whose write crossed it, so even
/// unshared the server holds at most `104 * (1 MiB + 64 KiB)` of output (~110 MiB), plus the
/// sender's unfinished frame and 16 MiB for the allocator and read buffers; and because each
/// broadcast is one shared allocation and every queue holds a suffix of the same sequence, in
/// fact at most about `max_buffer` plus one message, which the second bound checks.
#[test]
fn slow_consumers_are_dropped_and_memory_stays_bounded() {
    const NON_READERS: usize = 100;
    const READERS: usize = 3;
    const MESSAGES: usize = 2000;
    const PAYLOAD: usize = 64 * 1024 - 128;
    // Messages the sender may run ahead of the slowest reader: 512 KiB, half the limit.
    const WINDOW: usize = 8;
    const MAX_BUFFER: u64 = 1 << 20;

    let (mut server, addr) = Netloop::serve_one("hub", &["--max-buffer", "1m"]);
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..NON_READERS).map(|_| connect(addr)).collect();
    let mut readers: Vec<Client> = (0..READERS).map(|_| Client::connect(addr)).collect();
    let mut sender = Client::named(addr, "blaster");
    // The round trip proves every connection is registered before the blast starts.
    let list = sender.list();
    let online = NON_READERS + READERS + 1;
    assert!(list.starts_with(&format!(r#"{{"type":"list","count":{online},"#)), "{list}");
    for r in &mut readers {
        r.expect(&format!(r#"{{"type":"online","clientName":"blaster","sessionId":"{}"}}"#, sender.id));
    }

    let baseline = server.rss();
    let progress: Arc<Vec<AtomicUsize>> = Arc::new((0..READERS).map(|_| AtomicUsize::new(0)).collect());
    let failed = Arc::new(AtomicBool::new(false));
    let message_of = |i: usize| {
        let fill = (b'a' + (i % 26) as u8) as char;
        format!("\"{i:06} {}\"", fill.to_string().repeat(PAYLOAD))
    };
    let handles: Vec<_> = readers
        .drain(..)
        .enumerate()
        .map(|(r, mut reader)| {
            let progress = Arc::clone(&progress);
            let failed = Arc::clone(&failed);
            std::thread::spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut line = String::new();
                    for next in 0..MESSAGES {
                        line.clear();
                        let n = reader.reader.read_line(&mut line).expect("reader read");
                        assert!(n > 0, "reader {r}: EOF after {next} messages");
                        let want = format!(
                            r#"{{"type":"broadcast","from":"blaster","message":{}}}"#,
                            message_of(next)
                        );
                        assert!(
                            line.strip_suffix('\n') == Some(&want),
                            "reader {r}: message {next} wrong or out of order"
                        );
                        progress[r].store(next + 1, Ordering::Release);
                    }
                }));
                if result.is_err() {
                    failed.store(true, Ordering::Release);
                }
                reader // kept open until the checks below are done
            })
        })
        .collect();

    let mut peak = baseline;
    let deadline = Instant::now() + WAIT;
    for i in 0..MESSAGES {
        while progress.iter().map(|p| p.load(Ordering::Acquire)).min().unwrap_or(0) + WINDOW < i {
            assert!(!failed.load(Ordering::Acquire), "a reader failed");
            assert!(Instant::now() < deadline, "readers stalled at {i}");
            std::thread::sleep(Duration::from_micros(200));
        }
        sender.send(format!(r#"{{"type":"broadcast","message":{}}}"#, message_of(i)));
        if i % 16 == 0 {
            peak = peak.max(server.rss());
        }
    }
    let readers: Vec<Client> = handles.into_iter().map(|h| h.join().expect("reader thread")).collect();
    assert!(!failed.load(Ordering::Acquire), "a healthy reader missed or reordered a message");
    peak = peak.max(server.rss());
    // The sender was never dropped (flow control stalls it at most briefly): it still
    // answers at once.
    let list = sender.list();
    assert!(list.starts_with(&format!(r#"{{"type":"list","count":{},"#, READERS + 1)), "{list}");

    let sent_per_client = MESSAGES as u64 * (PAYLOAD as u64 + 64);
    let mut buf = vec![0u8; 1 << 20];
    for (n, s) in stalled.iter_mut().enumerate() {
        let mut got = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => got += k as u64,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("non-reader {n}: {e} after {got} bytes (not disconnected?)"),
            }
        }
        assert!(got < sent_per_client / 2, "non-reader {n} got {got} of {sent_per_client} bytes");
    }

    let grown = peak.saturating_sub(baseline);
    let bound = (NON_READERS + READERS + 1) as u64 * (MAX_BUFFER + 64 * 1024) + 64 * 1024 + (16 << 20);
    let shared_bound = 2 * (MAX_BUFFER + 64 * 1024) + (16 << 20);
    eprintln!(
        "hub slow consumers: rss baseline {} KiB, peak {} KiB (+{} KiB, bounds {} / {} KiB), {:?}",
        baseline >> 10,
        peak >> 10,
        grown >> 10,
        bound >> 10,
        shared_bound >> 10,
        started.elapsed()
    );
    assert!(grown < bound, "rss grew by {grown} bytes, bound {bound}");
    assert!(
        grown < shared_bound,
        "rss grew by {grown} bytes: broadcasts are not shared? (bound {shared_bound})"
    );
    server.kill();
    let log = server.stderr();
    let dropped =
        support::logged_events(&log, "output buffer limit exceeded", "cut at their output limit") as usize;
    assert!(
        dropped >= NON_READERS,
        "expected {NON_READERS} output-limit disconnects, log says {dropped}:\n{log}"
    );
    drop(readers);
}

#[test]
fn rooms_per_client_are_capped() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::named(addr, "a");
    for i in 0..netloop::services::hub::MAX_ROOMS_PER_CLIENT {
        a.send(format!(r#"{{"type":"join","room":"r{i}"}}"#));
        a.expect(&format!(r#"{{"type":"joined","room":"r{i}"}}"#));
    }
    a.send(r#"{"type":"join","room":"one-too-many"}"#);
    a.expect_error("bad_message");
    // Re-joining a room it is already in is still fine, and so is leaving.
    a.send(r#"{"type":"join","room":"r0"}"#);
    a.expect(r#"{"type":"joined","room":"r0"}"#);
    a.send(r#"{"type":"leave","room":"r0"}"#);
    a.expect(r#"{"type":"left","room":"r0"}"#);
    a.send(r#"{"type":"join","room":"one-more"}"#);
    a.expect(r#"{"type":"joined","room":"one-more"}"#);
}

/// A hub line as JSON.
fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn names_and_rooms_must_be_printable_text() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::connect(addr);
    let sid = a.id.clone();
    // As JSON escapes and as raw characters (JSON allows DEL, C1 controls and U+2028 raw).
    let bad = [
        r"harmless\rmallory",
        r"two\nlines",
        r"\u001b[2J",
        r"bell\u0007",
        r"nul\u0000",
        r"tab\tname",
        "del\u{7f}",
        "c1\u{85}",
        "line\u{2028}sep",
        "rtl\u{202e}x",
    ];
    for name in bad {
        a.send(format!(r#"{{"type":"sync","clientName":"{name}"}}"#));
        a.expect_error_saying("bad_message", "clientName must be printable text");
        for kind in ["join", "leave"] {
            a.send(format!(r#"{{"type":"{kind}","room":"{name}"}}"#));
            a.expect_error_saying("bad_message", "room must be printable text");
        }
        a.send(format!(r#"{{"type":"broadcast","room":"{name}","message":1}}"#));
        a.expect_error_saying("bad_message", "room must be printable text");
    }
    assert_eq!(a.list(), list_of(&[(None, &sid, &[])]), "no name taken, no room joined");
    // Printable text in any script is a name.
    a.sync("名前 with spaces ☕");
    a.send(r#"{"type":"join","room":"café \u00e9"}"#);
    a.expect(r#"{"type":"joined","room":"café é"}"#);
}

#[test]
fn lone_surrogates_and_deep_nesting_get_errors_that_say_so() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::named(addr, "a");
    let mut b = Client::named(addr, "b");
    a.line(); // b online
              // JSON.parse accepts a lone surrogate; it is no Unicode text, so no name.
    a.send(r#"{"type":"sync","clientName":"\ud800"}"#);
    a.expect_error_saying("bad_message", "clientName is not valid Unicode: it contains a lone surrogate");
    a.send(r#"{"type":"join","room":"x\udc00"}"#);
    a.expect_error_saying("bad_message", "room is not valid Unicode");
    a.send(r#"{"type":"info","to":"\ud800","message":1}"#);
    a.expect_error_saying("bad_message", "to is not valid Unicode");
    a.send(r#"{"type":"\udfff"}"#);
    a.expect_error_saying("bad_message", "type is not valid Unicode");
    // A pair is one character.
    a.send(r#"{"type":"sync","clientName":"\ud83d\ude00"}"#);
    a.expect(&format!(r#"{{"type":"synced","clientName":"😀","sessionId":"{}"}}"#, a.id));
    b.line(); // the rename
              // A message is relayed as sent, lone surrogate and all, as a Node relay would.
    a.send(r#"{"type":"broadcast","message":"\ud800"}"#);
    b.expect(r#"{"type":"broadcast","from":"😀","message":"\ud800"}"#);

    // 128 levels (the object and 127 arrays) are fine; one more is refused, and says why.
    let nested = |levels: usize| {
        format!(r#"{{"type":"list","x":{}{}}}"#, "[".repeat(levels - 1), "]".repeat(levels - 1))
    };
    a.send(nested(128));
    assert!(a.line().starts_with(r#"{"type":"list","count":2,"#));
    // The rest of the line after the level too many is skipped, so end it.
    a.send(nested(129) + "\n");
    a.expect_error_saying("bad_json", "nested too deeply (at most 128 levels");
    a.send(format!("{}\n", "[".repeat(10_000)));
    a.expect_error_saying("bad_json", "nested too deeply");
    assert!(a.list().starts_with(r#"{"type":"list","count":2,"#), "the connection stays usable");
}

#[test]
fn the_info_log_line_escapes_what_the_client_sent() {
    let (mut server, addr) = Netloop::serve_one("hub", &[]);
    let mut a = Client::named(addr, "a");
    // Raw U+2028 and U+202E are valid inside JSON strings; in a log they would start a new
    // line on some viewers, or reorder it.
    a.send("{\"type\":\"info\",\"message\":\"x\u{2028}[INFO] forged\u{202e}desrever\"}");
    a.list();
    server.kill();
    let log = server.stderr();
    assert!(log.contains(r#"info from a: "x\u{2028}[INFO] forged\u{202e}desrever""#), "{log}");
    assert!(!log.contains('\u{2028}') && !log.contains('\u{202e}'), "{log}");
}

#[test]
fn failed_token_checks_are_counted_logged_and_throttled_per_source() {
    use netloop::services::hub::{AUTH_BLOCK_FOR, AUTH_FAILURES_ALLOWED};
    let (mut server, addr) = Netloop::serve_one("hub", &["--hub-token", "t0ken"]);
    let sync =
        |name: &str, token: &str| format!(r#"{{"type":"sync","clientName":"{name}","token":"{token}"}}"#);
    let mut admin = Client::connect(addr);
    admin.send(sync("admin", "t0ken"));
    admin.expect(&format!(r#"{{"type":"synced","clientName":"admin","sessionId":"{}"}}"#, admin.id));

    // The allowed failures, then one more, which blocks the source.
    for i in 0..=AUTH_FAILURES_ALLOWED {
        let mut guess = Client::connect_from(addr, "127.0.0.2");
        guess.send(sync("guesser", &format!("guess{i}")));
        guess.expect_error_saying("unauthorized", "the first frame must be a sync carrying the token");
        guess.expect_eof();
    }
    // Blocked: refused at once, before any frame, even with the right token.
    let blocked_at = Instant::now();
    let mut refused = Client::connect_from(addr, "127.0.0.2");
    refused
        .expect_error_saying("unauthorized", "too many failed token checks from this address; try again in ");
    refused.expect_eof();
    // Another source is not affected.
    let mut other = Client::connect_from(addr, "127.0.0.3");
    other.send(sync("other", "t0ken"));
    other.expect(&format!(r#"{{"type":"synced","clientName":"other","sessionId":"{}"}}"#, other.id));
    admin.line(); // other online

    admin.send(r#"{"type":"stats"}"#);
    let stats = json(&admin.line());
    assert_eq!(stats["authFailures"], u64::from(AUTH_FAILURES_ALLOWED) + 1, "{stats}");
    assert_eq!(stats["authThrottled"], 1, "{stats}");

    // Released when the block is over: poll, bounded.
    let deadline = blocked_at + AUTH_BLOCK_FOR + WAIT;
    loop {
        assert!(Instant::now() < deadline, "still blocked {:?} after the block began", blocked_at.elapsed());
        std::thread::sleep(Duration::from_millis(250));
        let mut again = Client::connect_from(addr, "127.0.0.2");
        again.send(sync("late", "t0ken"));
        let line = again.line();
        if line.starts_with(r#"{"type":"synced","clientName":"late""#) {
            break;
        }
        assert!(line.contains("too many failed token checks"), "{line}");
    }
    let waited = blocked_at.elapsed();
    assert!(waited + Duration::from_millis(500) >= AUTH_BLOCK_FOR, "released after only {waited:?}");

    server.kill();
    let log = server.stderr();
    assert!(log.contains("failed the token check (1 from 127.0.0.2 recently)"), "{log}");
    let blocking = format!(
        "blocking 127.0.0.2 for {}s after {} failures",
        AUTH_BLOCK_FOR.as_secs(),
        AUTH_FAILURES_ALLOWED + 1
    );
    assert!(log.contains(&blocking), "{log}");
    assert!(
        log.contains("hub: refused a connection from 127.0.0.2: blocked for failed token checks"),
        "{log}"
    );
}

#[test]
fn failed_token_checks_are_logged_within_a_budget() {
    let (mut server, addr) = Netloop::serve_one("hub", &["--hub-token", "t0ken"]);
    // Forty failures from forty sources (none blocked), well inside a second or two.
    let started = Instant::now();
    for i in 0..40 {
        let mut c = Client::connect_from(addr, &format!("127.0.1.{}", i + 1));
        c.send(r#"{"type":"list"}"#);
        c.expect_error("unauthorized");
    }
    let seconds = started.elapsed().as_secs() + 2;
    std::thread::sleep(Duration::from_millis(1100));
    let mut last = Client::connect_from(addr, "127.0.2.1");
    last.send(r#"{"type":"list"}"#);
    last.expect_error("unauthorized");
    server.kill();
    let log = server.stderr();
    let lines = log.matches("failed the token check").count() as u64;
    assert!(lines <= 5 * seconds + 1, "{lines} lines in about {seconds} s:\n{log}");
    assert!(log.contains("more not logged)"), "the dropped lines are counted:\n{log}");
}

/// Sends a list request and returns the reply as JSON.
fn list_page(c: &mut Client, request: &str) -> serde_json::Value {
    c.send(request);
    let line = c.line();
    assert!(line.starts_with(r#"{"type":"list","count":"#), "{line}");
    json(&line)
}

/// Session ids of a page's clients, checking each entry's keys.
fn page_sids(page: &serde_json::Value, rooms: bool) -> Vec<String> {
    let clients = page["clients"].as_array().expect("clients");
    clients
        .iter()
        .map(|c| {
            let entry = c.as_object().expect("entry");
            assert_eq!(entry.len(), if rooms { 3 } else { 2 }, "{c}");
            assert!(entry.contains_key("clientName") && entry.contains_key("sessionId"), "{c}");
            assert_eq!(entry.contains_key("rooms"), rooms, "{c}");
            c["sessionId"].as_str().expect("sid").to_string()
        })
        .collect()
}

/// The cursor request for the page after `page`, if there is one.
fn next_request(page: &serde_json::Value, extra: &str) -> Option<String> {
    let next = page.get("next")?.as_str().expect("next is a string");
    Some(format!(r#"{{"type":"list","cursor":"{next}"{extra}}}"#))
}

#[test]
fn list_pages_reach_everyone_once_while_members_come_and_go() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut asker = Client::named(addr, "asker");
    // Anonymous clients: no presence notices to read past.
    let mut crowd: Vec<Option<Client>> = (0..40).map(|_| Some(Client::connect(addr))).collect();
    let sid = |c: &Option<Client>| c.as_ref().expect("present").id.clone();
    let wait_count = |asker: &mut Client, count: usize| {
        let deadline = Instant::now() + WAIT;
        while list_page(asker, r#"{"type":"list","limit":1}"#)["count"] != count {
            assert!(Instant::now() < deadline, "count never reached {count}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let first = list_page(&mut asker, r#"{"type":"list","limit":7}"#);
    assert_eq!(first["count"], 41);
    let mut seen = page_sids(&first, false);
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[0], asker.id);
    // Between pages: one already listed leaves, one not yet listed leaves, a newcomer arrives.
    let left_listed = sid(&crowd[2]);
    let left_unlisted = sid(&crowd[20]);
    crowd[2] = None;
    crowd[20] = None;
    let newcomer = Client::connect(addr);
    wait_count(&mut asker, 40);
    let mut request = next_request(&first, "");
    let mut pages = 1;
    while let Some(r) = request {
        let page = list_page(&mut asker, &r.replace(r#""}"#, r#"","limit":7}"#));
        seen.extend(page_sids(&page, false));
        request = next_request(&page, "");
        pages += 1;
        assert!(pages < 20, "the walk does not end");
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "nobody listed twice: {seen:?}");
    assert!(!seen.contains(&left_unlisted), "a client that left before its page is not listed");
    assert!(seen.contains(&left_listed), "it was listed before it left");
    assert!(seen.contains(&newcomer.id), "a newcomer is listed at the end");
    for c in crowd.iter().flatten() {
        assert!(seen.contains(&c.id), "{} was present throughout but not listed", c.id);
    }
    assert_eq!(pages, 6, "42 clients listed at 7 a page");
}

#[test]
fn the_bare_list_is_a_first_page_and_the_rest_follows_by_cursor() {
    use netloop::services::hub::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut asker = Client::named(addr, "asker");
    let crowd: Vec<Client> = (0..DEFAULT_LIST_LIMIT + 20).map(|_| Client::connect(addr)).collect();
    let total = crowd.len() + 1;
    let first = list_page(&mut asker, r#"{"type":"list"}"#);
    assert_eq!(first["count"], total);
    let mut sids = page_sids(&first, true);
    assert_eq!(sids.len(), DEFAULT_LIST_LIMIT);
    let rest = list_page(&mut asker, &next_request(&first, "").expect("a next cursor"));
    assert!(rest.get("next").is_none(), "the last page has no next");
    sids.extend(page_sids(&rest, false));
    let rest = list_page(&mut asker, &next_request(&first, r#","rooms":true"#).expect("a next cursor"));
    page_sids(&rest, true);
    let want: Vec<String> =
        std::iter::once(asker.id.clone()).chain(crowd.iter().map(|c| c.id.clone())).collect();
    assert_eq!(sids, want, "connection order");
    // A limit above the maximum is the maximum; here that is everyone.
    let all = list_page(&mut asker, &format!(r#"{{"type":"list","limit":{}}}"#, MAX_LIST_LIMIT * 10));
    assert_eq!(page_sids(&all, false).len(), total);
    assert!(all.get("next").is_none());
    for bad in [
        r#"{"type":"list","limit":0}"#,
        r#"{"type":"list","limit":-1}"#,
        r#"{"type":"list","limit":1.5}"#,
        r#"{"type":"list","limit":"5"}"#,
        r#"{"type":"list","cursor":12}"#,
        r#"{"type":"list","cursor":"x"}"#,
        r#"{"type":"list","rooms":"yes"}"#,
    ] {
        asker.send(bad);
        asker.expect_error("bad_message");
    }
}

#[test]
fn a_list_page_is_bounded_in_bytes_however_many_rooms_clients_are_in() {
    use netloop::services::hub::{MAX_LIST_BYTES, MAX_ROOMS_PER_CLIENT};
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut asker = Client::connect(addr);
    let mut crowd: Vec<Client> = Vec::new();
    let long = |prefix: String| format!("{prefix:x<64}");
    for i in 0..24 {
        let mut c = Client::connect(addr);
        let mut frames = String::new();
        for r in 0..MAX_ROOMS_PER_CLIENT {
            frames.push_str(&format!(r#"{{"type":"join","room":"{}"}}"#, long(format!("room-{r}-"))));
        }
        c.send(frames);
        for _ in 0..MAX_ROOMS_PER_CLIENT {
            assert!(c.line().starts_with(r#"{"type":"joined""#));
        }
        c.sync(&long(format!("client-{i}-")));
        crowd.push(c);
    }
    // The asker is anonymous: it heard every online notice; skip them with the first reply.
    asker.send(r#"{"type":"list"}"#);
    let line = asker.skip_until(100, |l| l.starts_with(r#"{"type":"list""#));
    // 24 entries of ~4.5 KB would be 108 KB; the page stops at the byte bound.
    assert!(line.len() <= MAX_LIST_BYTES + 9 * 1024, "{} bytes", line.len());
    let mut page = json(&line);
    let mut sids = page_sids(&page, true);
    assert!(sids.len() < crowd.len(), "one page holds {} of {}", sids.len(), crowd.len() + 1);
    while let Some(request) = next_request(&page, r#","rooms":true"#) {
        page = list_page(&mut asker, &request);
        let line_len = serde_json::to_string(&page).expect("json").len();
        assert!(line_len <= MAX_LIST_BYTES + 9 * 1024, "{line_len} bytes");
        sids.extend(page_sids(&page, true));
    }
    let want: Vec<String> =
        std::iter::once(asker.id.clone()).chain(crowd.iter().map(|c| c.id.clone())).collect();
    assert_eq!(sids, want);
}

/// Reads `c`'s presence notices until they account for `joins` online and `leaves` offline
/// events (an `online`/`offline` line is one, a `presence` summary its counts); returns how
/// many lines that took. Anything else, or more events than expected, fails.
fn hear_presence(c: &mut Client, joins: u64, leaves: u64) -> usize {
    let (mut on, mut off, mut lines) = (0, 0, 0);
    while on < joins || off < leaves {
        let line = c.line();
        lines += 1;
        let v = json(&line);
        match v["type"].as_str() {
            Some("online") => on += 1,
            Some("offline") => off += 1,
            Some("presence") => {
                assert_eq!(v.as_object().map(|o| o.len()), Some(3), "{line}");
                on += v["online"].as_u64().expect("online count");
                off += v["offline"].as_u64().expect("offline count");
            }
            _ => panic!("{}: not a presence notice: {line}", c.id),
        }
        assert!(on <= joins && off <= leaves, "{}: heard {on}/{joins} joins, {off}/{leaves} leaves", c.id);
    }
    lines
}

#[test]
fn join_and_leave_storms_are_coalesced_and_each_is_heard_once() {
    const N: usize = 200;
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut watcher = Client::named(addr, "watcher");
    // One after another, each registered (its own reply is immediate) before the next arrives.
    let mut crowd: Vec<Client> = (0..N).map(|i| Client::named(addr, &format!("c{i}"))).collect();
    // Everyone hears of exactly the joins after its own arrival, each once.
    let lines = hear_presence(&mut watcher, N as u64, 0);
    assert!(lines <= N / 4, "{lines} notice lines for {N} joins: not coalesced");
    for (i, c) in crowd.iter_mut().enumerate() {
        hear_presence(c, (N - 1 - i) as u64, 0);
    }
    // A leave storm: half the crowd goes.
    let leavers: Vec<Client> = crowd.drain(N / 2..).collect();
    drop(leavers);
    let lines = hear_presence(&mut watcher, 0, (N / 2) as u64);
    assert!(lines <= N / 8, "{lines} notice lines for {} leaves: not coalesced", N / 2);
    for c in crowd.iter_mut().step_by(10) {
        hear_presence(c, 0, (N / 2) as u64);
    }
    // Nothing more is owed: the next line is the reply.
    assert!(watcher.list().starts_with(&format!(r#"{{"type":"list","count":{},"#, N / 2 + 1)));
}

#[test]
fn connect_prints_hub_messages_with_control_characters_escaped() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["connect", &addr.to_string(), "--hub-name", "viewer"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn netloop connect");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("synced line");
    assert!(line.starts_with("[synced as viewer"), "{line}");
    let mut sender = Client::named(addr, "sender");
    sender.send(r#"{"type":"broadcast","message":"\u001b[2J\rforged: hi\u0007\ttab\u009b"}"#);
    sender.list();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines() {
            if tx.send(l.expect("read")).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(rx.recv_timeout(WAIT).expect("netloop connect printed nothing"));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(got[0].starts_with("[online sender, session "), "the online notice comes first: {got:?}");
    assert_eq!(got[1], r"[broadcast from sender] \e[2J\rforged: hi\x07	tab\x9b");
}

/// A pseudo-terminal pair: the master to read what a program printed to its terminal.
fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the pointers; no name, termios or size.
    let rc = unsafe {
        libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nobody else.
    unsafe { (std::fs::File::from_raw_fd(master), std::fs::File::from_raw_fd(slave)) }
}

#[test]
fn connect_escapes_raw_output_on_a_terminal_and_passes_it_through_a_pipe() {
    let (_server, addr) = Netloop::serve_one("echo", &[]);
    let input = b"plain\ta\x1b[2Jb\rc\x07\x00d\r\nlast\n";
    // On a terminal: every control character but tab and the line ends spelled out.
    let (mut master, slave) = pty();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["connect", &addr.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(slave)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn netloop connect");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // The terminal turns each "\n" into "\r\n" (onlcr).
    let want = b"plain\ta\\e[2Jb\\rc\\x07\\x00d\r\r\nlast\r\n";
    let mut shown = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !shown.ends_with(b"last\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => shown.extend(chunk),
            Err(_) => panic!("terminal shows {:?}", String::from_utf8_lossy(&shown)),
        }
    }
    let _ = child.wait();
    assert_eq!(String::from_utf8_lossy(&shown), String::from_utf8_lossy(want));
    // Through a pipe: byte for byte.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["connect", &addr.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn netloop connect");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    let out = child.wait_with_output().expect("netloop connect output");
    assert_eq!(out.stdout, input);
}

#[test]
fn a_node_crowd_registers_with_coalesced_notices_and_bounded_lists() {
    use netloop::services::hub::MAX_LIST_BYTES;
    const CLIENTS: u64 = 300;
    let (server, _) = Netloop::serve_one("hub", &[]);
    let pid = server.pid().to_string();
    let out = node(
        "hub_crowd.js",
        &[
            &server.addr("hub"),
            "--clients",
            &CLIENTS.to_string(),
            "--name-bytes",
            "64",
            "--rooms",
            "64",
            "--listers",
            "10",
            "--lists",
            "5",
            "--pid",
            &pid,
            "--timeout",
            "18",
        ],
    );
    assert_node_ok(&out);
    let report = json(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["closedByServer"], 0, "{report}");
    // One by one, each client would hear of every later one: CLIENTS² / 2 lines.
    let registration = &report["registration"];
    let notices =
        registration["onlineLines"].as_u64().expect("n") + registration["presenceLines"].as_u64().expect("n");
    assert!(notices < CLIENTS * CLIENTS / 8, "{notices} notice lines for {CLIENTS} joins: {report}");
    // Every client is in 64 rooms of 64 bytes: the whole list would be ~1.4 MB.
    let listing = &report["listing"];
    assert_eq!(listing["requests"], 50, "{report}");
    let reply = listing["replyBytes"].as_u64().expect("reply bytes");
    assert!(reply > 0 && reply <= (MAX_LIST_BYTES + 9 * 1024) as u64, "{reply} bytes a list reply: {report}");
}

/// Reads the next line and checks it against the wire layer: it decodes to `want`, and the
/// wire encoder writes exactly the bytes the server sent.
fn expect_reply(c: &mut Client, want: &netloop::wire::hub::Reply<'_>) -> String {
    let line = c.line();
    let got = netloop::wire::hub::Reply::decode(line.as_bytes());
    assert_eq!(got.as_ref(), Some(want), "{}: {line}", c.id);
    let mut encoded = Vec::new();
    want.encode(&mut encoded);
    assert_eq!(
        String::from_utf8_lossy(&encoded),
        format!("{line}\n"),
        "the encoder writes what the server sent"
    );
    line
}

/// The wire layer is what a real hub speaks: requests built by `netloop::wire::hub` are
/// understood, and every reply decodes to the expected message and re-encodes to the exact
/// bytes the server sent.
#[test]
fn wire_messages_are_what_the_hub_speaks() {
    use netloop::wire::hub::{Cursor, ErrorCode, Reply, Request};
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let mut out = Vec::new();
    let mut ask = |c: &mut Client, request: Request<'_>| {
        request.encode(&mut out);
        c.send(&out);
    };
    let mut ann = Client::connect(addr);
    let (ann_sid, ops) = (ann.id.clone(), "ops");
    ask(&mut ann, Request::Sync { client_name: "ann".into(), token: None });
    expect_reply(&mut ann, &Reply::Synced { client_name: "ann".into(), session_id: ann_sid.as_str().into() });
    ask(&mut ann, Request::Join { room: ops.into() });
    expect_reply(&mut ann, &Reply::Joined { room: ops.into() });

    let mut bob = Client::connect(addr);
    let bob_sid = bob.id.clone();
    ask(&mut bob, Request::Sync { client_name: "bob".into(), token: None });
    expect_reply(&mut bob, &Reply::Synced { client_name: "bob".into(), session_id: bob_sid.as_str().into() });
    let message = r#"{"n": 1.50, "s": "é\u0007"}"#;
    ask(&mut bob, Request::Broadcast { room: Some(ops.into()), message });
    let online =
        Reply::Online { client_name: "bob".into(), session_id: bob_sid.as_str().into(), previous: None };
    expect_reply(&mut ann, &online);
    expect_reply(&mut ann, &Reply::Broadcast { from: "bob".into(), room: Some(ops.into()), message });
    ask(&mut ann, Request::Info { to: Some("bob".into()), message: "[1, 2]" });
    expect_reply(&mut bob, &Reply::Info { from: "ann".into(), message: "[1, 2]" });

    // A list walked page by page with the cursor the first page hands out.
    ask(&mut bob, Request::List { cursor: None, limit: Some(1), rooms: Some(true) });
    let line = bob.line();
    let Some(Reply::List { count, clients, next }) = Reply::decode(line.as_bytes()) else { panic!("{line}") };
    let first: Vec<_> = clients.iter().collect();
    assert_eq!((count, first.len()), (2, 1), "{line}");
    assert_eq!((first[0].client_name.as_deref(), &*first[0].session_id), (Some("ann"), ann_sid.as_str()));
    assert_eq!(first[0].rooms.as_ref().map(|r| r.join(",")), Some(ops.to_string()));
    let next = next.expect("a next cursor").into_owned();
    ask(
        &mut bob,
        Request::List { cursor: Some(Cursor::After(next.as_str().into())), limit: None, rooms: None },
    );
    let line = bob.line();
    let Some(Reply::List { clients, next: None, .. }) = Reply::decode(line.as_bytes()) else {
        panic!("{line}")
    };
    let rest: Vec<_> = clients.iter().map(|c| (c.client_name, c.session_id.into_owned(), c.rooms)).collect();
    assert_eq!(rest, [(Some("bob".into()), bob_sid.clone(), None)], "{line}");

    ask(&mut bob, Request::Stats);
    let line = bob.line();
    let Some(Reply::Stats(counters)) = Reply::decode(line.as_bytes()) else { panic!("{line}") };
    assert_eq!((counters.hub_clients, counters.accepted), (2, 2), "{line}");
    let mut encoded = Vec::new();
    Reply::Stats(counters).encode(&mut encoded);
    assert_eq!(String::from_utf8_lossy(&encoded), format!("{line}\n"));

    ask(&mut bob, Request::Sync { client_name: "ann".into(), token: None });
    let taken = Reply::Error { code: ErrorCode::NameTaken, reason: "name ann is taken".into() };
    expect_reply(&mut bob, &taken);
}

#[test]
fn a_member_cut_at_its_output_limit_in_the_middle_of_its_own_requests_leaves() {
    let (_server, addr) = Netloop::serve_one("hub", &["--max-buffer", "16k", "--soft-limit", "0"]);
    let mut watcher = Client::named(addr, "watcher");
    // Requests whose replies it never reads: its queue passes the limit while the server is
    // still handling one read of them, and the loop destroys it there.
    let mut flood = support::connect(addr);
    support::send(&mut flood, br#"{"type":"sync","clientName":"flood"}"#);
    watcher.skip_until(10, |l| l.contains(r#""type":"online""#));
    let writer = std::thread::spawn(move || {
        let requests = r#"{"type":"list"}"#.repeat(200_000);
        // Fails once the server has closed it: that is the point.
        let _ = flood.write_all(requests.as_bytes());
    });
    let offline = watcher.skip_until(100, |l| l.contains(r#""type":"offline""#));
    assert!(offline.contains(r#""clientName":"flood""#), "{offline}");
    // Its name is free again.
    drop(Client::named(addr, "flood"));
    writer.join().unwrap();
}
