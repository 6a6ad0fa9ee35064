//! Bad input at the web endpoint, each case over a real loopback socket: the status code or
//! close code the RFCs name, and a fresh client served normally afterwards (nothing else is
//! affected).

#![cfg(feature = "web")]

mod web_support;

use std::io::Write;
use std::time::{Duration, Instant};

use netloop::web::WebConfig;
use web_support::*;

fn endpoint() -> std::net::SocketAddr {
    echo_endpoint(quick_config())
}

#[test]
fn malformed_request_lines_and_headers_get_400() {
    let addr = endpoint();
    for bad in [
        "GET\x01/ HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "\x16\x03\x01\x00\x25\x01\x00\x00\x21\x03\x03\r\n\r\n", // a TLS hello
    ] {
        let mut s = connect(addr);
        s.write_all(bad.as_bytes()).unwrap();
        let reply = read_reply(&mut s);
        assert_eq!(reply.status, 400, "{bad:?}: {reply:?}");
        assert!(closes(&mut s), "{bad:?}: connection left open");
    }
    assert_eq!(http(addr, "GET / HTTP/2.0\r\n\r\n").status, 505);
    ws_healthy(addr);
}

#[test]
fn oversized_request_lines_and_headers_get_414_and_431() {
    let addr = endpoint();
    // Refused as soon as the line passes the limit, before it ends.
    let mut s = connect(addr);
    s.write_all(format!("GET /{}", "a".repeat(5000)).as_bytes()).unwrap();
    assert_eq!(read_reply(&mut s).status, 414);
    assert!(closes(&mut s));

    let mut s = connect(addr);
    s.write_all(format!("GET / HTTP/1.1\r\nX-Big: {}", "b".repeat(9000)).as_bytes()).unwrap();
    assert_eq!(read_reply(&mut s).status, 431);

    let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
    assert_eq!(http(addr, &format!("GET / HTTP/1.1\r\n{many}\r\n")).status, 431);
    ws_healthy(addr);
}

#[test]
fn requests_that_never_finish_get_408_after_the_deadline() {
    let addr = endpoint();
    let start = Instant::now();
    let mut head = connect(addr);
    head.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut body = connect(addr);
    body.write_all(
        b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
    )
    .unwrap();
    assert_eq!(read_reply(&mut head).status, 408);
    assert_eq!(read_reply(&mut body).status, 408);
    assert!(start.elapsed() >= Duration::from_millis(400), "cut before the deadline");
    assert!(closes(&mut head) && closes(&mut body));
    // An idle connection that never sent a byte is closed too, without a reply.
    let mut idle = connect(addr);
    assert!(closes(&mut idle));
    ws_healthy(addr);
}

#[test]
fn bodies_over_the_limit_and_chunked_bodies_are_refused() {
    let mut config = quick_config();
    config.timing.max_payload = 1000;
    let addr = echo_endpoint(config);
    let big = "POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nContent-Length: 1001\r\n\r\n";
    assert_eq!(http(addr, big).status, 413);
    let chunked = "POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(http(addr, chunked).status, 501);
    ws_healthy(addr);
}

