//! The format walkers: one pass over a body that records the members of
//! every format the index knows (see the table in the module docs) and
//! hands everything else to the scanner to skip.
//!
//! Each walker that enters an object or array consumes it whole, closing
//! bracket included, so the scanner's depth stays balanced. A member with
//! the wrong type is first skipped (so that a syntax error before it would
//! have been found first), then reported at its first byte.

use super::scan::{Result, Scanner, fail, parse_u64, span};
use super::unescape::decoded;
use super::{
    ApiKind, Choice, ErrorKind, FrameIndex, JsonStr, MAX_CHOICES, MAX_MCP_CALLS, MAX_MESSAGES,
    MAX_TEXTS, McpCall, McpMethod, MessageSpan, Origin, Part, TextOwner, TextSpan, Usage, Value,
    ValueKind,
};
use odock_plugin_abi::Role;

/// The longest key, role or method name the walkers compare against.
const NAME_BUF: usize = 24;

/// Indexes the JSON text in `bytes[start..end]` into `idx` (already
/// cleared for `hint`).
pub(super) fn walk_body(
    idx: &mut FrameIndex,
    bytes: &[u8],
    start: usize,
    end: usize,
    hint: ApiKind,
) -> Result<()> {
    let mut s = Scanner::new(bytes, start, end);
    let mut w = Walker {
        idx,
        hint,
        seen: Seen::default(),
    };
    match s.peek() {
        Some(b'{') => w.top_object(&mut s, false)?,
        Some(b'[') => {
            w.idx.batch = true;
            let mut elements = s.enter_array()?;
            while s.next_element(&mut elements)? {
                if s.peek() == Some(b'{') {
                    w.top_object(&mut s, true)?;
                } else {
                    let v = s.value()?;
                    return fail(v.span.start as usize, ErrorKind::NotAnObject);
                }
            }
        }
        Some(_) => {
            let v = s.value()?;
            return fail(v.span.start as usize, ErrorKind::NotAnObject);
        }
        None => return fail(end, ErrorKind::UnexpectedEnd),
    }
    s.finish()?;
    w.decide_kind();
    Ok(())
}

/// Which formats' members a walk saw, to decide the kind without a hint.
#[derive(Default)]
struct Seen {
    mcp: bool,
    responses: bool,
    anthropic: bool,
    chat: bool,
}

/// Members of a top-level object the walkers know.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Top {
    Model,
    Stream,
    Messages,
    Input,
    System,
    Instructions,
    Jsonrpc,
    Id,
    Method,
    Params,
    Result,
    Error,
    Choices,
    Usage,
    Content,
    Role,
    StopReason,
    Type,
    Delta,
}

impl Top {
    fn of(key: &[u8], part: Part, in_batch: bool) -> Option<Top> {
        let mcp = match key {
            b"jsonrpc" => Some(Top::Jsonrpc),
            b"id" => Some(Top::Id),
            b"method" => Some(Top::Method),
            b"params" => Some(Top::Params),
            b"result" => Some(Top::Result),
            b"error" => Some(Top::Error),
            _ => None,
        };
        if mcp.is_some() || in_batch {
            return mcp;
        }
        match (part, key) {
            (_, b"model") => Some(Top::Model),
            (Part::Request, b"stream") => Some(Top::Stream),
            (Part::Request, b"messages") => Some(Top::Messages),
            (Part::Request, b"input") => Some(Top::Input),
            (Part::Request, b"system") => Some(Top::System),
            (Part::Request, b"instructions") => Some(Top::Instructions),
            (Part::Response | Part::SseEvent, b"choices") => Some(Top::Choices),
            (Part::Response | Part::SseEvent, b"usage") => Some(Top::Usage),
            (Part::Response | Part::SseEvent, b"content") => Some(Top::Content),
            (Part::Response | Part::SseEvent, b"role") => Some(Top::Role),
            (Part::Response | Part::SseEvent, b"stop_reason") => Some(Top::StopReason),
            (Part::Response | Part::SseEvent, b"type") => Some(Top::Type),
            (Part::Response | Part::SseEvent, b"delta") => Some(Top::Delta),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Top::Model => "model",
            Top::Stream => "stream",
            Top::Messages => "messages",
            Top::Input => "input",
            Top::System => "system",
            Top::Instructions => "instructions",
            Top::Jsonrpc => "jsonrpc",
            Top::Id => "id",
            Top::Method => "method",
            Top::Params => "params",
            Top::Result => "result",
            Top::Error => "error",
            Top::Choices => "choices",
            Top::Usage => "usage",
            Top::Content => "content",
            Top::Role => "role",
            Top::StopReason => "stop_reason",
            Top::Type => "type",
            Top::Delta => "delta",
        }
    }
}

