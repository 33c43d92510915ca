//! The built-in mock upstream: everything the gateway talks to, on one
//! local port, so `odock up` and `odock demo` need nothing outside the
//! machine.
//!
//! [`Mock::start`] binds a TCP listener and serves HTTP/1.1 (keep-alive) on
//! a thread of its own, driven by a current-thread tokio runtime. The
//! routes:
//!
//! | route | what it is |
//! |---|---|
//! | `POST /v1/chat/completions` | an OpenAI-compatible chat model that echoes the last user message, plain or streamed (SSE) |
//! | `GET /v1/models` | the model list |
//! | `POST`, `GET`, `DELETE /mcp` | an MCP server over the Streamable HTTP transport (tools `search`, `fetch_url`, `delete_repo`) |
//! | `POST /approvals` | the approval service of the `approval` plugin's integration |
//! | `POST /hooks/<name>` | a webhook receiver for `notify` and `audit-export` |
//! | `GET /_mock/hooks` | what the webhook receiver got |
//! | `GET /_mock/requests` | the last requests on the upstream routes (`/v1/...`, `/mcp`) |
//! | `GET /_mock/stats` | the counters of [`MockStats`] |
//!
//! Everything the mock answers is deterministic from what it was asked
//! (ids carry a counter), so tests and demos can check exact text.
//!
//! The protocol logic ([`chat_reply`] and the private request parsers and
//! JSON-RPC dispatcher) is plain functions of bytes and values; the hyper
//! layer around them only moves bytes and keeps the counters.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

/// The largest request body the mock reads; larger ones get 413.
pub const MAX_BODY: usize = 8 << 20;

/// How many webhook bodies per hook name, and how many upstream requests,
/// the mock keeps.
pub const KEEP_LAST: usize = 100;

/// The models `GET /v1/models` lists.
pub const MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "o1-preview"];

/// The MCP protocol revisions the mock speaks, oldest first; the last one
/// is offered when the client asks for one not in this list.
pub const MCP_PROTOCOL_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The sentence a reply gets when the last user message holds the word
/// `contact`: an e-mail address and a card-like number, for showing a DLP
/// plugin's response redaction.
pub const CONTACT_SENTENCE: &str =
    "You can reach support at help@example.com or call 4111 1111 1111 1111.";

/// What the approval service answers a request that mentions `deny`.
pub const DENY_REASON: &str = "the mock approval service denies requests that mention \"deny\"";

/// The approver the approval service names when it approves.
pub const APPROVER: &str = "mock-approver";

/// How the mock behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfig {
    /// The pause between two SSE events of a streamed chat completion.
    pub chunk_delay: Duration,
    /// How long the approval service thinks before it answers.
    pub approval_delay: Duration,
}

impl Default for MockConfig {
    /// 5 ms between SSE chunks, 50 ms per approval.
    fn default() -> Self {
        MockConfig {
            chunk_delay: Duration::from_millis(5),
            approval_delay: Duration::from_millis(50),
        }
    }
}

/// Counters of what the mock has served since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MockStats {
    /// `POST /v1/chat/completions` requests, answered or refused.
    pub chat_completions: u64,
    /// Of those, the ones answered with an SSE stream.
    pub chat_streams: u64,
    /// `GET /v1/models` requests.
    pub models: u64,
    /// HTTP requests to `/mcp` (any method).
    pub mcp: u64,
    /// `POST /approvals` requests.
    pub approvals_asked: u64,
    /// Approvals granted.
    pub approvals_granted: u64,
    /// Approvals denied.
    pub approvals_denied: u64,
    /// Webhook bodies received, per hook name.
    pub hooks: BTreeMap<String, u64>,
    /// Requests that matched no route, or a route with another method.
    pub not_found: u64,
}

impl MockStats {
    /// Webhook bodies received, all names together.
    pub fn hooks_received(&self) -> u64 {
        self.hooks.values().sum()
    }
}

/// One request the mock saw on an upstream route, as `GET /_mock/requests`
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// The headers, names in lower case; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body's length in bytes.
    pub body_len: usize,
}

