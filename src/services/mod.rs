//! The services `netloop serve` runs, and the [`Service`] trait through which they plug in.
//!
//! `serve` owns the loop's [`crate::Handler`]; a service only sees the events of the sockets
//! it owns (those its listeners accepted, and outbound ones opened for it), routed by a
//! per-socket owner table, so a new service is a new type, not a new arm in every dispatch.

pub mod chat;
pub mod echo;
pub mod http_probe;
pub mod hub;
pub mod member;
pub mod per_socket;
pub mod presence;
mod roster;
pub mod telnet;

pub use roster::{Iter as RosterIter, Roster};

use crate::addr::{display_socket_addr, SocketAddress};
use crate::context::Context;
use crate::handler::{ServerId, SocketId};
use crate::input_budget::InputCut;
use crate::timers::TimerId;

/// A protocol `netloop serve` runs: the events of the sockets it owns. Every socket event has
/// an empty default, like a Node event nobody listens to.
#[allow(unused_variables)]
pub trait Service {
    /// The name printed in `<service> listening on <address>`.
    fn name(&self) -> &'static str;

    /// The one line a connection over the loop-wide cap (`--max-connections`, here `max`) gets
    /// before it is closed, in this service's protocol so a client parses it like any error.
    fn refusal(&self, max: usize) -> Vec<u8>;

    /// Whether this service opened the outbound `socket` itself (`Context::connect` inside one
    /// of its events). Asked once, at the first event of a socket nobody owns yet; the answer
    /// is kept, so the service owns it from then on.
    fn opened(&self, socket: SocketId) -> bool {
        false
    }

    /// The server is up (every listener bound): start what the service runs on its own (a
    /// bus's connections to the other nodes).
    fn start(&mut self, cx: &mut Context) {}

    /// Logs the service's own counters, if it keeps any, with the loop's (`--stats-interval`,
    /// SIGUSR1).
    fn log_counters(&self) {}

    /// The first SIGINT/SIGTERM: about to end every socket. Say goodbye where others wait
    /// for it (the other nodes of a cluster).
    fn on_shutdown(&mut self, cx: &mut Context) {}

    /// Its listener `server` accepted `socket` (a service with several kinds of listener tells
    /// them apart by it).
    fn on_connection(&mut self, cx: &mut Context, server: ServerId, socket: SocketId) {}

    /// `serve` made `server` a web listener of this service (the chat page, `/ws` and
    /// `/socket.io/`: browsers as members). Returns false if the service has no web transport.
    #[cfg(feature = "web")]
    fn serve_web(&mut self, server: ServerId, config: &crate::web::WebConfig) -> bool {
        false
    }

    /// An outbound socket opened for this service finished connecting.
    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {}

    /// Bytes arrived. `data` borrows the loop's read buffer: copy what is kept.
    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {}

    /// The peer sent FIN.
    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {}

    /// The socket's write queue emptied after a `write` returned false.
    fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {}

    /// The socket closed, whatever closed it; its last event.
    fn on_close(&mut self, cx: &mut Context, socket: SocketId) {}

    /// A timer fired. Returns whether it was this service's (services arm their own timers
    /// on the [`Context`], so each recognises its own).
    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) -> bool {
        false
    }

    /// The loop cut `socket` for the unfinished input it held: say why, and hang up.
    fn on_input_cut(&mut self, cx: &mut Context, socket: SocketId, cut: &InputCut) {}

    /// Bytes of unfinished input (a partial line or frame) held for `socket`, reported to the
    /// loop's input accounting after each read and each of its timers. `None`: this service
    /// never holds input, so nothing is reported.
    fn held_input(&self, socket: SocketId) -> Option<usize> {
        None
    }
}

pub use crate::options::HANG_UP_GRACE;

/// A reply to one member. Skipped once the member was ended or destroyed: it stays listed until
/// its close event, and writing after `end()` would destroy it with an error (Node's
/// write-after-end).
pub(crate) fn send(cx: &mut Context, socket: SocketId, bytes: &[u8]) {
    if cx.is_writable(socket) {
        cx.write(socket, bytes);
    }
}

/// How chat labels a member and hub names its session: `127.0.0.1:54321` / `[::1]:54321` for
/// TCP peers (Node's `remoteAddress:remotePort`), `unix:<n>` for Unix-socket peers, which have
/// no address; `unix_peers` is the service's counter, so n starts at 1 per service.
pub(crate) fn peer_label(peer: Option<SocketAddress>, unix_peers: &mut u64) -> String {
    match peer {
        Some(SocketAddress::Inet(a)) => display_socket_addr(&a),
        Some(SocketAddress::Unix(_) | SocketAddress::UnnamedUnix) => {
            *unix_peers += 1;
            format!("unix:{unix_peers}")
        }
        // The peer reset before we asked; the socket is about to close. Any label will do, and
        // this one can never collide with a chat nick (':' is not allowed in those).
        None => "unknown:0".to_string(),
    }
}
