//! The host layer, driven by plugins defined right here: SDK plugins run in
//! process through `plugin_entry!` (the same hooks a shared library
//! exports), and raw `extern "C"` plugins written against `sys` to do what
//! the SDK never would. Shared libraries (C and Rust) are loaded by the
//! workspace's `tests/plugin_*.rs`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::Duration;

use odock_plugin_abi::sdk::{
    Answer, CompleteGate, Host, InitContext, Plugin, RequestGate, ResponseGate,
    Verdict as SdkVerdict,
};
use odock_plugin_abi::sys::{self, odock_plugin_descriptor_t};
use odock_plugin_abi::view::{Frame, Header, Identity, Message, Response, Target};
use odock_plugin_abi::{AnswerOutcome, Capabilities, Capability, Error, Gate, LogLevel, Role};

use super::*;

fn caps(list: &[Capability]) -> Capabilities {
    Capabilities::of(list)
}

fn load(entry: sys::odock_plugin_entry_fn, name: &str, grant: &Grant) -> Arc<LoadedPlugin> {
    // SAFETY: every entry in this file comes from `plugin_entry!` or is a
    // raw plugin written to the header's contract.
    unsafe { LoadedPlugin::from_entry(entry, name, grant) }.expect("the test plugin loads")
}

fn refusal(entry: sys::odock_plugin_entry_fn, name: &str, grant: &Grant) -> LoadError {
    // SAFETY: as in `load`.
    unsafe { LoadedPlugin::from_entry(entry, name, grant) }.expect_err("the plugin must be refused")
}

fn start(plugin: &Arc<LoadedPlugin>, config: &[u8], mode: FailureMode) -> PluginInstance {
    plugin
        .instantiate(Binding::new(0, config, mode), &mut MemorySink::new())
        .expect("init succeeds")
}