/// A running mock upstream. Dropping it (or [`Mock::shutdown`]) stops the
/// server and joins its thread.
///
/// ```
/// use std::io::{Read, Write};
/// use odock_tools::mock::{Mock, MockConfig};
///
/// let mock = Mock::start("127.0.0.1:0".parse().unwrap(), MockConfig::default()).unwrap();
/// let mut conn = std::net::TcpStream::connect(mock.addr()).unwrap();
/// conn.write_all(b"GET /v1/models HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n")
///     .unwrap();
/// let mut answer = String::new();
/// conn.read_to_string(&mut answer).unwrap();
/// assert!(answer.starts_with("HTTP/1.1 200 OK"));
/// assert!(answer.contains(r#""id":"gpt-4o-mini""#));
/// assert_eq!(mock.stats().models, 1);
/// mock.shutdown();
/// ```
#[derive(Debug)]
pub struct Mock {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Mock {
    /// Binds `addr` (port 0 = any) and serves on a thread of its own (a
    /// current-thread tokio runtime).
    ///
    /// # Errors
    /// The bind's error (address in use, not permitted, ...), or the error
    /// of building the runtime or spawning the thread.
    pub fn start(addr: SocketAddr, config: MockConfig) -> std::io::Result<Mock> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let shared = Arc::new(Shared {
            config,
            next_id: AtomicU64::new(1),
            state: Mutex::new(State::default()),
        });
        let (stop, stopped) = oneshot::channel();
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("odock-mock {addr}"))
            .spawn(move || runtime.block_on(serve(listener, serving, stopped)))?;
        Ok(Mock {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address the mock listens on (with the port the system chose
    /// when it was started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters so far.
    pub fn stats(&self) -> MockStats {
        self.shared.state().stats.clone()
    }

    /// The last [`KEEP_LAST`] requests on the upstream routes, oldest first.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.state().requests.iter().cloned().collect()
    }

    /// The last [`KEEP_LAST`] bodies received on `POST /hooks/<name>`,
    /// oldest first (JSON bodies as JSON, others as a string).
    pub fn hook_bodies(&self, name: &str) -> Vec<Value> {
        self.shared
            .state()
            .hooks
            .get(name)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Stops the server and joins its thread (the same as dropping it).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // An error means the server already ended; joining tells why.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("the odock-mock server thread panicked");
        }
    }
}

/// What the connections share.
#[derive(Debug)]
struct Shared {
    config: MockConfig,
    next_id: AtomicU64,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is counters and logs, valid after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh number for ids. Only uniqueness matters, so `Relaxed`: it
    /// orders nothing else.
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct State {
    stats: MockStats,
    hooks: BTreeMap<String, VecDeque<Value>>,
    requests: VecDeque<SeenRequest>,
    sessions: HashSet<String>,
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() == KEEP_LAST {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// The accept loop: one task per connection, until `stopped` fires (or its
/// sender is dropped). Connections still open end with the runtime.
async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("odock-mock: cannot register the listener with tokio: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let shared = Arc::clone(&shared);
                            async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                        });
                        // A connection error (the peer went away mid-request)
                        // concerns that connection only.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Out of descriptors and the like: wait a little, go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn respond(status: StatusCode, content_type: Option<&'static str>, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    respond(status, Some("application/json"), full(value.to_string()))
}

/// An OpenAI-style error: `{"error": {message, type, param, code}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    param: Option<&'static str>,
}

impl ApiError {
    fn invalid(message: impl Into<String>, param: Option<&'static str>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param,
        }
    }

    fn response(&self) -> Response<Body> {
        json_response(
            self.status,
            &json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": Value::Null,
            }}),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

fn not_found(method: &Method, path: &str) -> Response<Body> {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "not_found_error",
        message: format!("odock-mock has no route for {method} {path}"),
        param: None,
    }
    .response()
}

