//! The model-guard example, in C and through the Rust SDK, loaded from real
//! shared libraries: both behave the same, frame for frame. And a C plugin
//! that misbehaves is handled by its failure mode.

mod plugin_support;

use odock_dataplane::plugin::{
    Binding, CallError, Decision, FailureMode, GateOutput, Grant, InvalidVerdict, LoadedPlugin,
    MemorySink, PluginInstance, Transform,
};
use odock_plugin_abi::view::{Frame, Target};
use odock_plugin_abi::{Capabilities, Capability, Error, Gate};
use plugin_support::{c_model_guard, c_plugin, rust_model_guard, spec};

const CONFIG: &[u8] = br#"{"allow": ["gpt-4o", "gpt-4o-mini"]}"#;

fn grant() -> Grant {
    Grant::new(Capabilities::of(&[
        Capability::WriteHeaders,
        Capability::Block,
        Capability::EmitEvidence,
    ]))
}

/// What one request did, in owned form, to compare two plugins.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    decision: Decision,
    block: Option<(u16, String, Vec<u8>)>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    evidence: Vec<(String, Vec<u8>)>,
}

fn run(instance: &mut PluginInstance, model: &[u8]) -> Seen {
    let mut frame = Frame::new(Gate::Request, 7);
    frame.target = Target::model(model);
    let mut out = GateOutput::new();
    let mut sink = MemorySink::new();
    let decision = instance.call_gate(&frame, &mut out, &mut sink);
    assert_eq!(out.error(), None, "{}", instance.plugin().name());
    Seen {
        decision,
        block: out
            .block()
            .map(|b| (b.status, b.reason.to_owned(), b.detail.to_vec())),
        headers: out
            .transforms()
            .map(|t| match t {
                Transform::SetHeader { name, value } => (name.to_vec(), value.to_vec()),
                other => panic!("unexpected transform {other:?}"),
            })
            .collect(),
        evidence: sink
            .records
            .iter()
            .map(|r| {
                assert!(r.from_plugin && r.plugin == "model-guard" && r.request_id == 7);
                (r.kind.clone(), r.data.clone())
            })
            .collect(),
    }
}

fn instance(path: &std::path::Path) -> PluginInstance {
    let plugin = LoadedPlugin::load(&spec("model-guard", path, grant())).expect("loads");
    plugin
        .instantiate(
            Binding::new(0, CONFIG, FailureMode::Enforce),
            &mut MemorySink::new(),
        )
        .expect("init")
}

#[test]
fn the_c_and_rust_model_guards_behave_the_same() {
    let c_path = c_model_guard();
    let rust_path = rust_model_guard();
    let mut c = instance(&c_path);
    let mut rust = instance(&rust_path);

    // They describe themselves the same way.
    let (cp, rp) = (c.plugin(), rust.plugin());
    assert_eq!(
        (
            cp.name(),
            cp.version(),
            cp.config_schema(),
            cp.gates(),
            cp.requested()
        ),
        (
            rp.name(),
            rp.version(),
            rp.config_schema(),
            rp.gates(),
            rp.requested()
        )
    );

    let header = (b"x-odock-model-guard".to_vec(), b"checked".to_vec());
    let long = vec![b'm'; 300];
    for model in [
        &b"gpt-4o"[..],
        b"gpt-4o-mini",
        b"gpt-5",
        b"",
        b"GPT-4O",
        &long,
    ] {
        let from_c = run(&mut c, model);
        let from_rust = run(&mut rust, model);
        assert_eq!(
            from_c,
            from_rust,
            "model {:?}",
            String::from_utf8_lossy(model)
        );

        // And what they do is what the example promises.
        assert_eq!(from_c.headers, vec![header.clone()]);
        let allowed = model == b"gpt-4o" || model == b"gpt-4o-mini";
        let kind = if allowed {
            "model_guard.allowed"
        } else {
            "model_guard.blocked"
        };
        assert_eq!(from_c.evidence, vec![(kind.to_owned(), model.to_vec())]);
        if allowed {
            assert_eq!(from_c.decision, Decision::Continue);
            assert_eq!(from_c.block, None);
        } else {
            assert_eq!(from_c.decision, Decision::Block);
            let (status, reason, detail) = from_c.block.unwrap();
            assert_eq!(status, 403);
            let shown = String::from_utf8_lossy(&model[..model.len().min(128)]).into_owned();
            assert_eq!(
                reason,
                format!("model `{shown}` is not allowed for this key")
            );
            assert_eq!(detail, b"not in the allow list");
        }
    }
}