fn request(model: &'static [u8]) -> Frame<'static> {
    let mut f = Frame::new(Gate::Request, 42);
    f.target = Target::model(model);
    f
}

use std::sync::Arc;

// ---------------------------------------------------------------------------
// A plugin that panics.

static PANICS: AtomicUsize = AtomicUsize::new(0);

struct Panicker;

impl Plugin for Panicker {
    const NAME: &'static str = "panicker";
    const VERSION: &'static str = "1";
    const CAPABILITIES: Capabilities = Capabilities::of(&[Capability::Block]);
    fn init(_: &InitContext<'_>) -> Result<Self, Error> {
        Ok(Panicker)
    }
}

impl RequestGate for Panicker {
    fn on_request(&mut self, _: &Host<'_>, _: &Frame<'_>) -> Result<SdkVerdict, Error> {
        PANICS.fetch_add(1, Ordering::Relaxed);
        panic!("the panicker panics");
    }
}

odock_plugin_abi::plugin_entry!(fn panicker_entry for Panicker, request);

#[test]
fn a_panicking_rust_plugin_is_handled_by_each_failure_mode() {
    let grant = Grant::new(caps(&[Capability::Block]));
    let plugin = load(panicker_entry, "panicker", &grant);
    let mut out = GateOutput::new();

    // enforce: the error blocks, with a neutral reason and the cause kept
    // apart in the detail.
    let mut sink = MemorySink::new();
    let mut inst = start(&plugin, b"", FailureMode::Enforce);
    assert_eq!(
        inst.call_gate(&request(b"m"), &mut out, &mut sink),
        Decision::Block
    );
    assert_eq!(out.error(), Some(&CallError::Failed(Error::Panicked)));
    let block = out.block().expect("a block");
    assert_eq!(block.status, FAIL_CLOSED_STATUS);
    assert_eq!(block.reason, FAIL_CLOSED_REASON);
    assert!(!block.by_plugin);
    assert!(
        std::str::from_utf8(block.detail)
            .unwrap()
            .contains("panicker")
    );
    assert_eq!(sink.of_kind("plugin_error").count(), 1);
    assert!(
        sink.logs.iter().any(|(p, l, m)| p == "panicker"
            && *l == LogLevel::Error
            && String::from_utf8_lossy(m).contains("the panicker panics")),
        "the panic message reaches the host's log: {:?}",
        sink.logs
    );

    // enforce_ignore_error: continues, with evidence.
    let mut sink = MemorySink::new();
    let mut inst = start(&plugin, b"", FailureMode::EnforceIgnoreError);
    assert_eq!(
        inst.call_gate(&request(b"m"), &mut out, &mut sink),
        Decision::Continue
    );
    assert_eq!(out.error(), Some(&CallError::Failed(Error::Panicked)));
    assert!(out.block().is_none());
    let record = sink
        .of_kind("plugin_error")
        .next()
        .expect("a plugin_error record");
    assert!(String::from_utf8_lossy(&record.data).contains("enforce_ignore_error"));

    // permissive: continues, with evidence.
    let mut sink = MemorySink::new();
    let mut inst = start(&plugin, b"", FailureMode::Permissive);
    assert_eq!(
        inst.call_gate(&request(b"m"), &mut out, &mut sink),
        Decision::Continue
    );
    assert_eq!(sink.of_kind("plugin_error").count(), 1);

    // disabled: never called.
    let before = PANICS.load(Ordering::Relaxed);
    let mut sink = MemorySink::new();
    let mut inst = start(&plugin, b"", FailureMode::Disabled);
    assert_eq!(
        inst.call_gate(&request(b"m"), &mut out, &mut sink),
        Decision::Continue
    );
    assert_eq!(
        PANICS.load(Ordering::Relaxed),
        before,
        "a disabled plugin is not called"
    );
    assert!(sink.records.is_empty());

    // The instance survives a panic: the next call panics again, cleanly.
    let mut sink = MemorySink::new();
    let mut inst = start(&plugin, b"", FailureMode::Enforce);
    for _ in 0..3 {
        assert_eq!(
            inst.call_gate(&request(b"m"), &mut out, &mut sink),
            Decision::Block
        );
    }
}

// ---------------------------------------------------------------------------
// A plugin that reaches past its grant.

struct Overreach;

impl Plugin for Overreach {
    const NAME: &'static str = "overreach";
    const VERSION: &'static str = "1";
    const CAPABILITIES: Capabilities = Capabilities::of(&[Capability::EmitEvidence]);
    fn init(_: &InitContext<'_>) -> Result<Self, Error> {
        Ok(Overreach)
    }
}

impl RequestGate for Overreach {
    fn on_request(&mut self, host: &Host<'_>, _: &Frame<'_>) -> Result<SdkVerdict, Error> {
        let header = host.set_header("x-sneaky", b"1");
        let call = host.call_integration("payroll", b"{}", Duration::from_millis(5));
        let followup = host.queue_followup("mail", b"");
        let report = format!("{header:?} {:?} {followup:?}", call.map(|_| ()));
        host.emit_evidence("overreach.results", report.as_bytes())?;
        Ok(SdkVerdict::Continue)
    }
}

odock_plugin_abi::plugin_entry!(fn overreach_entry for Overreach, request);

#[test]
fn a_host_call_without_its_grant_is_denied_and_leaves_evidence() {
    // Even a grant of everything gives only what the plugin asked for.
    let grant = Grant::new(Capabilities::ALL).with_integration("payroll");
    let plugin = load(overreach_entry, "overreach", &grant);
    assert_eq!(plugin.capabilities(), caps(&[Capability::EmitEvidence]));
    let mut inst = start(&plugin, b"", FailureMode::Enforce);
    let mut sink = MemorySink::new();
    let mut out = GateOutput::new();

    assert_eq!(
        inst.call_gate(&request(b"m"), &mut out, &mut sink),
        Decision::Continue
    );
    assert_eq!(out.denials(), 3);
    assert_eq!(out.transforms().len(), 0);
    let results = sink
        .of_kind("overreach.results")
        .next()
        .expect("the plugin reports");
    assert_eq!(
        String::from_utf8_lossy(&results.data),
        "Err(Denied) Err(Denied) Err(Denied)"
    );
    let denied: Vec<_> = sink.of_kind("capability_denied").collect();
    assert_eq!(denied.len(), 3);
    let text = |r: &RecordedEvidence| String::from_utf8_lossy(&r.data).into_owned();
    assert!(text(denied[0]).contains("set_header needs capability write_headers"));
    assert!(text(denied[1]).contains("call_integration"));
    assert!(text(denied[2]).contains("queue_followup"));
    assert!(
        denied
            .iter()
            .all(|r| r.plugin == "overreach" && r.request_id == 42 && !r.from_plugin)
    );
}

// ---------------------------------------------------------------------------
// A plugin that blocks without the block capability.

struct Blocker;

impl Plugin for Blocker {
    const NAME: &'static str = "blocker";
    const VERSION: &'static str = "1";
    const CAPABILITIES: Capabilities = Capabilities::NONE;
    fn init(_: &InitContext<'_>) -> Result<Self, Error> {
        Ok(Blocker)
    }
}

impl RequestGate for Blocker {
    fn on_request(&mut self, _: &Host<'_>, _: &Frame<'_>) -> Result<SdkVerdict, Error> {
        Ok(SdkVerdict::block(403, "no"))
    }
}

odock_plugin_abi::plugin_entry!(fn blocker_entry for Blocker, request);

#[test]
fn a_block_without_the_block_capability_is_denied() {
    let plugin = load(blocker_entry, "blocker", &Grant::default());
    let mut out = GateOutput::new();
    let mut sink = MemorySink::new();
    let mut inst = start(&plugin, b"", FailureMode::EnforceIgnoreError);
    assert_eq!(
        inst.call_gate(&request(b"m"), &mut out, &mut sink),
        Decision::Continue
    );
    assert_eq!(out.error(), Some(&CallError::BlockDenied));
    assert_eq!(sink.of_kind("capability_denied").count(), 1);
    assert!(
        String::from_utf8_lossy(&sink.of_kind("capability_denied").next().unwrap().data)
            .contains("a BLOCK verdict needs capability block")
    );
}

// ---------------------------------------------------------------------------
// A plugin that changes things.

struct Editor;

fn expect(result: Result<(), Error>, want: Result<(), Error>) -> Result<(), Error> {
    if result == want {
        Ok(())
    } else {
        Err(Error::Failed)
    }
}

impl Plugin for Editor {
    const NAME: &'static str = "editor";
    const VERSION: &'static str = "1";
    const CAPABILITIES: Capabilities = Capabilities::of(&[
        Capability::WriteHeaders,
        Capability::WriteRequestBody,
        Capability::QueueFollowup,
        Capability::EmitEvidence,
        Capability::Block,
    ]);
    fn init(ctx: &InitContext<'_>) -> Result<Self, Error> {
        expect(ctx.host().emit_evidence("k", b""), Err(Error::WrongGate))?;
        expect(ctx.host().log(LogLevel::Info, "starting"), Ok(()))?;
        if ctx.host().config()? != ctx.config() || ctx.config() != b"cfg" {
            return Err(Error::InvalidConfig);
        }
        Ok(Editor)
    }
    fn on_followup(&mut self, host: &Host<'_>, kind: &str, payload: &[u8]) -> Result<(), Error> {
        expect(host.queue_followup("again", b""), Err(Error::WrongGate))?;
        host.emit_evidence(
            "editor.followup",
            format!("{kind}:{}", payload.len()).as_bytes(),
        )
    }
}

impl RequestGate for Editor {
    fn on_request(&mut self, host: &Host<'_>, frame: &Frame<'_>) -> Result<SdkVerdict, Error> {
        host.set_header("x-tenant-tier", b"gold")?;
        host.remove_header("x-debug")?;
        host.set_metadata("billing.tag", b"team-7")?;
        host.replace_body_range(0, 1, b"[")?;
        host.replace_body_field("/model", b"\"gpt-4o-mini\"")?;
        host.queue_followup("webhook", b"{\"id\":42}")?;
        // What the host refuses, and why.
        expect(
            host.set_header("bad name", b"v"),
            Err(Error::InvalidArgument),
        )?;
        expect(
            host.set_header("x-ok", b"a\r\nb"),
            Err(Error::InvalidArgument),
        )?;
        expect(
            host.replace_body_range(0, 1, b"x"),
            Err(Error::InvalidArgument),
        )?;
        // Without read_request_body the body arrives empty, but ranges are
        // still checked against the real one (18 bytes).
        if !frame.request.body.is_empty() {
            return Err(Error::Failed);
        }
        expect(host.replace_body_range(18, 0, b"}"), Ok(()))?;
        expect(host.replace_body_range(18, 1, b"x"), Err(Error::OutOfRange))?;
        expect(
            host.replace_body_range(u64::MAX, 2, b"x"),
            Err(Error::OutOfRange),
        )?;
        expect(
            host.replace_body_field("model", b"1"),
            Err(Error::InvalidArgument),
        )?;
        expect(host.emit_evidence("", b""), Err(Error::InvalidArgument))?;
        Ok(SdkVerdict::Continue)
    }
}

impl ResponseGate for Editor {
    fn on_response(&mut self, host: &Host<'_>, _: &Frame<'_>) -> Result<SdkVerdict, Error> {
        // The request body capability does not reach the response.
        expect(host.replace_body_range(0, 0, b"x"), Err(Error::Denied))?;
        host.set_header("x-served-by", b"odock")?;
        Ok(SdkVerdict::Continue)
    }
}

impl CompleteGate for Editor {
    fn on_complete(&mut self, host: &Host<'_>, _: &Frame<'_>) -> Result<(), Error> {
        expect(host.set_header("x-late", b"1"), Err(Error::WrongGate))?;
        host.queue_followup("analytics", b"done")
    }
}

odock_plugin_abi::plugin_entry!(fn editor_entry for Editor, request, response, complete);

#[test]
fn transforms_are_checked_recorded_and_applied_in_order() {
    let plugin = load(editor_entry, "editor", &Grant::new(Capabilities::ALL));
    let mut sink = MemorySink::new();
    let mut inst = plugin
        .instantiate(
            Binding::new(3, &b"cfg"[..], FailureMode::Enforce),
            &mut sink,
        )
        .expect("init");
    assert_eq!(sink.logs[0].2, b"starting");
    let mut out = GateOutput::new();
    let mut frame = request(b"gpt-4o");
    frame.request.body = br#"{"model":"gpt-4o"}"#;

    let decision = inst.call_gate(&frame, &mut out, &mut sink);
    assert_eq!(out.error(), None);
    assert_eq!(decision, Decision::Continue);
    let got: Vec<_> = out.transforms().collect();
    assert_eq!(
        got,
        vec![
            Transform::SetHeader {
                name: b"x-tenant-tier",
                value: b"gold"
            },
            Transform::RemoveHeader { name: b"x-debug" },
            Transform::SetMetadata {
                key: "billing.tag",
                value: b"team-7"
            },
            Transform::ReplaceBodyRange {
                offset: 0,
                len: 1,
                bytes: b"["
            },
            Transform::ReplaceBodyField {
                pointer: "/model",
                value: b"\"gpt-4o-mini\""
            },
            Transform::ReplaceBodyRange {
                offset: 18,
                len: 0,
                bytes: b"}"
            },
        ]
    );
    let followups: Vec<_> = out.followups().collect();
    assert_eq!(
        followups,
        vec![FollowUp {
            kind: "webhook",
            payload: b"{\"id\":42}"
        }]
    );

    // The follow-up runs later, outside any gate.
    let job = FollowUp {
        kind: "webhook",
        payload: b"{\"id\":42}",
    };
    inst.run_followup(job, &mut sink).expect("follow-up runs");
    assert_eq!(
        sink.of_kind("editor.followup").next().unwrap().data,
        b"webhook:9"
    );

    // The response gate: header only.
    let mut frame = Frame::new(Gate::Response, 42);
    frame.response = Some(Response {
        status: 200,
        body: b"{}",
        ..Response::default()
    });
    assert_eq!(
        inst.call_gate(&frame, &mut out, &mut sink),
        Decision::Continue
    );
    assert_eq!(out.error(), None);
    assert_eq!(out.denials(), 1);
    assert_eq!(
        out.transforms().collect::<Vec<_>>(),
        vec![Transform::SetHeader {
            name: b"x-served-by",
            value: b"odock"
        }]
    );

    // The complete gate: no headers, follow-ups yes.
    let frame = Frame::new(Gate::Complete, 42);
    assert_eq!(
        inst.call_gate(&frame, &mut out, &mut sink),
        Decision::Continue
    );
    assert_eq!(out.error(), None);
    assert_eq!(out.followups().count(), 1);
}

#[test]
fn init_errors_name_the_plugin_and_worker() {
    let plugin = load(editor_entry, "editor", &Grant::new(Capabilities::ALL));
    let err = plugin
        .instantiate(
            Binding::new(5, &b"nope"[..], FailureMode::Enforce),
            &mut MemorySink::new(),
        )
        .expect_err("the config is refused");
    assert_eq!(err.error, Error::InvalidConfig);
    assert_eq!(
        err.to_string(),
        "plugin `editor` on worker 5: init failed: invalid configuration (ODOCK_ERR_INVALID_CONFIG)"
    );
}

// ---------------------------------------------------------------------------
// What a plugin may read.

struct Watch<const FULL: bool>;

impl<const FULL: bool> Plugin for Watch<FULL> {
    const NAME: &'static str = "watch";
    const VERSION: &'static str = "1";
    const CAPABILITIES: Capabilities = if FULL {
        Capabilities::of(&[
            Capability::ReadIdentity,
            Capability::ReadHeaders,
            Capability::ReadRequestBody,
            Capability::ReadResponseBody,
        ])
    } else {
        Capabilities::NONE
    };
    fn init(_: &InitContext<'_>) -> Result<Self, Error> {
        Ok(Watch)
    }
}

impl<const FULL: bool> RequestGate for Watch<FULL> {
    fn on_request(&mut self, _: &Host<'_>, f: &Frame<'_>) -> Result<SdkVerdict, Error> {
        let sees = [
            f.identity
                .is_some_and(|i| i.tenant == b"acme" && i.environment == b"prod"),
            f.request_header(b"authorization") == Some(b"Bearer k"),
            f.request.body == b"{}",
            f.index.messages.len() == 2 && f.index.messages[1].role() == Role::User,
            f.index.tool_arguments == b"{\"q\":1}",
        ];
        // Routing facts are always there.
        let always = f.target.model == b"gpt-4o" && f.index.stream && f.index.mcp_method == b"m";
        if always && sees.iter().all(|&s| s == FULL) {
            Ok(SdkVerdict::Continue)
        } else {
            Err(Error::Failed)
        }
    }
}

odock_plugin_abi::plugin_entry!(fn watch_full_entry for Watch<true>, request);
odock_plugin_abi::plugin_entry!(fn watch_masked_entry for Watch<false>, request);

#[test]
fn a_plugin_sees_only_what_its_capabilities_allow() {
    let headers = [Header::new(b"Authorization", b"Bearer k")];
    let messages = [
        Message::new(Role::System, b"system", b"\"be brief\""),
        Message::new(Role::User, b"user", b"\"hi\""),
    ];
    let mut frame = request(b"gpt-4o");
    frame.identity = Some(Identity {
        tenant: b"acme",
        virtual_key_id: b"vk-1",
        environment: b"prod",
    });
    frame.request.headers = &headers;
    frame.request.body = b"{}";
    frame.index.stream = true;
    frame.index.messages = &messages;
    frame.index.mcp_method = b"m";
    frame.index.tool_arguments = b"{\"q\":1}";

    let mut out = GateOutput::new();
    let mut sink = MemorySink::new();
    for entry in [
        watch_full_entry as sys::odock_plugin_entry_fn,
        watch_masked_entry,
    ] {
        let plugin = load(entry, "watch", &Grant::new(Capabilities::ALL));
        let mut inst = start(&plugin, b"", FailureMode::Enforce);
        assert_eq!(
            inst.call_gate(&frame, &mut out, &mut sink),
            Decision::Continue,
            "{:?}",
            out.error()
        );
    }
}

// ---------------------------------------------------------------------------
// Pause for an integration, resume on its answer.

struct Approver;

impl Plugin for Approver {
    const NAME: &'static str = "approver";
    const VERSION: &'static str = "1";
    const CAPABILITIES: Capabilities =
        Capabilities::of(&[Capability::CallIntegration, Capability::Block]);
    const INTEGRATIONS: &'static [&'static str] = &["approvals"];
    fn init(_: &InitContext<'_>) -> Result<Self, Error> {
        Ok(Approver)
    }
    fn on_integration_answer(
        &mut self,
        _: &Host<'_>,
        _: &Frame<'_>,
        answer: &Answer<'_>,
    ) -> Result<SdkVerdict, Error> {
        match (answer.outcome, answer.body) {
            (AnswerOutcome::Ok, b"yes") => Ok(SdkVerdict::Continue),
            (AnswerOutcome::Ok, _) => Ok(SdkVerdict::block(403, "not approved")),
            _ => Ok(SdkVerdict::block(
                503,
                "the approval service did not answer",
            )),
        }
    }
}

