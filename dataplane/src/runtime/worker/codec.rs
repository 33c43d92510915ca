//! The byte layout of submission and completion records (see "Records" in
//! the module docs of [`super`]): an encoder that writes a frame once, in
//! place, into a ring reservation, and decoders that check every length,
//! count and text field before handing out a view. Nothing here allocates.

use std::time::Duration;

use odock_plugin_abi::AnswerOutcome;
use odock_plugin_abi::view::Header;

use crate::index::ApiKind;
use crate::runtime::{Outcome, Verdict};

/// The version of both record layouts (2: pause answers and resume
/// records; the complete kind left for the complete pool).
pub const VERSION: u8 = 2;

/// Fixed part of a submission record.
pub const SUBMISSION_FIXED: usize = 72;
/// Fixed part of a completion record.
pub const COMPLETION_FIXED: usize = 40;
/// Fixed part of a resume record.
pub const RESUME_FIXED: usize = 32;
/// Fixed part of a chunk record.
pub const CHUNK_FIXED: usize = 32;
/// Most headers one submitted frame may carry (request and response
/// headers each).
pub const MAX_HEADERS: usize = 1024;
/// Most metadata entries one completion may carry.
pub const MAX_METADATA: usize = 1024;

/// The optional text fields of a submission, in their order on the wire.
pub const TEXT_FIELDS: usize = 8;
#[cfg(test)]
pub(super) const METHOD: usize = 0;
pub(super) const PATH: usize = 1;
pub(super) const TENANT: usize = 2;
pub(super) const VIRTUAL_KEY: usize = 3;
pub(super) const ENVIRONMENT: usize = 4;
pub(super) const MODEL: usize = 5;
pub(super) const MCP_SERVER: usize = 6;
pub(super) const MCP_TOOL: usize = 7;

/// What a submission record asks the worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Run the request gate.
    Request = 1,
    /// Run the response gate over a whole answer.
    Response = 2,
    /// Resume a parked frame with its integration answer (its own layout,
    /// see [`ResumeView`]).
    Resume = 4,
    /// Open a stream: the request frame plus the response's status and
    /// headers (no response body).
    StreamOpen = 5,
    /// One chunk of an open stream (its own layout, see [`ChunkView`]).
    Chunk = 6,
    /// Control: the worker stops after this record (sent by the pool only).
    Shutdown = 15,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Request,
            2 => FrameKind::Response,
            4 => FrameKind::Resume,
            5 => FrameKind::StreamOpen,
            6 => FrameKind::Chunk,
            15 => FrameKind::Shutdown,
            _ => return None,
        })
    }
}

/// Why a record was refused. The code travels in error completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than its fixed part.
    Short,
    /// Unknown version.
    Version,
    /// Unknown kind (or a verdict byte out of range).
    Kind,
    /// Unknown API kind.
    Api,
    /// A count above its limit.
    Count,
    /// The lengths do not add up to the record's length.
    Length,
    /// A text field is not UTF-8 (or an absent field has a length).
    Text,
    /// A reserved field is not zero.
    Reserved,
}

impl Malformed {
    /// The code carried in an error completion.
    pub fn code(self) -> u8 {
        match self {
            Malformed::Short => 1,
            Malformed::Version => 2,
            Malformed::Kind => 3,
            Malformed::Api => 4,
            Malformed::Count => 5,
            Malformed::Length => 6,
            Malformed::Text => 7,
            Malformed::Reserved => 8,
        }
    }

    /// The inverse of [`Self::code`].
    pub fn from_code(code: u8) -> Option<Malformed> {
        Some(match code {
            1 => Malformed::Short,
            2 => Malformed::Version,
            3 => Malformed::Kind,
            4 => Malformed::Api,
            5 => Malformed::Count,
            6 => Malformed::Length,
            7 => Malformed::Text,
            8 => Malformed::Reserved,
            _ => return None,
        })
    }

    /// A short description.
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Short => "record shorter than its fixed part",
            Malformed::Version => "unknown record version",
            Malformed::Kind => "unknown frame kind",
            Malformed::Api => "unknown API kind",
            Malformed::Count => "count above its limit",
            Malformed::Length => "lengths do not add up to the record length",
            Malformed::Text => "text field not UTF-8, or absent field with a length",
            Malformed::Reserved => "reserved field not zero",
        }
    }
}

fn api_code(api: ApiKind) -> u8 {
    match api {
        ApiKind::Unknown => 0,
        ApiKind::OpenAiChat => 1,
        ApiKind::OpenAiResponses => 2,
        ApiKind::AnthropicMessages => 3,
        ApiKind::Mcp => 4,
    }
}

fn api_from(code: u8) -> Option<ApiKind> {
    Some(match code {
        0 => ApiKind::Unknown,
        1 => ApiKind::OpenAiChat,
        2 => ApiKind::OpenAiResponses,
        3 => ApiKind::AnthropicMessages,
        4 => ApiKind::Mcp,
        _ => return None,
    })
}

#[inline]
fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[inline]
fn put64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[inline]
fn get32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

