//! Helpers for the web endpoint's tests: an in-process endpoint with an echo application on
//! its own loop thread, and a raw HTTP / WebSocket client that sends exactly the bytes a test
//! wants (masked or not, valid or not) over loopback. Every read is bounded.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netloop::web::{ClientId, WebApp, WebClients, WebConfig, WebEndpoint};
use netloop::{Context, EventLoop, Handler, ServerId, ServerOptions, SocketId, TimerId};
use serde_json::Value;

/// Generous bound for anything a test waits on.
pub const WAIT: Duration = Duration::from_secs(20);

/// Echoes `/ws` text and socket.io events back; answers acks with the event's arguments.
#[derive(Default)]
pub struct EchoApp;

impl WebApp for EchoApp {
    fn on_text(&mut self, cx: &mut Context, web: &mut WebClients, client: ClientId, text: &str) {
        web.send_text(cx, client, text);
    }

    fn on_event(
        &mut self,
        cx: &mut Context,
        web: &mut WebClients,
        client: ClientId,
        name: &str,
        args: &[Value],
        ack: Option<u64>,
    ) {
        let args: Vec<String> = args.iter().map(Value::to_string).collect();
        match ack {
            Some(id) => web.ack(cx, client, id, &args.join(",")),
            None => web.emit(cx, client, name, &args.join(",")),
        }
    }
}

struct EchoServer {
    endpoint: WebEndpoint,
    app: EchoApp,
}

impl Handler for EchoServer {
    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        self.endpoint.on_connection(cx, socket);
    }
    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        self.endpoint.on_data(cx, &mut self.app, socket, data);
    }
    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        self.endpoint.on_end(cx, &mut self.app, socket);
    }
    fn on_close(&mut self, cx: &mut Context, socket: SocketId, _error: Option<&netloop::SocketError>) {
        self.endpoint.on_close(cx, &mut self.app, socket);
    }
    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) {
        self.endpoint.on_timer(cx, &mut self.app, timer);
    }
}

/// Starts an echo endpoint with `config` on a loop thread (left running until the test
/// process exits); returns its address.
pub fn echo_endpoint(config: WebConfig) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut event_loop = EventLoop::new().expect("loop");
        let addr = "127.0.0.1:0".parse::<netloop::AddressSpec>().unwrap().resolve_one().unwrap();
        let server = event_loop.context().listen(&addr, ServerOptions::default()).expect("listen");
        let bound = event_loop.context().server_address(server).cloned().expect("address");
        tx.send(bound.to_string()).unwrap();
        let mut handler = EchoServer { endpoint: WebEndpoint::new(config), app: EchoApp };
        event_loop.run(&mut handler).expect("loop ran");
    });
    rx.recv_timeout(WAIT).expect("endpoint started").parse().expect("tcp address")
}

/// A short-deadline configuration for tests of deadlines.
pub fn quick_config() -> WebConfig {
    let mut config = WebConfig { request_timeout: Duration::from_millis(400), ..WebConfig::default() };
    config.timing.ping_interval = Duration::from_millis(300);
    config.timing.ping_timeout = Duration::from_millis(1000);
    config
}

/// A connection with a read deadline.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// An HTTP response as read off the wire.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpReply {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one response (head and Content-Length body) from `s`.
pub fn read_reply(s: &mut TcpStream) -> HttpReply {
    // Byte by byte up to the end of the head, so what follows it (a WebSocket's first frame)
    // stays in the socket for the caller.
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + WAIT;
    let head_end = loop {
        if buf.ends_with(b"\r\n\r\n") {
            break buf.len();
        }
        assert!(Instant::now() < deadline, "no response head");
        let n = s.read(&mut byte).expect("read");
        assert!(n > 0, "connection closed before a response head; got {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status code");
    let mut reply = HttpReply { status, head, body: String::new() };
    let len: usize = reply.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("read body");
    reply.body = String::from_utf8_lossy(&body).into_owned();
    reply
}

/// Sends `request` on a new connection and reads the reply.
pub fn http(addr: SocketAddr, request: &str) -> HttpReply {
    let mut s = connect(addr);
    s.write_all(request.as_bytes()).unwrap();
    read_reply(&mut s)
}

/// Whether the server closes `s` (EOF or reset) within [`WAIT`], ignoring what it sends first.
pub fn closes(s: &mut TcpStream) -> bool {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
    false
}

/// A valid WebSocket upgrade request for `path`, with extra header lines.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A client WebSocket on `path`, handshake done.
pub fn ws_connect(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(upgrade_request(path, "").as_bytes()).unwrap();
    let reply = read_reply(&mut s);
    assert_eq!(reply.status, 101, "{reply:?}");
    assert_eq!(reply.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    s
}

/// A masked client frame: `first` is the FIN/RSV/opcode byte.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(first, true, payload)
}

/// A client frame, masked or not.
pub fn frame_with(first: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0x13, 0xc7, 0x02];
    let bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    let len = payload.len();
    if len < 126 {
        out.push(bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// One server frame: opcode and payload. Panics if the server sent a masked frame.
pub fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).expect("frame header");
    assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).expect("frame payload");
    (head[0] & 0x0f, payload)
}

/// The next text frame, skipping pings.
#[track_caller]
pub fn read_text(s: &mut TcpStream) -> String {
    loop {
        let (op, payload) = read_frame(s);
        match op {
            0x1 => return String::from_utf8(payload).expect("utf-8 text"),
            0x9 => continue,
            other => panic!("expected a text frame, got opcode {other:#x}: {payload:?}"),
        }
    }
}

/// The code of the close frame the server sends next (skipping other frames).
pub fn read_close_code(s: &mut TcpStream) -> u16 {
    loop {
        let (op, payload) = read_frame(s);
        if op == 0x8 {
            assert!(payload.len() >= 2, "close frame without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

/// A `/ws` round trip on a new connection: the endpoint still serves others.
pub fn ws_healthy(addr: SocketAddr) {
    let mut s = ws_connect(addr, "/ws");
    s.write_all(&frame(0x81, b"still here")).unwrap();
    assert_eq!(read_text(&mut s), "still here");
}
