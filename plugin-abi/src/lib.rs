//! The stable C ABI of Odock plugins, and a safe Rust SDK over it.
//!
//! The contract is one C header, [`include/odock_plugin.h`][header]: read it
//! first, it documents itself. This crate has three layers over it:
//!
//! - [`sys`]: the header mirrored one to one with `#[repr(C)]` types and
//!   the header's own names. Its `layout` test compiles a C file that
//!   static-asserts every size, offset and constant against this mirror.
//! - [`Error`], [`Capabilities`], [`Gate`], the [`view`] types: safe names
//!   for the header's integers and borrowed views, shared by plugins and
//!   the host.
//! - [`sdk`]: traits, a host handle and the [`export_plugin!`] macro to
//!   write a plugin in safe Rust.
//!
//! The host side (loading, grants, running hooks) lives in the dataplane
//! crate, `odock_dataplane::plugin`.
//!
//! [header]: https://github.com/odock/odock/blob/main/plugin-abi/include/odock_plugin.h

pub mod sdk;
pub mod sys;
mod types;
pub mod view;

pub use types::{
    AnswerOutcome, Capabilities, Capability, Error, Gate, Gates, LogLevel, ResponseMode, Role,
    TargetKind,
};

/// The header's text, for tools that ship it or check it.
pub const HEADER: &str = include_str!("../include/odock_plugin.h");

/// The major version of the ABI this crate speaks.
pub const ABI_MAJOR: u16 = sys::ODOCK_PLUGIN_ABI_MAJOR;
/// The minor version of the ABI this crate speaks.
pub const ABI_MINOR: u16 = sys::ODOCK_PLUGIN_ABI_MINOR;
