//! Hostile bytes as a frame body: the parse-once index must give a valid or
//! an invalid index, never panic or hang; every span of a valid index lies
//! inside the body, every string span decodes, and the index's JSON
//! validity agrees with serde_json's.
//!
//!   cargo +nightly fuzz run frame_index -- -max_total_time=60
#![no_main]

use odock_dataplane::index::{self, ApiKind, FrameIndex, Part, Span, Value};

const HINTS: [ApiKind; 5] = [
    ApiKind::Unknown,
    ApiKind::OpenAiChat,
    ApiKind::OpenAiResponses,
    ApiKind::AnthropicMessages,
    ApiKind::Mcp,
];

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let hint = HINTS[input.first().map_or(0, |b| usize::from(*b) % HINTS.len())];
    for part in [Part::Request, Part::Response, Part::SseEvent] {
        let idx = index::index(input, part, hint);
        match idx.error() {
            Some(e) => assert!(e.offset as usize <= input.len(), "{e} past the end"),
            None => check_spans(input, &idx),
        }
        // Syntax errors are the same for every part: the walkers only add
        // type and duplicate errors on top.
        if part == Part::Request {
            let syntax = index::validate(input);
            if syntax.is_err() {
                assert!(!idx.valid(), "the index accepted what validate refused");
            }
        }
    }
    // The grammar is serde_json's, but for two limits of serde_json's own:
    // it refuses numbers beyond f64 (and then stops looking), and nesting
    // of 128 (the index allows 128).
    match serde_json::from_slice::<serde_json::Value>(input) {
        Ok(_) => assert_eq!(index::validate(input), Ok(())),
        Err(e) if serde_limit(&e) => {}
        Err(e) => assert!(
            index::validate(input).is_err(),
            "serde_json refused ({e}) what validate accepted"
        ),
    }
});

fn inside(input: &[u8], span: Span) {
    assert!(span.end() as usize <= input.len(), "{span:?} past the end");
}

fn serde_limit(e: &serde_json::Error) -> bool {
    let e = e.to_string();
    e.contains("number out of range") || e.contains("recursion limit")
}

/// A value's span is one JSON text (as far as serde_json can tell).
fn value(input: &[u8], v: Option<Value>) {
    if let Some(v) = v {
        inside(input, v.span);
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(v.get(input)) {
            assert!(serde_limit(&e), "{v:?} is not a JSON text: {e}");
        }
    }
}

fn check_spans(input: &[u8], idx: &FrameIndex) {
    let mut buf = vec![0u8; input.len()];
    let mut text = |s: Option<index::JsonStr>| {
        if let Some(s) = s {
            inside(input, s.quoted());
            s.unescape_into(input, &mut buf)
                .expect("a string of a valid index decodes");
        }
    };
    text(idx.model);
    text(idx.event_type);
    for m in idx
        .system
        .iter()
        .chain(idx.messages())
        .chain(idx.choices().iter().map(|c| &c.message))
    {
        text(m.role_name);
        text(m.key);
        value(input, m.content);
    }
    for c in idx.choices() {
        text(c.finish_reason);
    }
    for t in idx.texts() {
        text(Some(t.text));
    }
    for c in idx.mcp_calls() {
        text(c.jsonrpc);
        text(c.method);
        text(c.name);
        text(c.uri);
        for v in [c.id, c.params, c.arguments, c.result, c.error] {
            value(input, v);
        }
    }
    if let Some(u) = idx.usage {
        value(input, Some(u.raw));
    }
    for s in [idx.sse.event, idx.sse.data].into_iter().flatten() {
        inside(input, s);
    }
}