/// A set of members seen in one object, to refuse duplicates.
#[derive(Default)]
struct Once(u32);

impl Once {
    fn mark(&mut self, bit: u32, member: &'static str, key: JsonStr) -> Result<()> {
        if self.0 & 1 << bit != 0 {
            // The quote before the key: where the second one starts.
            return fail(
                key.span.start as usize - 1,
                ErrorKind::DuplicateMember { member },
            );
        }
        self.0 |= 1 << bit;
        Ok(())
    }
}

/// Member names of a message, by where it sits, for errors.
struct MessageNames {
    item: &'static str,
    role: &'static str,
    content: &'static str,
    text: &'static str,
}

/// Member names of an Anthropic response's top-level content.
const TOP_CONTENT: MessageNames = MessageNames {
    item: "content",
    role: "role",
    content: "content",
    text: "content[].text",
};

impl Origin {
    const fn names(self) -> &'static MessageNames {
        match self {
            Origin::Messages => &MessageNames {
                item: "messages[]",
                role: "messages[].role",
                content: "messages[].content",
                text: "messages[].content[].text",
            },
            Origin::Input => &MessageNames {
                item: "input[]",
                role: "input[].role",
                content: "input[].content",
                text: "input[].content[].text",
            },
            Origin::System => &MessageNames {
                item: "system",
                role: "system",
                content: "system",
                text: "system[].text",
            },
            Origin::Choice => &MessageNames {
                item: "choices[].message",
                role: "choices[].message.role",
                content: "choices[].message.content",
                text: "choices[].message.content[].text",
            },
        }
    }
}

/// Classifies a role from its decoded text.
fn role_of(s: &Scanner<'_>, name: JsonStr) -> Role {
    let mut buf = [0u8; NAME_BUF];
    match decoded(name.get(s.bytes()), name.escaped, &mut buf) {
        Some(b"system") => Role::System,
        Some(b"user") => Role::User,
        Some(b"assistant") => Role::Assistant,
        Some(b"tool") => Role::Tool,
        Some(b"developer") => Role::Developer,
        _ => Role::Other,
    }
}

fn method_of(s: &Scanner<'_>, name: JsonStr) -> McpMethod {
    let mut buf = [0u8; NAME_BUF];
    match decoded(name.get(s.bytes()), name.escaped, &mut buf) {
        Some(b"tools/call") => McpMethod::ToolsCall,
        Some(b"resources/read") => McpMethod::ResourcesRead,
        Some(b"prompts/get") => McpMethod::PromptsGet,
        _ => McpMethod::Other,
    }
}

/// Skips a value and fails with a type error at its start unless its kind
/// is one of `ok`.
fn typed(
    s: &mut Scanner<'_>,
    ok: &[ValueKind],
    member: &'static str,
    expected: &'static str,
) -> Result<Value> {
    let v = s.value()?;
    if ok.contains(&v.kind) {
        Ok(v)
    } else {
        fail(
            v.span.start as usize,
            ErrorKind::WrongType { member, expected },
        )
    }
}

