//! The wire layer: each application protocol defined once, as typed messages with their one
//! encoder and decoder, shared by the server (`services`), `netloop connect`, `netloop load`
//! and the tests. The byte-level contract is `docs/protocol.md`.
//!
//! - [`hub`]: the JSON hub's requests, replies, notices and error codes;
//! - [`json`]: the compact JSON writer and borrowed-field reader the hub's messages use.

pub mod hub;
pub mod json;
