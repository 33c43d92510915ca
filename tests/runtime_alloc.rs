//! A read-only chain allocates nothing per frame: a counting global
//! allocator watches a runner push frames through four no-op plugins.

mod plugin_support;

use odock_dataplane::plugin::{Evidence, EvidenceSink};
use odock_dataplane::runtime::{DecisionRecord, RequestFrame, RuntimeSink, Verdict};
use odock_plugin_abi::view::Header;

#[global_allocator]
static GLOBAL: odock_suite::counting::CountingAllocator = odock_suite::counting::CountingAllocator;

/// Counts decisions without keeping them (a sink that allocated would be
/// counted too).
struct CountingSink(u64);

impl EvidenceSink for CountingSink {
    fn record(&mut self, _: &Evidence<'_>) {}
}

impl RuntimeSink for CountingSink {
    fn decision(&mut self, _: &DecisionRecord<'_>) {
        self.0 += 1;
    }

    fn skip(&mut self, _: &odock_dataplane::runtime::SkipRecord<'_>) {}

    fn follow_up(&mut self, _: &odock_dataplane::runtime::FollowUpRecord<'_>) {}
}

#[test]
fn a_read_only_chain_allocates_nothing_per_frame() {
    let path = plugin_support::c_plugin("probe_noop", "tests/plugin_sources/probe.c", &[]);
    // 4 bindings of the probe with no command: each reads the frame and
    // continues (the gate bench's workload).
    let runtime = odock_tools::bench::gate::noop_runtime(&path, 4).unwrap();
    let mut runner = runtime.runner(0, Box::new(CountingSink(0)));
    let headers = [
        Header::new(b"content-type", b"application/json"),
        Header::new(b"x-request-id", b"abc"),
    ];
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#;
    let frame = RequestFrame {
        request_id: 1,
        tenant: Some("acme"),
        environment: Some("prod"),
        api: odock_dataplane::index::ApiKind::from_path(b"/v1/chat/completions"),
        headers: &headers,
        body,
        ..RequestFrame::default()
    };
    // Warm up: buffers grow to their working size, the policy is adopted.
    for _ in 0..10 {
        assert_eq!(runner.request(&frame).verdict, Verdict::Continue);
    }
    odock_suite::counting::start();
    for _ in 0..1000 {
        let out = runner.request(&frame);
        assert_eq!(out.verdict, Verdict::Continue);
        assert!(!out.changed());
    }
    let allocations = odock_suite::counting::stop();
    assert_eq!(
        allocations, 0,
        "allocations in 1000 frames of a read-only chain"
    );
}
