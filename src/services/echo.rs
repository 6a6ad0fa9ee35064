//! Echo: every byte comes back, in order, with `pipe()` backpressure.
//!
//! Node's `socket.pipe(socket)`: when `write` returns false, stop reading until `drain`. So a
//! client that sends without reading can make the server hold at most one high-water mark
//! plus one read of its data; the rest waits in the kernel and, past that, in the client.

use crate::context::Context;
use crate::handler::{ServerId, SocketId};

/// The echo service. Stateless per connection: an idle echo socket costs only its slot.
#[derive(Debug, Default, Clone)]
pub struct Echo {
    /// Written to each connection first (`Hello World!\r\n` in the Node example).
    pub banner: Option<Vec<u8>>,
}

impl Echo {
    /// A connection arrived: greet it if a banner is set.
    pub fn on_connection(&mut self, cx: &mut Context, socket: SocketId) {
        if let Some(b) = &self.banner {
            if !cx.write(socket, b) {
                cx.pause(socket);
            }
        }
    }

    /// `pipe()`'s data handler: write back; pause reading when the queue is full.
    pub fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        if !cx.is_writable(socket) {
            // Ended (shutdown in progress): nothing more will be echoed; drop it.
            return;
        }
        if !cx.write(socket, data) {
            cx.pause(socket);
        }
    }

    /// `pipe()`'s drain handler: the client caught up; read again.
    pub fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {
        cx.resume(socket);
    }

    /// `pipe()` ends the destination when the source ends, even with half-open allowed.
    pub fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        cx.end(socket);
    }
}

impl super::Service for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn refusal(&self, max: usize) -> Vec<u8> {
        let mut line = Vec::new();
        crate::wire::echo::write_server_full(&mut line, max);
        line
    }

    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        Echo::on_connection(self, cx, socket)
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        Echo::on_data(self, cx, socket, data)
    }

    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        Echo::on_end(self, cx, socket)
    }

    fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {
        Echo::on_drain(self, cx, socket)
    }
}
