//! A TCP server that knows its clients by name, with group and directed messages,
//! and the two clients of the article.
//!
//! The Node program this mirrors (abridged):
//!
//! ```js
//! const clients = []; // { name, sessionId: remoteAddress + ':' + remotePort, client }
//! const server = net.createServer((client) => {
//!   storeClient(client);
//!   client.on('data', (data) => {
//!     try {
//!       const { type, clientName, message } = JSON.parse(data);
//!       if (type == 'sync') storeClient(client, clientName);
//!       console.log('The server receives from ' + client.name + ': ' + message);
//!     } catch (error) {}
//!   });
//!   client.on('close', () => { /* remove from clients, log the session ids */ });
//! });
//! const broadcast = ({ clientName, message }) => { /* to that name, or to all */ };
//! server.on('connection', () => {
//!   clearTimeout(testTimeout);
//!   testTimeout = setTimeout(() => {
//!     broadcast({ message: 'We have come to collect supplies' });
//!     broadcast({ clientName: 'Client-1', message: 'Hurry to get tested, ...' });
//!     broadcast({ clientName: 'Client-2', message: 'Come and get tested later' });
//!   }, 10000);
//! });
//! server.listen({ port: 9000, host: '127.0.0.1' });
//! ```
//!
//! Each client connects, writes `{"type":"sync","clientName":"Client-1",...}`, and 3 s later
//! `{"type":"info",...}`, with no separator between the two (as the Node original's `sock.write`s), and
//! prints everything the server sends.
//!
//! Try it (three terminals; the broadcasts come 10 s after the last connection):
//!
//! ```sh
//! cargo run --example hub_demo                           # listening on 127.0.0.1:9000
//! cargo run --example hub_demo -- client Client-1
//! cargo run --example hub_demo -- client Client-2
//! printf '{"type":"sync","clientName":"Client-1"}' | nc 127.0.0.1 9000   # or by hand
//! ```
//!
//! `--port N` (0: any free port) and `--delay-ms MS` (server: broadcast delay after the last
//! connection, default 10000; client: delay before the `info`, default 3000) make it quick to
//! run in a test.
//!
//! Differences from the Node original, on purpose: the server writes each message as one line (the Node original
//! wrote `"\n\r" + message`), and a read holding two JSON values, or half of one, still parses:
//! the Node original's `JSON.parse(data)` assumes one whole value per `data` event, which TCP does not
//! promise. `netloop serve --hub` is the full protocol built from this idea.

use std::error::Error;
use std::rc::Rc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use netloop::frame::{Frame, FrameDecoder};
use netloop::line::LineSplitter;
use netloop::{
    AddressSpec, Context, EventLoop, Handler, ServerId, ServerOptions, SharedBytes, SocketAddress,
    SocketError, SocketId, TimerId,
};
use serde_json::{json, Value};

/// Largest JSON value a client may send; a longer one closes its connection.
const MAX_FRAME: usize = 64 * 1024;

#[derive(Parser)]
#[command(about = "The named-client server (default) or one of its clients")]
struct Args {
    /// Port to listen on (0 = any free port), or to connect to in client mode.
    #[arg(long, global = true, default_value_t = 9000)]
    port: u16,
    /// Server: broadcast this long after the last connection (default 10000). Client: send the
    /// `info` message this long after connecting (default 3000).
    #[arg(long, global = true, value_name = "MS")]
    delay_ms: Option<u64>,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Connect as NAME: send `sync`, later an `info`, print what the server sends.
    Client {
        /// The alias to register, e.g. Client-1.
        name: String,
    },
}

/// One entry of the Node original's `clients` array.
struct Client {
    /// Empty until the client sends `sync`.
    name: String,
    /// `remoteAddress:remotePort`, the Node original's unique id.
    session_id: String,
    socket: SocketId,
    /// Cuts the byte stream into JSON values, however TCP split or joined them.
    frames: FrameDecoder,
}

/// The server: the client list, and the timer re-armed by every connection.
struct Hub {
    clients: Vec<Client>,
    delay: Duration,
    timer: Option<TimerId>,
}

impl Hub {
    fn log_sessions(&self) {
        let ids: Vec<&str> = self.clients.iter().map(|c| c.session_id.as_str()).collect();
        println!("[all clients] {ids:?}");
    }

    /// The Node original's `broadcast({clientName, message})`: to the client with that name, or to
    /// everyone. The line is encoded once and shared by every recipient's queue.
    fn broadcast(&self, cx: &mut Context, client_name: Option<&str>, message: &str) {
        let line: SharedBytes = Rc::from(format!("{message}\n").into_bytes());
        for client in &self.clients {
            if client_name.is_none_or(|name| client.name == name) {
                cx.write_shared(client.socket, &line);
            }
        }
    }

    fn on_message(&mut self, index: usize, msg: &Value) {
        let client = &mut self.clients[index];
        let text = match msg.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        match msg.get("type").and_then(Value::as_str) {
            Some("sync") => {
                if let Some(name) = msg.get("clientName").and_then(Value::as_str) {
                    client.name = name.to_string();
                }
                println!("[sync] {} is {}: {text}", client.session_id, client.name);
            }
            Some("info") => println!("[info] {} ({}): {text}", client.name, client.session_id),
            // The Node original logs the message of any other type too, and ignores what does not parse.
            _ => println!("[message] {}: {text}", client.session_id),
        }
    }
}

