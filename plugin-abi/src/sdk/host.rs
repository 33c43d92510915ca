//! The safe handle to the host's calls during one hook.

use core::marker::PhantomData;
use core::time::Duration;

use crate::sys::{odock_call_t, odock_host_api_t, odock_host_view_t, odock_plugin_view_t};
use crate::view::host_bytes;
use crate::{Error, LogLevel};

/// The host's calls, usable during the hook that received the handle.
///
/// Every method returns the host's status as a `Result`: `Err(Error::Denied)`
/// when the plugin was not granted the capability (the host also records a
/// `capability_denied` evidence record), `Err(Error::WrongGate)` when the
/// call is not available in this hook. See the table in `odock_plugin.h`.
///
/// The handle cannot outlive the hook (`'c`) and cannot leave its thread.
pub struct Host<'c> {
    api: &'c odock_host_api_t,
    call: *mut odock_call_t,
    /// Not `Send`, not `Sync`: the call handle belongs to this hook's thread.
    _not_send: PhantomData<*mut ()>,
}

/// An integration call started by [`Host::call_integration`]; return
/// [`Verdict::Pause`](super::Verdict::Pause) with it, and match the
/// [`Answer`](super::Answer) against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PendingCall(u64);

impl PendingCall {
    /// The host's token for the call.
    pub const fn token(self) -> u64 {
        self.0
    }

    /// The call of this token (as an answer carries it).
    pub const fn from_token(token: u64) -> PendingCall {
        PendingCall(token)
    }
}

fn view(bytes: &[u8]) -> odock_plugin_view_t {
    odock_plugin_view_t::from_slice(bytes)
}

impl<'c> Host<'c> {
    /// Wraps the host table and the call handle of a hook.
    ///
    /// # Safety
    /// `api` must be the table the host handed to init (it is valid until
    /// destroy, so for `'c`), and `call` the handle the host passed to the
    /// hook now running; the `Host` must not be used after that hook
    /// returns, which `'c` ensures when it is the hook's own lifetime.
    pub(crate) unsafe fn new(api: &'c odock_host_api_t, call: *mut odock_call_t) -> Host<'c> {
        Host {
            api,
            call,
            _not_send: PhantomData,
        }
    }

    /// Writes a diagnostic line to the host's log (not evidence).
    ///
    /// # Errors
    /// Whatever the host answers; logging rarely fails.
    pub fn log(&self, level: LogLevel, message: &str) -> Result<(), Error> {
        let f = self.api.log.ok_or(Error::Unsupported)?;
        // SAFETY: `f` is the host's function, `call` is the live hook's
        // handle, and the view points into `message` for the whole call.
        Error::check(unsafe { f(self.call, level as u32, view(message.as_bytes())) })
    }

    /// The binding's configuration, as init received it.
    ///
    /// # Errors
    /// Whatever the host answers.
    pub fn config(&self) -> Result<&'c [u8], Error> {
        let f = self.api.read_config.ok_or(Error::Unsupported)?;
        let mut out = odock_host_view_t::ZEROED;
        // SAFETY: as in `log`; `out` is a valid place for the host to write.
        Error::check(unsafe { f(self.call, &mut out) })?;
        // SAFETY: the header says the configuration stays valid until
        // destroy, which outlives the hook, so certainly `'c`.
        Ok(unsafe { host_bytes(out) })
    }

    /// Sets a header on the request (request gate) or the response
    /// (response gate), replacing any of the same name.
    ///
    /// # Errors
    /// `Denied` without `write_headers`; `InvalidArgument` for a name that is
    /// no HTTP token or a value with CR, LF or NUL; `WrongGate` at the
    /// complete gate.
    pub fn set_header(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.two_views(self.api.set_header, name.as_bytes(), value)
    }

    /// Removes every header of this name.
    ///
    /// # Errors
    /// As for [`Host::set_header`].
    pub fn remove_header(&self, name: &str) -> Result<(), Error> {
        let f = self.api.remove_header.ok_or(Error::Unsupported)?;
        // SAFETY: as in `log`.
        Error::check(unsafe { f(self.call, view(name.as_bytes())) })
    }