impl RequestGate for Approver {
    fn on_request(&mut self, host: &Host<'_>, _: &Frame<'_>) -> Result<SdkVerdict, Error> {
        // A call not paused on is dropped.
        host.call_integration("approvals", b"ignored", Duration::from_millis(1))?;
        let call =
            host.call_integration("approvals", b"{\"ask\":1}", Duration::from_micros(1500))?;
        Ok(SdkVerdict::Pause(call))
    }
}

odock_plugin_abi::plugin_entry!(fn approver_entry for Approver, request);

#[test]
fn a_pause_carries_one_integration_call_and_resumes_on_the_answer() {
    let grant = Grant::new(caps(&[Capability::CallIntegration, Capability::Block]))
        .with_integration("approvals");
    let plugin = load(approver_entry, "approver", &grant);
    let mut inst = start(&plugin, b"", FailureMode::Enforce);
    let mut out = GateOutput::new();
    let mut sink = MemorySink::new();
    let frame = request(b"m");

    assert_eq!(inst.call_gate(&frame, &mut out, &mut sink), Decision::Pause);
    let call = out.integration_call().expect("one call to start");
    assert_eq!(
        (call.name, call.payload, call.timeout_ms),
        ("approvals", &b"{\"ask\":1}"[..], 2)
    );
    let token = call.token;

    for (outcome, body, want) in [
        (AnswerOutcome::Ok, &b"yes"[..], Decision::Continue),
        (AnswerOutcome::Ok, b"no", Decision::Block),
        (AnswerOutcome::Timeout, b"", Decision::Block),
    ] {
        let answer = IntegrationAnswer {
            token,
            outcome,
            body,
        };
        assert_eq!(
            inst.on_integration_answer(&frame, &answer, &mut out, &mut sink),
            want
        );
    }
    assert_eq!(
        out.block().unwrap().reason,
        "the approval service did not answer"
    );

    // Permissive: the pause is recorded, not taken.
    let mut inst = start(&plugin, b"", FailureMode::Permissive);
    assert_eq!(
        inst.call_gate(&frame, &mut out, &mut sink),
        Decision::Continue
    );
    assert!(out.integration_call().is_none());
    assert!(matches!(out.verdict(), Some(Verdict::Pause { .. })));
    assert_eq!(sink.of_kind("verdict_not_enforced").count(), 1);
}

