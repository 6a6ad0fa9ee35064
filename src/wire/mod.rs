//! The wire layer: each application protocol defined once, as typed messages with their one
//! encoder and decoder, shared by the server (`services`), `netloop connect`, `netloop load`
//! and the tests. The byte-level contract is `docs/protocol.md`.
//!
//! - [`chat`]: the chat's lines both ways (welcome, notices, messages, commands, errors);
//! - [`hub`]: the JSON hub's requests, replies, notices and error codes;
//! - [`json`]: the compact JSON writer and borrowed-field reader the hub's messages use;
//! - [`echo`]: echo's one line of its own (the refusal at `--max-connections`).

pub mod chat;
pub mod echo;
pub mod hub;
pub mod json;