#[inline]
fn get64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Copies `bytes` at `*at` and moves `*at` past them.
#[inline]
fn put_bytes(buf: &mut [u8], at: &mut usize, bytes: &[u8]) {
    buf[*at..*at + bytes.len()].copy_from_slice(bytes);
    *at += bytes.len();
}

/// The fields of a frame to submit, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub(super) struct SubmissionParts<'a> {
    pub kind: FrameKind,
    pub request_id: u64,
    pub api: ApiKind,
    pub text: [Option<&'a str>; TEXT_FIELDS],
    pub headers: &'a [Header<'a>],
    pub body: &'a [u8],
    /// Response and complete frames: the upstream's status, headers, body.
    pub response: Option<(u16, &'a [Header<'a>], &'a [u8])>,
}

impl SubmissionParts<'_> {
    /// The record's length; `None` when a length or count overflows the
    /// layout.
    pub fn encoded_len(&self) -> Option<usize> {
        let (_, response_headers, response_body) = self.response.unwrap_or((0, &[], &[]));
        if self.headers.len() > MAX_HEADERS || response_headers.len() > MAX_HEADERS {
            return None;
        }
        let mut len = SUBMISSION_FIXED + 8 * (self.headers.len() + response_headers.len());
        for t in self.text.iter().flatten() {
            u32::try_from(t.len()).ok()?;
            len = len.checked_add(t.len())?;
        }
        for h in self.headers.iter().chain(response_headers) {
            u32::try_from(h.name().len()).ok()?;
            u32::try_from(h.value().len()).ok()?;
            len = len
                .checked_add(h.name().len())?
                .checked_add(h.value().len())?;
        }
        for body in [self.body, response_body] {
            u32::try_from(body.len()).ok()?;
            len = len.checked_add(body.len())?;
        }
        u32::try_from(len).ok()?;
        Some(len)
    }

    /// Writes the record into `buf`, which is exactly
    /// [`Self::encoded_len`] bytes.
    pub fn encode(&self, token: u64, buf: &mut [u8]) {
        let mut present = 0u8;
        buf[0] = self.kind as u8;
        buf[1] = VERSION;
        buf[2] = api_code(self.api);
        put32(buf, 4, self.headers.len() as u32);
        put64(buf, 8, token);
        put64(buf, 16, self.request_id);
        for (i, t) in self.text.iter().enumerate() {
            if t.is_some() {
                present |= 1 << i;
            }
            put32(buf, 24 + 4 * i, t.map_or(0, |t| t.len() as u32));
        }
        buf[3] = present;
        let (status, response_headers, response_body) = self.response.unwrap_or((0, &[], &[]));
        put32(buf, 56, self.body.len() as u32);
        put32(buf, 60, u32::from(status));
        put32(buf, 64, response_headers.len() as u32);
        put32(buf, 68, response_body.len() as u32);
        let mut at = SUBMISSION_FIXED;
        for h in self.headers.iter().chain(response_headers) {
            put32(buf, at, h.name().len() as u32);
            put32(buf, at + 4, h.value().len() as u32);
            at += 8;
        }
        for t in self.text.iter().flatten() {
            put_bytes(buf, &mut at, t.as_bytes());
        }
        for h in self.headers {
            put_bytes(buf, &mut at, h.name());
            put_bytes(buf, &mut at, h.value());
        }
        put_bytes(buf, &mut at, self.body);
        for h in response_headers {
            put_bytes(buf, &mut at, h.name());
            put_bytes(buf, &mut at, h.value());
        }
        put_bytes(buf, &mut at, response_body);
        debug_assert_eq!(at, buf.len());
    }
}

/// The token of a record long enough to carry one (submission or
/// completion: both keep it at offset 8), so even a malformed record can be
/// answered.
pub fn peek_token(record: &[u8]) -> Option<u64> {
    (record.len() >= 16).then(|| get64(record, 8))
}

/// A checked view of a submission record, borrowing ring memory.
#[derive(Debug, Clone, Copy)]
pub struct SubmissionView<'a> {
    /// What to do.
    pub kind: FrameKind,
    /// The submitter's routing token.
    pub token: u64,
    /// The request id.
    pub request_id: u64,
    /// The API kind hint.
    pub api: ApiKind,
    /// The response status (response and complete frames; 0 otherwise).
    pub status: u16,
    text: [Option<&'a str>; TEXT_FIELDS],
    table: &'a [u8],
    header_bytes: &'a [u8],
    /// The request body.
    pub body: &'a [u8],
    response_table: &'a [u8],
    response_header_bytes: &'a [u8],
    /// The response body (response and complete frames).
    pub response_body: &'a [u8],
}

