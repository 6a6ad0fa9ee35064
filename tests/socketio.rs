//! The socket.io-style server API, through the classic Node programs' socket.io server (`examples/socketio_seed`)
//! driven by the official `socket.io-client` from npm: default transports (polling, then the
//! upgrade to WebSocket), WebSocket only, polling only, and a client that reconnects by itself
//! after the server restarts.

#![cfg(feature = "web")]

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::Instant;

use netloop::socketio::{Ack, Server, Socket, SocketHandler};
use netloop::{EventLoop, ServerOptions};
use serde_json::{json, Value};
use support::WAIT;

/// The example's binary, built once per run (`cargo test --test socketio` builds only the test).
fn example_bin() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let profile = exe.parent().and_then(|p| p.parent()).ok_or("unexpected target layout")?;
        let target = profile.parent().ok_or("unexpected target layout")?;
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args(["build", "--quiet", "--example", "socketio_seed", "--target-dir"])
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(profile.join("examples/socketio_seed"))
    });
    built.clone().unwrap_or_else(|e| panic!("building examples/socketio_seed failed:\n{e}"))
}

/// A process whose stdout lines arrive on a channel; killed on drop.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines, seen: Vec::new() }
    }

    /// The first line (from now) that `pred` accepts; fails after [`WAIT`].
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what} within {WAIT:?}; seen: {:#?}", self.seen),
            }
        }
    }

    /// Waits for the process to exit; its status and remaining stdout.
    fn finish(mut self) -> (bool, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let ok = self.child.wait().unwrap().success();
        self.seen.extend(self.lines.try_iter());
        (ok, std::mem::take(&mut self.seen))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn seed_server(port: u16) -> (Proc, String) {
    let mut server = Proc::spawn(Command::new(example_bin()).args(["--port", &port.to_string()]));
    let line = server.wait_for("'listening on'", |l| l.starts_with("listening on "));
    (server, line["listening on ".len()..].to_string())
}

fn node_client(args: &[&str]) -> Proc {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node/socketio_seed.js");
    Proc::spawn(Command::new("node").arg(script).args(args))
}

/// Runs the Node original's clients with `mode` transports; returns the transport they ended on.
fn seed_exchange(mode: &str) -> String {
    let (mut server, addr) = seed_server(0);
    let (ok, lines) = node_client(&[&format!("http://{addr}"), mode]).finish();
    assert!(ok, "socket.io-client check failed: {lines:#?}");
    let summary = lines.last().cloned().unwrap_or_default();
    server.wait_for("both connections", |l| l.ends_with("(2 online)"));
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary line");
    summary["transport"].as_str().unwrap_or("").to_string()
}

#[test]
fn the_seed_server_greets_and_broadcasts_with_default_transports_ending_on_websocket() {
    assert_eq!(seed_exchange("default"), "websocket");
}

#[test]
fn the_seed_server_works_with_websocket_only_clients() {
    assert_eq!(seed_exchange("websocket"), "websocket");
}

#[test]
fn the_seed_server_works_with_polling_only_clients() {
    assert_eq!(seed_exchange("polling"), "polling");
}

#[test]
fn the_server_sees_connections_and_disconnects_with_their_ids() {
    let (mut server, addr) = seed_server(0);
    let (ok, lines) = node_client(&[&format!("http://{addr}"), "websocket"]).finish();
    assert!(ok, "{lines:#?}");
    let first = server.wait_for("first connection", |l| l.starts_with("connected: "));
    assert!(first.ends_with("(1 online)"), "{first}");
    let id = first["connected: ".len()..].split(' ').next().unwrap().to_string();
    assert_eq!(id.len(), 22, "a 16-byte base64url id: {id}");
    server.wait_for("second connection", |l| l.starts_with("connected: ") && l.ends_with("(2 online)"));
    // The clients close: each disconnect is reported once, naming the socket.
    let gone = server.wait_for("a disconnect", |l| l.starts_with("已断开链接: "));
    assert!(gone.contains("transport close") || gone.contains("client namespace disconnect"), "{gone}");
    server.wait_for("the other disconnect", |l| l.starts_with("已断开链接: "));
    assert!(server.seen.iter().any(|l| l.contains(&id) && l.starts_with("已断开链接")), "{:#?}", server.seen);
}

#[test]
fn clients_reconnect_by_themselves_after_the_server_restarts() {
    for mode in ["default", "websocket"] {
        let (server, addr) = seed_server(0);
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let mut client = node_client(&[&format!("http://{addr}"), mode, "restart"]);
        client.wait_for("'restart me'", |l| l == "restart me");
        drop(server);
        let (_again, _) = seed_server(port);
        let (ok, lines) = client.finish();
        assert!(ok, "{mode}: {lines:#?}");
        assert!(lines.last().is_some_and(|l| l.contains(r#""reconnected":true"#)), "{mode}: {lines:#?}");
    }
}

/// Exercises the API's rooms, `to`, `everyone`, acks and `disconnect`.
struct RoomsHandler;

impl SocketHandler for RoomsHandler {
    fn on_connection(&mut self, socket: &mut Socket<'_>) {
        let id = socket.id().to_string();
        socket.emit("welcome", &[json!({ "id": id })]);
    }

    fn on_event(&mut self, socket: &mut Socket<'_>, event: &str, args: &[Value], ack: Option<Ack>) {
        let arg = args.first().cloned().unwrap_or(Value::Null);
        match event {
            "join" | "leave" => {
                let room = arg.as_str().unwrap_or("");
                if event == "join" {
                    socket.join(room);
                } else {
                    socket.leave(room);
                }
                let rooms: Vec<Value> = socket.rooms().map(|r| json!(r)).collect();
                if let Some(ack) = ack {
                    socket.ack(ack, &[Value::Array(rooms)]);
                }
            }
            "say" => {
                let room = arg["room"].as_str().unwrap_or("").to_string();
                socket.to(&room).emit("said", &[json!({ "text": arg["text"] })]);
            }
            "shout" => socket.everyone().emit("shouted", &[arg]),
            "ask" => {
                if let Some(ack) = ack {
                    socket.ack(ack, &[json!({ "answer": 42 })]);
                }
            }
            "bye" => socket.disconnect(),
            _ => {}
        }
    }
}

#[test]
fn the_api_offers_rooms_to_everyone_acks_and_disconnect() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut event_loop = EventLoop::new().unwrap();
        let addr = "127.0.0.1:0".parse::<netloop::AddressSpec>().unwrap().resolve_one().unwrap();
        let server = event_loop.context().listen(&addr, ServerOptions::default()).unwrap();
        tx.send(event_loop.context().server_address(server).unwrap().to_string()).unwrap();
        event_loop.run(&mut Server::new(RoomsHandler, Default::default())).unwrap();
    });
    let addr = rx.recv_timeout(WAIT).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node/socketio_api.js");
    let (ok, lines) = Proc::spawn(Command::new("node").arg(script).arg(format!("http://{addr}"))).finish();
    assert!(ok, "{lines:#?}");
}
