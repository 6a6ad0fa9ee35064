//! Hub and chat across processes and machines through Redis: the bus of a node of a cluster.
//!
//! - [`bus`]: a service's bus to the other nodes: publish, name leases, heartbeats, re-joins.
//! - [`resp`]: RESP2, Redis's wire protocol, as a bounded sans-IO codec.
//! - [`conn`]: one Redis connection as a loop socket (handshake, pipelining, reply timeouts,
//!   reconnect with back-off).
//! - [`envelope`]: what nodes say to each other, with origin and sequence number.
//! - [`peers`]: the other nodes as this one knows them: their members, liveness, counters.

pub mod bus;
pub mod conn;
pub mod envelope;
pub mod peers;
pub mod resp;
