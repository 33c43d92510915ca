//! dlp-redact: redacts PII in requests and in streamed responses, chunk
//! boundaries included.
//!
//! - **Request gate**: the raw request body is scanned (JSON escapes are
//!   boundaries, see [`matcher`]) and every match is replaced in one
//!   copy-on-write range.
//! - **Response gate, per chunk** ([`ResponseMode::PerChunk`]), see
//!   [`process_chunk`]: an SSE stream is taken event by event, whatever
//!   its chunking (a chunk may hold several events, or end inside one:
//!   the unfinished event's bytes are held in the stream and sent with the
//!   chunk that completes it). Each event's `choices[0].delta.content` is
//!   decoded, scanned after the stream's *carry*, and written back
//!   re-encoded. The carry is the end of the text seen so far that may
//!   still grow into a match (the rule and its limits: [`matcher::Carry`]);
//!   it is held back from the event it came in and emitted at the front of
//!   the next event's content, or, when an event without content (the
//!   finish event, `data: [DONE]`) comes, in an event of its own inserted
//!   before it. The last chunk flushes everything. A whole (not streamed)
//!   answer arrives as one last chunk and is redacted as raw JSON; a
//!   stream that is not SSE is redacted as plain bytes, with the same
//!   carry.
//!
//! Streams live in the instance, keyed by request id, at most
//! `max_streams` of them, with at most `max_carry` bytes of text and
//! [`MAX_PENDING_EVENT`] bytes of an unfinished event each; a stream that
//! ends without its last chunk is forgotten after [`IDLE_STREAM`] when
//! room is needed. A stream that finds the table full runs without a
//! carry (each chunk is redacted alone, so a pattern split across chunks
//! is missed) and says so in evidence. Only the first `data:` line of an
//! event and the first choice are read.
//!
//! Config (every key optional):
//! `{"patterns": ["email", "card", "api_key"], "key_prefixes": ["sk-"],
//!   "replacement": "[REDACTED:{kind}]", "max_carry": 128, "max_streams": 1024}`
//!
//! Evidence: `dlp_redact.redacted` with counts per kind (never the values),
//! `dlp_redact.no_carry` when a stream runs without a carry,
//! `dlp_redact.event_too_large` when an event outgrows the pending cap.
#![forbid(unsafe_code)]

pub mod matcher;

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use odock_plugin_abi::sdk::{Host, InitContext, Plugin, RequestGate, ResponseGate, Verdict};
use odock_plugin_abi::view::Frame;
use odock_plugin_abi::{Capabilities, Capability, Error, ResponseMode};
use serde_json::Value;

use matcher::{Carry, Counts, Matcher, json_mask, redact_into};

/// A stream with no chunk for this long is forgotten when room is needed.
pub const IDLE_STREAM: Duration = Duration::from_secs(300);

/// The plugin's validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Which patterns are on.
    pub matcher: Matcher,
    /// What a match becomes; `{kind}` is replaced by the kind's name.
    pub replacement: String,
    /// The most bytes held back per stream.
    pub max_carry: usize,
    /// The most streams with a carry at once.
    pub max_streams: usize,
}

/// The JSON Schema of [`Config`].
pub const CONFIG_SCHEMA: &str = concat!(
    r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","#,
    r#""additionalProperties":false,"properties":{"#,
    r#""patterns":{"type":"array","items":{"enum":["email","card","api_key"]}},"#,
    r#""key_prefixes":{"type":"array","maxItems":16,"items":{"type":"string","pattern":"^[A-Za-z0-9_-]{2,16}$"}},"#,
    r#""replacement":{"type":"string","maxLength":64,"pattern":"^[^\"\\\\\\u0000-\\u001f]*$"},"#,
    r#""max_carry":{"type":"integer","minimum":64,"maximum":4096},"#,
    r#""max_streams":{"type":"integer","minimum":1,"maximum":65536}}}"#
);

