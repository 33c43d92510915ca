//! The parse-once frame index: one pass over a JSON body, views into it.
//!
//! A worker indexes a frame once and lends every plugin of every gate the
//! same [`FrameIndex`]: where the model, the stream flag, the messages and
//! their roles, the MCP method, the tool name and its arguments are, as byte
//! [`Span`]s into the original body. Nothing is copied, decoded or
//! allocated; a plugin that needs the decoded text of a string unescapes it
//! into a buffer of its own with [`JsonStr::unescape_into`].
//!
//! ```
//! use odock_dataplane::index::{self, ApiKind, Part};
//! use odock_plugin_abi::Role;
//!
//! let body = br#"{"model":"gpt-4o","stream":true,
//!   "messages":[{"role":"user","content":"caf\u00e9?"}]}"#;
//! let idx = index::index(body, Part::Request, ApiKind::from_path(b"/v1/chat/completions"));
//! assert!(idx.valid());
//! assert_eq!(idx.kind, ApiKind::OpenAiChat);
//! assert_eq!(idx.model.unwrap().get(body), b"gpt-4o");
//! assert!(idx.stream);
//! let m = idx.messages()[0];
//! assert_eq!(m.role, Role::User);
//! // The content view is the raw JSON value, quotes and escapes included ...
//! assert_eq!(m.content.unwrap().span.get(body), br#""caf\u00e9?""#);
//! // ... and a plugin that wants the text decodes it into its own buffer.
//! let mut buf = [0u8; 64];
//! let text = m.content.unwrap().as_str().unwrap().unescape_into(body, &mut buf)?;
//! assert_eq!(text, "café?");
//! # Ok::<(), index::UnescapeError>(())
//! ```
//!
//! # What is indexed
//!
//! The API kind comes from a hint (usually [`ApiKind::from_path`]); the body
//! confirms it (a `jsonrpc` or `method` member makes it MCP whatever the
//! hint) and, without a hint, decides it. One walk records the members of
//! every format below; members of other formats are skipped like unknown
//! ones.
//!
//! | part | format | members recorded |
//! |---|---|---|
//! | request | OpenAI chat completions | `model`, `stream`, `messages[].role`, `messages[].content` |
//! | request | OpenAI Responses | `model`, `stream`, `instructions` (as [`FrameIndex::system`]), `input` (a string: one user message; an array: one message per item, `role` and `content`, or `output` for a `function_call_output` item) |
//! | request | Anthropic messages | `model`, `stream`, `system` (string or blocks), `messages[]` |
//! | request, response | MCP JSON-RPC 2.0, single or batch | `jsonrpc`, `id`, `method`, `params`, `result`, `error`; `params.name` and `params.arguments` of `tools/call` and `prompts/get`; `params.uri` of `resources/read` |
//! | response | OpenAI chat completion | `model`, `choices[].message`, `choices[].finish_reason`, `usage` |
//! | response | Anthropic message | `model`, `role` and `content` (as choice 0), `stop_reason`, `usage` |
//! | SSE event | OpenAI chat completion chunk | `choices[].delta`, `choices[].finish_reason`, `usage`, `data: [DONE]` |
//! | SSE event | Anthropic stream event | `type`, `delta.text` (as choice 0's content), `delta.stop_reason`, `usage` |
//!
//! Besides the content value of each message, every piece of text is listed
//! in [`FrameIndex::texts`]: a string content, and the `text` member of each
//! part of an array content (`{"type":"text","text":...}`,
//! `input_text`, `output_text`), for the system prompt too. A DLP plugin
//! reads those and never walks JSON itself. Text nested deeper (a
//! `tool_result` block's own content array) is not listed; the content
//! value still spans it.
//!
//! # Spans
//!
//! Every position is a byte offset into the bytes given to [`index`] (for an
//! SSE event, the whole event, `data: ` prefix included), as `u32`: bodies
//! of 4 GiB or more are not indexed ([`ErrorKind::TooLarge`]). A [`Value`]
//! spans the whole raw JSON value, quotes included for a string: that is
//! what the plugin ABI's message content view carries. A [`JsonStr`] spans a
//! string's raw contents between the quotes, still escaped, and says whether
//! it holds any escape; when it does not, its bytes are the text.
//!
//! # Validity
//!
//! The index is valid when the body is one JSON text (RFC 8259: UTF-8,
//! strict numbers, no trailing commas, nothing but whitespace after it,
//! escapes well formed and surrogates paired) nested at most [`MAX_DEPTH`]
//! deep, and every member the index records has the type its format gives
//! it (`model` a string, `stream` a boolean, `messages` an array of
//! objects ...). A recorded member that appears twice in one object makes
//! the index invalid too: JSON parsers disagree about duplicates (most keep
//! the last, some the first), and a gateway that checked one `model` while
//! the upstream used the other would be bypassed. Keys are compared decoded,
//! so `"mod\u0065l"` is `model`, as it is to the upstream.
//!
//! An invalid index holds no spans, only [`FrameIndex::kind`] and the
//! [`IndexError`] naming the first byte that was wrong and why. It is not a
//! failure of the frame: the frame still passes the gates, and the scope's
//! rules decide what an invalid index means.
//!
//! # Bounds
//!
//! The scanner never recurses into unknown values (it skips them with a
//! 128-bit stack of container kinds), never reads out of bounds, and moves
//! forward on every step, so any input ends in a valid or invalid index in
//! time linear in its length. Arrays of the index have fixed capacities
//! ([`MAX_MESSAGES`], [`MAX_TEXTS`], [`MAX_CHOICES`], [`MAX_MCP_CALLS`]);
//! what does not fit is walked and validated but not recorded, and
//! [`FrameIndex::truncated`] says so.
#![forbid(unsafe_code)]

