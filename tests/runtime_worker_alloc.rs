//! The submitted path allocates nothing per frame once warm, on either
//! side: a counting global allocator watches the whole process while one
//! thread submits frames through a read-only chain of four probes to a
//! busy-polling worker and reads the answers.

mod plugin_support;

use std::time::Duration;

use odock_dataplane::plugin::{Evidence, EvidenceSink};
use odock_dataplane::runtime::{
    DecisionRecord, FollowUpRecord, GateFrame, PoolConfig, RequestFrame, RuntimeSink, SkipRecord,
    Verdict, WorkerPool,
};
use odock_plugin_abi::view::Header;
use odock_suite::watchdog;

#[global_allocator]
static GLOBAL: odock_suite::counting::CountingAllocator = odock_suite::counting::CountingAllocator;

/// Counts decisions without keeping them.
struct CountingSink(u64);

impl EvidenceSink for CountingSink {
    fn record(&mut self, _: &Evidence<'_>) {}
}

impl RuntimeSink for CountingSink {
    fn decision(&mut self, _: &DecisionRecord<'_>) {
        self.0 += 1;
    }
    fn skip(&mut self, _: &SkipRecord<'_>) {}
    fn follow_up(&mut self, _: &FollowUpRecord<'_>) {}
}

#[test]
fn a_submitted_read_only_chain_allocates_nothing_per_frame() {
    watchdog(Duration::from_secs(120), || {
        let path = plugin_support::c_plugin("probe_noop", "tests/plugin_sources/probe.c", &[]);
        // 4 bindings of the probe with no command: each reads the frame and
        // continues (the gate bench's workload).
        let runtime = odock_tools::bench::gate::noop_runtime(&path, 4).unwrap();
        // Both sides busy-poll: no thread parks (parking registers a
        // `Thread` handle, a reference count, but keep the path plain).
        let long = Duration::from_secs(3600);
        let config = PoolConfig {
            cores: Some(vec![0]),
            pin: false,
            ring_bytes: 1 << 16,
            worker_spin: long,
            waiter_spin: long,
            ..PoolConfig::default()
        };
        let pool = WorkerPool::start(&runtime, config, |_| Box::new(CountingSink(0))).unwrap();
        let submitter = pool.submitter();
        let headers = [
            Header::new(b"content-type", b"application/json"),
            Header::new(b"x-request-id", b"abc"),
        ];
        let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#;
        let frame = GateFrame {
            method: Some("POST"),
            path: Some("/v1/chat/completions"),
            ..GateFrame::new(RequestFrame {
                request_id: 1,
                tenant: Some("acme"),
                environment: Some("prod"),
                headers: &headers,
                body,
                ..RequestFrame::default()
            })
        };
        let round = |n: usize| {
            for _ in 0..n {
                let answer = submitter.request(0, &frame).unwrap();
                assert_eq!(answer.verdict(), Verdict::Continue);
                assert!(!answer.changed());
            }
        };
        // Warm up: every slot's buffer, the worker's vectors and the
        // runner's buffers reach their working size.
        round(3000);
        odock_suite::counting::start();
        round(2000);
        let allocations = odock_suite::counting::stop();
        pool.shutdown();
        assert_eq!(
            allocations, 0,
            "allocations in 2000 submitted frames of a read-only chain"
        );
    });
}
