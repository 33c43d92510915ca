//! Decision records and host records reach the worker's evidence ring in
//! the evidence format, with the internal detail kept apart from the reason.

mod plugin_support;

use std::time::Duration;

use odock_dataplane::evidence::{self, EvidenceWriter, Kind, SequenceCheck, Verdict};
use odock_dataplane::plugin::{FailureMode, Grant};
use odock_dataplane::ring::{Geometry, Ring};
use odock_dataplane::runtime::policy::{BindingSpec, PolicySpec, Scope};
use odock_dataplane::runtime::{PluginSource, RequestFrame, RingSink, Runtime};
use odock_plugin_abi::{Capabilities, Capability};

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
            Capability::CallIntegration,
            Capability::QueueFollowup,
        ]))),
        config: config.as_bytes().to_vec(),
        failure_mode: FailureMode::Enforce,
        time_budget: Duration::from_secs(5),
    }
}

#[test]
fn decisions_and_host_records_land_in_the_evidence_ring() {
    let (a, b) = (probe("probe-a"), probe("probe-b"));
    let runtime = Runtime::new();
    runtime
        .install(
            PolicySpec {
                version: 9,
                bindings: vec![
                    bind("probe-a", 1, "header:x-trace=1;deny;evidence:probe.seen"),
                    bind("probe-b", 2, "block:451:not for this tenant"),
                ],
            },
            &[a, b],
        )
        .unwrap();
    let ring = Ring::heap(Geometry::new(1, 64 * 1024).unwrap());
    let sink = RingSink::new(EvidenceWriter::new(ring.producer().unwrap(), 3));
    let mut runner = runtime.runner(3, Box::new(sink));
    let frame = RequestFrame {
        request_id: 77,
        tenant: Some("acme"),
        model: Some("gpt-4o"),
        body: b"{}",
        ..RequestFrame::default()
    };
    assert!(matches!(
        runner.request(&frame).verdict,
        odock_dataplane::runtime::Verdict::Block { status: 451, .. }
    ));

    let mut consumer = ring.consumer().unwrap();
    let mut seq = SequenceCheck::new();
    let mut got = Vec::new();
    consumer
        .drain(|bytes| {
            let r = evidence::decode(&bytes).expect("a record the sink wrote");
            seq.observe(&r).unwrap();
            assert_eq!(r.stamp.worker, 3);
            let e = r.evidence;
            got.push((
                e.kind,
                e.plugin.to_string(),
                e.verdict,
                e.status,
                e.reason.to_string(),
                e.detail.to_string(),
                e.request_id.to_string(),
                e.changed.iter().map(str::to_string).collect::<Vec<_>>(),
                e.attrs.get(evidence::attr::CAPABILITY).map(str::to_string),
                e.payload.kind.to_string(),
                e.scope.tenant.to_string(),
            ));
        })
        .unwrap();
    let kinds: Vec<_> = got.iter().map(|g| (g.0, g.1.as_str(), g.2)).collect();
    assert_eq!(
        kinds,
        vec![
            (Kind::CapabilityDenied, "probe-a", Verdict::Denied),
            (Kind::Plugin, "probe-a", Verdict::None),
            (Kind::Decision, "probe-a", Verdict::Continue),
            (Kind::Decision, "probe-b", Verdict::Block),
        ]
    );
    // The denied call names its capability.
    assert_eq!(got[0].8.as_deref(), Some("call_integration"));
    // The plugin's own record keeps its kind.
    assert_eq!(got[1].9, "probe.seen");
    // The decision names what changed, never the value.
    assert_eq!(got[2].7, vec!["x-trace".to_string()]);
    assert_eq!((got[2].6.as_str(), got[2].10.as_str()), ("77", "acme"));
    // The block: status and reason for the caller, the detail apart.
    assert_eq!((got[3].3, got[3].4.as_str()), (451, "not for this tenant"));
    assert_eq!(got[3].5, "internal: probe blocked on config");
    assert_eq!(seq.records(), 4);
    assert_eq!(seq.lost(), 0);
}
