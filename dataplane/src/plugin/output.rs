//! What one hook produced: the decision, the verdict behind it, and the
//! changes the caller applies. Reused across calls so a steady state
//! allocates nothing.

use std::fmt;
use std::ops::Range;

use odock_plugin_abi::{Error, Gate};

/// What the caller must do after a hook, once the failure mode has spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go on: the next plugin, then the upstream or the caller. Apply
    /// [`GateOutput::transforms`].
    Continue,
    /// Answer the caller with [`GateOutput::block`]; later plugins do not
    /// run.
    Block,
    /// Start [`GateOutput::integration_call`] and, when it answers, call
    /// [`PluginInstance::on_integration_answer`](super::PluginInstance::on_integration_answer).
    Pause,
}

/// A verdict the plugin returned, checked against the header's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'o> {
    /// Go on.
    Continue,
    /// Stop and answer the caller.
    Block(Block<'o>),
    /// Wait for the integration call of this token.
    Pause {
        /// The token `call_integration` returned.
        token: u64,
    },
}

impl fmt::Display for Verdict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Continue => f.write_str("continue"),
            Verdict::Block(b) => write!(f, "block {}: {}", b.status, b.reason),
            Verdict::Pause { token } => write!(f, "pause on integration call {token}"),
        }
    }
}

/// A block: what the caller receives, and the detail kept apart for
/// evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block<'o> {
    /// The HTTP status, 400 to 599.
    pub status: u16,
    /// The user-visible reason.
    pub reason: &'o str,
    /// The internal detail: evidence only, never to the caller.
    pub detail: &'o [u8],
    /// `true` when the plugin blocked; `false` when the host blocked because
    /// the plugin failed under [`FailureMode::Enforce`](super::FailureMode::Enforce).
    pub by_plugin: bool,
}

/// The status of a block the host makes when an enforced plugin fails.
pub const FAIL_CLOSED_STATUS: u16 = 503;
/// The reason of that block. It says nothing of the plugin's internals.
pub const FAIL_CLOSED_REASON: &str = "the request could not pass a required policy check";

/// Why a hook produced no usable verdict. The failure mode decides what
/// happens next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The hook returned an error status (`ODOCK_ERR_PANICKED` for a caught
    /// panic).
    Failed(Error),
    /// The hook returned `ODOCK_OK` with a verdict that breaks the header's
    /// rules.
    InvalidVerdict(InvalidVerdict),
    /// The hook returned BLOCK without the `block` capability.
    BlockDenied,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Failed(e) => write!(f, "the hook failed: {e}"),
            CallError::InvalidVerdict(v) => write!(f, "malformed verdict: {v}"),
            CallError::BlockDenied => {
                f.write_str("the hook returned BLOCK without the block capability")
            }
        }
    }
}

impl std::error::Error for CallError {}

/// How a verdict broke the header's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidVerdict {
    /// `kind` is none of `ODOCK_VERDICT_*`.
    UnknownKind(u32),
    /// A BLOCK's `http_status` is outside 400 to 599.
    Status(u32),
    /// A view with `len > 0` and a NULL pointer.
    NullView(&'static str),
    /// The reason is not UTF-8.
    ReasonNotUtf8,
    /// The reason or detail is longer than the header allows.
    TooLong {
        /// `reason` or `detail`.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// BLOCK or PAUSE where the gate allows only less.
    NotAtThisGate {
        /// `BLOCK` or `PAUSE`.
        verdict: &'static str,
        /// The gate.
        gate: Gate,
    },
    /// PAUSE with a token this hook did not obtain from `call_integration`.
    UnknownToken(u64),
}

impl fmt::Display for InvalidVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidVerdict::UnknownKind(k) => write!(f, "kind {k} is not a verdict (0, 1 or 2)"),
            InvalidVerdict::Status(s) => write!(f, "http_status {s} is outside 400..=599"),
            InvalidVerdict::NullView(field) => write!(f, "{field} has a length but no pointer"),
            InvalidVerdict::ReasonNotUtf8 => f.write_str("reason is not UTF-8"),
            InvalidVerdict::TooLong { field, len, max } => {
                write!(f, "{field} is {len} bytes, more than {max}")
            }
            InvalidVerdict::NotAtThisGate { verdict, gate } => {
                write!(f, "{verdict} is not allowed at the {gate} gate")
            }
            InvalidVerdict::UnknownToken(t) => write!(
                f,
                "PAUSE on token {t}, which this hook did not get from call_integration"
            ),
        }
    }
}

