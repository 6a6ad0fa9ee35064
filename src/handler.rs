//! How applications plug into the loop: Node's socket and server events as trait methods.
//!
//! A Node program attaches listeners (`socket.on('data', ...)`); a netloop program implements
//! [`Handler`] once and the loop calls it. Every method receives the [`Context`], through which
//! the handler writes, ends, pauses, listens, connects and sets timers. Handlers never see
//! `mio`. Events are always delivered from the loop, never from inside a `Context` call, so a
//! handler is never re-entered (Node's "emit on the next tick" rule, e.g. `drain` never fires
//! inside `write()`).

use std::io;

use crate::addr::SocketAddress;
use crate::context::Context;
use crate::socket_error::SocketError;
use crate::timers::TimerId;

pub use crate::ids::{ServerId, SocketId};

/// Node's `net` events. Every method has an empty default, like an event nobody listens to.
#[allow(unused_variables)]
pub trait Handler {
    /// `server.on('listening')`: the server is bound and accepting.
    fn on_listening(&mut self, cx: &mut Context, server: ServerId) {}

    /// `server.on('connection')`: a socket was accepted.
    fn on_connection(&mut self, cx: &mut Context, server: ServerId, socket: SocketId) {}

    /// `server.on('drop')`: a connection was refused because of the server's `max_connections`
    /// or the loop-wide `max_sockets`.
    fn on_drop(&mut self, cx: &mut Context, server: ServerId, peer: &SocketAddress) {}

    /// `server.on('error')` for errors after listening started (accept failures).
    fn on_server_error(&mut self, cx: &mut Context, server: ServerId, err: &io::Error) {}

    /// `server.on('close')`: the server was closed and its last connection has closed.
    fn on_server_close(&mut self, cx: &mut Context, server: ServerId) {}

    /// `socket.on('connect')`: an outbound connection is established.
    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {}

    /// `socket.on('data')`. `data` borrows the loop's shared read buffer: copy what you keep.
    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {}

    /// `socket.on('end')`: the peer sent FIN. Unless `allow_half_open`, the loop ends our side
    /// right after this returns (writes made here are still delivered).
    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {}

    /// `socket.on('drain')`: the write queue emptied after a `write` returned false.
    fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {}

    /// `socket.on('timeout')`: idle for the `set_timeout` duration. Notification only; the
    /// socket stays open unless the handler ends or destroys it.
    fn on_timeout(&mut self, cx: &mut Context, socket: SocketId) {}

    /// `socket.on('error')` and `socket.on('close', hadError)` in one: exactly once per socket,
    /// always its last event. `error` is what Node's `'error'` would have carried, `None` for
    /// a clean close (`hadError` false); Node emits `'error'` right before `'close'`, so one
    /// call holds both and nothing needs keeping between them.
    fn on_close(&mut self, cx: &mut Context, socket: SocketId, error: Option<&SocketError>) {}

    /// The loop cut `socket` for the unfinished input it held ([`crate::input_budget`]): the
    /// handler says why in its own protocol and hangs up (`end_within`). If the socket is
    /// still writable afterwards, the loop destroys it.
    fn on_input_cut(&mut self, cx: &mut Context, socket: SocketId, cut: &crate::input_budget::InputCut) {}

    /// A timer set with `Context::set_timeout` / `set_interval` fired.
    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) {}

    /// A signal registered with `Context::listen_signals` arrived (`process.on('SIGTERM')`).
    fn on_signal(&mut self, cx: &mut Context, signal: i32) {}
}