#[test]
fn bad_or_missing_websocket_keys_get_400_and_other_versions_426() {
    let addr = endpoint();
    let no_key = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(http(addr, no_key).status, 400);
    let short_key = no_key.replace("\r\n\r\n", "\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n");
    assert_eq!(http(addr, &short_key).status, 400);
    let not_base64 = no_key.replace("\r\n\r\n", "\r\nSec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!\r\n\r\n");
    assert_eq!(http(addr, &not_base64).status, 400);
    let v8 = upgrade_request("/ws", "").replace("Version: 13", "Version: 8");
    let reply = http(addr, &v8);
    assert_eq!(reply.status, 426);
    assert_eq!(reply.header("sec-websocket-version"), Some("13"));
    assert_eq!(http(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").status, 426);
    ws_healthy(addr);
}

/// Sends `bytes` on a fresh `/ws` connection; returns the close code the server answers with,
/// after checking it also closes the TCP connection.
fn close_code_for(addr: std::net::SocketAddr, bytes: &[u8]) -> u16 {
    let mut s = ws_connect(addr, "/ws");
    s.write_all(bytes).unwrap();
    let code = read_close_code(&mut s);
    assert!(closes(&mut s), "connection left open after close {code}");
    code
}

#[test]
fn frame_violations_get_the_close_codes_of_rfc_6455() {
    let addr = endpoint();
    assert_eq!(close_code_for(addr, &frame_with(0x81, false, b"unmasked")), 1002);
    assert_eq!(close_code_for(addr, &frame(0xC1, b"rsv1")), 1002);
    assert_eq!(close_code_for(addr, &frame(0xA1, b"rsv2")), 1002);
    assert_eq!(close_code_for(addr, &frame(0x83, b"opcode 3")), 1002);
    assert_eq!(close_code_for(addr, &frame(0x8C, b"")), 1002); // reserved control opcode
    assert_eq!(close_code_for(addr, &frame(0x09, b"fragmented ping")), 1002);
    assert_eq!(close_code_for(addr, &frame(0x89, &[b'p'; 126])), 1002); // control frame > 125
    assert_eq!(close_code_for(addr, &frame(0x80, b"continuation of nothing")), 1002);
    let mut two_starts = frame(0x01, b"a");
    two_starts.extend(frame(0x81, b"b"));
    assert_eq!(close_code_for(addr, &two_starts), 1002);
    assert_eq!(close_code_for(addr, &frame(0x82, b"binary")), 1003);
    ws_healthy(addr);
}

#[test]
fn invalid_utf8_gets_1007_even_across_fragments() {
    let addr = endpoint();
    assert_eq!(close_code_for(addr, &frame(0x81, &[b'a', 0xff])), 1007);
    assert_eq!(close_code_for(addr, &frame(0x81, &[0xed, 0xa0, 0x80])), 1007); // a surrogate
    let mut split = frame(0x01, &[b'a', 0xc3]);
    split.extend(frame(0x80, &[0x28])); // 0xc3 0x28 is not a sequence
    assert_eq!(close_code_for(addr, &split), 1007);
    // A sequence split across fragments is fine.
    let mut s = ws_connect(addr, "/ws");
    let mut ok = frame(0x01, &[b'a', 0xc3]);
    ok.extend(frame(0x80, &[0xa9]));
    s.write_all(&ok).unwrap();
    assert_eq!(read_text(&mut s), "a\u{e9}");
    ws_healthy(addr);
}

#[test]
fn oversized_frames_and_messages_get_1009() {
    let mut config = quick_config();
    config.frames.max_frame = 1000;
    config.frames.max_message = 1500;
    let addr = echo_endpoint(config);
    // The header alone is enough: the payload is never sent.
    let mut s = ws_connect(addr, "/ws");
    s.write_all(&[0x81, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4]).unwrap();
    assert_eq!(read_close_code(&mut s), 1009);
    assert!(closes(&mut s));
    assert_eq!(close_code_for(addr, &frame(0x81, &[b'x'; 1001])), 1009);
    let mut fragments = frame(0x01, &[b'x'; 1000]);
    fragments.extend(frame(0x80, &[b'x'; 501]));
    assert_eq!(close_code_for(addr, &fragments), 1009);
    ws_healthy(addr);
}

#[test]
fn a_close_handshake_is_answered_and_one_never_completed_is_cut() {
    let addr = endpoint();
    // The client closes: the server echoes the code and closes the connection.
    let mut s = ws_connect(addr, "/ws");
    s.write_all(&frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e'])).unwrap();
    assert_eq!(read_close_code(&mut s), 1000);
    assert!(closes(&mut s));
    // The server closes (a violation) and the client never answers nor closes: the server
    // drops the connection after its grace period.
    let mut s = ws_connect(addr, "/ws");
    s.write_all(&frame(0xC1, b"x")).unwrap();
    assert_eq!(read_close_code(&mut s), 1002);
    let start = Instant::now();
    assert!(closes(&mut s), "the server waited forever for the close handshake");
    assert!(start.elapsed() < Duration::from_secs(10));
    ws_healthy(addr);
}

#[test]
fn polls_for_unknown_or_expired_sessions_get_400_code_1() {
    let addr = endpoint();
    let reply =
        http(addr, "GET /socket.io/?EIO=4&transport=polling&sid=nosuchsession HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body, r#"{"code":1,"message":"Session ID unknown"}"#);
    // A session whose client stopped answering pings expires.
    let open = http(addr, "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(open.status, 200);
    let sid =
        open.body.split("\"sid\":\"").nth(1).and_then(|r| r.split('"').next()).expect("sid").to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let poll = format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n");
        let reply = http(addr, &poll);
        if reply.status == 400 {
            assert_eq!(reply.body, r#"{"code":1,"message":"Session ID unknown"}"#);
            break;
        }
        // Until it expires, a poll gets the server's ping; it is never answered.
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(Instant::now() < deadline, "the session never expired");
    }
    ws_healthy(addr);
}

#[test]
fn engineio_protocol_errors_get_400_with_engineio_codes() {
    let addr = endpoint();
    let reply = http(addr, "GET /socket.io/?EIO=3&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (400, r#"{"code":5,"message":"Unsupported protocol version"}"#)
    );
    let reply = http(addr, "GET /socket.io/?EIO=4&transport=carrier-pigeon HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((reply.status, reply.body.as_str()), (400, r#"{"code":0,"message":"Transport unknown"}"#));
    let reply =
        http(addr, "POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nContent-Length: 2\r\n\r\n40");
    assert_eq!((reply.status, reply.body.as_str()), (400, r#"{"code":2,"message":"Bad handshake method"}"#));
    ws_healthy(addr);
}

/// Opens a polling session; returns its id.
fn open_session(addr: std::net::SocketAddr) -> String {
    let open = http(addr, "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(open.status, 200, "{open:?}");
    assert!(open.body.starts_with("0{\"sid\":\""), "{open:?}");
    open.body.split("\"sid\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_string()
}

fn post(addr: std::net::SocketAddr, sid: &str, body: &str) -> HttpReply {
    http(
        addr,
        &format!(
            "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn engineio_and_socketio_garbage_closes_the_session() {
    let addr = endpoint();
    for garbage in ["9nonsense", "4a\x1e\x1e4b", "bAAEC", "4{not socket.io", "42[1,2]", "42{\"a\":1}"] {
        let sid = open_session(addr);
        let connect = post(addr, &sid, "40");
        assert_eq!(connect.status, 200);
        let reply = post(addr, &sid, garbage);
        // Engine.IO garbage is refused with 400; socket.io garbage is taken (the payload was
        // fine) and ends the session: either way the session is gone.
        assert!(reply.status == 400 || reply.status == 200, "{garbage:?}: {reply:?}");
        let poll = http(
            addr,
            &format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        let gone = poll.status == 400 || poll.body.ends_with('1') || poll.body.contains("\u{1e}1");
        assert!(gone, "{garbage:?}: session still open: {poll:?}");
    }
    // Garbage on a socket.io WebSocket: the session ends and the socket closes.
    let mut s = ws_connect(addr, "/socket.io/?EIO=4&transport=websocket");
    assert!(read_text(&mut s).starts_with("0{\"sid\""));
    s.write_all(&frame(0x81, b"4garbage")).unwrap();
    assert_eq!(read_close_code(&mut s), 1000);
    assert!(closes(&mut s));
    ws_healthy(addr);
}

#[test]
fn a_disallowed_origin_gets_403_and_an_allowed_one_cors_headers() {
    let mut config: WebConfig = quick_config();
    config.origins = vec!["http://good.example".to_string()];
    let addr = echo_endpoint(config);
    let evil = "Origin: http://evil.example\r\n";
    let reply = http(addr, &upgrade_request("/ws", evil));
    assert_eq!(reply.status, 403);
    let reply =
        http(addr, &format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n{evil}\r\n"));
    assert_eq!((reply.status, reply.body.as_str()), (403, r#"{"code":4,"message":"Forbidden"}"#));
    let reply = http(addr, &upgrade_request("/socket.io/?EIO=4&transport=websocket", evil));
    assert_eq!(reply.status, 403);
    // The allowed origin gets its CORS headers on polling and preflight.
    let good = "Origin: http://good.example\r\n";
    let reply =
        http(addr, &format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n{good}\r\n"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), Some("http://good.example"));
    assert_eq!(reply.header("access-control-allow-credentials"), Some("true"));
    let reply =
        http(addr, &format!("OPTIONS /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n{good}\r\n"));
    assert_eq!(reply.status, 204);
    assert!(reply.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    let mut s = connect(addr);
    s.write_all(upgrade_request("/ws", good).as_bytes()).unwrap();
    assert_eq!(read_reply(&mut s).status, 101);
    ws_healthy(addr);
}

#[test]
fn a_client_that_never_answers_pings_is_disconnected() {
    let addr = endpoint();
    let mut s = ws_connect(addr, "/socket.io/?EIO=4&transport=websocket");
    assert!(read_text(&mut s).starts_with("0{\"sid\""));
    s.write_all(&frame(0x81, b"40")).unwrap();
    assert!(read_text(&mut s).starts_with("40{\"sid\""));
    // The ping comes after the interval; without a pong the server closes after the timeout.
    assert_eq!(read_text(&mut s), "2");
    assert_eq!(read_close_code(&mut s), 1000);
    assert!(closes(&mut s));
    // A client that answers stays.
    let mut s = ws_connect(addr, "/socket.io/?EIO=4&transport=websocket");
    read_text(&mut s);
    s.write_all(&frame(0x81, b"40")).unwrap();
    read_text(&mut s);
    for _ in 0..3 {
        assert_eq!(read_text(&mut s), "2");
        s.write_all(&frame(0x81, b"3")).unwrap();
    }
    s.write_all(&frame(0x81, br#"42["echo",{"n":1}]"#)).unwrap();
    loop {
        let text = read_text(&mut s);
        if text == "2" {
            s.write_all(&frame(0x81, b"3")).unwrap();
            continue;
        }
        assert_eq!(text, r#"42["echo",{"n":1}]"#);
        break;
    }
}

#[test]
fn a_session_that_never_joins_the_namespace_is_closed() {
    let addr = endpoint();
    let mut s = ws_connect(addr, "/socket.io/?EIO=4&transport=websocket");
    assert!(read_text(&mut s).starts_with("0{\"sid\""));
    // Pings are answered, but no socket.io CONNECT ever comes.
    let start = Instant::now();
    loop {
        let (op, payload) = read_frame(&mut s);
        match (op, payload.as_slice()) {
            (0x1, b"2") => s.write_all(&frame(0x81, b"3")).unwrap(),
            (0x8, _) => break,
            other => panic!("unexpected frame {other:?}"),
        }
        assert!(start.elapsed() < WAIT, "never closed");
    }
    assert!(start.elapsed() >= Duration::from_millis(300), "closed before the deadline");
    assert!(closes(&mut s));
    ws_healthy(addr);
}

#[test]
fn a_poll_that_arrives_during_an_upgrade_is_answered_at_once() {
    let addr = endpoint();
    let sid = open_session(addr);
    assert_eq!(post(addr, &sid, "40").status, 200);
    let first =
        http(addr, &format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(first.body.starts_with("40{\"sid\""), "{first:?}");
    // The probe comes first; the client's next poll, still in flight, must not be held (the
    // client waits for it to end before it sends the upgrade).
    let mut probe = ws_connect(addr, &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"));
    probe.write_all(&frame(0x81, b"2probe")).unwrap();
    assert_eq!(read_text(&mut probe), "3probe");
    let start = Instant::now();
    let poll =
        http(addr, &format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_eq!((poll.status, poll.body.as_str()), (200, "6"));
    assert!(start.elapsed() < Duration::from_millis(250), "the poll was held during the upgrade");
    probe.write_all(&frame(0x81, b"5")).unwrap();
    probe.write_all(&frame(0x81, br#"42["echo","over ws"]"#)).unwrap();
    assert_eq!(read_text(&mut probe), r#"42["echo","over ws"]"#);
}