mod abi;
mod pointer;
mod scan;
mod sse;
#[cfg(test)]
mod tests;
mod unescape;
mod walk;

pub use pointer::{PointerError, locate};

pub use abi::AbiMessages;
pub use unescape::{UnescapeError, UnescapeErrorKind, unescape_into};

use core::fmt;
use core::ops::Range;

use odock_plugin_abi::Role;

/// The deepest nesting of arrays and objects a body may have. Deeper is
/// [`ErrorKind::TooDeep`].
pub const MAX_DEPTH: usize = 128;
/// Messages recorded per frame (the system prompt is apart).
pub const MAX_MESSAGES: usize = 128;
/// Text pieces recorded per frame.
pub const MAX_TEXTS: usize = 256;
/// Choices recorded per response or SSE event.
pub const MAX_CHOICES: usize = 8;
/// JSON-RPC calls recorded per MCP body (a batch holds several).
pub const MAX_MCP_CALLS: usize = 16;

/// A byte range of the indexed body: `start` and `len` in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Span {
    /// The span of `len` bytes at `start`.
    pub const fn new(start: u32, len: u32) -> Span {
        Span { start, len }
    }

    /// The offset just past the last byte.
    pub const fn end(self) -> u32 {
        self.start + self.len
    }

    /// The span as a range of `usize` offsets.
    pub const fn range(self) -> Range<usize> {
        self.start as usize..self.end() as usize
    }

    /// The bytes of the span in `body`, the bytes it was indexed from.
    ///
    /// # Panics
    /// When the span lies outside `body`: it was indexed from other bytes.
    pub fn get(self, body: &[u8]) -> &[u8] {
        &body[self.range()]
    }
}

/// The type of a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// A string.
    String,
    /// A number.
    Number,
    /// An object.
    Object,
    /// An array.
    Array,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
}

impl ValueKind {
    /// The JSON name of the type.
    pub const fn name(self) -> &'static str {
        match self {
            ValueKind::String => "a string",
            ValueKind::Number => "a number",
            ValueKind::Object => "an object",
            ValueKind::Array => "an array",
            ValueKind::Bool => "a boolean",
            ValueKind::Null => "null",
        }
    }
}

