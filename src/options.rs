//! Per-server and per-socket settings, with Node's defaults unless noted.

use std::time::Duration;

/// Settings every socket of one server (or every outbound socket) shares.
///
/// Kept once per server rather than per socket so an idle connection stays small.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// `write()` returns false once this many bytes are queued (Node 20: 16 KiB).
    pub high_water_mark: usize,
    /// Hard cap on queued output; a socket that passes it is destroyed with an error.
    /// `None` keeps Node's unbounded buffering. Compare Redis's `client-output-buffer-limit`.
    /// Counted after the kernel took what it would; a broadcast recipient gets a bounded grace
    /// while its senders are stalled (see [`crate::flow`]).
    pub max_buffer: Option<usize>,
    /// Soft limit: a socket whose queue stays above this many bytes for this long is
    /// disconnected (Redis's `client-output-buffer-limit ... soft seconds`), catching clients
    /// that keep up too slowly without ever reaching the hard limit.
    pub soft_limit: Option<(usize, Duration)>,
    /// Keep writing after the peer's FIN (Node's `allowHalfOpen`, default false).
    pub allow_half_open: bool,
    /// Disable Nagle's algorithm (Node's server default is false).
    pub no_delay: bool,
    /// TCP keepalive with this initial delay (Node's `keepAlive`/`keepAliveInitialDelay`).
    pub keep_alive: Option<Duration>,
    /// Idle timeout armed on accept (`socket.setTimeout`), or `None`.
    pub idle_timeout: Option<Duration>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            high_water_mark: 16 * 1024,
            max_buffer: None,
            soft_limit: None,
            allow_half_open: false,
            no_delay: false,
            keep_alive: None,
            idle_timeout: None,
        }
    }
}

/// Settings of one listening server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `listen()` backlog. Node uses 511 and mio 128; a burst of thousands of connects needs
    /// more or clients wait for SYN retries, so we default to 1024.
    pub backlog: u32,
    /// Refuse connections beyond this many live ones (Node's `server.maxConnections`).
    pub max_connections: Option<usize>,
    /// Written (best effort) to a refused connection before it is closed. Node writes nothing;
    /// a one-line reason is kinder to humans and is what Redis does.
    pub reject_message: Option<Vec<u8>>,
    /// Settings applied to every accepted socket.
    pub socket: SocketOptions,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            backlog: 1024,
            max_connections: None,
            reject_message: None,
            socket: SocketOptions::default(),
        }
    }
}

/// How long a peer the server hung up on (a broken limit, a missed registration deadline,
/// an idle timeout) has to read the last words and close, before its socket is destroyed
/// ([`crate::Context::end_within`]). Long enough for any live client to read one line.
pub const HANG_UP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