fn wrong_method(method: &Method, path: &str, allow: &'static str) -> Response<Body> {
    let mut response = ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        kind: "invalid_request_error",
        message: format!("{path} does not take {method}; it takes {allow}"),
        param: None,
    }
    .response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    map
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let too_large = e.is::<http_body_util::LengthLimitError>();
            return ApiError {
                status: if too_large {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                },
                kind: "invalid_request_error",
                message: if too_large {
                    format!("the request body is larger than {MAX_BODY} bytes")
                } else {
                    format!("the request body could not be read: {e}")
                },
                param: None,
            }
            .response();
        }
    };
    if path.starts_with("/v1/") || path == "/mcp" {
        let seen = SeenRequest {
            method: parts.method.to_string(),
            path: path_and_query,
            headers: header_map(&parts.headers),
            body_len: body.len(),
        };
        push_bounded(&mut shared.state().requests, seen);
    }
    let method = &parts.method;
    match path.as_str() {
        "/v1/chat/completions" if method == Method::POST => chat_completions(shared, &body),
        "/v1/models" if method == Method::GET => {
            shared.state().stats.models += 1;
            json_response(StatusCode::OK, &models_list())
        }
        "/mcp" => {
            shared.state().stats.mcp += 1;
            mcp_http(shared, method, &parts.headers, &body)
        }
        "/approvals" if method == Method::POST => approval(shared, &body).await,
        "/_mock/hooks" if method == Method::GET => {
            let state = shared.state();
            let hooks: Map<String, Value> = state
                .hooks
                .iter()
                .map(|(name, last)| {
                    let count = state.stats.hooks.get(name).copied().unwrap_or(0);
                    (name.clone(), json!({"count": count, "last": last}))
                })
                .collect();
            json_response(StatusCode::OK, &Value::Object(hooks))
        }
        "/_mock/stats" if method == Method::GET => {
            let stats = shared.state().stats.clone();
            json_response(StatusCode::OK, &json!(stats))
        }
        "/_mock/requests" if method == Method::GET => {
            let requests: Vec<SeenRequest> = shared.state().requests.iter().cloned().collect();
            json_response(StatusCode::OK, &json!(requests))
        }
        _ => {
            let allow = match path.as_str() {
                "/v1/chat/completions" | "/approvals" => Some("POST"),
                "/v1/models" | "/_mock/hooks" | "/_mock/requests" | "/_mock/stats" => Some("GET"),
                p if hook_name(p).is_some() => Some("POST"),
                _ => None,
            };
            if method == Method::POST
                && let Some(name) = hook_name(&path)
            {
                return hook(shared, name, &body);
            }
            shared.state().stats.not_found += 1;
            match allow {
                Some(allow) => wrong_method(method, &path, allow),
                None => not_found(method, &path),
            }
        }
    }
}

/// `<name>` of `/hooks/<name>`: non-empty, without further slashes.
fn hook_name(path: &str) -> Option<&str> {
    path.strip_prefix("/hooks/")
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

fn hook(shared: &Shared, name: &str, body: &[u8]) -> Response<Body> {
    let value = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    let mut state = shared.state();
    *state.stats.hooks.entry(name.to_owned()).or_default() += 1;
    push_bounded(state.hooks.entry(name.to_owned()).or_default(), value);
    json_response(StatusCode::OK, &json!({"ok": true}))
}

async fn approval(shared: &Shared, body: &[u8]) -> Response<Body> {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return ApiError::invalid(
                "the approval request must be a JSON object (request_id, tenant, model or mcp_tool, ...)",
                None,
            )
            .response();
        }
    };
    shared.state().stats.approvals_asked += 1;
    tokio::time::sleep(shared.config.approval_delay).await;
    let answer = approval_answer(&request);
    let mut state = shared.state();
    if answer["approved"] == Value::Bool(true) {
        state.stats.approvals_granted += 1;
    } else {
        state.stats.approvals_denied += 1;
    }
    json_response(StatusCode::OK, &answer)
}

/// The approval service's decision: deny when any string in the request
/// mentions `deny` (any case), approve otherwise.
fn approval_answer(request: &Value) -> Value {
    fn mentions_deny(v: &Value) -> bool {
        match v {
            Value::String(s) => s.to_ascii_lowercase().contains("deny"),
            Value::Array(items) => items.iter().any(mentions_deny),
            Value::Object(map) => map
                .iter()
                .any(|(k, v)| k.to_ascii_lowercase().contains("deny") || mentions_deny(v)),
            _ => false,
        }
    }
    if mentions_deny(request) {
        json!({"approved": false, "reason": DENY_REASON})
    } else {
        json!({"approved": true, "approver": APPROVER})
    }
}

fn models_list() -> Value {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "odock-mock"}))
        .collect();
    json!({"object": "list", "data": data})
}

// ---------------------------------------------------------------------------
// Chat completions