/// A JSON string: its raw contents between the quotes, still escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JsonStr {
    /// The contents, without the quotes, escapes as written.
    pub span: Span,
    /// The contents hold at least one `\` escape. Without one, the raw
    /// bytes are the text (and valid UTF-8).
    pub escaped: bool,
}

impl JsonStr {
    /// The raw contents in `body`, escapes as written.
    ///
    /// # Panics
    /// As [`Span::get`].
    pub fn get(self, body: &[u8]) -> &[u8] {
        self.span.get(body)
    }

    /// The span of the whole string value, quotes included.
    pub const fn quoted(self) -> Span {
        Span::new(self.span.start - 1, self.span.len + 2)
    }

    /// The text, decoded into `buf`. A buffer of [`JsonStr::span`]`.len`
    /// bytes is always large enough: decoding never lengthens a string.
    ///
    /// # Errors
    /// [`UnescapeErrorKind::BufferTooSmall`] when `buf` is too short. (A
    /// string of a valid index has well-formed escapes and UTF-8, so no
    /// other error can come back for one.)
    ///
    /// # Panics
    /// As [`Span::get`].
    pub fn unescape_into<'b>(
        self,
        body: &[u8],
        buf: &'b mut [u8],
    ) -> Result<&'b str, UnescapeError> {
        unescape_into(self.get(body), buf)
    }

    /// The text is exactly `text`, compared decoded, without a buffer.
    ///
    /// # Panics
    /// As [`Span::get`].
    pub fn eq_text(self, body: &[u8], text: &str) -> bool {
        let raw = self.get(body);
        if !self.escaped {
            return raw == text.as_bytes();
        }
        unescape::decoded_eq(raw, text.as_bytes())
    }
}

/// A JSON value of any type: the span of its whole raw text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Value {
    /// The raw JSON text of the value (a string with its quotes).
    pub span: Span,
    /// The value's type.
    pub kind: ValueKind,
    /// For a string: it holds an escape. False for other types.
    pub escaped: bool,
}

impl Value {
    /// The string inside a string value; `None` for other types.
    pub const fn as_str(self) -> Option<JsonStr> {
        match self.kind {
            ValueKind::String => Some(JsonStr {
                span: Span::new(self.span.start + 1, self.span.len - 2),
                escaped: self.escaped,
            }),
            _ => None,
        }
    }

    /// The raw JSON text in `body`.
    ///
    /// # Panics
    /// As [`Span::get`].
    pub fn get(self, body: &[u8]) -> &[u8] {
        self.span.get(body)
    }
}

/// Which API a body speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ApiKind {
    /// Not known (no hint, and the body did not say).
    #[default]
    Unknown,
    /// OpenAI chat completions (`/v1/chat/completions`).
    OpenAiChat,
    /// OpenAI Responses (`/v1/responses`).
    OpenAiResponses,
    /// Anthropic messages (`/v1/messages`).
    AnthropicMessages,
    /// MCP: JSON-RPC 2.0.
    Mcp,
}

impl ApiKind {
    /// The kind a request path suggests, query string ignored: a path ending
    /// in `/chat/completions`, `/responses`, `/messages`, or holding an
    /// `mcp` segment. Anything else is [`ApiKind::Unknown`] and the body
    /// decides.
    pub fn from_path(path: &[u8]) -> ApiKind {
        let path = match path.iter().position(|&b| b == b'?' || b == b'#') {
            Some(q) => &path[..q],
            None => path,
        };
        let path = path.strip_suffix(b"/").unwrap_or(path);
        if path.ends_with(b"/chat/completions") {
            ApiKind::OpenAiChat
        } else if path.ends_with(b"/responses") {
            ApiKind::OpenAiResponses
        } else if path.ends_with(b"/messages") {
            ApiKind::AnthropicMessages
        } else if path.split(|&b| b == b'/').any(|seg| seg == b"mcp") {
            ApiKind::Mcp
        } else {
            ApiKind::Unknown
        }
    }
}

/// Which part of an exchange the bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// A request body.
    Request,
    /// A whole response body.
    Response,
    /// One server-sent event of a streamed response: its lines (`event:`,
    /// `data:` ...), with or without the blank line that ends it.
    SseEvent,
}

