//! `netloop serve`: the services on their listeners, one loop, graceful shutdown.
//!
//! A listener table maps each server to the service it runs; the [`Handler`] impl routes each
//! event to that service. Process-level policy lives here, not in the services: idle timeouts
//! close sockets, the first SIGINT/SIGTERM stops accepting and flushes, a second one exits.

use std::io::{self, Write};
use std::time::Duration;

use crate::addr::{Address, SocketAddress};
use crate::context::Context;
use crate::handler::{Handler, ServerId, SocketId};
use crate::limits;
use crate::options::ServerOptions;
use crate::services::chat::{Chat, ChatConfig};
use crate::services::echo::Echo;
use crate::services::hub::{Hub, HubConfig};
use crate::timers::TimerId;

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// Bytes back, with pipe backpressure.
    Echo,
    /// Line chat (`nc`-friendly): broadcasts, nicks, `/who`.
    Chat,
    /// JSON hub: named clients, direct messages, broadcasts, rooms.
    Hub,
}

impl ServiceKind {
    /// The name printed in `<service> listening on <address>`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Echo => "echo",
            ServiceKind::Chat => "chat",
            ServiceKind::Hub => "hub",
        }
    }

    /// The one line a connection over `--max-connections` gets before it is closed.
    fn reject_message(self, max: usize) -> Vec<u8> {
        match self {
            ServiceKind::Echo => format!("error: server full (max connections {max})\n").into_bytes(),
            // Each in its own protocol, so a client parses the refusal like any other error.
            ServiceKind::Chat => format!("* error: server full (max connections {max})\n").into_bytes(),
            ServiceKind::Hub => format!(
                "{{\"type\":\"error\",\"code\":\"server_full\",\"reason\":\"max connections {max}\"}}\n"
            )
            .into_bytes(),
        }
    }
}

/// Everything `netloop serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Listeners and the service each runs.
    pub listeners: Vec<(ServiceKind, Address)>,
    /// Options shared by every listener (its `max_connections`, if set, is Node's: per
    /// listener).
    pub server: ServerOptions,
    /// `--max-connections`: a cap on all listeners together (`Context::set_max_sockets`), since
    /// it protects the process's fds, which every listener draws on.
    pub max_connections: Option<usize>,
    /// Echo's greeting, if any.
    pub echo_banner: Option<Vec<u8>>,
    /// Chat's settings (shared by every chat listener: one chat room across them).
    pub chat: ChatConfig,
    /// Hub's settings (shared by every hub listener: one hub across them).
    pub hub: HubConfig,
    /// How long the first signal waits for queued output before closing what is left.
    pub shutdown_timeout: Duration,
    /// Log the counters this often (`--stats-interval`).
    pub stats_interval: Option<Duration>,
}

/// The `serve` application: routes events to services and owns process policy.
#[derive(Debug)]
pub struct Serve {
    /// Service of each server, indexed by `ServerId::index()`.
    table: Vec<Option<ServiceKind>>,
    echo: Echo,
    chat: Chat,
    hub: Hub,
    shutdown_timeout: Duration,
    /// Set once the first signal arrived; the timer that force-closes stragglers.
    shutdown: Option<TimerId>,
    /// The `--stats-interval` timer.
    stats_timer: Option<TimerId>,
}

