//! The classic Node tutorial's "You said" server, and the client that talks to it.
//!
//! The Node program this mirrors:
//!
//! ```js
//! net.createServer((sock) => {
//!   console.log('CONNECTED: ' + sock.remoteAddress + ':' + sock.remotePort);
//!   sock.on('data', (data) => {
//!     console.log('DATA ' + sock.remoteAddress + ': ' + data);
//!     sock.write('You said "' + data + '"');
//!   });
//!   sock.on('close', () => console.log('CLOSED: ' + sock.remoteAddress + ' ' + sock.remotePort));
//! }).listen(6969, '127.0.0.1');
//! ```
//!
//! and its client, which sends one line, prints the answer and `destroy()`s the socket.
//!
//! Try it:
//!
//! ```sh
//! cargo run --example you_said                        # listening on 127.0.0.1:6969
//! printf 'I am Chuck Norris!' | nc -q1 127.0.0.1 6969 # You said "I am Chuck Norris!"
//! cargo run --example you_said -- client              # the Node original's client
//! node -e "const s = require('net').connect(6969, '127.0.0.1', () => s.write('hi'));
//!          s.on('data', (d) => { console.log('' + d); s.destroy(); })"
//! ```
//!
//! `--port N` picks another port (0: any free one; the `listening on` line shows which).

use std::collections::HashMap;
use std::error::Error;
use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use netloop::{
    AddressSpec, Context, EventLoop, Handler, ServerId, ServerOptions, SocketAddress, SocketError, SocketId,
};

#[derive(Parser)]
#[command(about = "The classic Node tutorial's \"You said\" server (default) or its client")]
struct Args {
    /// Port to listen on (0 = any free port), or to connect to in client mode.
    #[arg(long, global = true, default_value_t = 6969)]
    port: u16,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Send "I am Chuck Norris!", print the reply, destroy the socket.
    Client,
}

/// The server. Node caches `remoteAddress`/`remotePort` on the socket; netloop asks the kernel
/// each time, and a closed socket has no peer any more, so the `CLOSED` line needs the address
/// kept from `connection` time.
#[derive(Default)]
struct YouSaid {
    peers: HashMap<SocketId, SocketAddr>,
}

impl Handler for YouSaid {
    fn on_listening(&mut self, cx: &mut Context, server: ServerId) {
        if let Some(addr) = cx.server_address(server) {
            println!("listening on {addr}");
        }
    }

    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        if let Some(SocketAddress::Inet(peer)) = cx.remote_address(socket) {
            println!("CONNECTED: {}:{}", peer.ip(), peer.port());
            self.peers.insert(socket, peer);
        }
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        if let Some(peer) = self.peers.get(&socket) {
            println!("DATA {}: {text}", peer.ip());
        }
        cx.write(socket, format!("You said \"{text}\"").as_bytes());
    }

    fn on_close(&mut self, _cx: &mut Context, socket: SocketId, _error: Option<&SocketError>) {
        if let Some(peer) = self.peers.remove(&socket) {
            println!("CLOSED: {} {}", peer.ip(), peer.port());
        }
    }
}

/// The Node original's client: `client.connect(PORT, HOST, ...)`, one write, `destroy()` on the reply.
struct Client {
    target: SocketAddress,
    failed: bool,
}

impl Handler for Client {
    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {
        println!("CONNECTED TO: {}", self.target);
        cx.write(socket, b"I am Chuck Norris!");
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        println!("DATA: {}", String::from_utf8_lossy(data));
        // Close completely, as the Node original does: no FIN handshake, `close` follows at once.
        cx.destroy(socket);
    }

    fn on_close(&mut self, _cx: &mut Context, _socket: SocketId, error: Option<&SocketError>) {
        if let Some(err) = error {
            eprintln!("error: {err}");
            self.failed = true;
        }
        println!("Connection closed");
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let addr = format!("127.0.0.1:{}", args.port).parse::<AddressSpec>()?.resolve_one()?;
    let mut event_loop = EventLoop::new()?;
    match args.mode {
        None => {
            event_loop.context().listen(&addr, ServerOptions::default())?;
            event_loop.run(&mut YouSaid::default())?;
        }
        Some(Mode::Client) => {
            event_loop.context().connect(&addr);
            let mut client = Client { target: addr, failed: false };
            // The loop returns once the socket has closed: nothing else keeps it alive.
            event_loop.run(&mut client)?;
            if client.failed {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