/// Where a message of the index came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// An item of `messages`.
    Messages,
    /// The `input` of a Responses request: a string or an item of the array.
    Input,
    /// The top-level `system` (Anthropic) or `instructions` (Responses).
    System,
    /// The `message` or `delta` of a choice, or an Anthropic response.
    Choice,
}

/// One message: its role and the span of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSpan {
    /// The role, classified from the decoded role string; [`Role::User`] for
    /// a Responses `input` string, [`Role::System`] for a top-level system
    /// prompt, [`Role::Other`] when absent or not one of the known roles.
    pub role: Role,
    /// The role as spelled (`None` when the message has no `role`).
    pub role_name: Option<JsonStr>,
    /// The key that carried a top-level system prompt (`system` or
    /// `instructions`), so a view of the role's spelling can point into the
    /// body even then. `None` otherwise.
    pub key: Option<JsonStr>,
    /// The content value: a string, an array of parts, or `null`.
    pub content: Option<Value>,
    /// Where the message came from.
    pub origin: Origin,
}

impl MessageSpan {
    const fn empty(origin: Origin) -> MessageSpan {
        MessageSpan {
            role: Role::Other,
            role_name: None,
            key: None,
            content: None,
            origin,
        }
    }

    /// The span of the role's spelling: the role string, or the key of a
    /// top-level system prompt.
    pub fn role_name_span(&self) -> Option<Span> {
        self.role_name.or(self.key).map(|s| s.span)
    }
}

/// Which message a text piece belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextOwner {
    /// The top-level system prompt ([`FrameIndex::system`]).
    System,
    /// The message at this position of [`FrameIndex::messages`].
    Message(u16),
    /// The choice at this position of [`FrameIndex::choices`].
    Choice(u16),
}

/// One piece of text: a string content or the `text` of a content part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextSpan {
    /// Whose text it is.
    pub owner: TextOwner,
    /// The text, raw.
    pub text: JsonStr,
}

/// One choice of a response (or of an SSE chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// `message` (a whole response) or `delta` (a chunk).
    pub message: MessageSpan,
    /// `finish_reason` (or Anthropic's `stop_reason`), when a string.
    pub finish_reason: Option<JsonStr>,
}

/// Token counts of a response's `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The whole `usage` object.
    pub raw: Value,
    /// `prompt_tokens` (OpenAI) or `input_tokens` (Anthropic, Responses).
    pub prompt_tokens: Option<u64>,
    /// `completion_tokens` (OpenAI) or `output_tokens`.
    pub completion_tokens: Option<u64>,
    /// `total_tokens`.
    pub total_tokens: Option<u64>,
}

/// The MCP methods the index looks into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum McpMethod {
    /// No `method`: a JSON-RPC response.
    None,
    /// `tools/call`.
    ToolsCall,
    /// `resources/read`.
    ResourcesRead,
    /// `prompts/get`.
    PromptsGet,
    /// Any other method (see the spelling in [`McpCall::method`]).
    Other,
}

/// One JSON-RPC object of an MCP body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McpCall {
    /// `jsonrpc` (the version, `2.0`).
    pub jsonrpc: Option<JsonStr>,
    /// `id`: a string, a number or null; absent in a notification.
    pub id: Option<Value>,
    /// `method`, as spelled.
    pub method: Option<JsonStr>,
    /// The method, classified from its decoded text.
    pub kind: McpMethod,
    /// The whole `params`.
    pub params: Option<Value>,
    /// `params.name`: the tool of `tools/call`, the prompt of `prompts/get`.
    pub name: Option<JsonStr>,
    /// `params.arguments` of `tools/call` and `prompts/get` (an object).
    pub arguments: Option<Value>,
    /// `params.uri` of `resources/read`.
    pub uri: Option<JsonStr>,
    /// `result` of a response.
    pub result: Option<Value>,
    /// `error` of a response.
    pub error: Option<Value>,
}

