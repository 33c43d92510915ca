//! The host table: the calls a plugin makes into the host, and the call
//! slot that ties each one to the hook being run.
//!
//! # The call slot
//!
//! Each [`PluginInstance`](super::PluginInstance) allocates one [`CallSlot`]
//! at init; its address is the `odock_call_t *` every hook of the instance
//! receives. While a hook runs, `active` points to a [`CallState`] on the
//! caller's stack (the phase, the request, the output, the sink); before
//! and after, it is NULL, so a plugin that keeps the handle and calls the
//! host later gets `ODOCK_ERR_WRONG_GATE` instead of touching a dead stack
//! frame. The slot is only touched from the thread running the hook: the
//! header forbids host calls from other threads, and the instance is
//! `!Sync`.
//!
//! # Panics
//!
//! Every host call runs under `catch_unwind`: a panic (in the sink, or a
//! bug here) must not unwind into the plugin's frames. The payload is
//! parked in the slot, the call returns `ODOCK_ERR_HOST_INTERNAL`, and
//! [`CallSlot::resume_host_panic`] resumes the panic once the hook has
//! returned.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::ptr;
use std::sync::Arc;

use odock_plugin_abi::sys::{
    ODOCK_PLUGIN_ABI_MAJOR, ODOCK_PLUGIN_ABI_MINOR, odock_call_t, odock_host_api_t,
    odock_host_view_t, odock_plugin_view_t, odock_status_t,
};
use odock_plugin_abi::{Capability, Error, Gate, LogLevel, ResponseMode};

use super::evidence::{Evidence, EvidenceRecord, EvidenceSink, Operation, Phase};
use super::output::{GateOutput, RawCall, RawTransform};
use super::{Limits, LoadedPlugin};

/// The longest evidence or follow-up kind.
const MAX_KIND: usize = 64;
/// The longest metadata key.
const MAX_METADATA_KEY: usize = 128;

/// One instance's handle for its hooks (see the module docs).
pub(crate) struct CallSlot {
    pub(crate) plugin: Arc<LoadedPlugin>,
    pub(crate) config: Arc<[u8]>,
    pub(crate) limits: Limits,
    /// `*mut CallState<'_>` while a hook runs, NULL otherwise.
    active: Cell<*mut ()>,
    /// The next integration call's token; starts at 1.
    next_token: Cell<u64>,
    /// A panic caught in a host call, to resume after the hook.
    host_panic: Cell<Option<Box<dyn Any + Send>>>,
}

/// What host calls need during one hook. Lives on the caller's stack.
pub(crate) struct CallState<'a> {
    pub(crate) phase: Phase,
    pub(crate) request_id: u64,
    /// Length of the body (or chunk) range changes apply to.
    pub(crate) body_len: u64,
    /// `None` in init and follow-ups, which produce no output.
    pub(crate) out: Option<&'a mut GateOutput>,
    pub(crate) sink: &'a mut dyn EvidenceSink,
    pub(crate) evidence: u32,
}

impl CallSlot {
    pub(crate) fn new(plugin: Arc<LoadedPlugin>, config: Arc<[u8]>, limits: Limits) -> CallSlot {
        CallSlot {
            plugin,
            config,
            limits,
            active: Cell::new(ptr::null_mut()),
            next_token: Cell::new(1),
            host_panic: Cell::new(None),
        }
    }

    /// The `odock_call_t *` of this slot.
    pub(crate) fn handle(&self) -> *mut odock_call_t {
        ptr::from_ref(self).cast_mut().cast()
    }

    /// Runs `hook` (a call into the plugin with [`CallSlot::handle`]) with
    /// `state` reachable by host calls. A host panic caught meanwhile waits
    /// for [`CallSlot::resume_host_panic`].
    pub(crate) fn run<R>(&self, state: &mut CallState<'_>, hook: impl FnOnce() -> R) -> R {
        self.active.set(ptr::from_mut(state).cast());
        let result = hook();
        self.active.set(ptr::null_mut());
        result
    }