/// A string member, or `null` (read as absent).
fn opt_string(s: &mut Scanner<'_>, member: &'static str) -> Result<Option<JsonStr>> {
    let v = typed(s, &[ValueKind::String, ValueKind::Null], member, "a string")?;
    Ok(v.as_str())
}

/// The decoded key, or `""` for one longer than any the walkers know.
macro_rules! key_bytes {
    ($s:expr, $key:expr, $buf:ident) => {
        decoded($key.get($s.bytes()), $key.escaped, &mut $buf).unwrap_or(b"")
    };
}

struct Walker<'i> {
    idx: &'i mut FrameIndex,
    hint: ApiKind,
    seen: Seen,
}

impl Walker<'_> {
    fn decide_kind(&mut self) {
        let seen = &self.seen;
        self.idx.kind = if seen.mcp {
            ApiKind::Mcp
        } else if !matches!(self.hint, ApiKind::Unknown | ApiKind::Mcp) {
            self.hint
        } else if seen.responses {
            ApiKind::OpenAiResponses
        } else if seen.anthropic {
            ApiKind::AnthropicMessages
        } else if seen.chat {
            ApiKind::OpenAiChat
        } else {
            ApiKind::Unknown
        };
    }

    fn push_text(&mut self, owner: Option<TextOwner>, text: JsonStr) {
        let Some(owner) = owner else { return };
        let n = usize::from(self.idx.texts_len);
        if n < MAX_TEXTS {
            self.idx.texts[n] = TextSpan { owner, text };
            self.idx.texts_len += 1;
        } else {
            self.idx.truncated = true;
        }
    }

    /// The owner of the texts of the next message, if it will be recorded.
    fn next_message_owner(&self) -> Option<TextOwner> {
        let n = usize::from(self.idx.messages_len);
        (n < MAX_MESSAGES).then_some(TextOwner::Message(self.idx.messages_len))
    }

    fn push_message(&mut self, m: MessageSpan) {
        let n = usize::from(self.idx.messages_len);
        if n < MAX_MESSAGES {
            self.idx.messages[n] = m;
            self.idx.messages_len += 1;
        } else {
            self.idx.truncated = true;
        }
    }

    /// Reserves the next choice slot; `None` (and truncated) when full.
    fn new_choice(&mut self) -> Option<usize> {
        let n = usize::from(self.idx.choices_len);
        if n < MAX_CHOICES {
            self.idx.choices[n] = Choice {
                message: MessageSpan::empty(Origin::Choice),
                finish_reason: None,
            };
            self.idx.choices_len += 1;
            Some(n)
        } else {
            self.idx.truncated = true;
            None
        }
    }

    fn choice_owner(slot: Option<usize>) -> Option<TextOwner> {
        // A slot is below MAX_CHOICES, so it fits.
        slot.map(|i| TextOwner::Choice(i as u16))
    }

    /// A top-level object: the whole body, or one element of a batch.
    fn top_object(&mut self, s: &mut Scanner<'_>, in_batch: bool) -> Result<()> {
        let part = self.idx.part;
        let mut once = Once::default();
        let mut mcp = RawMcp::default();
        // Choice 0 of an Anthropic response or stream event, made on demand.
        let mut anthropic: Option<Option<usize>> = None;
        let mut members = s.enter_object()?;
        while let Some(key) = s.next_key(&mut members)? {
            let mut buf = [0u8; NAME_BUF];
            let Some(top) = Top::of(key_bytes!(s, key, buf), part, in_batch) else {
                s.value()?;
                continue;
            };
            once.mark(top as u32, top.name(), key)?;
            match top {
                Top::Model => {
                    let v = typed(s, &[ValueKind::String], "model", "a string")?;
                    self.idx.model = v.as_str();
                }
                Top::Stream => {
                    let v = typed(
                        s,
                        &[ValueKind::Bool, ValueKind::Null],
                        "stream",
                        "a boolean",
                    )?;
                    self.idx.stream = v.get(s.bytes()) == b"true";
                }
                Top::Messages => {
                    self.seen.chat = true;
                    match s.peek() {
                        Some(b'[') => self.messages(s, Origin::Messages)?,
                        _ => {
                            typed(s, &[ValueKind::Array], "messages", "an array")?;
                        }
                    }
                }
                Top::Input => {
                    self.seen.responses = true;
                    match s.peek() {
                        Some(b'[') => self.messages(s, Origin::Input)?,
                        _ => {
                            let v =
                                typed(s, &[ValueKind::String], "input", "a string or an array")?;
                            let owner = self.next_message_owner();
                            self.push_text(owner, v.as_str().expect("a string"));
                            self.push_message(MessageSpan {
                                role: Role::User,
                                content: Some(v),
                                ..MessageSpan::empty(Origin::Input)
                            });
                        }
                    }
                }
                Top::System | Top::Instructions => {
                    let names = Origin::System.names();
                    if top == Top::System {
                        self.seen.anthropic = true;
                    } else {
                        self.seen.responses = true;
                    }
                    if self.idx.system.is_some() {
                        return fail(
                            key.span.start as usize - 1,
                            ErrorKind::DuplicateMember { member: "system" },
                        );
                    }
                    let content = self.content(s, Some(TextOwner::System), names)?;
                    if content.kind != ValueKind::Null {
                        self.idx.system = Some(MessageSpan {
                            role: Role::System,
                            key: Some(key),
                            content: Some(content),
                            ..MessageSpan::empty(Origin::System)
                        });
                    }
                }
                Top::Jsonrpc => mcp.jsonrpc = Some((key, s.value()?)),
                Top::Id => mcp.id = Some(s.value()?),
                Top::Method => mcp.method = Some((key, s.value()?)),
                Top::Params => mcp.params = Some(self.params(s, &mut mcp)?),
                Top::Result => mcp.result = Some(s.value()?),
                Top::Error => mcp.error = Some(s.value()?),
                Top::Choices => {
                    self.seen.chat = true;
                    match s.peek() {
                        Some(b'[') => self.choices(s)?,
                        _ => {
                            typed(s, &[ValueKind::Array], "choices", "an array")?;
                        }
                    }
                }
                Top::Usage => self.usage(s)?,
                Top::Content => {
                    self.seen.anthropic = true;
                    let slot = *anthropic.get_or_insert_with(|| self.new_choice());
                    let v = self.content(s, Self::choice_owner(slot), &TOP_CONTENT)?;
                    if let Some(i) = slot {
                        self.idx.choices[i].message.content = Some(v);
                    }
                }
                Top::Role => {
                    let role = opt_string(s, "role")?;
                    let slot = *anthropic.get_or_insert_with(|| self.new_choice());
                    if let (Some(i), Some(r)) = (slot, role) {
                        self.idx.choices[i].message.role_name = Some(r);
                        self.idx.choices[i].message.role = role_of(s, r);
                    }
                }
                Top::StopReason => {
                    self.seen.anthropic = true;
                    let reason = opt_string(s, "stop_reason")?;
                    let slot = *anthropic.get_or_insert_with(|| self.new_choice());
                    if let Some(i) = slot {
                        self.idx.choices[i].finish_reason = reason;
                    }
                }
                Top::Type => self.idx.event_type = opt_string(s, "type")?,
                Top::Delta => {
                    let slot = *anthropic.get_or_insert_with(|| self.new_choice());
                    self.delta(s, slot)?;
                }
            }
        }
        if mcp.is_mcp(self.hint, in_batch) {
            self.seen.mcp = true;
            let call = mcp.check(s)?;
            let n = usize::from(self.idx.mcp_len);
            if n < MAX_MCP_CALLS {
                self.idx.mcp[n] = call;
                self.idx.mcp_len += 1;
            } else {
                self.idx.truncated = true;
            }
        }
        Ok(())
    }

    /// `messages` or `input`: an array of message objects.
    fn messages(&mut self, s: &mut Scanner<'_>, origin: Origin) -> Result<()> {
        let names = origin.names();
        let mut elements = s.enter_array()?;
        while s.next_element(&mut elements)? {
            if s.peek() != Some(b'{') {
                return typed(s, &[ValueKind::Object], names.item, "an object").map(drop);
            }
            let owner = self.next_message_owner();
            let m = self.message(s, origin, owner)?;
            self.push_message(m);
        }
        Ok(())
    }

    /// One message object: `role`, `content` (and a Responses item's
    /// `output`). `pos` is at its `{`.
    fn message(
        &mut self,
        s: &mut Scanner<'_>,
        origin: Origin,
        owner: Option<TextOwner>,
    ) -> Result<MessageSpan> {
        let names = origin.names();
        let mut m = MessageSpan::empty(origin);
        let mut once = Once::default();
        let mut output = None;
        let mut members = s.enter_object()?;
        while let Some(key) = s.next_key(&mut members)? {
            let mut buf = [0u8; NAME_BUF];
            match key_bytes!(s, key, buf) {
                b"role" => {
                    once.mark(0, names.role, key)?;
                    m.role_name = opt_string(s, names.role)?;
                    if let Some(r) = m.role_name {
                        m.role = role_of(s, r);
                    }
                }
                b"content" => {
                    once.mark(1, names.content, key)?;
                    m.content = Some(self.content(s, owner, names)?);
                }
                b"output" if origin == Origin::Input => {
                    once.mark(2, "input[].output", key)?;
                    output = s.value()?.as_str();
                }
                _ => {
                    s.value()?;
                }
            }
        }
        if m.content.is_none()
            && let Some(text) = output
        {
            self.push_text(owner, text);
            m.content = Some(Value {
                span: text.quoted(),
                kind: ValueKind::String,
                escaped: text.escaped,
            });
        }
        Ok(m)
    }

    /// A content value: a string (one text), an array of parts (the `text`
    /// of each), or null.
    fn content(
        &mut self,
        s: &mut Scanner<'_>,
        owner: Option<TextOwner>,
        names: &MessageNames,
    ) -> Result<Value> {
        match s.peek() {
            Some(b'[') => {
                let start = s.pos();
                let mut parts = s.enter_array()?;
                while s.next_element(&mut parts)? {
                    if s.peek() != Some(b'{') {
                        s.value()?;
                        continue;
                    }
                    let mut once = Once::default();
                    let mut members = s.enter_object()?;
                    while let Some(key) = s.next_key(&mut members)? {
                        let mut buf = [0u8; NAME_BUF];
                        if key_bytes!(s, key, buf) == b"text" {
                            once.mark(0, names.text, key)?;
                            let v = typed(s, &[ValueKind::String], names.text, "a string")?;
                            self.push_text(owner, v.as_str().expect("a string"));
                        } else {
                            s.value()?;
                        }
                    }
                }
                Ok(Value {
                    span: span(start, s.pos()),
                    kind: ValueKind::Array,
                    escaped: false,
                })
            }
            _ => {
                let v = typed(
                    s,
                    &[ValueKind::String, ValueKind::Null],
                    names.content,
                    "a string, an array or null",
                )?;
                if let Some(text) = v.as_str() {
                    self.push_text(owner, text);
                }
                Ok(v)
            }
        }
    }

    /// `choices`: an array of objects with `message` or `delta` and
    /// `finish_reason`.
    fn choices(&mut self, s: &mut Scanner<'_>) -> Result<()> {
        let mut elements = s.enter_array()?;
        while s.next_element(&mut elements)? {
            if s.peek() != Some(b'{') {
                return typed(s, &[ValueKind::Object], "choices[]", "an object").map(drop);
            }
            let slot = self.new_choice();
            let owner = Self::choice_owner(slot);
            let mut once = Once::default();
            let mut members = s.enter_object()?;
            while let Some(key) = s.next_key(&mut members)? {
                let mut buf = [0u8; NAME_BUF];
                match key_bytes!(s, key, buf) {
                    b"message" | b"delta" => {
                        once.mark(0, "choices[].message", key)?;
                        if s.peek() != Some(b'{') {
                            typed(s, &[ValueKind::Null], "choices[].message", "an object")?;
                            continue;
                        }
                        let m = self.message(s, Origin::Choice, owner)?;
                        if let Some(i) = slot {
                            self.idx.choices[i].message = m;
                        }
                    }
                    b"finish_reason" => {
                        once.mark(1, "choices[].finish_reason", key)?;
                        let reason = opt_string(s, "choices[].finish_reason")?;
                        if let Some(i) = slot {
                            self.idx.choices[i].finish_reason = reason;
                        }
                    }
                    _ => {
                        s.value()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `delta` of a stream event: Anthropic's object (`text`,
    /// `stop_reason`) or a Responses event's string.
    fn delta(&mut self, s: &mut Scanner<'_>, slot: Option<usize>) -> Result<()> {
        if s.peek() != Some(b'{') {
            let v = typed(
                s,
                &[ValueKind::String, ValueKind::Null],
                "delta",
                "an object or a string",
            )?;
            if let Some(text) = v.as_str() {
                self.push_text(Self::choice_owner(slot), text);
                if let Some(i) = slot {
                    self.idx.choices[i].message.content = Some(v);
                }
            }
            return Ok(());
        }
        let mut once = Once::default();
        let mut members = s.enter_object()?;
        while let Some(key) = s.next_key(&mut members)? {
            let mut buf = [0u8; NAME_BUF];
            match key_bytes!(s, key, buf) {
                b"text" => {
                    once.mark(0, "delta.text", key)?;
                    let v = typed(s, &[ValueKind::String], "delta.text", "a string")?;
                    self.push_text(Self::choice_owner(slot), v.as_str().expect("a string"));
                    if let Some(i) = slot {
                        self.idx.choices[i].message.content = Some(v);
                    }
                }
                b"stop_reason" => {
                    once.mark(1, "delta.stop_reason", key)?;
                    let reason = opt_string(s, "delta.stop_reason")?;
                    if let Some(i) = slot {
                        self.idx.choices[i].finish_reason = reason;
                    }
                }
                _ => {
                    s.value()?;
                }
            }
        }
        Ok(())
    }

    /// `usage`: an object (or null) of token counts.
    fn usage(&mut self, s: &mut Scanner<'_>) -> Result<()> {
        if s.peek() != Some(b'{') {
            typed(s, &[ValueKind::Null], "usage", "an object")?;
            return Ok(());
        }
        let start = s.pos();
        let mut counts = [None; 3];
        let mut once = Once::default();
        let mut members = s.enter_object()?;
        while let Some(key) = s.next_key(&mut members)? {
            let mut buf = [0u8; NAME_BUF];
            let (slot, member) = match key_bytes!(s, key, buf) {
                b"prompt_tokens" | b"input_tokens" => (0, "usage.prompt_tokens"),
                b"completion_tokens" | b"output_tokens" => (1, "usage.completion_tokens"),
                b"total_tokens" => (2, "usage.total_tokens"),
                _ => {
                    s.value()?;
                    continue;
                }
            };
            once.mark(slot, member, key)?;
            let v = s.value()?;
            counts[slot as usize] = match v.kind {
                ValueKind::Number => parse_u64(v.get(s.bytes())),
                _ => None,
            };
        }
        self.idx.usage = Some(Usage {
            raw: Value {
                span: span(start, s.pos()),
                kind: ValueKind::Object,
                escaped: false,
            },
            prompt_tokens: counts[0],
            completion_tokens: counts[1],
            total_tokens: counts[2],
        });
        Ok(())
    }

    /// `params`: walked for `name`, `arguments` and `uri` before the method
    /// is known (it may come after); [`RawMcp::check`] keeps what the
    /// method uses.
    fn params(&mut self, s: &mut Scanner<'_>, mcp: &mut RawMcp) -> Result<Value> {
        if s.peek() != Some(b'{') {
            return s.value();
        }
        let start = s.pos();
        let mut once = Once::default();
        let mut members = s.enter_object()?;
        while let Some(key) = s.next_key(&mut members)? {
            let mut buf = [0u8; NAME_BUF];
            match key_bytes!(s, key, buf) {
                b"name" => {
                    once.mark(0, "params.name", key)?;
                    mcp.name = Some(s.value()?);
                }
                b"arguments" => {
                    once.mark(1, "params.arguments", key)?;
                    mcp.arguments = Some(s.value()?);
                }
                b"uri" => {
                    once.mark(2, "params.uri", key)?;
                    mcp.uri = Some(s.value()?);
                }
                _ => {
                    s.value()?;
                }
            }
        }
        Ok(Value {
            span: span(start, s.pos()),
            kind: ValueKind::Object,
            escaped: false,
        })
    }
}

/// The JSON-RPC members of one object, as found, before their types are
/// checked (the object may turn out not to be JSON-RPC at all).
#[derive(Default)]
struct RawMcp {
    jsonrpc: Option<(JsonStr, Value)>,
    id: Option<Value>,
    method: Option<(JsonStr, Value)>,
    params: Option<Value>,
    result: Option<Value>,
    error: Option<Value>,
    name: Option<Value>,
    arguments: Option<Value>,
    uri: Option<Value>,
}

fn check_kind(
    v: Option<Value>,
    ok: &[ValueKind],
    member: &'static str,
    expected: &'static str,
) -> Result<Option<Value>> {
    match v {
        Some(v) if v.kind == ValueKind::Null && !ok.contains(&ValueKind::Null) => Ok(None),
        Some(v) if !ok.contains(&v.kind) => fail(
            v.span.start as usize,
            ErrorKind::WrongType { member, expected },
        ),
        v => Ok(v),
    }
}

fn check_str(v: Option<Value>, member: &'static str) -> Result<Option<JsonStr>> {
    Ok(check_kind(v, &[ValueKind::String], member, "a string")?.and_then(Value::as_str))
}

impl RawMcp {
    /// JSON-RPC: it names its version or a method, or sits where only
    /// JSON-RPC goes (a batch, or an MCP endpoint with an id or result).
    fn is_mcp(&self, hint: ApiKind, in_batch: bool) -> bool {
        self.jsonrpc.is_some()
            || self.method.is_some()
            || in_batch
            || (hint == ApiKind::Mcp
                && (self.id.is_some() || self.result.is_some() || self.error.is_some()))
    }

    fn check(self, s: &Scanner<'_>) -> Result<McpCall> {
        let jsonrpc = check_str(self.jsonrpc.map(|(_, v)| v), "jsonrpc")?;
        let id = check_kind(
            self.id,
            &[ValueKind::String, ValueKind::Number, ValueKind::Null],
            "id",
            "a string, a number or null",
        )?;
        let method = check_str(self.method.map(|(_, v)| v), "method")?;
        let params = check_kind(
            self.params,
            &[ValueKind::Object, ValueKind::Array],
            "params",
            "an object or an array",
        )?;
        let error = check_kind(self.error, &[ValueKind::Object], "error", "an object")?;
        let kind = method.map_or(McpMethod::None, |m| method_of(s, m));
        let mut call = McpCall {
            jsonrpc,
            id,
            method,
            kind,
            params,
            result: self.result,
            error,
            ..McpCall::EMPTY
        };
        match kind {
            McpMethod::ToolsCall | McpMethod::PromptsGet => {
                call.name = check_str(self.name, "params.name")?;
                call.arguments = check_kind(
                    self.arguments,
                    &[ValueKind::Object],
                    "params.arguments",
                    "an object",
                )?;
            }
            McpMethod::ResourcesRead => call.uri = check_str(self.uri, "params.uri")?,
            McpMethod::None | McpMethod::Other => {}
        }
        Ok(call)
    }
}
