//! Indexing allocates nothing: a counting global allocator watches
//! `index()`, `FrameIndex::rebuild`, SSE events, the ABI mapping and
//! unescaping run over every format, valid and invalid bodies alike.
//!
//! (The allocator shim the test needs, the one `unsafe` of it, is in
//! `counting/`; the index itself has none.)

use std::hint::black_box;

use odock_dataplane::index::{self, ApiKind, FrameIndex, Part};

mod counting;

use counting::allocations;

/// Bodies of every format, each with its part and hint. Built before
/// counting starts.
fn bodies() -> Vec<(Vec<u8>, Part, ApiKind)> {
    let mut long_chat = br#"{"model":"gpt-4o","stream":true,"messages":["#.to_vec();
    for i in 0..300 {
        if i > 0 {
            long_chat.push(b',');
        }
        long_chat.extend_from_slice(
            format!(r#"{{"role":"user","content":[{{"type":"text","text":"m\u00e9ssage {i}"}}],"x":{{"y":[[1,2],{{"z":null}}]}}}}"#)
                .as_bytes(),
        );
    }
    long_chat.extend_from_slice(b"]}");
    let mut deep = br#"{"x":"#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', 10_000));
    let req = |b: &[u8], hint| (b.to_vec(), Part::Request, hint);
    vec![
        (long_chat, Part::Request, ApiKind::OpenAiChat),
        req(
            br#"{"model":"o3","instructions":"Be \"brief\"","input":[{"role":"user","content":[{"type":"input_text","text":"\ud83d\ude00"}]},{"type":"function_call_output","output":"4"}]}"#,
            ApiKind::OpenAiResponses,
        ),
        req(
            br#"{"model":"claude","system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#,
            ApiKind::AnthropicMessages,
        ),
        req(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":[1,{"b":"c"}]}}}"#,
            ApiKind::Mcp,
        ),
        req(
            br#"[{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}},{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"p","arguments":{}}}]"#,
            ApiKind::Unknown,
        ),
        (
            br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#.to_vec(),
            Part::Response,
            ApiKind::OpenAiChat,
        ),
        (
            b"data: {\"choices\":[{\"delta\":{\"content\":\"\\u00e9\"},\"finish_reason\":null}]}\n\n".to_vec(),
            Part::SseEvent,
            ApiKind::OpenAiChat,
        ),
        (b"data: [DONE]\n\n".to_vec(), Part::SseEvent, ApiKind::OpenAiChat),
        // Invalid bodies: the error path allocates nothing either.
        req(br#"{"model":"a","model":"b"}"#, ApiKind::OpenAiChat),
        req(br#"{"messages":[{"role":"user","content":"unterminated"#, ApiKind::OpenAiChat),
        req(b"\xff\xfe", ApiKind::Unknown),
        (deep, Part::Request, ApiKind::Unknown),
    ]
}

#[test]
fn indexing_allocates_nothing() {
    let bodies = bodies();
    let mut reused = Box::new(FrameIndex::new());
    let mut abi = Box::new(FrameIndex::abi_messages_buffer());
    let mut buf = vec![0u8; 4096];

    // The counter works: an allocation here is seen.
    let before = allocations();
    black_box(Vec::<u8>::with_capacity(black_box(16)));
    assert_eq!(allocations() - before, 1, "the counting allocator counts");

    let before = allocations();
    let mut seen = 0usize;
    for _ in 0..3 {
        for (body, part, hint) in &bodies {
            let idx = index::index(body, *part, *hint);
            seen += usize::from(idx.valid());
            reused.rebuild(body, *part, *hint);
            seen += reused.messages().len() + reused.texts().len() + reused.mcp_calls().len();
            for t in reused.texts() {
                seen += t.text.unescape_into(body, &mut buf).map_or(0, str::len);
            }
            let n = reused.abi_messages(body, &mut abi);
            let view = reused.abi_index(body, &abi[..n]);
            seen += view.messages.len() + view.tool_arguments.len();
            black_box(&idx);
        }
    }
    let _ = index::validate(&bodies[0].0);
    let allocated = allocations() - before;
    assert_eq!(allocated, 0, "indexing allocated {allocated} times");
    // The work was real: the long chat alone has 128 recorded messages.
    assert!(seen > 3 * 128, "{seen}");
}
