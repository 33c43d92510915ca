//! The stable C ABI of Odock plugins and a safe Rust SDK over it.
//!
//! The contract is the C header `include/odock_plugin.h`; this crate mirrors
//! it with `#[repr(C)]` types.