impl McpCall {
    const EMPTY: McpCall = McpCall {
        jsonrpc: None,
        id: None,
        method: None,
        kind: McpMethod::None,
        params: None,
        name: None,
        arguments: None,
        uri: None,
        result: None,
        error: None,
    };
}

/// The lines of a server-sent event that the index read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SseFields {
    /// The value of the `event:` line.
    pub event: Option<Span>,
    /// The value of the `data:` line (the JSON text, or `[DONE]`).
    pub data: Option<Span>,
    /// The data is `[DONE]`: the stream's end marker.
    pub done: bool,
}

/// What was wrong with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The body ended inside a value.
    UnexpectedEnd,
    /// A value was expected and this byte cannot start one.
    ExpectedValue,
    /// An object key (a string) was expected.
    ExpectedKey,
    /// A `:` was expected after an object key.
    ExpectedColon,
    /// A `,` or `}` was expected after an object member.
    ExpectedCommaOrBrace,
    /// A `,` or `]` was expected after an array element.
    ExpectedCommaOrBracket,
    /// A backslash escape other than `\" \\ \/ \b \f \n \r \t \uXXXX`.
    InvalidEscape,
    /// A `\u` escape of a surrogate that is not one half of a pair.
    LoneSurrogate,
    /// A control character (below U+0020) inside a string.
    ControlCharacter,
    /// Bytes in a string that are not UTF-8.
    InvalidUtf8,
    /// A number not in JSON's grammar (leading zero, lone `-`, `1.`, `1e`).
    InvalidNumber,
    /// A word that is not `true`, `false` or `null`.
    InvalidLiteral,
    /// Something other than whitespace after the JSON text.
    TrailingBytes,
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The body is 4 GiB or more.
    TooLarge,
    /// The body is a JSON value that no format starts with (not an object,
    /// nor an array of objects for a batch).
    NotAnObject,
    /// A recorded member has the wrong type.
    WrongType {
        /// The member, as a path (`messages[].role`).
        member: &'static str,
        /// The type it must have.
        expected: &'static str,
    },
    /// A recorded member appears twice in the same object.
    DuplicateMember {
        /// The member, as a path.
        member: &'static str,
    },
    /// An SSE event with more than one `data:` line (its JSON would be the
    /// lines joined, which is not a view of the event's bytes).
    SseMultiLineData,
    /// Lines after the blank line that ends an SSE event: a second event.
    SseTrailingEvent,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedEnd => f.write_str("the body ends inside a JSON value"),
            ErrorKind::ExpectedValue => f.write_str("expected a JSON value"),
            ErrorKind::ExpectedKey => f.write_str("expected an object key (a string)"),
            ErrorKind::ExpectedColon => f.write_str("expected ':' after an object key"),
            ErrorKind::ExpectedCommaOrBrace => {
                f.write_str("expected ',' or '}' after an object member")
            }
            ErrorKind::ExpectedCommaOrBracket => {
                f.write_str("expected ',' or ']' after an array element")
            }
            ErrorKind::InvalidEscape => f.write_str("invalid escape in a string"),
            ErrorKind::LoneSurrogate => f.write_str("a \\u escape of an unpaired surrogate"),
            ErrorKind::ControlCharacter => f.write_str("a control character inside a string"),
            ErrorKind::InvalidUtf8 => f.write_str("a string that is not UTF-8"),
            ErrorKind::InvalidNumber => f.write_str("a malformed number"),
            ErrorKind::InvalidLiteral => f.write_str("expected true, false or null"),
            ErrorKind::TrailingBytes => f.write_str("bytes after the JSON text"),
            ErrorKind::TooDeep => write!(f, "arrays and objects nested deeper than {MAX_DEPTH}"),
            ErrorKind::TooLarge => f.write_str("a body of 4 GiB or more"),
            ErrorKind::NotAnObject => {
                f.write_str("the body is not a JSON object (nor a batch of objects)")
            }
            ErrorKind::WrongType { member, expected } => write!(f, "`{member}` must be {expected}"),
            ErrorKind::DuplicateMember { member } => {
                write!(f, "`{member}` appears twice in one object")
            }
            ErrorKind::SseMultiLineData => f.write_str("an SSE event with more than one data line"),
            ErrorKind::SseTrailingEvent => {
                f.write_str("a second SSE event after the first one ended")
            }
        }
    }
}