#[test]
fn the_grant_is_checked_at_load() {
    let err = refusal(
        approver_entry,
        "approver",
        &Grant::new(caps(&[Capability::Block])),
    );
    assert!(
        matches!(err.refusal, Refusal::NotGranted { missing } if missing == caps(&[Capability::CallIntegration]))
    );
    assert_eq!(
        err.to_string(),
        "plugin `approver` refused: it asks for capabilities that are not granted: call_integration"
    );

    let grant = Grant::new(caps(&[Capability::CallIntegration, Capability::Block]))
        .with_integration("billing");
    let err = refusal(approver_entry, "approver", &grant);
    assert!(matches!(&err.refusal, Refusal::IntegrationNotGranted { name } if name == "approvals"));

    let err = refusal(
        approver_entry,
        "someone-else",
        &Grant::new(Capabilities::ALL),
    );
    assert!(matches!(&err.refusal, Refusal::NameMismatch { declared } if declared == "approver"));
}

// ---------------------------------------------------------------------------
// Descriptors no SDK would produce.

struct SyncDescriptor(odock_plugin_descriptor_t);
// SAFETY: the descriptor is built once and only read; its pointers point to
// static data and functions.
unsafe impl Sync for SyncDescriptor {}
// SAFETY: as for `Sync`.
unsafe impl Send for SyncDescriptor {}

