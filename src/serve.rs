//! `netloop serve`: the services on their listeners, one loop, graceful shutdown.
//!
//! Services live in a registry ([`ServiceId`] indexes it). A listener table names the service
//! each server runs; an owner table names the service of each socket, filled on accept from
//! its listener, by [`Serve::connect`] for an outbound socket, or by the service that opened
//! one inside its own event ([`Service::opened`]). Every socket event is routed by it: one
//! `Vec` lookup, no per-event allocation. Process-level policy lives here,
//! not in the services: idle timeouts close sockets, the first SIGINT/SIGTERM stops accepting
//! and flushes, a second one stops the loop at once (the caller exits with 128 + signal),
//! SIGHUP is logged and ignored (a closed terminal must not stop the server) and SIGUSR1 logs
//! the counters.

use std::io::{self, Write};
use std::time::Duration;

use crate::addr::{AddressSpec, SocketAddress};
use crate::context::Context;
use crate::handler::{Handler, ServerId, SocketId};
use crate::input_budget::{InputCut, InputLimits};
use crate::limits;
use crate::options::ServerOptions;
use crate::services::chat::{Chat, ChatConfig};
use crate::services::echo::Echo;
use crate::services::hub::{Hub, HubConfig};
use crate::services::Service;
use crate::socket_error::SocketError;
use crate::timers::TimerId;

/// Which built-in service a listener runs: the command line's choice, turned into a
/// [`Service`] by [`Serve::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// Bytes back, with pipe backpressure.
    Echo,
    /// Line chat (`nc`-friendly): broadcasts, nicks, `/who`.
    Chat,
    /// JSON hub: named clients, direct messages, broadcasts, rooms.
    Hub,
    /// The hub for browsers: the chat page, `/ws` and `/socket.io/` (prints `web listening`).
    #[cfg(feature = "web")]
    Web,
}

