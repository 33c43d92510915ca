//! The runtime the gateway links: policy, chains, workers and gates.

pub mod complete;
pub mod control_link;
pub mod metrics;
pub mod policy;
mod runner;
mod sink;
pub mod watchdog;
pub mod worker;

pub use metrics::{Counter, Histogram};
pub use runner::{
    CallOutcome, Change, ChunkFrame, DecisionRecord, FOLLOW_UP_ATTEMPTS, FollowUpRecord,
    FollowUpState, GateRunner, InstallError, Outcome, PluginSource, RequestFrame, ResponseFrame,
    ResumeError, Runtime, RuntimeSink, SkipRecord, StreamState, Verdict,
};
pub use sink::RingSink;
pub use worker::{
    Answer, GateError, GateFrame, PoolConfig, PoolError, Stream, Submitter, Ticket, WorkerPool,
    WorkerStats,
};
