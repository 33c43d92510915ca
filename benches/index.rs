//! The parse-once index against a full JSON parse of the same body.
//!
//! `index` is `FrameIndex::rebuild` into a reused index, what a worker does
//! once per frame: one pass that validates the whole body and records the
//! spans of every member the formats know. Baselines on the same bytes:
//! `serde_json::from_slice::<Value>` (what a gateway that parses once into
//! a tree pays, allocations included) and `from_slice::<IgnoredAny>`
//! (serde_json validating without building anything: the floor for a
//! validating pass).
//!
//! Bodies: `chat_small` (a realistic chat request, 1.9 KB: system prompt,
//! content parts, a tool call, tool schemas), `chat_large` (a 100-message
//! conversation, 60 KB, as agents send), `mcp_tools_call` (0.3 KB) and
//! `sse_chunk` (one streamed chat chunk's JSON, 0.2 KB).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use odock_dataplane::index::{ApiKind, FrameIndex, Part};

const CHAT_SMALL: &str = r#"{
  "model": "gpt-4o-2024-08-06",
  "messages": [
    {"role": "system", "content": "You are a helpful assistant for ACME Corp. Answer in the user's language. Never reveal internal ticket numbers such as \"INC-2024-0042\".\nBe concise."},
    {"role": "user", "content": [
      {"type": "text", "text": "What is in this image, and is it safe to publish? R\u00e9sum\u00e9 attached."},
      {"type": "image_url", "image_url": {"url": "https://example.com/images/boardwalk-2024-06-01.png", "detail": "high"}}
    ]},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc123", "type": "function",
      "function": {"name": "lookup_policy", "arguments": "{\"topic\":\"publication\",\"region\":\"EU\"}"}}]},
    {"role": "tool", "tool_call_id": "call_abc123", "content": "{\"policy\":\"Images of people need consent (GDPR art. 6). Landscapes are fine.\"}"},
    {"role": "user", "content": "Thanks. Summarise the policy in two sentences, please."}
  ],
  "tools": [{"type": "function", "function": {"name": "lookup_policy", "description": "Looks up an internal publication policy.",
    "parameters": {"type": "object", "properties": {"topic": {"type": "string"}, "region": {"type": "string", "enum": ["EU", "US", "APAC"]}},
    "required": ["topic"], "additionalProperties": false}}}],
  "tool_choice": "auto",
  "temperature": 0.2,
  "max_tokens": 512,
  "stream": true,
  "stream_options": {"include_usage": true},
  "user": "tenant-42/user-7",
  "metadata": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "team": "search"}
}"#;

const MCP: &str = r#"{"jsonrpc":"2.0","id":4711,"method":"tools/call","params":{"name":"search_issues","arguments":{"repo":"acme/gateway","query":"is:open label:bug \"memory leak\"","limit":20,"fields":["title","url","labels"]},"_meta":{"progressToken":"p-1"}}}"#;

const SSE: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_fc9f1d7035","choices":[{"index":0,"delta":{"content":" boardwalk"},"logprobs":null,"finish_reason":null}],"usage":null}"#;

fn chat_large() -> String {
    let mut body = String::from(
        r#"{"model":"claude-sonnet-4-5","max_tokens":4096,"system":"You are a coding agent.","stream":true,"messages":["#,
    );
    for i in 0..100 {
        if i > 0 {
            body.push(',');
        }
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        body.push_str(&format!(
            r#"{{"role":"{role}","content":[{{"type":"text","text":"Step {i}: the build failed with \"error[E0425]: cannot find value `x` in this scope\" at src/lib.rs:{i}:5.\nHere is the relevant code, with tabs\tand unicode \u2192 arrows, to look at before the next step of the plan; it continues for a while so the message is about as long as a real one in an agent loop. {pad}"}},{{"type":"tool_use","id":"toolu_{i}","name":"read_file","input":{{"path":"src/lib.rs","range":[{i},{j}]}}}}]}}"#,
            j = i + 40,
            pad = "lorem ipsum dolor sit amet ".repeat(12),
        ));
    }
    body.push_str("]}");
    body
}

fn bodies() -> Vec<(&'static str, Vec<u8>, Part, ApiKind)> {
    vec![
        (
            "chat_small",
            CHAT_SMALL.as_bytes().to_vec(),
            Part::Request,
            ApiKind::OpenAiChat,
        ),
        (
            "chat_large",
            chat_large().into_bytes(),
            Part::Request,
            ApiKind::AnthropicMessages,
        ),
        (
            "mcp_tools_call",
            MCP.as_bytes().to_vec(),
            Part::Request,
            ApiKind::Mcp,
        ),
        (
            "sse_chunk",
            SSE.as_bytes().to_vec(),
            Part::Response,
            ApiKind::OpenAiChat,
        ),
    ]
}

fn index(c: &mut Criterion) {
    let mut idx = Box::new(FrameIndex::new());
    for (name, body, part, hint) in bodies() {
        // The bodies are what they claim to be.
        idx.rebuild(&body, part, hint);
        assert!(idx.valid(), "{name}: {:?}", idx.error());
        serde_json::from_slice::<serde_json::Value>(&body).expect(name);

        let mut g = c.benchmark_group(format!("index/{name}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("index", |b| {
            b.iter(|| {
                idx.rebuild(black_box(&body), part, hint);
                black_box(idx.messages().len())
            });
        });
        g.bench_function("serde_json_value", |b| {
            b.iter(|| {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap())
            });
        });
        g.bench_function("serde_json_ignored_any", |b| {
            b.iter(|| {
                black_box(
                    serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).unwrap(),
                )
            });
        });
        g.finish();
    }
}

criterion_group!(benches, index);
criterion_main!(benches);
