//! The `net` reference's example. The server greets each connection with
//! `Hello World!\r\n`, then pipes the socket into itself (an echo with backpressure); the
//! client prints the first data it gets and ends.
//!
//! The Node program this mirrors:
//!
//! ```js
//! const server = net.createServer((connection) => {
//!   console.log('client connected');
//!   connection.on('end', () => console.log('client disconnected'));
//!   connection.write('Hello World!\r\n');
//!   connection.pipe(connection);
//! });
//! server.listen(8080, () => console.log('server is listening'));
//!
//! const client = net.connect({ port: 8080 }, () => console.log('connected to server!'));
//! client.on('data', (data) => { console.log(data.toString()); client.end(); });
//! client.on('end', () => console.log('disconnected from server'));
//! ```
//!
//! Try it:
//!
//! ```sh
//! cargo run --example hello_pipe                 # listening on 127.0.0.1:8080
//! nc 127.0.0.1 8080                              # Hello World!, then echoes what you type
//! cargo run --example hello_pipe -- client       # connected to server! / Hello World! / ...
//! ```
//!
//! `--port N` picks another port (0: any free one), for both modes.
//! (`netloop serve --echo ADDR --echo-banner 'Hello World!\r\n'` is the same server, built
//! from `netloop::services::echo`.)

use std::error::Error;
use std::io::{self, Write};

use clap::{Parser, Subcommand};
use netloop::{AddressSpec, Context, EventLoop, Handler, ServerId, ServerOptions, SocketError, SocketId};

#[derive(Parser)]
#[command(about = "The Hello World! + pipe server (default) or its client")]
struct Args {
    /// Port to listen on (0 = any free port), or to connect to in client mode.
    #[arg(long, global = true, default_value_t = 8080)]
    port: u16,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Connect, print the first data received, end.
    Client,
}

/// The server: `write('Hello World!\r\n')`, then `connection.pipe(connection)`.
struct HelloPipe;

impl Handler for HelloPipe {
    fn on_listening(&mut self, cx: &mut Context, server: ServerId) {
        if let Some(addr) = cx.server_address(server) {
            println!("listening on {addr}");
        }
    }

    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        println!("client connected");
        cx.write(socket, b"Hello World!\r\n");
    }

    /// `pipe()`'s half: write what was read back; when `write` says the queue is full, stop
    /// reading. The client's unread data then waits in the kernel, and past that, in the client:
    /// a client that sends without reading cannot make the server buffer without bound.
    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        if !cx.write(socket, data) {
            cx.pause(socket);
        }
    }

    /// The other half: the queue emptied, read again.
    fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {
        cx.resume(socket);
    }

    /// `pipe()` ends the destination when the source ends (here the loop would do it anyway:
    /// `allow_half_open` is off, as in Node).
    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        println!("client disconnected");
        cx.end(socket);
    }
}

/// The client: print the first chunk, `end()`, report the server's FIN.
struct Client {
    failed: bool,
}

impl Handler for Client {
    fn on_connect(&mut self, _cx: &mut Context, _socket: SocketId) {
        println!("connected to server!");
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        // `console.log(data.toString())`: the data as is, plus a newline.
        let mut out = io::stdout().lock();
        let _ = out.write_all(data).and_then(|()| out.write_all(b"\n"));
        cx.end(socket);
    }

    fn on_end(&mut self, _cx: &mut Context, _socket: SocketId) {
        println!("disconnected from server");
    }

    fn on_close(&mut self, _cx: &mut Context, _socket: SocketId, error: Option<&SocketError>) {
        if let Some(err) = error {
            eprintln!("error: {err}");
            self.failed = true;
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let addr = format!("127.0.0.1:{}", args.port).parse::<AddressSpec>()?.resolve_one()?;
    let mut event_loop = EventLoop::new()?;
    match args.mode {
        None => {
            event_loop.context().listen(&addr, ServerOptions::default())?;
            event_loop.run(&mut HelloPipe)?;
        }
        Some(Mode::Client) => {
            event_loop.context().connect(&addr);
            let mut client = Client { failed: false };
            event_loop.run(&mut client)?;
            if client.failed {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