impl<'a> SubmissionView<'a> {
    /// Checks `record` against the layout.
    ///
    /// # Errors
    /// The first rule the record breaks.
    pub fn decode(record: &'a [u8]) -> Result<SubmissionView<'a>, Malformed> {
        if record.len() < SUBMISSION_FIXED {
            return Err(Malformed::Short);
        }
        if record[1] != VERSION {
            return Err(Malformed::Version);
        }
        let kind = match FrameKind::from_u8(record[0]) {
            Some(
                k @ (FrameKind::Request
                | FrameKind::Response
                | FrameKind::StreamOpen
                | FrameKind::Shutdown),
            ) => k,
            _ => return Err(Malformed::Kind),
        };
        let api = api_from(record[2]).ok_or(Malformed::Api)?;
        let present = record[3];
        let count = get32(record, 4) as usize;
        let response_count = get32(record, 64) as usize;
        let status = get32(record, 60);
        let response_body_len = u64::from(get32(record, 68));
        if count > MAX_HEADERS || response_count > MAX_HEADERS {
            return Err(Malformed::Count);
        }
        let carries_response = matches!(kind, FrameKind::Response | FrameKind::StreamOpen);
        if !carries_response && (status != 0 || response_count != 0 || response_body_len != 0) {
            return Err(Malformed::Reserved);
        }
        // A stream's body comes in chunks.
        if kind == FrameKind::StreamOpen && response_body_len != 0 {
            return Err(Malformed::Reserved);
        }
        let status = u16::try_from(status).map_err(|_| Malformed::Reserved)?;
        // Every length is a u32; sums are taken in u64, so they cannot wrap.
        let table_end = SUBMISSION_FIXED + 8 * count;
        let tables_end = table_end + 8 * response_count;
        if tables_end > record.len() {
            return Err(Malformed::Length);
        }
        let mut text_lens = [0usize; TEXT_FIELDS];
        let mut total = tables_end as u64;
        for (i, len) in text_lens.iter_mut().enumerate() {
            *len = get32(record, 24 + 4 * i) as usize;
            if present & (1 << i) == 0 && *len != 0 {
                return Err(Malformed::Text);
            }
            total += *len as u64;
        }
        let table = &record[SUBMISSION_FIXED..table_end];
        let response_table = &record[table_end..tables_end];
        let header_total = pair_total(table);
        let response_header_total = pair_total(response_table);
        let body_len = u64::from(get32(record, 56));
        total += header_total + body_len + response_header_total + response_body_len;
        if total != record.len() as u64 {
            return Err(Malformed::Length);
        }
        let mut at = tables_end;
        let mut text = [None; TEXT_FIELDS];
        for (i, &len) in text_lens.iter().enumerate() {
            let bytes = &record[at..at + len];
            at += len;
            if present & (1 << i) != 0 {
                text[i] = Some(std::str::from_utf8(bytes).map_err(|_| Malformed::Text)?);
            }
        }
        let mut take = |n: u64| {
            let part = &record[at..at + n as usize];
            at += n as usize;
            part
        };
        let header_bytes = take(header_total);
        let body = take(body_len);
        let response_header_bytes = take(response_header_total);
        let response_body = take(response_body_len);
        Ok(SubmissionView {
            kind,
            token: get64(record, 8),
            request_id: get64(record, 16),
            api,
            status,
            text,
            table,
            header_bytes,
            body,
            response_table,
            response_header_bytes,
            response_body,
        })
    }

    /// Text field `i` (see the field constants).
    pub fn text(&self, i: usize) -> Option<&'a str> {
        self.text[i]
    }

    /// Appends the request headers, as views into the record, to `out`.
    pub fn headers_into(&self, out: &mut Vec<Header<'a>>) {
        out.extend(pairs(self.table, self.header_bytes).map(|(n, v)| Header::new(n, v)));
    }

    /// Appends the response headers, as views into the record, to `out`.
    pub fn response_headers_into(&self, out: &mut Vec<Header<'a>>) {
        out.extend(
            pairs(self.response_table, self.response_header_bytes).map(|(n, v)| Header::new(n, v)),
        );
    }
}

/// The sum of a table of (u32, u32) lengths, in u64.
fn pair_total(table: &[u8]) -> u64 {
    table
        .chunks_exact(8)
        .map(|p| u64::from(get32(p, 0)) + u64::from(get32(p, 4)))
        .sum()
}

/// The kind of a submission record (its first byte), if it is one.
pub fn peek_kind(record: &[u8]) -> Option<FrameKind> {
    record.first().copied().and_then(FrameKind::from_u8)
}

/// A checked resume record: the answer to a parked frame's integration
/// call.
#[derive(Debug, Clone, Copy)]
pub struct ResumeView<'a> {
    /// The submitter's routing token.
    pub token: u64,
    /// The parked frame's request id.
    pub request_id: u64,
    /// The pause's token (from the pause answer).
    pub pause_token: u64,
    /// How the integration call ended.
    pub outcome: AnswerOutcome,
    /// The integration's answer.
    pub body: &'a [u8],
}

fn outcome_code(o: AnswerOutcome) -> u8 {
    match o {
        AnswerOutcome::Ok => 0,
        AnswerOutcome::Timeout => 1,
        AnswerOutcome::Failed => 2,
    }
}

