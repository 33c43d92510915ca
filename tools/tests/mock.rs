//! The mock upstream, driven over real TCP with a hyper client: every
//! route, the SSE stream's events and order, the MCP session handshake and
//! its refusals, approvals, webhooks, the request log, 404s and bad JSON.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use odock_tools::mock::{
    APPROVER, CONTACT_SENTENCE, DENY_REASON, KEEP_LAST, MCP_PROTOCOL_VERSIONS, Mock, MockConfig,
};
use serde_json::{Value, json};

fn start(config: MockConfig) -> Mock {
    Mock::start("127.0.0.1:0".parse().unwrap(), config).expect("the mock starts")
}

fn quick() -> MockConfig {
    MockConfig {
        chunk_delay: Duration::from_millis(1),
        approval_delay: Duration::from_millis(1),
    }
}

/// One keep-alive HTTP/1.1 connection to the mock.
struct Client {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

/// A whole answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Client {
            sender,
            host: addr.to_string(),
        }
    }

    async fn start(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response<Incoming> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        self.sender.ready().await.unwrap();
        self.sender.send_request(req).await.unwrap()
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let response = self.start(method, path, headers, body).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    async fn post_json(&mut self, path: &str, body: &Value) -> Answer {
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }
}

fn chat(message: &str, stream: bool) -> Value {
    json!({
        "model": "gpt-4o",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "an earlier answer"},
            {"role": "user", "content": message},
        ],
    })
}

#[tokio::test]
async fn chat_completion_echoes_the_last_user_message() {
    let mock = start(quick());
    let mut c = Client::connect(mock.addr()).await;
    let a = c
        .post_json("/v1/chat/completions", &chat("hello there", false))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let v = a.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: hello there");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // 3 + 3 + 3 + 2 words in, "Echo: hello there" out.
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14})
    );

    // The same connection (keep-alive), with the word that brings the
    // contact details.
    let v = c
        .post_json(
            "/v1/chat/completions",
            &chat("How do I contact you?", false),
        )
        .await
        .json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("Echo: How do I contact you? {CONTACT_SENTENCE}")
    );
    assert_ne!(v["id"], a.json()["id"], "every completion has its own id");

    let stats = mock.stats();
    assert_eq!(stats.chat_completions, 2);
    assert_eq!(stats.chat_streams, 0);
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.ends_with("\n\n"), "the stream ends with a whole event");
    text.split_terminator("\n\n")
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"))
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn streamed_completion_sends_one_chunk_per_word_then_done() {
    let mock = start(quick());
    let mut c = Client::connect(mock.addr()).await;
    let a = c
        .post_json("/v1/chat/completions", &chat("one two three", true))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    let events = sse_data(&a.body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    // "Echo: one two three": four words, four chunks.
    assert_eq!(chunks.len(), 4);
    let id = chunks[0]["id"].clone();
    assert!(id.as_str().unwrap().starts_with("chatcmpl-"));
    let mut content = String::new();
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], id, "one id for the whole stream");
        assert_eq!(chunk["model"], "gpt-4o");
        assert!(chunk.get("usage").is_none(), "no usage unless asked for");
        let choice = &chunk["choices"][0];
        assert_eq!(choice["delta"].get("role").is_some(), i == 0, "{chunk}");
        let last = i == chunks.len() - 1;
        assert_eq!(
            choice["finish_reason"],
            if last { json!("stop") } else { Value::Null }
        );
        content.push_str(choice["delta"]["content"].as_str().unwrap());
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(content, "Echo: one two three");

    let mut with_usage = chat("one two three", true);
    with_usage["stream_options"] = json!({"include_usage": true});
    let a = c.post_json("/v1/chat/completions", &with_usage).await;
    let events = sse_data(&a.body);
    assert_eq!(events.len(), 6, "4 words, the usage chunk, [DONE]");
    assert_eq!(events[5], "[DONE]");
    let usage: Value = serde_json::from_str(&events[4]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16})
    );
    let word: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(word["usage"], Value::Null);

    let stats = mock.stats();
    assert_eq!((stats.chat_completions, stats.chat_streams), (2, 2));
    let served = c.get("/_mock/stats").await.json();
    assert_eq!(served, serde_json::to_value(&stats).unwrap());
    assert_eq!(served["chat_streams"], 2);
}

