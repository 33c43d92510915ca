//! One plugin on one worker: init, the gate hooks, the verdict, destroy.

use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use odock_plugin_abi::sys::{
    ODOCK_VERDICT_BLOCK, ODOCK_VERDICT_CONTINUE, ODOCK_VERDICT_PAUSE, odock_init_args_t,
    odock_instance_t, odock_integration_answer_t, odock_plugin_view_t, odock_verdict_t,
};
use odock_plugin_abi::view::Frame;
use odock_plugin_abi::{AnswerOutcome, Capability, Error, Gate, ResponseMode};

use super::evidence::{Evidence, EvidenceRecord, EvidenceSink, Operation, Phase};
use super::host::{CallSlot, CallState, HOST_API};
use super::output::{
    CallError, Decision, FAIL_CLOSED_REASON, FAIL_CLOSED_STATUS, FollowUp, GateOutput,
    InvalidVerdict, RawVerdict,
};
use super::{FailureMode, Limits, LoadedPlugin};

/// The longest user-visible reason of a block.
const MAX_REASON: usize = 1024;
/// The longest internal detail of a block.
const MAX_DETAIL: usize = 4096;

/// How a plugin is bound on one worker: which worker, its config, its
/// failure mode, its budgets.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The worker the instance serves.
    pub worker_index: u32,
    /// The configuration, already validated by control against the
    /// plugin's schema; shared by the plugin's instances on every worker.
    pub config: Arc<[u8]>,
    /// What a failure means.
    pub failure_mode: FailureMode,
    /// Per-call budgets.
    pub limits: Limits,
}

impl Binding {
    /// A binding with the default [`Limits`].
    pub fn new(
        worker_index: u32,
        config: impl Into<Arc<[u8]>>,
        failure_mode: FailureMode,
    ) -> Binding {
        Binding {
            worker_index,
            config: config.into(),
            failure_mode,
            limits: Limits::default(),
        }
    }
}

/// A plugin's `init` failed on a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitError {
    /// The plugin.
    pub plugin: String,
    /// The worker.
    pub worker_index: u32,
    /// What init returned.
    pub error: Error,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin `{}` on worker {}: init failed: {}",
            self.plugin, self.worker_index, self.error
        )
    }
}

impl std::error::Error for InitError {}

/// The answer to an integration call, for
/// [`PluginInstance::on_integration_answer`].
#[derive(Debug, Clone, Copy)]
pub struct IntegrationAnswer<'a> {
    /// The token of [`IntegrationCall`](super::IntegrationCall).
    pub token: u64,
    /// How the call ended.
    pub outcome: AnswerOutcome,
    /// The integration's answer.
    pub body: &'a [u8],
}

/// One plugin on one worker.
///
/// `Send` (a worker may be handed its instances) but not `Sync`: every call
/// takes `&mut self`, so hooks of one instance never overlap, as the header
/// promises plugins. Dropping it calls the plugin's `destroy`.
pub struct PluginInstance {
    plugin: Arc<LoadedPlugin>,
    mode: FailureMode,
    worker_index: u32,
    /// The plugin's state, from its init (may be NULL).
    state: *mut odock_instance_t,
    /// Allocated in `instantiate`, freed in `Drop`, after `destroy`.
    slot: NonNull<CallSlot>,
    /// Whether init ran and succeeded (not in `Disabled` mode).
    live: bool,
}

// SAFETY: the plugin state and the slot belong to this instance alone and are
// only touched through `&mut self`; the header requires a plugin instance to
// accept calls from a different thread than the last one (never two at once).
unsafe impl Send for PluginInstance {}