impl<'a> ResumeView<'a> {
    /// The length of a resume record carrying `body`; `None` past the
    /// layout's `u32` length.
    pub fn encoded_len(body: &[u8]) -> Option<usize> {
        u32::try_from(body.len()).ok()?;
        RESUME_FIXED.checked_add(body.len())
    }

    /// Writes a resume record (exactly [`Self::encoded_len`] bytes).
    pub fn encode(
        token: u64,
        request_id: u64,
        pause_token: u64,
        outcome: AnswerOutcome,
        body: &[u8],
        buf: &mut [u8],
    ) {
        buf[0] = FrameKind::Resume as u8;
        buf[1] = VERSION;
        buf[2] = outcome_code(outcome);
        buf[3] = 0;
        put32(buf, 4, body.len() as u32);
        put64(buf, 8, token);
        put64(buf, 16, request_id);
        put64(buf, 24, pause_token);
        buf[RESUME_FIXED..].copy_from_slice(body);
    }

    /// Checks `record` against the resume layout.
    ///
    /// # Errors
    /// The first rule the record breaks.
    pub fn decode(record: &'a [u8]) -> Result<ResumeView<'a>, Malformed> {
        if record.len() < RESUME_FIXED {
            return Err(Malformed::Short);
        }
        if record[1] != VERSION {
            return Err(Malformed::Version);
        }
        if record[0] != FrameKind::Resume as u8 {
            return Err(Malformed::Kind);
        }
        let outcome = match record[2] {
            0 => AnswerOutcome::Ok,
            1 => AnswerOutcome::Timeout,
            2 => AnswerOutcome::Failed,
            _ => return Err(Malformed::Kind),
        };
        if record[3] != 0 {
            return Err(Malformed::Reserved);
        }
        if RESUME_FIXED as u64 + u64::from(get32(record, 4)) != record.len() as u64 {
            return Err(Malformed::Length);
        }
        Ok(ResumeView {
            token: get64(record, 8),
            request_id: get64(record, 16),
            pause_token: get64(record, 24),
            outcome,
            body: &record[RESUME_FIXED..],
        })
    }
}

/// A checked chunk record: one chunk of an open stream.
#[derive(Debug, Clone, Copy)]
pub struct ChunkView<'a> {
    /// The submitter's routing token.
    pub token: u64,
    /// The stream, as its open answer named it.
    pub stream: u64,
    /// 0 for the first chunk, then counting up.
    pub index: u64,
    /// Whether no chunk follows.
    pub last: bool,
    /// The chunk's bytes.
    pub chunk: &'a [u8],
}

/// Chunk flag: the last chunk.
const LAST: u8 = 1;

impl<'a> ChunkView<'a> {
    /// The length of a chunk record carrying `chunk`; `None` past the
    /// layout's `u32` length.
    pub fn encoded_len(chunk: &[u8]) -> Option<usize> {
        u32::try_from(chunk.len()).ok()?;
        CHUNK_FIXED.checked_add(chunk.len())
    }

    /// Writes a chunk record (exactly [`Self::encoded_len`] bytes).
    pub fn encode(token: u64, stream: u64, index: u64, last: bool, chunk: &[u8], buf: &mut [u8]) {
        buf[0] = FrameKind::Chunk as u8;
        buf[1] = VERSION;
        buf[2] = if last { LAST } else { 0 };
        buf[3] = 0;
        put32(buf, 4, chunk.len() as u32);
        put64(buf, 8, token);
        put64(buf, 16, stream);
        put64(buf, 24, index);
        buf[CHUNK_FIXED..].copy_from_slice(chunk);
    }