    /// Sets a request-scoped metadata entry.
    ///
    /// # Errors
    /// `Denied` without `write_headers`; `WrongGate` at the complete gate.
    pub fn set_metadata(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.two_views(self.api.set_metadata, key.as_bytes(), value)
    }

    /// Replaces `length` bytes at `offset` of the body (or chunk) this gate
    /// sees with `bytes`. Copy-on-write; applied after the hook.
    ///
    /// # Errors
    /// `Denied` without the write-body capability of this gate; `OutOfRange`
    /// for a range outside the body; `WrongGate` at the complete gate.
    pub fn replace_body_range(&self, offset: u64, length: u64, bytes: &[u8]) -> Result<(), Error> {
        let f = self.api.replace_body_range.ok_or(Error::Unsupported)?;
        // SAFETY: as in `log`.
        Error::check(unsafe { f(self.call, offset, length, view(bytes)) })
    }

    /// Replaces the JSON value at `json_pointer` (RFC 6901) with the JSON
    /// text `json_value`. Copy-on-write; applied after the hook.
    ///
    /// # Errors
    /// As for [`Host::replace_body_range`]; `InvalidArgument` for a pointer
    /// that does not start with `/`.
    pub fn replace_body_field(&self, json_pointer: &str, json_value: &[u8]) -> Result<(), Error> {
        self.two_views(
            self.api.replace_body_field,
            json_pointer.as_bytes(),
            json_value,
        )
    }

    /// Adds an evidence record of the plugin's own.
    ///
    /// # Errors
    /// `Denied` without `emit_evidence`; `InvalidArgument` for a kind that is
    /// empty or longer than 64 bytes; `LimitExceeded` past the per-call
    /// budget.
    pub fn emit_evidence(&self, kind: &str, data: &[u8]) -> Result<(), Error> {
        self.two_views(self.api.emit_evidence, kind.as_bytes(), data)
    }

    /// Starts a call to the integration `name`; return
    /// [`Verdict::Pause`](super::Verdict::Pause) with the result to wait for
    /// its answer. A timeout is rounded up to whole milliseconds (at least
    /// one, at most `u32::MAX`).
    ///
    /// # Errors
    /// `Denied` without `call_integration` or for a name not granted;
    /// `WrongGate` outside the request gate.
    pub fn call_integration(
        &self,
        name: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<PendingCall, Error> {
        let f = self.api.call_integration.ok_or(Error::Unsupported)?;
        let millis = timeout
            .as_nanos()
            .div_ceil(1_000_000)
            .clamp(1, u128::from(u32::MAX));
        let mut token = 0u64;
        // SAFETY: as in `log`; `token` is a valid place for the host to
        // write. `millis` fits u32 by the clamp.
        Error::check(unsafe {
            f(
                self.call,
                view(name.as_bytes()),
                view(payload),
                millis as u32,
                &mut token,
            )
        })?;
        Ok(PendingCall(token))
    }

    /// Queues work the host runs later, off the hot path, through
    /// [`Plugin::on_followup`](super::Plugin::on_followup).
    ///
    /// # Errors
    /// `Denied` without `queue_followup`.
    pub fn queue_followup(&self, kind: &str, payload: &[u8]) -> Result<(), Error> {
        self.two_views(self.api.queue_followup, kind.as_bytes(), payload)
    }

    fn two_views(
        &self,
        f: crate::sys::odock_two_views_fn,
        a: &[u8],
        b: &[u8],
    ) -> Result<(), Error> {
        let f = f.ok_or(Error::Unsupported)?;
        // SAFETY: as in `log`.
        Error::check(unsafe { f(self.call, view(a), view(b)) })
    }
}

/// What [`Plugin::init`](super::Plugin::init) receives.
pub struct InitContext<'c> {
    pub(crate) host: Host<'c>,
    pub(crate) worker_index: u32,
    pub(crate) config: &'c [u8],
}

impl<'c> InitContext<'c> {
    /// The worker the instance serves (0-based).
    pub fn worker_index(&self) -> u32 {
        self.worker_index
    }

    /// The binding's configuration, validated by control against the
    /// plugin's config schema.
    pub fn config(&self) -> &'c [u8] {
        self.config
    }

    /// The host's calls; during init only [`Host::log`] and
    /// [`Host::config`] are available.
    pub fn host(&self) -> &Host<'c> {
        &self.host
    }
}
