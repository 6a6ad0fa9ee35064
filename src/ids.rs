//! The ids the loop gives its sockets and servers: what every layer names them by.

/// Names one socket for its whole life. The loop stores sockets in a slab and reuses keys, so
/// the id carries a generation: an id kept after `on_close` never reaches a newer socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId {
    pub(crate) key: u32,
    pub(crate) gen: u32,
}

impl SocketId {
    /// The slab key: dense and small, handy for indexing per-socket tables in applications.
    /// Unique among live sockets only.
    pub fn index(self) -> usize {
        self.key as usize
    }
}

/// Names one listening server (Node's `net.Server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId {
    pub(crate) key: u32,
    pub(crate) gen: u32,
}

impl ServerId {
    /// The server's slot number, for application tables.
    pub fn index(self) -> usize {
        self.key as usize
    }
}
