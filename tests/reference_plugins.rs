//! The reference plugins (`plugins/`), each loaded as a real shared library
//! through the runtime and doing its job: enrich's headers and metadata
//! reaching the outcome, model-allowlist blocking with the reason the
//! caller sees, dlp-redact across an SSE stream whose card number and
//! email are split over chunk boundaries, approval approved / denied /
//! timed out, audit-export writing parseable JSON lines, notify's webhook
//! retried after failures against a listener on 127.0.0.1.

mod plugin_support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use odock_dataplane::index::ApiKind;
use odock_dataplane::plugin::{
    Binding, Evidence, EvidenceRecord, EvidenceSink, FailureMode, Grant, IntegrationAnswer,
    LoadedPlugin, MemorySink, Pin, PluginSpec,
};
use odock_dataplane::runtime::policy::{BindingSpec, PolicySpec, Scope};
use odock_dataplane::runtime::{
    CallOutcome, ChunkFrame, DecisionRecord, FollowUpRecord, FollowUpState, GateRunner, Outcome,
    PluginSource, RequestFrame, ResponseFrame, Runtime, RuntimeSink, SkipRecord, Verdict,
};
use odock_plugin_abi::view::Header;
use odock_plugin_abi::{AnswerOutcome, Capabilities, Error, LogLevel};
use serde_json::Value;

/// The reference plugins by registered name: where their library is.
fn library(name: &str) -> PathBuf {
    match name {
        "enrich" => plugin_support::c_plugin("ref_enrich", "plugins/enrich/enrich.c", &[]),
        "model-allowlist" => plugin_support::c_plugin(
            "ref_model_allowlist",
            "plugins/model-allowlist/model_allowlist.c",
            &[],
        ),
        other => plugin_support::rust_plugin(&format!("odock-plugin-{other}")),
    }
}

fn source(name: &str) -> PluginSource {
    let path = library(name);
    PluginSource {
        name: name.into(),
        pin: Pin::of_file(&path).unwrap(),
        path,
    }
}

/// A binding of `plugin` on the gates whose priority is given, granted
/// everything (the plugin still gets only what it asks for).
fn binding(plugin: &str, gates: [Option<i32>; 3], config: &str) -> BindingSpec {
    BindingSpec {
        plugin: plugin.into(),
        scope: Scope::default(),
        enabled: true,
        priority: gates,
        grant: Grant::new(Capabilities::ALL).with_integration("approvals"),
        config: config.as_bytes().to_vec(),
        failure_mode: FailureMode::Enforce,
        time_budget: Duration::from_secs(5),
    }
}

const REQUEST: [Option<i32>; 3] = [Some(1), None, None];
const RESPONSE: [Option<i32>; 3] = [None, Some(1), None];
const BOTH: [Option<i32>; 3] = [Some(1), Some(1), None];
const COMPLETE: [Option<i32>; 3] = [None, None, Some(1)];

/// Everything a runner recorded, shared with the test.
#[derive(Default)]
struct Seen {
    /// (plugin, kind, data) of the plugins' own records and the host's.
    evidence: Vec<(String, String, String)>,
    /// (plugin, outcome, detail).
    decisions: Vec<(String, String, String)>,
    /// (kind, state, attempts).
    followups: Vec<(String, FollowUpState, u32)>,
    logs: Vec<String>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Seen>>);

impl Recorder {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap()
    }

    fn of_kind(&self, kind: &str) -> Vec<String> {
        self.seen()
            .evidence
            .iter()
            .filter(|e| e.1 == kind)
            .map(|e| e.2.clone())
            .collect()
    }
}

impl EvidenceSink for Recorder {
    fn record(&mut self, e: &Evidence<'_>) {
        let data = match e.record {
            EvidenceRecord::Plugin { data, .. } => String::from_utf8_lossy(data).into_owned(),
            other => other.to_string(),
        };
        self.seen()
            .evidence
            .push((e.plugin.into(), e.record.kind().into(), data));
    }

    fn log(&mut self, plugin: &str, _level: LogLevel, message: &[u8]) {
        self.seen()
            .logs
            .push(format!("{plugin}: {}", String::from_utf8_lossy(message)));
    }
}

impl RuntimeSink for Recorder {
    fn decision(&mut self, d: &DecisionRecord<'_>) {
        let (outcome, detail) = match d.outcome {
            CallOutcome::Block { status, detail, .. } => (
                format!("block {status}"),
                String::from_utf8_lossy(detail).into_owned(),
            ),
            other => (format!("{other:?}"), String::new()),
        };
        self.seen()
            .decisions
            .push((d.plugin.into(), outcome, detail));
    }

    fn skip(&mut self, _: &SkipRecord<'_>) {}

    fn follow_up(&mut self, f: &FollowUpRecord<'_>) {
        self.seen()
            .followups
            .push((f.kind.into(), f.state, f.attempts));
    }
}

/// A runtime with `bindings` installed and one runner on worker 0.
fn runner(bindings: Vec<BindingSpec>) -> (Runtime, GateRunner, Recorder) {
    let mut names: Vec<String> = bindings.iter().map(|b| b.plugin.clone()).collect();
    names.dedup();
    let sources: Vec<PluginSource> = names.iter().map(|n| source(n)).collect();
    let runtime = Runtime::new();
    runtime
        .install(
            PolicySpec {
                version: 1,
                bindings,
            },
            &sources,
        )
        .unwrap();
    let recorder = Recorder::default();
    let runner = runtime.runner(0, Box::new(recorder.clone()));
    (runtime, runner, recorder)
}

fn llm<'a>(
    id: u64,
    tenant: &'a str,
    headers: &'a [Header<'a>],
    body: &'a [u8],
) -> RequestFrame<'a> {
    RequestFrame {
        request_id: id,
        tenant: Some(tenant),
        virtual_key: Some("vk-1"),
        environment: Some("prod"),
        api: ApiKind::from_path(b"/v1/chat/completions"),
        headers,
        body,
        ..RequestFrame::default()
    }
}

