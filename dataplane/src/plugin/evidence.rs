//! Where the host layer puts evidence: a small trait the runtime wires to the
//! evidence ring, and an in-memory sink for tests.

use std::fmt;

use odock_plugin_abi::{Capability, Gate, LogLevel};

use super::FailureMode;
use super::output::{CallError, Verdict};

/// Receives evidence records and plugin log lines as they happen.
///
/// The host calls it on the worker's thread, during a hook (a plugin's own
/// records, denied calls) or right after one (errors, unenforced verdicts).
/// Records borrow from the call: copy what you keep. An implementation must
/// not block; a panic in it is carried back to the host's caller after the
/// plugin's hook returns, never through the plugin.
pub trait EvidenceSink {
    /// Takes one record.
    fn record(&mut self, evidence: &Evidence<'_>);

    /// Takes one diagnostic line a plugin logged (not evidence). The default
    /// drops it.
    fn log(&mut self, plugin: &str, level: LogLevel, message: &[u8]) {
        let _ = (plugin, level, message);
    }
}

/// One evidence record, stamped with who and when.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// The plugin's name.
    pub plugin: &'a str,
    /// The request's id (0 outside a request).
    pub request_id: u64,
    /// The hook that was running.
    pub phase: Phase,
    /// What happened.
    pub record: EvidenceRecord<'a>,
}

/// The hook a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `init`.
    Init,
    /// A gate hook.
    Gate(Gate),
    /// `on_integration_answer`, resuming this gate.
    IntegrationAnswer(Gate),
    /// `on_followup`.
    FollowUp,
}

impl Phase {
    /// The gate whose rules apply, if any.
    pub fn gate(self) -> Option<Gate> {
        match self {
            Phase::Gate(g) | Phase::IntegrationAnswer(g) => Some(g),
            Phase::Init | Phase::FollowUp => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Init => f.write_str("init"),
            Phase::Gate(g) => write!(f, "{g} gate"),
            Phase::IntegrationAnswer(g) => write!(f, "integration answer at the {g} gate"),
            Phase::FollowUp => f.write_str("follow-up"),
        }
    }
}

/// What a plugin attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// The `log` host call.
    Log,
    /// The `read_config` host call.
    ReadConfig,
    /// The `set_header` host call.
    SetHeader,
    /// The `remove_header` host call.
    RemoveHeader,
    /// The `set_metadata` host call.
    SetMetadata,
    /// The `replace_body_range` host call.
    ReplaceBodyRange,
    /// The `replace_body_field` host call.
    ReplaceBodyField,
    /// The `emit_evidence` host call.
    EmitEvidence,
    /// The `call_integration` host call.
    CallIntegration,
    /// The `queue_followup` host call.
    QueueFollowup,
    /// A BLOCK verdict.
    BlockVerdict,
}

impl Operation {
    /// The name as the header spells it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Log => "log",
            Operation::ReadConfig => "read_config",
            Operation::SetHeader => "set_header",
            Operation::RemoveHeader => "remove_header",
            Operation::SetMetadata => "set_metadata",
            Operation::ReplaceBodyRange => "replace_body_range",
            Operation::ReplaceBodyField => "replace_body_field",
            Operation::EmitEvidence => "emit_evidence",
            Operation::CallIntegration => "call_integration",
            Operation::QueueFollowup => "queue_followup",
            Operation::BlockVerdict => "a BLOCK verdict",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a record says.
#[derive(Debug, Clone, Copy)]
pub enum EvidenceRecord<'a> {
    /// A record the plugin emitted through `emit_evidence`.
    Plugin {
        /// The plugin's kind (UTF-8, 1 to 64 bytes).
        kind: &'a str,
        /// The plugin's bytes.
        data: &'a [u8],
    },
    /// The plugin attempted something it was not granted.
    CapabilityDenied {
        /// The capability it lacks.
        capability: Capability,
        /// What it attempted.
        operation: Operation,
        /// For `call_integration`: the integration it named.
        integration: Option<&'a [u8]>,
    },
    /// A hook failed; `mode` says what the host did about it.
    PluginError {
        /// What went wrong.
        error: &'a CallError,
        /// The binding's failure mode, which decided the outcome.
        mode: FailureMode,
    },
    /// In permissive mode: a verdict that was recorded and not enforced.
    VerdictNotEnforced {
        /// The plugin's verdict.
        verdict: Verdict<'a>,
    },
}

impl EvidenceRecord<'_> {
    /// The record's kind: the plugin's own kind, or `capability_denied`,
    /// `plugin_error`, `verdict_not_enforced`.
    pub fn kind(&self) -> &str {
        match self {
            EvidenceRecord::Plugin { kind, .. } => kind,
            EvidenceRecord::CapabilityDenied { .. } => "capability_denied",
            EvidenceRecord::PluginError { .. } => "plugin_error",
            EvidenceRecord::VerdictNotEnforced { .. } => "verdict_not_enforced",
        }
    }
}

impl fmt::Display for EvidenceRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvidenceRecord::Plugin { kind, data } => {
                write!(f, "{kind}: {}", data.escape_ascii())
            }
            EvidenceRecord::CapabilityDenied {
                capability,
                operation,
                integration,
            } => {
                write!(f, "{operation} needs capability {capability}")?;
                if let Some(name) = integration {
                    write!(f, " for integration `{}`", name.escape_ascii())?;
                }
                f.write_str(", which is not granted")
            }
            EvidenceRecord::PluginError { error, mode } => {
                write!(f, "{error}; failure mode {mode}")
            }
            EvidenceRecord::VerdictNotEnforced { verdict } => {
                write!(f, "{verdict} (permissive: not enforced)")
            }
        }
    }
}

/// An owned copy of a record, as [`MemorySink`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvidence {
    /// The plugin's name.
    pub plugin: String,
    /// The request's id.
    pub request_id: u64,
    /// The hook that was running.
    pub phase: Phase,
    /// [`EvidenceRecord::kind`].
    pub kind: String,
    /// Whether the plugin emitted it (`emit_evidence`), or the host.
    pub from_plugin: bool,
    /// The plugin's bytes, or the host record's description.
    pub data: Vec<u8>,
}

/// A sink that keeps everything in memory: for tests, and for trying a
/// plugin locally.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    /// Every record, in order.
    pub records: Vec<RecordedEvidence>,
    /// Every log line: plugin, level, message.
    pub logs: Vec<(String, LogLevel, Vec<u8>)>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// The records of this kind.
    pub fn of_kind<'s>(&'s self, kind: &'s str) -> impl Iterator<Item = &'s RecordedEvidence> {
        self.records.iter().filter(move |r| r.kind == kind)
    }
}

impl EvidenceSink for MemorySink {
    fn record(&mut self, evidence: &Evidence<'_>) {
        let (from_plugin, data) = match evidence.record {
            EvidenceRecord::Plugin { data, .. } => (true, data.to_vec()),
            other => (false, other.to_string().into_bytes()),
        };
        self.records.push(RecordedEvidence {
            plugin: evidence.plugin.to_owned(),
            request_id: evidence.request_id,
            phase: evidence.phase,
            kind: evidence.record.kind().to_owned(),
            from_plugin,
            data,
        });
    }

    fn log(&mut self, plugin: &str, level: LogLevel, message: &[u8]) {
        self.logs.push((plugin.to_owned(), level, message.to_vec()));
    }
}

/// A sink that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EvidenceSink for NullSink {
    fn record(&mut self, _evidence: &Evidence<'_>) {}
}