impl Handler for Hub {
    fn on_listening(&mut self, cx: &mut Context, server: ServerId) {
        if let Some(addr) = cx.server_address(server) {
            println!("listening on {addr}");
        }
    }

    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        let Some(peer) = cx.remote_address(socket) else { return };
        let client = Client {
            name: String::new(),
            session_id: peer.to_string(),
            socket,
            frames: FrameDecoder::new(MAX_FRAME),
        };
        println!("[client connected] {}", client.session_id);
        self.clients.push(client);
        self.log_sessions();
        // clearTimeout + setTimeout: the demo runs `delay` after the *last* connection.
        if let Some(timer) = self.timer.take() {
            cx.clear_timer(timer);
        }
        self.timer = Some(cx.set_timer(self.delay));
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        let Some(index) = self.clients.iter().position(|c| c.socket == socket) else { return };
        let mut messages = Vec::new();
        let fed = self.clients[index].frames.feed(data, |frame| {
            if let Frame::Json(bytes) = frame {
                // Not JSON after all: ignored, as the Node original's empty `catch` does.
                if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
                    messages.push(value);
                }
            }
        });
        for msg in &messages {
            self.on_message(index, msg);
        }
        if let Err(too_large) = fed {
            println!("[{}] {too_large}, closing", self.clients[index].session_id);
            cx.destroy(socket);
        }
    }

    fn on_timer(&mut self, cx: &mut Context, _timer: TimerId) {
        self.timer = None;
        println!("Inform everyone: We have come to collect supplies");
        self.broadcast(cx, None, "We have come to collect supplies");
        println!("Notify Client-1: Hurry to get tested, everything is waiting for you");
        self.broadcast(cx, Some("Client-1"), "Hurry to get tested, everything is waiting for you");
        println!("Notify Client-2: Come and get tested later");
        self.broadcast(cx, Some("Client-2"), "Come and get tested later");
    }

    fn on_close(&mut self, _cx: &mut Context, socket: SocketId, error: Option<&SocketError>) {
        let Some(index) = self.clients.iter().position(|c| c.socket == socket) else { return };
        let client = self.clients.remove(index);
        if let Some(err) = error {
            println!("[error] {}: {err}", client.session_id);
        }
        self.log_sessions();
        println!("[offline] {} ({})", client.session_id, client.name);
    }
}

/// One of the Node original's clients.
struct HubClient {
    name: String,
    delay: Duration,
    socket: SocketId,
    info_timer: Option<TimerId>,
    /// The server sends lines; a read may hold several, or part of one.
    lines: LineSplitter,
    failed: bool,
}

impl Handler for HubClient {
    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {
        println!("connected to server!");
        let sync = json!({"type": "sync", "clientName": self.name, "message": "basic information"});
        println!("{} syncs its basic information with the server", self.name);
        cx.write(socket, sync.to_string().as_bytes());
        self.info_timer = Some(cx.set_timer(self.delay));
    }

    /// The delayed `info`, written straight after the `sync` with no separator, as the Node original's
    /// clients do: the server must cut the stream into values itself.
    fn on_timer(&mut self, cx: &mut Context, _timer: TimerId) {
        self.info_timer = None;
        let message = format!("hello from {}", self.name);
        println!("{} sends to the server: {message}", self.name);
        let info = json!({"type": "info", "clientName": self.name, "message": message});
        cx.write(self.socket, info.to_string().as_bytes());
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        let name = &self.name;
        let fed = self.lines.feed(data, |line| {
            println!("{name} received from the server: {}", String::from_utf8_lossy(line));
        });
        if let Err(too_long) = fed {
            eprintln!("{name}: {too_long}");
            cx.destroy(socket);
        }
    }

    fn on_end(&mut self, _cx: &mut Context, _socket: SocketId) {
        println!("end");
    }

    fn on_close(&mut self, cx: &mut Context, _socket: SocketId, error: Option<&SocketError>) {
        if let Some(err) = error {
            println!("error: {err}");
            self.failed = true;
        }
        println!("close");
        // Nothing left to send to: let the loop (and the process) finish now.
        if let Some(timer) = self.info_timer.take() {
            cx.clear_timer(timer);
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let addr: SocketAddress = format!("127.0.0.1:{}", args.port).parse::<AddressSpec>()?.resolve_one()?;
    let mut event_loop = EventLoop::new()?;
    match args.mode {
        None => {
            let delay = Duration::from_millis(args.delay_ms.unwrap_or(10_000));
            event_loop.context().listen(&addr, ServerOptions::default())?;
            event_loop.run(&mut Hub { clients: Vec::new(), delay, timer: None })?;
        }
        Some(Mode::Client { name }) => {
            let socket = event_loop.context().connect(&addr);
            let mut client = HubClient {
                name,
                delay: Duration::from_millis(args.delay_ms.unwrap_or(3_000)),
                socket,
                info_timer: None,
                lines: LineSplitter::new(MAX_FRAME),
                failed: false,
            };
            event_loop.run(&mut client)?;
            if client.failed {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
