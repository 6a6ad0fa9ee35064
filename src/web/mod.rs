//! Browsers on the loop: HTTP/1.1, WebSocket and socket.io.
//!
//! The protocol modules are sans I/O (bytes in, messages and bytes out, no [`crate::Context`]),
//! so each is unit-tested alone:
//! - [`http`]: request heads (with `httparse`, under explicit limits) and responses;
//! - [`websocket`]: the RFC 6455 handshake and a strict frame decoder and encoder;
//! - [`engineio`]: Engine.IO v4 packets, polling payloads and the handshake;
//! - [`socketio`]: Socket.IO v5 packets.
//!
//! [`endpoint`] puts them on the loop: one listener for the chat page, `/ws` and `/socket.io/`,
//! with an application ([`WebApp`]) deciding what the messages mean; [`clients`] is how that
//! application answers (framing per transport, polling outboxes).

pub mod engineio;
pub mod framing;
pub mod http;
pub mod socketio;
pub mod websocket;

pub mod clients;
pub mod endpoint;

pub use clients::{ClientId, WebClients};
pub use endpoint::{WebApp, WebConfig, WebEndpoint};
