//! netloop: Node.js's `net` socket-server model on one `mio` poll loop.
//!
//! A Node program registers listeners on `net.Server` and `net.Socket` objects and lets the
//! event loop drive them. A netloop program implements [`Handler`] (one method per Node event)
//! and runs it on an [`EventLoop`]; through the [`Context`] it writes, ends, pauses, listens,
//! connects and sets timers with Node's semantics: `write()` returns false at the high-water
//! mark, `drain` follows when the queue empties, `end()` flushes then half-closes, `close`
//! fires exactly once and last. Where Node buffers without bound, netloop adds an explicit,
//! documented limit ([`SocketOptions::max_buffer`]).
//!
//! # Layout
//! - [`event_loop`]: the poll loop (one screen) and event dispatch.
//! - [`context`]: what handlers can do; never calls back into them.
//! - [`socket_error`]: why a socket was destroyed with an error, as `on_close` receives it.
//! - `socket`: one connection's state; [`write_queue`]: its pending output; [`flow`]: broadcast
//!   senders slowed while their recipients are behind.
//! - [`idle`]: O(1) idle timeouts; [`timers`]: application timers.
//! - `listener`: listening sockets with a real backlog.
//! - [`line`](mod@line), [`frame`](mod@frame): decoders for the chat and hub protocols;
//!   [`text`]: Node's `setEncoding('utf8')`; [`printable`]: peer text made safe to show.
//! - [`wire`]: each protocol's messages defined once, for the services and the clients.
//! - [`services`]: echo (and the services built on it).
//! - [`connect`]: the `netloop connect` client; [`load`]: the `netloop load` generator.
//! - `cluster` (feature `cluster`, on by default): hub and chat across processes through Redis.
//! - `wrap`: adopting an already connected stream; [`stdin`](mod@stdin): stdin as a socket
//!   for the programs built on the loop (its copying thread lives there, not in the core).
//! - [`log_limit`]: rate-limited log lines for events any peer can trigger; `warnings`: the
//!   loop's own repeated warnings, budgeted and summarised.
//! - `web` (feature `web`, on by default): HTTP, WebSocket and socket.io for browsers;
//!   `socketio`: a socket.io-style server API on it.
//! - [`systemd`]: socket activation and readiness notification.
//! - [`workers`]: `serve --workers N`, the supervisor and its worker processes.
//! - [`input_budget`]: the bound on unfinished input held for all sockets together.
//! - [`addr`], [`units`], [`options`], [`limits`], [`error`]: small supporting pieces.
//!
//! See `docs/architecture.md` and `docs/node-semantics.md` in the repository.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod addr;
pub mod bus;
mod clock;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod connect;
pub mod context;
pub mod error;
pub mod event_loop;
pub use context::flow;
pub mod frame;
pub mod handler;
pub mod idle;
pub mod ids;
pub mod input_budget;
pub mod limits;
pub mod line;
mod listener;
pub mod load;
pub mod log_limit;
pub mod member_id;
pub mod options;
mod outbound;
pub mod printable;
mod reserve_fd;
pub mod serve;
pub mod services;
mod socket;
pub mod socket_error;
#[cfg(feature = "web")]
pub mod socketio;
pub mod stats;
pub mod stdin;
pub mod systemd;
pub mod text;
pub mod timers;
pub mod units;
mod warnings;
#[cfg(feature = "web")]
pub mod web;
pub mod wire;
pub mod workers;
mod wrap;
pub mod write_queue;

pub use addr::{AddressSpec, SocketAddress};
pub use context::Context;
pub use event_loop::EventLoop;
pub use handler::{Handler, ServerId, SocketId};
pub use options::{ServerOptions, SocketOptions};
pub use socket_error::SocketError;
pub use stats::Stats;
pub use timers::TimerId;
pub use write_queue::SharedBytes;