    /// Checks `record` against the chunk layout.
    ///
    /// # Errors
    /// The first rule the record breaks.
    pub fn decode(record: &'a [u8]) -> Result<ChunkView<'a>, Malformed> {
        if record.len() < CHUNK_FIXED {
            return Err(Malformed::Short);
        }
        if record[1] != VERSION {
            return Err(Malformed::Version);
        }
        if record[0] != FrameKind::Chunk as u8 {
            return Err(Malformed::Kind);
        }
        if record[2] & !LAST != 0 || record[3] != 0 {
            return Err(Malformed::Reserved);
        }
        if CHUNK_FIXED as u64 + u64::from(get32(record, 4)) != record.len() as u64 {
            return Err(Malformed::Length);
        }
        Ok(ChunkView {
            token: get64(record, 8),
            stream: get64(record, 16),
            index: get64(record, 24),
            last: record[2] & LAST != 0,
            chunk: &record[CHUNK_FIXED..],
        })
    }
}

/// Completion kinds.
pub(super) const ANSWER: u8 = 1;
pub(super) const ERROR: u8 = 2;
pub(super) const PAUSE: u8 = 3;
pub(super) const OPENED: u8 = 4;

/// Flag of an OPENED completion: the stream's chain has whole-body plugins
/// (its chunks are buffered for them).
const BUFFERS: u8 = 1;

/// Completion flags.
pub(super) const CHANGED: u8 = 1;
pub(super) const BODY: u8 = 2;

/// Error codes of error completions (besides [`Malformed::code`], which
/// uses 1 to 8).
pub(super) const E_TOO_LARGE: u8 = 33;
pub(super) const E_SHUTDOWN: u8 = 34;
pub(super) const E_BAD_COMPLETION: u8 = 35;
pub(super) const E_NOT_PARKED: u8 = 37;
pub(super) const E_WRONG_TOKEN: u8 = 38;
pub(super) const E_STREAMS_FULL: u8 = 40;
pub(super) const E_NO_STREAM: u8 = 41;
pub(super) const E_CHUNK_ORDER: u8 = 42;

/// Writes a "stream opened" completion ([`COMPLETION_FIXED`] bytes): the
/// stream id at 24, flag [`BUFFERS`] at 2.
pub(super) fn encode_opened(token: u64, stream: u64, buffers: bool, buf: &mut [u8]) {
    buf.fill(0);
    buf[0] = OPENED;
    buf[1] = VERSION;
    buf[2] = if buffers { BUFFERS } else { 0 };
    put64(buf, 8, token);
    put64(buf, 24, stream);
}

/// The length of the completion of `outcome`.
pub(super) fn answer_len(outcome: &Outcome<'_>) -> usize {
    if let Verdict::Pause {
        integration,
        payload,
        plugin,
        ..
    } = outcome.verdict
    {
        return COMPLETION_FIXED + integration.len() + plugin.len() + payload.len();
    }
    let mut len = COMPLETION_FIXED;
    if let Verdict::Block { reason, plugin, .. } = outcome.verdict {
        len += reason.len() + plugin.len();
    }
    if outcome.changed() {
        for (n, v) in outcome.headers() {
            len += 8 + n.len() + v.len();
        }
        for (k, v) in outcome.metadata() {
            len += 8 + k.len() + v.len();
        }
        if outcome.body_changed() {
            len += outcome.body().len();
        }
    }
    len
}

/// Writes the completion of `outcome` into `buf` (exactly
/// [`answer_len`] bytes).
pub(super) fn encode_answer(token: u64, outcome: &Outcome<'_>, buf: &mut [u8]) {
    buf[..COMPLETION_FIXED].fill(0);
    buf[0] = ANSWER;
    buf[1] = VERSION;
    put64(buf, 8, token);
    let (reason, plugin) = match outcome.verdict {
        Verdict::Pause {
            integration,
            payload,
            timeout,
            token: pause_token,
            plugin,
        } => {
            // A paused frame changed nothing yet: the pause is all.
            buf[0] = PAUSE;
            put32(
                buf,
                4,
                u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            );
            put32(buf, 16, integration.len() as u32);
            put32(buf, 20, plugin.len() as u32);
            put64(buf, 24, pause_token);
            put32(buf, 32, payload.len() as u32);
            let mut at = COMPLETION_FIXED;
            put_bytes(buf, &mut at, integration.as_bytes());
            put_bytes(buf, &mut at, plugin.as_bytes());
            put_bytes(buf, &mut at, payload);
            debug_assert_eq!(at, buf.len());
            return;
        }
        Verdict::Continue => ("", ""),
        Verdict::Block {
            status,
            reason,
            plugin,
        } => {
            buf[2] = 1;
            put32(buf, 4, u32::from(status));
            (reason, plugin)
        }
    };
    put32(buf, 16, reason.len() as u32);
    put32(buf, 20, plugin.len() as u32);
    let mut at = COMPLETION_FIXED;
    let changed = outcome.changed();
    if changed {
        let body_changed = outcome.body_changed();
        buf[3] = CHANGED | if body_changed { BODY } else { 0 };
        let (mut hc, mut mc) = (0u32, 0u32);
        for (n, v) in outcome.headers() {
            put32(buf, at, n.len() as u32);
            put32(buf, at + 4, v.len() as u32);
            at += 8;
            hc += 1;
        }
        for (k, v) in outcome.metadata() {
            put32(buf, at, k.len() as u32);
            put32(buf, at + 4, v.len() as u32);
            at += 8;
            mc += 1;
        }
        put32(buf, 24, hc);
        put32(buf, 28, mc);
        if body_changed {
            put32(buf, 32, outcome.body().len() as u32);
        }
    }
    put_bytes(buf, &mut at, reason.as_bytes());
    put_bytes(buf, &mut at, plugin.as_bytes());
    if changed {
        for (n, v) in outcome.headers() {
            put_bytes(buf, &mut at, n);
            put_bytes(buf, &mut at, v);
        }
        for (k, v) in outcome.metadata() {
            put_bytes(buf, &mut at, k.as_bytes());
            put_bytes(buf, &mut at, v);
        }
        if outcome.body_changed() {
            put_bytes(buf, &mut at, outcome.body());
        }
    }
    debug_assert_eq!(at, buf.len());
}

/// The length of an error completion with `detail`.
pub(super) fn error_len(detail: &str) -> usize {
    COMPLETION_FIXED + detail.len()
}

/// Writes an error completion (exactly [`error_len`] bytes).
pub(super) fn encode_error(token: u64, code: u8, detail: &str, buf: &mut [u8]) {
    buf[..COMPLETION_FIXED].fill(0);
    buf[0] = ERROR;
    buf[1] = VERSION;
    buf[2] = code;
    put64(buf, 8, token);
    put32(buf, 16, detail.len() as u32);
    buf[COMPLETION_FIXED..].copy_from_slice(detail.as_bytes());
}

/// A checked view of a completion record.
#[derive(Debug, Clone, Copy)]
pub(super) enum CompletionView<'a> {
    Answer(AnswerView<'a>),
    Error { code: u8 },
}

/// A checked answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct AnswerView<'a> {
    pub verdict: Verdict<'a>,
    pub changed: bool,
    header_table: &'a [u8],
    meta_table: &'a [u8],
    header_bytes: &'a [u8],
    meta_bytes: &'a [u8],
    pub body: Option<&'a [u8]>,
    /// An OPENED completion: the stream id and whether it buffers.
    pub stream: Option<(u64, bool)>,
}

