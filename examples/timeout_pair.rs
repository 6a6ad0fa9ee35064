//! A server and two clients in one process, with `setTimeout(500)` on
//! both sides and a `writeData()` helper that respects `write()`'s backpressure signal.
//!
//! The Node program this mirrors (abridged):
//!
//! ```js
//! function getConnection(name) {
//!   const client = net.connect({ port: 8017, host: '127.0.0.1' }, function () {
//!     this.setTimeout(500);
//!     this.on('data', (data) => console.log(name + ' From Server: ' + data));
//!     this.on('timeout', () => console.log('Socket Time Out'));
//!   });
//!   return client;
//! }
//! function writeData(socket, data) {
//!   if (!socket.write(data)) socket.once('drain', () => writeData(socket, data));
//! }
//! writeData(getConnection('example1'), 'This is example1');
//! const server = net.createServer((client) => {
//!   client.setTimeout(500);
//!   client.on('data', (data) => {
//!     writeData(client, 'Sending: ' + data);
//!     console.log('  Bytes sent: ' + client.bytesWritten);
//!   });
//!   client.on('end', () => server.getConnections((err, n) => console.log('Remaining Connections: ' + n)));
//! });
//! server.listen(8017);
//! ```
//!
//! The Node original runs forever; here each client sends three messages, one per idle timeout (so the
//! `timeout` events carry the conversation and show they only notify, never close), then ends.
//! The server closes once its connections reach 0, and the process exits by itself.
//!
//! Try it: `cargo run --example timeout_pair` (or `-- --port 0` if 8017 is taken).

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::time::Duration;

use clap::Parser;
use netloop::text::Utf8Decoder;
use netloop::{AddressSpec, Context, EventLoop, Handler, ServerId, ServerOptions, SocketError, SocketId};

/// `socket.setTimeout(500)` on both sides.
const IDLE: Duration = Duration::from_millis(500);
/// Messages each client sends before it ends.
const MESSAGES: usize = 3;

#[derive(Parser)]
#[command(about = "One server, two clients, setTimeout(500), write/drain")]
struct Args {
    /// Port to listen on and connect to (0 = any free port).
    #[arg(long, default_value_t = 8017)]
    port: u16,
}

/// The tutorial's `writeData()`, corrected. `write()` returning false does not mean the data was
/// refused: it was queued, and the queue is past the high-water mark. Writing the same data
/// again on `drain`, as the Node original does, would send it twice (in Node too). The idiom is to hold
/// further writes until `drain`, which is what this does, per socket.
#[derive(Default)]
struct Writer {
    /// Sockets waiting for `drain`, with what was written to them meanwhile.
    waiting: HashMap<SocketId, VecDeque<Vec<u8>>>,
}

impl Writer {
    fn write_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        if let Some(held) = self.waiting.get_mut(&socket) {
            held.push_back(data.to_vec());
        } else if !cx.write(socket, data) {
            self.waiting.insert(socket, VecDeque::new());
        }
    }

    /// `drain`: write what was held back, stopping again if the mark is reached.
    fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {
        let Some(mut held) = self.waiting.remove(&socket) else { return };
        while let Some(data) = held.pop_front() {
            if !cx.write(socket, &data) {
                self.waiting.insert(socket, held);
                return;
            }
        }
    }

    fn forget(&mut self, socket: SocketId) {
        self.waiting.remove(&socket);
    }
}

/// One of the outbound connections (`getConnection(name)`).
struct Client {
    name: &'static str,
    socket: SocketId,
    sent: usize,
}

/// The whole program: both clients and the server share one handler, as they share one
/// process (and one event loop) in the Node original.
struct Pair {
    server: ServerId,
    clients: Vec<Client>,
    /// Server-side sockets and their peer's port, kept for the lines printed at `close`.
    accepted: HashMap<SocketId, u16>,
    /// `setEncoding('utf8')` on every socket: a character split between reads stays whole.
    decoders: HashMap<SocketId, Utf8Decoder>,
    writer: Writer,
}

impl Pair {
    fn client(&mut self, socket: SocketId) -> Option<&mut Client> {
        self.clients.iter_mut().find(|c| c.socket == socket)
    }

    fn send_next(&mut self, cx: &mut Context, socket: SocketId) {
        let Some(client) = self.client(socket) else { return };
        client.sent += 1;
        let message = format!("This is {}, message {}", client.name, client.sent);
        self.writer.write_data(cx, socket, message.as_bytes());
    }