impl Serve {
    /// Binds every listener of `config` on `cx`. Fails on the first address that cannot be
    /// bound, with Node's wording (`listen EADDRINUSE: ... 127.0.0.1:8080`).
    pub fn start(cx: &mut Context, config: &ServeConfig) -> io::Result<Self> {
        let mut serve = Serve {
            table: Vec::new(),
            echo: Echo { banner: config.echo_banner.clone() },
            chat: Chat::new(config.chat.clone()),
            hub: Hub::new(config.hub.clone()),
            shutdown_timeout: config.shutdown_timeout,
            shutdown: None,
            stats_timer: None,
        };
        if let Some(every) = config.stats_interval {
            let timer = cx.set_interval(every);
            // Counters alone must not keep a shutting-down server alive.
            cx.set_timer_ref(timer, false);
            serve.stats_timer = Some(timer);
        }
        let cap = config.max_connections;
        cx.set_max_sockets(cap);
        for (kind, addr) in &config.listeners {
            let target =
                addr.resolve_one().map_err(|e| crate::error::context(e, &format!("listen {addr}")))?;
            let mut options = config.server.clone();
            if options.reject_message.is_none() {
                options.reject_message = cap.map(|m| kind.reject_message(m));
            }
            let id = cx.listen(&target, options)?;
            if serve.table.len() <= id.index() {
                serve.table.resize(id.index() + 1, None);
            }
            serve.table[id.index()] = Some(*kind);
        }
        cx.listen_signals(&[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
        Ok(serve)
    }

    fn kind_of(&self, cx: &Context, socket: SocketId) -> Option<ServiceKind> {
        let server = cx.server_of(socket)?;
        self.table.get(server.index()).copied().flatten()
    }

    /// First signal: stop accepting, end every socket (queued output is flushed first), and
    /// give stragglers `shutdown_timeout` before they are closed.
    fn begin_shutdown(&mut self, cx: &mut Context) {
        for server in cx.servers() {
            cx.close_server(server);
        }
        for socket in cx.sockets() {
            cx.end(socket);
            // Keep reading (services drop what arrives after end()) so the peer's FIN is
            // seen and the socket closes cleanly instead of waiting out the timeout.
            cx.resume(socket);
        }
        let timer = cx.set_timer(self.shutdown_timeout);
        // The timer must not keep the loop alive: once every socket is closed we exit at once.
        cx.set_timer_ref(timer, false);
        self.shutdown = Some(timer);
    }
}

impl Handler for Serve {
    fn on_listening(&mut self, cx: &mut Context, server: ServerId) {
        let kind = self.table.get(server.index()).copied().flatten();
        if let (Some(kind), Some(addr)) = (kind, cx.server_address(server)) {
            // Scripts and tests wait for this exact line; flush so pipes see it at once.
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{} listening on {}", kind.name(), addr);
            let _ = out.flush();
            log::info!("{} listening on {}", kind.name(), addr);
        }
    }

    fn on_connection(&mut self, cx: &mut Context, _server: ServerId, socket: SocketId) {
        if log::log_enabled!(log::Level::Debug) {
            let peer = cx.remote_address(socket).map_or_else(|| "?".into(), |a| a.to_string());
            log::debug!("connected: {peer}");
        }
        match self.kind_of(cx, socket) {
            Some(ServiceKind::Echo) => self.echo.on_connection(cx, socket),
            Some(ServiceKind::Chat) => self.chat.on_connection(cx, socket),
            Some(ServiceKind::Hub) => self.hub.on_connection(cx, socket),
            None => {}
        }
    }

    fn on_drop(&mut self, _cx: &mut Context, _server: ServerId, _peer: &SocketAddress) {}

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        match self.kind_of(cx, socket) {
            Some(ServiceKind::Echo) => self.echo.on_data(cx, socket, data),
            Some(ServiceKind::Chat) => self.chat.on_data(cx, socket, data),
            Some(ServiceKind::Hub) => self.hub.on_data(cx, socket, data),
            None => {}
        }
    }

    fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {
        match self.kind_of(cx, socket) {
            Some(ServiceKind::Echo) => self.echo.on_drain(cx, socket),
            // Chat and hub never pause a reader, so drain needs nothing from them: a client
            // that does not read is bounded by the core's output limit instead.
            Some(ServiceKind::Chat | ServiceKind::Hub) | None => {}
        }
    }

    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        match self.kind_of(cx, socket) {
            Some(ServiceKind::Echo) => self.echo.on_end(cx, socket),
            Some(ServiceKind::Chat) => self.chat.on_end(cx, socket),
            Some(ServiceKind::Hub) => self.hub.on_end(cx, socket),
            None => {}
        }
    }