/// What the mock needs of a chat completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChatRequest {
    model: String,
    stream: bool,
    include_usage: bool,
    /// The text of the last `user` message ("" when there is none).
    last_user: String,
    /// Whitespace-separated words over all messages' text.
    prompt_tokens: u64,
}

/// The text of a message's `content`: a string, or the `text` of its
/// parts; `null` is empty.
fn content_text(content: &Value) -> Result<String, String> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = Vec::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => text.push(
                        part.get("text")
                            .and_then(Value::as_str)
                            .ok_or("a text content part has no string \"text\"")?,
                    ),
                    Some(_) => {}
                    None => return Err("a content part has no \"type\"".into()),
                }
            }
            Ok(text.join(" "))
        }
        _ => Err("\"content\" must be a string, an array of parts, or null".into()),
    }
}

fn parse_chat(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}"), None))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::invalid("the request body must be a JSON object", None))?;
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "\"model\" must be a non-empty string",
                Some("model"),
            ));
        }
        None => {
            return Err(ApiError::invalid(
                "you must provide a model parameter",
                Some("model"),
            ));
        }
    };
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "\"messages\" must hold at least one message",
                Some("messages"),
            ));
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "\"messages\" must be an array",
                Some("messages"),
            ));
        }
        None => {
            return Err(ApiError::invalid(
                "missing required parameter: \"messages\"",
                Some("messages"),
            ));
        }
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid(
                "\"stream\" must be a boolean",
                Some("stream"),
            ));
        }
    };
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut last_user = String::new();
    let mut prompt_tokens = 0;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).ok_or_else(|| {
            ApiError::invalid(
                format!("messages[{i}] has no string \"role\""),
                Some("messages"),
            )
        })?;
        let text = content_text(message.get("content").unwrap_or(&Value::Null))
            .map_err(|e| ApiError::invalid(format!("messages[{i}]: {e}"), Some("messages")))?;
        prompt_tokens += word_count(&text);
        if role == "user" {
            last_user = text;
        }
    }
    Ok(ChatRequest {
        model,
        stream,
        include_usage,
        last_user,
        prompt_tokens,
    })
}

fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The mock model's reply to the last user message: `Echo: <text>`, and
/// [`CONTACT_SENTENCE`] after it when the text holds the word `contact`
/// (any case).
///
/// ```
/// use odock_tools::mock::{chat_reply, CONTACT_SENTENCE};
/// assert_eq!(chat_reply("hello"), "Echo: hello");
/// assert_eq!(chat_reply("Contact me"), format!("Echo: Contact me {CONTACT_SENTENCE}"));
/// assert_eq!(chat_reply("contacts"), "Echo: contacts");
/// ```
pub fn chat_reply(last_user: &str) -> String {
    let contact = last_user
        .split(|c: char| !c.is_alphanumeric())
        .any(|word| word.eq_ignore_ascii_case("contact"));
    if contact {
        format!("Echo: {last_user} {CONTACT_SENTENCE}")
    } else {
        format!("Echo: {last_user}")
    }
}

