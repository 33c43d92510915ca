//! Indexing allocates nothing: a counting global allocator watches
//! `index()`, `FrameIndex::rebuild`, SSE events, the ABI mapping and
//! unescaping run over every format, valid and invalid bodies alike.
//!
//! (The one `unsafe` here is the allocator shim the test needs; the index
//! itself has none.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use odock_dataplane::index::{self, ApiKind, FrameIndex, Part};

/// Counts the allocations of the current thread (the test harness runs
/// other threads that may allocate at any time).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // try_with: during thread teardown the slot may be gone.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees are ours; counting touches only a const-initialised
// thread-local `Cell`, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's (valid, non-zero) layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from this allocator, that is from `System`,
        // with `layout`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

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