    /// Resumes a panic caught in a host call of the last hook, if any: call
    /// it once the hook's results are in safe hands (an init's instance
    /// recorded, so that it will be destroyed).
    pub(crate) fn resume_host_panic(&self) {
        if let Some(payload) = self.host_panic.take() {
            resume_unwind(payload);
        }
    }

    /// Records a `capability_denied` and counts it; returns `Denied`.
    pub(crate) fn deny(
        &self,
        state: &mut CallState<'_>,
        capability: Capability,
        operation: Operation,
        integration: Option<&[u8]>,
    ) -> Error {
        state.sink.record(&Evidence {
            plugin: self.plugin.name(),
            request_id: state.request_id,
            phase: state.phase,
            record: EvidenceRecord::CapabilityDenied {
                capability,
                operation,
                integration,
            },
        });
        if let Some(out) = state.out.as_deref_mut() {
            out.denials += 1;
        }
        Error::Denied
    }
}

/// The host table handed to every plugin's init.
#[repr(transparent)]
pub(crate) struct HostApi(pub(crate) odock_host_api_t);

// SAFETY: the table holds only function pointers and integers, written once
// at compile time and never again.
unsafe impl Sync for HostApi {}

pub(crate) static HOST_API: HostApi = HostApi(odock_host_api_t {
    size: size_of::<odock_host_api_t>() as u32,
    abi_major: ODOCK_PLUGIN_ABI_MAJOR,
    abi_minor: ODOCK_PLUGIN_ABI_MINOR,
    log: Some(log),
    read_config: Some(read_config),
    set_header: Some(set_header),
    remove_header: Some(remove_header),
    set_metadata: Some(set_metadata),
    replace_body_range: Some(replace_body_range),
    replace_body_field: Some(replace_body_field),
    emit_evidence: Some(emit_evidence),
    call_integration: Some(call_integration),
    queue_followup: Some(queue_followup),
});

/// One host call in progress.
struct Cx<'s, 'st, 'a> {
    slot: &'s CallSlot,
    state: &'st mut CallState<'a>,
    op: Operation,
}

impl Cx<'_, '_, '_> {
    /// `Denied` (with its evidence) unless the plugin may use `cap`.
    fn require(&mut self, cap: Capability) -> Result<(), Error> {
        if self.slot.plugin.capabilities().contains(cap) {
            Ok(())
        } else {
            Err(self.slot.deny(self.state, cap, self.op, None))
        }
    }

    /// The gate whose rules apply, if it is one of `allowed`.
    fn gate_in(&self, allowed: &[Gate]) -> Result<Gate, Error> {
        match self.state.phase.gate() {
            Some(g) if allowed.contains(&g) => Ok(g),
            _ => Err(Error::WrongGate),
        }
    }

    fn out(&mut self) -> Result<&mut GateOutput, Error> {
        self.state.out.as_deref_mut().ok_or(Error::WrongGate)
    }

    /// `LimitExceeded` when `more` bytes would overflow the output budget.
    fn budget(&mut self, more: usize) -> Result<&mut GateOutput, Error> {
        let max = self.slot.limits.max_output_bytes;
        let out = self.out()?;
        if out.arena_len().saturating_add(more) > max {
            return Err(Error::LimitExceeded);
        }
        Ok(out)
    }

    fn push_transform(
        &mut self,
        make: impl FnOnce(&mut GateOutput) -> RawTransform,
        bytes: usize,
    ) -> Result<(), Error> {
        let max = self.slot.limits.max_transforms;
        let out = self.budget(bytes)?;
        if out.transforms.len() >= max {
            return Err(Error::LimitExceeded);
        }
        let t = make(out);
        out.transforms.push(t);
        Ok(())
    }

    /// The write-body capability of the gate being run.
    fn body_gate(&mut self) -> Result<Gate, Error> {
        match self.state.phase.gate() {
            Some(Gate::Request) => self
                .require(Capability::WriteRequestBody)
                .map(|()| Gate::Request),
            Some(Gate::Response) => self
                .require(Capability::WriteResponseBody)
                .map(|()| Gate::Response),
            _ => Err(Error::WrongGate),
        }
    }
}

