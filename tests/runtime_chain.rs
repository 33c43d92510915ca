//! The request gate through real plugins: chain order, transforms seen by
//! later plugins, blocks ending the chain, budgets, failure modes, denied
//! host calls, copy-on-write bodies, and policy swaps under load.

mod plugin_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use odock_dataplane::plugin::{Evidence, EvidenceRecord, EvidenceSink, FailureMode, Grant, Pin};
use odock_dataplane::runtime::policy::{BindingSpec, PolicySpec, Scope};
use odock_dataplane::runtime::{
    CallOutcome, Change, Counter, DecisionRecord, PluginSource, RequestFrame, Runtime, RuntimeSink,
    Verdict,
};
use odock_plugin_abi::view::Header;
use odock_plugin_abi::{Capabilities, Gate};

/// A probe plugin named `name` (built once per name).
fn probe(name: &str) -> PluginSource {
    plugin_support::probe_plugin(name, &[])
}

fn bind(plugin: &str, priority: i32, config: &str) -> BindingSpec {
    BindingSpec {
        plugin: plugin.into(),
        scope: Scope::default(),
        enabled: true,
        priority: [Some(priority), None, None],
        grant: Grant::new(Capabilities::ALL.without(Capabilities::of(&[
            odock_plugin_abi::Capability::CallIntegration,
            odock_plugin_abi::Capability::QueueFollowup,
        ]))),
        config: config.as_bytes().to_vec(),
        failure_mode: FailureMode::Enforce,
        time_budget: Duration::from_secs(5),
    }
}

/// What a runner recorded, shared with the test.
#[derive(Default, Clone)]
struct Recorded {
    decisions: Arc<Mutex<Vec<(String, String)>>>,
    host: Arc<Mutex<Vec<String>>>,
}

struct TestSink(Recorded);

impl EvidenceSink for TestSink {
    fn record(&mut self, evidence: &Evidence<'_>) {
        self.0
            .host
            .lock()
            .unwrap()
            .push(format!("{}:{}", evidence.plugin, evidence.record.kind()));
        if let EvidenceRecord::CapabilityDenied { .. } = evidence.record {}
    }
}

impl RuntimeSink for TestSink {
    fn decision(&mut self, d: &DecisionRecord<'_>) {
        let outcome = match d.outcome {
            CallOutcome::Continue => "continue".to_string(),
            CallOutcome::Block {
                status, by_plugin, ..
            } => format!("block {status} by_plugin={by_plugin}"),
            CallOutcome::Pause => "pause".into(),
            CallOutcome::FailedOpen => "failed_open".into(),
            CallOutcome::Overran { .. } => "overran".into(),
        };
        let changes: Vec<String> = d
            .changes
            .iter()
            .map(|c| match c {
                Change::SetHeader(n) => format!("set {}", String::from_utf8_lossy(n)),
                Change::RemoveHeader(n) => format!("remove {}", String::from_utf8_lossy(n)),
                Change::SetMetadata(k) => format!("meta {k}"),
                Change::BodyRange { offset, len } => format!("body {offset}+{len}"),
                Change::BodyField(p) => format!("field {p}"),
            })
            .collect();
        self.0.decisions.lock().unwrap().push((
            d.plugin.to_string(),
            format!("{outcome} [{}]", changes.join(",")),
        ));
    }

    fn skip(&mut self, s: &odock_dataplane::runtime::SkipRecord<'_>) {
        self.0
            .host
            .lock()
            .unwrap()
            .push(format!("{}:skip:{}", s.plugin, s.cause));
    }

    fn follow_up(&mut self, _: &odock_dataplane::runtime::FollowUpRecord<'_>) {}
}

fn runtime_with(
    bindings: Vec<BindingSpec>,
    plugins: &[PluginSource],
) -> (Runtime, odock_dataplane::runtime::GateRunner, Recorded) {
    let runtime = Runtime::new();
    runtime
        .install(
            PolicySpec {
                version: 1,
                bindings,
            },
            plugins,
        )
        .unwrap();
    let recorded = Recorded::default();
    let runner = runtime.runner(0, Box::new(TestSink(recorded.clone())));
    (runtime, runner, recorded)
}

fn frame<'a>(headers: &'a [Header<'a>], body: &'a [u8]) -> RequestFrame<'a> {
    RequestFrame {
        request_id: 42,
        tenant: Some("acme"),
        environment: Some("prod"),
        model: Some("gpt-4o"),
        headers,
        body,
        ..RequestFrame::default()
    }
}