/// `text` cut before each word but the first, so each piece is one word
/// with the whitespace after it and the pieces join back to `text`.
fn word_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if !space && prev_space && i > 0 && text[start..i].chars().any(|c| !c.is_whitespace()) {
            pieces.push(&text[start..i]);
            start = i;
        }
        prev_space = space;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn chat_completions(shared: &Shared, body: &[u8]) -> Response<Body> {
    shared.state().stats.chat_completions += 1;
    let request = match parse_chat(body) {
        Ok(r) => r,
        Err(e) => return e.response(),
    };
    let id = format!("chatcmpl-mock{:012}", shared.next_id());
    let created = unix_seconds();
    let content = chat_reply(&request.last_user);
    let completion_tokens = word_count(&content);
    let usage = json!({
        "prompt_tokens": request.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": request.prompt_tokens + completion_tokens,
    });
    if !request.stream {
        let completion = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "system_fingerprint": "fp_odock_mock",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": Value::Null},
                "logprobs": Value::Null,
                "finish_reason": "stop",
            }],
            "usage": usage,
        });
        return json_response(StatusCode::OK, &completion);
    }
    shared.state().stats.chat_streams += 1;
    let events = stream_events(&id, created, &request, &content, &usage);
    let (tx, rx) = mpsc::channel(1);
    let delay = shared.config.chunk_delay;
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(delay).await;
            }
            if tx.send(event).await.is_err() {
                // The client went away.
                return;
            }
        }
    });
    let mut response = respond(
        StatusCode::OK,
        Some("text/event-stream"),
        ChannelBody { rx }.boxed(),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The SSE events of a streamed reply: one `chat.completion.chunk` per word
/// (the first with `delta.role`, the last with `finish_reason: "stop"`),
/// the usage chunk when asked for, then `[DONE]`.
fn stream_events(
    id: &str,
    created: u64,
    request: &ChatRequest,
    content: &str,
    usage: &Value,
) -> Vec<Bytes> {
    let pieces = word_pieces(content);
    let last = pieces.len().saturating_sub(1);
    let mut events = Vec::with_capacity(pieces.len() + 2);
    let chunk = |choices: Value, usage: Value| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": request.model,
            "system_fingerprint": "fp_odock_mock",
            "choices": choices,
        });
        if request.include_usage {
            chunk["usage"] = usage;
        }
        Bytes::from(format!("data: {chunk}\n\n"))
    };
    for (i, piece) in pieces.iter().enumerate() {
        let delta = if i == 0 {
            json!({"role": "assistant", "content": piece})
        } else {
            json!({"content": piece})
        };
        let finish = if i == last {
            json!("stop")
        } else {
            Value::Null
        };
        events.push(chunk(
            json!([{"index": 0, "delta": delta, "logprobs": Value::Null, "finish_reason": finish}]),
            Value::Null,
        ));
    }
    if request.include_usage {
        events.push(chunk(json!([]), usage.clone()));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// A response body fed by a channel: each message is one data frame; the
/// body ends when the sender is dropped.
#[derive(Debug)]
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|event| event.map(|bytes| Ok(Frame::data(bytes))))
    }
}

// ---------------------------------------------------------------------------
// MCP over Streamable HTTP

/// JSON-RPC error codes the mock uses.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
/// The code servers of the MCP SDKs use for transport-level refusals.
const TRANSPORT_ERROR: i64 = -32000;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

fn rpc_error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A transport-level refusal: an HTTP status with a JSON-RPC error body.
fn mcp_refusal(status: StatusCode, code: i64, message: impl Into<String>) -> Response<Body> {
    json_response(status, &rpc_error(Value::Null, code, message))
}

fn accepts(headers: &HeaderMap, wanted: &str) -> bool {
    let Some(accept) = headers.get(header::ACCEPT) else {
        // No Accept header: anything goes.
        return true;
    };
    let accept = String::from_utf8_lossy(accept.as_bytes()).to_ascii_lowercase();
    let (kind, _) = wanted.split_once('/').unwrap_or((wanted, ""));
    accept.split(',').any(|range| {
        let range = range.split(';').next().unwrap_or("").trim();
        range == wanted || range == "*/*" || range == format!("{kind}/*")
    })
}

/// Whether an `Origin` header (sent by browsers) names this machine. The
/// transport's rule against DNS rebinding: a server must refuse other
/// origins (403). Clients that are no browser send none.
fn local_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let origin = String::from_utf8_lossy(origin.as_bytes());
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        rest.split([':', '/']).next().unwrap_or("")
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

