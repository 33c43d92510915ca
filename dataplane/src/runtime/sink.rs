//! The runtime's evidence sink over an evidence ring: every decision record
//! and every record the plugin host makes goes through the worker's
//! [`EvidenceWriter`] into its ring, for control to drain. Nothing here
//! allocates: text that must be formatted (the request id, an error) is
//! formatted into fixed buffers.

use std::io::Write as _;

use super::runner::{
    CallOutcome, Change, DecisionRecord, FollowUpRecord, FollowUpState, RuntimeSink, SkipRecord,
};
use crate::evidence::{
    self, Attrs, Evidence as Record, EvidenceWriter, Flags, Kind, Names, Payload, Scope,
};
use crate::plugin::{
    Evidence as HostEvidence, EvidenceRecord as HostRecord, EvidenceSink, Verdict as HostVerdict,
};
use crate::ring::RingMemory;

/// A [`RuntimeSink`] writing to one worker's evidence ring. A full ring
/// drops the record; the writer counts it and leaves a gap record before the
/// next one that fits.
pub struct RingSink<M: RingMemory> {
    writer: EvidenceWriter<M>,
}

impl<M: RingMemory> RingSink<M> {
    /// A sink over `writer`.
    pub fn new(writer: EvidenceWriter<M>) -> Self {
        RingSink { writer }
    }

    /// The writer (for its counters).
    pub fn writer(&self) -> &EvidenceWriter<M> {
        &self.writer
    }

    fn write(&mut self, record: &Record<'_>) {
        // Full or too large: the writer counted it (and will leave a gap
        // record); evidence never blocks a frame.
        let _ = self.writer.write(record);
    }
}

/// The request id as decimal text, in a stack buffer.
struct Decimal([u8; 20], usize);

