//! The Odock dataplane: the library a gateway links.
//!
//! The shared-memory [`ring`] is the transport; [`plugin`] loads and hosts
//! native plugins; [`index`] is the parse-once index; [`runtime`] runs the
//! chains at the three gates; [`evidence`] is the record format. See
//! `../shared/DESIGN.md` for the whole shape. Under `cfg(loom)` only the
//! ring is built: its loom models need nothing else.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(not(loom))]
pub mod evidence;
#[cfg(not(loom))]
pub mod index;
#[cfg(not(loom))]
pub mod plugin;
pub mod ring;
#[cfg(not(loom))]
pub mod runtime;
pub(crate) mod sync;
