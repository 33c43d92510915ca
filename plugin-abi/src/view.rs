//! Borrowed views with lifetimes: the frozen value types of the header
//! (`odock_header_t`, `odock_message_t`) wrapped so safe code can build and
//! read them. A `&[Header<'a>]` has the very layout of an
//! `odock_header_t[]`, so the host lends a whole array to a plugin without
//! copying it.

use core::marker::PhantomData;
use core::{fmt, ptr, slice};

use crate::sys::{
    ODOCK_INDEX_INVALID, ODOCK_INDEX_STREAM, ODOCK_RESPONSE_LAST_CHUNK, Versioned, odock_frame_t,
    odock_header_t, odock_host_view_t, odock_identity_t, odock_index_t, odock_message_t,
    odock_request_t, odock_response_t, odock_target_t,
};
use crate::{Error, Gate, Role, TargetKind};

/// Reads a host view as a slice.
///
/// # Safety
/// When `view.len > 0`, `view.ptr` must point to `view.len` initialized
/// bytes that stay valid and unchanged for `'a`. A view with `len == 0`
/// (whatever its pointer) is always fine and reads as empty.
pub unsafe fn host_bytes<'a>(view: odock_host_view_t) -> &'a [u8] {
    if view.len == 0 || view.ptr.is_null() {
        return &[];
    }
    // SAFETY: non-null, and the caller vouches for `len` live bytes for 'a.
    unsafe { slice::from_raw_parts(view.ptr, view.len) }
}

/// Reads `len` elements at `ptr` as a slice, empty for a NULL pointer.
///
/// # Safety
/// When `len > 0` and `ptr` is not NULL, `ptr` must point to `len`
/// initialized, aligned `T`s valid for `'a`.
pub(crate) unsafe fn raw_slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 || ptr.is_null() {
        return &[];
    }
    // SAFETY: non-null, and the caller vouches for `len` live elements.
    unsafe { slice::from_raw_parts(ptr, len) }
}

/// One HTTP header, borrowed for `'a`; layout-identical to `odock_header_t`.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Header<'a> {
    raw: odock_header_t,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> Header<'a> {
    /// A header of this name and value.
    pub const fn new(name: &'a [u8], value: &'a [u8]) -> Header<'a> {
        Header {
            raw: odock_header_t {
                name: odock_host_view_t::from_slice(name),
                value: odock_host_view_t::from_slice(value),
            },
            _bytes: PhantomData,
        }
    }

    /// The name as it arrived.
    pub fn name(&self) -> &'a [u8] {
        // SAFETY: a `Header<'a>` is only made by `new` from slices that live
        // for 'a, or by `from_raw_slice`, whose caller vouches for the same.
        unsafe { host_bytes(self.raw.name) }
    }

    /// The value as it arrived.
    pub fn value(&self) -> &'a [u8] {
        // SAFETY: as in `name`.
        unsafe { host_bytes(self.raw.value) }
    }

    /// Views an `odock_header_t` array as headers.
    ///
    /// # Safety
    /// When `len > 0` and `ptr` is not NULL, `ptr` must point to `len`
    /// headers whose views all point to bytes valid for `'a`.
    pub unsafe fn from_raw_slice(ptr: *const odock_header_t, len: usize) -> &'a [Header<'a>] {
        // SAFETY: `Header` is `repr(transparent)` over `odock_header_t`, and
        // the caller vouches for the array and the bytes it points to.
        unsafe { raw_slice(ptr.cast::<Header<'a>>(), len) }
    }

    /// The array as the header lays it out.
    pub fn as_raw_slice(headers: &[Header<'a>]) -> *const odock_header_t {
        headers.as_ptr().cast()
    }
}

// SAFETY: a `Header<'a>` is two `&'a [u8]` in the header's layout; shared
// byte slices may be sent and shared between threads.
unsafe impl Send for Header<'_> {}
// SAFETY: as for `Send`: nothing in it is ever written.
unsafe impl Sync for Header<'_> {}

impl fmt::Debug for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.name().escape_ascii(),
            self.value().escape_ascii()
        )
    }
}