impl Config {
    /// Reads and checks a config.
    ///
    /// # Errors
    /// A message naming the offending field.
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        let obj = &odock_plugin_common::config_object(
            bytes,
            &[
                "patterns",
                "key_prefixes",
                "replacement",
                "max_carry",
                "max_streams",
            ],
        )?;
        let patterns: Vec<&str> = match obj.get("patterns") {
            None => vec!["email", "card", "api_key"],
            Some(v) => strings(v, "patterns")?,
        };
        let mut matcher = Matcher {
            email: false,
            card: false,
            key_prefixes: Vec::new(),
        };
        let mut keys = false;
        for p in patterns {
            match p {
                "email" => matcher.email = true,
                "card" => matcher.card = true,
                "api_key" => keys = true,
                other => return Err(format!("patterns: unknown pattern `{other}`")),
            }
        }
        if keys {
            let prefixes = match obj.get("key_prefixes") {
                None => vec!["sk-"],
                Some(v) => strings(v, "key_prefixes")?,
            };
            if prefixes.is_empty() || prefixes.len() > 16 {
                return Err("key_prefixes: 1 to 16 prefixes".into());
            }
            for p in prefixes {
                let ok = (2..=16).contains(&p.len())
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return Err(format!(
                        "key_prefixes: `{p}` is not 2 to 16 of [A-Za-z0-9_-]"
                    ));
                }
                matcher.key_prefixes.push(p.as_bytes().to_vec());
            }
        }
        let replacement = match obj.get("replacement") {
            None => "[REDACTED:{kind}]".to_owned(),
            Some(Value::String(s))
                if s.len() <= 64 && !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') =>
            {
                s.clone()
            }
            Some(_) => {
                return Err(
                    "replacement: a string of at most 64 bytes without quotes, backslashes or control characters".into(),
                );
            }
        };
        let max_carry = int(obj.get("max_carry"), "max_carry", 64..=4096, 128)?;
        let max_streams = int(obj.get("max_streams"), "max_streams", 1..=65536, 1024)?;
        Ok(Config {
            matcher,
            replacement,
            max_carry,
            max_streams,
        })
    }
}

fn strings<'v>(v: &'v Value, field: &str) -> Result<Vec<&'v str>, String> {
    v.as_array()
        .ok_or_else(|| format!("{field}: must be an array of strings"))?
        .iter()
        .map(|s| {
            s.as_str()
                .ok_or_else(|| format!("{field}: must be an array of strings"))
        })
        .collect()
}

fn int(
    v: Option<&Value>,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
    default: usize,
) -> Result<usize, String> {
    match v {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| range.contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| {
                format!(
                    "{field}: an integer from {} to {}",
                    range.start(),
                    range.end()
                )
            }),
    }
}

/// One stream's state.
#[derive(Debug, Default)]
pub struct Stream {
    carry: Carry,
    /// The last event's JSON, for an event the plugin inserts to flush.
    template: Option<Value>,
    /// Whether the stream is SSE (decided on its first chunk).
    sse: Option<bool>,
    /// The bytes of an SSE event whose end has not arrived yet.
    pending: Vec<u8>,
}

/// One instance per worker.
pub struct DlpRedact {
    config: Config,
    /// Per request id: the stream and when its last chunk came.
    streams: HashMap<u64, (Stream, Instant)>,
    /// The last request told it runs without a carry (one record each).
    no_carry_reported: u64,
}

impl Plugin for DlpRedact {
    const NAME: &'static str = "dlp-redact";
    const VERSION: &'static str = "1.0.0";
    const CAPABILITIES: Capabilities = Capabilities::of(&[
        Capability::ReadRequestBody,
        Capability::WriteRequestBody,
        Capability::ReadResponseBody,
        Capability::WriteResponseBody,
        Capability::EmitEvidence,
    ]);
    const RESPONSE_MODE: ResponseMode = ResponseMode::PerChunk;
    const CONFIG_SCHEMA: &'static str = CONFIG_SCHEMA;

    fn init(ctx: &InitContext<'_>) -> Result<Self, Error> {
        let config = odock_plugin_common::init_config(ctx, Self::NAME, Config::parse)?;
        Ok(DlpRedact {
            config,
            streams: HashMap::new(),
            no_carry_reported: u64::MAX,
        })
    }
}

impl RequestGate for DlpRedact {
    fn on_request(&mut self, host: &Host<'_>, frame: &Frame<'_>) -> Result<Verdict, Error> {
        let body = frame.request.body;
        if body.is_empty() || !self.config.matcher.any() {
            return Ok(Verdict::Continue);
        }
        let masked = json_mask(body);
        let matches = self.config.matcher.find(&masked, 0);
        let (Some(first), Some(last)) = (matches.first(), matches.last()) else {
            return Ok(Verdict::Continue);
        };
        let (start, end) = (first.start, last.end);
        let shifted: Vec<_> = matches
            .iter()
            .map(|m| matcher::Match {
                start: m.start - start,
                end: m.end - start,
                kind: m.kind,
            })
            .collect();
        let mut out = Vec::with_capacity(end - start);
        let counts = redact_into(
            &body[start..end],
            &shifted,
            &self.config.replacement,
            &mut out,
        );
        host.replace_body_range(start as u64, (end - start) as u64, &out)?;
        emit_counts(host, "request", counts)
    }
}

