//! The raw mirror of `odock_plugin.h`: every type, field and constant of the
//! header, with the header's own names, `#[repr(C)]`.
//!
//! Nothing here is safe to use on its own: pointers are raw and nothing is
//! checked. Plugins use [`crate::sdk`]; the host (the dataplane's loader)
//! builds on these types and checks what it reads.
//!
//! Every struct is declared through `abi_struct!`, which also lists its
//! fields with their offsets and sizes in [`AbiLayout::FIELDS`], and every
//! constant through `abi_consts!`, which lists it in [`CONSTANTS`]. The
//! crate's `layout` test compiles a C file that static-asserts each of those
//! numbers against the header, so the two cannot drift apart unnoticed.

#![allow(
    non_camel_case_types,
    reason = "the mirror keeps the header's names, one to one, so they can be grepped across both"
)]

use core::marker::{PhantomData, PhantomPinned};

/// One field of a mirrored struct, for the layout check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiField {
    /// The field's name, the same in C and Rust.
    pub name: &'static str,
    /// `offsetof` of the field.
    pub offset: usize,
    /// `sizeof` of the field.
    pub size: usize,
}

/// The layout of a mirrored struct, as the Rust compiler laid it out.
pub trait AbiLayout: Sized {
    /// The C typedef name (`odock_frame_t`).
    const C_NAME: &'static str;
    /// Every field in declaration order.
    const FIELDS: &'static [AbiField];
    /// `sizeof` of the struct.
    const SIZE: usize = size_of::<Self>();
    /// `alignof` of the struct.
    const ALIGN: usize = align_of::<Self>();
}

/// A struct that starts with `uint32_t size` (rule R3 of the header).
pub trait Versioned: AbiLayout {
    /// The `size` field: how large the writer says the struct is.
    fn declared_size(&self) -> u32;
}

macro_rules! abi_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }

        impl AbiLayout for $name {
            const C_NAME: &'static str = stringify!($name);
            const FIELDS: &'static [AbiField] = &[
                $( AbiField {
                    name: stringify!($field),
                    offset: core::mem::offset_of!($name, $field),
                    size: size_of::<$ty>(),
                } ),*
            ];
        }

        impl $name {
            /// The all-zero value: every integer 0, every pointer NULL, every
            /// function pointer `None`.
            // SAFETY: every field of a mirrored struct is an integer, a raw
            // pointer, an `Option` of a function pointer or another mirrored
            // struct; for all of them the all-zero bit pattern is a valid
            // value (0, NULL, `None`).
            pub const ZEROED: Self = unsafe { core::mem::zeroed() };
        }
    };
}

macro_rules! versioned {
    ($($name:ident),* $(,)?) => {
        $(
            impl Versioned for $name {
                fn declared_size(&self) -> u32 {
                    self.size
                }
            }
            impl $name {
                /// The all-zero value with `size` set to this header's size
                /// of the struct, as a writer hands it over.
                pub const SIZED: Self = {
                    let mut v = Self::ZEROED;
                    v.size = size_of::<Self>() as u32;
                    v
                };
            }
        )*
    };
}

