//! A browser pointed at a raw TCP port: chat and hub answer an HTTP request line with a short
//! `400 Bad Request` saying what the port is, tell no one, and close. Checked with a real HTTP
//! client (Python's urllib) and byte for byte over a plain socket.

mod support;

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::process::Command;

use support::{connect, read_line, read_to_end, Netloop};

/// Fails with the install command when python3 is missing.
fn python3() -> Command {
    let found = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "this test needs python3: apt-get install -y python3");
    Command::new("python3")
}

/// What urllib got for `METHOD http://ADDR/`: status, headers that matter, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    content_length: usize,
    connection: String,
    body: String,
}

const URLLIB_REQUEST: &str = r#"
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1], method=sys.argv[2])
try:
    with urllib.request.urlopen(request, timeout=20) as reply:
        status, headers, body = reply.status, reply.headers, reply.read()
except urllib.error.HTTPError as e:
    status, headers, body = e.code, e.headers, e.read()
print(status)
print(headers.get('Content-Type'))
print(headers.get('Content-Length'))
print(headers.get('Connection'))
sys.stdout.write(body.decode())
"#;

fn urllib(method: &str, addr: SocketAddr) -> Answer {
    let out = python3()
        .args(["-c", URLLIB_REQUEST, &format!("http://{addr}/"), method])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "urllib failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    let mut parts = stdout.splitn(5, '\n');
    let mut next = || parts.next().unwrap_or_default().to_string();
    Answer {
        status: next().parse().expect("status"),
        content_type: next(),
        content_length: next().parse().expect("Content-Length"),
        connection: next(),
        body: next(),
    }
}

fn check_refusal(answer: &Answer, port_kind: &str, addr: SocketAddr) {
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.content_type, "text/plain; charset=utf-8");
    assert_eq!(answer.connection, "close");
    assert_eq!(answer.content_length, answer.body.len(), "{answer:?}");
    assert!(answer.body.contains(&format!("This is a netloop {port_kind} port")), "{answer:?}");
    assert!(answer.body.contains(&format!("nc {} {}", addr.ip(), addr.port())), "{answer:?}");
    assert!(answer.body.contains(&format!("netloop connect {addr}")), "{answer:?}");
}

/// The raw exchange: the reply is all the client gets, from its first byte, then EOF.
fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut s = connect(addr);
    s.write_all(request.as_bytes()).expect("send request");
    String::from_utf8(read_to_end(&mut s)).expect("utf-8 reply")
}

#[test]
fn a_browser_at_the_chat_port_gets_400_and_the_room_hears_nothing() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let stream = connect(addr);
    let label = stream.local_addr().unwrap().to_string();
    let mut watcher = BufReader::new(stream.try_clone().unwrap());
    let mut watcher_w = stream;
    assert_eq!(read_line(&mut watcher), format!("* welcome {label}, online now: 1"));

    check_refusal(&urllib("GET", addr), "chat", addr);
    let head = urllib("HEAD", addr);
    assert_eq!((head.status, head.body.as_str()), (400, ""), "{head:?}");

    let reply = raw_request(addr, "GET /index.html HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply:?}");
    let (_, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    assert!(body.starts_with("This is a netloop chat port"), "{reply:?}");

    // None of it was broadcast, and no one joined or left: the watcher's next line is its /who.
    watcher_w.write_all(b"/who\n").unwrap();
    assert_eq!(read_line(&mut watcher), format!("* online now: 1: {label}"));
}

#[test]
fn a_browser_at_the_hub_port_gets_400_and_the_hub_hears_nothing() {
    let (_server, addr) = Netloop::serve_one("hub", &[]);
    let stream = connect(addr);
    let mut watcher = BufReader::new(stream.try_clone().unwrap());
    let mut watcher_w = stream;
    watcher_w.write_all(br#"{"type":"sync","clientName":"watcher"}"#).unwrap();
    assert!(read_line(&mut watcher).starts_with(r#"{"type":"synced","clientName":"watcher""#));

    check_refusal(&urllib("GET", addr), "hub", addr);
    let reply = raw_request(addr, "POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}");
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply:?}");
    assert!(reply.contains(r#"send {"type":"sync","clientName":"NAME"}"#), "{reply:?}");

    // No bad_json went anywhere and nobody else is listed: the next line is the list reply.
    watcher_w.write_all(br#"{"type":"list"}"#).unwrap();
    let list = read_line(&mut watcher);
    assert!(list.starts_with(r#"{"type":"list","count":1,"#), "{list}");
}

/// JSON and chat text that merely look like HTTP somewhere are not refused.
#[test]
fn only_a_first_line_that_is_a_request_line_counts() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = connect(addr);
    let mut a_lines = BufReader::new(a.try_clone().unwrap());
    read_line(&mut a_lines);
    let mut b = connect(addr);
    let b_label = b.local_addr().unwrap().to_string();
    b.write_all(b"hello\nGET / HTTP/1.1\n").unwrap();
    assert_eq!(read_line(&mut a_lines), format!("* {b_label} joined, online now: 2"));
    assert_eq!(read_line(&mut a_lines), format!("{b_label}: hello"));
    assert_eq!(read_line(&mut a_lines), format!("{b_label}: GET / HTTP/1.1"));
    a.write_all(b"/who\n").unwrap();
    assert!(read_line(&mut a_lines).starts_with("* online now: 2: "));
}