/// A change the plugin asked for, to apply after the hook (copy-on-write:
/// the frame's bytes are untouched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform<'o> {
    /// Set this header, replacing any of the same name.
    SetHeader {
        /// The name (an HTTP token).
        name: &'o [u8],
        /// The value (no CR, LF or NUL).
        value: &'o [u8],
    },
    /// Remove every header of this name.
    RemoveHeader {
        /// The name.
        name: &'o [u8],
    },
    /// Set a request-scoped metadata entry.
    SetMetadata {
        /// The key (UTF-8).
        key: &'o str,
        /// The value.
        value: &'o [u8],
    },
    /// Replace `len` bytes at `offset` of the body (or chunk) with `bytes`.
    ReplaceBodyRange {
        /// Offset in the original bytes.
        offset: u64,
        /// How many bytes to replace.
        len: u64,
        /// The new bytes.
        bytes: &'o [u8],
    },
    /// Replace the JSON value at `pointer` with the JSON text `value`.
    ReplaceBodyField {
        /// An RFC 6901 JSON pointer.
        pointer: &'o str,
        /// A JSON text.
        value: &'o [u8],
    },
}

/// An integration call to start before resuming a paused gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntegrationCall<'o> {
    /// The token to hand back with the answer.
    pub token: u64,
    /// The integration's name (granted).
    pub name: &'o str,
    /// What to send it.
    pub payload: &'o [u8],
    /// How long to wait, in milliseconds (at least 1).
    pub timeout_ms: u32,
}

/// Work to run later through
/// [`PluginInstance::run_followup`](super::PluginInstance::run_followup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowUp<'o> {
    /// The plugin's kind of work (UTF-8).
    pub kind: &'o str,
    /// Its payload.
    pub payload: &'o [u8],
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum RawTransform {
    SetHeader(Span, Span),
    RemoveHeader(Span),
    SetMetadata(Span, Span),
    ReplaceBodyRange { offset: u64, len: u64, bytes: Span },
    ReplaceBodyField(Span, Span),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct RawCall {
    pub token: u64,
    pub name: Span,
    pub payload: Span,
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum RawVerdict {
    Continue,
    Block {
        status: u16,
        reason: Span,
        detail: Span,
        by_plugin: bool,
    },
    Pause {
        token: u64,
    },
}

/// A byte range of the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: usize,
    len: usize,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start..self.start + self.len
    }
}

/// What one hook produced. Pass the same value to every call on a worker:
/// it is cleared at the start of each call and keeps its capacity, so a
/// steady state allocates nothing.
#[derive(Debug)]
pub struct GateOutput {
    /// Copy-on-write bytes: transform values, verdict reason and detail.
    arena: Vec<u8>,
    pub(crate) transforms: Vec<RawTransform>,
    pub(crate) calls: Vec<RawCall>,
    pub(crate) followups: Vec<(Span, Span)>,
    pub(crate) verdict: Option<RawVerdict>,
    pub(crate) error: Option<CallError>,
    pub(crate) decision: Decision,
    pub(crate) block: Option<RawVerdict>,
    pub(crate) denials: u32,
    pub(crate) evidence: u32,
}

impl Default for GateOutput {
    fn default() -> Self {
        GateOutput::new()
    }
}

impl GateOutput {
    /// An empty output.
    pub fn new() -> GateOutput {
        GateOutput::with_capacity(4096, 16)
    }

    /// An empty output with room for `bytes` of changes and `transforms`
    /// changes before it grows.
    pub fn with_capacity(bytes: usize, transforms: usize) -> GateOutput {
        GateOutput {
            arena: Vec::with_capacity(bytes),
            transforms: Vec::with_capacity(transforms),
            calls: Vec::with_capacity(2),
            followups: Vec::with_capacity(4),
            verdict: None,
            error: None,
            decision: Decision::Continue,
            block: None,
            denials: 0,
            evidence: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.arena.clear();
        self.transforms.clear();
        self.calls.clear();
        self.followups.clear();
        self.verdict = None;
        self.error = None;
        self.decision = Decision::Continue;
        self.block = None;
        self.denials = 0;
        self.evidence = 0;
    }

    /// Drops the changes a failed or unenforced hook asked for.
    pub(crate) fn discard_effects(&mut self) {
        self.transforms.clear();
        self.calls.clear();
        self.followups.clear();
    }

    pub(crate) fn arena_len(&self) -> usize {
        self.arena.len()
    }

    /// Copies `bytes` into the arena.
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) -> Span {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        Span {
            start,
            len: bytes.len(),
        }
    }

