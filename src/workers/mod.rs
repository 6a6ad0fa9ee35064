//! `netloop serve --workers N`: one supervisor process and N worker processes, each one poll
//! loop, all accepting on the same addresses.
//!
//! The supervisor binds every listener itself (so port 0 resolves once and the listening lines
//! name real addresses), then re-executes the netloop binary once per worker, handing each the
//! sockets it accepts on: for TCP its own member of an `SO_REUSEPORT` group (the kernel spreads
//! connections over the members), for a Unix path the one socket, shared. It restarts workers
//! that die, drains them on SIGTERM/SIGINT and sums their counters. See `docs/operations.md`.

pub mod counters;
pub mod supervisor;
pub mod worker;

pub use counters::Counters;
pub use supervisor::{run, SupervisorConfig};
pub use worker::{become_worker, WorkerSetup};