impl ResponseGate for DlpRedact {
    fn on_response(&mut self, host: &Host<'_>, frame: &Frame<'_>) -> Result<Verdict, Error> {
        let Some(response) = frame.response else {
            return Ok(Verdict::Continue);
        };
        if !self.config.matcher.any() {
            return Ok(Verdict::Continue);
        }
        let (chunk, last, id) = (response.chunk, response.last_chunk, frame.request_id);
        // A whole answer (one last chunk, no stream before it): raw JSON.
        if last && !self.streams.contains_key(&id) && !looks_like_sse(chunk) {
            let matches = self.config.matcher.find(&json_mask(chunk), 0);
            if matches.is_empty() {
                return Ok(Verdict::Continue);
            }
            let mut out = Vec::with_capacity(chunk.len());
            let counts = redact_into(chunk, &matches, &self.config.replacement, &mut out);
            host.replace_body_range(0, chunk.len() as u64, &out)?;
            return emit_counts(host, "response", counts);
        }
        let has_slot = self.ensure_stream(id, Instant::now());
        if !has_slot && self.no_carry_reported != id {
            self.no_carry_reported = id;
            host.emit_evidence("dlp_redact.no_carry", br#"{"reason":"stream table full"}"#)?;
        }
        let mut scratch = Stream::default();
        let stream = match self.streams.get_mut(&id) {
            Some((s, _)) if has_slot => s,
            _ => &mut scratch,
        };
        // Without a slot nothing can be held: each chunk stands alone.
        let done = process_chunk(&self.config, stream, chunk, last || !has_slot);
        if last {
            self.streams.remove(&id);
        }
        if done.oversized {
            host.emit_evidence("dlp_redact.event_too_large", b"")?;
        }
        if done.out != chunk {
            host.replace_body_range(0, chunk.len() as u64, &done.out)?;
        }
        if done.counts.total() > 0 {
            emit_counts(host, "response", done.counts)?;
        }
        Ok(Verdict::Continue)
    }
}

impl DlpRedact {
    /// Makes sure stream `id` has a slot; `false` when the table is full
    /// even after forgetting idle streams.
    fn ensure_stream(&mut self, id: u64, now: Instant) -> bool {
        if let Some((_, touched)) = self.streams.get_mut(&id) {
            *touched = now;
            return true;
        }
        if self.streams.len() >= self.config.max_streams {
            self.streams
                .retain(|_, (_, touched)| now.saturating_duration_since(*touched) < IDLE_STREAM);
        }
        if self.streams.len() >= self.config.max_streams {
            return false;
        }
        self.streams.insert(id, (Stream::default(), now));
        true
    }
}

fn emit_counts(host: &Host<'_>, gate: &str, counts: Counts) -> Result<Verdict, Error> {
    let data = format!(
        r#"{{"gate":"{gate}","email":{},"card":{},"api_key":{}}}"#,
        counts.email, counts.card, counts.api_key
    );
    host.emit_evidence("dlp_redact.redacted", data.as_bytes())?;
    Ok(Verdict::Continue)
}

/// What one chunk is.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// An SSE event whose `choices[0].delta.content` is the string literal
    /// at `literal` (offsets in the chunk, quotes included).
    Content {
        /// The literal's bytes in the chunk.
        literal: Range<usize>,
        /// Its decoded text.
        text: String,
        /// The event's JSON.
        json: Value,
    },
    /// An SSE event without content (role, finish, tool calls), or
    /// `data: [DONE]` (`json` is `None`).
    Other {
        /// The event's JSON.
        json: Option<Value>,
    },
    /// Not an SSE event.
    NotSse,
}