fn blocker_descriptor() -> odock_plugin_descriptor_t {
    // SAFETY: the SDK's entry returns a pointer to a static descriptor.
    unsafe { *blocker_entry() }
}

macro_rules! variant {
    ($name:ident, |$d:ident| $body:expr) => {
        extern "C" fn $name() -> *const odock_plugin_descriptor_t {
            static D: LazyLock<SyncDescriptor> = LazyLock::new(|| {
                let mut $d = blocker_descriptor();
                $body;
                SyncDescriptor($d)
            });
            &D.0
        }
    };
}

variant!(major_two, |d| d.abi_major = 2);
variant!(minor_ahead, |d| d.abi_minor =
    sys::ODOCK_PLUGIN_ABI_MINOR + 1);
variant!(too_small, |d| d.size = 16);
variant!(no_gates, |d| d.gates = 0);
variant!(unknown_gate, |d| d.gates |= 1 << 9);
variant!(unknown_cap, |d| d.capabilities = 1 << 40);
variant!(no_hook, |d| d.on_request = None);
variant!(stray_hook, |d| d.on_response = d.on_request);
variant!(bad_mode, |d| d.response_mode = 7);
variant!(null_name, |d| d.name.ptr = std::ptr::null());
variant!(bad_name, |d| d.name =
    sys::odock_plugin_view_t::from_slice(b"Blocker!"));
