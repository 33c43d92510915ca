//! The `extern "C"` hooks the SDK generates for a plugin type, and the
//! descriptor they are gathered in. This is the SDK's only unsafe code:
//! each hook checks what the host handed over, catches every panic, and
//! turns `Result`s into status codes.

use core::marker::PhantomData;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::host::{Host, InitContext, PendingCall};
use super::{Answer, CompleteGate, Plugin, RequestGate, ResponseGate, Verdict};
use crate::sys::{
    ODOCK_GATE_COMPLETE, ODOCK_GATE_REQUEST, ODOCK_GATE_RESPONSE, ODOCK_PLUGIN_ABI_MAJOR,
    ODOCK_PLUGIN_ABI_MINOR, ODOCK_VERDICT_BLOCK, ODOCK_VERDICT_CONTINUE, ODOCK_VERDICT_PAUSE,
    Versioned, odock_call_t, odock_frame_t, odock_host_api_t, odock_host_view_t, odock_init_args_t,
    odock_instance_t, odock_integration_answer_t, odock_plugin_descriptor_t, odock_plugin_view_t,
    odock_status_t, odock_verdict_t,
};
use crate::view::{Frame, host_bytes, part};
use crate::{AnswerOutcome, Error, LogLevel};

/// What the SDK keeps per instance behind the `odock_instance_t *`.
struct Instance<P> {
    plugin: P,
    /// The host table from init, valid until destroy.
    api: *const odock_host_api_t,
    /// The last verdict returned: its reason and detail must outlive the
    /// hook, until the next hook on this instance.
    kept: Option<Verdict>,
}

/// A plugin's integration names as a static array of views.
#[repr(transparent)]
pub struct StaticViews<const N: usize>([odock_plugin_view_t; N]);

// SAFETY: the views point into `&'static str`s and are never written after
// the static is initialized, so sharing them between threads is sharing
// immutable static data.
unsafe impl<const N: usize> Sync for StaticViews<N> {}

impl<const N: usize> StaticViews<N> {
    /// Views of `names`, which must have `N` entries.
    pub const fn new(names: &'static [&'static str]) -> Self {
        assert!(names.len() == N, "the integration count changed");
        let mut views = [odock_plugin_view_t::ZEROED; N];
        let mut i = 0;
        while i < N {
            assert!(
                !names[i].is_empty() && names[i].len() <= 64,
                "an integration name must be 1 to 64 bytes"
            );
            views[i] = odock_plugin_view_t::from_slice(names[i].as_bytes());
            i += 1;
        }
        StaticViews(views)
    }

    /// The views as a slice.
    pub const fn as_slice(&'static self) -> &'static [odock_plugin_view_t] {
        &self.0
    }
}

/// A descriptor in a `static`.
#[repr(transparent)]
pub struct StaticDescriptor(odock_plugin_descriptor_t);

// SAFETY: the descriptor is built at compile time from `'static` data
// (string constants, a `StaticViews` static, function pointers) and is
// never written, so it may be shared between threads.
unsafe impl Sync for StaticDescriptor {}

impl StaticDescriptor {
    /// The pointer the entry function returns.
    pub const fn as_ptr(&'static self) -> *const odock_plugin_descriptor_t {
        &self.0
    }
}

/// Builds a plugin type's descriptor at compile time; the gate methods
/// exist only for types that implement the gate's trait.
pub struct DescriptorBuilder<P> {
    raw: odock_plugin_descriptor_t,
    _plugin: PhantomData<fn() -> P>,
}

const fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 64 {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

const fn view(s: &'static str) -> odock_plugin_view_t {
    odock_plugin_view_t::from_slice(s.as_bytes())
}

impl<P: Plugin> DescriptorBuilder<P> {
    /// The descriptor of `P` joining no gate yet.
    pub const fn new(integrations: &'static [odock_plugin_view_t]) -> Self {
        assert!(
            valid_name(P::NAME),
            "Plugin::NAME must be 1 to 64 bytes of [a-z0-9._-]"
        );
        assert!(
            !P::VERSION.is_empty() && P::VERSION.len() <= 64,
            "Plugin::VERSION must be 1 to 64 bytes"
        );
        assert!(
            P::CAPABILITIES.unknown_bits() == 0,
            "Plugin::CAPABILITIES has bits this SDK does not know"
        );
        let mut raw = odock_plugin_descriptor_t::SIZED;
        raw.abi_major = ODOCK_PLUGIN_ABI_MAJOR;
        raw.abi_minor = ODOCK_PLUGIN_ABI_MINOR;
        raw.name = view(P::NAME);
        raw.version = view(P::VERSION);
        raw.config_schema = view(P::CONFIG_SCHEMA);
        raw.integrations = integrations.as_ptr();
        raw.integrations_len = integrations.len();
        raw.capabilities = P::CAPABILITIES.bits();
        raw.response_mode = P::RESPONSE_MODE as u32;
        raw.init = Some(init::<P>);
        raw.destroy = Some(destroy::<P>);
        raw.on_integration_answer = Some(on_integration_answer::<P>);
        raw.on_followup = Some(on_followup::<P>);
        DescriptorBuilder {
            raw,
            _plugin: PhantomData,
        }
    }

    /// The finished descriptor.
    pub const fn build(self) -> StaticDescriptor {
        assert!(self.raw.gates != 0, "a plugin joins at least one gate");
        StaticDescriptor(self.raw)
    }
}

impl<P: RequestGate> DescriptorBuilder<P> {
    /// Joins the request gate.
    pub const fn request(mut self) -> Self {
        self.raw.gates |= ODOCK_GATE_REQUEST;
        self.raw.on_request = Some(on_request::<P>);
        self
    }
}

impl<P: ResponseGate> DescriptorBuilder<P> {
    /// Joins the response gate.
    pub const fn response(mut self) -> Self {
        self.raw.gates |= ODOCK_GATE_RESPONSE;
        self.raw.on_response = Some(on_response::<P>);
        self
    }
}

impl<P: CompleteGate> DescriptorBuilder<P> {
    /// Joins the complete gate.
    pub const fn complete(mut self) -> Self {
        self.raw.gates |= ODOCK_GATE_COMPLETE;
        self.raw.on_complete = Some(on_complete::<P>);
        self
    }
}

/// Runs `f`, turning its result into a status and any panic into
/// `ODOCK_ERR_PANICKED` (after logging the panic's message, when there is a
/// host to log to). Nothing unwinds out of it.
fn boundary(
    api: Option<&odock_host_api_t>,
    call: *mut odock_call_t,
    f: impl FnOnce() -> Result<(), Error>,
) -> odock_status_t {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => Error::status(result),
        Err(payload) => {
            if let Some(api) = api {
                // SAFETY: `api` is the host's table, valid until destroy;
                // `call` is the handle of the hook now running.
                let host = unsafe { Host::new(api, call) };
                let message = format!("plugin panicked: {}", panic_message(&*payload));
                // Logging is best effort: the status below is what counts.
                let _ = host.log(LogLevel::Error, &message);
            }
            drop_payload(payload);
            Error::Panicked.code()
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(a payload that is not a string)"
    }
}

/// Drops a panic payload whose own `Drop` might panic, without unwinding.
fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// A versioned struct the host lends for writing.
///
/// # Safety
/// As for [`part`], and nothing else refers to the struct during `'a`.
unsafe fn part_mut<'a, T: Versioned>(ptr: *mut T) -> Result<&'a mut T, Error> {
    // SAFETY: forwarded from the caller.
    unsafe { part(ptr.cast_const()) }.ok_or(Error::InvalidArgument)?;
    // SAFETY: checked above; the caller vouches that the host lends it to us
    // alone for the hook.
    Ok(unsafe { &mut *ptr })
}

unsafe extern "C" fn init<P: Plugin>(
    api: *const odock_host_api_t,
    call: *mut odock_call_t,
    args: *const odock_init_args_t,
    out_instance: *mut *mut odock_instance_t,
) -> odock_status_t {
    // SAFETY: the host passes its table, valid until destroy; `part` checks
    // NULL and that it is at least as large as this SDK's version of it.
    let Some(api_ref) = (unsafe { part(api) }) else {
        return Error::Unsupported.code();
    };
    boundary(Some(api_ref), call, || {
        if api_ref.abi_major != ODOCK_PLUGIN_ABI_MAJOR || out_instance.is_null() {
            return Err(Error::Unsupported);
        }
        // SAFETY: the host passes init arguments valid during init.
        let args = unsafe { part(args) }.ok_or(Error::InvalidArgument)?;
        let ctx = InitContext {
            // SAFETY: table and call handle as the host passed them to init;
            // `ctx` does not outlive this hook.
            host: unsafe { Host::new(api_ref, call) },
            worker_index: args.worker_index,
            // SAFETY: the header keeps the configuration valid until
            // destroy, beyond this hook.
            config: unsafe { host_bytes(args.config) },
        };
        let plugin = P::init(&ctx)?;
        let instance = Box::new(Instance {
            plugin,
            api,
            kept: None,
        });
        // SAFETY: `out_instance` is not NULL (checked) and the host lends it
        // for this write.
        unsafe { out_instance.write(Box::into_raw(instance).cast()) };
        Ok(())
    })
}

unsafe extern "C" fn destroy<P: Plugin>(instance: *mut odock_instance_t) {
    if instance.is_null() {
        return;
    }
    // SAFETY: the host passes back, once, the pointer our init produced with
    // `Box::into_raw`, after the instance's last hook.
    let instance = unsafe { Box::from_raw(instance.cast::<Instance<P>>()) };
    // A panicking `Drop` must not unwind into the host. There is no hook
    // (and no call handle) to report it through.
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(instance))) {
        drop_payload(payload);
    }
}