#[tokio::test]
async fn stream_events_arrive_before_the_stream_ends() {
    // With an hour between chunks, the first chunk can only be read if the
    // mock sends it before the rest: the stream is really streamed.
    let mock = start(MockConfig {
        chunk_delay: Duration::from_secs(3600),
        ..quick()
    });
    let mut c = Client::connect(mock.addr()).await;
    let response = c
        .start(
            Method::POST,
            "/v1/chat/completions",
            &[],
            chat("never finished", true).to_string(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    let first = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(first.starts_with("data: {"), "{first}");
    let chunk: Value = serde_json::from_str(first.trim_start_matches("data: ").trim_end()).unwrap();
    assert_eq!(chunk["choices"][0]["delta"]["content"], "Echo: ");
    // Dropping the mock with the stream still open ends it.
    drop(body);
    mock.shutdown();
}

#[tokio::test]
async fn bad_chat_requests_get_openai_errors() {
    let mock = start(quick());
    let mut c = Client::connect(mock.addr()).await;
    let cases: [(&str, Option<&str>); 6] = [
        ("{not json", None),
        ("[1, 2]", None),
        (
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            Some("model"),
        ),
        (r#"{"model":"gpt-4o"}"#, Some("messages")),
        (r#"{"model":"gpt-4o","messages":[]}"#, Some("messages")),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":"yes"}"#,
            Some("stream"),
        ),
    ];
    for (body, param) in cases {
        let a = c
            .send(Method::POST, "/v1/chat/completions", &[], body)
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        let v = a.json();
        let err = &v["error"];
        assert_eq!(err["type"], "invalid_request_error", "{body}: {v}");
        assert_eq!(err["code"], Value::Null);
        assert_eq!(err["param"], json!(param), "{body}: {v}");
        assert!(!err["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(mock.stats().chat_completions, 6);
}

#[tokio::test]
async fn models_are_listed() {
    let mock = start(quick());
    let mut c = Client::connect(mock.addr()).await;
    let v = c.get("/v1/models").await.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-4o", "gpt-4o-mini", "o1-preview"]);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["object"] == "model")
    );
    assert_eq!(mock.stats().models, 1);
}

const MCP_HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

async fn mcp(c: &mut Client, session: Option<&str>, body: &Value) -> Answer {
    let mut headers = MCP_HEADERS.to_vec();
    if let Some(s) = session {
        headers.push(("mcp-session-id", s));
    }
    c.send(Method::POST, "/mcp", &headers, body.to_string())
        .await
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

async fn initialize(c: &mut Client, version: &str) -> (String, Value) {
    let a = mcp(
        c,
        None,
        &request(
            1,
            "initialize",
            json!({"protocolVersion": version, "capabilities": {},
                   "clientInfo": {"name": "test", "version": "0"}}),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let session = a
        .header("mcp-session-id")
        .expect("initialize answers with a session id")
        .to_owned();
    assert!(session.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    (session, a.json())
}

#[tokio::test]
async fn mcp_session_handshake_tools_and_end() {
    let mock = start(quick());
    let mut c = Client::connect(mock.addr()).await;
    let (session, init) = initialize(&mut c, "2025-03-26").await;
    assert_eq!(init["jsonrpc"], "2.0");
    assert_eq!(init["id"], 1);
    let result = &init["result"];
    assert_eq!(
        result["protocolVersion"], "2025-03-26",
        "a supported version is echoed"
    );
    assert_eq!(
        result["capabilities"],
        json!({"tools": {"listChanged": false}})
    );
    assert_eq!(result["serverInfo"]["name"], "odock-mock");
    assert!(result["serverInfo"]["version"].is_string());

    // The initialized notification: 202, no body.
    let a = mcp(
        &mut c,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(a.body.is_empty());
    // A response from the client: 202 too.
    let a = mcp(
        &mut c,
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 9, "result": {}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);

    let v = mcp(&mut c, Some(&session), &request(2, "ping", json!({})))
        .await
        .json();
    assert_eq!(v, json!({"jsonrpc": "2.0", "id": 2, "result": {}}));

    let v = mcp(&mut c, Some(&session), &request(3, "tools/list", json!({})))
        .await
        .json();
    let tools = v["result"]["tools"].as_array().unwrap();
    let described: Vec<(&str, &str)> = tools
        .iter()
        .map(|t| {
            let schema = &t["inputSchema"];
            assert_eq!(schema["type"], "object");
            let required = schema["required"][0].as_str().unwrap();
            assert_eq!(schema["properties"][required]["type"], "string");
            assert!(t["description"].is_string());
            (t["name"].as_str().unwrap(), required)
        })
        .collect();
    assert_eq!(
        described,
        [
            ("search", "query"),
            ("fetch_url", "url"),
            ("delete_repo", "repo")
        ]
    );

    let call = |id, name: &str, args: Value| {
        request(id, "tools/call", json!({"name": name, "arguments": args}))
    };
    let text = |v: &Value| {
        assert_eq!(v["result"]["isError"], false, "{v}");
        assert_eq!(v["result"]["content"][0]["type"], "text");
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let v = mcp(
        &mut c,
        Some(&session),
        &call(4, "search", json!({"query": "odock plugins"})),
    )
    .await
    .json();
    let hits = text(&v);
    assert_eq!(hits.matches("odock plugins").count(), 3, "{hits}");
    let v = mcp(
        &mut c,
        Some(&session),
        &call(5, "fetch_url", json!({"url": "https://example.org/x"})),
    )
    .await
    .json();
    assert!(text(&v).contains("https://example.org/x"));
    let v = mcp(
        &mut c,
        Some(&session),
        &call(6, "delete_repo", json!({"repo": "acme/prod"})),
    )
    .await
    .json();
    assert_eq!(text(&v), "deleted acme/prod");

    // Errors inside the session.
    let code = |v: Value| v["error"]["code"].as_i64().unwrap();
    let v = mcp(&mut c, Some(&session), &call(7, "rm_rf", json!({})))
        .await
        .json();
    assert_eq!(v["id"], 7);
    assert!(v["error"]["message"].as_str().unwrap().contains("rm_rf"));
    assert_eq!(code(v), -32602);
    let v = mcp(&mut c, Some(&session), &call(8, "search", json!({"q": 1})))
        .await
        .json();
    assert_eq!(code(v), -32602);
    let v = mcp(
        &mut c,
        Some(&session),
        &request(9, "resources/list", json!({})),
    )
    .await
    .json();
    assert_eq!(code(v), -32601);

    // A batch: answers for the requests only, in order.
    let v = mcp(
        &mut c,
        Some(&session),
        &json!([
            request(10, "ping", json!({})),
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}},
            call(11, "delete_repo", json!({"repo": "a/b"})),
        ]),
    )
    .await
    .json();
    let answers = v.as_array().unwrap();
    assert_eq!(answers.len(), 2);
    assert_eq!(
        (answers[0]["id"].clone(), answers[1]["id"].clone()),
        (json!(10), json!(11))
    );
    assert_eq!(text(&answers[1]), "deleted a/b");

    // The end of the session: DELETE, after which it is unknown.
    let a = c
        .send(
            Method::DELETE,
            "/mcp",
            &[("mcp-session-id", &session)],
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = mcp(&mut c, Some(&session), &request(12, "ping", json!({}))).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = c
        .send(
            Method::DELETE,
            "/mcp",
            &[("mcp-session-id", &session)],
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    assert_eq!(mock.stats().mcp, 15);
}

#[tokio::test]
async fn mcp_protocol_version_is_negotiated() {
    let mock = start(quick());
    let mut c = Client::connect(mock.addr()).await;
    for version in MCP_PROTOCOL_VERSIONS {
        let (_, v) = initialize(&mut c, version).await;
        assert_eq!(v["result"]["protocolVersion"], version);
    }
    let (s1, v) = initialize(&mut c, "2099-01-01").await;
    assert_eq!(
        v["result"]["protocolVersion"],
        *MCP_PROTOCOL_VERSIONS.last().unwrap()
    );
    let (s2, _) = initialize(&mut c, "2025-06-18").await;
    assert_ne!(s1, s2, "every initialize opens its own session");

    // A request naming an unsupported protocol version is refused.
    let mut headers = MCP_HEADERS.to_vec();
    headers.push(("mcp-session-id", &s2));
    headers.push(("mcp-protocol-version", "1999-01-01"));
    let a = c
        .send(
            Method::POST,
            "/mcp",
            &headers,
            request(2, "ping", json!({})).to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1999-01-01")
    );
}

#[tokio::test]
async fn mcp_refusals() {
    let mock = start(quick());
    let mut c = Client::connect(mock.addr()).await;
    let ping = request(1, "ping", json!({}));

    // No session header, an unknown session.
    let a = mcp(&mut c, None, &ping).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Mcp-Session-Id")
    );
    let a = mcp(&mut c, Some("mock-nobody"), &ping).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.json()["error"].is_object());

    // Bad JSON: a parse error; not a JSON-RPC message: an invalid request.
    let (session, _) = initialize(&mut c, "2025-06-18").await;
    let mut headers = MCP_HEADERS.to_vec();
    headers.push(("mcp-session-id", &session));
    let a = c
        .send(Method::POST, "/mcp", &headers, "{\"jsonrpc\":")
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let v = a.json();
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["id"], Value::Null);
    let v = mcp(&mut c, Some(&session), &json!({"id": 3, "method": "ping"}))
        .await
        .json();
    assert_eq!(v["error"]["code"], -32600, "no jsonrpc: 2.0");
    let a = mcp(&mut c, Some(&session), &json!([])).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"]["code"], -32600);
    // initialize inside a batch is not allowed.
    let a = mcp(&mut c, None, &json!([request(1, "initialize", json!({}))])).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // A client that takes only SSE gets its answer as an SSE event; one
    // that takes neither JSON nor SSE gets 406.
    let a = c
        .send(
            Method::POST,
            "/mcp",
            &[
                ("accept", "text/event-stream"),
                ("mcp-session-id", &session),
            ],
            json!([ping, request(2, "tools/list", json!({}))]).to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    let text = std::str::from_utf8(&a.body).unwrap();
    let events: Vec<Value> = text
        .split_terminator("\n\n")
        .map(|e| {
            let data = e
                .strip_prefix("event: message\ndata: ")
                .unwrap_or_else(|| panic!("not a message event: {e:?}"));
            serde_json::from_str(data).unwrap()
        })
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0], json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
    assert_eq!(events[1]["result"]["tools"].as_array().unwrap().len(), 3);
    let a = c
        .send(
            Method::POST,
            "/mcp",
            &[("accept", "text/html"), ("mcp-session-id", &session)],
            ping.to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_ACCEPTABLE);
    // A body that is not JSON by its content type: 415.
    let a = c
        .send(
            Method::POST,
            "/mcp",
            &[("content-type", "text/plain"), ("mcp-session-id", &session)],
            ping.to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A browser page of another site (DNS rebinding): 403.
    let a = c
        .send(
            Method::POST,
            "/mcp",
            &[
                ("origin", "https://evil.example"),
                ("mcp-session-id", &session),
            ],
            ping.to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = c
        .send(
            Method::POST,
            "/mcp",
            &[
                ("origin", "http://localhost:5173"),
                ("mcp-session-id", &session),
            ],
            ping.to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);

    // No server-initiated stream.
    let a = c
        .send(
            Method::GET,
            "/mcp",
            &[
                ("accept", "text/event-stream"),
                ("mcp-session-id", &session),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.header("allow"), Some("POST, DELETE"));
    // DELETE without a session header.
    let a = c.send(Method::DELETE, "/mcp", &[], Bytes::new()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // The session survived all of it.
    let a = mcp(&mut c, Some(&session), &ping).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["result"], json!({}));
}

#[tokio::test]
async fn approvals_are_granted_unless_the_request_mentions_deny() {
    let mock = start(quick());
    let mut c = Client::connect(mock.addr()).await;
    // The payload of plugins/approval's `payload()`.
    let asked = json!({"request_id": "7", "tenant": "acme", "virtual_key": "vk1",
                       "environment": "prod", "model": "gpt-4o"});
    let v = c.post_json("/approvals", &asked).await.json();
    assert_eq!(v, json!({"approved": true, "approver": APPROVER}));
    let denied = json!({"request_id": "8", "tenant": "acme", "virtual_key": "vk1",
                        "environment": "prod", "mcp_server": "tools", "mcp_tool": "deny_me"});
    let v = c.post_json("/approvals", &denied).await.json();
    assert_eq!(v, json!({"approved": false, "reason": DENY_REASON}));
    let a = c.send(Method::POST, "/approvals", &[], "not json").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");

    let stats = mock.stats();
    assert_eq!(
        (
            stats.approvals_asked,
            stats.approvals_granted,
            stats.approvals_denied
        ),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn hooks_are_counted_and_kept() {
    let mock = start(quick());
    let mut c = Client::connect(mock.addr()).await;
    for i in 0..KEEP_LAST + 5 {
        let a = c
            .post_json(
                "/hooks/audit",
                &json!({"event": "odock.request.completed", "n": i}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let a = c
        .send(Method::POST, "/hooks/slack", &[], "plain text")
        .await;
    assert_eq!(a.status, StatusCode::OK);

    let v = c.get("/_mock/hooks").await.json();
    assert_eq!(v["audit"]["count"], KEEP_LAST + 5);
    let last = v["audit"]["last"].as_array().unwrap();
    assert_eq!(last.len(), KEEP_LAST, "only the last {KEEP_LAST} are kept");
    assert_eq!(last[0]["n"], 5);
    assert_eq!(last[KEEP_LAST - 1]["n"], KEEP_LAST + 4);
    assert_eq!(v["slack"], json!({"count": 1, "last": ["plain text"]}));

    assert_eq!(mock.hook_bodies("slack"), [json!("plain text")]);
    let stats = mock.stats();
    assert_eq!(stats.hooks.get("audit"), Some(&(KEEP_LAST as u64 + 5)));
    assert_eq!(stats.hooks_received(), KEEP_LAST as u64 + 6);

    // GET on a hook, a hook without a name.
    let a = c.get("/hooks/audit").await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let a = c.send(Method::POST, "/hooks/", &[], "x").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn upstream_requests_are_logged_with_their_headers() {
    let mock = start(quick());
    let mut c = Client::connect(mock.addr()).await;
    let a = c
        .send(
            Method::POST,
            "/v1/chat/completions?trace=1",
            &[("x-odock-tenant", "acme"), ("x-odock-approval", "approved")],
            chat("hi", false).to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    c.post_json("/hooks/x", &json!({})).await;
    c.post_json("/approvals", &json!({"model": "m"})).await;
    c.get("/v1/models").await;

    let v = c.get("/_mock/requests").await.json();
    let log = v.as_array().unwrap();
    assert_eq!(log.len(), 2, "only upstream routes are logged: {v}");
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(log[0]["path"], "/v1/chat/completions?trace=1");
    assert_eq!(log[0]["headers"]["x-odock-tenant"], "acme");
    assert_eq!(log[0]["headers"]["x-odock-approval"], "approved");
    assert_eq!(log[0]["body_len"], chat("hi", false).to_string().len());
    assert_eq!(log[1]["path"], "/v1/models");
    assert_eq!(log[1]["body_len"], 0);

    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].headers["x-odock-tenant"], "acme");
}

#[tokio::test]
async fn unknown_routes_get_404_and_wrong_methods_405() {
    let mock = start(quick());
    let mut c = Client::connect(mock.addr()).await;
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/v1/embeddings"),
        (Method::POST, "/v2/chat/completions"),
        (Method::GET, "/_mock/nothing"),
    ] {
        let a = c.send(method.clone(), path, &[], Bytes::new()).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {path}");
        let v = a.json();
        assert!(
            v["error"]["message"].as_str().unwrap().contains(path),
            "{v}"
        );
    }
    for (method, path, allow) in [
        (Method::GET, "/v1/chat/completions", "POST"),
        (Method::POST, "/v1/models", "GET"),
        (Method::GET, "/approvals", "POST"),
        (Method::PUT, "/mcp", "POST, GET, DELETE"),
    ] {
        let a = c.send(method.clone(), path, &[], Bytes::new()).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(a.header("allow"), Some(allow), "{method} {path}");
    }
    assert_eq!(mock.stats().not_found, 7);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let mock = start(quick());
    let addr = mock.addr();
    let mut c = Client::connect(addr).await;
    assert_eq!(c.get("/v1/models").await.status, StatusCode::OK);
    mock.shutdown();
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the listener is closed after shutdown");
}

#[test]
fn the_binary_serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_odock-mock"))
        .args(["--listen", "127.0.0.1:0", "--chunk-delay-ms", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("odock-mock listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let v = runtime.block_on(async {
        let mut c = Client::connect(addr).await;
        c.post_json("/v1/chat/completions", &chat("from the binary", false))
            .await
            .json()
    });
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Echo: from the binary"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "odock-mock exits 0 on SIGTERM: {status}");
}