variant!(no_init, |d| d.init = None);

extern "C" fn null_entry() -> *const odock_plugin_descriptor_t {
    std::ptr::null()
}

#[test]
fn malformed_descriptors_are_refused_with_the_field_named() {
    let grant = Grant::new(Capabilities::ALL);
    let cases: &[(sys::odock_plugin_entry_fn, &str)] = &[
        (
            major_two,
            "the descriptor is of plugin ABI major version 2; this host speaks major version 1",
        ),
        (
            minor_ahead,
            "the plugin needs plugin ABI 1.1; this host provides 1.0",
        ),
        (
            too_small,
            "descriptor size 16 is smaller than version 1.0's",
        ),
        (no_gates, "descriptor field `gates` is 0x0"),
        (unknown_gate, "descriptor field `gates` is 0x201"),
        (
            unknown_cap,
            "descriptor field `capabilities` has bits 0x10000000000",
        ),
        (
            no_hook,
            "descriptor field `on_request` is NULL but required",
        ),
        (
            stray_hook,
            "descriptor field `on_response` is set for a gate the plugin does not join",
        ),
        (bad_mode, "descriptor field `response_mode` is 7"),
        (
            null_name,
            "descriptor field `name`: has a length but a NULL pointer",
        ),
        (
            bad_name,
            "descriptor field `name`: must be 1 to 64 bytes of [a-z0-9._-]",
        ),
        (no_init, "descriptor field `init` is NULL but required"),
        (null_entry, "odock_plugin_entry_v1 returned NULL"),
    ];
    for (entry, want) in cases {
        let err = refusal(*entry, "blocker", &grant).to_string();
        assert!(err.starts_with("plugin `blocker` refused: "), "{err}");
        assert!(err.contains(want), "{err:?} does not say {want:?}");
    }
}

// ---------------------------------------------------------------------------
// A raw plugin: verdicts the SDK cannot express.

/// The raw plugin's instance: what to answer, and the host it was given.
struct RawState {
    mode: u8,
    host: *const sys::odock_host_api_t,
}

static STALE_CALL: AtomicPtr<sys::odock_call_t> = AtomicPtr::new(std::ptr::null_mut());
static NOT_UTF8: [u8; 2] = [0xff, 0xfe];

unsafe extern "C" fn raw_init(
    host: *const sys::odock_host_api_t,
    _call: *mut sys::odock_call_t,
    args: *const sys::odock_init_args_t,
    out: *mut *mut sys::odock_instance_t,
) -> sys::odock_status_t {
    // SAFETY: the host passes valid arguments to init.
    unsafe {
        let config = odock_plugin_abi::view::host_bytes((*args).config);
        let state = Box::new(RawState {
            mode: config[0],
            host,
        });
        out.write(Box::into_raw(state).cast());
    }
    sys::ODOCK_OK
}

unsafe extern "C" fn raw_destroy(instance: *mut sys::odock_instance_t) {
    // SAFETY: `instance` is what `raw_init` made.
    drop(unsafe { Box::from_raw(instance.cast::<RawState>()) });
}