/// The instance behind the host's pointer, and its host table.
///
/// # Safety
/// `instance` is NULL or what our init returned and destroy has not freed;
/// calls on it do not overlap (the header promises both).
unsafe fn instance<'a, P: Plugin>(
    instance: *mut odock_instance_t,
) -> Option<(&'a mut Instance<P>, &'a odock_host_api_t)> {
    // SAFETY: forwarded from the caller.
    let instance = unsafe { instance.cast::<Instance<P>>().as_mut() }?;
    // SAFETY: the table init received lives until destroy.
    let api = unsafe { &*instance.api };
    Some((instance, api))
}

/// Writes `verdict` into the host's struct, keeping its bytes alive in
/// `kept` until the next hook.
fn write_verdict(kept: &mut Option<Verdict>, verdict: Verdict, out: &mut odock_verdict_t) {
    match kept.insert(verdict) {
        Verdict::Continue => out.kind = ODOCK_VERDICT_CONTINUE,
        Verdict::Block(block) => {
            out.kind = ODOCK_VERDICT_BLOCK;
            out.http_status = u32::from(block.status);
            out.reason = odock_plugin_view_t::from_slice(block.reason.as_bytes());
            out.detail = odock_plugin_view_t::from_slice(&block.detail);
        }
        Verdict::Pause(call) => {
            out.kind = ODOCK_VERDICT_PAUSE;
            out.pause_token = call.token();
        }
    }
}

