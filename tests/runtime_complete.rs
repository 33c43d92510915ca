//! The complete gate on its own pool, fed by rings: audit records, follow-up
//! work retried with backoff, retries running out, and queue overflow that
//! never passes silently.

mod plugin_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use odock_dataplane::plugin::{Evidence, EvidenceSink, FailureMode, Grant};
use odock_dataplane::runtime::complete::{CompleteConfig, CompletePool, SubmitError};
use odock_dataplane::runtime::policy::{BindingSpec, PolicySpec, Scope};
use odock_dataplane::runtime::{
    DecisionRecord, FollowUpRecord, FollowUpState, PluginSource, RequestFrame, ResponseFrame,
    Runtime, RuntimeSink, SkipRecord,
};
use odock_plugin_abi::view::Header;
use odock_plugin_abi::{Capabilities, Capability};
use odock_suite::watchdog;

fn followup_probe() -> PluginSource {
    plugin_support::probe_plugin("notify", &[("WITH_FOLLOWUPS", "1")])
}

fn on_complete(config: &str) -> BindingSpec {
    BindingSpec {
        plugin: "notify".into(),
        scope: Scope::default(),
        enabled: true,
        priority: [None, None, Some(1)],
        grant: Grant::new(
            Capabilities::ALL.without(Capabilities::of(&[Capability::CallIntegration])),
        ),
        config: config.as_bytes().to_vec(),
        failure_mode: FailureMode::EnforceIgnoreError,
        time_budget: Duration::from_secs(5),
    }
}

#[derive(Default)]
struct Seen {
    plugin_records: Vec<String>,
    followups: Vec<(u64, FollowUpState, u32)>,
    skips: Vec<(String, u64)>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Seen>>);

impl EvidenceSink for Shared {
    fn record(&mut self, e: &Evidence<'_>) {
        self.0
            .lock()
            .unwrap()
            .plugin_records
            .push(e.record.kind().to_string());
    }
}

impl RuntimeSink for Shared {
    fn decision(&mut self, _: &DecisionRecord<'_>) {}
    fn skip(&mut self, s: &SkipRecord<'_>) {
        self.0
            .lock()
            .unwrap()
            .skips
            .push((s.cause.to_string(), s.count));
    }
    fn follow_up(&mut self, f: &FollowUpRecord<'_>) {
        self.0
            .lock()
            .unwrap()
            .followups
            .push((f.request_id, f.state, f.attempts));
    }
}

fn pool(config: &str, pool_config: CompleteConfig) -> (Runtime, CompletePool, Shared) {
    let runtime = Runtime::new();
    runtime
        .install(
            PolicySpec {
                version: 1,
                bindings: vec![on_complete(config)],
            },
            &[followup_probe()],
        )
        .unwrap();
    let seen = Shared::default();
    let sink = seen.clone();
    let pool = CompletePool::start(&runtime, pool_config, move |_| Box::new(sink.clone())).unwrap();
    (runtime, pool, seen)
}

fn exchange<'a>(
    id: u64,
    req_h: &'a [Header<'a>],
    resp_h: &'a [Header<'a>],
) -> (RequestFrame<'a>, ResponseFrame<'a>) {
    (
        RequestFrame {
            request_id: id,
            tenant: Some("acme"),
            headers: req_h,
            body: b"{\"model\":\"gpt-4o\"}",
            ..RequestFrame::default()
        },
        ResponseFrame {
            status: 200,
            headers: resp_h,
            body: b"{\"choices\":[]}",
        },
    )
}