    /// Writes `value`'s Display into the arena.
    pub(crate) fn push_display(&mut self, value: &dyn fmt::Display) -> Span {
        use std::io::Write as _;
        let start = self.arena.len();
        // Writing to a Vec cannot fail.
        let _ = write!(self.arena, "{value}");
        Span {
            start,
            len: self.arena.len() - start,
        }
    }

    fn bytes(&self, span: Span) -> &[u8] {
        &self.arena[span.range()]
    }

    fn text(&self, span: Span) -> &str {
        // Spans that are read as text were checked as UTF-8 when copied in.
        std::str::from_utf8(self.bytes(span)).unwrap_or("")
    }

    fn view(&self, raw: RawVerdict) -> Verdict<'_> {
        match raw {
            RawVerdict::Continue => Verdict::Continue,
            RawVerdict::Block {
                status,
                reason,
                detail,
                by_plugin,
            } => Verdict::Block(Block {
                status,
                reason: self.text(reason),
                detail: self.bytes(detail),
                by_plugin,
            }),
            RawVerdict::Pause { token } => Verdict::Pause { token },
        }
    }

    /// What the caller must do.
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// The plugin's verdict, when it returned a valid one (whether or not
    /// the failure mode enforced it).
    pub fn verdict(&self) -> Option<Verdict<'_>> {
        self.verdict.map(|v| self.view(v))
    }

    /// Why the hook produced no valid verdict, if it did not.
    pub fn error(&self) -> Option<&CallError> {
        self.error.as_ref()
    }

    /// The block to answer the caller with, when [`GateOutput::decision`] is
    /// [`Decision::Block`].
    pub fn block(&self) -> Option<Block<'_>> {
        match self.block.map(|b| self.view(b)) {
            Some(Verdict::Block(b)) => Some(b),
            _ => None,
        }
    }

    /// The changes to apply, in the order the plugin asked for them. Empty
    /// when the hook failed.
    pub fn transforms(&self) -> impl ExactSizeIterator<Item = Transform<'_>> + '_ {
        self.transforms.iter().map(|t| match *t {
            RawTransform::SetHeader(n, v) => Transform::SetHeader {
                name: self.bytes(n),
                value: self.bytes(v),
            },
            RawTransform::RemoveHeader(n) => Transform::RemoveHeader {
                name: self.bytes(n),
            },
            RawTransform::SetMetadata(k, v) => Transform::SetMetadata {
                key: self.text(k),
                value: self.bytes(v),
            },
            RawTransform::ReplaceBodyRange { offset, len, bytes } => Transform::ReplaceBodyRange {
                offset,
                len,
                bytes: self.bytes(bytes),
            },
            RawTransform::ReplaceBodyField(p, v) => Transform::ReplaceBodyField {
                pointer: self.text(p),
                value: self.bytes(v),
            },
        })
    }

    /// The integration call to start, when the decision is
    /// [`Decision::Pause`].
    pub fn integration_call(&self) -> Option<IntegrationCall<'_>> {
        if self.decision != Decision::Pause {
            return None;
        }
        self.calls.first().map(|c| IntegrationCall {
            token: c.token,
            name: self.text(c.name),
            payload: self.bytes(c.payload),
            timeout_ms: c.timeout_ms,
        })
    }

    /// The follow-up work the hook queued. Empty when the hook failed.
    pub fn followups(&self) -> impl ExactSizeIterator<Item = FollowUp<'_>> + '_ {
        self.followups.iter().map(|&(k, p)| FollowUp {
            kind: self.text(k),
            payload: self.bytes(p),
        })
    }

    /// How many host calls were denied during the hook.
    pub fn denials(&self) -> u32 {
        self.denials
    }

    /// How many evidence records the plugin emitted during the hook.
    pub fn evidence_count(&self) -> u32 {
        self.evidence
    }
}