/// The body shared by the three gate hooks and the answer hook.
///
/// # Safety
/// The arguments are as the host passes them to a hook.
unsafe fn decide<P: Plugin>(
    inst: *mut odock_instance_t,
    call: *mut odock_call_t,
    frame: *const odock_frame_t,
    verdict: *mut odock_verdict_t,
    f: impl FnOnce(&mut P, &Host<'_>, &Frame<'_>) -> Result<Verdict, Error>,
) -> odock_status_t {
    // SAFETY: forwarded from the caller.
    let Some((instance, api)) = (unsafe { instance::<P>(inst) }) else {
        return Error::InvalidArgument.code();
    };
    boundary(Some(api), call, || {
        // SAFETY: the host lends the verdict to this hook alone.
        let out = unsafe { part_mut(verdict) }?;
        // SAFETY: the frame is valid until the hook returns.
        let frame = unsafe { Frame::from_raw(frame) }?;
        // SAFETY: the table and this hook's call handle; `host` dies here.
        let host = unsafe { Host::new(api, call) };
        instance.kept = None;
        let decided = f(&mut instance.plugin, &host, &frame)?;
        write_verdict(&mut instance.kept, decided, out);
        Ok(())
    })
}

unsafe extern "C" fn on_request<P: RequestGate>(
    inst: *mut odock_instance_t,
    call: *mut odock_call_t,
    frame: *const odock_frame_t,
    verdict: *mut odock_verdict_t,
) -> odock_status_t {
    // SAFETY: the host calls this hook as the header says.
    unsafe { decide::<P>(inst, call, frame, verdict, P::on_request) }
}

unsafe extern "C" fn on_response<P: ResponseGate>(
    inst: *mut odock_instance_t,
    call: *mut odock_call_t,
    frame: *const odock_frame_t,
    verdict: *mut odock_verdict_t,
) -> odock_status_t {
    // SAFETY: the host calls this hook as the header says.
    unsafe { decide::<P>(inst, call, frame, verdict, P::on_response) }
}

unsafe extern "C" fn on_complete<P: CompleteGate>(
    inst: *mut odock_instance_t,
    call: *mut odock_call_t,
    frame: *const odock_frame_t,
    verdict: *mut odock_verdict_t,
) -> odock_status_t {
    // SAFETY: the host calls this hook as the header says.
    unsafe {
        decide::<P>(inst, call, frame, verdict, |p, host, frame| {
            p.on_complete(host, frame).map(|()| Verdict::Continue)
        })
    }
}

unsafe extern "C" fn on_integration_answer<P: Plugin>(
    inst: *mut odock_instance_t,
    call: *mut odock_call_t,
    frame: *const odock_frame_t,
    answer: *const odock_integration_answer_t,
    verdict: *mut odock_verdict_t,
) -> odock_status_t {
    // SAFETY: the host calls this hook as the header says; the answer is
    // valid until it returns.
    unsafe {
        decide::<P>(inst, call, frame, verdict, |p, host, frame| {
            let raw = part(answer).ok_or(Error::InvalidArgument)?;
            let answer = Answer {
                call: PendingCall::from_token(raw.token),
                outcome: AnswerOutcome::from_raw(raw.outcome),
                body: host_bytes(raw.body),
            };
            p.on_integration_answer(host, frame, &answer)
        })
    }
}

unsafe extern "C" fn on_followup<P: Plugin>(
    inst: *mut odock_instance_t,
    call: *mut odock_call_t,
    kind: odock_host_view_t,
    payload: odock_host_view_t,
) -> odock_status_t {
    // SAFETY: the host calls this hook as the header says.
    let Some((instance, api)) = (unsafe { instance::<P>(inst) }) else {
        return Error::InvalidArgument.code();
    };
    boundary(Some(api), call, || {
        // SAFETY: both views are valid until the hook returns.
        let (kind, payload) = unsafe { (host_bytes(kind), host_bytes(payload)) };
        let kind = core::str::from_utf8(kind).map_err(|_| Error::InvalidArgument)?;
        // SAFETY: the table and this hook's call handle.
        let host = unsafe { Host::new(api, call) };
        instance.plugin.on_followup(&host, kind, payload)
    })
}
