//! The host side of the plugin ABI: loading native plugins and running them
//! in process.
//!
//! The contract is `plugin-abi/include/odock_plugin.h`; this module is the
//! host it describes. The runtime (worker chains, budgets, the evidence
//! ring) builds on three types:
//!
//! - [`LoadedPlugin`]: one shared library, checked and loaded once per
//!   process and shared by every worker (`Arc`, `Send + Sync`).
//! - [`PluginInstance`]: one plugin on one worker, made by
//!   [`LoadedPlugin::instantiate`]; `Send`, not `Sync`, every call takes
//!   `&mut self`. Dropping it calls the plugin's `destroy`.
//! - [`GateOutput`]: what a hook produced; the caller owns one per worker
//!   and passes it to every call.
//!
//! ```no_run
//! use std::path::PathBuf;
//! use odock_dataplane::plugin::*;
//! use odock_plugin_abi::{Capabilities, Capability, Gate};
//! use odock_plugin_abi::view::{Frame, Target};
//!
//! let spec = PluginSpec {
//!     name: "model-guard".into(),
//!     path: PathBuf::from("/opt/odock/plugins/libmodel_guard.so"),
//!     pin: Pin::from_hex("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")?,
//!     grant: Grant::new(Capabilities::of(&[
//!         Capability::WriteHeaders, Capability::Block, Capability::EmitEvidence,
//!     ])),
//! };
//! let plugin = LoadedPlugin::load(&spec)?;
//! let mut sink = MemorySink::new();
//! let mut instance = plugin.instantiate(
//!     Binding::new(0, br#"{"allow":["gpt-4o"]}"#.as_slice(), FailureMode::Enforce),
//!     &mut sink,
//! )?;
//!
//! let mut frame = Frame::new(Gate::Request, 1);
//! frame.target = Target::model(b"gpt-5");
//! let mut out = GateOutput::new();
//! match instance.call_gate(&frame, &mut out, &mut sink) {
//!     Decision::Continue => { /* apply out.transforms(), go on */ }
//!     Decision::Block => { let block = out.block().unwrap(); /* answer block.status, block.reason */ }
//!     Decision::Pause => { /* start out.integration_call(), resume later */ }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Loading: what is checked, in order
//!
//! [`LoadedPlugin::load`] refuses, with a [`LoadError`] naming the plugin,
//! the file and the reason, when:
//!
//! 1. the file cannot be read, or its SHA-256 differs from the [`Pin`]
//!    control gave (an unpinned or changed binary does not load);
//! 2. the bytes are not a loadable shared library: on Linux they are first
//!    checked as an ELF shared object of this machine whose headers and
//!    segments lie inside the file (glibc would map a truncated library and
//!    die of SIGBUS touching it); then `dlopen` must accept them, binding
//!    every symbol at once (`RTLD_NOW`), so a missing one fails here and not
//!    at the first call;
//! 3. `odock_plugin_entry_v1` is missing (the error says when the file
//!    exports the entry of another major version instead);
//! 4. the descriptor is NULL, misaligned, smaller than version 1.0's, of
//!    another major version, or needs a newer minor than this host's;
//! 5. a descriptor field is malformed (name, version, schema, integration
//!    names; unknown gate or capability bits; a missing or stray hook);
//! 6. its name is not the one control registered;
//! 7. it asks for a capability or an integration the [`Grant`] does not
//!    give.
//!
//! On Linux the bytes that were hashed are the bytes that are loaded: the
//! file is read once into a sealed memfd and `dlopen`ed from there, so
//! replacing the file between the check and the load changes nothing. A
//! plugin's own dependencies are found on the usual library path, not next
//! to the plugin file; ship plugins self-contained.
//!
//! The one thing no check can cover: the entry function and every hook are
//! the plugin's machine code, running in this process. **A plugin that
//! crashes (a bad pointer, an abort, a stack overflow) takes the gateway
//! process with it.** Status codes cover every failure a plugin reports;
//! isolation from the ones it cannot report needs the out-of-process host,
//! which comes later.
//!
//! # Running: least privilege at every call
//!
//! An instance honours only the capabilities the plugin asked for *and*
//! was granted. Frame fields it may not read arrive empty (see the
//! header). A host call outside its grant returns `ODOCK_ERR_DENIED` and
//! leaves a `capability_denied` record in the [`EvidenceSink`]; so does a
//! BLOCK verdict without the `block` capability, which also fails the call.
//!
//! Every other check the header promises happens here too: header names are
//! HTTP tokens, values hold no CR/LF/NUL, byte ranges lie inside the body
//! (or chunk) and do not overlap, each call stays within its [`Limits`], a
//! verdict has a known kind, a 400 to 599 status, a UTF-8 reason of at most
//! 1024 bytes and a detail of at most 4096, PAUSE only at the request gate
//! and only on a token this very hook obtained. Any breach makes the call a
//! [`CallError`], handled by the binding's [`FailureMode`].
//!
//! # Failure modes
//!
//! | mode | valid verdict | hook error or malformed verdict |
//! |---|---|---|
//! | [`FailureMode::Enforce`] | enforced | blocks (503, a neutral reason), `plugin_error` record |
//! | [`FailureMode::EnforceIgnoreError`] | enforced | continues, `plugin_error` record |
//! | [`FailureMode::Permissive`] | BLOCK/PAUSE recorded (`verdict_not_enforced`), continues | continues, `plugin_error` record |
//! | [`FailureMode::Disabled`] | the plugin is never called | — |
//!
//! A failed hook's transforms, integration calls and follow-ups are
//! dropped; evidence it emitted stays (evidence is never taken back). In
//! permissive mode the transforms of a valid verdict still apply: only the
//! decisions are not enforced.
//!
//! # The per-call path
//!
//! No lock and no allocation once the worker's [`GateOutput`] has grown to
//! its working size: the frame is laid out on the stack, each instance has
//! one call slot allocated at init, changes are copied into the output's
//! arena, and evidence goes to the sink by reference. A panic in the sink
//! (or anywhere in the host while serving a host call) is caught before it
//! can unwind through the plugin's C frames, the host call returns
//! `ODOCK_ERR_HOST_INTERNAL`, and the panic resumes in the caller once the
//! hook has returned.