#[test]
fn both_model_guards_refuse_a_config_they_cannot_use() {
    for path in [c_model_guard(), rust_model_guard()] {
        let plugin = LoadedPlugin::load(&spec("model-guard", &path, grant())).expect("loads");
        let mut sink = MemorySink::new();
        let err = plugin
            .instantiate(Binding::new(2, &b"{}"[..], FailureMode::Enforce), &mut sink)
            .expect_err("an empty config is refused");
        assert_eq!(err.error, Error::InvalidConfig);
        assert_eq!(err.worker_index, 2);
        assert!(
            sink.logs
                .iter()
                .any(|(_, _, m)| String::from_utf8_lossy(m).contains("config needs")),
            "the plugin says why through the host's log"
        );
    }
}

fn misbehaving(mode: &[u8], failure_mode: FailureMode) -> PluginInstance {
    let path = c_plugin("misbehaving", "tests/plugin_sources/misbehaving.c", &[]);
    let grant = Grant::new(Capabilities::of(&[
        Capability::Block,
        Capability::EmitEvidence,
    ]));
    let plugin = LoadedPlugin::load(&spec("misbehaving", &path, grant)).expect("loads");
    plugin
        .instantiate(Binding::new(0, mode, failure_mode), &mut MemorySink::new())
        .expect("init")
}

#[test]
fn a_c_plugin_returning_an_out_of_range_verdict_is_handled_by_its_failure_mode() {
    let frame = Frame::new(Gate::Request, 9);
    let mut out = GateOutput::new();
    for (mode, want) in [
        (
            &b"k"[..],
            CallError::InvalidVerdict(InvalidVerdict::UnknownKind(7)),
        ),
        (b"s", CallError::InvalidVerdict(InvalidVerdict::Status(200))),
        (b"e", CallError::Failed(Error::Failed)),
    ] {
        for (failure_mode, decision) in [
            (FailureMode::Enforce, Decision::Block),
            (FailureMode::EnforceIgnoreError, Decision::Continue),
            (FailureMode::Permissive, Decision::Continue),
            (FailureMode::Disabled, Decision::Continue),
        ] {
            let mut inst = misbehaving(mode, failure_mode);
            let mut sink = MemorySink::new();
            assert_eq!(inst.call_gate(&frame, &mut out, &mut sink), decision);
            if failure_mode == FailureMode::Disabled {
                assert_eq!(out.error(), None);
                assert!(sink.records.is_empty());
                continue;
            }
            assert_eq!(out.error(), Some(&want), "{failure_mode}");
            let record = sink
                .of_kind("plugin_error")
                .next()
                .expect("a plugin_error record");
            assert_eq!(record.plugin, "misbehaving");
            assert_eq!(record.request_id, 9);
        }
    }
}

#[test]
fn a_c_plugin_calling_the_host_without_its_grant_gets_denied() {
    let mut inst = misbehaving(b"d", FailureMode::Enforce);
    let mut out = GateOutput::new();
    let mut sink = MemorySink::new();
    let frame = Frame::new(Gate::Request, 11);
    assert_eq!(
        inst.call_gate(&frame, &mut out, &mut sink),
        Decision::Continue
    );
    assert!(out.transforms().next().is_none());
    assert_eq!(out.denials(), 1);
    let status = sink
        .of_kind("misbehaving.status")
        .next()
        .expect("the plugin reports");
    assert_eq!(
        status.data,
        odock_plugin_abi::sys::ODOCK_ERR_DENIED
            .to_string()
            .as_bytes()
    );
    let denied = sink
        .of_kind("capability_denied")
        .next()
        .expect("a capability_denied record");
    assert_eq!(denied.plugin, "misbehaving");
    assert_eq!(denied.request_id, 11);
    assert!(
        String::from_utf8_lossy(&denied.data).contains("set_header needs capability write_headers")
    );
}