/// Serves one host call: finds the slot and its active hook, runs `f`
/// under `catch_unwind`, returns its status.
fn serve(
    call: *mut odock_call_t,
    op: Operation,
    f: impl FnOnce(&mut Cx<'_, '_, '_>) -> Result<(), Error>,
) -> odock_status_t {
    // SAFETY: a plugin passes back the handle its hook received: a live
    // `CallSlot` (the instance frees it only after destroy) or NULL.
    let Some(slot) = (unsafe { call.cast::<CallSlot>().as_ref() }) else {
        return Error::InvalidArgument.code();
    };
    let state = slot.active.get();
    if state.is_null() {
        return Error::WrongGate.code();
    }
    // SAFETY: `active` is non-NULL only inside `CallSlot::run`, where it
    // points to the `CallState` that `run` borrows mutably and does not
    // touch until the hook returns; host calls run one at a time on the
    // hook's thread, so this is the only reference.
    let state = unsafe { &mut *state.cast::<CallState<'_>>() };
    let mut cx = Cx { slot, state, op };
    match catch_unwind(AssertUnwindSafe(|| f(&mut cx))) {
        Ok(result) => Error::status(result),
        Err(payload) => {
            // Keep the first panic; a later one is a consequence.
            let first = slot.host_panic.take().unwrap_or(payload);
            slot.host_panic.set(Some(first));
            Error::HostInternal.code()
        }
    }
}

/// Reads a plugin's view.
///
/// # Safety
/// When `len > 0` and `ptr` is not NULL, `ptr` points to `len` bytes that
/// stay valid during the host call (the header's rule for plugin views).
unsafe fn bytes<'v>(view: odock_plugin_view_t) -> Result<&'v [u8], Error> {
    if view.len == 0 {
        return Ok(&[]);
    }
    if view.ptr.is_null() || view.len > isize::MAX as usize {
        return Err(Error::InvalidArgument);
    }
    // SAFETY: non-NULL, bounded, valid by the caller's word.
    Ok(unsafe { std::slice::from_raw_parts(view.ptr, view.len) })
}

/// Reads a plugin's view as UTF-8 of `1..=max` bytes.
///
/// # Safety
/// As for [`bytes`].
unsafe fn text<'v>(view: odock_plugin_view_t, max: usize) -> Result<&'v str, Error> {
    // SAFETY: forwarded.
    let b = unsafe { bytes(view) }?;
    if b.is_empty() || b.len() > max {
        return Err(Error::InvalidArgument);
    }
    std::str::from_utf8(b).map_err(|_| Error::InvalidArgument)
}

/// An HTTP token (RFC 9110 `tchar`s), not empty.
fn is_token(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_value(value: &[u8]) -> bool {
    !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

unsafe extern "C" fn log(
    call: *mut odock_call_t,
    level: u32,
    message: odock_plugin_view_t,
) -> odock_status_t {
    serve(call, Operation::Log, |cx| {
        let level = LogLevel::from_raw(level).ok_or(Error::InvalidArgument)?;
        // SAFETY: a plugin view, valid during this call.
        let message = unsafe { bytes(message) }?;
        cx.state.sink.log(cx.slot.plugin.name(), level, message);
        Ok(())
    })
}

unsafe extern "C" fn read_config(
    call: *mut odock_call_t,
    out_config: *mut odock_host_view_t,
) -> odock_status_t {
    serve(call, Operation::ReadConfig, |cx| {
        if out_config.is_null() || !out_config.is_aligned() {
            return Err(Error::InvalidArgument);
        }
        // SAFETY: non-NULL and aligned; the plugin lends it for this write.
        // The view points into the slot's config, alive until destroy.
        unsafe { out_config.write(odock_host_view_t::from_slice(&cx.slot.config)) };
        Ok(())
    })
}

unsafe extern "C" fn set_header(
    call: *mut odock_call_t,
    name: odock_plugin_view_t,
    value: odock_plugin_view_t,
) -> odock_status_t {
    serve(call, Operation::SetHeader, |cx| {
        cx.require(Capability::WriteHeaders)?;
        cx.gate_in(&[Gate::Request, Gate::Response])?;
        // SAFETY: plugin views, valid during this call.
        let (name, value) = unsafe { (bytes(name)?, bytes(value)?) };
        if !is_token(name) || !is_header_value(value) {
            return Err(Error::InvalidArgument);
        }
        cx.push_transform(
            |out| RawTransform::SetHeader(out.push_bytes(name), out.push_bytes(value)),
            name.len() + value.len(),
        )
    })
}

unsafe extern "C" fn remove_header(
    call: *mut odock_call_t,
    name: odock_plugin_view_t,
) -> odock_status_t {
    serve(call, Operation::RemoveHeader, |cx| {
        cx.require(Capability::WriteHeaders)?;
        cx.gate_in(&[Gate::Request, Gate::Response])?;
        // SAFETY: a plugin view, valid during this call.
        let name = unsafe { bytes(name) }?;
        if !is_token(name) {
            return Err(Error::InvalidArgument);
        }
        cx.push_transform(
            |out| RawTransform::RemoveHeader(out.push_bytes(name)),
            name.len(),
        )
    })
}

unsafe extern "C" fn set_metadata(
    call: *mut odock_call_t,
    key: odock_plugin_view_t,
    value: odock_plugin_view_t,
) -> odock_status_t {
    serve(call, Operation::SetMetadata, |cx| {
        cx.require(Capability::WriteHeaders)?;
        cx.gate_in(&[Gate::Request, Gate::Response])?;
        // SAFETY: plugin views, valid during this call.
        let (key, value) = unsafe { (text(key, MAX_METADATA_KEY)?, bytes(value)?) };
        cx.push_transform(
            |out| RawTransform::SetMetadata(out.push_bytes(key.as_bytes()), out.push_bytes(value)),
            key.len() + value.len(),
        )
    })
}

unsafe extern "C" fn replace_body_range(
    call: *mut odock_call_t,
    offset: u64,
    length: u64,
    with: odock_plugin_view_t,
) -> odock_status_t {
    serve(call, Operation::ReplaceBodyRange, |cx| {
        cx.body_gate()?;
        // SAFETY: a plugin view, valid during this call.
        let with = unsafe { bytes(with) }?;
        let end = offset.checked_add(length).ok_or(Error::OutOfRange)?;
        if end > cx.state.body_len {
            return Err(Error::OutOfRange);
        }
        let overlaps = cx.out()?.transforms.iter().any(|t| match *t {
            RawTransform::ReplaceBodyRange { offset: o, len, .. } => {
                offset < o + len && o < end || (length == 0 && len == 0 && o == offset)
            }
            _ => false,
        });
        if overlaps {
            return Err(Error::InvalidArgument);
        }
        cx.push_transform(
            |out| RawTransform::ReplaceBodyRange {
                offset,
                len: length,
                bytes: out.push_bytes(with),
            },
            with.len(),
        )
    })
}

unsafe extern "C" fn replace_body_field(
    call: *mut odock_call_t,
    pointer: odock_plugin_view_t,
    value: odock_plugin_view_t,
) -> odock_status_t {
    serve(call, Operation::ReplaceBodyField, |cx| {
        let gate = cx.body_gate()?;
        if gate == Gate::Response && cx.slot.plugin.response_mode() == ResponseMode::PerChunk {
            return Err(Error::Unsupported);
        }
        // SAFETY: plugin views, valid during this call.
        let (pointer, value) = unsafe { (bytes(pointer)?, text(value, usize::MAX)?) };
        let pointer = std::str::from_utf8(pointer).map_err(|_| Error::InvalidArgument)?;
        if !(pointer.is_empty() || pointer.starts_with('/')) {
            return Err(Error::InvalidArgument);
        }
        cx.push_transform(
            |out| {
                RawTransform::ReplaceBodyField(
                    out.push_bytes(pointer.as_bytes()),
                    out.push_bytes(value.as_bytes()),
                )
            },
            pointer.len() + value.len(),
        )
    })
}

unsafe extern "C" fn emit_evidence(
    call: *mut odock_call_t,
    kind: odock_plugin_view_t,
    data: odock_plugin_view_t,
) -> odock_status_t {
    serve(call, Operation::EmitEvidence, |cx| {
        cx.require(Capability::EmitEvidence)?;
        if cx.state.phase == Phase::Init {
            return Err(Error::WrongGate);
        }
        // SAFETY: plugin views, valid during this call.
        let (kind, data) = unsafe { (text(kind, MAX_KIND)?, bytes(data)?) };
        if data.len() > cx.slot.limits.max_evidence_bytes
            || cx.state.evidence >= cx.slot.limits.max_evidence_records
        {
            return Err(Error::LimitExceeded);
        }
        cx.state.evidence += 1;
        if let Some(out) = cx.state.out.as_deref_mut() {
            out.evidence += 1;
        }
        cx.state.sink.record(&Evidence {
            plugin: cx.slot.plugin.name(),
            request_id: cx.state.request_id,
            phase: cx.state.phase,
            record: EvidenceRecord::Plugin { kind, data },
        });
        Ok(())
    })
}

unsafe extern "C" fn call_integration(
    call: *mut odock_call_t,
    name: odock_plugin_view_t,
    payload: odock_plugin_view_t,
    timeout_ms: u32,
    out_token: *mut u64,
) -> odock_status_t {
    serve(call, Operation::CallIntegration, |cx| {
        cx.require(Capability::CallIntegration)?;
        // SAFETY: plugin views, valid during this call.
        let (name, payload) = unsafe { (bytes(name)?, bytes(payload)?) };
        let plugin = &cx.slot.plugin;
        if !plugin.integrations().iter().any(|n| n.as_bytes() == name) {
            return Err(cx.slot.deny(
                cx.state,
                Capability::CallIntegration,
                Operation::CallIntegration,
                Some(name),
            ));
        }
        cx.gate_in(&[Gate::Request])?;
        if timeout_ms == 0 || out_token.is_null() || !out_token.is_aligned() {
            return Err(Error::InvalidArgument);
        }
        let max = cx.slot.limits.max_integration_calls;
        let out = cx.budget(name.len() + payload.len())?;
        if out.calls.len() >= max {
            return Err(Error::LimitExceeded);
        }
        let token = cx.slot.next_token.get();
        cx.slot.next_token.set(token + 1);
        let out = cx.out()?;
        let call = RawCall {
            token,
            name: out.push_bytes(name),
            payload: out.push_bytes(payload),
            timeout_ms,
        };
        out.calls.push(call);
        // SAFETY: non-NULL and aligned; the plugin lends it for this write.
        unsafe { out_token.write(token) };
        Ok(())
    })
}

unsafe extern "C" fn queue_followup(
    call: *mut odock_call_t,
    kind: odock_plugin_view_t,
    payload: odock_plugin_view_t,
) -> odock_status_t {
    serve(call, Operation::QueueFollowup, |cx| {
        cx.require(Capability::QueueFollowup)?;
        cx.gate_in(&Gate::ALL)?;
        // SAFETY: plugin views, valid during this call.
        let (kind, payload) = unsafe { (text(kind, MAX_KIND)?, bytes(payload)?) };
        let max = cx.slot.limits.max_followups;
        let out = cx.budget(kind.len() + payload.len())?;
        if out.followups.len() >= max {
            return Err(Error::LimitExceeded);
        }
        let followup = (out.push_bytes(kind.as_bytes()), out.push_bytes(payload));
        out.followups.push(followup);
        Ok(())
    })
}
