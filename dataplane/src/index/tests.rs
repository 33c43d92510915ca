//! Tests of the index: each format with realistic bodies, every error at
//! its byte, every truncation of every body, capacities, and property tests
//! against `serde_json` (spans, and validity of arbitrary bytes).

use super::*;
use proptest::prelude::*;
use serde_json::{Value as Json, json};

/// The decoded text of a string span.
fn text(body: &[u8], s: JsonStr) -> String {
    let mut buf = vec![0u8; s.span.len as usize];
    s.unescape_into(body, &mut buf)
        .expect("a valid index decodes")
        .to_owned()
}

fn text_of(body: &[u8], s: Option<JsonStr>) -> Option<String> {
    s.map(|s| text(body, s))
}

/// The value a span holds, parsed by serde_json.
fn json_at(body: &[u8], v: Value) -> Json {
    serde_json::from_slice(v.get(body)).expect("a span is a JSON text")
}

fn valid(body: &[u8], part: Part, hint: ApiKind) -> FrameIndex {
    let idx = index(body, part, hint);
    assert!(
        idx.valid(),
        "{} in {}",
        idx.error().unwrap(),
        String::from_utf8_lossy(body)
    );
    idx
}

fn invalid(body: &[u8], part: Part) -> IndexError {
    let idx = index(body, part, ApiKind::Unknown);
    idx.error()
        .unwrap_or_else(|| panic!("valid: {}", String::from_utf8_lossy(body)))
}

const CHAT: &[u8] = br#"{
  "model" : "gpt-4o-2024-08-06",
  "messages": [
    {"role": "system", "content": "You are \"helpful\".\nAnswer in \u00e9l\u00e9gant French \ud83d\ude00."},
    {"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "text", "text": "tab\there"}
    ], "name": "alice"},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "lookup", "arguments": "{\"q\":[1,2,{\"deep\":[[[]]]}]}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"found\": true}"},
    {"role": "developer", "content": "be brief"},
    {"role": "critic", "content": ""}
  ],
  "tools": [{"type": "function", "function": {"name": "lookup", "parameters":
     {"type": "object", "properties": {"q": {"type": "array", "items": {}}}, "required": ["q"]}}}],
  "temperature": -0.5e-3, "top_p": 1E+0, "n": 1, "logit_bias": {"50256": -100},
  "response_format": {"type": "json_schema", "json_schema": {"strict": true, "schema": {"a": [true, false, null]}}},
  "stream":	true,
  "stream_options": {"include_usage": true}
}
"#;

#[test]
fn openai_chat_request() {
    let idx = valid(
        CHAT,
        Part::Request,
        ApiKind::from_path(b"/v1/chat/completions?x=1"),
    );
    assert_eq!(idx.kind, ApiKind::OpenAiChat);
    assert_eq!(
        text_of(CHAT, idx.model).as_deref(),
        Some("gpt-4o-2024-08-06")
    );
    assert!(idx.stream);
    assert!(!idx.truncated);
    let roles: Vec<_> = idx.messages().iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Developer,
            Role::Other
        ]
    );
    let m = idx.messages();
    assert_eq!(m[5].role_name.unwrap().get(CHAT), b"critic");
    let system = m[0].content.unwrap();
    assert_eq!(system.kind, ValueKind::String);
    assert!(system.escaped);
    assert!(system.get(CHAT).starts_with(b"\"You are \\\""));
    assert_eq!(
        text(CHAT, system.as_str().unwrap()),
        "You are \"helpful\".\nAnswer in élégant French 😀."
    );
    let parts = m[1].content.unwrap();
    assert_eq!(parts.kind, ValueKind::Array);
    assert_eq!(json_at(CHAT, parts)[1]["image_url"]["detail"], "high");
    assert_eq!(m[2].content.unwrap().kind, ValueKind::Null);
    assert_eq!(
        text(CHAT, m[3].content.unwrap().as_str().unwrap()),
        "{\"found\": true}"
    );
    let texts: Vec<_> = idx
        .texts()
        .iter()
        .map(|t| (t.owner, text(CHAT, t.text)))
        .collect();
    assert_eq!(
        texts,
        [
            (
                TextOwner::Message(0),
                "You are \"helpful\".\nAnswer in élégant French 😀.".to_owned()
            ),
            (TextOwner::Message(1), "What is in this image?".to_owned()),
            (TextOwner::Message(1), "tab\there".to_owned()),
            (TextOwner::Message(3), "{\"found\": true}".to_owned()),
            (TextOwner::Message(4), "be brief".to_owned()),
            (TextOwner::Message(5), String::new()),
        ]
    );
    // The spans agree with serde_json's reading of the same body.
    let parsed: Json = serde_json::from_slice(CHAT).unwrap();
    for (i, m) in idx.messages().iter().enumerate() {
        assert_eq!(
            json_at(CHAT, m.content.unwrap()),
            parsed["messages"][i]["content"]
        );
    }
}

#[test]
fn chat_without_hint_and_keys_spelled_with_escapes() {
    // `mod\u0065l` is `model` to every JSON parser, so it is to the index.
    let body = br#"{"mod\u0065l":"m","messages":[{"r\u006fle":"\u0075ser","content":"hi"}],"stre\u0061m":false}"#;
    let idx = valid(body, Part::Request, ApiKind::Unknown);
    assert_eq!(idx.kind, ApiKind::OpenAiChat);
    assert_eq!(idx.model.unwrap().get(body), b"m");
    assert_eq!(idx.messages()[0].role, Role::User);
    assert!(idx.messages()[0].role_name.unwrap().eq_text(body, "user"));
    assert!(!idx.stream);
}

