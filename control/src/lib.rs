//! The Odock control process (see `../shared/DESIGN.md`, "Separate control
//! process"). Its daemon, socket API and evidence log are tracked in their own
//! issue; this crate holds them as they land.
#![forbid(unsafe_code)]