impl<'a> CompletionView<'a> {
    /// Checks `record` against the completion layout.
    pub fn decode(record: &'a [u8]) -> Result<CompletionView<'a>, Malformed> {
        if record.len() < COMPLETION_FIXED {
            return Err(Malformed::Short);
        }
        if record[1] != VERSION {
            return Err(Malformed::Version);
        }
        if get32(record, 36) != 0 {
            return Err(Malformed::Reserved);
        }
        let reason_len = get32(record, 16) as usize;
        if record[0] == PAUSE {
            return decode_pause(record).map(CompletionView::Answer);
        }
        if record[0] == OPENED {
            if record.len() != COMPLETION_FIXED {
                return Err(Malformed::Length);
            }
            let zero = record[3] == 0
                && record[2] & !BUFFERS == 0
                && record[4..8]
                    .iter()
                    .chain(&record[16..24])
                    .chain(&record[32..40])
                    .all(|&b| b == 0);
            if !zero {
                return Err(Malformed::Reserved);
            }
            return Ok(CompletionView::Answer(AnswerView {
                stream: Some((get64(record, 24), record[2] & BUFFERS != 0)),
                ..AnswerView::unchanged(Verdict::Continue)
            }));
        }
        match record[0] {
            ERROR => {
                if COMPLETION_FIXED as u64 + reason_len as u64 != record.len() as u64 {
                    return Err(Malformed::Length);
                }
                std::str::from_utf8(&record[COMPLETION_FIXED..]).map_err(|_| Malformed::Text)?;
                return Ok(CompletionView::Error { code: record[2] });
            }
            ANSWER => {}
            _ => return Err(Malformed::Kind),
        }
        let flags = record[3];
        if flags & !(CHANGED | BODY) != 0 || (flags & BODY != 0 && flags & CHANGED == 0) {
            return Err(Malformed::Reserved);
        }
        let changed = flags & CHANGED != 0;
        let plugin_len = get32(record, 20) as usize;
        let hc = get32(record, 24) as usize;
        let mc = get32(record, 28) as usize;
        let body_len = get32(record, 32) as usize;
        if hc > MAX_HEADERS || mc > MAX_METADATA {
            return Err(Malformed::Count);
        }
        if !changed && (hc != 0 || mc != 0) || flags & BODY == 0 && body_len != 0 {
            return Err(Malformed::Reserved);
        }
        let tables_end = COMPLETION_FIXED + 8 * (hc + mc);
        if tables_end > record.len() {
            return Err(Malformed::Length);
        }
        let header_table = &record[COMPLETION_FIXED..COMPLETION_FIXED + 8 * hc];
        let meta_table = &record[COMPLETION_FIXED + 8 * hc..tables_end];
        let (header_total, meta_total) = (pair_total(header_table), pair_total(meta_table));
        let total = tables_end as u64
            + reason_len as u64
            + plugin_len as u64
            + header_total
            + meta_total
            + body_len as u64;
        if total != record.len() as u64 {
            return Err(Malformed::Length);
        }
        let mut at = tables_end;
        let reason =
            std::str::from_utf8(&record[at..at + reason_len]).map_err(|_| Malformed::Text)?;
        at += reason_len;
        let plugin =
            std::str::from_utf8(&record[at..at + plugin_len]).map_err(|_| Malformed::Text)?;
        at += plugin_len;
        let header_bytes = &record[at..at + header_total as usize];
        at += header_total as usize;
        let meta_bytes = &record[at..at + meta_total as usize];
        at += meta_total as usize;
        // Metadata keys are text.
        let mut k_at = 0usize;
        for p in meta_table.chunks_exact(8) {
            let (k, v) = (get32(p, 0) as usize, get32(p, 4) as usize);
            std::str::from_utf8(&meta_bytes[k_at..k_at + k]).map_err(|_| Malformed::Text)?;
            k_at += k + v;
        }
        let verdict = match record[2] {
            0 => Verdict::Continue,
            1 => Verdict::Block {
                status: u16::try_from(get32(record, 4)).map_err(|_| Malformed::Kind)?,
                reason,
                plugin,
            },
            _ => return Err(Malformed::Kind),
        };
        Ok(CompletionView::Answer(AnswerView {
            verdict,
            changed,
            header_table,
            meta_table,
            header_bytes,
            meta_bytes,
            body: (flags & BODY != 0).then_some(&record[at..]),
            stream: None,
        }))
    }
}

/// A pause answer: timeout (ms) at 4, integration and plugin lengths at 16
/// and 20, the pause token at 24, payload length at 32; then integration,
/// plugin, payload.
fn decode_pause(record: &[u8]) -> Result<AnswerView<'_>, Malformed> {
    if record[2] != 0 || record[3] != 0 {
        return Err(Malformed::Reserved);
    }
    let (integration_len, plugin_len, payload_len) = (
        u64::from(get32(record, 16)),
        u64::from(get32(record, 20)),
        u64::from(get32(record, 32)),
    );
    if COMPLETION_FIXED as u64 + integration_len + plugin_len + payload_len != record.len() as u64 {
        return Err(Malformed::Length);
    }
    let mut at = COMPLETION_FIXED;
    let mut text = |n: u64| {
        let bytes = &record[at..at + n as usize];
        at += n as usize;
        std::str::from_utf8(bytes).map_err(|_| Malformed::Text)
    };
    let integration = text(integration_len)?;
    let plugin = text(plugin_len)?;
    Ok(AnswerView::unchanged(Verdict::Pause {
        integration,
        payload: &record[COMPLETION_FIXED + (integration_len + plugin_len) as usize..],
        timeout: Duration::from_millis(u64::from(get32(record, 4))),
        token: get64(record, 24),
        plugin,
    }))
}

