//! The classic socket.io chat server, on netloop's socket.io API.
//!
//! The Node program this mirrors (socket.io on an HTTP server at 127.0.0.1:8081):
//!
//! ```js
//! io.sockets.on('connection', function (socket) {
//!   socket.on('disconnect', function () { console.log('已断开链接'); });
//!   socket.on('clientmessage', function (data) {
//!     socket.broadcast.emit('message', { text: '你的朋友上线了' });
//!   });
//!   socket.emit('message', { text: '你上线了' });
//! });
//! ```
//!
//! The texts are the Node original's: "you are online" to the newcomer, "your friend is online" to
//! everyone else when a client sends `clientmessage`. Any socket.io client connects, with
//! polling, WebSocket, or polling then upgrade:
//!
//! ```sh
//! cargo run --example socketio_seed                 # listening on 127.0.0.1:8081
//! node -e "const s=require('socket.io-client')('http://127.0.0.1:8081');
//!          s.on('message', m => console.log(m.text)); s.emit('clientmessage', 'hi')"
//! ```
//!
//! `--port N` picks another port (0: any free one).

use std::error::Error;

use clap::Parser;
use netloop::socketio::{Ack, Server, Socket, SocketHandler};
use netloop::{AddressSpec, EventLoop, ServerOptions, SocketAddress};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    about = "The classic Node programs' socket.io chat server: greets each client, tells the others on clientmessage"
)]
struct Args {
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 8081)]
    port: u16,
}

struct SeedChat;

impl SocketHandler for SeedChat {
    fn on_listening(&mut self, addr: &SocketAddress) {
        println!("listening on {addr}");
    }

    fn on_connection(&mut self, socket: &mut Socket<'_>) {
        println!("connected: {} ({} online)", socket.id(), socket.count());
        socket.emit("message", &[json!({ "text": "你上线了" })]);
    }

    fn on_event(&mut self, socket: &mut Socket<'_>, event: &str, _args: &[Value], _ack: Option<Ack>) {
        if event == "clientmessage" {
            socket.broadcast().emit("message", &[json!({ "text": "你的朋友上线了" })]);
        }
    }

    fn on_disconnect(&mut self, socket: &mut Socket<'_>, reason: &str) {
        // The Node original's '已断开链接': "disconnected".
        println!("已断开链接: {} ({reason})", socket.id());
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let addr = format!("127.0.0.1:{}", args.port).parse::<AddressSpec>()?.resolve_one()?;
    let mut event_loop = EventLoop::new()?;
    event_loop.context().listen(&addr, ServerOptions::default())?;
    event_loop.run(&mut Server::new(SeedChat, Default::default()))?;
    Ok(())
}
