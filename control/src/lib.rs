//! The Odock control process: the durable evidence log, the drainer that
//! fills it from the dataplanes' evidence rings, the plugin registry,
//! scopes and bindings, policy push, and the local socket API.
#![deny(unsafe_code)]

pub mod log;