fn wait_for(seen: &Shared, limit: Duration, done: impl Fn(&Seen) -> bool) {
    let start = Instant::now();
    while !done(&seen.0.lock().unwrap()) {
        assert!(start.elapsed() < limit, "not done after {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn complete_frames_run_off_the_hot_path_and_follow_ups_are_retried() {
    watchdog(Duration::from_secs(60), || {
        let (_rt, pool, seen) = pool(
            "evidence:audit.exported;followup:webhook;fails:2",
            CompleteConfig {
                threads: 2,
                ..CompleteConfig::default()
            },
        );
        let submitter = pool.submitter().unwrap();
        let req_h = [Header::new(b"authorization", b"Bearer x")];
        let resp_h = [Header::new(b"content-type", b"application/json")];
        for id in 1..=20 {
            let (req, resp) = exchange(id, &req_h, &resp_h);
            submitter.submit(&req, &resp).unwrap();
        }
        // Every exchange exported; every follow-up delivered (each pool
        // thread's instance fails its first two runs, then succeeds).
        wait_for(&seen, Duration::from_secs(20), |s| {
            s.plugin_records
                .iter()
                .filter(|k| *k == "audit.exported")
                .count()
                == 20
                && s.followups
                    .iter()
                    .filter(|f| f.1 == FollowUpState::Delivered)
                    .count()
                    == 20
        });
        let s = seen.0.lock().unwrap();
        assert_eq!(
            s.followups
                .iter()
                .filter(|f| f.1 == FollowUpState::Queued)
                .count(),
            20
        );
        // Two instances (one per pool thread), two failures each: 4 retries.
        assert_eq!(
            s.followups
                .iter()
                .filter(|f| f.1 == FollowUpState::Retried)
                .count(),
            4
        );
        assert_eq!(
            s.plugin_records
                .iter()
                .filter(|k| *k == "followup.done")
                .count(),
            20
        );
        drop(s);
        pool.shutdown();
    });
}

#[test]
fn a_follow_up_that_keeps_failing_gives_up_with_evidence() {
    watchdog(Duration::from_secs(60), || {
        let (_rt, pool, seen) = pool("followup:email;fails:100", CompleteConfig::default());
        let submitter = pool.submitter().unwrap();
        let (req, resp) = exchange(7, &[], &[]);
        submitter.submit(&req, &resp).unwrap();
        // Backoff 100 + 200 + 400 + 800 ms before the fifth and last try.
        wait_for(&seen, Duration::from_secs(10), |s| {
            s.followups.iter().any(|f| f.1 == FollowUpState::Failed)
        });
        let s = seen.0.lock().unwrap();
        let attempts: Vec<_> = s
            .followups
            .iter()
            .filter(|f| f.0 == 7)
            .map(|f| (f.1, f.2))
            .collect();
        assert_eq!(
            attempts,
            vec![
                (FollowUpState::Queued, 0),
                (FollowUpState::Retried, 1),
                (FollowUpState::Retried, 2),
                (FollowUpState::Retried, 3),
                (FollowUpState::Retried, 4),
                (FollowUpState::Failed, 5),
            ]
        );
    });
}

#[test]
fn a_full_queue_drops_and_counts() {
    watchdog(Duration::from_secs(60), || {
        // One small lane and a plugin slow enough to fall behind.
        let (_rt, pool, seen) = pool(
            "sleep:20;evidence:audit.exported",
            CompleteConfig {
                threads: 1,
                lanes: 1,
                lane_bytes: 4096,
                first_worker: 1000,
            },
        );
        let submitter = pool.submitter().unwrap();
        assert!(pool.submitter().is_err(), "one lane: one submitter");
        let (mut ok, mut full) = (0u64, 0u64);
        for id in 0..200 {
            let (req, resp) = exchange(id, &[], &[]);
            match submitter.submit(&req, &resp) {
                Ok(()) => ok += 1,
                Err(SubmitError::Full) => full += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(full > 0, "the queue never filled");
        wait_for(&seen, Duration::from_secs(30), |s| {
            s.plugin_records
                .iter()
                .filter(|k| *k == "audit.exported")
                .count() as u64
                == ok
                && s.skips
                    .iter()
                    .filter(|k| k.0 == "complete_queue_full")
                    .map(|k| k.1)
                    .sum::<u64>()
                    == full
        });
        drop(submitter);
        pool.shutdown();
    });
}
