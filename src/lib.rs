//! Shared support for the cross-crate tests in `tests/` and the benches in
//! `benches/`. Product code lives in the member crates.