/// Why an index is invalid: the first byte that was wrong, and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexError {
    /// Offset of the offending byte (the body's length when it ended early).
    pub offset: u32,
    /// What was wrong there.
    pub kind: ErrorKind,
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.kind)
    }
}

impl std::error::Error for IndexError {}

/// The parse-once index of one body: fixed capacity, no heap, spans into
/// the body it was built from.
///
/// Build one with [`index`], or reuse one (a worker keeps one per frame slot)
/// with [`FrameIndex::rebuild`]. About 10 KiB.
#[derive(Clone)]
pub struct FrameIndex {
    /// The API the body speaks: the hint, confirmed or corrected by the body.
    pub kind: ApiKind,
    /// Which part of the exchange was indexed.
    pub part: Part,
    error: Option<IndexError>,
    /// `model`.
    pub model: Option<JsonStr>,
    /// `stream` is `true`.
    pub stream: bool,
    /// The top-level system prompt: Anthropic `system`, Responses
    /// `instructions`.
    pub system: Option<MessageSpan>,
    /// `usage` of a response or chunk.
    pub usage: Option<Usage>,
    /// `type` of an SSE event's JSON (Anthropic, Responses).
    pub event_type: Option<JsonStr>,
    /// The SSE lines of an [`Part::SseEvent`].
    pub sse: SseFields,
    /// The body is a JSON-RPC batch (a top-level array).
    pub batch: bool,
    /// Some array held more than the index's capacity for it; the rest was
    /// validated but not recorded.
    pub truncated: bool,
    messages: [MessageSpan; MAX_MESSAGES],
    messages_len: u16,
    texts: [TextSpan; MAX_TEXTS],
    texts_len: u16,
    choices: [Choice; MAX_CHOICES],
    choices_len: u16,
    mcp: [McpCall; MAX_MCP_CALLS],
    mcp_len: u16,
}

impl Default for FrameIndex {
    fn default() -> Self {
        FrameIndex::new()
    }
}

impl FrameIndex {
    /// An empty, valid index of kind [`ApiKind::Unknown`].
    pub const fn new() -> FrameIndex {
        const NO_TEXT: TextSpan = TextSpan {
            owner: TextOwner::System,
            text: JsonStr {
                span: Span::new(0, 0),
                escaped: false,
            },
        };
        const NO_CHOICE: Choice = Choice {
            message: MessageSpan::empty(Origin::Choice),
            finish_reason: None,
        };
        FrameIndex {
            kind: ApiKind::Unknown,
            part: Part::Request,
            error: None,
            model: None,
            stream: false,
            system: None,
            usage: None,
            event_type: None,
            sse: SseFields {
                event: None,
                data: None,
                done: false,
            },
            batch: false,
            truncated: false,
            messages: [MessageSpan::empty(Origin::Messages); MAX_MESSAGES],
            messages_len: 0,
            texts: [NO_TEXT; MAX_TEXTS],
            texts_len: 0,
            choices: [NO_CHOICE; MAX_CHOICES],
            choices_len: 0,
            mcp: [McpCall::EMPTY; MAX_MCP_CALLS],
            mcp_len: 0,
        }
    }

    /// Indexes `body` into this index, replacing what it held. Allocates
    /// nothing; see [`index`].
    pub fn rebuild(&mut self, body: &[u8], part: Part, hint: ApiKind) {
        self.clear(part, hint);
        let result = if u32::try_from(body.len()).is_err() {
            Err(IndexError {
                offset: u32::MAX,
                kind: ErrorKind::TooLarge,
            })
        } else {
            match part {
                Part::Request | Part::Response => walk::walk_body(self, body, 0, body.len(), hint),
                Part::SseEvent => sse::walk_event(self, body, hint),
            }
        };
        if let Err(e) = result {
            let sse = self.sse;
            self.clear(part, hint);
            if part == Part::SseEvent {
                self.sse = sse;
            }
            self.error = Some(e);
        }
    }