/// Reads one SSE event (`data: {...}`, with optional `event:`, `id:` and
/// comment lines).
pub fn parse_event(chunk: &[u8]) -> Event {
    let mut offset = 0;
    let mut data = None;
    for line in chunk.split(|&b| b == b'\n') {
        let l = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = l.strip_prefix(b"data:") {
            let skip = usize::from(rest.first() == Some(&b' '));
            data = Some((offset + 5 + skip, &rest[skip..]));
            break;
        }
        let field = l.is_empty()
            || l.starts_with(b":")
            || l.starts_with(b"event:")
            || l.starts_with(b"id:")
            || l.starts_with(b"retry:");
        if !field {
            return Event::NotSse;
        }
        offset += line.len() + 1;
    }
    let Some((at, payload)) = data else {
        return Event::NotSse;
    };
    if payload.trim_ascii() == b"[DONE]" {
        return Event::Other { json: None };
    }
    let Ok(json) = serde_json::from_slice::<Value>(payload) else {
        return Event::NotSse;
    };
    let literal = json
        .pointer("/choices/0/delta/content")
        .and_then(Value::as_str)
        .and_then(|text| content_literal(payload, text).map(|r| (r, text.to_owned())));
    match literal {
        Some((r, text)) => Event::Content {
            literal: at + r.start..at + r.end,
            text,
            json,
        },
        None => Event::Other { json: Some(json) },
    }
}