    fn on_timeout(&mut self, cx: &mut Context, socket: SocketId) {
        // Idle: end politely if nothing is queued; a peer that stopped reading gets no FIN
        // it would never see, it is closed. One already ended has its deadline running.
        if !cx.is_writable(socket) {
            return;
        }
        log::debug!("idle timeout: closing socket {}", socket.index());
        cx.stats_mut().timeout_disconnects += 1;
        if cx.buffer_size(socket) == 0 {
            cx.end_within(socket, crate::services::HANG_UP_GRACE);
        } else {
            cx.destroy(socket);
        }
    }

    fn on_error(&mut self, _cx: &mut Context, socket: SocketId, err: &io::Error) {
        log::debug!("socket {}: {}", socket.index(), crate::error::describe(err));
    }

    fn on_close(&mut self, cx: &mut Context, socket: SocketId, had_error: bool) {
        log::debug!("closed: socket {} (had_error={had_error})", socket.index());
        // Members leave here whatever closed them (peer reset, output limit, idle timeout).
        match self.kind_of(cx, socket) {
            Some(ServiceKind::Chat) => self.chat.on_close(cx, socket),
            Some(ServiceKind::Hub) => self.hub.on_close(cx, socket),
            Some(ServiceKind::Echo) | None => {}
        }
    }

    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) {
        if self.stats_timer == Some(timer) {
            let st = cx.stats();
            log::info!(
                "stats: connections={} accepted={} rejected={} rejected_no_fd={} \
                 disconnects(output_limit={} input_limit={} timeout={}) bytes_in={} bytes_out={} \
                 sender_stalls={} sender_stall_ms={}",
                cx.socket_count(),
                st.accepted,
                st.rejected,
                st.rejected_no_fd,
                st.output_limit_disconnects,
                st.input_limit_disconnects,
                st.timeout_disconnects,
                st.bytes_in,
                st.bytes_out,
                st.sender_stalls,
                st.sender_stall_ms
            );
            return;
        }
        if self.hub.on_timer(cx, timer) {
            return;
        }
        if self.shutdown == Some(timer) {
            let left = cx.sockets();
            if !left.is_empty() {
                log::warn!("shutdown timeout: closing {} connection(s) with output still queued", left.len());
            }
            for socket in left {
                cx.destroy(socket);
            }
        }
    }

    fn on_signal(&mut self, cx: &mut Context, signal: i32) {
        if self.shutdown.is_some() {
            log::warn!("second signal ({signal}): exiting now");
            std::process::exit(128 + signal);
        }
        log::info!(
            "signal {signal}: closing listeners, flushing {} connection(s) (up to {:?}); signal again to exit now",
            cx.socket_count(),
            self.shutdown_timeout
        );
        self.begin_shutdown(cx);
    }
}

/// Raises the fd limit and settles `max_connections`: the user's value clamped to what the
/// limit allows (with a warning), or that capacity when unset.
pub fn settle_connection_limit(requested: Option<usize>) -> usize {
    let limit = match limits::raise_fd_limit() {
        Ok((before, after)) => {
            if after > before {
                log::info!("open file limit raised from {before} to {after}");
            }
            after
        }
        Err(e) => {
            log::warn!("could not raise the open file limit: {e}");
            limits::fd_limit().unwrap_or(1024)
        }
    };
    let capacity = limits::connection_capacity(limit);
    match requested {
        Some(n) if n > capacity => {
            log::warn!(
                "--max-connections {n} exceeds what the open file limit ({limit}) allows; using {capacity}. \
                 Raise the hard limit (ulimit -Hn / LimitNOFILE=) to go higher"
            );
            capacity
        }
        Some(n) => n,
        None => capacity,
    }
}