    fn clear(&mut self, part: Part, hint: ApiKind) {
        self.kind = hint;
        self.part = part;
        self.error = None;
        self.model = None;
        self.stream = false;
        self.system = None;
        self.usage = None;
        self.event_type = None;
        self.sse = SseFields::default();
        self.batch = false;
        self.truncated = false;
        self.messages_len = 0;
        self.texts_len = 0;
        self.choices_len = 0;
        self.mcp_len = 0;
    }

    /// The body is well-formed JSON and its recorded members have their
    /// types (see the module docs).
    pub fn valid(&self) -> bool {
        self.error.is_none()
    }

    /// Why the index is invalid; `None` when it is valid.
    pub fn error(&self) -> Option<IndexError> {
        self.error
    }

    /// The messages, in body order (the system prompt is [`Self::system`]).
    pub fn messages(&self) -> &[MessageSpan] {
        &self.messages[..usize::from(self.messages_len)]
    }

    /// Every piece of text, in body order.
    pub fn texts(&self) -> &[TextSpan] {
        &self.texts[..usize::from(self.texts_len)]
    }

    /// The choices of a response or SSE chunk.
    pub fn choices(&self) -> &[Choice] {
        &self.choices[..usize::from(self.choices_len)]
    }

    /// The JSON-RPC objects of an MCP body: one, or a batch's.
    pub fn mcp_calls(&self) -> &[McpCall] {
        &self.mcp[..usize::from(self.mcp_len)]
    }

    /// The JSON-RPC object of a single (non-batch) MCP body.
    pub fn mcp(&self) -> Option<&McpCall> {
        if self.batch {
            None
        } else {
            self.mcp_calls().first()
        }
    }
}

impl fmt::Debug for FrameIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameIndex")
            .field("kind", &self.kind)
            .field("part", &self.part)
            .field("error", &self.error)
            .field("model", &self.model)
            .field("stream", &self.stream)
            .field("system", &self.system)
            .field("messages", &self.messages())
            .field("texts", &self.texts())
            .field("choices", &self.choices())
            .field("usage", &self.usage)
            .field("mcp", &self.mcp_calls())
            .field("batch", &self.batch)
            .field("event_type", &self.event_type)
            .field("sse", &self.sse)
            .field("truncated", &self.truncated)
            .finish()
    }
}

/// Indexes `body`, the `part` of an exchange in the API `hint` names
/// ([`ApiKind::Unknown`] lets the body decide).
///
/// Never fails and never panics: a body that is not what the format wants
/// gives an invalid index ([`FrameIndex::valid`], [`FrameIndex::error`]).
/// Allocates nothing; the index is returned by value (about 10 KiB; use
/// [`FrameIndex::rebuild`] to fill one in place).
pub fn index(body: &[u8], part: Part, hint: ApiKind) -> FrameIndex {
    let mut idx = FrameIndex::new();
    idx.rebuild(body, part, hint);
    idx
}

/// Indexes one server-sent event of a streamed response: the `data:` line's
/// JSON, or `data: [DONE]`. Spans are offsets into `event`. An event
/// without a `data:` line (a comment, a keep-alive) is valid and empty.
pub fn index_sse_event(event: &[u8], hint: ApiKind) -> FrameIndex {
    index(event, Part::SseEvent, hint)
}

/// Checks that `bytes` is exactly one JSON text, as the index does, without
/// recording anything.
///
/// # Errors
/// The first byte that was wrong, and what.
pub fn validate(bytes: &[u8]) -> Result<(), IndexError> {
    if u32::try_from(bytes.len()).is_err() {
        return Err(IndexError {
            offset: u32::MAX,
            kind: ErrorKind::TooLarge,
        });
    }
    let mut s = scan::Scanner::new(bytes, 0, bytes.len());
    s.value()?;
    s.finish()
}