impl fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginInstance")
            .field("plugin", &self.plugin.name())
            .field("worker_index", &self.worker_index)
            .field("failure_mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Creates the plugin's instance for one worker: calls its `init` with
    /// the host table, the config and the worker index. In
    /// [`FailureMode::Disabled`] the plugin is not initialized and the
    /// instance never calls it.
    ///
    /// # Errors
    /// [`InitError`] with the status init returned.
    pub fn instantiate(
        self: &Arc<Self>,
        binding: Binding,
        sink: &mut dyn EvidenceSink,
    ) -> Result<PluginInstance, InitError> {
        let slot = Box::new(CallSlot::new(
            Arc::clone(self),
            binding.config,
            binding.limits,
        ));
        let mut instance = PluginInstance {
            plugin: Arc::clone(self),
            mode: binding.failure_mode,
            worker_index: binding.worker_index,
            state: ptr::null_mut(),
            slot: NonNull::from(Box::leak(slot)),
            live: false,
        };
        if binding.failure_mode == FailureMode::Disabled {
            return Ok(instance);
        }
        let init = self.descriptor.init.expect("checked at load");
        // SAFETY: the slot lives until the instance drops.
        let slot = unsafe { instance.slot.as_ref() };
        let args = odock_init_args_t {
            worker_index: binding.worker_index,
            config: odock_plugin_abi::sys::odock_host_view_t::from_slice(&slot.config),
            ..odock_init_args_t::SIZED
        };
        let mut state = CallState {
            phase: Phase::Init,
            request_id: 0,
            body_len: 0,
            out: None,
            sink,
            evidence: 0,
        };
        let mut plugin_state = ptr::null_mut();
        let status = slot.run(&mut state, || {
            // SAFETY: `init` is the plugin's, checked at load; the host
            // table is static, the call handle is this instance's slot, the
            // arguments live on this frame and the config in the slot.
            unsafe { init(&HOST_API.0, slot.handle(), &args, &mut plugin_state) }
        });
        if status == odock_plugin_abi::sys::ODOCK_OK {
            instance.state = plugin_state;
            instance.live = true;
        }
        // A panic in the sink during init unwinds from here; the instance
        // drops on the way and destroys what init created.
        slot.resume_host_panic();
        match Error::check(status) {
            Ok(()) => Ok(instance),
            // Dropping `instance` frees the slot; `live` is false, so
            // destroy is not called for an instance init did not create.
            Err(error) => Err(InitError {
                plugin: self.name().to_owned(),
                worker_index: binding.worker_index,
                error,
            }),
        }
    }
}