/// One message of an LLM request, borrowed for `'a`; layout-identical to
/// `odock_message_t`.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Message<'a> {
    raw: odock_message_t,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> Message<'a> {
    /// A message with this role, the role's spelling and the raw JSON text
    /// of its content.
    pub const fn new(role: Role, role_name: &'a [u8], content: &'a [u8]) -> Message<'a> {
        Message {
            raw: odock_message_t {
                role: role as u32,
                reserved: 0,
                role_name: odock_host_view_t::from_slice(role_name),
                content: odock_host_view_t::from_slice(content),
            },
            _bytes: PhantomData,
        }
    }

    /// The role.
    pub fn role(&self) -> Role {
        Role::from_raw(self.raw.role)
    }

    /// The role as spelled in the request.
    pub fn role_name(&self) -> &'a [u8] {
        // SAFETY: as in `Header::name`.
        unsafe { host_bytes(self.raw.role_name) }
    }

    /// The raw JSON text of the content, not decoded.
    pub fn content(&self) -> &'a [u8] {
        // SAFETY: as in `Header::name`.
        unsafe { host_bytes(self.raw.content) }
    }

    /// Views an `odock_message_t` array as messages.
    ///
    /// # Safety
    /// As for [`Header::from_raw_slice`].
    pub unsafe fn from_raw_slice(ptr: *const odock_message_t, len: usize) -> &'a [Message<'a>] {
        // SAFETY: `Message` is `repr(transparent)` over `odock_message_t`,
        // and the caller vouches for the array and its bytes.
        unsafe { raw_slice(ptr.cast::<Message<'a>>(), len) }
    }

    /// The array as the header lays it out.
    pub fn as_raw_slice(messages: &[Message<'a>]) -> *const odock_message_t {
        messages.as_ptr().cast()
    }
}

// SAFETY: a `Message<'a>` is a role and two `&'a [u8]`; shared byte slices
// may be sent and shared between threads.
unsafe impl Send for Message<'_> {}
// SAFETY: as for `Send`: nothing in it is ever written.
unsafe impl Sync for Message<'_> {}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("role", &self.role())
            .field("content", &self.content().escape_ascii().to_string())
            .finish()
    }
}

/// Who is calling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The tenant.
    pub tenant: &'a [u8],
    /// The virtual key's id.
    pub virtual_key_id: &'a [u8],
    /// The environment (for example `prod`).
    pub environment: &'a [u8],
}

/// What is being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Model, MCP, or none.
    pub kind: TargetKind,
    /// The model of an LLM call.
    pub model: &'a [u8],
    /// The MCP server of an MCP call.
    pub mcp_server: &'a [u8],
    /// The MCP tool of a `tools/call`.
    pub mcp_tool: &'a [u8],
}

impl Default for Target<'_> {
    fn default() -> Self {
        Target {
            kind: TargetKind::None,
            model: &[],
            mcp_server: &[],
            mcp_tool: &[],
        }
    }
}

impl<'a> Target<'a> {
    /// An LLM call to `model`.
    pub const fn model(model: &'a [u8]) -> Target<'a> {
        Target {
            kind: TargetKind::Model,
            model,
            mcp_server: &[],
            mcp_tool: &[],
        }
    }

    /// An MCP call to `tool` (may be empty) of `server`.
    pub const fn mcp(server: &'a [u8], tool: &'a [u8]) -> Target<'a> {
        Target {
            kind: TargetKind::Mcp,
            model: &[],
            mcp_server: server,
            mcp_tool: tool,
        }
    }
}

/// The parse-once index of the request body: views into the original bytes,
/// raw JSON text, not decoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Index<'a> {
    /// The caller asked to stream.
    pub stream: bool,
    /// The body did not parse as its API's JSON: the views hold only what
    /// was read before the fault (`ODOCK_INDEX_INVALID`).
    pub invalid: bool,
    /// The messages of an LLM request.
    pub messages: &'a [Message<'a>],
    /// The JSON-RPC method of an MCP call.
    pub mcp_method: &'a [u8],
    /// The arguments of an MCP `tools/call`.
    pub tool_arguments: &'a [u8],
}

/// The request as the caller sent it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The headers.
    pub headers: &'a [Header<'a>],
    /// The raw body.
    pub body: &'a [u8],
}

/// The upstream's answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Response<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: &'a [Header<'a>],
    /// The whole body (whole-body mode, and at the complete gate when kept).
    pub body: &'a [u8],
    /// The current chunk (per-chunk mode).
    pub chunk: &'a [u8],
    /// The chunk's number, from 0.
    pub chunk_index: u64,
    /// No chunk follows this one.
    pub last_chunk: bool,
}