macro_rules! abi_consts {
    ($( $(#[$meta:meta])* pub const $name:ident : $ty:ty = $value:expr; )*) => {
        $( $(#[$meta])* pub const $name: $ty = $value; )*

        /// Every constant of the header with its value, for the layout check.
        pub const CONSTANTS: &[(&str, u64)] = &[ $( (stringify!($name), $name as u64) ),* ];
    };
}

/// `ODOCK_PLUGIN_ENTRY_SYMBOL`: the entry symbol of major version 1.
pub const ODOCK_PLUGIN_ENTRY_SYMBOL: &str = "odock_plugin_entry_v1";

abi_consts! {
    /// The major version of the header.
    pub const ODOCK_PLUGIN_ABI_MAJOR: u16 = 1;
    /// The minor version of the header.
    pub const ODOCK_PLUGIN_ABI_MINOR: u16 = 0;

    /// Success.
    pub const ODOCK_OK: odock_status_t = 0;
    /// The capability or integration is not granted.
    pub const ODOCK_ERR_DENIED: odock_status_t = 1;
    /// A malformed argument.
    pub const ODOCK_ERR_INVALID_ARGUMENT: odock_status_t = 2;
    /// A byte range outside its body or chunk.
    pub const ODOCK_ERR_OUT_OF_RANGE: odock_status_t = 3;
    /// The host call is not available during this hook.
    pub const ODOCK_ERR_WRONG_GATE: odock_status_t = 4;
    /// A per-call budget is spent.
    pub const ODOCK_ERR_LIMIT_EXCEEDED: odock_status_t = 5;
    /// The host does not offer this call.
    pub const ODOCK_ERR_UNSUPPORTED: odock_status_t = 6;
    /// init: the configuration is not acceptable.
    pub const ODOCK_ERR_INVALID_CONFIG: odock_status_t = 7;
    /// A hook failed to decide.
    pub const ODOCK_ERR_FAILED: odock_status_t = 8;
    /// A hook caught a panic at the boundary.
    pub const ODOCK_ERR_PANICKED: odock_status_t = 9;
    /// The host failed while serving a host call.
    pub const ODOCK_ERR_HOST_INTERNAL: odock_status_t = 10;

    /// The request gate.
    pub const ODOCK_GATE_REQUEST: u32 = 1 << 0;
    /// The response gate.
    pub const ODOCK_GATE_RESPONSE: u32 = 1 << 1;
    /// The complete gate.
    pub const ODOCK_GATE_COMPLETE: u32 = 1 << 2;

    /// Read the identity of the caller.
    pub const ODOCK_CAP_READ_IDENTITY: u64 = 1 << 0;
    /// Read the request body (and the messages and tool arguments).
    pub const ODOCK_CAP_READ_REQUEST_BODY: u64 = 1 << 1;
    /// Change the request body.
    pub const ODOCK_CAP_WRITE_REQUEST_BODY: u64 = 1 << 2;
    /// Read the response body and chunks.
    pub const ODOCK_CAP_READ_RESPONSE_BODY: u64 = 1 << 3;
    /// Change the response body and chunks.
    pub const ODOCK_CAP_WRITE_RESPONSE_BODY: u64 = 1 << 4;
    /// Read request and response headers.
    pub const ODOCK_CAP_READ_HEADERS: u64 = 1 << 5;
    /// Set and remove headers, set metadata.
    pub const ODOCK_CAP_WRITE_HEADERS: u64 = 1 << 6;
    /// Return a BLOCK verdict.
    pub const ODOCK_CAP_BLOCK: u64 = 1 << 7;
    /// Emit evidence records.
    pub const ODOCK_CAP_EMIT_EVIDENCE: u64 = 1 << 8;
    /// Call the integrations named in the descriptor.
    pub const ODOCK_CAP_CALL_INTEGRATION: u64 = 1 << 9;
    /// Queue follow-up work.
    pub const ODOCK_CAP_QUEUE_FOLLOWUP: u64 = 1 << 10;

    /// The response gate sees the whole body once.
    pub const ODOCK_RESPONSE_WHOLE_BODY: u32 = 0;
    /// The response gate sees each chunk.
    pub const ODOCK_RESPONSE_PER_CHUNK: u32 = 1;

    /// Verdict: go on.
    pub const ODOCK_VERDICT_CONTINUE: u32 = 0;
    /// Verdict: answer the caller with an HTTP status and a reason.
    pub const ODOCK_VERDICT_BLOCK: u32 = 1;
    /// Verdict: wait for an integration's answer.
    pub const ODOCK_VERDICT_PAUSE: u32 = 2;

    /// No target.
    pub const ODOCK_TARGET_NONE: u32 = 0;
    /// An LLM model.
    pub const ODOCK_TARGET_MODEL: u32 = 1;
    /// An MCP server and tool.
    pub const ODOCK_TARGET_MCP: u32 = 2;

    /// A role the index does not name.
    pub const ODOCK_ROLE_OTHER: u32 = 0;
    /// `system`.
    pub const ODOCK_ROLE_SYSTEM: u32 = 1;
    /// `user`.
    pub const ODOCK_ROLE_USER: u32 = 2;
    /// `assistant`.
    pub const ODOCK_ROLE_ASSISTANT: u32 = 3;
    /// `tool`.
    pub const ODOCK_ROLE_TOOL: u32 = 4;
    /// `developer`.
    pub const ODOCK_ROLE_DEVELOPER: u32 = 5;

    /// `odock_index_t.flags`: the caller asked to stream.
    pub const ODOCK_INDEX_STREAM: u32 = 1 << 0;
    /// `odock_index_t.flags`: the body did not parse as its API's JSON.
    pub const ODOCK_INDEX_INVALID: u32 = 1 << 1;
    /// `odock_response_t.flags`: no chunk follows.
    pub const ODOCK_RESPONSE_LAST_CHUNK: u32 = 1 << 0;

    /// The integration answered.
    pub const ODOCK_ANSWER_OK: u32 = 0;
    /// The integration did not answer in time.
    pub const ODOCK_ANSWER_TIMEOUT: u32 = 1;
    /// The integration failed.
    pub const ODOCK_ANSWER_FAILED: u32 = 2;

    /// Log level error.
    pub const ODOCK_LOG_ERROR: u32 = 1;
    /// Log level warn.
    pub const ODOCK_LOG_WARN: u32 = 2;
    /// Log level info.
    pub const ODOCK_LOG_INFO: u32 = 3;
    /// Log level debug.
    pub const ODOCK_LOG_DEBUG: u32 = 4;
    /// Log level trace.
    pub const ODOCK_LOG_TRACE: u32 = 5;
}

/// `odock_status_t`: 0 for success, an `ODOCK_ERR_*` code otherwise.
pub type odock_status_t = u32;

abi_struct! {
    /// `odock_host_view_t`: bytes the host owns, lent to the plugin.
    pub struct odock_host_view_t {
        /// First byte; may be NULL when `len` is 0.
        pub ptr: *const u8,
        /// Length in bytes.
        pub len: usize,
    }
}

abi_struct! {
    /// `odock_plugin_view_t`: bytes the plugin owns, lent to the host.
    pub struct odock_plugin_view_t {
        /// First byte; may be NULL when `len` is 0.
        pub ptr: *const u8,
        /// Length in bytes.
        pub len: usize,
    }
}

impl odock_host_view_t {
    /// A view of `bytes`. The caller keeps `bytes` alive as long as the view
    /// is used.
    pub const fn from_slice(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

impl odock_plugin_view_t {
    /// A view of `bytes`. The caller keeps `bytes` alive as long as the view
    /// is used.
    pub const fn from_slice(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

abi_struct! {
    /// `odock_header_t`: one HTTP header.
    pub struct odock_header_t {
        /// The name as it arrived.
        pub name: odock_host_view_t,
        /// The value as it arrived.
        pub value: odock_host_view_t,
    }
}

abi_struct! {
    /// `odock_message_t`: one message of an LLM request.
    pub struct odock_message_t {
        /// `ODOCK_ROLE_*`.
        pub role: u32,
        /// Zero.
        pub reserved: u32,
        /// The role as spelled in the request.
        pub role_name: odock_host_view_t,
        /// The raw JSON text of the content.
        pub content: odock_host_view_t,
    }
}

/// `odock_instance_t`: the plugin's per-worker state, opaque to the host.
#[repr(C)]
pub struct odock_instance_t {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// `odock_call_t`: the host's handle for one hook, opaque to the plugin.
#[repr(C)]
pub struct odock_call_t {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

abi_struct! {
    /// `odock_identity_t`: who is calling.
    pub struct odock_identity_t {
        /// `sizeof(odock_identity_t)` as the writer knows it.
        pub size: u32,
        /// Zero.
        pub reserved: u32,
        /// The tenant.
        pub tenant: odock_host_view_t,
        /// The virtual key's id.
        pub virtual_key_id: odock_host_view_t,
        /// The environment (for example `prod`).
        pub environment: odock_host_view_t,
    }
}

abi_struct! {
    /// `odock_target_t`: what is being called.
    pub struct odock_target_t {
        /// `sizeof(odock_target_t)` as the writer knows it.
        pub size: u32,
        /// `ODOCK_TARGET_*`.
        pub kind: u32,
        /// The model of an LLM call.
        pub model: odock_host_view_t,
        /// The MCP server of an MCP call.
        pub mcp_server: odock_host_view_t,
        /// The MCP tool of a `tools/call`.
        pub mcp_tool: odock_host_view_t,
    }
}

abi_struct! {
    /// `odock_index_t`: the parse-once index of the request body.
    pub struct odock_index_t {
        /// `sizeof(odock_index_t)` as the writer knows it.
        pub size: u32,
        /// `ODOCK_INDEX_*` bits.
        pub flags: u32,
        /// The messages, `messages_len` of them.
        pub messages: *const odock_message_t,
        /// How many messages.
        pub messages_len: usize,
        /// The JSON-RPC method of an MCP call.
        pub mcp_method: odock_host_view_t,
        /// The raw JSON text of a tool call's arguments.
        pub tool_arguments: odock_host_view_t,
    }
}

abi_struct! {
    /// `odock_request_t`: the request as the caller sent it.
    pub struct odock_request_t {
        /// `sizeof(odock_request_t)` as the writer knows it.
        pub size: u32,
        /// Zero.
        pub reserved: u32,
        /// The headers, `headers_len` of them.
        pub headers: *const odock_header_t,
        /// How many headers.
        pub headers_len: usize,
        /// The raw body.
        pub body: odock_host_view_t,
    }
}

abi_struct! {
    /// `odock_response_t`: the upstream's answer.
    pub struct odock_response_t {
        /// `sizeof(odock_response_t)` as the writer knows it.
        pub size: u32,
        /// The HTTP status.
        pub status: u32,
        /// The headers, `headers_len` of them.
        pub headers: *const odock_header_t,
        /// How many headers.
        pub headers_len: usize,
        /// The whole body (whole-body mode).
        pub body: odock_host_view_t,
        /// The current chunk (per-chunk mode).
        pub chunk: odock_host_view_t,
        /// The chunk's number, from 0.
        pub chunk_index: u64,
        /// `ODOCK_RESPONSE_*` bits.
        pub flags: u32,
        /// Zero.
        pub reserved: u32,
    }
}

abi_struct! {
    /// `odock_frame_t`: everything a gate hook receives about one request.
    pub struct odock_frame_t {
        /// `sizeof(odock_frame_t)` as the writer knows it.
        pub size: u32,
        /// The gate being run, one `ODOCK_GATE_*` bit.
        pub gate: u32,
        /// The request's id.
        pub request_id: u64,
        /// NULL without `ODOCK_CAP_READ_IDENTITY`.
        pub identity: *const odock_identity_t,
        /// Always set.
        pub target: *const odock_target_t,
        /// Always set.
        pub index: *const odock_index_t,
        /// Always set.
        pub request: *const odock_request_t,
        /// NULL at the request gate.
        pub response: *const odock_response_t,
    }
}

abi_struct! {
    /// `odock_verdict_t`: what a hook decided.
    pub struct odock_verdict_t {
        /// `sizeof(odock_verdict_t)` as the host knows it.
        pub size: u32,
        /// `ODOCK_VERDICT_*`.
        pub kind: u32,
        /// BLOCK: the HTTP status, 400 to 599.
        pub http_status: u32,
        /// Zero.
        pub reserved: u32,
        /// BLOCK: the user-visible reason (UTF-8).
        pub reason: odock_plugin_view_t,
        /// BLOCK: the internal detail, for evidence only.
        pub detail: odock_plugin_view_t,
        /// PAUSE: the integration call's token.
        pub pause_token: u64,
    }
}

abi_struct! {
    /// `odock_init_args_t`: what init receives besides the host table.
    pub struct odock_init_args_t {
        /// `sizeof(odock_init_args_t)` as the host knows it.
        pub size: u32,
        /// The worker this instance serves.
        pub worker_index: u32,
        /// The binding's configuration, valid until destroy.
        pub config: odock_host_view_t,
    }
}

abi_struct! {
    /// `odock_integration_answer_t`: the answer to an integration call.
    pub struct odock_integration_answer_t {
        /// `sizeof(odock_integration_answer_t)` as the host knows it.
        pub size: u32,
        /// `ODOCK_ANSWER_*`.
        pub outcome: u32,
        /// The token `call_integration` returned.
        pub token: u64,
        /// The integration's answer.
        pub body: odock_host_view_t,
    }
}

/// `log`.
pub type odock_log_fn = Option<
    unsafe extern "C" fn(
        call: *mut odock_call_t,
        level: u32,
        message: odock_plugin_view_t,
    ) -> odock_status_t,
>;
/// `read_config`.
pub type odock_read_config_fn = Option<
    unsafe extern "C" fn(call: *mut odock_call_t, out: *mut odock_host_view_t) -> odock_status_t,
>;
/// `set_header`, `set_metadata`, `replace_body_field`, `emit_evidence`,
/// `queue_followup`: two views.
pub type odock_two_views_fn = Option<
    unsafe extern "C" fn(
        call: *mut odock_call_t,
        a: odock_plugin_view_t,
        b: odock_plugin_view_t,
    ) -> odock_status_t,
>;
/// `remove_header`.
pub type odock_one_view_fn =
    Option<unsafe extern "C" fn(call: *mut odock_call_t, a: odock_plugin_view_t) -> odock_status_t>;
/// `replace_body_range`.
pub type odock_replace_range_fn = Option<
    unsafe extern "C" fn(
        call: *mut odock_call_t,
        offset: u64,
        length: u64,
        bytes: odock_plugin_view_t,
    ) -> odock_status_t,
>;
/// `call_integration`.
pub type odock_call_integration_fn = Option<
    unsafe extern "C" fn(
        call: *mut odock_call_t,
        name: odock_plugin_view_t,
        payload: odock_plugin_view_t,
        timeout_ms: u32,
        out_token: *mut u64,
    ) -> odock_status_t,
>;

abi_struct! {
    /// `odock_host_api_t`: the host calls, valid from init until destroy.
    pub struct odock_host_api_t {
        /// `sizeof(odock_host_api_t)` as the host knows it.
        pub size: u32,
        /// The host's major version.
        pub abi_major: u16,
        /// The host's minor version.
        pub abi_minor: u16,
        /// Writes a diagnostic line.
        pub log: odock_log_fn,
        /// Reads the binding's configuration.
        pub read_config: odock_read_config_fn,
        /// Sets a header.
        pub set_header: odock_two_views_fn,
        /// Removes a header.
        pub remove_header: odock_one_view_fn,
        /// Sets a metadata entry.
        pub set_metadata: odock_two_views_fn,
        /// Replaces a byte range of the body.
        pub replace_body_range: odock_replace_range_fn,
        /// Replaces a JSON field of the body.
        pub replace_body_field: odock_two_views_fn,
        /// Emits an evidence record.
        pub emit_evidence: odock_two_views_fn,
        /// Starts an integration call.
        pub call_integration: odock_call_integration_fn,
        /// Queues follow-up work.
        pub queue_followup: odock_two_views_fn,
    }
}

/// `odock_init_fn`.
pub type odock_init_fn = Option<
    unsafe extern "C" fn(
        host: *const odock_host_api_t,
        call: *mut odock_call_t,
        args: *const odock_init_args_t,
        out_instance: *mut *mut odock_instance_t,
    ) -> odock_status_t,
>;
/// `odock_destroy_fn`.
pub type odock_destroy_fn = Option<unsafe extern "C" fn(instance: *mut odock_instance_t)>;
/// `odock_gate_fn`.
pub type odock_gate_fn = Option<
    unsafe extern "C" fn(
        instance: *mut odock_instance_t,
        call: *mut odock_call_t,
        frame: *const odock_frame_t,
        verdict: *mut odock_verdict_t,
    ) -> odock_status_t,
>;
/// `odock_answer_fn`.
pub type odock_answer_fn = Option<
    unsafe extern "C" fn(
        instance: *mut odock_instance_t,
        call: *mut odock_call_t,
        frame: *const odock_frame_t,
        answer: *const odock_integration_answer_t,
        verdict: *mut odock_verdict_t,
    ) -> odock_status_t,
>;
/// `odock_followup_fn`.
pub type odock_followup_fn = Option<
    unsafe extern "C" fn(
        instance: *mut odock_instance_t,
        call: *mut odock_call_t,
        kind: odock_host_view_t,
        payload: odock_host_view_t,
    ) -> odock_status_t,
>;

abi_struct! {
    /// `odock_plugin_descriptor_t`: who the plugin is and what it needs.
    pub struct odock_plugin_descriptor_t {
        /// `sizeof(odock_plugin_descriptor_t)` as the plugin was built.
        pub size: u32,
        /// The plugin's major version.
        pub abi_major: u16,
        /// The lowest host minor the plugin needs.
        pub abi_minor: u16,
        /// The plugin's name.
        pub name: odock_plugin_view_t,
        /// The plugin's own version.
        pub version: odock_plugin_view_t,
        /// A JSON Schema of the configuration.
        pub config_schema: odock_plugin_view_t,
        /// The integrations the plugin may call.
        pub integrations: *const odock_plugin_view_t,
        /// How many integrations.
        pub integrations_len: usize,
        /// `ODOCK_CAP_*` bits asked for.
        pub capabilities: u64,
        /// `ODOCK_GATE_*` bits joined.
        pub gates: u32,
        /// `ODOCK_RESPONSE_*`.
        pub response_mode: u32,
        /// Creates a per-worker instance.
        pub init: odock_init_fn,
        /// Frees an instance.
        pub destroy: odock_destroy_fn,
        /// The request gate hook.
        pub on_request: odock_gate_fn,
        /// The response gate hook.
        pub on_response: odock_gate_fn,
        /// The complete gate hook.
        pub on_complete: odock_gate_fn,
        /// The integration-answer hook.
        pub on_integration_answer: odock_answer_fn,
        /// The follow-up hook.
        pub on_followup: odock_followup_fn,
    }
}

versioned!(
    odock_identity_t,
    odock_target_t,
    odock_index_t,
    odock_request_t,
    odock_response_t,
    odock_frame_t,
    odock_verdict_t,
    odock_init_args_t,
    odock_integration_answer_t,
    odock_host_api_t,
    odock_plugin_descriptor_t,
);

/// `odock_plugin_entry_fn`: the type of the entry function.
pub type odock_plugin_entry_fn = unsafe extern "C" fn() -> *const odock_plugin_descriptor_t;

/// One struct's layout, type-erased, for the layout check.
#[derive(Debug, Clone, Copy)]
pub struct StructLayout {
    /// The C typedef name.
    pub c_name: &'static str,
    /// `sizeof`.
    pub size: usize,
    /// `alignof`.
    pub align: usize,
    /// Every field.
    pub fields: &'static [AbiField],
}

const fn layout<T: AbiLayout>() -> StructLayout {
    StructLayout {
        c_name: T::C_NAME,
        size: T::SIZE,
        align: T::ALIGN,
        fields: T::FIELDS,
    }
}

/// Every struct of the header with its layout, for the layout check.
pub const STRUCTS: &[StructLayout] = &[
    layout::<odock_host_view_t>(),
    layout::<odock_plugin_view_t>(),
    layout::<odock_header_t>(),
    layout::<odock_message_t>(),
    layout::<odock_identity_t>(),
    layout::<odock_target_t>(),
    layout::<odock_index_t>(),
    layout::<odock_request_t>(),
    layout::<odock_response_t>(),
    layout::<odock_frame_t>(),
    layout::<odock_verdict_t>(),
    layout::<odock_init_args_t>(),
    layout::<odock_integration_answer_t>(),
    layout::<odock_host_api_t>(),
    layout::<odock_plugin_descriptor_t>(),
];
