//! Members, and how a service reaches them whatever carries them.
//!
//! Chat and hub speak to [`MemberId`]s, not sockets: a member may be a raw TCP or Unix
//! connection today, and a WebSocket or socket.io session next, each behind its own transport.
//! What a service sends is a [`Outgoing`] message (its bytes in the service's own encoding);
//! the member's [`Link`] says how those bytes are framed for it and where they are written. A
//! message for many members is framed once per [`Framing`], then queued to each by reference.

use std::cell::OnceCell;
use std::rc::Rc;

use crate::context::Context;
use crate::handler::SocketId;
use crate::write_queue::SharedBytes;

pub use crate::member_id::MemberId;

/// How one message is framed for a kind of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The message, then `\n`: raw TCP and Unix sockets (`nc`, `netloop connect`, Node's `net`).
    Line,
    /// One WebSocket text frame holding the message (`/ws`).
    #[cfg(feature = "web")]
    WebSocketText,
    /// A WebSocket text frame holding the socket.io event `42["<kind>",<message>]`.
    #[cfg(feature = "web")]
    SocketIo,
    /// The socket.io event as a long-polling packet, `\x1e`-terminated (collected into the
    /// next poll's payload by the web transport).
    #[cfg(feature = "web")]
    SocketIoPolling,
}

impl Framing {
    /// How many framings there are: the size of [`Outgoing`]'s cache.
    const COUNT: usize = 4;

    fn slot(self) -> usize {
        match self {
            Framing::Line => 0,
            #[cfg(feature = "web")]
            Framing::WebSocketText => 1,
            #[cfg(feature = "web")]
            Framing::SocketIo => 2,
            #[cfg(feature = "web")]
            Framing::SocketIoPolling => 3,
        }
    }
}

/// How a service reaches one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Written straight to a loop socket, framed for `framing`.
    Socket {
        /// The connection carrying the member.
        socket: SocketId,
        /// How messages are framed on it.
        framing: Framing,
    },
}

impl Link {
    /// A raw TCP or Unix connection speaking newline-terminated messages.
    pub fn line(socket: SocketId) -> Link {
        Link::Socket { socket, framing: Framing::Line }
    }

    /// The socket carrying the member, if one does.
    pub fn socket(self) -> Option<SocketId> {
        match self {
            Link::Socket { socket, .. } => Some(socket),
        }
    }
}

/// One message from a service: its type (the event name, for transports that name messages)
/// and the message as the service writes it on a line transport (hub: one compact JSON
/// object; chat: one line of text), newline included, so the raw TCP path frames nothing.
/// Framed at most once per [`Framing`], however many members get it.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// What kind of message this is (`"broadcast"`, `"online"`, ...).
    pub kind: &'a str,
    /// The message and its `\n`.
    pub line: &'a [u8],
    framed: [OnceCell<SharedBytes>; Framing::COUNT],
}

impl<'a> Outgoing<'a> {
    /// A message of type `kind`; `line` ends with its newline.
    pub fn new(kind: &'a str, line: &'a [u8]) -> Self {
        Outgoing { kind, line, framed: Default::default() }
    }

    /// The message without its line terminator, for transports that frame messages
    /// themselves.
    pub fn text(&self) -> &'a [u8] {
        self.line.strip_suffix(b"\n").unwrap_or(self.line)
    }

    /// The message framed for `framing`, made on first use and shared after.
    pub fn framed(&self, framing: Framing) -> &SharedBytes {
        self.framed[framing.slot()].get_or_init(|| match framing {
            Framing::Line => Rc::from(self.line),
            #[cfg(feature = "web")]
            Framing::WebSocketText => Rc::from(crate::web::framing::websocket_text(self.text())),
            #[cfg(feature = "web")]
            Framing::SocketIo => Rc::from(crate::web::framing::socketio_websocket(self.kind, self.text())),
            #[cfg(feature = "web")]
            Framing::SocketIoPolling => {
                Rc::from(crate::web::framing::socketio_polling(self.kind, self.text()))
            }
        })
    }

    /// Takes an already shared copy of the line as its [`Framing::Line`] form, so a caller
    /// that holds one (a presence notice kept for later) costs no second allocation.
    pub fn with_line(self, shared: &SharedBytes) -> Self {
        let _ = self.framed[Framing::Line.slot()].set(Rc::clone(shared));
        self
    }
}

/// A reply to one member. Skipped once the member's socket was ended or destroyed: the
/// member stays listed until its close event, and writing after `end()` would destroy it with
/// an error (Node's write-after-end).
pub fn send(cx: &mut Context, link: Link, message: &Outgoing<'_>) {
    match link {
        Link::Socket { socket, framing } => {
            if cx.is_writable(socket) {
                match framing {
                    Framing::Line => cx.write(socket, message.line),
                    #[cfg(feature = "web")]
                    _ => cx.write_shared(socket, message.framed(framing)),
                };
            }
        }
    }
}

/// One recipient of a message for many: queued by reference, corked so every broadcast of
/// this loop turn reaches it in one syscall, and flow-controlled (a recipient left behind
/// stalls the sender for a while: [`crate::flow`]). Skipped like [`send`].
pub fn deliver(cx: &mut Context, link: Link, message: &Outgoing<'_>) {
    match link {
        Link::Socket { socket, framing } => {
            if cx.is_writable(socket) {
                cx.write_broadcast(socket, message.framed(framing));
            }
        }
    }
}

/// Ends the member's connection after what was queued for it, destroying it if it has not
/// closed within `grace` (a peer that stopped reading cannot hold it).
pub fn hang_up(cx: &mut Context, link: Link, grace: std::time::Duration) {
    match link {
        Link::Socket { socket, framing } => {
            // A WebSocket says goodbye with a close frame (1008: the service's policy).
            #[cfg(feature = "web")]
            if matches!(framing, Framing::WebSocketText | Framing::SocketIo) && cx.is_writable(socket) {
                cx.write(
                    socket,
                    &crate::web::websocket::encode_close(
                        crate::web::websocket::close_code::POLICY_VIOLATION,
                        "",
                    ),
                );
            }
            let _ = framing;
            cx.end_within(socket, grace)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_framed_once_per_framing() {
        let message = Outgoing::new("broadcast", b"{\"type\":\"broadcast\"}\n");
        assert_eq!(message.text(), b"{\"type\":\"broadcast\"}");
        let first = Rc::clone(message.framed(Framing::Line));
        assert_eq!(&first[..], b"{\"type\":\"broadcast\"}\n");
        assert!(Rc::ptr_eq(&first, message.framed(Framing::Line)));
    }
}