impl PluginInstance {
    /// The plugin.
    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }

    /// The binding's failure mode.
    pub fn failure_mode(&self) -> FailureMode {
        self.mode
    }

    /// The worker the instance serves.
    pub fn worker_index(&self) -> u32 {
        self.worker_index
    }

    /// Runs the plugin's hook for `frame.gate` and interprets its verdict
    /// under the failure mode. `out` is cleared first and holds everything
    /// the hook produced. A plugin that does not join the gate, or is
    /// disabled, is not called: [`Decision::Continue`].
    ///
    /// The frame is lent as the plugin's capabilities allow (see the
    /// header): fields it may not read arrive empty.
    ///
    /// # Panics
    /// Only by resuming a panic of `sink` (or of the host) caught during a
    /// host call, after the hook has returned.
    pub fn call_gate(
        &mut self,
        frame: &Frame<'_>,
        out: &mut GateOutput,
        sink: &mut dyn EvidenceSink,
    ) -> Decision {
        out.clear();
        let gate = frame.gate;
        if !self.live || !self.plugin.gates().contains(gate) {
            return Decision::Continue;
        }
        let d = &self.plugin.descriptor;
        let hook = match gate {
            Gate::Request => d.on_request,
            Gate::Response => d.on_response,
            Gate::Complete => d.on_complete,
        }
        .expect("checked at load: a joined gate has its hook");
        let phase = Phase::Gate(gate);
        let mut verdict = odock_verdict_t::SIZED;
        let status = {
            let mut state = CallState {
                phase,
                request_id: frame.request_id,
                body_len: self.body_len(frame),
                out: Some(&mut *out),
                sink: &mut *sink,
                evidence: 0,
            };
            // SAFETY: the slot lives until the instance drops.
            let slot = unsafe { self.slot.as_ref() };
            let instance = self.state;
            let status = self.mask(frame).with_raw(|raw| {
                slot.run(&mut state, || {
                    // SAFETY: the hook is the plugin's, checked at load; the
                    // instance is what its init returned; the frame and the
                    // verdict live on this stack until the hook returns.
                    unsafe { hook(instance, slot.handle(), raw, &mut verdict) }
                })
            });
            slot.resume_host_panic();
            status
        };
        self.settle(phase, frame.request_id, status, &verdict, out, sink)
    }

    /// Resumes a gate that paused: hands the plugin the answer to its
    /// integration call with the same `frame`, and interprets its verdict
    /// like [`PluginInstance::call_gate`]. An instance that cannot call
    /// integrations never pauses; answering one continues without a call.
    ///
    /// # Panics
    /// As [`PluginInstance::call_gate`].
    pub fn on_integration_answer(
        &mut self,
        frame: &Frame<'_>,
        answer: &IntegrationAnswer<'_>,
        out: &mut GateOutput,
        sink: &mut dyn EvidenceSink,
    ) -> Decision {
        out.clear();
        let hook = match self.plugin.descriptor.on_integration_answer {
            Some(hook)
                if self.live
                    && self
                        .plugin
                        .capabilities()
                        .contains(Capability::CallIntegration) =>
            {
                hook
            }
            _ => return Decision::Continue,
        };
        let phase = Phase::IntegrationAnswer(frame.gate);
        let raw_answer = odock_integration_answer_t {
            outcome: answer.outcome as u32,
            token: answer.token,
            body: odock_plugin_abi::sys::odock_host_view_t::from_slice(answer.body),
            ..odock_integration_answer_t::SIZED
        };
        let mut verdict = odock_verdict_t::SIZED;
        let status = {
            let mut state = CallState {
                phase,
                request_id: frame.request_id,
                body_len: self.body_len(frame),
                out: Some(&mut *out),
                sink: &mut *sink,
                evidence: 0,
            };
            // SAFETY: the slot lives until the instance drops.
            let slot = unsafe { self.slot.as_ref() };
            let instance = self.state;
            let status = self.mask(frame).with_raw(|raw| {
                slot.run(&mut state, || {
                    // SAFETY: as in `call_gate`; the answer lives on this
                    // stack until the hook returns.
                    unsafe { hook(instance, slot.handle(), raw, &raw_answer, &mut verdict) }
                })
            });
            slot.resume_host_panic();
            status
        };
        self.settle(phase, frame.request_id, status, &verdict, out, sink)
    }

    /// Runs follow-up work a hook queued, off the hot path.
    ///
    /// # Errors
    /// [`CallError::Failed`] with the status the hook returned (also
    /// recorded as `plugin_error` evidence).
    ///
    /// # Panics
    /// As [`PluginInstance::call_gate`].
    pub fn run_followup(
        &mut self,
        followup: FollowUp<'_>,
        sink: &mut dyn EvidenceSink,
    ) -> Result<(), CallError> {
        let Some(hook) = self.plugin.descriptor.on_followup.filter(|_| self.live) else {
            return Ok(());
        };
        let status = {
            let mut state = CallState {
                phase: Phase::FollowUp,
                request_id: 0,
                body_len: 0,
                out: None,
                sink: &mut *sink,
                evidence: 0,
            };
            // SAFETY: the slot lives until the instance drops.
            let slot = unsafe { self.slot.as_ref() };
            let kind =
                odock_plugin_abi::sys::odock_host_view_t::from_slice(followup.kind.as_bytes());
            let payload = odock_plugin_abi::sys::odock_host_view_t::from_slice(followup.payload);
            let status = slot.run(&mut state, || {
                // SAFETY: the hook is the plugin's, checked at load (it asked
                // for queue_followup); the views live on this frame.
                unsafe { hook(self.state, slot.handle(), kind, payload) }
            });
            slot.resume_host_panic();
            status
        };
        Error::check(status).map_err(|e| {
            let error = CallError::Failed(e);
            self.record_error(sink, Phase::FollowUp, 0, &error);
            error
        })
    }

    /// The frame as the plugin may see it.
    fn mask<'f>(&self, frame: &Frame<'f>) -> Frame<'f> {
        let caps = self.plugin.capabilities();
        let mut f = *frame;
        if !caps.contains(Capability::ReadIdentity) {
            f.identity = None;
        }
        if !caps.contains(Capability::ReadHeaders) {
            f.request.headers = &[];
            if let Some(r) = &mut f.response {
                r.headers = &[];
            }
        }
        if !caps.contains(Capability::ReadRequestBody) {
            f.request.body = &[];
            f.index.messages = &[];
            f.index.tool_arguments = &[];
        }
        if !caps.contains(Capability::ReadResponseBody)
            && let Some(r) = &mut f.response
        {
            r.body = &[];
            r.chunk = &[];
        }
        f
    }

    /// The length of the bytes a range change at this gate applies to.
    fn body_len(&self, frame: &Frame<'_>) -> u64 {
        let len = match (frame.gate, frame.response) {
            (Gate::Request, _) => frame.request.body.len(),
            (Gate::Response, Some(r)) => match self.plugin.response_mode() {
                ResponseMode::WholeBody => r.body.len(),
                ResponseMode::PerChunk => r.chunk.len(),
            },
            _ => 0,
        };
        len as u64
    }

    fn record_error(
        &self,
        sink: &mut dyn EvidenceSink,
        phase: Phase,
        request_id: u64,
        error: &CallError,
    ) {
        sink.record(&Evidence {
            plugin: self.plugin.name(),
            request_id,
            phase,
            record: EvidenceRecord::PluginError {
                error,
                mode: self.mode,
            },
        });
    }

    /// Turns the hook's status and verdict into the decision, under the
    /// failure mode.
    fn settle(
        &self,
        phase: Phase,
        request_id: u64,
        status: u32,
        verdict: &odock_verdict_t,
        out: &mut GateOutput,
        sink: &mut dyn EvidenceSink,
    ) -> Decision {
        let gate = phase.gate().expect("settle runs for gate phases");
        let checked = match Error::check(status) {
            Ok(()) => self.read_verdict(gate, phase, request_id, verdict, out, sink),
            Err(e) => Err(CallError::Failed(e)),
        };
        let decision = match checked {
            Ok(v) => {
                out.verdict = Some(v);
                // Only the call paused on starts; the others are dropped.
                match v {
                    RawVerdict::Pause { token } => out.calls.retain(|c| c.token == token),
                    _ => out.calls.clear(),
                }
                match (self.mode, v) {
                    (_, RawVerdict::Continue) => Decision::Continue,
                    (FailureMode::Permissive | FailureMode::Disabled, _) => {
                        out.calls.clear();
                        if let Some(verdict) = out.verdict() {
                            sink.record(&Evidence {
                                plugin: self.plugin.name(),
                                request_id,
                                phase,
                                record: EvidenceRecord::VerdictNotEnforced { verdict },
                            });
                        }
                        Decision::Continue
                    }
                    (_, RawVerdict::Block { .. }) => {
                        out.block = Some(v);
                        Decision::Block
                    }
                    (_, RawVerdict::Pause { .. }) => Decision::Pause,
                }
            }
            Err(error) => {
                out.discard_effects();
                self.record_error(sink, phase, request_id, &error);
                let decision = if self.mode == FailureMode::Enforce {
                    let reason = out.push_bytes(FAIL_CLOSED_REASON.as_bytes());
                    let plugin = self.plugin.name();
                    let detail = out.push_display(&format_args!("plugin `{plugin}`: {error}"));
                    out.block = Some(RawVerdict::Block {
                        status: FAIL_CLOSED_STATUS,
                        reason,
                        detail,
                        by_plugin: false,
                    });
                    Decision::Block
                } else {
                    Decision::Continue
                };
                out.error = Some(error);
                decision
            }
        };
        out.decision = decision;
        decision
    }

    /// Checks a verdict the hook returned with `ODOCK_OK` and copies its
    /// bytes into `out`.
    fn read_verdict(
        &self,
        gate: Gate,
        phase: Phase,
        request_id: u64,
        v: &odock_verdict_t,
        out: &mut GateOutput,
        sink: &mut dyn EvidenceSink,
    ) -> Result<RawVerdict, CallError> {
        let invalid = |why| Err(CallError::InvalidVerdict(why));
        match v.kind {
            ODOCK_VERDICT_CONTINUE => Ok(RawVerdict::Continue),
            ODOCK_VERDICT_BLOCK => {
                if gate == Gate::Complete {
                    return invalid(InvalidVerdict::NotAtThisGate {
                        verdict: "BLOCK",
                        gate,
                    });
                }
                if !self.plugin.capabilities().contains(Capability::Block) {
                    out.denials += 1;
                    sink.record(&Evidence {
                        plugin: self.plugin.name(),
                        request_id,
                        phase,
                        record: EvidenceRecord::CapabilityDenied {
                            capability: Capability::Block,
                            operation: Operation::BlockVerdict,
                            integration: None,
                        },
                    });
                    return Err(CallError::BlockDenied);
                }
                let status = match u16::try_from(v.http_status) {
                    Ok(s @ 400..=599) => s,
                    _ => return invalid(InvalidVerdict::Status(v.http_status)),
                };
                // SAFETY: the header keeps a verdict's views valid until the
                // next hook on this instance; none has run since.
                let reason = unsafe { verdict_bytes(v.reason, "reason", MAX_REASON) }
                    .map_err(CallError::InvalidVerdict)?;
                if std::str::from_utf8(reason).is_err() {
                    return invalid(InvalidVerdict::ReasonNotUtf8);
                }
                // SAFETY: as for the reason.
                let detail = unsafe { verdict_bytes(v.detail, "detail", MAX_DETAIL) }
                    .map_err(CallError::InvalidVerdict)?;
                Ok(RawVerdict::Block {
                    status,
                    reason: out.push_bytes(reason),
                    detail: out.push_bytes(detail),
                    by_plugin: true,
                })
            }
            ODOCK_VERDICT_PAUSE => {
                if gate != Gate::Request {
                    return invalid(InvalidVerdict::NotAtThisGate {
                        verdict: "PAUSE",
                        gate,
                    });
                }
                let token = v.pause_token;
                if !out.calls.iter().any(|c| c.token == token) {
                    return invalid(InvalidVerdict::UnknownToken(token));
                }
                Ok(RawVerdict::Pause { token })
            }
            other => invalid(InvalidVerdict::UnknownKind(other)),
        }
    }
}

