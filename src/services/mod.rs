//! The services `netloop serve` runs, each a [`crate::Handler`]-driven application.

pub mod echo;