impl<'a> AnswerView<'a> {
    /// An answer with `verdict` that changed nothing.
    fn unchanged(verdict: Verdict<'a>) -> AnswerView<'a> {
        AnswerView {
            verdict,
            changed: false,
            header_table: &[],
            meta_table: &[],
            header_bytes: &[],
            meta_bytes: &[],
            body: None,
            stream: None,
        }
    }

    /// The headers as the chain left them.
    pub fn headers(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        pairs(self.header_table, self.header_bytes)
    }

    /// The metadata the chain set.
    pub fn metadata(self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        // Keys were checked UTF-8 in `decode`.
        pairs(self.meta_table, self.meta_bytes)
            .map(|(k, v)| (std::str::from_utf8(k).unwrap_or(""), v))
    }
}

/// Walks a checked table of (u32, u32) lengths over `bytes`.
fn pairs<'a>(table: &'a [u8], bytes: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    let mut at = 0usize;
    table.chunks_exact(8).map(move |p| {
        let (n, v) = (get32(p, 0) as usize, get32(p, 4) as usize);
        let pair = (&bytes[at..at + n], &bytes[at + n..at + n + v]);
        at += n + v;
        pair
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(headers: &'a [Header<'a>]) -> SubmissionParts<'a> {
        let mut text = [None; TEXT_FIELDS];
        text[METHOD] = Some("POST");
        text[PATH] = Some("/v1/chat/completions");
        text[TENANT] = Some("acme");
        text[MODEL] = Some("gpt-4o");
        SubmissionParts {
            kind: FrameKind::Request,
            request_id: 7,
            api: ApiKind::OpenAiChat,
            text,
            headers,
            body: br#"{"model":"gpt-4o"}"#,
            response: None,
        }
    }

