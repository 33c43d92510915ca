//! The Odock control process: the durable evidence log, the drainer that
//! fills it from the dataplanes' evidence rings, the plugin registry,
//! scopes and bindings, policy push through the run directory, and the
//! local socket API (`docs/CONTROL_API.md`).
//!
//! Only `log::uring` holds `unsafe` code (io_uring submissions); the rest of
//! the crate is denied it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod drain;
pub mod log;
pub mod query;
pub mod schema;
pub mod sink;
pub mod state;
pub mod store;