fn mcp_http(shared: &Shared, method: &Method, headers: &HeaderMap, body: &[u8]) -> Response<Body> {
    if !local_origin(headers) {
        return mcp_refusal(
            StatusCode::FORBIDDEN,
            TRANSPORT_ERROR,
            "Forbidden: the Origin header names another site than this machine",
        );
    }
    if method == Method::GET {
        let mut response = mcp_refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            TRANSPORT_ERROR,
            "Method Not Allowed: odock-mock opens no server-initiated stream (GET /mcp)",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
        return response;
    }
    if method == Method::DELETE {
        return match session_of(shared, headers) {
            Ok(id) => {
                shared.state().sessions.remove(&id);
                respond(StatusCode::OK, None, full(Bytes::new()))
            }
            Err(refusal) => refusal.response(),
        };
    }
    if method != Method::POST {
        return wrong_method(method, "/mcp", "POST, GET, DELETE");
    }
    // JSON when the client takes it (the official SDKs take both); an SSE
    // stream for a client that takes only that.
    let sse = if accepts(headers, "application/json") {
        false
    } else if accepts(headers, "text/event-stream") {
        true
    } else {
        return mcp_refusal(
            StatusCode::NOT_ACCEPTABLE,
            TRANSPORT_ERROR,
            "Not Acceptable: odock-mock answers with application/json or text/event-stream, \
             and the Accept header takes neither",
        );
    };
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
        if !ct.trim_start().starts_with("application/json") {
            return mcp_refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                TRANSPORT_ERROR,
                format!("Unsupported Media Type: the body must be application/json, not {ct}"),
            );
        }
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return mcp_refusal(
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
                format!("Parse error: the body is not JSON: {e}"),
            );
        }
    };
    let (messages, batch) = match value {
        Value::Array(items) if items.is_empty() => {
            return mcp_refusal(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "Invalid Request: an empty batch",
            );
        }
        Value::Array(items) => (items, true),
        other => (vec![other], false),
    };
    let is_initialize = |m: &Value| m.get("method").and_then(Value::as_str) == Some("initialize");
    let initializing = messages.iter().any(is_initialize);
    let mut new_session = None;
    if initializing {
        if batch {
            return mcp_refusal(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "Invalid Request: initialize must not be part of a batch",
            );
        }
        let id = new_session_id(shared);
        shared.state().sessions.insert(id.clone());
        new_session = Some(id);
    } else {
        if let Err(refusal) = session_of(shared, headers) {
            return refusal.response();
        }
        if let Some(version) = headers.get(VERSION_HEADER) {
            let version = String::from_utf8_lossy(version.as_bytes());
            if !MCP_PROTOCOL_VERSIONS.contains(&version.as_ref()) {
                return mcp_refusal(
                    StatusCode::BAD_REQUEST,
                    TRANSPORT_ERROR,
                    format!(
                        "Bad Request: unsupported MCP-Protocol-Version {version:?} (supported: {})",
                        MCP_PROTOCOL_VERSIONS.join(", ")
                    ),
                );
            }
        }
    }
    let answers: Vec<Value> = messages.iter().filter_map(mcp_message).collect();
    let mut response = if answers.is_empty() {
        respond(StatusCode::ACCEPTED, None, full(Bytes::new()))
    } else if sse {
        // One `message` event per answer, then the stream ends.
        let events: String = answers
            .iter()
            .map(|answer| format!("event: message\ndata: {answer}\n\n"))
            .collect();
        respond(StatusCode::OK, Some("text/event-stream"), full(events))
    } else if batch {
        json_response(StatusCode::OK, &Value::Array(answers))
    } else {
        let answer = answers.into_iter().next().unwrap_or(Value::Null);
        json_response(StatusCode::OK, &answer)
    };
    if let Some(id) = new_session
        && let Ok(value) = HeaderValue::from_str(&id)
    {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

/// Why a request names no open session.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SessionError {
    /// No `Mcp-Session-Id` header (400).
    Missing,
    /// A session the mock does not know, or that has ended (404).
    Unknown(String),
}

impl SessionError {
    fn response(&self) -> Response<Body> {
        match self {
            SessionError::Missing => mcp_refusal(
                StatusCode::BAD_REQUEST,
                TRANSPORT_ERROR,
                "Bad Request: the Mcp-Session-Id header is required (send initialize first)",
            ),
            SessionError::Unknown(id) => mcp_refusal(
                StatusCode::NOT_FOUND,
                TRANSPORT_ERROR,
                format!("Session not found: {id:?} is unknown or has ended; initialize a new one"),
            ),
        }
    }
}

/// The open session a request names.
fn session_of(shared: &Shared, headers: &HeaderMap) -> Result<String, SessionError> {
    let id = headers.get(SESSION_HEADER).ok_or(SessionError::Missing)?;
    let id = String::from_utf8_lossy(id.as_bytes()).into_owned();
    if shared.state().sessions.contains(&id) {
        Ok(id)
    } else {
        Err(SessionError::Unknown(id))
    }
}

fn new_session_id(shared: &Shared) -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(shared.next_id());
    format!("mock-{:016x}-{:04}", hasher.finish(), shared.next_id())
}

