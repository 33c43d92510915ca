//! One call through the plugin ABI against a direct Rust call of the same
//! function.
//!
//! The plugin is an allow-list check written with the Rust SDK and run in
//! process (`plugin_entry!` + `LoadedPlugin::from_entry`, the very hooks a
//! `dlopen`ed plugin has: a call through a function pointer into the SDK's
//! glue). The ABI path is what a worker pays per plugin per frame:
//! `PluginInstance::call_gate` masks the frame by capability, lays it out as
//! `odock_frame_t` on the stack, activates the call slot, calls the hook
//! (which catches panics, reads the frame back, runs the function, writes
//! the verdict), and checks and interprets the verdict under the failure
//! mode. The baseline calls the same function on the same `Frame` directly.
//!
//! Cases: `allow` (the model is allowed: continue), `block` (it is not:
//! a 403 verdict whose reason is copied into the output), and `noop` (a
//! plugin that does nothing, against an empty function): the fixed cost.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use odock_dataplane::plugin::{
    Binding, Decision, FailureMode, GateOutput, Grant, LoadedPlugin, NullSink,
};
use odock_plugin_abi::sdk::{Host, InitContext, Plugin, RequestGate, Verdict};
use odock_plugin_abi::view::{Frame, Target};
use odock_plugin_abi::{Capabilities, Capability, Error, Gate};

/// The function under test: allow the models of the list, block the rest.
#[inline(never)]
fn decide(allowed: &[Vec<u8>], frame: &Frame<'_>) -> Verdict {
    if allowed.iter().any(|m| m.as_slice() == frame.target.model) {
        Verdict::Continue
    } else {
        Verdict::block(403, "this model is not allowed for this key")
    }
}

#[inline(never)]
fn nothing(_frame: &Frame<'_>) -> Verdict {
    Verdict::Continue
}

fn allow_list(config: &[u8]) -> Vec<Vec<u8>> {
    config
        .split(|&b| b == b',')
        .filter(|m| !m.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

struct Guard {
    allowed: Vec<Vec<u8>>,
}

impl Plugin for Guard {
    const NAME: &'static str = "bench-guard";
    const VERSION: &'static str = "0.0.0";
    const CAPABILITIES: Capabilities = Capabilities::of(&[Capability::Block]);
    fn init(ctx: &InitContext<'_>) -> Result<Self, Error> {
        Ok(Guard {
            allowed: allow_list(ctx.config()),
        })
    }
}

impl RequestGate for Guard {
    fn on_request(&mut self, _host: &Host<'_>, frame: &Frame<'_>) -> Result<Verdict, Error> {
        Ok(decide(&self.allowed, frame))
    }
}

struct Noop;

impl Plugin for Noop {
    const NAME: &'static str = "bench-noop";
    const VERSION: &'static str = "0.0.0";
    const CAPABILITIES: Capabilities = Capabilities::NONE;
    fn init(_: &InitContext<'_>) -> Result<Self, Error> {
        Ok(Noop)
    }
}

impl RequestGate for Noop {
    fn on_request(&mut self, _host: &Host<'_>, frame: &Frame<'_>) -> Result<Verdict, Error> {
        Ok(nothing(frame))
    }
}

odock_plugin_abi::plugin_entry!(fn guard_entry for Guard, request);
odock_plugin_abi::plugin_entry!(fn noop_entry for Noop, request);

const CONFIG: &[u8] = b"gpt-4o,gpt-4o-mini,o3,claude-sonnet";

fn abi(c: &mut Criterion) {
    let grant = Grant::new(Capabilities::of(&[Capability::Block]));
    // SAFETY: the entries come from the SDK's macro in this binary.
    let guard = unsafe { LoadedPlugin::from_entry(guard_entry, "bench-guard", &grant) }
        .expect("the bench plugin loads");
    // SAFETY: as above.
    let noop = unsafe { LoadedPlugin::from_entry(noop_entry, "bench-noop", &grant) }
        .expect("the bench plugin loads");
    let mut sink = NullSink;
    let mut guard = guard
        .instantiate(Binding::new(0, CONFIG, FailureMode::Enforce), &mut sink)
        .expect("init");
    let mut noop = noop
        .instantiate(Binding::new(0, CONFIG, FailureMode::Enforce), &mut sink)
        .expect("init");
    let allowed = allow_list(CONFIG);
    let mut out = GateOutput::new();

    let mut allow = Frame::new(Gate::Request, 1);
    allow.target = Target::model(b"claude-sonnet");
    let mut block = Frame::new(Gate::Request, 2);
    block.target = Target::model(b"gpt-5");

    // The two paths must agree before they are timed.
    assert_eq!(
        guard.call_gate(&allow, &mut out, &mut sink),
        Decision::Continue
    );
    assert_eq!(decide(&allowed, &allow), Verdict::Continue);
    assert_eq!(
        guard.call_gate(&block, &mut out, &mut sink),
        Decision::Block
    );
    assert!(matches!(decide(&allowed, &block), Verdict::Block(_)));

    let mut group = c.benchmark_group("abi");
    for (case, frame) in [("allow", &allow), ("block", &block)] {
        group.bench_function(format!("{case}/direct"), |b| {
            b.iter(|| decide(black_box(&allowed), black_box(frame)))
        });
        group.bench_function(format!("{case}/through_abi"), |b| {
            b.iter(|| guard.call_gate(black_box(frame), &mut out, &mut sink))
        });
    }
    group.bench_function("noop/direct", |b| b.iter(|| nothing(black_box(&allow))));
    group.bench_function("noop/through_abi", |b| {
        b.iter(|| noop.call_gate(black_box(&allow), &mut out, &mut sink))
    });
    group.finish();
}

criterion_group!(benches, abi);
criterion_main!(benches);
