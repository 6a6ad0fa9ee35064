//! The online counter and the multi-user chat on 127.0.0.1:3000, with the chat's
//! stdin client.
//!
//! The Node programs this mirrors (the chapter's counter and chat servers, in one):
//!
//! ```js
//! let count = 0;
//! server.on('connection', (socket) => {
//!   count++;
//!   console.log('welcome, online now: ' + count);
//!   socket.write('remoteAddress' + socket.remoteAddress + '\n');
//!   socket.write('remotePort' + socket.remotePort);
//! });
//! // the chat: every message, trimmed, to every *other* user
//! socket.on('data', (data) => {
//!   data = data.toString().trim();
//!   users.forEach((client) => { if (client !== socket) client.write(client.remotePort + ':' + data); });
//! });
//! server.listen(3000, '127.0.0.1');
//!
//! // the client: stdin to the server, the server to stdout
//! const client = net.createConnection({ port: 3000, host: '127.0.0.1' });
//! process.stdin.on('data', (data) => client.write(data.toString().trim()));
//! client.on('data', (data) => console.log(data.toString()));
//! ```
//!
//! Try it:
//!
//! ```sh
//! cargo run --example online_counter                 # listening on 127.0.0.1:3000
//! cargo run --example online_counter -- client       # type lines; run two of these
//! nc 127.0.0.1 3000                                  # or telnet, as in the chapter
//! ```
//!
//! `--port N` picks another port (0: any free one), for both modes.
//!
//! Differences from the Node original, on purpose: the count goes down when someone leaves (the Node original
//! only counted up); a relayed message is prefixed with the *sender's* port (the Node original wrote
//! each receiver's own port, which tells nobody who spoke); and a message is a line, so two
//! messages that TCP delivers in one read stay two messages.

use std::error::Error;
use std::io::{self, Write};
use std::rc::Rc;

use clap::{Parser, Subcommand};
use netloop::line::LineSplitter;
use netloop::{
    AddressSpec, Context, EventLoop, Handler, ServerId, ServerOptions, SharedBytes, SocketAddress,
    SocketError, SocketId, SocketOptions,
};

/// Longest message, in bytes; a longer line closes the sender's connection.
const MAX_LINE: usize = 64 * 1024;

#[derive(Parser)]
#[command(about = "The online counter and chat server (default) or its stdin client")]
struct Args {
    /// Port to listen on (0 = any free port), or to connect to in client mode.
    #[arg(long, global = true, default_value_t = 3000)]
    port: u16,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Chat from the terminal: each stdin line to the server, what arrives to stdout.
    Client,
}

/// One entry of the Node original's `users` array.
struct User {
    socket: SocketId,
    port: u16,
    lines: LineSplitter,
}

/// The server: who is online, in connection order.
#[derive(Default)]
struct Counter {
    users: Vec<User>,
}

impl Handler for Counter {
    fn on_listening(&mut self, cx: &mut Context, server: ServerId) {
        if let Some(addr) = cx.server_address(server) {
            println!("listening on {addr}");
        }
    }

    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        let Some(SocketAddress::Inet(peer)) = cx.remote_address(socket) else { return };
        self.users.push(User { socket, port: peer.port(), lines: LineSplitter::new(MAX_LINE) });
        let online = self.users.len();
        println!("welcome, online now: {online}");
        let (ip, port) = (peer.ip(), peer.port());
        let greeting = format!("welcome, online now: {online}\nremoteAddress: {ip}\nremotePort: {port}\n");
        cx.write(socket, greeting.as_bytes());
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        let Some(sender) = self.users.iter_mut().find(|u| u.socket == socket) else { return };
        let port = sender.port;
        let mut messages = Vec::new();
        let fed = sender.lines.feed(data, |line| {
            let text = String::from_utf8_lossy(line).trim().to_string();
            if !text.is_empty() {
                messages.push(text);
            }
        });
        for text in messages {
            println!("{port}:{text}");
            // Encoded once, queued by reference to every other user.
            let relay: SharedBytes = Rc::from(format!("{port}:{text}\n").into_bytes());
            for user in self.users.iter().filter(|u| u.socket != socket) {
                cx.write_shared(user.socket, &relay);
            }
        }
        if let Err(too_long) = fed {
            cx.end_with(socket, format!("error: {too_long}\n").as_bytes());
        }
    }

    fn on_close(&mut self, _cx: &mut Context, socket: SocketId, error: Option<&SocketError>) {
        if let Some(err) = error {
            println!("a client failed: {err}");
        }
        let Some(index) = self.users.iter().position(|u| u.socket == socket) else { return };
        let user = self.users.remove(index);
        println!("{} left, online now: {}", user.port, self.users.len());
    }
}

/// The chat client: two sockets on one loop, the server and stdin.
struct ChatClient {
    server: SocketId,
    stdin: SocketId,
    lines: LineSplitter,
    failed: bool,
}

impl ChatClient {
    /// `client.write(data.toString().trim())`, one message per typed line. The newline the
    /// Node original trimmed off is put back, since the server reads lines.
    fn send_lines(&mut self, cx: &mut Context, data: &[u8]) {
        let mut out = Vec::new();
        let fed = self.lines.feed(data, |line| {
            let text = String::from_utf8_lossy(line);
            let text = text.trim();
            if !text.is_empty() {
                out.extend_from_slice(text.as_bytes());
                out.push(b'\n');
            }
        });
        if fed.is_err() {
            eprintln!("line too long, not sent");
            self.lines = LineSplitter::new(MAX_LINE);
        }
        if !out.is_empty() && !cx.write(self.server, &out) {
            // The server is not keeping up: stop reading stdin until `drain`.
            cx.pause(self.stdin);
        }
    }
}

impl Handler for ChatClient {
    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        if socket == self.stdin {
            self.send_lines(cx, data);
        } else {
            let mut out = io::stdout().lock();
            let _ = out.write_all(data).and_then(|()| out.flush());
        }
    }

    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        if socket == self.stdin {
            // The last line may lack its newline.
            self.send_lines(cx, b"\n");
            // Half-close: what the server still sends is printed until it closes.
            cx.end(self.server);
        }
    }

    fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {
        if socket == self.server {
            cx.resume(self.stdin);
        }
    }

    fn on_close(&mut self, cx: &mut Context, socket: SocketId, error: Option<&SocketError>) {
        if socket == self.server {
            if let Some(err) = error {
                eprintln!("error: {err}");
                self.failed = true;
            }
            cx.stop();
        }
    }
}

/// Node's `process.stdin`, unref'd: only the server connection keeps the loop alive.
fn stdin_socket(cx: &mut Context) -> io::Result<SocketId> {
    let socket = netloop::stdin::socket(cx)?;
    cx.set_socket_ref(socket, false);
    Ok(socket)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let addr = format!("127.0.0.1:{}", args.port).parse::<AddressSpec>()?.resolve_one()?;
    let mut event_loop = EventLoop::new()?;
    let cx = event_loop.context();
    match args.mode {
        None => {
            // Node would queue without bound for a user who never reads; cap it per user.
            let socket = SocketOptions { max_buffer: Some(1 << 20), ..SocketOptions::default() };
            cx.listen(&addr, ServerOptions { socket, ..ServerOptions::default() })?;
            event_loop.run(&mut Counter::default())?;
        }
        Some(Mode::Client) => {
            let server = cx.connect(&addr);
            let stdin = stdin_socket(cx)?;
            let mut client = ChatClient { server, stdin, lines: LineSplitter::new(MAX_LINE), failed: false };
            event_loop.run(&mut client)?;
            if client.failed {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