fn headers_of(out: &Outcome<'_>) -> Vec<(String, String)> {
    out.headers()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

fn header<'h>(h: &'h [(String, String)], name: &str) -> Option<&'h str> {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn metadata_of(out: &Outcome<'_>) -> Vec<(String, String)> {
    out.metadata()
        .map(|(k, v)| (k.to_owned(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

/// Every reference plugin loads, and its descriptor carries a JSON Schema
/// that is JSON; a config it cannot use fails init with a log line.
#[test]
fn every_plugin_loads_with_a_schema_and_refuses_bad_config() {
    for (name, bad) in [
        (
            "enrich",
            r#"{"tenants":{"acme":{"headers":{"bad header":"x"}}}}"#,
        ),
        (
            "model-allowlist",
            r#"{"tenants":{"acme":{"models":"gpt-4o"}}}"#,
        ),
        ("dlp-redact", r#"{"patterns":["ssn"]}"#),
        ("approval", r#"{"models":[],"tools":[]}"#),
        ("audit-export", r#"{"file":"relative.jsonl"}"#),
        ("notify", r#"{"webhook":"https://example.test/"}"#),
    ] {
        let path = library(name);
        let plugin = LoadedPlugin::load(&PluginSpec {
            name: name.into(),
            pin: Pin::of_file(&path).unwrap(),
            path,
            grant: Grant::new(Capabilities::ALL).with_integration("approvals"),
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let schema: Value = serde_json::from_str(plugin.config_schema())
            .unwrap_or_else(|e| panic!("{name}: schema is not JSON: {e}"));
        assert_eq!(schema["type"], "object", "{name}");
        let mut sink = MemorySink::new();
        let err = plugin
            .instantiate(
                Binding::new(0, bad.as_bytes(), FailureMode::Enforce),
                &mut sink,
            )
            .err()
            .unwrap_or_else(|| panic!("{name} accepted {bad}"));
        assert_eq!(err.error, Error::InvalidConfig, "{name}");
        let line = sink
            .logs
            .iter()
            .map(|(_, level, m)| (*level, String::from_utf8_lossy(m).into_owned()))
            .find(|(level, _)| *level == LogLevel::Error)
            .unwrap_or_else(|| panic!("{name} logged nothing"));
        assert!(line.1.contains("config"), "{name}: {}", line.1);
    }
}

const ENRICH_CONFIG: &str = r#"{
  "tenants": {"acme": {"metadata": {"tier": "gold", "region": "eu"},
                       "billing_tag": "acme-prod",
                       "headers": {"x-acme-cost-center": "cc-42"}}},
  "default": {"billing_tag": "unassigned"}
}"#;

#[test]
fn enrich_adds_tenant_metadata_a_trace_and_a_billing_tag() {
    let (_rt, mut runner, seen) = runner(vec![binding("enrich", REQUEST, ENRICH_CONFIG)]);
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let incoming = [Header::new(b"content-type", b"application/json")];
    let f = llm(4242, "acme", &incoming, body);
    let out = runner.request(&f);
    assert_eq!(out.verdict, Verdict::Continue);
    let h = headers_of(&out);
    assert_eq!(header(&h, "x-odock-tenant"), Some("acme"));
    assert_eq!(header(&h, "x-odock-billing-tag"), Some("acme-prod"));
    assert_eq!(header(&h, "x-acme-cost-center"), Some("cc-42"));
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    let trace = header(&h, "traceparent")
        .expect("a generated traceparent")
        .to_owned();
    let parts: Vec<&str> = trace.split('-').collect();
    assert_eq!(parts.len(), 4, "{trace}");
    assert_eq!((parts[0], parts[3]), ("00", "01"));
    assert!(parts[1].len() == 32 && parts[2].len() == 16, "{trace}");
    assert!(
        parts[1]
            .bytes()
            .chain(parts[2].bytes())
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let meta = metadata_of(&out);
    for (k, v) in [
        ("tier", "gold"),
        ("region", "eu"),
        ("billing_tag", "acme-prod"),
    ] {
        assert!(meta.contains(&(k.into(), v.into())), "{meta:?}");
    }
    assert!(
        meta.contains(&("trace_id".into(), parts[1].into())),
        "{meta:?}"
    );
    // The same request id gives the same trace (every hop agrees).
    assert_eq!(
        header(&headers_of(&runner.request(&f)), "traceparent"),
        Some(trace.as_str())
    );

    // A caller's own traceparent is kept, and its trace id becomes metadata.
    let theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let with_trace = [Header::new(b"TraceParent", theirs.as_bytes())];
    let g = llm(4243, "acme", &with_trace, body);
    let out = runner.request(&g);
    let h = headers_of(&out);
    assert_eq!(
        h.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("traceparent"))
            .count(),
        1
    );
    assert_eq!(header(&h, "traceparent"), Some(theirs));
    assert!(
        metadata_of(&out).contains(&("trace_id".into(), "4bf92f3577b34da6a3ce929d0e0e4736".into()))
    );

    // A tenant without an entry gets the default.
    let u = llm(4244, "globex", &[], body);
    let out = runner.request(&u);
    let h = headers_of(&out);
    assert_eq!(header(&h, "x-odock-billing-tag"), Some("unassigned"));
    assert_eq!(header(&h, "x-odock-tenant"), Some("globex"));
    let applied = seen.of_kind("enrich.applied");
    assert_eq!(applied.len(), 4);
    assert_eq!(applied[0], "tenant=acme entry=tenant trace=generated");
    assert_eq!(applied[2], "tenant=acme entry=tenant trace=kept");
    assert_eq!(applied[3], "tenant=globex entry=default trace=generated");
}

const ALLOWLIST_CONFIG: &str = r#"{
  "tenants": {"acme": {"models": ["gpt-4o", "gpt-4o-mini"], "tools": ["search", "fetch_*"]},
              "initech": {"tools": []}},
  "default": {"models": ["gpt-4o-mini"]}
}"#;

#[test]
fn model_allowlist_blocks_with_a_reason_the_caller_can_act_on() {
    let (_rt, mut runner, seen) =
        runner(vec![binding("model-allowlist", REQUEST, ALLOWLIST_CONFIG)]);
    let ask = |runner: &mut GateRunner, tenant: &str, model: &str| -> Verdict<'static> {
        let body = format!(r#"{{"model":"{model}","messages":[]}}"#);
        let f = llm(1, tenant, &[], body.as_bytes());
        match runner.request(&f).verdict {
            Verdict::Continue => Verdict::Continue,
            Verdict::Block {
                status,
                reason,
                plugin,
            } => Verdict::Block {
                status,
                reason: reason.to_owned().leak(),
                plugin: plugin.to_owned().leak(),
            },
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(ask(&mut runner, "acme", "gpt-4o"), Verdict::Continue);
    assert_eq!(
        ask(&mut runner, "acme", "gpt-5"),
        Verdict::Block {
            status: 403,
            reason: "model `gpt-5` is not enabled for your organization; enabled models: gpt-4o, gpt-4o-mini",
            plugin: "model-allowlist",
        }
    );
    // The default entry, and an entry that does not restrict models.
    assert_eq!(ask(&mut runner, "globex", "gpt-4o-mini"), Verdict::Continue);
    assert!(matches!(
        ask(&mut runner, "globex", "gpt-4o"),
        Verdict::Block { status: 403, .. }
    ));
    assert_eq!(ask(&mut runner, "initech", "anything"), Verdict::Continue);
    // The rule is in the detail and the evidence, never in the reason.
    let s = seen.seen();
    let details: Vec<&str> = s
        .decisions
        .iter()
        .filter(|d| d.1 == "block 403")
        .map(|d| d.2.as_str())
        .collect();
    assert_eq!(
        details,
        vec![
            "tenant=acme rule=tenants.acme.models name=gpt-5",
            "tenant=globex rule=default.models name=gpt-4o"
        ]
    );
    assert_eq!(
        s.evidence
            .iter()
            .filter(|e| e.1 == "model_allowlist.blocked")
            .count(),
        2
    );
    drop(s);

    // MCP tools: listed, by prefix, not listed; tools/list always passes.
    let call = |runner: &mut GateRunner, tenant: &str, method: &str, tool: &str| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"name":"{tool}","arguments":{{}}}}}}"#
        );
        let f = RequestFrame {
            mcp_server: Some("github"),
            api: ApiKind::from_path(b"/mcp"),
            ..llm(2, tenant, &[], body.as_bytes())
        };
        match runner.request(&f).verdict {
            Verdict::Continue => None,
            Verdict::Block { status, reason, .. } => Some((status, reason.to_owned())),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(call(&mut runner, "acme", "tools/call", "search"), None);
    assert_eq!(call(&mut runner, "acme", "tools/call", "fetch_issue"), None);
    assert_eq!(
        call(&mut runner, "acme", "tools/call", "delete_repo"),
        Some((403, "MCP tool `delete_repo` is not enabled for your organization; enabled tools: search, fetch_*".to_owned()))
    );
    assert_eq!(
        call(&mut runner, "initech", "tools/call", "search"),
        Some((
            403,
            "MCP tool `search` is not enabled for your organization; enabled tools: (none)"
                .to_owned()
        ))
    );
    assert_eq!(call(&mut runner, "initech", "tools/list", ""), None);
}

#[test]
fn model_allowlist_blocks_a_tenant_it_does_not_know_without_a_default() {
    let (_rt, mut runner, _seen) = runner(vec![binding(
        "model-allowlist",
        REQUEST,
        r#"{"tenants":{"acme":{"models":["gpt-4o"]}}}"#,
    )]);
    let f = llm(3, "nobody", &[], br#"{"model":"gpt-4o"}"#);
    match runner.request(&f).verdict {
        Verdict::Block { status, reason, .. } => {
            assert_eq!(status, 403);
            assert!(reason.contains("ask your administrator"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dlp_redact_redacts_the_request_body_and_keeps_it_json() {
    let (_rt, mut runner, seen) = runner(vec![binding("dlp-redact", REQUEST, "{}")]);
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"I am jane@example.com,\ncard 4111-1111-1111-1111, key sk-ABCDEFGHIJKLMNOPQRST"}]}"#;
    let f = llm(10, "acme", &[], body);
    let out = runner.request(&f);
    assert_eq!(out.verdict, Verdict::Continue);
    let v: Value = serde_json::from_slice(out.body()).expect("still JSON");
    assert_eq!(
        v["messages"][0]["content"],
        "I am [REDACTED:email],\ncard [REDACTED:card], key [REDACTED:api_key]"
    );
    assert_eq!(
        seen.of_kind("dlp_redact.redacted"),
        vec![
            r#"{"gate":"request","email":1,"card":1,"api_key":0}"#
                .replace("\"api_key\":0", "\"api_key\":1")
        ]
    );
}

/// One SSE event of a chat completion stream with this content delta.
fn delta(content: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    )
}

/// The content of an SSE stream as a client reassembles it.
fn reassemble(stream: &str) -> String {
    let mut text = String::new();
    for event in stream.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not SSE: {event:?}"));
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
        assert_eq!(v["id"], "chatcmpl-1", "{data}");
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(c);
        }
    }
    text
}

#[test]
fn dlp_redact_redacts_a_card_and_an_email_split_across_sse_chunks() {
    let (_rt, mut runner, seen) = runner(vec![binding("dlp-redact", RESPONSE, "{}")]);
    let request = llm(
        20,
        "acme",
        &[],
        br#"{"model":"gpt-4o","stream":true,"messages":[]}"#,
    );
    let headers = [Header::new(b"content-type", b"text/event-stream")];
    let mut events = vec![
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n".to_owned(),
    ];
    // The card number is cut twice, the email three times.
    for piece in [
        "Your card ",
        "4111 1111 11",
        "11 1111 is on file; write to ",
        "jane.d",
        "oe@exam",
        "ple.com",
        " for help.",
    ] {
        events.push(delta(piece));
    }
    events.push("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".to_owned());
    events.push("data: [DONE]\n\n".to_owned());
    let mut state = runner.stream_state(&request, 1 << 20);
    assert!(
        !state.buffers(),
        "dlp-redact works per chunk: nothing is buffered"
    );
    let mut sent = String::new();
    for (i, event) in events.iter().enumerate() {
        let chunk = ChunkFrame {
            status: 200,
            headers: &headers,
            chunk: event.as_bytes(),
            index: i as u64,
            last: i + 1 == events.len(),
        };
        let out = runner.response_chunk(&request, &chunk, &mut state);
        assert_eq!(out.verdict, Verdict::Continue, "chunk {i}");
        sent.push_str(std::str::from_utf8(out.body()).unwrap());
    }
    for secret in ["4111", "1111", "jane", "example", "oe@"] {
        assert!(!sent.contains(secret), "{secret} leaked:\n{sent}");
    }
    assert_eq!(
        reassemble(&sent),
        "Your card [REDACTED:card] is on file; write to [REDACTED:email] for help."
    );
    assert!(sent.ends_with("data: [DONE]\n\n"));
    let counts: Vec<Value> = seen
        .of_kind("dlp_redact.redacted")
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let total = |k: &str| counts.iter().map(|c| c[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!((total("card"), total("email"), total("api_key")), (1, 1, 0));
    assert!(counts.iter().all(|c| c["gate"] == "response"));

    // A whole (not streamed) answer is redacted as raw JSON.
    let whole = ResponseFrame {
        status: 200,
        headers: &[],
        body: br#"{"choices":[{"message":{"role":"assistant","content":"reach me at bob@example.org"}}]}"#,
    };
    let request = llm(21, "acme", &[], br#"{"model":"gpt-4o","messages":[]}"#);
    let out = runner.response(&request, &whole);
    let v: Value = serde_json::from_slice(out.body()).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "reach me at [REDACTED:email]"
    );
}

#[test]
fn dlp_redact_on_both_gates_with_only_some_patterns() {
    let (_rt, mut runner, _seen) = runner(vec![binding(
        "dlp-redact",
        BOTH,
        r#"{"patterns":["card"],"replacement":"****"}"#,
    )]);
    let body =
        br#"{"messages":[{"role":"user","content":"jane@example.com 5555 5555 5555 4444"}]}"#;
    let f = llm(30, "acme", &[], body);
    let out = runner.request(&f);
    let v: Value = serde_json::from_slice(out.body()).unwrap();
    assert_eq!(v["messages"][0]["content"], "jane@example.com ****");
}

const APPROVAL_CONFIG: &str = r#"{"models":["gpt-4o","o1-*"],"tools":["delete_repo"],"timeout_ms":250,"on_timeout":"deny","on_error":"deny"}"#;

/// Runs a request through approval up to its pause; returns its token.
fn pause(runner: &mut GateRunner, f: &RequestFrame<'_>) -> u64 {
    match runner.request(f).verdict {
        Verdict::Pause {
            integration,
            payload,
            timeout,
            token,
            plugin,
        } => {
            assert_eq!((integration, plugin), ("approvals", "approval"));
            assert_eq!(timeout, Duration::from_millis(250));
            let p: Value = serde_json::from_slice(payload).unwrap();
            assert_eq!(p["request_id"], f.request_id.to_string());
            assert_eq!(p["tenant"], "acme");
            token
        }
        other => panic!("expected a pause, got {other:?}"),
    }
}

#[test]
fn approval_approved_denied_and_timed_out() {
    let (_rt, mut runner, seen) = runner(vec![
        binding("approval", REQUEST, APPROVAL_CONFIG),
        binding("enrich", [Some(2), None, None], ENRICH_CONFIG),
    ]);
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"wire $1M"}]}"#;

    // Not sensitive: no pause at all.
    let cheap = llm(40, "acme", &[], br#"{"model":"gpt-4o-mini"}"#);
    assert_eq!(runner.request(&cheap).verdict, Verdict::Continue);

    // Approved: the chain goes on (enrich runs after it).
    let f = llm(41, "acme", &[], body);
    let token = pause(&mut runner, &f);
    let answer = br#"{"approved":true,"approver":"ana@acme"}"#;
    let out = runner
        .resume(
            &f,
            &IntegrationAnswer {
                token,
                outcome: AnswerOutcome::Ok,
                body: answer,
            },
        )
        .unwrap();
    assert_eq!(out.verdict, Verdict::Continue);
    let h = headers_of(&out);
    assert_eq!(header(&h, "x-odock-approval"), Some("approved"));
    assert_eq!(
        header(&h, "x-odock-tenant"),
        Some("acme"),
        "the rest of the chain ran"
    );
    assert!(metadata_of(&out).contains(&("approval.approver".into(), "ana@acme".into())));

    // Denied: blocked with the service's reason; the raw answer is detail.
    let f = llm(42, "acme", &[], body);
    let token = pause(&mut runner, &f);
    let answer = br#"{"decision":"deny","reason":"over the monthly limit"}"#;
    let out = runner
        .resume(
            &f,
            &IntegrationAnswer {
                token,
                outcome: AnswerOutcome::Ok,
                body: answer,
            },
        )
        .unwrap();
    assert_eq!(
        out.verdict,
        Verdict::Block {
            status: 403,
            reason: "this request needs an approval and was denied: over the monthly limit",
            plugin: "approval",
        }
    );

    // Timed out, under on_timeout = deny.
    let f = llm(43, "acme", &[], body);
    let token = pause(&mut runner, &f);
    let out = runner
        .resume(
            &f,
            &IntegrationAnswer {
                token,
                outcome: AnswerOutcome::Timeout,
                body: b"",
            },
        )
        .unwrap();
    assert!(
        matches!(out.verdict, Verdict::Block { status: 504, reason, .. } if reason.contains("did not arrive in time")),
        "{:?}",
        out.verdict
    );

    // The service failed, under on_error = deny.
    let f = llm(44, "acme", &[], body);
    let token = pause(&mut runner, &f);
    let out = runner
        .resume(
            &f,
            &IntegrationAnswer {
                token,
                outcome: AnswerOutcome::Failed,
                body: b"",
            },
        )
        .unwrap();
    assert!(
        matches!(out.verdict, Verdict::Block { status: 502, .. }),
        "{:?}",
        out.verdict
    );

    // A sensitive MCP tool pauses too.
    let mcp = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","arguments":{}}}"#;
    let g = RequestFrame {
        mcp_server: Some("github"),
        api: ApiKind::from_path(b"/mcp"),
        ..llm(45, "acme", &[], mcp)
    };
    let _ = pause(&mut runner, &g);
    assert_eq!(runner.parked(), 1);

    let s = seen.seen();
    let kinds: Vec<&str> = s
        .evidence
        .iter()
        .filter(|e| e.0 == "approval")
        .map(|e| e.1.as_str())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "approval.requested",
            "approval.approved",
            "approval.requested",
            "approval.denied",
            "approval.requested",
            "approval.timeout",
            "approval.requested",
            "approval.error",
            "approval.requested",
        ]
    );
    let denied = s
        .decisions
        .iter()
        .find(|d| d.0 == "approval" && d.1 == "block 403")
        .unwrap();
    assert!(denied.2.contains("over the monthly limit"), "{denied:?}");
}

#[test]
fn approval_timeout_can_fail_open_when_configured() {
    let (_rt, mut runner, _seen) = runner(vec![binding(
        "approval",
        REQUEST,
        r#"{"models":["gpt-4o"],"timeout_ms":250,"on_timeout":"allow"}"#,
    )]);
    let f = llm(50, "acme", &[], br#"{"model":"gpt-4o"}"#);
    let token = pause(&mut runner, &f);
    let out = runner
        .resume(
            &f,
            &IntegrationAnswer {
                token,
                outcome: AnswerOutcome::Timeout,
                body: b"",
            },
        )
        .unwrap();
    assert_eq!(out.verdict, Verdict::Continue);
    assert_eq!(
        header(&headers_of(&out), "x-odock-approval"),
        Some("timeout-allowed")
    );
}

#[test]
fn audit_export_writes_parseable_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let config = serde_json::json!({
        "file": file.to_str().unwrap(),
        "tenants": ["acme"],
        "headers": ["x-request-id", "content-type"],
    })
    .to_string();
    let (_rt, mut runner, seen) = runner(vec![binding("audit-export", COMPLETE, &config)]);
    let req_h = [
        Header::new(b"x-request-id", b"req-1"),
        Header::new(b"authorization", b"Bearer secret"),
    ];
    let resp_h = [Header::new(b"content-type", b"application/json")];
    for (id, tenant, status) in [(60, "acme", 200), (61, "globex", 200), (62, "acme", 403)] {
        let req = llm(id, tenant, &req_h, br#"{"model":"gpt-4o","messages":[]}"#);
        let resp = ResponseFrame {
            status,
            headers: &resp_h,
            body: b"{}",
        };
        runner.complete(&req, &resp);
    }
    // Nothing is written on the gate itself: the follow-ups do it.
    assert!(!file.exists());
    assert_eq!(runner.followups_pending(), 2, "globex is not selected");
    assert_eq!(runner.run_followups(Instant::now(), 16), 2);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2);
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|l| l["odock"]["request_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec!["60", "62"]);
    for l in &lines {
        assert_eq!(l["odock"]["tenant"], "acme");
        assert_eq!(l["odock"]["model"], "gpt-4o");
        assert_eq!(l["event"]["action"], "llm_exchange");
        assert_eq!(l["headers"]["x-request-id"], "req-1");
        assert_eq!(l["headers"]["content-type"], "application/json");
        assert!(l["headers"].get("authorization").is_none());
        assert!(l["@timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let blocked = lines
        .iter()
        .find(|l| l["odock"]["request_id"] == "62")
        .unwrap();
    assert_eq!(blocked["http"]["response"]["status_code"], 403);
    assert_eq!(blocked["event"]["outcome"], "failure");
    assert!(!text.contains("secret"));
    assert_eq!(seen.of_kind("audit_export.exported").len(), 2);
    let s = seen.seen();
    assert_eq!(
        s.followups
            .iter()
            .filter(|f| f.1 == FollowUpState::Delivered)
            .count(),
        2
    );
}

/// A webhook on 127.0.0.1 that answers 500 to its first `failures`
/// requests and 200 after; it keeps every body it received.
struct Webhook {
    url: String,
    bodies: Arc<Mutex<Vec<(u16, String)>>>,
}

fn webhook(failures: usize) -> Webhook {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/odock", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            let body_at = loop {
                let n = conn.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                got.extend_from_slice(&buf[..n]);
                if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(p + 4);
                }
            };
            let Some(body_at) = body_at else { continue };
            let head = String::from_utf8_lossy(&got[..body_at]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while got.len() < body_at + len {
                let n = conn.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let status = if i < failures { 500 } else { 200 };
            let body = String::from_utf8_lossy(&got[body_at..]).into_owned();
            seen.lock().unwrap().push((status, body));
            let _ = conn.write_all(
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    Webhook { url, bodies }
}

#[test]
fn notify_is_retried_after_failures_off_the_hot_path() {
    let hook = webhook(2);
    let config = serde_json::json!({
        "webhook": hook.url,
        "on": "errors",
        "message": "{tenant}: {target} answered {status}",
        "headers": {"authorization": "Bearer hook-token"},
    })
    .to_string();
    let (_rt, mut runner, seen) = runner(vec![binding("notify", COMPLETE, &config)]);
    let req = llm(70, "acme", &[], br#"{"model":"gpt-4o"}"#);
    runner.complete(
        &req,
        &ResponseFrame {
            status: 200,
            headers: &[],
            body: b"",
        },
    );
    assert_eq!(runner.followups_pending(), 0, "on errors only");
    runner.complete(
        &req,
        &ResponseFrame {
            status: 502,
            headers: &[],
            body: b"",
        },
    );
    assert_eq!(runner.followups_pending(), 1);
    // The runtime's clock is the caller's: step through the backoff
    // (100 ms, then 200 ms) without sleeping.
    let start = Instant::now();
    let mut now = start;
    for _ in 0..3 {
        assert_eq!(runner.run_followups(now, 8), 1);
        now = runner.next_followup_due().unwrap_or(now);
    }
    assert_eq!(runner.followups_pending(), 0);
    let s = seen.seen();
    let states: Vec<(FollowUpState, u32)> = s.followups.iter().map(|f| (f.1, f.2)).collect();
    assert_eq!(
        states,
        vec![
            (FollowUpState::Queued, 0),
            (FollowUpState::Retried, 1),
            (FollowUpState::Retried, 2),
            (FollowUpState::Delivered, 3),
        ]
    );
    assert!(s.followups.iter().all(|f| f.0 == "notify.webhook"));
    assert!(
        s.logs.iter().any(|l| l.contains("webhook answered 500")),
        "{:?}",
        s.logs
    );
    drop(s);
    assert_eq!(seen.of_kind("notify.sent"), vec!["200".to_string()]);
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(
        bodies.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![500, 500, 200]
    );
    let v: Value = serde_json::from_str(&bodies[2].1).unwrap();
    assert_eq!(v["event"], "odock.request.completed");
    assert_eq!(v["request_id"], "70");
    assert_eq!(v["status"], 502);
    assert_eq!(v["text"], "acme: gpt-4o answered 502");
}

/// The C plugins read their config with a small hand-written JSON reader:
/// every truncation and every single-byte change of a valid config must
/// end in `OK` or `INVALID_CONFIG`, never a crash or another status.
#[test]
fn the_c_plugins_survive_every_truncation_and_byte_flip_of_their_config() {
    for (name, config) in [
        ("enrich", ENRICH_CONFIG),
        ("model-allowlist", ALLOWLIST_CONFIG),
    ] {
        let path = library(name);
        let plugin = LoadedPlugin::load(&PluginSpec {
            name: name.into(),
            pin: Pin::of_file(&path).unwrap(),
            path,
            grant: Grant::new(Capabilities::ALL),
        })
        .unwrap();
        let mut sink = MemorySink::new();
        let mut try_config = |bytes: &[u8]| match plugin
            .instantiate(Binding::new(0, bytes, FailureMode::Enforce), &mut sink)
        {
            Ok(_) => {}
            Err(e) => assert_eq!(
                e.error,
                Error::InvalidConfig,
                "{name}: {}",
                String::from_utf8_lossy(bytes)
            ),
        };
        let bytes = config.as_bytes();
        for cut in 0..bytes.len() {
            try_config(&bytes[..cut]);
        }
        for i in 0..bytes.len() {
            for b in [b'"', b'\\', b'{', b']', b',', b':', 0, 0xff] {
                let mut changed = bytes.to_vec();
                changed[i] = b;
                try_config(&changed);
            }
        }
        // Deep nesting is refused, not recursed into without end.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        try_config(deep.as_bytes());
    }
}

/// audit-export's webhook sink, through the complete pool (threads of its
/// own, fed by rings): every selected exchange reaches the listener as one
/// JSON line.
#[test]
fn audit_export_posts_to_a_webhook_from_the_complete_pool() {
    use odock_dataplane::runtime::complete::{CompleteConfig, CompletePool};
    let hook = webhook(1);
    let config = serde_json::json!({"webhook": hook.url, "only_errors": true}).to_string();
    let runtime = Runtime::new();
    runtime
        .install(
            PolicySpec {
                version: 1,
                bindings: vec![binding("audit-export", COMPLETE, &config)],
            },
            &[source("audit-export")],
        )
        .unwrap();
    let seen = Recorder::default();
    let sink = seen.clone();
    let pool = CompletePool::start(&runtime, CompleteConfig::default(), move |_| {
        Box::new(sink.clone())
    })
    .unwrap();
    let submitter = pool.submitter().unwrap();
    for (id, status) in [(80, 200), (81, 500), (82, 429)] {
        let req = llm(id, "acme", &[], br#"{"model":"gpt-4o"}"#);
        let resp = ResponseFrame {
            status,
            headers: &[],
            body: b"{}",
        };
        submitter.submit(&req, &resp).unwrap();
    }
    // The first POST fails (500) and is retried after 100 ms.
    let start = Instant::now();
    while seen.of_kind("audit_export.exported").len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not exported in time"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(submitter);
    pool.shutdown();
    let bodies = hook.bodies.lock().unwrap().clone();
    let delivered: Vec<Value> = bodies
        .iter()
        .filter(|b| b.0 == 200)
        .map(|b| serde_json::from_str(b.1.trim_end()).unwrap())
        .collect();
    let mut statuses: Vec<u64> = delivered
        .iter()
        .map(|v| v["http"]["response"]["status_code"].as_u64().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![429, 500]);
    assert_eq!(bodies.len(), 3, "one failure, two deliveries");
}

/// With its stream table full, dlp-redact still redacts each chunk on its
/// own and says in evidence that the stream runs without a carry.
#[test]
fn dlp_redact_without_a_carry_slot_says_so() {
    let (_rt, mut runner, seen) = runner(vec![binding(
        "dlp-redact",
        RESPONSE,
        r#"{"max_streams":1}"#,
    )]);
    let (a, b) = (
        llm(90, "acme", &[], br#"{"stream":true}"#),
        llm(91, "acme", &[], br#"{"stream":true}"#),
    );
    let mut sa = runner.stream_state(&a, 1 << 16);
    let mut sb = runner.stream_state(&b, 1 << 16);
    let (hello, card) = (delta("hello "), delta("card 4111111111111111 ok"));
    let first = ChunkFrame {
        status: 200,
        chunk: hello.as_bytes(),
        ..ChunkFrame::default()
    };
    let _ = runner.response_chunk(&a, &first, &mut sa);
    let second = ChunkFrame {
        status: 200,
        chunk: card.as_bytes(),
        ..ChunkFrame::default()
    };
    let out = runner.response_chunk(&b, &second, &mut sb);
    assert_eq!(
        reassemble(std::str::from_utf8(out.body()).unwrap()),
        "card [REDACTED:card] ok"
    );
    assert_eq!(seen.of_kind("dlp_redact.no_carry").len(), 1);
}

/// The C plugins in process under AddressSanitizer and
/// UndefinedBehaviorSanitizer (`plugins/c-common/sanitize_harness.c`):
/// every truncation and byte change of a config through init, and frames
/// with and without identity, long names and odd headers through
/// on_request. Skipped, saying so, where the compiler has no sanitizers.
#[test]
fn the_c_plugins_run_clean_under_asan_and_ubsan() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sanitize");
    std::fs::create_dir_all(&out).unwrap();
    let triple = plugin_support::host_triple();
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .cargo_warnings(false)
        .opt_level(1)
        .host(&triple)
        .target(&triple)
        .try_get_compiler();
    let Ok(compiler) = compiler else {
        eprintln!("skipped: no C compiler");
        return;
    };
    let sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"];
    let probe_src = out.join("probe.c");
    std::fs::write(&probe_src, "int main(void) { return 0; }\n").unwrap();
    let probe = out.join("probe");
    let works = compiler
        .to_command()
        .args(sanitize)
        .arg(&probe_src)
        .arg("-o")
        .arg(&probe)
        .status()
        .is_ok_and(|s| s.success())
        && std::process::Command::new(&probe)
            .status()
            .is_ok_and(|s| s.success());
    if !works {
        eprintln!("skipped: the C compiler cannot build and run sanitized programs here");
        return;
    }
    let root = plugin_support::root();
    for (name, source, config) in [
        ("enrich", "../enrich/enrich.c", ENRICH_CONFIG),
        (
            "model_allowlist",
            "../model-allowlist/model_allowlist.c",
            ALLOWLIST_CONFIG,
        ),
    ] {
        let exe = out.join(format!("harness_{name}"));
        let status = compiler
            .to_command()
            .args(["-std=c99", "-g", "-Wall", "-Wextra", "-Werror"])
            .args(sanitize)
            .arg("-I")
            .arg(root.join("plugin-abi/include"))
            .arg(format!("-DPLUGIN_SOURCE=\"{source}\""))
            .arg(root.join("plugins/c-common/sanitize_harness.c"))
            .arg("-o")
            .arg(&exe)
            .status()
            .unwrap();
        assert!(status.success(), "{name}: the harness does not build");
        let config_file = out.join(format!("{name}.json"));
        std::fs::write(&config_file, config).unwrap();
        let run = std::process::Command::new(&exe)
            .arg(&config_file)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{name} under sanitizers:\n{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        let summary = String::from_utf8_lossy(&run.stdout);
        assert!(summary.starts_with("configs tried"), "{summary}");
    }
}

/// The same, with the stream cut into chunks that do not follow events:
/// several events in one chunk, events split in the middle of their JSON.
#[test]
fn dlp_redact_does_not_need_one_event_per_chunk() {
    let (_rt, mut runner, _seen) = runner(vec![binding("dlp-redact", RESPONSE, "{}")]);
    let request = llm(22, "acme", &[], br#"{"model":"gpt-4o","stream":true}"#);
    let mut bytes = String::new();
    for piece in [
        "Mail me at ann",
        "a@example",
        ".net or use card 5555 5555 5555 ",
        "4444 today.",
    ] {
        bytes.push_str(&delta(piece));
    }
    bytes.push_str("data: [DONE]\n\n");
    let pieces: Vec<&[u8]> = bytes.as_bytes().chunks(37).collect();
    let mut state = runner.stream_state(&request, 1 << 20);
    let mut sent = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        let chunk = ChunkFrame {
            status: 200,
            headers: &[],
            chunk: piece,
            index: i as u64,
            last: i + 1 == pieces.len(),
        };
        let out = runner.response_chunk(&request, &chunk, &mut state);
        sent.push_str(std::str::from_utf8(out.body()).unwrap());
    }
    assert_eq!(
        reassemble(&sent),
        "Mail me at [REDACTED:email] or use card [REDACTED:card] today."
    );
    assert!(!sent.contains("5555") && !sent.contains("anna"));
}

/// The example configs in `plugins/README.md` are ones the plugins accept.
#[test]
fn the_readme_example_configs_are_accepted() {
    let readme = std::fs::read_to_string(plugin_support::root().join("plugins/README.md")).unwrap();
    let start = readme.find("```json\n").expect("an example block") + "```json\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let examples: Value = serde_json::from_str(&readme[start..end]).unwrap();
    let examples = examples.as_object().unwrap();
    assert_eq!(examples.len(), 6);
    for (name, config) in examples {
        let path = library(name);
        let plugin = LoadedPlugin::load(&PluginSpec {
            name: name.clone(),
            pin: Pin::of_file(&path).unwrap(),
            path,
            grant: Grant::new(Capabilities::ALL).with_integration("approvals"),
        })
        .unwrap();
        let mut sink = MemorySink::new();
        let bytes = config.to_string().into_bytes();
        if let Err(e) = plugin.instantiate(Binding::new(0, bytes, FailureMode::Enforce), &mut sink)
        {
            panic!("{name}: {e}: {:?}", sink.logs);
        }
        // Control validates bindings with its own JSON Schema subset: the
        // plugin's schema must be one it can apply, accept the example,
        // and name an unknown field.
        let schema: Value = serde_json::from_str(plugin.config_schema()).unwrap();
        odock_control::schema::validate(&schema, config, "config")
            .unwrap_or_else(|e| panic!("{name}: control refuses the example: {e}"));
        let mut unknown = config.clone();
        unknown["colour"] = Value::from("blue");
        let e = odock_control::schema::validate(&schema, &unknown, "config").unwrap_err();
        assert!(e.to_string().contains("colour"), "{name}: {e}");
    }
}

/// All six bound together, as an example policy would: one request through
/// the request gate (enrich, model-allowlist, approval, dlp-redact), its
/// streamed answer through dlp-redact, and the complete gate (audit-export,
/// notify); and a request the allowlist blocks before approval is asked.
#[test]
fn the_six_together_in_one_policy() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let hook = webhook(0);
    let (_rt, mut runner, seen) = runner(vec![
        binding("enrich", [Some(10), None, None], ENRICH_CONFIG),
        binding("model-allowlist", [Some(20), None, None], ALLOWLIST_CONFIG),
        binding("approval", [Some(30), None, None], APPROVAL_CONFIG),
        binding("dlp-redact", [Some(40), Some(10), None], "{}"),
        binding(
            "audit-export",
            [None, None, Some(10)],
            &serde_json::json!({"file": audit.to_str().unwrap()}).to_string(),
        ),
        binding(
            "notify",
            [None, None, Some(20)],
            &serde_json::json!({"webhook": hook.url}).to_string(),
        ),
    ]);
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"bill 4111 1111 1111 1111"}]}"#;
    let f = llm(100, "acme", &[], body);
    let token = pause(&mut runner, &f);
    let out = runner
        .resume(
            &f,
            &IntegrationAnswer {
                token,
                outcome: AnswerOutcome::Ok,
                body: br#"{"approved":true}"#,
            },
        )
        .unwrap();
    assert_eq!(out.verdict, Verdict::Continue);
    let h = headers_of(&out);
    assert_eq!(header(&h, "x-odock-tenant"), Some("acme"));
    assert_eq!(header(&h, "x-odock-approval"), Some("approved"));
    let sent: Value = serde_json::from_slice(out.body()).unwrap();
    assert_eq!(sent["messages"][0]["content"], "bill [REDACTED:card]");
    let upstream_body = out.body().to_vec();

    let upstream = RequestFrame {
        body: &upstream_body,
        ..f
    };
    let mut state = runner.stream_state(&upstream, 1 << 20);
    let mut answer = String::new();
    let events = [
        delta("mail me: ceo@"),
        delta("acme.example"),
        delta(" ok"),
        "data: [DONE]\n\n".to_owned(),
    ];
    for (i, e) in events.iter().enumerate() {
        let chunk = ChunkFrame {
            status: 200,
            headers: &[],
            chunk: e.as_bytes(),
            index: i as u64,
            last: i + 1 == events.len(),
        };
        answer.push_str(
            std::str::from_utf8(runner.response_chunk(&upstream, &chunk, &mut state).body())
                .unwrap(),
        );
    }
    assert_eq!(reassemble(&answer), "mail me: [REDACTED:email] ok");

    runner.complete(
        &upstream,
        &ResponseFrame {
            status: 200,
            headers: &[],
            body: answer.as_bytes(),
        },
    );
    assert_eq!(runner.run_followups(Instant::now(), 16), 2);
    let line: Value =
        serde_json::from_str(std::fs::read_to_string(&audit).unwrap().trim_end()).unwrap();
    assert_eq!(line["odock"]["request_id"], "100");
    assert_eq!(hook.bodies.lock().unwrap().len(), 1);

    // Blocked by the allowlist: approval is never asked.
    let g = llm(101, "acme", &[], br#"{"model":"o1-preview","messages":[]}"#);
    assert!(matches!(
        runner.request(&g).verdict,
        Verdict::Block {
            status: 403,
            plugin: "model-allowlist",
            ..
        }
    ));
    let s = seen.seen();
    let asked = s
        .evidence
        .iter()
        .filter(|e| e.1 == "approval.requested")
        .count();
    assert_eq!(asked, 1, "only request 100 asked for an approval");
}