unsafe extern "C" fn raw_on_request(
    instance: *mut sys::odock_instance_t,
    call: *mut sys::odock_call_t,
    _frame: *const sys::odock_frame_t,
    verdict: *mut sys::odock_verdict_t,
) -> sys::odock_status_t {
    // SAFETY: the host passes our instance and its verdict.
    let (state, v) = unsafe { (&*instance.cast::<RawState>(), &mut *verdict) };
    let block = |v: &mut sys::odock_verdict_t, status| {
        v.kind = sys::ODOCK_VERDICT_BLOCK;
        v.http_status = status;
    };
    match state.mode {
        b'k' => v.kind = 7,
        b's' => block(v, 200),
        b'u' => {
            block(v, 403);
            v.reason = sys::odock_plugin_view_t::from_slice(&NOT_UTF8);
        }
        b'n' => {
            block(v, 403);
            v.detail = sys::odock_plugin_view_t {
                ptr: std::ptr::null(),
                len: 3,
            };
        }
        b'l' => {
            block(v, 403);
            v.reason = sys::odock_plugin_view_t::from_slice(&[b'a'; 1025]);
        }
        b'p' => {
            v.kind = sys::ODOCK_VERDICT_PAUSE;
            v.pause_token = 99;
        }
        b'e' => return 4242,
        b'c' => STALE_CALL.store(call, Ordering::Relaxed),
        b'h' => {
            // SAFETY: the host table from init, valid until destroy.
            let log = unsafe { (*state.host).log.unwrap() };
            // SAFETY: a NULL call handle must be refused, not followed.
            let st = unsafe {
                log(
                    std::ptr::null_mut(),
                    sys::ODOCK_LOG_INFO,
                    sys::odock_plugin_view_t::ZEROED,
                )
            };
            let bad_view = sys::odock_plugin_view_t {
                ptr: std::ptr::null(),
                len: 5,
            };
            // SAFETY: a view with a length and no pointer must be refused.
            let st2 = unsafe { log(call, sys::ODOCK_LOG_INFO, bad_view) };
            if st != sys::ODOCK_ERR_INVALID_ARGUMENT || st2 != sys::ODOCK_ERR_INVALID_ARGUMENT {
                return sys::ODOCK_ERR_FAILED;
            }
        }
        _ => {}
    }
    sys::ODOCK_OK
}

extern "C" fn raw_entry() -> *const odock_plugin_descriptor_t {
    static D: LazyLock<SyncDescriptor> = LazyLock::new(|| {
        let mut d = odock_plugin_descriptor_t::SIZED;
        d.abi_major = sys::ODOCK_PLUGIN_ABI_MAJOR;
        d.name = sys::odock_plugin_view_t::from_slice(b"raw");
        d.version = sys::odock_plugin_view_t::from_slice(b"1");
        d.capabilities = sys::ODOCK_CAP_BLOCK;
        d.gates = sys::ODOCK_GATE_REQUEST;
        d.init = Some(raw_init);
        d.destroy = Some(raw_destroy);
        d.on_request = Some(raw_on_request);
        SyncDescriptor(d)
    });
    &D.0
}

#[test]
fn malformed_verdicts_are_errors_for_the_failure_mode() {
    let plugin = load(raw_entry, "raw", &Grant::new(caps(&[Capability::Block])));
    let mut out = GateOutput::new();
    let cases: &[(&[u8], CallError)] = &[
        (
            b"k",
            CallError::InvalidVerdict(InvalidVerdict::UnknownKind(7)),
        ),
        (b"s", CallError::InvalidVerdict(InvalidVerdict::Status(200))),
        (
            b"u",
            CallError::InvalidVerdict(InvalidVerdict::ReasonNotUtf8),
        ),
        (
            b"n",
            CallError::InvalidVerdict(InvalidVerdict::NullView("detail")),
        ),
        (
            b"l",
            CallError::InvalidVerdict(InvalidVerdict::TooLong {
                field: "reason",
                len: 1025,
                max: 1024,
            }),
        ),
        (
            b"p",
            CallError::InvalidVerdict(InvalidVerdict::UnknownToken(99)),
        ),
        (b"e", CallError::Failed(Error::Unknown(4242))),
    ];
    for (config, want) in cases {
        for (mode, decision) in [
            (FailureMode::Enforce, Decision::Block),
            (FailureMode::EnforceIgnoreError, Decision::Continue),
            (FailureMode::Permissive, Decision::Continue),
        ] {
            let mut sink = MemorySink::new();
            let mut inst = start(&plugin, config, mode);
            assert_eq!(
                inst.call_gate(&request(b"m"), &mut out, &mut sink),
                decision,
                "{want} in {mode}"
            );
            assert_eq!(out.error(), Some(want));
            assert!(out.verdict().is_none());
            assert_eq!(sink.of_kind("plugin_error").count(), 1);
        }
    }
}

