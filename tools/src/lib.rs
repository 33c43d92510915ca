//! Odock command-line tools, and the benchmark workloads that `odock-bench`
//! shares with the criterion benches in `benches/`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod demo;
pub mod gateway;
pub mod mock;
pub mod up;
