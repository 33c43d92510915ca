//! The Odock dataplane: the library a gateway links.
//!
//! Today it holds the transport everything else rides on, the shared-memory
//! [`ring`]. See `../shared/DESIGN.md` for the whole shape.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod evidence;
pub mod index;
pub mod plugin;
pub mod ring;
pub mod runtime;
pub(crate) mod sync;