/// Where the `"content"` string literal holding `text` is in `payload`.
fn content_literal(payload: &[u8], text: &str) -> Option<Range<usize>> {
    let key = b"\"content\"";
    let mut from = 0;
    while let Some(p) = payload[from..].windows(key.len()).position(|w| w == key) {
        let mut i = from + p + key.len();
        from = i;
        let skip_ws = |i: &mut usize| {
            while payload.get(*i).is_some_and(u8::is_ascii_whitespace) {
                *i += 1;
            }
        };
        skip_ws(&mut i);
        if payload.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        skip_ws(&mut i);
        if payload.get(i) != Some(&b'"') {
            continue;
        }
        let start = i;
        i += 1;
        while let Some(&b) = payload.get(i) {
            match b {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        if i >= payload.len() {
            return None;
        }
        let end = i + 1;
        if serde_json::from_slice::<String>(&payload[start..end])
            .ok()
            .as_deref()
            == Some(text)
        {
            return Some(start..end);
        }
    }
    None
}

/// An SSE event carrying `text` as content, shaped like `template` (its
/// `id`, `object`, `created`, `model`).
fn flush_event(template: Option<&Value>, text: &str) -> Vec<u8> {
    let mut event = serde_json::Map::new();
    if let Some(Value::Object(t)) = template {
        for key in ["id", "object", "created", "model", "system_fingerprint"] {
            if let Some(v) = t.get(key) {
                event.insert(key.to_owned(), v.clone());
            }
        }
    }
    event.insert(
        "choices".to_owned(),
        serde_json::json!([{"index": 0, "delta": {"content": text}, "finish_reason": null}]),
    );
    format!("data: {}\n\n", Value::Object(event)).into_bytes()
}

/// The most bytes of one SSE event held while waiting for its end; a
/// longer event is passed on as it is (with `dlp_redact.event_too_large`
/// evidence).
pub const MAX_PENDING_EVENT: usize = 64 * 1024;

/// What [`process_chunk`] made of a chunk.
#[derive(Debug)]
pub struct Processed {
    /// The bytes to send instead of the chunk.
    pub out: Vec<u8>,
    /// What was redacted.
    pub counts: Counts,
    /// An event grew past [`MAX_PENDING_EVENT`] and was passed on unscanned.
    pub oversized: bool,
}

/// Whether a chunk starts like an SSE stream (a `data:`, `event:`, `id:`,
/// `retry:` or comment line).
pub fn looks_like_sse(chunk: &[u8]) -> bool {
    let start = chunk.iter().position(|&b| b != b'\n' && b != b'\r');
    let line = &chunk[start.unwrap_or(chunk.len())..];
    [&b"data:"[..], b"event:", b"id:", b"retry:", b":"]
        .iter()
        .any(|f| line.starts_with(f))
}

/// Where the first SSE event of `bytes` ends (after its blank line).
fn event_end(bytes: &[u8]) -> Option<usize> {
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Redacts one chunk of a stream, the host aside (so tests can cut a
/// stream anywhere). `last`: nothing may be held after this chunk.
///
/// An SSE stream is processed event by event, whatever the chunking: the
/// bytes of an event whose blank line has not arrived are held in the
/// stream (and taken out of this chunk), complete events are rewritten
/// (their content after the carry; a flush event before a content-less
/// one when text is held), and at the end everything left is flushed. A
/// stream that is not SSE is scanned as plain bytes with the same carry.
pub fn process_chunk(config: &Config, stream: &mut Stream, chunk: &[u8], last: bool) -> Processed {
    let (matcher, template, cap) = (&config.matcher, &config.replacement, config.max_carry);
    let mut out = Vec::with_capacity(chunk.len() + 64);
    let mut counts = Counts::default();
    let mut oversized = false;
    let mut input = std::mem::take(&mut stream.pending);
    input.extend_from_slice(chunk);
    let sse = match stream.sse {
        Some(sse) => sse,
        None => {
            // Decide once the first line (or six bytes, enough for any
            // field name) is in; until then hold what came.
            if !last && input.len() < 6 && !input.contains(&b'\n') {
                stream.pending = input;
                return Processed {
                    out,
                    counts,
                    oversized,
                };
            }
            *stream.sse.insert(looks_like_sse(&input))
        }
    };
    if !sse {
        counts = stream
            .carry
            .feed(matcher, template, &input, last, cap, &mut out);
        return Processed {
            out,
            counts,
            oversized,
        };
    }
    let mut at = 0;
    while let Some(end) = event_end(&input[at..]) {
        counts.merge(process_event(
            config,
            stream,
            &input[at..at + end],
            &mut out,
        ));
        at += end;
    }
    let rest = &input[at..];
    if last {
        if !rest.is_empty() {
            counts.merge(process_event(config, stream, rest, &mut out));
        }
        if !stream.carry.held().is_empty() {
            let mut text = Vec::new();
            counts.merge(
                stream
                    .carry
                    .feed(matcher, template, b"", true, cap, &mut text),
            );
            out.extend_from_slice(&flush_event(
                stream.template.as_ref(),
                &String::from_utf8_lossy(&text),
            ));
        }
    } else if rest.len() > MAX_PENDING_EVENT {
        oversized = true;
        out.extend_from_slice(rest);
    } else {
        stream.pending = rest.to_vec();
    }
    Processed {
        out,
        counts,
        oversized,
    }
}

/// Rewrites one whole SSE event into `out`.
fn process_event(config: &Config, stream: &mut Stream, event: &[u8], out: &mut Vec<u8>) -> Counts {
    let (matcher, template, cap) = (&config.matcher, &config.replacement, config.max_carry);
    match parse_event(event) {
        Event::Content {
            literal,
            text,
            json,
        } => {
            let mut redacted = Vec::with_capacity(text.len() + 32);
            let counts = stream.carry.feed(
                matcher,
                template,
                text.as_bytes(),
                false,
                cap,
                &mut redacted,
            );
            // The carry splits only at ASCII bytes: `redacted` is UTF-8.
            let encoded =
                Value::String(String::from_utf8_lossy(&redacted).into_owned()).to_string();
            out.extend_from_slice(&event[..literal.start]);
            out.extend_from_slice(encoded.as_bytes());
            out.extend_from_slice(&event[literal.end..]);
            stream.template = Some(json);
            counts
        }
        Event::Other { json } => {
            let mut counts = Counts::default();
            if !stream.carry.held().is_empty() {
                let mut text = Vec::new();
                counts = stream
                    .carry
                    .feed(matcher, template, b"", true, cap, &mut text);
                let shape = json.as_ref().or(stream.template.as_ref());
                out.extend_from_slice(&flush_event(shape, &String::from_utf8_lossy(&text)));
            }
            if json.is_some() {
                stream.template = json;
            }
            out.extend_from_slice(event);
            counts
        }
        // Comments, keep-alives, data that is not JSON: passed on.
        Event::NotSse => {
            out.extend_from_slice(event);
            Counts::default()
        }
    }
}

odock_plugin_abi::export_plugin!(DlpRedact, request, response);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_refusals() {
        let c = Config::parse(b"{}").unwrap();
        assert!(c.matcher.email && c.matcher.card);
        assert_eq!(c.matcher.key_prefixes, vec![b"sk-".to_vec()]);
        assert_eq!((c.max_carry, c.max_streams), (128, 1024));
        let c = Config::parse(br#"{"patterns":["card"],"max_carry":64}"#).unwrap();
        assert!(!c.matcher.email && c.matcher.card && c.matcher.key_prefixes.is_empty());
        for bad in [
            &b"[]"[..],
            b"nope",
            br#"{"patterns":["ssn"]}"#,
            br#"{"colour":1}"#,
            br#"{"max_carry":8}"#,
            br#"{"replacement":"\""}"#,
            br#"{"key_prefixes":["s k"]}"#,
        ] {
            assert!(
                Config::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        serde_json::from_str::<Value>(CONFIG_SCHEMA).expect("the schema is JSON");
    }

    #[test]
    fn reads_sse_events() {
        let chunk = b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi \\\"x\\\"\"}}]}\n\n";
        match parse_event(chunk) {
            Event::Content { literal, text, .. } => {
                assert_eq!(text, "hi \"x\"");
                assert_eq!(&chunk[literal], &b"\"hi \\\"x\\\"\""[..]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_event(b"data: [DONE]\n\n"),
            Event::Other { json: None }
        );
        assert!(matches!(
            parse_event(
                b"event: x\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
            ),
            Event::Other { json: Some(_) }
        ));
        assert_eq!(parse_event(b"{\"choices\":[]}"), Event::NotSse);
    }

    #[test]
    fn flush_events_keep_the_stream_shape() {
        let t: Value = serde_json::from_str(r#"{"id":"c1","model":"m","usage":{}}"#).unwrap();
        let e = flush_event(Some(&t), "tail");
        let s = String::from_utf8(e).unwrap();
        let v: Value = serde_json::from_str(s.strip_prefix("data: ").unwrap().trim()).unwrap();
        assert_eq!(v["id"], "c1");
        assert_eq!(v["choices"][0]["delta"]["content"], "tail");
        assert!(v.get("usage").is_none());
    }

    fn sse(pieces: &[&str]) -> Vec<u8> {
        let mut stream = String::from(
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
        );
        for p in pieces {
            let event =
                serde_json::json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": p}}]});
            stream.push_str(&format!("data: {event}\n\n"));
        }
        stream.push_str("data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
        stream.push_str("data: [DONE]\n\n");
        stream.into_bytes()
    }

    fn content(sent: &[u8]) -> String {
        let text = std::str::from_utf8(sent).unwrap();
        let mut out = String::new();
        for event in text.split("\n\n").filter(|e| !e.is_empty()) {
            let data = event.strip_prefix("data: ").expect("an SSE event");
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(data).expect("JSON data");
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                out.push_str(c);
            }
        }
        out
    }

    /// Cuts `bytes` at `cuts` and runs the chunks through one stream.
    fn run(config: &Config, bytes: &[u8], cuts: &[usize]) -> (Vec<u8>, Counts) {
        let mut stream = Stream::default();
        let mut sent = Vec::new();
        let mut counts = Counts::default();
        let mut from = 0;
        for (i, &to) in cuts.iter().chain([bytes.len()].iter()).enumerate() {
            let last = i == cuts.len();
            let done = process_chunk(config, &mut stream, &bytes[from..to], last);
            assert!(!done.oversized);
            sent.extend_from_slice(&done.out);
            counts.merge(done.counts);
            from = to;
        }
        assert!(stream.pending.is_empty() && stream.carry.held().is_empty());
        (sent, counts)
    }

    #[test]
    fn any_chunking_of_a_stream_redacts_the_same() {
        let config = Config::parse(b"{}").unwrap();
        let bytes = sse(&[
            "Card ",
            "4111 1111 11",
            "11 1111, mail j",
            "ane@example.com",
            " ok.",
        ]);
        let want = "Card [REDACTED:card], mail [REDACTED:email] ok.";
        let (whole, _) = run(&config, &bytes, &[]);
        assert_eq!(content(&whole), want);
        for a in 0..=bytes.len() {
            let (sent, counts) = run(&config, &bytes, &[a]);
            assert_eq!(content(&sent), want, "cut at {a}");
            assert_eq!((counts.card, counts.email), (1, 1), "cut at {a}");
            assert!(sent.ends_with(b"data: [DONE]\n\n"));
        }
        for a in (0..bytes.len()).step_by(7) {
            for b in (a..bytes.len()).step_by(5) {
                let (sent, _) = run(&config, &bytes, &[a, b]);
                assert_eq!(content(&sent), want, "cuts at {a}, {b}");
            }
        }
    }

    #[test]
    fn a_plain_stream_is_scanned_as_bytes() {
        let config = Config::parse(b"{}").unwrap();
        let bytes = b"mail bob@exam";
        let mut stream = Stream::default();
        let a = process_chunk(&config, &mut stream, bytes, false);
        let b = process_chunk(&config, &mut stream, b"ple.com now", true);
        let mut sent = a.out;
        sent.extend_from_slice(&b.out);
        assert_eq!(sent, b"mail [REDACTED:email] now");
    }
}
