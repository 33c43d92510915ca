//! The runtime the gateway links: policy, chains, workers and gates.

pub mod policy;
