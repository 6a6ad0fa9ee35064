//! Browsers as hub members, with real third-party clients: npm's `ws` on `/ws`,
//! `socket.io-client` on `/socket.io/` (default transports, WebSocket only, polling only),
//! Python's `websockets`, and raw TCP members on the hub port, all in one hub. The hub's limits
//! (token, registration deadline, frame size, output limit) hold for web members too.

#![cfg(feature = "web")]

mod support;
mod web_support;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{assert_node_ok, node, Netloop, WAIT};

/// A hub with a web listener; returns the server, the web address and the hub address.
fn hub_with_web(extra: &[&str]) -> (Netloop, String, String) {
    let mut args = vec!["--hub", "127.0.0.1:0", "--web", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = Netloop::serve(&args, 2);
    let (web, hub) = (server.addr("web"), server.addr("hub"));
    (server, web, hub)
}

fn mixed_members(mode: &str) -> String {
    let (_server, web, hub) = hub_with_web(&[]);
    let out = node("web_hub.js", &[&web, &hub, mode]);
    assert_node_ok(&out);
    let summary: serde_json::Value = serde_json::from_slice(
        out.stdout.split(|&b| b == b'\n').find(|l| l.starts_with(b"{")).unwrap_or(b"{}"),
    )
    .unwrap();
    summary["transport"].as_str().unwrap_or("").to_string()
}

#[test]
fn websocket_socketio_and_tcp_members_share_one_hub() {
    assert_eq!(mixed_members("default"), "websocket", "socket.io-client upgrades from polling");
}

#[test]
fn socketio_websocket_only_members_share_the_hub() {
    assert_eq!(mixed_members("websocket"), "websocket");
}

#[test]
fn socketio_polling_only_members_share_the_hub() {
    assert_eq!(mixed_members("polling"), "polling");
}

#[test]
fn the_web_listener_is_announced_and_serves_the_chat_page() {
    let (_server, web, _hub) = hub_with_web(&[]);
    let mut s = std::net::TcpStream::connect(&web).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let page = String::from_utf8(support::read_to_end(&mut s)).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert!(page.contains("<title>netloop chat</title>"));
    assert!(page.contains("'/ws'"), "the page talks to /ws");
    // Nothing external: no script or stylesheet from elsewhere.
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    // HEAD: the same headers, no body.
    let mut s = std::net::TcpStream::connect(&web).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let head = String::from_utf8(support::read_to_end(&mut s)).unwrap();
    let length = page.lines().find(|l| l.starts_with("Content-Length:")).unwrap();
    assert!(head.contains(length), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD sent a body: {head}");
}

/// Runs `python3 tests/python/SCRIPT ARGS` (the script fails loudly when `websockets` is
/// missing).
fn python(script: &str, args: &[&str]) -> std::process::Output {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    support::run_script("python3", path, args)
}

#[test]
fn python_websockets_clients_are_hub_members() {
    let (_server, web, hub) = hub_with_web(&[]);
    let out = python("ws_hub.py", &[&web, &hub]);
    assert!(
        out.status.success(),
        "python websockets check failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn web_members_obey_the_hub_limits() {
    let (_server, web, _hub) =
        hub_with_web(&["--hub-token", "s3cret", "--register-timeout", "1s", "--max-frame", "2000"]);
    let out = node("web_hub_limits.js", &[&web]);
    assert_node_ok(&out);
}

#[test]
fn a_websocket_member_that_stops_reading_is_disconnected_at_the_output_limit() {
    let (_server, web, hub) = hub_with_web(&["--max-buffer", "256k", "--soft-limit", "0"]);
    let web: std::net::SocketAddr = web.parse().unwrap();
    let mut slow = web_support::ws_connect(web, "/ws");
    slow.write_all(&web_support::frame(0x81, br#"{"type":"sync","clientName":"slow"}"#)).unwrap();
    assert!(web_support::read_text(&mut slow).contains("synced"));
    // A small receive buffer, and never read again.
    socket2::SockRef::from(&slow).set_recv_buffer_size(4096).unwrap();

    let mut talker = support::LineClient::connect(hub.parse().unwrap());
    talker.send(br#"{"type":"sync","clientName":"talker"}"#);
    talker.skip_until(5, |l| l.contains("synced"));
    let big = "y".repeat(32 * 1024);
    let line = format!(r#"{{"type":"broadcast","message":"{big}"}}"#);
    // Far more than the limit plus every kernel buffer, from a thread: the hub stalls the
    // talker while the slow member lags, until it cuts the slow member.
    let mut writer = talker.writer.try_clone().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let flood = std::thread::spawn(move || {
        for _ in 0..2000 {
            if stop.load(std::sync::atomic::Ordering::Relaxed) || writer.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
    });
    talker.skip_until(50, |l| l.contains(r#""type":"offline","clientName":"slow""#));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    talker.send(br#"{"type":"stats"}"#);
    let stats = talker.skip_until(100, |l| l.contains(r#""type":"stats""#));
    assert!(!stats.contains(r#""outputLimitDisconnects":0"#), "{stats}");
}

#[test]
fn a_browser_over_the_connection_cap_gets_503() {
    let (_server, web, _hub) = hub_with_web(&["--max-connections", "1"]);
    let web: std::net::SocketAddr = web.parse().unwrap();
    let _first = web_support::ws_connect(web, "/ws");
    let reply = web_support::http(web, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header("retry-after"), Some("1"));
}

/// Web members of one node and TCP members of another, through a private Redis: broadcasts
/// and directed messages cross nodes whatever carries the members.
#[cfg(feature = "cluster")]
#[test]
fn web_members_get_deliveries_from_other_cluster_nodes() {
    let redis = support::redis::Redis::start();
    let url = redis.url();
    let cluster = ["--cluster", url.as_str(), "--cluster-heartbeat", "200ms"];
    let mut args = vec!["--hub", "127.0.0.1:0", "--web", "127.0.0.1:0"];
    args.extend_from_slice(&cluster);
    let a = Netloop::serve(&args, 2);
    let mut args = vec!["--hub", "127.0.0.1:0"];
    args.extend_from_slice(&cluster);
    let b = Netloop::serve(&args, 1);

    let web: std::net::SocketAddr = a.addr("web").parse().unwrap();
    let mut ws = web_support::ws_connect(web, "/ws");
    ws.write_all(&web_support::frame(0x81, br#"{"type":"sync","clientName":"webby"}"#)).unwrap();
    let wait_ws = |ws: &mut std::net::TcpStream, want: &str| {
        for _ in 0..100 {
            let text = web_support::read_text(ws);
            if text.contains(want) {
                return text;
            }
        }
        panic!("no {want} on the WebSocket");
    };
    wait_ws(&mut ws, r#""type":"synced""#);

    let mut tcp = support::LineClient::connect(b.tcp("hub"));
    tcp.send(br#"{"type":"sync","clientName":"tcpy"}"#);
    tcp.skip_until(100, |l| l.contains(r#""type":"synced""#));
    // Until the other node has seen webby, a directed message could miss; retry until it lands.
    let deadline = Instant::now() + WAIT;
    loop {
        // A delivered `info` has no reply; the `stats` reply after it says the error did not come.
        tcp.send(br#"{"type":"info","to":"webby","message":"across"}{"type":"stats"}"#);
        let reply =
            tcp.skip_until(100, |l| l.contains(r#""type":"error""#) || l.contains(r#""type":"stats""#));
        if reply.contains(r#""type":"stats""#) {
            break;
        }
        tcp.skip_until(100, |l| l.contains(r#""type":"stats""#));
        assert!(Instant::now() < deadline, "webby never became reachable from the other node");
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = wait_ws(&mut ws, r#""type":"info""#);
    assert_eq!(got, r#"{"type":"info","from":"tcpy","message":"across"}"#);
    tcp.send(br#"{"type":"broadcast","message":"to all nodes"}"#);
    let got = wait_ws(&mut ws, r#""type":"broadcast""#);
    assert_eq!(got, r#"{"type":"broadcast","from":"tcpy","message":"to all nodes"}"#);
    ws.write_all(&web_support::frame(0x81, br#"{"type":"broadcast","message":"from the web"}"#)).unwrap();
    tcp.skip_until(100, |l| l == r#"{"type":"broadcast","from":"webby","message":"from the web"}"#);
}