#[test]
fn host_calls_check_their_handle_and_views() {
    let plugin = load(raw_entry, "raw", &Grant::new(caps(&[Capability::Block])));
    let mut out = GateOutput::new();
    let mut sink = MemorySink::new();

    let mut inst = start(&plugin, b"h", FailureMode::Enforce);
    assert_eq!(
        inst.call_gate(&request(b"m"), &mut out, &mut sink),
        Decision::Continue
    );
    assert_eq!(out.error(), None);

    // A handle kept past its hook is refused, not followed.
    let mut inst = start(&plugin, b"c", FailureMode::Enforce);
    assert_eq!(
        inst.call_gate(&request(b"m"), &mut out, &mut sink),
        Decision::Continue
    );
    let stale = STALE_CALL.load(Ordering::Relaxed);
    assert!(!stale.is_null());
    let log = host::HOST_API.0.log.unwrap();
    // SAFETY: the handle belongs to `inst`, which is alive; between hooks
    // the host must answer WRONG_GATE without touching any call state.
    let st = unsafe { log(stale, sys::ODOCK_LOG_INFO, sys::odock_plugin_view_t::ZEROED) };
    assert_eq!(st, sys::ODOCK_ERR_WRONG_GATE);
}

// ---------------------------------------------------------------------------
// The host's own panics.

struct Emitter;

impl Plugin for Emitter {
    const NAME: &'static str = "emitter";
    const VERSION: &'static str = "1";
    const CAPABILITIES: Capabilities = Capabilities::of(&[Capability::EmitEvidence]);
    fn init(_: &InitContext<'_>) -> Result<Self, Error> {
        Ok(Emitter)
    }
}

impl RequestGate for Emitter {
    fn on_request(&mut self, host: &Host<'_>, _: &Frame<'_>) -> Result<SdkVerdict, Error> {
        for _ in 0..40 {
            if let Err(e) = host.emit_evidence("emitter.tick", b"") {
                host.emit_evidence("emitter.stopped", e.to_string().as_bytes())
                    .ok();
                return Err(e);
            }
        }
        Ok(SdkVerdict::Continue)
    }
}

odock_plugin_abi::plugin_entry!(fn emitter_entry for Emitter, request);

struct ExplodingSink;

impl EvidenceSink for ExplodingSink {
    fn record(&mut self, _: &Evidence<'_>) {
        panic!("the sink exploded");
    }
}

#[test]
fn a_panic_in_the_sink_resumes_in_the_caller_after_the_hook() {
    let plugin = load(emitter_entry, "emitter", &Grant::new(Capabilities::ALL));
    let mut inst = start(&plugin, b"", FailureMode::Enforce);
    let mut out = GateOutput::new();
    let payload = catch_unwind(AssertUnwindSafe(|| {
        inst.call_gate(&request(b"m"), &mut out, &mut ExplodingSink)
    }))
    .expect_err("the sink's panic reaches the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"the sink exploded"));

    // The instance is still usable, and the per-call evidence budget holds.
    let mut sink = MemorySink::new();
    assert_eq!(
        inst.call_gate(&request(b"m"), &mut out, &mut sink),
        Decision::Block
    );
    assert_eq!(sink.of_kind("emitter.tick").count(), 32);
    assert_eq!(out.error(), Some(&CallError::Failed(Error::LimitExceeded)));
}

#[test]
fn pins_parse_and_print_as_hex() {
    let pin = Pin::of_bytes(b"abc");
    let hex = pin.to_string();
    assert_eq!(
        hex,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(Pin::from_hex(&hex), Ok(pin));
    assert!(Pin::from_hex("xyz").is_err());
    assert!(Pin::from_hex(&hex.replace('b', "g")).is_err());
}

static COUNTED_DROPS: AtomicUsize = AtomicUsize::new(0);

struct Counted;

impl Plugin for Counted {
    const NAME: &'static str = "counted";
    const VERSION: &'static str = "1";
    const CAPABILITIES: Capabilities = Capabilities::NONE;
    fn init(ctx: &InitContext<'_>) -> Result<Self, Error> {
        // The host answers HOST_INTERNAL here: its sink panicked.
        let _ = ctx.host().log(LogLevel::Info, "hello");
        Ok(Counted)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        COUNTED_DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

impl CompleteGate for Counted {}

odock_plugin_abi::plugin_entry!(fn counted_entry for Counted, complete);

struct LogBomb;

impl EvidenceSink for LogBomb {
    fn record(&mut self, _: &Evidence<'_>) {}
    fn log(&mut self, _: &str, _: LogLevel, _: &[u8]) {
        panic!("the log exploded");
    }
}

#[test]
fn a_sink_panic_during_init_still_destroys_what_init_created() {
    let plugin = load(counted_entry, "counted", &Grant::default());
    let before = COUNTED_DROPS.load(Ordering::Relaxed);
    let payload = catch_unwind(AssertUnwindSafe(|| {
        plugin.instantiate(
            Binding::new(0, &b""[..], FailureMode::Enforce),
            &mut LogBomb,
        )
    }))
    .expect_err("the sink's panic reaches the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"the log exploded"));
    assert_eq!(
        COUNTED_DROPS.load(Ordering::Relaxed),
        before + 1,
        "destroy ran"
    );
}