/// Answers one JSON-RPC message: `Some` answer for a request (or for
/// something that is no JSON-RPC message at all), `None` for
/// notifications and for responses from the client.
fn mcp_message(message: &Value) -> Option<Value> {
    let Some(obj) = message.as_object() else {
        return Some(rpc_error(
            Value::Null,
            INVALID_REQUEST,
            "Invalid Request: a JSON-RPC message must be an object",
        ));
    };
    let id = obj.get("id").cloned();
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(rpc_error(
            id.unwrap_or(Value::Null),
            INVALID_REQUEST,
            "Invalid Request: \"jsonrpc\" must be \"2.0\"",
        ));
    }
    let Some(method) = obj.get("method") else {
        if id.is_some() && (obj.contains_key("result") || obj.contains_key("error")) {
            return None; // a response from the client
        }
        return Some(rpc_error(
            id.unwrap_or(Value::Null),
            INVALID_REQUEST,
            "Invalid Request: no \"method\"",
        ));
    };
    let Some(method) = method.as_str() else {
        return Some(rpc_error(
            id.unwrap_or(Value::Null),
            INVALID_REQUEST,
            "Invalid Request: \"method\" must be a string",
        ));
    };
    let id = match id {
        None => return None, // a notification
        Some(id @ (Value::String(_) | Value::Number(_))) => id,
        Some(_) => {
            return Some(rpc_error(
                Value::Null,
                INVALID_REQUEST,
                "Invalid Request: \"id\" must be a string or a number",
            ));
        }
    };
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    Some(match mcp_call(method, &params) {
        Ok(result) => rpc_result(id, result),
        Err((code, message)) => rpc_error(id, code, message),
    })
}

fn mcp_call(method: &str, params: &Value) -> Result<Value, (i64, String)> {
    match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str);
            let version = asked
                .filter(|v| MCP_PROTOCOL_VERSIONS.contains(v))
                .unwrap_or(MCP_PROTOCOL_VERSIONS[MCP_PROTOCOL_VERSIONS.len() - 1]);
            Ok(json!({
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "odock-mock", "version": env!("CARGO_PKG_VERSION")},
                "instructions": "odock-mock: a fake MCP server with the tools search, fetch_url and delete_repo.",
            }))
        }
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": tools()})),
        "tools/call" => tool_call(params),
        other => Err((METHOD_NOT_FOUND, format!("Method not found: {other}"))),
    }
}

fn tools() -> Value {
    let tool =
        |name: &str, description: &str, arg: &str, arg_description: &str, destructive: bool| {
            json!({
                "name": name,
                "description": description,
                "inputSchema": {
                    "type": "object",
                    "properties": {arg: {"type": "string", "description": arg_description}},
                    "required": [arg],
                    "additionalProperties": false,
                },
                "annotations": {"readOnlyHint": !destructive, "destructiveHint": destructive},
            })
        };
    json!([
        tool(
            "search",
            "Searches the (fake) web.",
            "query",
            "What to search for",
            false
        ),
        tool(
            "fetch_url",
            "Fetches a (fake) web page.",
            "url",
            "The page's URL",
            false
        ),
        tool(
            "delete_repo",
            "Deletes a (fake) repository.",
            "repo",
            "owner/name of the repository",
            true
        ),
    ])
}

/// The one string argument a tool takes.
fn tool_arg<'a>(tool: &str, arguments: &'a Value, name: &str) -> Result<&'a str, (i64, String)> {
    arguments.get(name).and_then(Value::as_str).ok_or_else(|| {
        (
            INVALID_PARAMS,
            format!("Invalid params: tool {tool} needs the string argument {name:?}"),
        )
    })
}