#[test]
fn openai_responses_request() {
    let body = br#"{"model":"gpt-4.1","instructions":"Talk like a pirate.","input":"Are semicolons optional?","stream":null}"#;
    let idx = valid(body, Part::Request, ApiKind::Unknown);
    assert_eq!(idx.kind, ApiKind::OpenAiResponses);
    assert!(!idx.stream);
    let system = idx.system.unwrap();
    assert_eq!(system.role, Role::System);
    assert_eq!(system.key.unwrap().get(body), b"instructions");
    assert_eq!(
        text(body, system.content.unwrap().as_str().unwrap()),
        "Talk like a pirate."
    );
    let m = idx.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].role, m[0].role_name, m[0].origin),
        (Role::User, None, Origin::Input)
    );
    assert_eq!(
        m[0].content.unwrap().get(body),
        br#""Are semicolons optional?""#
    );
    assert_eq!(idx.texts()[0].owner, TextOwner::System);
    assert_eq!(idx.texts()[1].owner, TextOwner::Message(0));

    let body = br#"{"model":"o3","input":[
        {"role":"developer","content":"Only JSON."},
        {"type":"message","role":"user","content":[{"type":"input_text","text":"hello"},{"type":"input_image","image_url":"https://x/y.png"}]},
        {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
        {"type":"function_call_output","call_id":"c1","output":"42 \u00b0C"}
    ],"tools":[{"type":"web_search"}],"reasoning":{"effort":"high"}}"#;
    let idx = valid(body, Part::Request, ApiKind::from_path(b"/v1/responses"));
    assert_eq!(idx.kind, ApiKind::OpenAiResponses);
    let m = idx.messages();
    assert_eq!(m.len(), 4);
    assert_eq!(m[0].role, Role::Developer);
    assert_eq!(m[1].role, Role::User);
    assert_eq!(m[2].role, Role::Other);
    assert_eq!(m[2].content, None);
    assert_eq!(text(body, m[3].content.unwrap().as_str().unwrap()), "42 °C");
    let texts: Vec<_> = idx.texts().iter().map(|t| text(body, t.text)).collect();
    assert_eq!(texts, ["Only JSON.", "hello", "42 °C"]);
}

#[test]
fn anthropic_messages_request() {
    let body = br#"{"model":"claude-sonnet-4-5","max_tokens":1024,
      "system":[{"type":"text","text":"You are a lawyer.","cache_control":{"type":"ephemeral"}}],
      "messages":[
        {"role":"user","content":"Hello, Claude"},
        {"role":"assistant","content":[{"type":"text","text":"Hi."},{"type":"tool_use","id":"t1","name":"get_weather","input":{"city":"Paris"}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"sunny"}]}]}
      ],
      "stream":true,"metadata":{"user_id":"u-1"}}"#;
    let idx = valid(body, Part::Request, ApiKind::from_path(b"/v1/messages"));
    assert_eq!(idx.kind, ApiKind::AnthropicMessages);
    assert!(idx.stream);
    let system = idx.system.unwrap();
    assert_eq!(system.key.unwrap().get(body), b"system");
    assert_eq!(system.content.unwrap().kind, ValueKind::Array);
    assert_eq!(idx.messages().len(), 3);
    assert_eq!(
        json_at(body, idx.messages()[1].content.unwrap())[1]["input"]["city"],
        "Paris"
    );
    // The tool_result's nested text is spanned by its content, not listed.
    let texts: Vec<_> = idx
        .texts()
        .iter()
        .map(|t| (t.owner, text(body, t.text)))
        .collect();
    assert_eq!(
        texts,
        [
            (TextOwner::System, "You are a lawyer.".to_owned()),
            (TextOwner::Message(0), "Hello, Claude".to_owned()),
            (TextOwner::Message(1), "Hi.".to_owned()),
        ]
    );
    // Without a hint, a top-level `system` says Anthropic.
    assert_eq!(
        valid(body, Part::Request, ApiKind::Unknown).kind,
        ApiKind::AnthropicMessages
    );
}

#[test]
fn mcp_requests() {
    // params before method: one pass still keeps what the method uses.
    let body = br#"{"params":{"name":"get_weather","arguments":{"location":"New York","units":["c",{"x":null}]},"_meta":{"progressToken":1}},"jsonrpc":"2.0","id":7,"method":"tools/call"}"#;
    let idx = valid(body, Part::Request, ApiKind::Unknown);
    assert_eq!(idx.kind, ApiKind::Mcp);
    let call = idx.mcp().unwrap();
    assert_eq!(call.kind, McpMethod::ToolsCall);
    assert_eq!(call.jsonrpc.unwrap().get(body), b"2.0");
    assert_eq!(call.id.unwrap().get(body), b"7");
    assert_eq!(call.method.unwrap().get(body), b"tools/call");
    assert_eq!(call.name.unwrap().get(body), b"get_weather");
    assert_eq!(
        json_at(body, call.arguments.unwrap()),
        json!({"location":"New York","units":["c",{"x":null}]})
    );
    assert_eq!(
        json_at(body, call.params.unwrap())["_meta"]["progressToken"],
        1
    );
    assert_eq!(call.uri, None);

    let body = br#"{"jsonrpc":"2.0","id":"r-1","method":"resources\/read","params":{"uri":"file:///etc/hosts","name":"ignored"}}"#;
    let call = *valid(body, Part::Request, ApiKind::Mcp).mcp().unwrap();
    assert_eq!(call.kind, McpMethod::ResourcesRead);
    assert!(call.method.unwrap().escaped);
    assert_eq!(text(body, call.uri.unwrap()), "file:///etc/hosts");
    assert_eq!(call.name, None);

    let body = br#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"code_review","arguments":{"code":"def hello():\n    print('world')"}}}"#;
    let call = *valid(body, Part::Request, ApiKind::Mcp).mcp().unwrap();
    assert_eq!(call.kind, McpMethod::PromptsGet);
    assert_eq!(call.name.unwrap().get(body), b"code_review");
    assert_eq!(
        json_at(body, call.arguments.unwrap())["code"],
        "def hello():\n    print('world')"
    );

    let body = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let call = *valid(body, Part::Request, ApiKind::Mcp).mcp().unwrap();
    assert_eq!((call.kind, call.id), (McpMethod::Other, None));

    // An MCP response (the response gate): result, or error.
    let body = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"72F"}],"isError":false}}"#;
    let call = *valid(body, Part::Response, ApiKind::Mcp).mcp().unwrap();
    assert_eq!(call.kind, McpMethod::None);
    assert_eq!(json_at(body, call.result.unwrap())["isError"], false);
    let body = br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#;
    let call = *valid(body, Part::Response, ApiKind::Unknown).mcp().unwrap();
    assert_eq!(json_at(body, call.error.unwrap())["code"], -32700);
}

