//! The Rust SDK: write a plugin as safe Rust, export it with one macro.
//!
//! A plugin is a type that implements [`Plugin`] (who it is, what it asks
//! for, how it starts) and one trait per gate it joins: [`RequestGate`],
//! [`ResponseGate`], [`CompleteGate`]. Every gate method defaults to
//! *continue*, so a plugin writes only what it decides. [`export_plugin!`]
//! generates the descriptor and the `odock_plugin_entry_v1` symbol.
//!
//! ```
//! use odock_plugin_abi::sdk::{Host, InitContext, Plugin, RequestGate, Verdict};
//! use odock_plugin_abi::view::Frame;
//! use odock_plugin_abi::{Capabilities, Capability, Error};
//!
//! struct NoGpt5;
//!
//! impl Plugin for NoGpt5 {
//!     const NAME: &'static str = "no-gpt5";
//!     const VERSION: &'static str = "1.0.0";
//!     const CAPABILITIES: Capabilities = Capabilities::of(&[Capability::Block]);
//!     fn init(_ctx: &InitContext<'_>) -> Result<Self, Error> {
//!         Ok(NoGpt5)
//!     }
//! }
//!
//! impl RequestGate for NoGpt5 {
//!     fn on_request(&mut self, _host: &Host<'_>, frame: &Frame<'_>) -> Result<Verdict, Error> {
//!         if frame.target.model.starts_with(b"gpt-5") {
//!             return Ok(Verdict::block(403, "this model is not available to you"));
//!         }
//!         Ok(Verdict::Continue)
//!     }
//! }
//!
//! // In a `cdylib` crate, this exports `odock_plugin_entry_v1`:
//! // odock_plugin_abi::export_plugin!(NoGpt5, request);
//! ```
//!
//! # What the SDK guarantees at the boundary
//!
//! - A panic in any method is caught before it reaches the host: the hook
//!   returns `ODOCK_ERR_PANICKED` (the host's failure mode decides what
//!   that means) and the panic message goes to the host's log.
//! - A `Err(e)` from a method becomes `e`'s status code.
//! - The verdict's reason and detail stay alive until the next hook on the
//!   same instance, as the header requires.
//! - A frame or host table smaller than this SDK's header version is
//!   refused with `ODOCK_ERR_INVALID_ARGUMENT` / `ODOCK_ERR_UNSUPPORTED`
//!   rather than read past its end.

mod glue;
mod host;

use std::borrow::Cow;

pub use host::{Host, InitContext, PendingCall};

use crate::view::Frame;
use crate::{AnswerOutcome, Capabilities, Error, ResponseMode};

/// Who a plugin is, what it asks for, and how an instance starts.
///
/// One value of the type is one per-worker instance: the host calls
/// [`Plugin::init`] once per worker and drops the value on destroy. Calls on
/// one instance never overlap, so methods take `&mut self`; they may come
/// from different threads over time, hence `Send`.
pub trait Plugin: Sized + Send + 'static {
    /// The name registered with control: 1 to 64 bytes of `[a-z0-9._-]`.
    const NAME: &'static str;
    /// The plugin's own version.
    const VERSION: &'static str;
    /// The capabilities the plugin asks for. It must be granted all of them
    /// to load.
    const CAPABILITIES: Capabilities;
    /// How the response gate sees bodies.
    const RESPONSE_MODE: ResponseMode = ResponseMode::WholeBody;
    /// A JSON Schema of the configuration.
    const CONFIG_SCHEMA: &'static str = r#"{"type":"object"}"#;
    /// The integrations the plugin may call (with
    /// [`Capability::CallIntegration`](crate::Capability::CallIntegration)).
    const INTEGRATIONS: &'static [&'static str] = &[];

    /// Creates the instance for one worker from the binding's config.
    ///
    /// # Errors
    /// Return [`Error::InvalidConfig`] for a configuration the plugin cannot
    /// use; the instance is not created and the host reports it.
    fn init(ctx: &InitContext<'_>) -> Result<Self, Error>;

    /// Receives the answer to the integration call a gate paused on, with
    /// the frame it paused. Decides like the gate.
    ///
    /// # Errors
    /// An error is handled by the plugin's failure mode.
    fn on_integration_answer(
        &mut self,
        _host: &Host<'_>,
        _frame: &Frame<'_>,
        _answer: &Answer<'_>,
    ) -> Result<Verdict, Error> {
        Ok(Verdict::Continue)
    }

    /// Runs one piece of work queued with [`Host::queue_followup`], off the
    /// hot path.
    ///
    /// # Errors
    /// An error is logged by the host.
    fn on_followup(&mut self, _host: &Host<'_>, _kind: &str, _payload: &[u8]) -> Result<(), Error> {
        Ok(())
    }
}

/// The request gate: before upstream work.
pub trait RequestGate: Plugin {
    /// Decides on a request. The default continues.
    ///
    /// # Errors
    /// An error is handled by the plugin's failure mode.
    fn on_request(&mut self, _host: &Host<'_>, _frame: &Frame<'_>) -> Result<Verdict, Error> {
        Ok(Verdict::Continue)
    }
}

/// The response gate: after the upstream answers, before the caller sees it;
/// per chunk with [`ResponseMode::PerChunk`].
pub trait ResponseGate: Plugin {
    /// Decides on a response or a chunk of one. The default continues.
    /// [`Verdict::Pause`] is not valid here.
    ///
    /// # Errors
    /// An error is handled by the plugin's failure mode.
    fn on_response(&mut self, _host: &Host<'_>, _frame: &Frame<'_>) -> Result<Verdict, Error> {
        Ok(Verdict::Continue)
    }
}