#[cfg(target_os = "linux")]
mod elf;
mod evidence;
mod host;
mod instance;
mod loader;
mod output;

pub use evidence::{
    Evidence, EvidenceRecord, EvidenceSink, MemorySink, NullSink, Operation, Phase,
    RecordedEvidence,
};
pub use instance::{Binding, InitError, IntegrationAnswer, PluginInstance};
pub use loader::{LoadError, LoadedPlugin, Pin, PinParseError, PluginSpec, Refusal};
pub use output::{
    Block, CallError, Decision, FAIL_CLOSED_REASON, FAIL_CLOSED_STATUS, FollowUp, GateOutput,
    IntegrationCall, InvalidVerdict, Transform, Verdict,
};

use std::fmt;

use odock_plugin_abi::{Capabilities, Capability};

/// What the operator granted a plugin: capabilities, and the integrations
/// it may call by name.
///
/// ```
/// use odock_dataplane::plugin::Grant;
/// use odock_plugin_abi::{Capabilities, Capability};
/// let grant = Grant::new(Capabilities::of(&[Capability::CallIntegration]))
///     .with_integration("approvals");
/// assert!(grant.allows_integration(b"approvals"));
/// assert!(!grant.allows_integration(b"payroll"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    capabilities: Capabilities,
    integrations: Vec<String>,
}

impl Grant {
    /// A grant of these capabilities and no integration.
    pub fn new(capabilities: Capabilities) -> Grant {
        Grant {
            capabilities,
            integrations: Vec::new(),
        }
    }

    /// The same grant, also allowing calls to the integration `name`.
    pub fn with_integration(mut self, name: impl Into<String>) -> Grant {
        self.integrations.push(name.into());
        self
    }

    /// The granted capabilities.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The integrations that may be called.
    pub fn integrations(&self) -> &[String] {
        &self.integrations
    }

    /// Whether `name` may be called: the grant has
    /// [`Capability::CallIntegration`] and names it.
    pub fn allows_integration(&self, name: &[u8]) -> bool {
        self.capabilities.contains(Capability::CallIntegration)
            && self.integrations.iter().any(|n| n.as_bytes() == name)
    }
}

/// What a plugin's failure means, chosen per binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailureMode {
    /// Verdicts are enforced; a failed hook blocks (fail closed).
    #[default]
    Enforce,
    /// Verdicts are enforced; a failed hook continues, with evidence
    /// (fail open).
    EnforceIgnoreError,
    /// Nothing is enforced: verdicts and failures are recorded, the request
    /// continues. For trying a plugin on live traffic.
    Permissive,
    /// The plugin is not called.
    Disabled,
}

impl FailureMode {
    /// The mode's name as control spells it.
    pub fn name(self) -> &'static str {
        match self {
            FailureMode::Enforce => "enforce",
            FailureMode::EnforceIgnoreError => "enforce_ignore_error",
            FailureMode::Permissive => "permissive",
            FailureMode::Disabled => "disabled",
        }
    }

    /// Parses [`FailureMode::name`].
    pub fn from_name(name: &str) -> Option<FailureMode> {
        [
            FailureMode::Enforce,
            FailureMode::EnforceIgnoreError,
            FailureMode::Permissive,
            FailureMode::Disabled,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

impl fmt::Display for FailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-call budgets of one instance. A host call past a budget returns
/// `ODOCK_ERR_LIMIT_EXCEEDED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Transforms (headers, metadata, body changes) per call.
    pub max_transforms: usize,
    /// Bytes copied into the output per call (transform values, payloads).
    pub max_output_bytes: usize,
    /// Evidence records per call.
    pub max_evidence_records: u32,
    /// Bytes of one evidence record.
    pub max_evidence_bytes: usize,
    /// Integration calls started per call.
    pub max_integration_calls: usize,
    /// Follow-ups queued per call.
    pub max_followups: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_transforms: 64,
            max_output_bytes: 1 << 20,
            max_evidence_records: 32,
            max_evidence_bytes: 64 << 10,
            max_integration_calls: 4,
            max_followups: 16,
        }
    }
}

#[cfg(test)]
mod tests;