#[test]
fn mcp_batch() {
    let body = br#" [ {"jsonrpc":"2.0","id":1,"method":"tools/list"},
        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"rm","arguments":{"path":"/"}}},
        {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}} ] "#;
    let idx = valid(body, Part::Request, ApiKind::Mcp);
    assert!(idx.batch);
    assert_eq!(idx.kind, ApiKind::Mcp);
    assert!(idx.mcp().is_none(), "a batch has no single call");
    let kinds: Vec<_> = idx.mcp_calls().iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [McpMethod::Other, McpMethod::ToolsCall, McpMethod::Other]
    );
    assert_eq!(idx.mcp_calls()[1].name.unwrap().get(body), b"rm");
    // In a batch only JSON-RPC members count.
    let body = br#"[{"jsonrpc":"2.0","method":"x","model":{"not":"read"}}]"#;
    assert_eq!(valid(body, Part::Request, ApiKind::Unknown).model, None);
    assert_eq!(
        valid(b"[]", Part::Request, ApiKind::Mcp).mcp_calls().len(),
        0
    );
    assert_eq!(
        invalid(br#"[{"jsonrpc":"2.0"}, 3]"#, Part::Request).kind,
        ErrorKind::NotAnObject
    );
}

const CHAT_RESPONSE: &[u8] = br#"{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "The image shows a wooden boardwalk\u2026", "refusal": null, "annotations": []},
     "logprobs": null, "finish_reason": "stop"},
    {"index": 1, "message": {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
     "finish_reason": "tool_calls"}
  ],
  "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}},
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
}"#;

#[test]
fn openai_chat_response() {
    let body = CHAT_RESPONSE;
    let idx = valid(body, Part::Response, ApiKind::OpenAiChat);
    assert_eq!(idx.model.unwrap().get(body), b"gpt-4o-2024-08-06");
    let c = idx.choices();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].message.role, Role::Assistant);
    assert_eq!(
        text(body, c[0].message.content.unwrap().as_str().unwrap()),
        "The image shows a wooden boardwalk…"
    );
    assert_eq!(c[0].finish_reason.unwrap().get(body), b"stop");
    assert_eq!(c[1].finish_reason.unwrap().get(body), b"tool_calls");
    let usage = idx.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (Some(1117), Some(46), Some(1163))
    );
    assert_eq!(
        json_at(body, usage.raw)["prompt_tokens_details"]["cached_tokens"],
        0
    );
    assert_eq!(idx.texts().len(), 1);
    assert_eq!(idx.texts()[0].owner, TextOwner::Choice(0));
    assert_eq!(
        valid(body, Part::Response, ApiKind::Unknown).kind,
        ApiKind::OpenAiChat
    );
}

#[test]
fn anthropic_response() {
    let body = br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5",
      "content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,
      "usage":{"input_tokens":2095,"output_tokens":503}}"#;
    let idx = valid(body, Part::Response, ApiKind::Unknown);
    assert_eq!(idx.kind, ApiKind::AnthropicMessages);
    let c = idx.choices();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].message.role, Role::Assistant);
    assert_eq!(c[0].finish_reason.unwrap().get(body), b"end_turn");
    assert_eq!(text(body, idx.texts()[0].text), "Hi! My name is Claude.");
    assert_eq!(idx.usage.unwrap().prompt_tokens, Some(2095));
    assert_eq!(idx.usage.unwrap().completion_tokens, Some(503));
    assert_eq!(idx.event_type.unwrap().get(body), b"message");
}

#[test]
fn sse_openai_chunks() {
    let event = b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\\\"lo\"},\"finish_reason\":null}],\"usage\":null}\n\n";
    let idx = valid(event, Part::SseEvent, ApiKind::OpenAiChat);
    assert_eq!(idx.sse.data.unwrap().get(event)[0], b'{');
    assert!(!idx.sse.done);
    let c = idx.choices()[0];
    assert_eq!(c.message.role, Role::Assistant);
    assert_eq!(
        text(event, c.message.content.unwrap().as_str().unwrap()),
        "Hel\"lo"
    );
    assert_eq!(c.finish_reason, None);
    assert_eq!(idx.usage, None);
    // Spans are offsets into the event, so a plugin can redact in place.
    let content = c.message.content.unwrap().as_str().unwrap().span;
    assert_eq!(&event[content.range()], b"Hel\\\"lo");

    let event = b": keep-alive\r\nid: 5\r\ndata:{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}\r\n\r\n";
    let idx = valid(event, Part::SseEvent, ApiKind::OpenAiChat);
    assert_eq!(idx.choices()[0].finish_reason.unwrap().get(event), b"stop");
    assert_eq!(idx.usage.unwrap().total_tokens, Some(21));

    let idx = valid(b"data: [DONE]\n\n", Part::SseEvent, ApiKind::OpenAiChat);
    assert!(idx.sse.done);
    assert!(idx.choices().is_empty());

    let idx = valid(b": ping\n\n", Part::SseEvent, ApiKind::OpenAiChat);
    assert_eq!((idx.sse.data, idx.sse.done), (None, false));

    let e = invalid(b"data: {\"a\":\ndata: 1}\n\n", Part::SseEvent);
    assert_eq!((e.offset, e.kind), (12, ErrorKind::SseMultiLineData));
    let e = invalid(b"data: {}\n\ndata: {}\n\n", Part::SseEvent);
    assert_eq!((e.offset, e.kind), (10, ErrorKind::SseTrailingEvent));
    let e = invalid(b"data: {\"choices\":[}\n\n", Part::SseEvent);
    assert_eq!((e.offset, e.kind), (18, ErrorKind::ExpectedValue));
    // A malformed data line still tells which event it was.
    let idx = index_sse_event(b"event: x\ndata: {\n\n", ApiKind::Unknown);
    assert!(!idx.valid());
    assert!(idx.sse.event.is_some());
}

