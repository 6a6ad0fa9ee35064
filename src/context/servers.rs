//! Servers (`listen`, `close_server`, their limits) and outbound sockets (`connect`).

use std::io;

use super::{listener_token, Context};
use crate::addr::SocketAddress;
use crate::error;
use crate::ids::{ServerId, SocketId};
use crate::listener::{Listener, Server};
use crate::options::{ServerOptions, SocketOptions};
use crate::outbound;
use crate::socket::{Stream, NO_SERVER};

impl Context {
    /// `server.listen()`: binds `addr` (port 0 picks a free port) and starts accepting.
    /// `on_listening` follows from the loop. Bind errors are returned at once and read like
    /// Node's (`listen EADDRINUSE: Address in use 127.0.0.1:8080`).
    pub fn listen(&mut self, addr: &SocketAddress, options: ServerOptions) -> io::Result<ServerId> {
        let (mut listener, address) = Listener::bind(addr, options.backlog)?;
        let gen = self.next_gen();
        let entry = self.servers.vacant_entry();
        let key = entry.key();
        self.registry.register(listener.source(), listener_token(key), mio::Interest::READABLE)?;
        let unlink_on_close = match &address {
            SocketAddress::Unix(p) => Some(p.clone()),
            _ => None,
        };
        entry.insert(Server {
            listener: Some(listener),
            address,
            options,
            connections: 0,
            gen,
            unref: false,
            registered: true,
            unlink_on_close,
        });
        let id = ServerId { key: key as u32, gen };
        self.listening.push(id);
        Ok(id)
    }

    /// `server.address()`: the bound address with the real port.
    pub fn server_address(&self, server: ServerId) -> Option<&SocketAddress> {
        self.server_key(server).map(|k| &self.servers[k].address)
    }

    /// `server.close()`: stops accepting now; `on_server_close` fires once its last
    /// connection has closed. Existing connections are untouched.
    pub fn close_server(&mut self, server: ServerId) {
        let Some(key) = self.server_key(server) else { return };
        let s = &mut self.servers[key];
        let Some(mut listener) = s.listener.take() else { return };
        if s.registered {
            let _ = self.registry.deregister(listener.source());
        }
        drop(listener);
        s.close_listener();
        if s.connections == 0 {
            self.servers_closing.push(key);
        }
        // Closed before its 'listening' was delivered: Node skips it too.
        self.listening.retain(|&l| l != server);
    }

    /// True until `close_server` was called.
    pub fn is_listening(&self, server: ServerId) -> bool {
        self.server_key(server).is_some_and(|k| self.servers[k].listener.is_some())
    }

    /// `server.getConnections()`: live connections accepted by this server.
    pub fn connections(&self, server: ServerId) -> usize {
        self.server_key(server).map_or(0, |k| self.servers[k].connections)
    }

    /// `server.maxConnections = n` (`None` for no limit).
    pub fn set_max_connections(&mut self, server: ServerId, max: Option<usize>) {
        if let Some(k) = self.server_key(server) {
            self.servers[k].options.max_connections = max;
        }
    }

    /// Refuse new connections on every server while `max` sockets (accepted or outbound) are
    /// open; `None` for no limit. Node's `maxConnections` is per server, so with several
    /// listeners it cannot protect the process's fds; this cap can (`netloop serve` derives it
    /// from the fd limit). A refused connection is handled as for `max_connections`.
    pub fn set_max_sockets(&mut self, max: Option<usize>) {
        self.max_sockets = max;
    }

    /// `server.unref()` / `server.ref()`.
    pub fn set_server_ref(&mut self, server: ServerId, referenced: bool) {
        if let Some(k) = self.server_key(server) {
            self.servers[k].unref = !referenced;
        }
    }

    /// Every server still listening.
    pub fn servers(&self) -> Vec<ServerId> {
        self.servers.iter().filter(|(_, s)| s.listener.is_some()).map(|(k, _)| self.server_id(k)).collect()
    }

    // ----- outbound sockets ---------------------------------------------------------------

    /// Options for sockets made by [`Context::connect`].
    pub fn set_client_options(&mut self, options: SocketOptions) {
        self.client_options = options;
    }

    /// `net.connect()`: starts a non-blocking connect; `on_connect` or `on_close` with the
    /// error follows. Writes made before the connection completes are queued.
    pub fn connect(&mut self, addr: &SocketAddress) -> SocketId {
        self.connect_from(addr, None)
    }

    /// `net.connect({localAddress})`: like [`Context::connect`], bound first to `source`
    /// (port chosen by the kernel). One source IP has ~28k ephemeral ports per destination;
    /// load generators spread connections over 127.0.0.2, 127.0.0.3, ... to go past that.
    pub fn connect_from(&mut self, addr: &SocketAddress, source: Option<std::net::IpAddr>) -> SocketId {
        match outbound::start_connect(addr, source) {
            Ok(io) => self.adopt(io, NO_SERVER, true),
            Err(e) => {
                // Failures the OS reports at once (e.g. a Unix path with no listener) still
                // arrive as events, as in Node.
                let id = self.adopt(Stream::Closed, NO_SERVER, true);
                self.destroy_key(id.key as usize, Some(error::context(e, &format!("connect {addr}")).into()));
                id
            }
        }
    }
}
