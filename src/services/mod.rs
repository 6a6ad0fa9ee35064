//! The services `netloop serve` runs, each a [`crate::Handler`]-driven application.

pub mod chat;
pub mod echo;
pub mod hub;
mod roster;

pub use roster::{Iter as RosterIter, Roster};

use crate::addr::{display_socket_addr, SocketAddress};
use crate::context::Context;
use crate::handler::SocketId;
use crate::write_queue::SharedBytes;

/// How long a peer the server hung up on (a broken limit, a missed registration deadline,
/// an idle timeout) has to read the last words and close, before its socket is destroyed
/// ([`Context::end_within`]). Long enough for any live client to read one line.
pub const HANG_UP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A reply to one member. Skipped once the member was ended or destroyed: it stays listed until
/// its close event, and writing after `end()` would destroy it with an error (Node's
/// write-after-end).
pub(crate) fn send(cx: &mut Context, socket: SocketId, bytes: &[u8]) {
    if cx.is_writable(socket) {
        cx.write(socket, bytes);
    }
}

/// One recipient of a broadcast: queued by reference, corked so every broadcast of this loop
/// turn reaches it in one syscall, and flow-controlled: if it is left behind, the member whose
/// message this is stops being read for a while ([`crate::flow`]). Skipped like [`send`].
pub(crate) fn send_shared(cx: &mut Context, socket: SocketId, line: &SharedBytes) {
    if cx.is_writable(socket) {
        cx.write_broadcast(socket, line);
    }
}

/// How chat labels a connection and hub names its session: `127.0.0.1:54321` / `[::1]:54321`
/// for TCP peers (Node's `remoteAddress:remotePort`), `unix:<n>` for Unix-socket peers, which
/// have no address; `unix_peers` is the service's counter, so n starts at 1 per service.
pub(crate) fn peer_label(cx: &Context, socket: SocketId, unix_peers: &mut u64) -> String {
    match cx.remote_address(socket) {
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