    #[test]
    fn submissions_round_trip() {
        let headers = [
            Header::new(b"a", b"1"),
            Header::new(b"content-type", b"json"),
        ];
        let parts = sample(&headers);
        let mut buf = vec![0u8; parts.encoded_len().unwrap()];
        parts.encode(99, &mut buf);
        let view = SubmissionView::decode(&buf).unwrap();
        assert_eq!(view.token, 99);
        assert_eq!(view.request_id, 7);
        assert_eq!(view.kind, FrameKind::Request);
        assert_eq!(view.api, ApiKind::OpenAiChat);
        assert_eq!(view.text(PATH), Some("/v1/chat/completions"));
        assert_eq!(view.text(VIRTUAL_KEY), None);
        let mut out = Vec::new();
        view.headers_into(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].name(), b"content-type");
        assert_eq!(out[1].value(), b"json");
        assert_eq!(view.body, parts.body);
    }

    /// Hostile bytes: every truncation and many bit flips of a valid record
    /// either decode to a view whose parts lie inside the record or are
    /// refused; nothing panics.
    #[test]
    fn hostile_submissions_are_refused_not_followed() {
        let headers = [Header::new(b"a", b"1"), Header::new(b"bb", b"22")];
        let parts = sample(&headers);
        let mut buf = vec![0u8; parts.encoded_len().unwrap()];
        parts.encode(1, &mut buf);
        for cut in 0..buf.len() {
            assert!(SubmissionView::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bad = buf.clone();
            let at = (seed as usize) % bad.len();
            bad[at] ^= (seed >> 32) as u8 | 1;
            if let Ok(view) = SubmissionView::decode(&bad) {
                let mut out = Vec::new();
                view.headers_into(&mut out);
                let sum: usize = out.iter().map(|h| h.name().len() + h.value().len()).sum();
                assert!(sum + view.body.len() <= bad.len());
            }
        }
        // A header count that claims more than the record holds.
        let mut bad = buf.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(SubmissionView::decode(&bad).unwrap_err(), Malformed::Count);
        // An absent field with a length.
        let mut bad = buf.clone();
        bad[3] &= !(1 << TENANT);
        assert_eq!(SubmissionView::decode(&bad).unwrap_err(), Malformed::Text);
        // Not UTF-8 where text is required.
        let mut bad = buf.clone();
        let at = SUBMISSION_FIXED + 16 + 4 + "/v1/chat/completions".len();
        assert_eq!(&bad[at..at + 4], b"acme");
        bad[at] = 0xff;
        assert_eq!(SubmissionView::decode(&bad).unwrap_err(), Malformed::Text);
    }

    #[test]
    fn response_frames_carry_both_parts() {
        let headers = [Header::new(b"a", b"1")];
        let response_headers = [Header::new(b"server", b"up"), Header::new(b"x", b"")];
        let parts = SubmissionParts {
            kind: FrameKind::Response,
            response: Some((201, &response_headers, b"answer")),
            ..sample(&headers)
        };
        let mut buf = vec![0u8; parts.encoded_len().unwrap()];
        parts.encode(4, &mut buf);
        let view = SubmissionView::decode(&buf).unwrap();
        assert_eq!(view.status, 201);
        assert_eq!(view.body, parts.body);
        assert_eq!(view.response_body, b"answer");
        let mut out = Vec::new();
        view.response_headers_into(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].value(), b"up");
        // A request frame may not carry a response part.
        buf[0] = FrameKind::Request as u8;
        assert_eq!(
            SubmissionView::decode(&buf).unwrap_err(),
            Malformed::Reserved
        );
    }

    #[test]
    fn resume_records_round_trip_and_truncations_are_refused() {
        let len = ResumeView::encoded_len(b"approve").unwrap();
        let mut buf = vec![0u8; len];
        ResumeView::encode(3, 42, 77, AnswerOutcome::Timeout, b"approve", &mut buf);
        assert_eq!(peek_kind(&buf), Some(FrameKind::Resume));
        let view = ResumeView::decode(&buf).unwrap();
        assert_eq!(
            (view.token, view.request_id, view.pause_token, view.body),
            (3, 42, 77, &b"approve"[..])
        );
        assert_eq!(view.outcome, AnswerOutcome::Timeout);
        for cut in 0..buf.len() {
            assert!(ResumeView::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = buf.clone();
        bad[2] = 9;
        assert_eq!(ResumeView::decode(&bad).unwrap_err(), Malformed::Kind);
        // Not a frame record.
        let long = [7u8; 64];
        let mut buf = vec![0u8; ResumeView::encoded_len(&long).unwrap()];
        ResumeView::encode(3, 42, 77, AnswerOutcome::Ok, &long, &mut buf);
        assert!(ResumeView::decode(&buf).is_ok());
        assert_eq!(SubmissionView::decode(&buf).unwrap_err(), Malformed::Kind);
    }

    #[test]
    fn chunk_records_and_opened_answers_round_trip() {
        let mut buf = vec![0u8; ChunkView::encoded_len(b"data: x").unwrap()];
        ChunkView::encode(5, 1 << 32 | 3, 9, true, b"data: x", &mut buf);
        assert_eq!(peek_kind(&buf), Some(FrameKind::Chunk));
        let c = ChunkView::decode(&buf).unwrap();
        assert_eq!(
            (c.token, c.stream, c.index, c.last, c.chunk),
            (5, 1 << 32 | 3, 9, true, &b"data: x"[..])
        );
        for cut in 0..buf.len() {
            assert!(ChunkView::decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        buf[2] = 2;
        assert_eq!(ChunkView::decode(&buf).unwrap_err(), Malformed::Reserved);

        let mut buf = [0u8; COMPLETION_FIXED];
        encode_opened(8, 77, true, &mut buf);
        match CompletionView::decode(&buf) {
            Ok(CompletionView::Answer(a)) => assert_eq!(a.stream, Some((77, true))),
            other => panic!("{other:?}"),
        }
        buf[33] = 1;
        assert!(CompletionView::decode(&buf).is_err());
    }

    #[test]
    fn hostile_completions_are_refused() {
        let mut buf = vec![0u8; error_len("boom")];
        encode_error(5, E_SHUTDOWN, "boom", &mut buf);
        assert!(matches!(
            CompletionView::decode(&buf),
            Ok(CompletionView::Error { code: E_SHUTDOWN })
        ));
        for cut in 0..buf.len() {
            assert!(CompletionView::decode(&buf[..cut]).is_err());
        }
        let mut bad = buf.clone();
        bad[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(CompletionView::decode(&bad).is_err());
    }
}