/// Everything `netloop serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Listeners and the service each runs.
    pub listeners: Vec<(ServiceKind, AddressSpec)>,
    /// Options shared by every listener (its `max_connections`, if set, is Node's: per
    /// listener).
    pub server: ServerOptions,
    /// `--max-connections`: a cap on the sockets of all listeners together
    /// (`Context::set_max_sockets`), since it protects the process's fds, which every listener
    /// draws on.
    pub max_sockets: Option<usize>,
    /// Echo's greeting, if any.
    pub echo_banner: Option<Vec<u8>>,
    /// Chat's settings (shared by every chat listener: one chat room across them).
    pub chat: ChatConfig,
    /// Hub's settings (shared by every hub listener: one hub across them).
    pub hub: HubConfig,
    /// The web listeners' settings (`--web`, `--web-origin`).
    #[cfg(feature = "web")]
    pub web: crate::web::WebConfig,
    /// How long the first signal waits for queued output before closing what is left.
    pub shutdown_timeout: Duration,
    /// Log the counters this often (`--stats-interval`).
    pub stats_interval: Option<Duration>,
    /// Bounds on the unfinished lines and frames chat and hub hold (`--max-input-total`,
    /// `--input-timeout`). Echo holds none: it is a pipe.
    pub input: InputLimits,
    /// `--cluster`: chat and hub are nodes of a cluster through Redis.
    #[cfg(feature = "cluster")]
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for ServeConfig {
    /// No listeners, no cap, Node's server options, the CLI's service defaults.
    fn default() -> Self {
        ServeConfig {
            listeners: Vec::new(),
            server: ServerOptions::default(),
            max_sockets: None,
            echo_banner: None,
            chat: ChatConfig::default(),
            hub: HubConfig::default(),
            #[cfg(feature = "web")]
            web: crate::web::WebConfig::default(),
            shutdown_timeout: Duration::from_secs(5),
            stats_interval: None,
            input: InputLimits::default(),
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }
}

/// Names one service in a [`Serve`]'s registry. Small, since the owner table keeps one per
/// socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceId(u16);

/// The `serve` application: routes events to services and owns process policy.
pub struct Serve {
    /// The registry, indexed by [`ServiceId`].
    services: Vec<Box<dyn Service>>,
    /// The built-in service made for each [`ServiceKind`], so listeners of one kind share it.
    built: Vec<(ServiceKind, ServiceId)>,
    /// Service of each server, indexed by `ServerId::index()`.
    listeners: Vec<Option<ServiceId>>,
    /// Listeners printed under another name than their service's (`web` for the hub's).
    listener_names: Vec<(ServerId, &'static str)>,
    /// Owner of each open socket, indexed by `SocketId::index()`; cleared on close. 4 bytes a
    /// slot, as long as the highest slot in use, and given back as the socket slab empties.
    owners: Vec<Option<ServiceId>>,
    /// The loop-wide cap, for the refusal line each listener gets.
    max_sockets: Option<usize>,
    shutdown_timeout: Duration,
    /// Set once the first signal arrived; the timer that force-closes stragglers.
    shutdown: Option<TimerId>,
    /// The `--stats-interval` timer.
    stats_timer: Option<TimerId>,
    /// Refreshes systemd's `STATUS=` line, when systemd asked for notifications.
    status_timer: Option<TimerId>,
    /// Set by a second signal: the loop stops and the process exits with this status.
    exit_status: Option<i32>,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.services.iter().map(|s| s.name()).collect();
        f.debug_struct("Serve").field("services", &names).field("shutdown", &self.shutdown).finish()
    }
}

impl Serve {
    /// Binds every listener of `config` on `cx`, one service per kind shared by its listeners.
    /// Fails on the first address that cannot be bound, with Node's wording
    /// (`listen EADDRINUSE: ... 127.0.0.1:8080`).
    pub fn start(cx: &mut Context, config: &ServeConfig) -> io::Result<Self> {
        let mut serve = Serve::new(cx, config)?;
        for (kind, addr) in &config.listeners {
            let service = serve.built_service(*kind, config);
            #[allow(unused_mut)]
            let mut options = config.server.clone();
            #[cfg(feature = "web")]
            if *kind == ServiceKind::Web {
                // Browsers over the cap get an HTTP answer, not the hub's JSON line.
                options.reject_message = config.max_sockets.map(|_| crate::web::http::over_capacity());
            }
            let server = serve.listen(cx, service, addr, options)?;
            #[cfg(feature = "web")]
            if *kind == ServiceKind::Web
                && serve.services[usize::from(service.0)].serve_web(server, &config.web)
            {
                serve.listener_names.push((server, "web"));
            }
            let _ = server;
        }
        for service in &mut serve.services {
            service.start(cx);
        }
        Ok(serve)
    }

    /// The process policy of `config` (cap, input limits, counters, signals) with no service
    /// yet: add them with [`Serve::add`], then [`Serve::listen`] or [`Serve::connect`].
    pub fn new(cx: &mut Context, config: &ServeConfig) -> io::Result<Self> {
        let mut serve = Serve {
            services: Vec::new(),
            built: Vec::new(),
            listeners: Vec::new(),
            listener_names: Vec::new(),
            owners: Vec::new(),
            max_sockets: config.max_sockets,
            shutdown_timeout: config.shutdown_timeout,
            shutdown: None,
            stats_timer: None,
            status_timer: None,
            exit_status: None,
        };
        if crate::systemd::notifying() {
            let timer = cx.set_interval(crate::systemd::STATUS_EVERY);
            cx.set_timer_ref(timer, false);
            serve.status_timer = Some(timer);
        }
        if let Some(every) = config.stats_interval {
            let timer = cx.set_interval(every);
            // Counters alone must not keep a shutting-down server alive.
            cx.set_timer_ref(timer, false);
            serve.stats_timer = Some(timer);
        }
        cx.set_input_limits(config.input);
        cx.set_max_sockets(config.max_sockets);
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
        cx.listen_signals(&[SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
        Ok(serve)
    }

    /// Puts `service` in the registry.
    pub fn add(&mut self, service: Box<dyn Service>) -> ServiceId {
        let id = u16::try_from(self.services.len()).expect("at most 65536 services");
        self.services.push(service);
        ServiceId(id)
    }

    /// The service built for `kind`, made on first use.
    fn built_service(&mut self, kind: ServiceKind, config: &ServeConfig) -> ServiceId {
        // Browsers are hub members: a web listener is the hub's.
        #[cfg(feature = "web")]
        let kind = if kind == ServiceKind::Web { ServiceKind::Hub } else { kind };
        if let Some(&(_, id)) = self.built.iter().find(|(k, _)| *k == kind) {
            return id;
        }
        let service: Box<dyn Service> = match kind {
            ServiceKind::Echo => Box::new(Echo { banner: config.echo_banner.clone() }),
            #[cfg(feature = "cluster")]
            ServiceKind::Chat if config.cluster.is_some() => {
                let bus = crate::cluster::RedisBus::new("chat", config.cluster.clone().unwrap());
                Box::new(Chat::with_bus(config.chat.clone(), Box::new(bus)))
            }
            #[cfg(feature = "cluster")]
            ServiceKind::Hub if config.cluster.is_some() => {
                let bus = crate::cluster::RedisBus::new("hub", config.cluster.clone().unwrap());
                Box::new(Hub::with_bus(config.hub.clone(), Box::new(bus)))
            }
            ServiceKind::Chat => Box::new(Chat::new(config.chat.clone())),
            ServiceKind::Hub => Box::new(Hub::new(config.hub.clone())),
            #[cfg(feature = "web")]
            ServiceKind::Web => unreachable!("web listeners are the hub's"),
        };
        let id = self.add(service);
        self.built.push((kind, id));
        id
    }

    /// Binds `addr` for `service`: the sockets it accepts are that service's. Without a
    /// refusal line in `options`, a connection over the loop-wide cap gets the service's own.
    pub fn listen(
        &mut self,
        cx: &mut Context,
        service: ServiceId,
        addr: &AddressSpec,
        mut options: ServerOptions,
    ) -> io::Result<ServerId> {
        let target = addr.resolve_one().map_err(|e| crate::error::context(e, &format!("listen {addr}")))?;
        if options.reject_message.is_none() {
            options.reject_message =
                self.max_sockets.map(|m| self.services[usize::from(service.0)].refusal(m));
        }
        let id = cx.listen(&target, options)?;
        set_slot(&mut self.listeners, id.index(), Some(service));
        Ok(id)
    }

    /// Opens an outbound socket owned by `service` (a client of another server, e.g. a
    /// store the service shares state through): its events go to that service, starting with
    /// `on_connect`, or `on_close` if the connect fails.
    pub fn connect(&mut self, cx: &mut Context, service: ServiceId, addr: &SocketAddress) -> SocketId {
        let socket = cx.connect(addr);
        set_slot(&mut self.owners, socket.index(), Some(service));
        socket
    }

    /// After a second signal: the status the process should exit with (128 + the signal).
    pub fn exit_status(&self) -> Option<i32> {
        self.exit_status
    }

    /// The service that owns `socket`, if any. An outbound socket a service opened during one
    /// of its events has no owner yet: the service that says it opened it becomes its owner.
    fn owner(&mut self, socket: SocketId) -> Option<&mut dyn Service> {
        let id = match self.owners.get(socket.index()).copied().flatten() {
            Some(id) => id,
            None => {
                let id = self.services.iter().position(|s| s.opened(socket))?;
                let id = ServiceId(id as u16);
                set_slot(&mut self.owners, socket.index(), Some(id));
                id
            }
        };
        Some(self.services[usize::from(id.0)].as_mut())
    }

    /// Tells the loop's input accounting what the owner now holds for `socket`.
    fn report_held_input(&mut self, cx: &mut Context, socket: SocketId) {
        if let Some(held) = self.owner(socket).and_then(|s| s.held_input(socket)) {
            cx.set_held_input(socket, held);
        }
    }

    /// First signal: stop accepting, end every socket (queued output is flushed first), and
    /// give stragglers `shutdown_timeout` before they are closed.
    fn begin_shutdown(&mut self, cx: &mut Context) {
        crate::systemd::notify("STOPPING=1");
        for service in &mut self.services {
            service.on_shutdown(cx);
        }
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

/// Sets `table[index]`, growing the table to reach it.
fn set_slot(table: &mut Vec<Option<ServiceId>>, index: usize, value: Option<ServiceId>) {
    if table.len() <= index {
        table.resize(index + 1, None);
    }
    table[index] = value;
}

impl Handler for Serve {
    fn on_listening(&mut self, cx: &mut Context, server: ServerId) {
        let service = self.listeners.get(server.index()).copied().flatten();
        if let (Some(service), Some(addr)) = (service, cx.server_address(server)) {
            let name = match self.listener_names.iter().find(|(s, _)| *s == server) {
                Some(&(_, name)) => name,
                None => self.services[usize::from(service.0)].name(),
            };
            // Scripts and tests wait for this exact line; flush so pipes see it at once.
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{name} listening on {addr}");
            let _ = out.flush();
            log::info!("{name} listening on {addr}");
        }
    }

    fn on_connection(&mut self, cx: &mut Context, server: ServerId, socket: SocketId) {
        if log::log_enabled!(log::Level::Debug) {
            let peer = cx.remote_address(socket).map_or_else(|| "?".into(), |a| a.to_string());
            log::debug!("connected: {peer}");
        }
        let service = self.listeners.get(server.index()).copied().flatten();
        set_slot(&mut self.owners, socket.index(), service);
        if let Some(service) = self.owner(socket) {
            service.on_connection(cx, server, socket);
        }
    }

    fn on_drop(&mut self, _cx: &mut Context, _server: ServerId, _peer: &SocketAddress) {}

    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {
        if let Some(service) = self.owner(socket) {
            service.on_connect(cx, socket);
        }
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        if let Some(service) = self.owner(socket) {
            service.on_data(cx, socket, data);
        }
        self.report_held_input(cx, socket);
    }

    fn on_input_cut(&mut self, cx: &mut Context, socket: SocketId, cut: &InputCut) {
        // A service that holds nothing is never cut; the loop hangs up on anything left.
        if let Some(service) = self.owner(socket) {
            service.on_input_cut(cx, socket, cut);
        }
    }

    fn on_drain(&mut self, cx: &mut Context, socket: SocketId) {
        if let Some(service) = self.owner(socket) {
            service.on_drain(cx, socket);
        }
    }

    fn on_end(&mut self, cx: &mut Context, socket: SocketId) {
        if let Some(service) = self.owner(socket) {
            service.on_end(cx, socket);
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

    fn on_close(&mut self, cx: &mut Context, socket: SocketId, error: Option<&SocketError>) {
        if let Some(err) = error {
            log::debug!("socket {}: {}", socket.index(), err.describe());
        }
        log::debug!("closed: socket {} (had_error={})", socket.index(), error.is_some());
        // Members leave here whatever closed them (peer reset, output limit, idle timeout).
        if let Some(service) = self.owner(socket) {
            service.on_close(cx, socket);
        }
        if let Some(slot) = self.owners.get_mut(socket.index()) {
            *slot = None;
        }
        // After a burst the slots closed last leave empty ones at the tail: give them back,
        // as the socket slab does, so a spike does not pin the table's memory.
        while self.owners.last() == Some(&None) {
            self.owners.pop();
        }
        if self.owners.capacity() > 1024 && self.owners.capacity() > 4 * self.owners.len() {
            self.owners.shrink_to(2 * self.owners.len());
        }
    }

    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) {
        if self.stats_timer == Some(timer) {
            log_counters(cx);
            self.services.iter().for_each(|s| s.log_counters());
            return;
        }
        if self.status_timer == Some(timer) {
            crate::systemd::notify(&crate::systemd::status_line(cx.socket_count() as u64, None));
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
            return;
        }
        // Services arm their timers on the Context, so each recognises its own. A service
        // whose timer changes what it holds reports that itself.
        for service in &mut self.services {
            if service.on_timer(cx, timer) {
                return;
            }
        }
    }

    fn on_signal(&mut self, cx: &mut Context, signal: i32) {
        match signal {
            // Redis's choice: a daemon whose terminal closed keeps serving.
            signal_hook::consts::SIGHUP => {
                log::info!("SIGHUP: ignored (netloop has nothing to reload; SIGTERM stops it)");
                return;
            }
            signal_hook::consts::SIGUSR1 => {
                log_counters(cx);
                self.services.iter().for_each(|s| s.log_counters());
                return;
            }
            _ => {}
        }
        if self.shutdown.is_some() {
            log::warn!("second signal ({signal}): exiting now");
            self.exit_status = Some(128 + signal);
            cx.stop();
            return;
        }
        log::info!(
            "signal {signal}: closing listeners, flushing {} connection(s) (up to {:?}); signal again to exit now",
            cx.socket_count(),
            self.shutdown_timeout
        );
        self.begin_shutdown(cx);
    }
}

/// The counters at info level: every `--stats-interval` and on SIGUSR1. A worker sends them
/// to its supervisor instead, which logs the sum.
fn log_counters(cx: &Context) {
    let counters = crate::workers::Counters::of(cx);
    if !crate::workers::worker::report_counters(&counters) {
        log::info!("stats: {counters}");
    }
}

/// Raises the fd limit and settles the loop-wide socket cap (`--max-connections`): the user's
/// value clamped to what the limit allows (with a warning), or that capacity when unset.
pub fn settle_max_sockets(requested: Option<usize>) -> usize {
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