fn header_map(outcome: &odock_dataplane::runtime::Outcome<'_>) -> Vec<(String, String)> {
    outcome
        .headers()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

#[test]
fn later_plugins_see_what_earlier_ones_changed() {
    let (a, b) = (probe("probe-a"), probe("probe-b"));
    let (_rt, mut runner, recorded) = runtime_with(
        vec![
            bind("probe-b", 2, "echo:x-trace;echo:x-drop"),
            bind("probe-a", 1, "header:x-trace=abc"),
        ],
        &[a, b],
    );
    let headers = [
        Header::new(b"x-drop", b"gone?"),
        Header::new(b"content-type", b"application/json"),
    ];
    let f = frame(&headers, b"{}");
    let out = runner.request(&f);
    assert_eq!(out.verdict, Verdict::Continue);
    let h = header_map(&out);
    assert!(h.contains(&("x-trace".into(), "abc".into())), "{h:?}");
    // probe-b ran second and saw probe-a's header, and the original one.
    assert!(h.contains(&("x-saw-x-trace".into(), "abc".into())), "{h:?}");
    assert!(
        h.contains(&("x-saw-x-drop".into(), "gone?".into())),
        "{h:?}"
    );
    assert!(out.changed() && !out.body_changed());
    let d = recorded.decisions.lock().unwrap().clone();
    assert_eq!(
        d,
        vec![
            ("probe-a".to_string(), "continue [set x-trace]".to_string()),
            (
                "probe-b".to_string(),
                "continue [set x-saw-x-trace,set x-saw-x-drop]".to_string()
            ),
        ]
    );
}

#[test]
fn a_block_ends_the_chain_and_keeps_the_detail_out() {
    let (a, b) = (probe("probe-a"), probe("probe-b"));
    let (rt, mut runner, recorded) = runtime_with(
        vec![
            bind("probe-a", 1, "block:403:model not allowed"),
            bind("probe-b", 2, "header:x-late=1"),
        ],
        &[a, b],
    );
    let f = frame(&[], b"{}");
    let out = runner.request(&f);
    assert_eq!(
        out.verdict,
        Verdict::Block {
            status: 403,
            reason: "model not allowed",
            plugin: "probe-a"
        }
    );
    assert!(header_map(&out).is_empty(), "probe-b must not have run");
    assert_eq!(rt.counter("probe-b", Gate::Request, Counter::Calls), 0);
    assert_eq!(rt.counter("probe-a", Gate::Request, Counter::Blocks), 1);
    assert_eq!(recorded.decisions.lock().unwrap().len(), 1);
}

#[test]
fn an_overrun_is_handled_by_the_failure_mode() {
    let p = probe("probe-a");
    for (mode, want) in [
        (
            FailureMode::Enforce,
            Verdict::Block {
                status: 503,
                reason: odock_dataplane::plugin::FAIL_CLOSED_REASON,
                plugin: "probe-a",
            },
        ),
        (FailureMode::EnforceIgnoreError, Verdict::Continue),
        (FailureMode::Permissive, Verdict::Continue),
    ] {
        let mut slow = bind("probe-a", 1, "header:x-slow=1;sleep:30");
        slow.time_budget = Duration::from_millis(5);
        slow.failure_mode = mode;
        let (rt, mut runner, recorded) = runtime_with(vec![slow], std::slice::from_ref(&p));
        let f = frame(&[], b"{}");
        let out = runner.request(&f);
        assert_eq!(out.verdict, want, "{mode}");
        // The overrunning call's transforms are dropped.
        assert!(header_map(&out).is_empty(), "{mode}");
        assert_eq!(
            rt.counter("probe-a", Gate::Request, Counter::Timeouts),
            1,
            "{mode}"
        );
        assert_eq!(
            recorded.decisions.lock().unwrap()[0].1,
            "overran []",
            "{mode}"
        );
    }
}

#[test]
fn a_host_call_without_its_grant_is_denied_with_evidence() {
    let p = probe("probe-a");
    let (rt, mut runner, recorded) =
        runtime_with(vec![bind("probe-a", 1, "deny;header:x-after=1")], &[p]);
    let f = frame(&[], b"{}");
    let out = runner.request(&f);
    // The plugin saw DENIED and carried on; the worker did too.
    assert_eq!(out.verdict, Verdict::Continue);
    assert!(header_map(&out).contains(&("x-after".into(), "1".into())));
    assert!(
        recorded
            .host
            .lock()
            .unwrap()
            .contains(&"probe-a:capability_denied".to_string())
    );
    assert_eq!(rt.counter("probe-a", Gate::Request, Counter::Denied), 1);
}

#[test]
fn failures_and_failed_inits_follow_the_failure_mode() {
    let (a, b) = (probe("probe-a"), probe("probe-b"));
    for (config, mode, want_block) in [
        ("fail", FailureMode::Enforce, true),
        ("fail", FailureMode::EnforceIgnoreError, false),
        ("fail", FailureMode::Permissive, false),
        ("fail-init", FailureMode::Enforce, true),
        ("fail-init", FailureMode::EnforceIgnoreError, false),
    ] {
        let mut failing = bind("probe-a", 1, config);
        failing.failure_mode = mode;
        let (rt, mut runner, _) = runtime_with(
            vec![failing, bind("probe-b", 2, "header:x-b=1")],
            &[a.clone(), b.clone()],
        );
        let f = frame(&[], b"{}");
        let out = runner.request(&f);
        assert_eq!(
            matches!(out.verdict, Verdict::Block { status: 503, .. }),
            want_block,
            "{config} {mode}"
        );
        assert_eq!(
            header_map(&out).len(),
            usize::from(!want_block),
            "{config} {mode}: probe-b runs when open"
        );
        assert_eq!(
            rt.counter("probe-a", Gate::Request, Counter::Errors),
            1,
            "{config} {mode}"
        );
    }
}

#[test]
fn body_changes_are_copy_on_write_and_seen_downstream() {
    let (a, b) = (probe("probe-a"), probe("probe-b"));
    let (_rt, mut runner, recorded) = runtime_with(
        vec![
            bind("probe-a", 1, "redact:secret"),
            bind("probe-b", 2, "redact:key"),
        ],
        &[a, b],
    );
    let body = br#"{"messages":[{"role":"user","content":"my secret key is secret"}]}"#;
    let f = frame(&[], body);
    let out = runner.request(&f);
    assert_eq!(
        std::str::from_utf8(out.body()).unwrap(),
        r#"{"messages":[{"role":"user","content":"my ****** *** is ******"}]}"#
    );
    assert!(out.body_changed());
    // The original bytes are untouched.
    assert!(std::str::from_utf8(body).unwrap().contains("my secret key"));
    let d = recorded.decisions.lock().unwrap().clone();
    assert_eq!(d[0].1, "continue [body 42+6,body 56+6]");
    assert_eq!(d[1].1, "continue [body 49+3]");
}

#[test]
fn scopes_pick_the_chain() {
    let (a, b) = (probe("probe-a"), probe("probe-b"));
    let mut only_globex = bind("probe-b", 2, "header:x-globex=1");
    only_globex.scope.tenant = Some("globex".into());
    let (_rt, mut runner, _) = runtime_with(
        vec![bind("probe-a", 1, "header:x-all=1"), only_globex],
        &[a, b],
    );
    let acme = frame(&[], b"{}");
    assert_eq!(
        header_map(&runner.request(&acme)),
        vec![("x-all".to_string(), "1".to_string())]
    );
    let globex = RequestFrame {
        tenant: Some("globex"),
        ..frame(&[], b"{}")
    };
    assert_eq!(header_map(&runner.request(&globex)).len(), 2);
}

/// A policy swap while a worker runs frames: every frame sees one whole
/// policy (both plugins' headers carry the same version), and the worker
/// ends up on the last one.
#[test]
fn a_policy_swap_under_load_never_mixes_policies() {
    let (a, b) = (probe("probe-a"), probe("probe-b"));
    let plugins = [a, b];
    let policy = |v: u64| PolicySpec {
        version: v,
        bindings: vec![
            bind("probe-a", 1, &format!("header:x-a={v}")),
            bind("probe-b", 2, &format!("header:x-b={v}")),
        ],
    };
    let runtime = Runtime::new();
    runtime.install(policy(1), &plugins).unwrap();
    let worker_rt = runtime.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_w = Arc::clone(&stop);
    let worker = std::thread::spawn(move || {
        let mut runner = worker_rt.runner(0, Box::new(TestSink(Recorded::default())));
        let mut seen = std::collections::BTreeSet::new();
        let mut frames = 0u64;
        while !stop_w.load(std::sync::atomic::Ordering::Relaxed) || frames < 1000 {
            let f = frame(&[], b"{}");
            let out = runner.request(&f);
            let h = header_map(&out);
            assert_eq!(h.len(), 2, "{h:?}");
            assert_eq!(h[0].1, h[1].1, "a frame saw two policies: {h:?}");
            seen.insert(h[0].1.clone());
            frames += 1;
        }
        (seen, runner.policy_version())
    });
    for v in 2..=50 {
        runtime.install(policy(v), &plugins).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (seen, last) = worker.join().unwrap();
    assert!(seen.len() > 1, "the worker never saw a swap: {seen:?}");
    assert_eq!(last, 50);
}

#[test]
fn installing_a_bad_policy_changes_nothing() {
    let a = probe("probe-a");
    let runtime = Runtime::new();
    runtime
        .install(
            PolicySpec {
                version: 3,
                bindings: vec![bind("probe-a", 1, "header:x=1")],
            },
            std::slice::from_ref(&a),
        )
        .unwrap();
    let err = runtime
        .install(
            PolicySpec {
                version: 4,
                bindings: vec![bind("missing", 1, "")],
            },
            std::slice::from_ref(&a),
        )
        .unwrap_err();
    assert!(err.to_string().contains("\"missing\""), "{err}");
    let wrong_pin = PluginSource {
        pin: Pin::of_bytes(b"something else"),
        ..a.clone()
    };
    let err = runtime
        .install(
            PolicySpec {
                version: 5,
                bindings: vec![bind("probe-a", 1, "")],
            },
            &[wrong_pin],
        )
        .unwrap_err();
    assert!(err.to_string().contains("SHA-256"), "{err}");
    assert_eq!(runtime.policy_version(), 3);
}

/// Regression: the loader dlopens each plugin from a sealed memfd through
/// `/proc/self/fd/N`, and glibc finds loaded objects by that name. When the
/// memfd was closed after loading, the next plugin could get the same N and
/// dlopen returned the first plugin's handle.
#[test]
fn plugins_loaded_one_after_another_stay_distinct() {
    use odock_dataplane::plugin::{LoadedPlugin, PluginSpec};
    let grant = bind("x", 0, "").grant;
    let names = ["probe-a", "probe-b", "probe-c"];
    let loaded: Vec<_> = names
        .iter()
        .map(|n| {
            let s = probe(n);
            LoadedPlugin::load(&PluginSpec {
                name: s.name,
                path: s.path,
                pin: s.pin,
                grant: grant.clone(),
            })
            .unwrap()
        })
        .collect();
    for (plugin, name) in loaded.iter().zip(names) {
        assert_eq!(plugin.name(), name);
    }
}

/// The scope's model comes from the body's parse-once index, decoded: an
/// escaped spelling is the same model the upstream will read.
#[test]
fn the_scope_reads_the_model_and_tool_from_the_body() {
    let (a, b) = (probe("probe-a"), probe("probe-b"));
    let mut gpt = bind("probe-a", 1, "header:x-gpt=1");
    gpt.scope.model = Some("gpt-4o".into());
    let mut tool = bind("probe-b", 2, "header:x-tool=1");
    tool.scope.mcp_tool = Some("delete_repo".into());
    let (_rt, mut runner, _) = runtime_with(vec![gpt, tool], &[a, b]);
    let api = odock_dataplane::index::ApiKind::from_path(b"/v1/chat/completions");
    for (body, want) in [
        (
            &br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#[..],
            true,
        ),
        (&br#"{"model":"gpt\u002d4o","messages":[]}"#[..], true),
        (&br#"{"model":"gpt-4o-mini","messages":[]}"#[..], false),
        (&br#"{"model":"#[..], false),
    ] {
        let f = RequestFrame {
            model: None,
            api,
            ..frame(&[], body)
        };
        let h = header_map(&runner.request(&f));
        assert_eq!(
            h.contains(&("x-gpt".into(), "1".into())),
            want,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let mcp = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"delete_repo","arguments":{"repo":"x"}}}"#;
    let f = RequestFrame {
        model: None,
        mcp_server: Some("github"),
        api: odock_dataplane::index::ApiKind::from_path(b"/mcp"),
        ..frame(&[], mcp)
    };
    assert!(header_map(&runner.request(&f)).contains(&("x-tool".into(), "1".into())));
}

/// A probe plugin joining the response gate per chunk (`per_chunk`) or
/// with the whole body.
fn response_probe(name: &str, per_chunk: bool) -> PluginSource {
    let mode = if per_chunk {
        "ODOCK_RESPONSE_PER_CHUNK"
    } else {
        "ODOCK_RESPONSE_WHOLE_BODY"
    };
    plugin_support::probe_plugin(name, &[("RESPONSE_MODE", mode)])
}

fn on_response(plugin: &str, priority: i32, config: &str) -> BindingSpec {
    let mut b = bind(plugin, priority, config);
    b.priority = [None, Some(priority), None];
    b
}

#[test]
fn the_response_gate_changes_the_answer_not_the_request() {
    let (a, b) = (
        response_probe("resp-a", false),
        response_probe("resp-b", false),
    );
    let (_rt, mut runner, recorded) = runtime_with(
        vec![
            on_response("resp-a", 1, "header:x-served-by=odock;redact:4111"),
            on_response("resp-b", 2, "echo:x-served-by"),
        ],
        &[a, b],
    );
    let request = frame(&[], br#"{"model":"gpt-4o","messages":[]}"#);
    let headers = [Header::new(b"content-type", b"application/json")];
    let response = odock_dataplane::runtime::ResponseFrame {
        status: 200,
        headers: &headers,
        body: br#"{"choices":[{"message":{"content":"card 4111 1111"}}]}"#,
    };
    let out = runner.response(&request, &response);
    assert_eq!(out.verdict, Verdict::Continue);
    assert_eq!(
        std::str::from_utf8(out.body()).unwrap(),
        r#"{"choices":[{"message":{"content":"card **** 1111"}}]}"#
    );
    let h = header_map(&out);
    assert!(h.contains(&("x-served-by".into(), "odock".into())), "{h:?}");
    assert!(
        h.contains(&("x-saw-x-served-by".into(), "odock".into())),
        "{h:?}"
    );
    assert_eq!(recorded.decisions.lock().unwrap().len(), 2);
    // The request gate has no chain here.
    let out = runner.request(&request);
    assert!(!out.changed());
}

/// An SSE answer of 1,000 chunks with a redaction in the middle: only that
/// chunk changes; a whole-body plugin sees the whole answer at the end and
/// can end the stream; each chunk is judged on its own.
#[test]
fn a_stream_of_1000_chunks_with_a_redaction_in_the_middle() {
    let (chunky, whole) = (
        response_probe("dlp-chunk", true),
        response_probe("audit-whole", false),
    );
    let (rt, mut runner, recorded) = runtime_with(
        vec![
            on_response("dlp-chunk", 1, "redact:SECRET"),
            on_response("audit-whole", 2, "redact:never;evidence:audit.saw_all"),
        ],
        &[chunky, whole],
    );
    let request = frame(&[], br#"{"model":"gpt-4o","stream":true,"messages":[]}"#);
    let headers = [Header::new(b"content-type", b"text/event-stream")];
    let mut stream = runner.stream_state(&request, 1 << 20);
    assert!(stream.buffers(), "the chain has a whole-body plugin");
    let mut out_bytes = Vec::new();
    for i in 0..1000u64 {
        let text = if i == 500 {
            "data: {\"choices\":[{\"delta\":{\"content\":\"the SECRET is out\"}}]}\n\n".to_string()
        } else {
            format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"token {i}\"}}}}]}}\n\n")
        };
        let chunk = odock_dataplane::runtime::ChunkFrame {
            status: 200,
            headers: &headers,
            chunk: text.as_bytes(),
            index: i,
            last: i == 999,
        };
        let out = runner.response_chunk(&request, &chunk, &mut stream);
        assert_eq!(out.verdict, Verdict::Continue, "chunk {i}");
        assert_eq!(out.body_changed(), i == 500, "chunk {i}");
        out_bytes.extend_from_slice(out.body());
    }
    let all = String::from_utf8(out_bytes).unwrap();
    assert!(all.contains("the ****** is out") && !all.contains("SECRET"));
    assert!(all.contains("token 0") && all.contains("token 999"));
    // The per-chunk plugin ran 1000 times, the whole-body one once.
    assert_eq!(
        rt.counter(
            "dlp-chunk",
            odock_plugin_abi::Gate::Response,
            Counter::Calls
        ),
        1000
    );
    assert_eq!(
        rt.counter(
            "audit-whole",
            odock_plugin_abi::Gate::Response,
            Counter::Calls
        ),
        1
    );
    assert!(
        recorded
            .host
            .lock()
            .unwrap()
            .contains(&"audit-whole:audit.saw_all".to_string())
    );
}

#[test]
fn a_whole_body_plugin_ends_a_stream_and_an_overflow_is_recorded() {
    let whole = response_probe("audit-whole", false);
    let (_rt, mut runner, recorded) = runtime_with(
        vec![on_response(
            "audit-whole",
            1,
            "block:502:the answer broke a policy",
        )],
        &[whole],
    );
    let request = frame(&[], b"{}");
    let headers = [];
    // Ends the stream: the last chunk comes back blocked.
    let mut stream = runner.stream_state(&request, 1 << 20);
    for i in 0..3u64 {
        let chunk = odock_dataplane::runtime::ChunkFrame {
            status: 200,
            headers: &headers,
            chunk: b"data: x\n\n",
            index: i,
            last: i == 2,
        };
        let out = runner.response_chunk(&request, &chunk, &mut stream);
        let want = if i == 2 {
            Verdict::Block {
                status: 502,
                reason: "the answer broke a policy",
                plugin: "audit-whole",
            }
        } else {
            Verdict::Continue
        };
        assert_eq!(out.verdict, want, "chunk {i}");
    }
    // Over the cap: the whole-body plugin is skipped, with evidence.
    let mut stream = runner.stream_state(&request, 8);
    for i in 0..3u64 {
        let chunk = odock_dataplane::runtime::ChunkFrame {
            status: 200,
            headers: &headers,
            chunk: b"data: x\n\n",
            index: i,
            last: i == 2,
        };
        assert_eq!(
            runner.response_chunk(&request, &chunk, &mut stream).verdict,
            Verdict::Continue
        );
    }
    assert!(stream.overflowed());
    assert!(
        recorded
            .host
            .lock()
            .unwrap()
            .contains(&"audit-whole:skip:stream_over_buffer_cap".to_string())
    );
}

fn approver() -> PluginSource {
    plugin_support::probe_plugin("approver", &[("WITH_APPROVALS", "1")])
}

fn approval_binding(config: &str) -> BindingSpec {
    let mut b = bind("approver", 1, config);
    b.grant = Grant::new(Capabilities::ALL.without(Capabilities::of(&[
        odock_plugin_abi::Capability::QueueFollowup,
    ])))
    .with_integration("approvals");
    b
}

fn answer(
    token: u64,
    outcome: odock_plugin_abi::AnswerOutcome,
    body: &[u8],
) -> odock_dataplane::plugin::IntegrationAnswer<'_> {
    odock_dataplane::plugin::IntegrationAnswer {
        token,
        outcome,
        body,
    }
}

/// A pause parks the frame (the runner goes on with other frames) and the
/// answer resumes it at the plugin that paused; the rest of the chain runs.
#[test]
fn a_paused_frame_resumes_with_its_answer() {
    use odock_plugin_abi::AnswerOutcome;
    let (ap, b) = (approver(), probe("probe-b"));
    let (_rt, mut runner, recorded) = runtime_with(
        vec![
            approval_binding("pause:50"),
            bind("probe-b", 2, "header:x-after=1"),
        ],
        &[ap, b],
    );
    for (reply, outcome, want) in [
        (&b"approve"[..], AnswerOutcome::Ok, Verdict::Continue),
        (
            b"no",
            AnswerOutcome::Ok,
            Verdict::Block {
                status: 403,
                reason: "the request was not approved",
                plugin: "approver",
            },
        ),
        (
            b"",
            AnswerOutcome::Timeout,
            Verdict::Block {
                status: 504,
                reason: "the approval did not come in time",
                plugin: "approver",
            },
        ),
    ] {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"wire $1M"}]}"#;
        let f = frame(&[], body);
        let token = match runner.request(&f).verdict {
            Verdict::Pause {
                integration,
                payload,
                timeout,
                token,
                plugin,
            } => {
                assert_eq!(
                    (integration, plugin, timeout),
                    ("approvals", "approver", Duration::from_millis(50))
                );
                assert_eq!(payload, body);
                token
            }
            other => panic!("expected a pause, got {other:?}"),
        };
        assert_eq!(runner.parked(), 1);
        // The worker is not blocked: another frame runs meanwhile.
        let other = RequestFrame {
            request_id: 43,
            ..frame(&[], b"{}")
        };
        assert!(matches!(
            runner.request(&other).verdict,
            Verdict::Pause { .. }
        ));
        assert_eq!(runner.parked(), 2);
        assert_eq!(
            runner
                .resume(&f, &answer(token + 1000, AnswerOutcome::Ok, b"approve"))
                .unwrap_err(),
            odock_dataplane::runtime::ResumeError::WrongToken { request_id: 42 }
        );
        let out = runner.resume(&f, &answer(token, outcome, reply)).unwrap();
        assert_eq!(out.verdict, want);
        if want == Verdict::Continue {
            let h = header_map(&out);
            assert!(
                h.contains(&("x-approved".into(), "1".into()))
                    && h.contains(&("x-after".into(), "1".into())),
                "{h:?}"
            );
        }
        assert_eq!(
            runner.expire_parked(std::time::Instant::now() + Duration::from_secs(5)),
            1,
            "request 43 expires"
        );
        assert_eq!(runner.parked(), 0);
    }
    let d = recorded.decisions.lock().unwrap().clone();
    assert!(
        d.iter()
            .any(|(p, o)| p == "approver" && o.starts_with("pause")),
        "{d:?}"
    );
}

/// An answer that never comes: the parked frame expires with a timeout
/// decision, and resuming it later is refused.
#[test]
fn a_paused_frame_whose_answer_never_comes_expires() {
    let ap = approver();
    let (_rt, mut runner, recorded) = runtime_with(vec![approval_binding("pause:20")], &[ap]);
    let f = frame(&[], b"{}");
    let token = match runner.request(&f).verdict {
        Verdict::Pause { token, .. } => token,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        runner.expire_parked(std::time::Instant::now()),
        0,
        "not overdue yet"
    );
    std::thread::sleep(
        Duration::from_millis(20) + Duration::from_secs(1) + Duration::from_millis(50),
    );
    assert_eq!(runner.expire_parked(std::time::Instant::now()), 1);
    assert_eq!(
        recorded.decisions.lock().unwrap().last().unwrap().1,
        "overran []"
    );
    assert_eq!(
        runner
            .resume(
                &f,
                &answer(token, odock_plugin_abi::AnswerOutcome::Ok, b"approve")
            )
            .unwrap_err(),
        odock_dataplane::runtime::ResumeError::NotParked { request_id: 42 }
    );
}

/// A policy installed while a frame is parked waits: the parked frame
/// finishes under the policy it started with.
#[test]
fn a_parked_frame_finishes_under_its_own_policy() {
    let (ap, b) = (approver(), probe("probe-b"));
    let plugins = [ap, b];
    let runtime = Runtime::new();
    runtime
        .install(
            PolicySpec {
                version: 1,
                bindings: vec![
                    approval_binding("pause:50"),
                    bind("probe-b", 2, "header:x-v=1"),
                ],
            },
            &plugins,
        )
        .unwrap();
    let mut runner = runtime.runner(0, Box::new(TestSink(Recorded::default())));
    let f = frame(&[], b"{}");
    let token = match runner.request(&f).verdict {
        Verdict::Pause { token, .. } => token,
        other => panic!("{other:?}"),
    };
    runtime
        .install(
            PolicySpec {
                version: 2,
                bindings: vec![
                    approval_binding("pause:50"),
                    bind("probe-b", 2, "header:x-v=2"),
                ],
            },
            &plugins,
        )
        .unwrap();
    let out = runner
        .resume(
            &f,
            &answer(token, odock_plugin_abi::AnswerOutcome::Ok, b"approve"),
        )
        .unwrap();
    assert!(header_map(&out).contains(&("x-v".into(), "1".into())));
    assert_eq!(runner.policy_version(), 1);
    // Nothing parked any more: the next frame adopts version 2.
    let g = RequestFrame {
        request_id: 44,
        ..frame(&[], b"{}")
    };
    assert!(matches!(runner.request(&g).verdict, Verdict::Pause { .. }));
    assert_eq!(runner.policy_version(), 2);
}

/// A plugin stuck far past its budget: the watchdog reports the worker
/// stuck (health and evidence, once), and when the call returns it is an
/// overrun under the failure mode.
#[test]
fn the_watchdog_reports_a_worker_stuck_in_a_plugin() {
    use odock_dataplane::runtime::watchdog::WorkerState;
    let p = probe("probe-a");
    let mut slow = bind("probe-a", 1, "sleep:600");
    slow.time_budget = Duration::from_millis(10);
    let runtime = Runtime::new();
    runtime
        .install(
            PolicySpec {
                version: 1,
                bindings: vec![slow],
            },
            &[p],
        )
        .unwrap();
    let watchdog_seen = Recorded::default();
    let _watchdog = runtime.start_watchdog(
        Duration::from_millis(5),
        Duration::from_millis(50),
        Box::new(TestSink(watchdog_seen.clone())),
    );
    let worker_rt = runtime.clone();
    let worker = std::thread::spawn(move || {
        let mut runner = worker_rt.runner(7, Box::new(TestSink(Recorded::default())));
        let f = frame(&[], b"{}");
        runner.request(&f).verdict == Verdict::Continue
    });
    let start = std::time::Instant::now();
    let mut saw_stuck = false;
    while start.elapsed() < Duration::from_millis(550) {
        let health = runtime.health(Duration::from_millis(50));
        if let Some(WorkerState::Stuck { plugin, .. }) =
            health.iter().find(|h| h.worker == 7).map(|h| &h.state)
        {
            assert_eq!(plugin, "probe-a");
            saw_stuck = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(saw_stuck, "health never showed the worker stuck");
    // Enforce: the overrun blocks when the call finally returns.
    assert!(
        !worker.join().unwrap(),
        "the overrun must not continue under enforce"
    );
    std::thread::sleep(Duration::from_millis(30));
    let h = runtime.health(Duration::from_millis(50));
    let h = h.iter().find(|h| h.worker == 7).unwrap();
    assert_eq!((h.state.clone(), h.stuck_episodes), (WorkerState::Idle, 1));
    let reports = watchdog_seen.host.lock().unwrap().clone();
    assert_eq!(
        reports,
        vec!["probe-a:skip:worker_stuck".to_string()],
        "reported once per episode"
    );
}

/// Malformed JSON is no crash: the frame passes the gates with its index
/// marked invalid, and a plugin in scope decides.
#[test]
fn a_malformed_body_passes_with_its_index_marked_invalid() {
    let p = probe("probe-a");
    let (_rt, mut runner, recorded) = runtime_with(
        vec![bind("probe-a", 1, "require-valid;header:x-ok=1")],
        &[p],
    );
    let api = odock_dataplane::index::ApiKind::from_path(b"/v1/chat/completions");
    let good = RequestFrame {
        api,
        ..frame(&[], br#"{"model":"gpt-4o","messages":[]}"#)
    };
    assert_eq!(runner.request(&good).verdict, Verdict::Continue);
    for bad in [
        &br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"#[..],
        b"\xff\xfe",
        b"[[[[[[",
    ] {
        let f = RequestFrame {
            api,
            ..frame(&[], bad)
        };
        assert_eq!(
            runner.request(&f).verdict,
            Verdict::Block {
                status: 400,
                reason: "the request body is not valid JSON",
                plugin: "probe-a"
            }
        );
    }
    assert_eq!(recorded.decisions.lock().unwrap().len(), 4);
}

/// `replace_body_field` replaces the value a JSON pointer names; a pointer
/// that names nothing, or a value that is not JSON, is the plugin's failure.
#[test]
fn a_body_field_is_replaced_by_json_pointer() {
    let (a, b) = (probe("probe-a"), probe("probe-b"));
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"my card is 4111"}]}"#;
    let (_rt, mut runner, recorded) = runtime_with(
        vec![
            bind("probe-a", 1, r#"field:/messages/0/content="[redacted]""#),
            bind("probe-b", 2, "redact:redacted"),
        ],
        &[a.clone(), b.clone()],
    );
    let f = frame(&[], body);
    let out = runner.request(&f);
    assert_eq!(out.verdict, Verdict::Continue);
    assert_eq!(
        std::str::from_utf8(out.body()).unwrap(),
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"[********]"}]}"#
    );
    assert_eq!(
        recorded.decisions.lock().unwrap()[0].1,
        "continue [field /messages/0/content]"
    );
    for config in [r#"field:/messages/9/content="x""#, "field:/model=not json"] {
        let (_rt, mut runner, _) =
            runtime_with(vec![bind("probe-a", 1, config)], std::slice::from_ref(&a));
        let out = runner.request(&f);
        assert!(
            matches!(out.verdict, Verdict::Block { status: 503, .. }),
            "{config}"
        );
    }
}