impl Decimal {
    fn of(mut n: u64) -> Decimal {
        let mut buf = [0u8; 20];
        let mut at = buf.len();
        loop {
            at -= 1;
            buf[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal(buf, at)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0[self.1..]).expect("ASCII digits")
    }
}

/// Formats into a fixed buffer, cutting what does not fit.
fn format_into<'b>(buf: &'b mut [u8], args: std::fmt::Arguments<'_>) -> &'b str {
    let len = buf.len();
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = cursor.write_fmt(args);
    let n = (cursor.position() as usize).min(len);
    evidence::text_prefix(&buf[..n]).0
}

impl<M: RingMemory> EvidenceSink for RingSink<M> {
    fn record(&mut self, e: &HostEvidence<'_>) {
        let id = Decimal::of(e.request_id);
        let gate = e
            .phase
            .gate()
            .map_or(evidence::Gate::None, evidence::Gate::from);
        let base = Record {
            gate,
            request_id: id.as_str(),
            plugin: e.plugin,
            ..Record::new(Kind::Plugin)
        };
        match e.record {
            HostRecord::Plugin { kind, data } => {
                self.write(&Record {
                    payload: Payload { kind, data },
                    ..base
                });
            }
            HostRecord::CapabilityDenied {
                capability,
                operation,
                integration,
            } => {
                let integration = integration
                    .map(|i| evidence::text_prefix(i).0)
                    .unwrap_or("");
                let pairs = [
                    (evidence::attr::CAPABILITY, capability.name()),
                    (evidence::attr::OPERATION, operation.name()),
                    (evidence::attr::INTEGRATION, integration),
                ];
                let n = if integration.is_empty() { 2 } else { 3 };
                self.write(&Record {
                    kind: Kind::CapabilityDenied,
                    verdict: evidence::Verdict::Denied,
                    attrs: Attrs::new(&pairs[..n]),
                    ..base
                });
            }
            HostRecord::PluginError { error, mode } => {
                let mut buf = [0u8; 512];
                let detail = format_into(&mut buf, format_args!("{error} (failure mode {mode})"));
                self.write(&Record {
                    kind: Kind::Decision,
                    verdict: evidence::Verdict::Error,
                    detail,
                    ..base
                });
            }
            HostRecord::VerdictNotEnforced { verdict } => {
                let (verdict, status, reason) = match verdict {
                    HostVerdict::Block(b) => (evidence::Verdict::Block, b.status, b.reason),
                    HostVerdict::Pause { .. } => (evidence::Verdict::Pause, 0, ""),
                    HostVerdict::Continue => (evidence::Verdict::Continue, 0, ""),
                };
                self.write(&Record {
                    kind: Kind::Decision,
                    verdict,
                    status,
                    reason,
                    flags: Flags::SHADOW,
                    ..base
                });
            }
        }
    }
}

impl<M: RingMemory> RuntimeSink for RingSink<M> {
    fn decision(&mut self, d: &DecisionRecord<'_>) {
        let id = Decimal::of(d.request_id);
        let enforce = d.failure_mode == crate::plugin::FailureMode::Enforce;
        let (verdict, status, reason, mut flags) = match d.outcome {
            CallOutcome::Continue => (evidence::Verdict::Continue, 0, "", Flags::NONE),
            CallOutcome::Block {
                status,
                reason,
                by_plugin: true,
                ..
            } => (evidence::Verdict::Block, status, reason, Flags::NONE),
            // The plugin failed under enforce: the host blocked for it.
            CallOutcome::Block {
                status,
                reason,
                by_plugin: false,
                ..
            } => (evidence::Verdict::Error, status, reason, Flags::NONE),
            CallOutcome::Pause => (evidence::Verdict::Pause, 0, "", Flags::NONE),
            CallOutcome::FailedOpen => (evidence::Verdict::Error, 0, "", Flags::ERROR_IGNORED),
            CallOutcome::Overran { .. } if enforce => (
                evidence::Verdict::Timeout,
                crate::plugin::FAIL_CLOSED_STATUS,
                crate::plugin::FAIL_CLOSED_REASON,
                Flags::OVER_BUDGET,
            ),
            CallOutcome::Overran { .. } => (
                evidence::Verdict::Timeout,
                0,
                "",
                Flags::OVER_BUDGET | Flags::ERROR_IGNORED,
            ),
        };
        if d.failure_mode == crate::plugin::FailureMode::Permissive {
            flags = flags | Flags::SHADOW;
        }
        if d.invalid_index {
            flags = flags | Flags::INVALID_INDEX;
        }
        let mut names = [""; 16];
        let mut n = 0;
        for change in d.changes.iter().take(names.len()) {
            names[n] = match *change {
                Change::SetHeader(h) | Change::RemoveHeader(h) => evidence::text_prefix(h).0,
                Change::SetMetadata(k) => k,
                Change::BodyRange { .. } => "body",
                Change::BodyField(pointer) => pointer,
            };
            n += 1;
        }
        let mut budget = [0u8; 48];
        let detail = match d.outcome {
            CallOutcome::Overran { budget: b } => {
                format_into(&mut budget, format_args!("overran its budget of {b:?}"))
            }
            CallOutcome::Block { detail, .. } => evidence::text_prefix(detail).0,
            _ => "",
        };
        self.write(&Record {
            kind: Kind::Decision,
            gate: d.gate.into(),
            verdict,
            flags,
            status,
            plugin_id: d.binding,
            duration_ns: d.duration.as_nanos() as u64,
            count: d.policy_version,
            request_id: id.as_str(),
            plugin: d.plugin,
            scope: Scope {
                tenant: d.scope.tenant.unwrap_or(""),
                virtual_key: d.scope.virtual_key.unwrap_or(""),
                environment: d.scope.environment.unwrap_or(""),
                model: d.scope.model.unwrap_or(""),
                mcp_server: d.scope.mcp_server.unwrap_or(""),
                tool: d.scope.mcp_tool.unwrap_or(""),
            },
            reason,
            detail,
            changed: Names::new(&names[..n]),
            ..Record::new(Kind::Decision)
        });
    }

    fn skip(&mut self, skip: &SkipRecord<'_>) {
        let id = Decimal::of(skip.request_id);
        let pairs = [(evidence::attr::CAUSE, skip.cause)];
        self.write(&Record {
            gate: skip.gate.into(),
            verdict: evidence::Verdict::Skip,
            plugin_id: skip.binding,
            count: skip.count,
            request_id: id.as_str(),
            plugin: skip.plugin,
            attrs: Attrs::new(&pairs),
            ..Record::new(Kind::Skip)
        });
    }

    fn follow_up(&mut self, r: &FollowUpRecord<'_>) {
        let id = Decimal::of(r.request_id);
        let pairs = [(evidence::attr::FOLLOWUP, r.kind)];
        let verdict = match r.state {
            FollowUpState::Queued => evidence::Verdict::Queued,
            FollowUpState::Retried => evidence::Verdict::Retried,
            FollowUpState::Failed => evidence::Verdict::Failed,
            FollowUpState::Delivered => evidence::Verdict::Delivered,
        };
        self.write(&Record {
            verdict,
            plugin_id: r.binding,
            count: u64::from(r.attempts),
            request_id: id.as_str(),
            plugin: r.plugin,
            detail: r.detail,
            attrs: Attrs::new(&pairs),
            ..Record::new(Kind::FollowUp)
        });
    }
}