#[test]
fn sse_anthropic_and_responses_events() {
    let event = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ello frien\"}}\n\n";
    let idx = valid(event, Part::SseEvent, ApiKind::AnthropicMessages);
    assert_eq!(idx.sse.event.unwrap().get(event), b"content_block_delta");
    assert_eq!(idx.event_type.unwrap().get(event), b"content_block_delta");
    assert_eq!(text(event, idx.texts()[0].text), "ello frien");
    assert_eq!(
        idx.choices()[0].message.content.unwrap().kind,
        ValueKind::String
    );

    let event = b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n";
    let idx = valid(event, Part::SseEvent, ApiKind::AnthropicMessages);
    assert_eq!(
        idx.choices()[0].finish_reason.unwrap().get(event),
        b"end_turn"
    );
    assert_eq!(idx.usage.unwrap().completion_tokens, Some(15));

    let event = b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n";
    let idx = valid(event, Part::SseEvent, ApiKind::OpenAiResponses);
    assert_eq!(text(event, idx.texts()[0].text), "Hi");
}

#[test]
fn errors_name_the_byte_and_the_cause() {
    use ErrorKind::*;
    let wrong = |member, expected| WrongType { member, expected };
    let cases: &[(&[u8], u32, ErrorKind)] = &[
        (b"", 0, UnexpectedEnd),
        (b"   ", 3, UnexpectedEnd),
        (b"{", 1, UnexpectedEnd),
        (b"{\"model\":\"x\"", 12, UnexpectedEnd),
        (b"{\"a\":}", 5, ExpectedValue),
        (b"{\"a\":1,}", 7, ExpectedKey),
        (b"{a:1}", 1, ExpectedKey),
        (b"{\"a\" 1}", 5, ExpectedColon),
        (b"{\"a\":1 \"b\":2}", 7, ExpectedCommaOrBrace),
        (b"{\"a\":[1 2]}", 8, ExpectedCommaOrBracket),
        (b"{\"a\":[1,]}", 8, ExpectedValue),
        (b"{\"a\":\"\\x\"}", 6, InvalidEscape),
        (b"{\"a\":\"\\u12G4\"}", 10, InvalidEscape),
        (b"{\"a\":\"\\ud800\"}", 6, LoneSurrogate),
        (b"{\"a\":\"\\ud800\\u0041\"}", 6, LoneSurrogate),
        (b"{\"a\":\"\\udc00\"}", 6, LoneSurrogate),
        (b"{\"a\":\"tab\there\"}", 9, ControlCharacter),
        (b"{\"a\":\"\xc3\x28\"}", 6, InvalidUtf8),
        (b"{\"a\":\"ok\xff\"}", 8, InvalidUtf8),
        (b"{\"a\":01}", 6, ExpectedCommaOrBrace),
        (b"{\"a\":-}", 6, InvalidNumber),
        (b"{\"a\":1.}", 7, InvalidNumber),
        (b"{\"a\":1e+}", 8, InvalidNumber),
        (b"{\"a\":.5}", 5, ExpectedValue),
        (b"{\"a\":tru}", 8, InvalidLiteral),
        (b"{\"a\":nul", 8, UnexpectedEnd),
        (b"{} {}", 3, TrailingBytes),
        (b"{}x", 2, TrailingBytes),
        (b"\"just a string\"", 0, NotAnObject),
        (b"42", 0, NotAnObject),
        (b"{\"model\":42}", 9, wrong("model", "a string")),
        (b"{\"stream\":\"true\"}", 10, wrong("stream", "a boolean")),
        (b"{\"messages\":{}}", 12, wrong("messages", "an array")),
        (
            b"{\"messages\":[\"hi\"]}",
            13,
            wrong("messages[]", "an object"),
        ),
        (
            b"{\"messages\":[{\"role\":1}]}",
            21,
            wrong("messages[].role", "a string"),
        ),
        (
            b"{\"messages\":[{\"content\":{}}]}",
            24,
            wrong("messages[].content", "a string, an array or null"),
        ),
        (b"{\"input\":5}", 9, wrong("input", "a string or an array")),
        (
            b"{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":1}}",
            56,
            wrong("params.name", "a string"),
        ),
        (
            b"{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"arguments\":\"{}\"}}",
            61,
            wrong("params.arguments", "an object"),
        ),
        (b"{\"method\":7}", 10, wrong("method", "a string")),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":{}}",
            22,
            wrong("id", "a string, a number or null"),
        ),
        (
            b"{\"model\":\"a\",\"model\":\"b\"}",
            13,
            DuplicateMember { member: "model" },
        ),
        (
            b"{\"model\":\"a\",\"m\\u006fdel\":\"b\"}",
            13,
            DuplicateMember { member: "model" },
        ),
        (
            b"{\"system\":\"a\",\"instructions\":\"b\"}",
            14,
            DuplicateMember { member: "system" },
        ),
        (
            b"{\"messages\":[{\"role\":\"user\",\"role\":\"system\"}]}",
            28,
            DuplicateMember {
                member: "messages[].role",
            },
        ),
    ];
    for &(body, offset, kind) in cases {
        let e = invalid(body, Part::Request);
        assert_eq!(
            (e.offset, e.kind),
            (offset, kind),
            "{}",
            String::from_utf8_lossy(body)
        );
        // The message names the offset and the cause.
        assert!(
            e.to_string().starts_with(&format!("at byte {offset}: ")),
            "{e}"
        );
    }
    let e = invalid(br#"{"choices":[{"message":"hi"}]}"#, Part::Response);
    assert_eq!(e.kind, wrong("choices[].message", "an object"));
    let e = invalid(br#"{"usage":[]}"#, Part::Response);
    assert_eq!(e.kind, wrong("usage", "an object"));
}

#[test]
fn strings_find_every_special_byte_at_every_offset() {
    // The scanner skips plain runs eight bytes at a time: a quote, a
    // backslash, a control character or a non-ASCII byte at any offset of
    // a word must still be seen.
    for len in 0..40 {
        for at in 0..len {
            let mut plain = vec![b'a'; len];
            plain[at] = 0x1f;
            let body = [&b"{\"x\":\""[..], &plain, b"\"}"].concat();
            let e = invalid(&body, Part::Request);
            assert_eq!(
                (e.offset as usize, e.kind),
                (6 + at, ErrorKind::ControlCharacter)
            );

            plain[at] = 0xff;
            let body = [&b"{\"x\":\""[..], &plain, b"\"}"].concat();
            let e = invalid(&body, Part::Request);
            assert_eq!(
                (e.offset as usize, e.kind),
                (6 + at, ErrorKind::InvalidUtf8)
            );

            plain[at] = b'"';
            let body = [&b"{\"model\":\""[..], &plain, b"}"].concat();
            let idx = index(&body, Part::Request, ApiKind::Unknown);
            if at == len - 1 {
                assert_eq!(idx.model.unwrap().span, Span::new(10, at as u32));
            } else {
                assert!(!idx.valid());
            }

            plain[at] = b'\\';
            plain.insert(at + 1, b'n');
            let body = [&b"{\"model\":\""[..], &plain, b"\"}"].concat();
            let m = valid(&body, Part::Request, ApiKind::Unknown).model.unwrap();
            assert!(m.escaped);
            assert_eq!(m.span.len as usize, len + 1);
        }
    }
}

#[test]
fn numbers_are_checked_by_grammar_only() {
    // A number's value is the upstream's business; serde_json refuses
    // 1e400, the index takes it as the JSON grammar does.
    assert_eq!(
        validate(b"[1e400, -0, 0.5E-7, 123456789012345678901234567890]"),
        Ok(())
    );
    let usage = br#"{"usage":{"prompt_tokens":18446744073709551616,"completion_tokens":1.5,"total_tokens":18446744073709551615}}"#;
    let u = valid(usage, Part::Response, ApiKind::OpenAiChat)
        .usage
        .unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (None, None, Some(u64::MAX))
    );
}