fn tool_call(params: &Value) -> Result<Value, (i64, String)> {
    let name = params.get("name").and_then(Value::as_str).ok_or((
        INVALID_PARAMS,
        "Invalid params: tools/call needs a string \"name\"".to_owned(),
    ))?;
    let empty = json!({});
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(args @ Value::Object(_)) => args,
        Some(_) => {
            return Err((
                INVALID_PARAMS,
                "Invalid params: \"arguments\" must be an object".to_owned(),
            ));
        }
    };
    let text = match name {
        "search" => {
            let q = tool_arg(name, arguments, "query")?;
            format!(
                "2 results for \"{q}\":\n\
                 1. {q}: an overview - https://example.com/search/1\n\
                 2. {q} explained - https://example.com/search/2"
            )
        }
        "fetch_url" => {
            let url = tool_arg(name, arguments, "url")?;
            format!(
                "<html><head><title>Mock page</title></head>\
                 <body>odock-mock fetched {url}: this is a fake page.</body></html>"
            )
        }
        "delete_repo" => format!("deleted {}", tool_arg(name, arguments, "repo")?),
        other => return Err((INVALID_PARAMS, format!("Unknown tool: {other}"))),
    };
    Ok(json!({"content": [{"type": "text", "text": text}], "isError": false}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_join_back_one_word_each() {
        let text = "Echo:  two words\there ";
        let pieces = word_pieces(text);
        assert_eq!(pieces.concat(), text);
        assert_eq!(pieces, ["Echo:  ", "two ", "words\t", "here "]);
        assert_eq!(word_pieces("one"), ["one"]);
        assert!(word_pieces("").is_empty());
    }

    #[test]
    fn reply_mentions_contact_only_for_the_word() {
        assert!(chat_reply("please CONTACT, me").contains(CONTACT_SENTENCE));
        assert!(!chat_reply("contactless").contains(CONTACT_SENTENCE));
    }

    #[test]
    fn chat_requests_are_parsed_and_checked() {
        let r = parse_chat(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},
                "messages":[{"role":"system","content":"be brief"},
                            {"role":"user","content":[{"type":"text","text":"hi there"}]},
                            {"role":"assistant","content":null}]}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m");
        assert!(r.stream && r.include_usage);
        assert_eq!(r.last_user, "hi there");
        assert_eq!(r.prompt_tokens, 4);
        let param = |body: &[u8]| parse_chat(body).unwrap_err().param;
        assert_eq!(param(br#"{"messages":[]}"#), Some("model"));
        assert_eq!(param(br#"{"model":"m","messages":[]}"#), Some("messages"));
        assert_eq!(param(br#"{"model":"m"}"#), Some("messages"));
        assert_eq!(
            param(br#"{"model":"m","messages":[{"content":"x"}]}"#),
            Some("messages")
        );
        assert_eq!(
            param(br#"{"model":"m","messages":[{"role":"user"}],"stream":1}"#),
            Some("stream")
        );
        assert_eq!(param(b"{"), None);
    }

    #[test]
    fn approvals_deny_only_what_mentions_deny() {
        assert_eq!(
            approval_answer(&json!({"model": "gpt-4o"}))["approved"],
            true
        );
        let denied = approval_answer(&json!({"tenant": "please-DENY-me"}));
        assert_eq!(denied["approved"], false);
        assert_eq!(denied["reason"], DENY_REASON);
    }

    #[test]
    fn only_local_origins_pass() {
        let with = |origin: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
            local_origin(&h)
        };
        assert!(local_origin(&HeaderMap::new()));
        assert!(with("http://localhost:3000"));
        assert!(with("http://127.0.0.1"));
        assert!(with("http://[::1]:8080"));
        assert!(!with("https://evil.example"));
        assert!(!with("http://localhost.evil.example"));
        assert!(!with("null"));
    }

    #[test]
    fn jsonrpc_messages_are_classified() {
        assert_eq!(
            mcp_message(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            None
        );
        assert_eq!(
            mcp_message(&json!({"jsonrpc": "2.0", "id": 1, "result": {}})),
            None
        );
        let err = |m: Value| mcp_message(&m).unwrap()["error"]["code"].clone();
        assert_eq!(
            err(json!({"jsonrpc": "2.0", "id": 1, "method": "nope"})),
            METHOD_NOT_FOUND
        );
        assert_eq!(err(json!({"id": 1, "method": "ping"})), INVALID_REQUEST);
        assert_eq!(err(json!(7)), INVALID_REQUEST);
        assert_eq!(
            err(
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search", "arguments": {}}})
            ),
            INVALID_PARAMS
        );
        let init = mcp_message(&json!({"jsonrpc": "2.0", "id": "a", "method": "initialize",
            "params": {"protocolVersion": "1999-01-01"}}))
        .unwrap();
        assert_eq!(init["id"], "a");
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    }
}