/// Everything a gate sees of one request: the safe form of `odock_frame_t`.
///
/// The host builds one from its parse-once index and lends it to each plugin
/// with [`Frame::with_raw`]; the SDK reads it back with [`Frame::from_raw`].
/// A plugin's unit tests can build one directly.
///
/// ```
/// use odock_plugin_abi::{Gate, view::{Frame, Header, Target}};
/// let headers = [Header::new(b"x-team", b"search")];
/// let mut frame = Frame::new(Gate::Request, 7);
/// frame.target = Target::model(b"gpt-4o");
/// frame.request.headers = &headers;
/// assert_eq!(frame.request_header(b"X-Team"), Some(&b"search"[..]));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The gate being run.
    pub gate: Gate,
    /// The request's id.
    pub request_id: u64,
    /// Who is calling; `None` without the read-identity capability.
    pub identity: Option<Identity<'a>>,
    /// What is being called.
    pub target: Target<'a>,
    /// The parse-once index.
    pub index: Index<'a>,
    /// The request.
    pub request: Request<'a>,
    /// The answer; `None` at the request gate.
    pub response: Option<Response<'a>>,
}

impl<'a> Frame<'a> {
    /// An empty frame for `gate`.
    pub fn new(gate: Gate, request_id: u64) -> Frame<'a> {
        Frame {
            gate,
            request_id,
            identity: None,
            target: Target::default(),
            index: Index::default(),
            request: Request::default(),
            response: None,
        }
    }

    /// The first request header of this name (ASCII case-insensitive).
    pub fn request_header(&self, name: &[u8]) -> Option<&'a [u8]> {
        find_header(self.request.headers, name)
    }

    /// The first response header of this name (ASCII case-insensitive).
    pub fn response_header(&self, name: &[u8]) -> Option<&'a [u8]> {
        find_header(self.response?.headers, name)
    }

    /// Lays the frame out as the header does, on the stack, and hands it to
    /// `f`. The raw frame points into `self`; it is valid only inside `f`.
    pub fn with_raw<R>(&self, f: impl FnOnce(&odock_frame_t) -> R) -> R {
        let identity = self.identity.map(|id| odock_identity_t {
            tenant: odock_host_view_t::from_slice(id.tenant),
            virtual_key_id: odock_host_view_t::from_slice(id.virtual_key_id),
            environment: odock_host_view_t::from_slice(id.environment),
            ..odock_identity_t::SIZED
        });
        let target = odock_target_t {
            kind: self.target.kind as u32,
            model: odock_host_view_t::from_slice(self.target.model),
            mcp_server: odock_host_view_t::from_slice(self.target.mcp_server),
            mcp_tool: odock_host_view_t::from_slice(self.target.mcp_tool),
            ..odock_target_t::SIZED
        };
        let index = odock_index_t {
            flags: if self.index.stream {
                ODOCK_INDEX_STREAM
            } else {
                0
            } | if self.index.invalid {
                ODOCK_INDEX_INVALID
            } else {
                0
            },
            messages: Message::as_raw_slice(self.index.messages),
            messages_len: self.index.messages.len(),
            mcp_method: odock_host_view_t::from_slice(self.index.mcp_method),
            tool_arguments: odock_host_view_t::from_slice(self.index.tool_arguments),
            ..odock_index_t::SIZED
        };
        let request = odock_request_t {
            headers: Header::as_raw_slice(self.request.headers),
            headers_len: self.request.headers.len(),
            body: odock_host_view_t::from_slice(self.request.body),
            ..odock_request_t::SIZED
        };
        let response = self.response.map(|r| odock_response_t {
            status: u32::from(r.status),
            headers: Header::as_raw_slice(r.headers),
            headers_len: r.headers.len(),
            body: odock_host_view_t::from_slice(r.body),
            chunk: odock_host_view_t::from_slice(r.chunk),
            chunk_index: r.chunk_index,
            flags: if r.last_chunk {
                ODOCK_RESPONSE_LAST_CHUNK
            } else {
                0
            },
            ..odock_response_t::SIZED
        });
        let raw = odock_frame_t {
            gate: self.gate.bit(),
            request_id: self.request_id,
            identity: identity.as_ref().map_or(ptr::null(), ptr::from_ref),
            target: &target,
            index: &index,
            request: &request,
            response: response.as_ref().map_or(ptr::null(), ptr::from_ref),
            ..odock_frame_t::SIZED
        };
        f(&raw)
    }

    /// Reads a frame the host laid out.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the frame is NULL, a required part
    /// is NULL, a part is smaller than this header version's struct, or the
    /// gate is not one gate.
    ///
    /// # Safety
    /// `raw`, when not NULL, must point to a frame whose pointers and views
    /// are valid for `'a`, as the header promises for the duration of a hook.
    pub unsafe fn from_raw(raw: *const odock_frame_t) -> Result<Frame<'a>, Error> {
        // SAFETY: the caller vouches for every pointer reachable from `raw`
        // for 'a; `part` checks NULL and each part's declared size.
        unsafe {
            let frame: &'a odock_frame_t = part(raw).ok_or(Error::InvalidArgument)?;
            let gate = Gate::from_bit(frame.gate).ok_or(Error::InvalidArgument)?;
            let target: &'a odock_target_t = part(frame.target).ok_or(Error::InvalidArgument)?;
            let index: &'a odock_index_t = part(frame.index).ok_or(Error::InvalidArgument)?;
            let request: &'a odock_request_t = part(frame.request).ok_or(Error::InvalidArgument)?;
            let identity = optional_part::<odock_identity_t>(frame.identity)?;
            let response = optional_part::<odock_response_t>(frame.response)?;
            Ok(Frame {
                gate,
                request_id: frame.request_id,
                identity: identity.map(|id| Identity {
                    tenant: host_bytes(id.tenant),
                    virtual_key_id: host_bytes(id.virtual_key_id),
                    environment: host_bytes(id.environment),
                }),
                target: Target {
                    kind: TargetKind::from_raw(target.kind),
                    model: host_bytes(target.model),
                    mcp_server: host_bytes(target.mcp_server),
                    mcp_tool: host_bytes(target.mcp_tool),
                },
                index: Index {
                    stream: index.flags & ODOCK_INDEX_STREAM != 0,
                    invalid: index.flags & ODOCK_INDEX_INVALID != 0,
                    messages: Message::from_raw_slice(index.messages, index.messages_len),
                    mcp_method: host_bytes(index.mcp_method),
                    tool_arguments: host_bytes(index.tool_arguments),
                },
                request: Request {
                    headers: Header::from_raw_slice(request.headers, request.headers_len),
                    body: host_bytes(request.body),
                },
                response: response.map(|r| Response {
                    status: u16::try_from(r.status).unwrap_or(0),
                    headers: Header::from_raw_slice(r.headers, r.headers_len),
                    body: host_bytes(r.body),
                    chunk: host_bytes(r.chunk),
                    chunk_index: r.chunk_index,
                    last_chunk: r.flags & ODOCK_RESPONSE_LAST_CHUNK != 0,
                }),
            })
        }
    }
}

fn find_header<'a>(headers: &[Header<'a>], name: &[u8]) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .map(|h| h.value())
}

/// A versioned part the header says is present: not NULL, and at least as
/// large as this header version's struct.
///
/// # Safety
/// `ptr`, when not NULL, points to a `T` valid for `'a` (at least its
/// `size` field, and the whole struct when `size` says so).
pub unsafe fn part<'a, T: Versioned>(ptr: *const T) -> Option<&'a T> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: not NULL; the caller vouches for the `size` field at least.
    // `size` is the first field (rule R3), so reading it through a `u32`
    // pointer touches only those four bytes.
    let size = unsafe { ptr.cast::<u32>().read() };
    if (size as usize) < size_of::<T>() {
        return None;
    }
    // SAFETY: the writer says the struct is at least as large as ours, and
    // the caller vouches for the memory it covers.
    Some(unsafe { &*ptr })
}

/// Like [`part`] for a part that may be absent (NULL).
///
/// # Safety
/// As for [`part`].
unsafe fn optional_part<'a, T: Versioned>(ptr: *const T) -> Result<Option<&'a T>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded from the caller.
    unsafe { part(ptr) }.map(Some).ok_or(Error::InvalidArgument)
}