/// Reads a verdict's plugin view of at most `max` bytes.
///
/// # Safety
/// When `len > 0` and `ptr` is not NULL, it points to `len` readable bytes.
unsafe fn verdict_bytes<'v>(
    view: odock_plugin_view_t,
    field: &'static str,
    max: usize,
) -> Result<&'v [u8], InvalidVerdict> {
    if view.len == 0 {
        return Ok(&[]);
    }
    if view.len > max {
        return Err(InvalidVerdict::TooLong {
            field,
            len: view.len,
            max,
        });
    }
    if view.ptr.is_null() {
        return Err(InvalidVerdict::NullView(field));
    }
    // SAFETY: non-NULL, at most `max` bytes, readable by the caller's word.
    Ok(unsafe { std::slice::from_raw_parts(view.ptr, view.len) })
}

impl Drop for PluginInstance {
    fn drop(&mut self) {
        if self.live {
            let destroy = self.plugin.descriptor.destroy.expect("checked at load");
            // SAFETY: init created `state`; no hook runs (we hold `&mut
            // self`), and this is the only call of destroy.
            unsafe { destroy(self.state) };
        }
        // SAFETY: the slot was leaked from a `Box` in `instantiate` and is
        // freed only here; after destroy, the plugin holds no handle that
        // it may still use.
        drop(unsafe { Box::from_raw(self.slot.as_ptr()) });
    }
}
