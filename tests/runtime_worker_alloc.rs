//! The submitted path allocates nothing per frame once warm, on either
//! side: a counting global allocator watches the whole process while one
//! thread submits frames through a read-only chain of four probes to a
//! busy-polling worker and reads the answers.

mod plugin_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use odock_dataplane::plugin::{Evidence, EvidenceSink, FailureMode, Grant, Pin};
use odock_dataplane::runtime::policy::{BindingSpec, PolicySpec, Scope};
use odock_dataplane::runtime::{
    DecisionRecord, FollowUpRecord, GateFrame, PluginSource, PoolConfig, RequestFrame, Runtime,
    RuntimeSink, SkipRecord, Verdict, WorkerPool,
};
use odock_plugin_abi::view::Header;
use odock_plugin_abi::{Capabilities, Capability};
use odock_suite::watchdog;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
        let source = PluginSource {
            name: "probe".into(),
            pin: Pin::of_file(&path).unwrap(),
            path,
        };
        let grant = Grant::new(Capabilities::ALL.without(Capabilities::of(&[
            Capability::CallIntegration,
            Capability::QueueFollowup,
        ])));
        let bindings = (0..4)
            .map(|i| BindingSpec {
                plugin: "probe".into(),
                scope: Scope::default(),
                enabled: true,
                priority: [Some(i), None, None],
                grant: grant.clone(),
                config: Vec::new(),
                failure_mode: FailureMode::Enforce,
                time_budget: Duration::from_secs(1),
            })
            .collect();
        let runtime = Runtime::new();
        runtime
            .install(
                PolicySpec {
                    version: 1,
                    bindings,
                },
                &[source],
            )
            .unwrap();
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
        ALLOCATIONS.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        round(2000);
        COUNTING.store(false, Ordering::Relaxed);
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        pool.shutdown();
        assert_eq!(
            allocations, 0,
            "allocations in 2000 submitted frames of a read-only chain"
        );
    });
}