/// The complete gate: after the caller has the response. It cannot change
/// anything, so it returns no verdict.
pub trait CompleteGate: Plugin {
    /// Records what happened; queues follow-up work. The default does
    /// nothing.
    ///
    /// # Errors
    /// An error is handled by the plugin's failure mode (it never changes a
    /// response that was already sent).
    fn on_complete(&mut self, _host: &Host<'_>, _frame: &Frame<'_>) -> Result<(), Error> {
        Ok(())
    }
}

/// What a gate decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Continue,
    /// Stop and answer the caller. Needs
    /// [`Capability::Block`](crate::Capability::Block).
    Block(Block),
    /// Wait for the answer to this integration call (request gate only).
    Pause(PendingCall),
}

impl Verdict {
    /// A block with this HTTP status (400 to 599) and user-visible reason.
    pub fn block(status: u16, reason: impl Into<Cow<'static, str>>) -> Verdict {
        Verdict::Block(Block::new(status, reason))
    }
}

/// A block: the caller gets `status` and `reason`; `detail` goes to
/// evidence only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The HTTP status, 400 to 599.
    pub status: u16,
    /// What the caller reads: UTF-8, at most 1024 bytes, no internals.
    pub reason: Cow<'static, str>,
    /// The internal detail, kept apart from the reason: at most 4096 bytes.
    pub detail: Cow<'static, [u8]>,
}

impl Block {
    /// A block with no detail.
    pub fn new(status: u16, reason: impl Into<Cow<'static, str>>) -> Block {
        Block {
            status,
            reason: reason.into(),
            detail: Cow::Borrowed(&[]),
        }
    }

    /// The same block with an internal detail.
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, [u8]>>) -> Block {
        self.detail = detail.into();
        self
    }
}

impl From<Block> for Verdict {
    fn from(block: Block) -> Verdict {
        Verdict::Block(block)
    }
}

/// The answer to an integration call.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The call this answers.
    pub call: PendingCall,
    /// How it ended.
    pub outcome: AnswerOutcome,
    /// The integration's answer (empty unless the outcome is `Ok`).
    pub body: &'a [u8],
}

/// Exports a plugin type as the shared library's entry point,
/// `odock_plugin_entry_v1`, joining the gates listed after it
/// (`request`, `response`, `complete`). The type must implement the trait
/// of every gate listed.
///
/// Use it once, at the root of a `crate-type = ["cdylib"]` crate:
///
/// ```ignore
/// odock_plugin_abi::export_plugin!(ModelGuard, request, complete);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty $(, $gate:ident)+ $(,)?) => {
        /// The plugin's entry point (ABI major version 1).
        #[unsafe(no_mangle)]
        pub extern "C" fn odock_plugin_entry_v1()
            -> *const $crate::sys::odock_plugin_descriptor_t
        {
            $crate::__plugin_descriptor!($plugin $(, $gate)+)
        }
    };
}

/// Defines an entry function under a name of your choice, not exported:
/// for hosts that link a plugin statically, and for tests and benches that
/// run a plugin in process without a shared library.
///
/// ```
/// use odock_plugin_abi::sdk::{CompleteGate, InitContext, Plugin};
/// use odock_plugin_abi::{Capabilities, Error};
///
/// struct Quiet;
/// impl Plugin for Quiet {
///     const NAME: &'static str = "quiet";
///     const VERSION: &'static str = "0.1.0";
///     const CAPABILITIES: Capabilities = Capabilities::NONE;
///     fn init(_: &InitContext<'_>) -> Result<Self, Error> { Ok(Quiet) }
/// }
/// impl CompleteGate for Quiet {}
///
/// odock_plugin_abi::plugin_entry!(fn quiet_entry for Quiet, complete);
///
/// // SAFETY: the entry returns a pointer to a static descriptor.
/// let descriptor = unsafe { &*quiet_entry() };
/// assert_eq!(descriptor.gates, odock_plugin_abi::sys::ODOCK_GATE_COMPLETE);
/// ```
#[macro_export]
macro_rules! plugin_entry {
    ($vis:vis fn $name:ident for $plugin:ty $(, $gate:ident)+ $(,)?) => {
        /// An entry point of ABI major version 1, not exported.
        $vis extern "C" fn $name() -> *const $crate::sys::odock_plugin_descriptor_t {
            $crate::__plugin_descriptor!($plugin $(, $gate)+)
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_descriptor {
    ($plugin:ty $(, $gate:ident)+) => {{
        const INTEGRATIONS_LEN: usize =
            <$plugin as $crate::sdk::Plugin>::INTEGRATIONS.len();
        static INTEGRATIONS: $crate::sdk::__private::StaticViews<INTEGRATIONS_LEN> =
            $crate::sdk::__private::StaticViews::new(
                <$plugin as $crate::sdk::Plugin>::INTEGRATIONS,
            );
        static DESCRIPTOR: $crate::sdk::__private::StaticDescriptor =
            $crate::sdk::__private::DescriptorBuilder::<$plugin>::new(INTEGRATIONS.as_slice())
                $(.$gate())+
                .build();
        DESCRIPTOR.as_ptr()
    }};
}

#[doc(hidden)]
pub mod __private {
    pub use super::glue::{DescriptorBuilder, StaticDescriptor, StaticViews};
}
