//! Pieces the Odock reference plugins share.
//!
//! Only [`http::post`] for now: the webhook client that `notify` and
//! `audit-export` use from `on_followup`, which runs off the hot path (the
//! complete pool), so a blocking socket with a short timeout is the right
//! tool there, and never on a gate hook.
#![forbid(unsafe_code)]

pub mod http;