#[test]
fn an_invalid_index_holds_no_spans() {
    let body =
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"x":[}"#;
    let idx = index(body, Part::Request, ApiKind::OpenAiChat);
    assert!(!idx.valid());
    assert_eq!(idx.kind, ApiKind::OpenAiChat);
    assert_eq!(
        (
            idx.model,
            idx.stream,
            idx.messages().len(),
            idx.texts().len()
        ),
        (None, false, 0, 0)
    );
    // And reusing it for a valid body works.
    let mut idx = idx;
    idx.rebuild(CHAT, Part::Request, ApiKind::OpenAiChat);
    assert!(idx.valid());
    assert_eq!(idx.messages().len(), 6);
}

#[test]
fn depth_is_bounded_without_recursion() {
    let nested = |n: usize| {
        let mut b = b"{\"model\":\"m\",\"x\":".to_vec();
        b.extend(std::iter::repeat_n(b'[', n));
        b.extend(std::iter::repeat_n(b']', n));
        b.push(b'}');
        b
    };
    // The top-level object is one level; the array stack fills the rest.
    assert!(index(&nested(MAX_DEPTH - 1), Part::Request, ApiKind::Unknown).valid());
    let e = invalid(&nested(MAX_DEPTH), Part::Request);
    assert_eq!(
        (e.offset, e.kind),
        (16 + MAX_DEPTH as u32, ErrorKind::TooDeep)
    );
    // A million brackets: no stack overflow, an error at the limit.
    let mut deep = br#"{"x":"#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', 1_000_000));
    assert_eq!(invalid(&deep, Part::Request).kind, ErrorKind::TooDeep);
    // Depth counts the walkers' own levels too.
    let mut b = br#"{"messages":[{"content":[{"x":"#.to_vec();
    b.extend(std::iter::repeat_n(b'[', 200));
    assert_eq!(invalid(&b, Part::Request).kind, ErrorKind::TooDeep);
    assert_eq!(
        validate(&nested(MAX_DEPTH - 1)[17..][..2 * (MAX_DEPTH - 1)]),
        Ok(())
    );
}

