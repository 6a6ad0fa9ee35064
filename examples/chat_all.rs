//! The chat server where every message goes to *all* clients, the sender included.
//!
//! The Node program this mirrors:
//!
//! ```js
//! let clientArr = [];
//! const server = net.createServer();
//! server.on('connection', (person) => {
//!   console.log(clientArr.length);
//!   person.id = clientArr.length;
//!   clientArr.push(person);
//!   person.setEncoding('utf8');
//!   person.on('data', (chunk) => {
//!     console.log(chunk);
//!     clientArr.forEach((val) => val.write(chunk));
//!   });
//!   person.on('close', () => { clientArr[person.id] = null; });
//!   person.on('error', () => { clientArr[person.id] = null; });
//! });
//! server.listen(800);
//! ```
//!
//! Try it (port 8000: the Node original's port 800 needs root on most systems):
//!
//! ```sh
//! cargo run --example chat_all                              # listening on 127.0.0.1:8000
//! nc 127.0.0.1 8000                                         # in two terminals; type lines
//! cargo run --example online_counter -- client --port 8000  # the Node original's readline client
//! ```
//!
//! `--port N` picks another port (0: any free one).
//!
//! A chunk is relayed as it arrived, not cut into lines, as in the Node original. The Node original's handlers
//! also show a bug this avoids: `clientArr[p1.id]` reads `id` from the `close`/`error`
//! argument (a boolean or an Error), not from the socket, so nobody was ever removed.

use std::error::Error;
use std::rc::Rc;

use clap::Parser;
use netloop::text::Utf8Decoder;
use netloop::{
    AddressSpec, Context, EventLoop, Handler, ServerId, ServerOptions, SharedBytes, SocketError, SocketId,
    SocketOptions,
};

#[derive(Parser)]
#[command(about = "A chat server: every chunk goes to every client")]
struct Args {
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 8000)]
    port: u16,
}

/// The server: the Node original's `clientArr`, without the `null` holes (removal is O(n), as a
/// `splice` would be; fine for a chat room).
#[derive(Default)]
struct ChatAll {
    /// Each client with its `setEncoding('utf8')` decoder, for the console.
    clients: Vec<(SocketId, Utf8Decoder)>,
}

impl Handler for ChatAll {
    fn on_listening(&mut self, cx: &mut Context, server: ServerId) {
        if let Some(addr) = cx.server_address(server) {
            println!("listening on {addr}");
        }
    }

    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        self.clients.push((socket, Utf8Decoder::new()));
        if let Some(peer) = cx.remote_address(socket) {
            println!("{peer} joined, {} online", self.clients.len());
        }
    }

    /// Every chunk to every client, the sender too. The chunk is copied once into shared
    /// bytes; what a slow reader's kernel buffer cannot take is queued by reference.
    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        // `console.log(chunk)`, without doubling the newline the chunk usually ends with.
        if let Some((_, decoder)) = self.clients.iter_mut().find(|(c, _)| *c == socket) {
            println!("{}", decoder.decode(data).trim_end_matches(['\r', '\n']));
        }
        // Relayed as bytes: each receiver reassembles a split character itself.
        let chunk: SharedBytes = Rc::from(data);
        for (client, _) in &self.clients {
            cx.write_shared(*client, &chunk);
        }
    }

    /// Only reported: `close` always follows `error` in netloop, so removal happens there once.
    fn on_close(&mut self, _cx: &mut Context, socket: SocketId, error: Option<&SocketError>) {
        if let Some(err) = error {
            println!("a client failed: {err}");
        }
        self.clients.retain(|(c, _)| *c != socket);
        println!("a client left, {} online", self.clients.len());
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let addr = format!("127.0.0.1:{}", args.port).parse::<AddressSpec>()?.resolve_one()?;
    let mut event_loop = EventLoop::new()?;
    // Node would queue without bound for a client that never reads; cap it per client.
    let socket = SocketOptions { max_buffer: Some(1 << 20), ..SocketOptions::default() };
    event_loop.context().listen(&addr, ServerOptions { socket, ..ServerOptions::default() })?;
    event_loop.run(&mut ChatAll::default())?;
    Ok(())
}