    /// `server.close()` once nobody is left: no clients of ours and no accepted connections.
    fn maybe_close_server(&mut self, cx: &mut Context) {
        if self.clients.is_empty() && cx.connections(self.server) == 0 && cx.is_listening(self.server) {
            println!("[server] no connections left, closing");
            cx.close_server(self.server);
        }
    }
}

impl Handler for Pair {
    fn on_listening(&mut self, cx: &mut Context, server: ServerId) {
        if let Some(addr) = cx.server_address(server) {
            println!("listening on {addr}");
        }
    }

    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        let (local, remote) = (cx.local_address(socket), cx.remote_address(socket));
        let (Some(local), Some(remote)) = (local, remote) else { return };
        println!("[server] client connection: local={local} remote={remote}");
        self.accepted.insert(socket, remote.port().unwrap_or(0));
        cx.set_timeout(socket, IDLE);
    }

    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {
        let (local, remote) = (cx.local_address(socket), cx.remote_address(socket));
        let (Some(client), Some(local), Some(remote)) = (self.client(socket), local, remote) else { return };
        println!("[{}] connected: local={local} remote={remote}", client.name);
        cx.set_timeout(socket, IDLE);
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        let text = self.decoders.entry(socket).or_default().decode(data);
        if let Some(client) = self.client(socket) {
            println!("[{}] from server: {text}", client.name);
        } else if let Some(&port) = self.accepted.get(&socket) {
            println!("[server] received from port {port}: {text}");
            self.writer.write_data(cx, socket, format!("Sending: {text}").as_bytes());
            println!("[server] bytes sent to port {port}: {}", cx.bytes_written(socket));
        }
    }

    fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {
        self.writer.on_drain(cx, socket);
    }

    /// Idle for 500 ms. A client uses the pause to send its next message, or ends after the
    /// last one; the server only reports it.
    fn on_timeout(&mut self, cx: &mut Context, socket: SocketId) {
        if let Some(&port) = self.accepted.get(&socket) {
            println!("[server] timeout on port {port}");
            return;
        }
        let Some(client) = self.client(socket) else { return };
        println!("[{}] timeout", client.name);
        if client.sent < MESSAGES {
            self.send_next(cx, socket);
        } else if cx.is_writable(socket) {
            println!("[{}] done, ending", client.name);
            cx.end(socket);
        }
    }

    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        if let Some(client) = self.client(socket) {
            println!("[{}] server ended the connection", client.name);
        } else if let Some(&port) = self.accepted.get(&socket) {
            // Like Node's getConnections() here, the count still includes this socket: it is
            // only half closed until the loop ends our side after this returns.
            println!("[server] client on port {port} disconnected");
            println!("[server] remaining connections: {}", cx.connections(self.server));
        }
    }

    fn on_close(&mut self, cx: &mut Context, socket: SocketId, error: Option<&SocketError>) {
        if let Some(err) = error {
            match self.client(socket) {
                Some(client) => println!("[{}] socket error: {err}", client.name),
                None => println!("[server] socket error: {err}"),
            }
        }
        let had_error = error.is_some();
        self.writer.forget(socket);
        self.decoders.remove(&socket);
        if let Some(i) = self.clients.iter().position(|c| c.socket == socket) {
            let client = self.clients.remove(i);
            println!("[{}] socket closed (had_error={had_error})", client.name);
        } else if let Some(port) = self.accepted.remove(&socket) {
            println!("[server] connection from port {port} closed");
        }
        self.maybe_close_server(cx);
    }

    fn on_server_close(&mut self, _cx: &mut Context, _server: ServerId) {
        println!("[server] terminated");
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let addr = format!("127.0.0.1:{}", args.port).parse::<AddressSpec>()?.resolve_one()?;
    let mut event_loop = EventLoop::new()?;
    let cx = event_loop.context();
    let server = cx.listen(&addr, ServerOptions::default())?;
    // Bound already, so the real port is known (port 0 included) before the loop runs.
    let target = cx.server_address(server).cloned().ok_or("server vanished")?;
    let mut pair = Pair {
        server,
        clients: Vec::new(),
        accepted: HashMap::new(),
        decoders: HashMap::new(),
        writer: Writer::default(),
    };
    for name in ["example1", "example2"] {
        let socket = cx.connect(&target);
        pair.clients.push(Client { name, socket, sent: 0 });
        // As in the Node original, the first write happens before the connection is up: it is queued
        // and goes out on `connect`.
        pair.send_next(cx, socket);
    }
    event_loop.run(&mut pair)?;
    Ok(())
}