#[test]
fn capacities_truncate_but_stay_valid() {
    let mut b = br#"{"model":"m","messages":["#.to_vec();
    for i in 0..MAX_MESSAGES + 10 {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(format!(r#"{{"role":"user","content":[{{"type":"text","text":"a{i}"}},{{"type":"text","text":"b{i}"}}]}}"#).as_bytes());
    }
    b.extend_from_slice(b"]}");
    let idx = valid(&b, Part::Request, ApiKind::OpenAiChat);
    assert!(idx.truncated);
    assert_eq!(idx.messages().len(), MAX_MESSAGES);
    assert_eq!(idx.texts().len(), MAX_TEXTS);
    let last = idx.texts()[MAX_TEXTS - 1];
    assert_eq!(last.owner, TextOwner::Message((MAX_TEXTS / 2 - 1) as u16));
    assert_eq!(text(&b, last.text), format!("b{}", MAX_TEXTS / 2 - 1));

    let mut b = b"[".to_vec();
    for i in 0..MAX_MCP_CALLS + 1 {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(br#"{"jsonrpc":"2.0","method":"ping"}"#);
    }
    b.push(b']');
    let idx = valid(&b, Part::Request, ApiKind::Mcp);
    assert!(idx.truncated);
    assert_eq!(idx.mcp_calls().len(), MAX_MCP_CALLS);
}

/// Every realistic body of this file, with its part and hint.
fn corpus() -> Vec<(Vec<u8>, Part, ApiKind)> {
    let mut v: Vec<(Vec<u8>, Part, ApiKind)> = vec![
        (CHAT.to_vec(), Part::Request, ApiKind::OpenAiChat),
        (CHAT_RESPONSE.to_vec(), Part::Response, ApiKind::OpenAiChat),
    ];
    for body in [
        &br#"{"model":"o3","instructions":"x","input":[{"role":"user","content":[{"type":"input_text","text":"h\u00e9"}]},{"type":"function_call_output","output":"4"}]}"#[..],
        br#"{"model":"c","system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":"\ud83d\ude00"}],"stream":false}"#,
        br#"{"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{"name":"t","arguments":{"k":[1.5e3,-0,true,null]}}}"#,
        br#"[{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"u"}},{"jsonrpc":"2.0","id":2,"result":{}}]"#,
    ] {
        v.push((body.to_vec(), Part::Request, ApiKind::Unknown));
    }
    v.push((
        b"event: e\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"\\u00e9\"}}]}\r\n\r\n".to_vec(),
        Part::SseEvent,
        ApiKind::OpenAiChat,
    ));
    v
}

#[test]
fn every_truncation_is_invalid_never_a_panic() {
    for (body, part, hint) in corpus() {
        assert!(index(&body, part, hint).valid());
        // The JSON text ends at its last non-whitespace byte.
        let json_end = body.iter().rposition(|b| !b.is_ascii_whitespace()).unwrap() + 1;
        for cut in 0..body.len() {
            let idx = index(&body[..cut], part, hint);
            match idx.error() {
                Some(e) => assert!(e.offset as usize <= cut, "{e} past the cut at {cut}"),
                None => assert!(
                    cut >= json_end || part == Part::SseEvent,
                    "a cut at {cut} of {} is valid",
                    String::from_utf8_lossy(&body)
                ),
            }
        }
    }
}

#[test]
fn every_single_byte_change_is_survived() {
    for (body, part, hint) in corpus() {
        for at in 0..body.len() {
            for b in [b'"', b'\\', b'{', b']', b'\0', 0xff, b' '] {
                let mut bad = body.clone();
                bad[at] = b;
                let idx = index(&bad, part, hint);
                if let Some(e) = idx.error() {
                    assert!((e.offset as usize) <= bad.len());
                }
            }
        }
    }
}

#[test]
fn unescape_decodes_and_reports() {
    let mut buf = [0u8; 64];
    assert_eq!(
        unescape_into(br#"a\"b\\c\/d\b\f\n\r\t"#, &mut buf).unwrap(),
        "a\"b\\c/d\u{8}\u{c}\n\r\t"
    );
    assert_eq!(
        unescape_into(br"\u00e9\u4e2d\ud83d\ude00x", &mut buf).unwrap(),
        "é中😀x"
    );
    assert_eq!(
        unescape_into("raw é".as_bytes(), &mut buf).unwrap(),
        "raw é"
    );
    // Decoding never lengthens: the raw length always suffices, exactly.
    let raw = br"\u00e9\n";
    assert_eq!(unescape_into(raw, &mut buf[..raw.len()]).unwrap(), "é\n");
    let e = unescape_into(b"abcdef", &mut buf[..3]).unwrap_err();
    assert_eq!((e.offset, e.kind), (0, UnescapeErrorKind::BufferTooSmall));
    let e = unescape_into(br"ab\n\u00e9", &mut buf[..3]).unwrap_err();
    assert_eq!((e.offset, e.kind), (4, UnescapeErrorKind::BufferTooSmall));
    let e = unescape_into(br"ab\ud800x", &mut buf).unwrap_err();
    assert_eq!((e.offset, e.kind), (2, UnescapeErrorKind::LoneSurrogate));
    let e = unescape_into(br"ab\q", &mut buf).unwrap_err();
    assert_eq!((e.offset, e.kind), (2, UnescapeErrorKind::InvalidEscape));
    let e = unescape_into(br"ab\u12", &mut buf).unwrap_err();
    assert_eq!(e.kind, UnescapeErrorKind::InvalidEscape);
    let e = unescape_into(b"ab\xffcd", &mut buf).unwrap_err();
    assert_eq!((e.offset, e.kind), (2, UnescapeErrorKind::InvalidUtf8));
    assert!(e.to_string().contains("byte 2"));

    let body = br#"{"model":"gp\u0074-4o"}"#;
    let m = index(body, Part::Request, ApiKind::Unknown).model.unwrap();
    assert!(m.eq_text(body, "gpt-4o"));
    assert!(!m.eq_text(body, "gpt-4"));
    assert!(!m.eq_text(body, "gpt-4oo"));
}

#[test]
fn api_kind_from_path() {
    assert_eq!(
        ApiKind::from_path(b"/v1/chat/completions"),
        ApiKind::OpenAiChat
    );
    assert_eq!(
        ApiKind::from_path(b"/openai/deployments/x/chat/completions?api-version=1"),
        ApiKind::OpenAiChat
    );
    assert_eq!(
        ApiKind::from_path(b"/v1/responses/"),
        ApiKind::OpenAiResponses
    );
    assert_eq!(
        ApiKind::from_path(b"/v1/messages"),
        ApiKind::AnthropicMessages
    );
    assert_eq!(ApiKind::from_path(b"/mcp"), ApiKind::Mcp);
    assert_eq!(ApiKind::from_path(b"/servers/github/mcp/"), ApiKind::Mcp);
    assert_eq!(ApiKind::from_path(b"/v1/embeddings"), ApiKind::Unknown);
    assert_eq!(ApiKind::from_path(b""), ApiKind::Unknown);
}

#[test]
fn maps_onto_the_abi_frame_view() {
    let body = br#"{"model":"claude","system":"Be terse.","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"text","text":"yo"}]}]}"#;
    let idx = valid(body, Part::Request, ApiKind::AnthropicMessages);
    let mut views = FrameIndex::abi_messages_buffer();
    let n = idx.abi_messages(body, &mut views);
    assert_eq!(n, 3);
    let m = &views[..n];
    assert_eq!(
        (m[0].role(), m[0].role_name(), m[0].content()),
        (Role::System, &b"system"[..], &br#""Be terse.""#[..])
    );
    assert_eq!(
        (m[1].role(), m[1].role_name(), m[1].content()),
        (Role::User, &b"user"[..], &br#""hi""#[..])
    );
    assert_eq!(m[2].content(), br#"[{"type":"text","text":"yo"}]"#);
    let view = idx.abi_index(body, m);
    assert_eq!(view.messages.len(), 3);
    assert!(!view.stream);
    assert!(view.mcp_method.is_empty());

    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":1}}}"#;
    let idx = valid(body, Part::Request, ApiKind::Mcp);
    let view = idx.abi_index(body, &[]);
    assert_eq!(view.mcp_method, b"tools/call");
    assert_eq!(view.tool_arguments, br#"{"a":1}"#);
}

// ---------------------------------------------------------------------------
// Property tests against serde_json.
// ---------------------------------------------------------------------------

/// Strings that exercise the escapes: quotes, backslashes, control
/// characters, multi-byte and astral characters.
fn arb_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::char::range('a', 'z'),
            1 => prop::sample::select(vec!['"', '\\', '/', '\n', '\t', '\u{1}', '\u{1f}', '\u{7f}', 'é', '中', '😀', '\u{2028}', ' ']),
            1 => any::<char>(),
        ],
        0..12,
    )
    .prop_map(String::from_iter)
}

fn arb_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        // Floats serde_json reads back exactly (its default parser is not
        // round-trip exact for every f64).
        (any::<i16>(), 0..5).prop_map(|(m, e)| Json::from(f64::from(m) / f64::from(1 << e))),
        Just(Json::from(1.5e300)),
        arb_string().prop_map(Json::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((arb_string(), inner), 0..6)
                .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
}

/// How the test writer spells JSON: whitespace, escapes, member order.
#[derive(Debug, Clone, Copy)]
struct Style {
    seed: u64,
    /// Every non-ASCII char as `\u` (astral ones as surrogate pairs), and
    /// some ASCII ones too.
    escape_all: bool,
}

impl Style {
    fn next(&mut self) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.seed >> 33
    }

    fn ws(&mut self, out: &mut Vec<u8>) {
        for _ in 0..self.next() % 3 {
            out.push(b" \t\n\r"[(self.next() % 4) as usize]);
        }
    }

    fn string(&mut self, s: &str, out: &mut Vec<u8>) {
        out.push(b'"');
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                '/' if self.escape_all => out.extend_from_slice(b"\\/"),
                c if self.escape_all && (!c.is_ascii() || self.next().is_multiple_of(4)) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.extend_from_slice(format!("\\u{:04X}", u).as_bytes());
                    }
                }
                c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out.push(b'"');
    }

    fn write(&mut self, v: &Json, out: &mut Vec<u8>) {
        self.ws(out);
        match v {
            Json::String(s) => self.string(s, out),
            Json::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write(item, out);
                }
                self.ws(out);
                out.push(b']');
            }
            Json::Object(map) => {
                // Member order: as the map has it, rotated by the seed.
                let mut members: Vec<_> = map.iter().collect();
                if !members.is_empty() {
                    let k = (self.next() as usize) % members.len();
                    members.rotate_left(k);
                }
                out.push(b'{');
                for (i, (k, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.ws(out);
                    self.string(k, out);
                    self.ws(out);
                    out.push(b':');
                    self.write(v, out);
                }
                self.ws(out);
                out.push(b'}');
            }
            other => out.extend_from_slice(serde_json::to_string(other).unwrap().as_bytes()),
        }
        self.ws(out);
    }
}

fn arb_style() -> impl Strategy<Value = Style> {
    (any::<u64>(), any::<bool>()).prop_map(|(seed, escape_all)| Style { seed, escape_all })
}

fn spell(v: &Json, mut style: Style) -> Vec<u8> {
    let mut out = Vec::new();
    style.write(v, &mut out);
    // The writer itself is checked: serde_json reads back the same value.
    assert_eq!(&serde_json::from_slice::<Json>(&out).unwrap(), v);
    out
}

fn arb_content() -> impl Strategy<Value = Json> {
    prop_oneof![
        arb_string().prop_map(Json::String),
        Just(Json::Null),
        prop::collection::vec(
            prop_oneof![
                (arb_string(), arb_json())
                    .prop_map(|(t, extra)| json!({"type": "text", "text": t, "x": extra})),
                arb_string().prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
            ],
            0..4
        )
        .prop_map(Json::Array),
    ]
}

fn arb_message() -> impl Strategy<Value = Json> {
    (
        prop::sample::select(vec![
            "system",
            "user",
            "assistant",
            "tool",
            "developer",
            "function",
            "Üser",
        ]),
        arb_content(),
        prop::option::of(arb_json()),
    )
        .prop_map(|(role, content, extra)| {
            let mut m = json!({"role": role, "content": content});
            if let Some(extra) = extra {
                m["x_extra"] = extra;
            }
            m
        })
}

fn role_of_text(role: &str) -> Role {
    match role {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        "developer" => Role::Developer,
        _ => Role::Other,
    }
}

/// The texts the index must list for a message's content.
fn expected_texts(content: &Json) -> Vec<String> {
    match content {
        Json::String(s) => vec![s.clone()],
        Json::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Json::as_str).map(str::to_owned))
            .collect(),
        _ => vec![],
    }
}

fn arb_mutation() -> impl Strategy<Value = (usize, u8, u8)> {
    (
        any::<usize>(),
        0u8..4,
        prop::sample::select(b"{}[]\",:\\ 0-.e+tfnu\x00\x80\xff".to_vec()),
    )
}

/// Mutates a JSON text: replace, insert or delete a byte, or cut it.
fn mutate(mut b: Vec<u8>, (at, op, byte): (usize, u8, u8)) -> Vec<u8> {
    if b.is_empty() {
        return vec![byte];
    }
    let at = at % b.len();
    match op {
        0 => b[at] = byte,
        1 => b.insert(at, byte),
        2 => {
            b.remove(at);
        }
        _ => b.truncate(at),
    }
    b
}

/// serde_json's verdict on a JSON text, `None` when it is "number out of
/// range": serde_json refuses numbers beyond f64 (the index validates the
/// grammar only; a number's value is the upstream's business), and it says
/// so before it looks at the bytes after the number, so the text's syntax
/// is then unknown to it.
fn serde_accepts(b: &[u8]) -> Option<bool> {
    match serde_json::from_slice::<Json>(b) {
        Ok(_) => Some(true),
        Err(e) if e.to_string().contains("number out of range") => None,
        Err(_) => Some(false),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Chat requests spelled every way: the spans say what serde_json says.
    #[test]
    fn chat_spans_match_serde_json(
        model in arb_string(),
        stream in prop::option::of(any::<bool>()),
        messages in prop::collection::vec(arb_message(), 0..6),
        extra in arb_json(),
        style in arb_style(),
    ) {
        let mut v = json!({"model": model, "messages": messages, "x_unknown": extra});
        if let Some(stream) = stream {
            v["stream"] = json!(stream);
        }
        let body = spell(&v, style);
        let idx = index(&body, Part::Request, ApiKind::OpenAiChat);
        prop_assert!(idx.valid(), "{:?}", idx.error());
        prop_assert_eq!(text_of(&body, idx.model), Some(model));
        prop_assert_eq!(idx.stream, stream == Some(true));
        prop_assert_eq!(idx.messages().len(), messages.len());
        let mut texts = Vec::new();
        for (i, (m, want)) in idx.messages().iter().zip(&messages).enumerate() {
            let role = want["role"].as_str().unwrap();
            prop_assert_eq!(text_of(&body, m.role_name), Some(role.to_owned()));
            prop_assert_eq!(m.role, role_of_text(role));
            prop_assert_eq!(&json_at(&body, m.content.unwrap()), &want["content"]);
            texts.extend(expected_texts(&want["content"]).into_iter().map(|t| (TextOwner::Message(i as u16), t)));
        }
        let got: Vec<_> = idx.texts().iter().map(|t| (t.owner, text(&body, t.text))).collect();
        prop_assert_eq!(got, texts);
    }

    /// MCP calls with arbitrary arguments, members in any order.
    #[test]
    fn mcp_spans_match_serde_json(
        id in prop_oneof![any::<i64>().prop_map(Json::from), arb_string().prop_map(Json::String)],
        method in prop::sample::select(vec!["tools/call", "resources/read", "prompts/get", "tools/list"]),
        name in arb_string(),
        arguments in prop::collection::vec((arb_string(), arb_json()), 0..5),
        meta in arb_json(),
        style in arb_style(),
    ) {
        let arguments = Json::Object(arguments.into_iter().collect());
        let v = json!({"jsonrpc": "2.0", "id": id, "method": method,
            "params": {"name": name, "arguments": arguments, "uri": name, "_meta": meta}});
        let body = spell(&v, style);
        let idx = index(&body, Part::Request, ApiKind::Unknown);
        prop_assert!(idx.valid(), "{:?}", idx.error());
        prop_assert_eq!(idx.kind, ApiKind::Mcp);
        let call = idx.mcp().unwrap();
        prop_assert_eq!(json_at(&body, call.id.unwrap()), id);
        prop_assert_eq!(text_of(&body, call.method), Some(method.to_owned()));
        prop_assert_eq!(&json_at(&body, call.params.unwrap()), &v["params"]);
        match method {
            "tools/call" | "prompts/get" => {
                prop_assert_eq!(text_of(&body, call.name), Some(name));
                prop_assert_eq!(json_at(&body, call.arguments.unwrap()), arguments);
            }
            "resources/read" => prop_assert_eq!(text_of(&body, call.uri), Some(name)),
            _ => prop_assert_eq!((call.name, call.arguments, call.uri), (None, None, None)),
        }
    }

    /// Any JSON text validates; a mutated one validates exactly when
    /// serde_json accepts it; the index never panics on it.
    #[test]
    fn validity_matches_serde_json(v in arb_json(), style in arb_style(), m in arb_mutation()) {
        let body = spell(&v, style);
        prop_assert_eq!(validate(&body), Ok(()));
        let bad = mutate(body, m);
        let ours = validate(&bad);
        if let Some(theirs) = serde_accepts(&bad) {
            prop_assert_eq!(ours.is_ok(), theirs, "{:?} on {:?}", ours, bad.escape_ascii().to_string());
        }
        for part in [Part::Request, Part::Response, Part::SseEvent] {
            let idx = index(&bad, part, ApiKind::Unknown);
            if part != Part::SseEvent && ours.is_err() {
                prop_assert!(!idx.valid());
            }
        }
    }

    /// Arbitrary bytes: a verdict, never a panic, an error within the bytes.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(
            prop_oneof![any::<u8>(), prop::sample::select(b"{}[]\":,\\ u0-e.tfn\n".to_vec())],
            0..256,
        ),
        hint in prop::sample::select(vec![ApiKind::Unknown, ApiKind::OpenAiChat, ApiKind::Mcp, ApiKind::AnthropicMessages]),
    ) {
        for part in [Part::Request, Part::Response, Part::SseEvent] {
            let idx = index(&bytes, part, hint);
            if let Some(e) = idx.error() {
                prop_assert!(e.offset as usize <= bytes.len());
            }
        }
        if let Some(theirs) = serde_accepts(&bytes) {
            prop_assert_eq!(validate(&bytes).is_ok(), theirs);
        }
    }
}
