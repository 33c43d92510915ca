//! The reference gateway (`odock_tools::gateway`) end to end, over real
//! TCP: authentication, request-gate blocks (OpenAI and MCP), headers both
//! ways, streamed answers through the response gate, pauses on a governed
//! integration, upstream failures, the complete gate, policy swaps through
//! the run directory, and a graceful shutdown.
//!
//! Each test starts its own gateway on port 0 with its own run directory
//! (policy installed by writing `policy.json`, as control does) in front of
//! the mock upstream or of a scripted one, and talks to it with a small
//! HTTP/1.1 client over `std::net::TcpStream`.

mod plugin_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use odock_dataplane::evidence;
use odock_dataplane::plugin::Pin;
use odock_dataplane::ring::Ring;
use odock_dataplane::runtime::control_link::{
    BindingEntry, EVIDENCE_DIR, GatePriorities, POLICY_FORMAT, PluginEntry, PolicyFile, ScopeEntry,
};
use odock_dataplane::runtime::{Counter, PluginSource};
use odock_plugin_abi::{Capability, Gate};
use odock_suite::watchdog;
use odock_tools::gateway::sse::SseSplitter;
use odock_tools::gateway::{Gateway, GatewayConfig, VirtualKey};
use odock_tools::mock::{self, Mock, MockConfig};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The bound of every test: a hang fails instead of stalling CI.
const LIMIT: Duration = Duration::from_secs(120);

/// The virtual key of tenant `acme`.
const KEY: &str = "sk-odock-acme-0001";
/// The virtual key of tenant `denycorp` (the mock approval service denies
/// whatever mentions "deny").
const DENY_KEY: &str = "sk-odock-denycorp-0002";
/// The credential the gateway sends upstream when configured.
const UPSTREAM_KEY: &str = "sk-upstream-secret-42";

// ---------------------------------------------------------------------------
// An HTTP/1.1 client over TcpStream

/// One request's answer, read as it comes.
struct Conn {
    reader: BufReader<TcpStream>,
    status: u16,
    headers: Vec<(String, String)>,
    framing: Framing,
    done: bool,
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Chunked,
    Length(usize),
    UntilClose,
}

fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    if let Err(e) = reader.read_line(&mut line) {
        let peer = reader.get_ref().peer_addr();
        panic!("reading a line of the answer from {peer:?}: {e}");
    }
    line
}

impl Conn {
    /// Sends a request (`Connection: close`) and reads the answer's head.
    fn open(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Conn {
        let stream = TcpStream::connect(addr).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut all = vec![("connection", "close")];
        all.extend_from_slice(headers);
        write_request(&mut reader, method, path, &all, body);
        Conn::read_head(reader, method, path)
    }

    /// Reads the head of the answer to `method path` from `reader`.
    fn read_head(mut reader: BufReader<TcpStream>, method: &str, path: &str) -> Conn {
        let mut status_line = String::new();
        if let Err(e) = reader.read_line(&mut status_line) {
            panic!("no answer to {method} {path}: {e}");
        }
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut reader);
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("a header line");
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let framing = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            Framing::Chunked
        } else if let Some(n) = get("content-length") {
            Framing::Length(n.parse().expect("a numeric content-length"))
        } else {
            Framing::UntilClose
        };
        Conn {
            reader,
            status,
            headers,
            framing,
            done: false,
        }
    }

    /// The next piece of the body as it came (a chunk when chunked), or
    /// `None` at its end.
    fn next_data(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        match self.framing {
            Framing::Chunked => {
                let line = read_line(&mut self.reader);
                assert!(
                    !line.is_empty(),
                    "the chunked body ended without its last chunk"
                );
                let size = line.trim_end().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size.trim(), 16)
                    .unwrap_or_else(|_| panic!("not a chunk size: {line:?}"));
                if size == 0 {
                    // Trailers, then the blank line.
                    while !read_line(&mut self.reader).trim_end().is_empty() {}
                    self.done = true;
                    return None;
                }
                let mut data = vec![0; size + 2];
                self.reader.read_exact(&mut data).expect("a whole chunk");
                assert_eq!(&data[size..], b"\r\n", "a chunk ends with CRLF");
                data.truncate(size);
                Some(data)
            }
            Framing::Length(n) => {
                self.done = true;
                let mut data = vec![0; n];
                self.reader.read_exact(&mut data).expect("the whole body");
                (n > 0).then_some(data)
            }
            Framing::UntilClose => {
                self.done = true;
                let mut data = Vec::new();
                self.reader.read_to_end(&mut data).expect("the body");
                (!data.is_empty()).then_some(data)
            }
        }
    }

    /// Reads the rest of the body.
    fn finish(self) -> Answer {
        self.finish_keep().0
    }

    /// Reads the rest of the body; returns the connection too, for the
    /// next request on it.
    fn finish_keep(mut self) -> (Answer, BufReader<TcpStream>) {
        let mut body = Vec::new();
        while let Some(d) = self.next_data() {
            body.extend_from_slice(&d);
        }
        let answer = Answer {
            status: self.status,
            headers: self.headers,
            body,
        };
        (answer, self.reader)
    }

    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    /// The body as server-sent events.
    fn events(self) -> Events {
        Events {
            conn: self,
            split: SseSplitter::default(),
            eof: false,
        }
    }
}

/// Writes a request on the connection `reader` reads.
fn write_request(
    reader: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let stream = reader.get_mut();
    let addr = stream.peer_addr().unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // A server that answers before reading the whole body may close early;
    // its answer is still there to read.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
}

fn header_of<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A whole answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {}", self.text()))
    }
}

/// An answer's server-sent events, read one at a time.
struct Events {
    conn: Conn,
    split: SseSplitter,
    eof: bool,
}

impl Events {
    fn next_event(&mut self) -> Option<String> {
        loop {
            if let Some(e) = self.split.next_event() {
                return Some(String::from_utf8(e.to_vec()).expect("a UTF-8 event"));
            }
            if self.eof {
                return self
                    .split
                    .finish()
                    .map(|e| String::from_utf8(e.to_vec()).expect("a UTF-8 event"));
            }
            match self.conn.next_data() {
                Some(d) => self.split.push(&d),
                None => self.eof = true,
            }
        }
    }

    fn rest(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.next_event()).collect()
    }
}

/// The `data:` of an event.
fn data(event: &str) -> &str {
    event
        .trim_end()
        .strip_prefix("data:")
        .unwrap_or_else(|| panic!("not a data event: {event:?}"))
        .trim_start()
}

fn is_done(event: &str) -> bool {
    data(event) == "[DONE]"
}

/// The text a chat completion chunk adds.
fn delta(event: &str) -> String {
    let v: Value = serde_json::from_str(data(event))
        .unwrap_or_else(|e| panic!("not a JSON event ({e}): {event:?}"));
    v["choices"][0]["delta"]["content"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn auth(key: &str) -> String {
    format!("Bearer {key}")
}

fn chat_body(text: &str, stream: bool) -> String {
    json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    })
    .to_string()
}

/// Opens `POST /v1/chat/completions`; `key` as Bearer when given.
fn open_chat(
    addr: SocketAddr,
    key: Option<&str>,
    text: &str,
    stream: bool,
    extra: &[(&str, &str)],
) -> Conn {
    let bearer = key.map(auth);
    let mut headers = vec![("content-type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    headers.extend_from_slice(extra);
    Conn::open(
        addr,
        "POST",
        "/v1/chat/completions",
        &headers,
        chat_body(text, stream).as_bytes(),
    )
}

fn chat(addr: SocketAddr, key: Option<&str>, text: &str) -> Answer {
    open_chat(addr, key, text, false, &[]).finish()
}

/// Checks an OpenAI-style error answer and returns its `error` object.
fn openai_error(answer: &Answer, status: u16, code: &str) -> Value {
    assert_eq!(answer.status, status, "{}", answer.text());
    let v = answer.json();
    let error = v["error"].clone();
    assert_eq!(error["code"], code, "{v}");
    assert!(error["message"].is_string(), "{v}");
    assert!(error["type"].is_string(), "{v}");
    error
}

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let limit = Duration::from_secs(30);
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// Plugins and policy files

/// The probe plugin (whole-body at the response gate) named `name`.
fn probe(name: &str) -> PluginSource {
    plugin_support::probe_plugin(name, &[])
}

/// The probe plugin named `name`, per chunk at the response gate.
fn chunk_probe(name: &str) -> PluginSource {
    plugin_support::probe_plugin(name, &[("RESPONSE_MODE", "ODOCK_RESPONSE_PER_CHUNK")])
}

/// The reference `approval` plugin.
fn approval() -> PluginSource {
    let path = plugin_support::rust_plugin("odock-plugin-approval");
    PluginSource {
        name: "approval".into(),
        pin: Pin::of_file(&path).unwrap(),
        path,
    }
}

fn entry(p: &PluginSource) -> PluginEntry {
    PluginEntry {
        name: p.name.clone(),
        path: p.path.clone(),
        sha256: p.pin.to_string(),
    }
}

fn on(request: Option<i32>, response: Option<i32>, complete: Option<i32>) -> GatePriorities {
    GatePriorities {
        request,
        response,
        complete,
    }
}

const REQUEST: GatePriorities = GatePriorities {
    request: Some(10),
    response: None,
    complete: None,
};
const RESPONSE: GatePriorities = GatePriorities {
    request: None,
    response: Some(10),
    complete: None,
};
const COMPLETE: GatePriorities = GatePriorities {
    request: None,
    response: None,
    complete: Some(10),
};

/// A binding of `plugin` everywhere, granted everything and the
/// `approvals` integration.
fn bind(plugin: &PluginSource, priority: GatePriorities, config: &str) -> BindingEntry {
    BindingEntry {
        plugin: plugin.name.clone(),
        scope: ScopeEntry::default(),
        enabled: true,
        priority,
        capabilities: Capability::ALL
            .iter()
            .map(|c| c.name().to_owned())
            .collect(),
        integrations: vec!["approvals".into()],
        config: config.into(),
        failure_mode: "enforce".into(),
        time_budget_us: 5_000_000,
    }
}

fn scoped(mut b: BindingEntry, scope: ScopeEntry) -> BindingEntry {
    b.scope = scope;
    b
}

fn policy(version: u64, plugins: &[&PluginSource], bindings: Vec<BindingEntry>) -> PolicyFile {
    PolicyFile {
        format: POLICY_FORMAT,
        version,
        plugins: plugins.iter().map(|p| entry(p)).collect(),
        bindings,
    }
}

// ---------------------------------------------------------------------------
// A gateway in front of the mock

fn keys() -> Vec<VirtualKey> {
    vec![
        VirtualKey {
            key: KEY.into(),
            id: "vk-acme".into(),
            tenant: "acme".into(),
            environment: Some("prod".into()),
        },
        VirtualKey {
            key: DENY_KEY.into(),
            id: "vk-denycorp".into(),
            tenant: "denycorp".into(),
            environment: Some("prod".into()),
        },
    ]
}

/// A gateway (fields drop in order: the gateway before the mock and the run
/// directory).
struct Env {
    gateway: Gateway,
    mock: Mock,
    run: TempDir,
}

impl Env {
    /// The mock (with `mock_config`), then a gateway in front of it with
    /// `policy` already in its run directory; `tweak` adjusts its config
    /// (upstream, integrations, limits).
    fn start(
        policy: &PolicyFile,
        mock_config: MockConfig,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Env {
        let mock = Mock::start("127.0.0.1:0".parse().unwrap(), mock_config).expect("the mock");
        let run = tempfile::tempdir().unwrap();
        let mut config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: format!("http://{}", mock.addr()),
            upstream_api_key: Some(UPSTREAM_KEY.into()),
            run_dir: Some(run.path().to_owned()),
            workers: 2,
            pin: false,
            upstream_timeout_ms: 30_000,
            keys: keys(),
            ..GatewayConfig::default()
        };
        config.integrations.insert(
            "approvals".into(),
            format!("http://{}/approvals", mock.addr()),
        );
        tweak(&mut config);
        policy.write_atomic(run.path()).unwrap();
        let gateway = Gateway::start(config).unwrap_or_else(|e| panic!("the gateway: {e}"));
        let env = Env { gateway, mock, run };
        env.wait(policy.version);
        env
    }

    /// A gateway whose policy binds `plugin` alone, at `priority`, with
    /// `config`, in front of the default mock.
    fn with_one(plugin: &PluginSource, priority: GatePriorities, config: &str) -> Env {
        let p = policy(1, &[plugin], vec![bind(plugin, priority, config)]);
        Env::start(&p, MockConfig::default(), |_| {})
    }

    fn addr(&self) -> SocketAddr {
        self.gateway.addr()
    }

    fn wait(&self, version: u64) {
        assert!(
            self.gateway
                .wait_for_policy(version, Duration::from_secs(30)),
            "policy {version} did not install: {:?}",
            self.gateway.control_link().status()
        );
    }

    /// Installs `policy` as control would, and waits for it.
    fn install(&self, policy: &PolicyFile) {
        policy.write_atomic(self.run.path()).unwrap();
        self.wait(policy.version);
    }

    /// The last request the mock saw on an upstream route.
    fn last_upstream(&self) -> mock::SeenRequest {
        self.mock
            .requests()
            .pop()
            .expect("the upstream saw a request")
    }
}

/// One evidence record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    kind: evidence::Kind,
    gate: evidence::Gate,
    verdict: evidence::Verdict,
    status: u16,
    request_id: String,
    plugin: String,
    reason: String,
    detail: String,
    payload_kind: String,
}

impl Env {
    /// Everything in the gateway's evidence rings so far (as control would
    /// drain them; no control runs here, so this is the only consumer).
    fn evidence(&self) -> Vec<Ev> {
        evidence_in(self.run.path())
    }
}

/// Everything in the evidence rings of run directory `run`.
fn evidence_in(run: &std::path::Path) -> Vec<Ev> {
    let mut out = Vec::new();
    let dir = run.join(EVIDENCE_DIR);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ring") {
            continue;
        }
        let ring = Ring::attach(&path).unwrap();
        let mut consumer = ring.consumer().unwrap();
        while consumer
            .drain(|bytes| {
                let r = evidence::decode(&bytes).expect("a record the gateway wrote");
                let e = r.evidence;
                out.push(Ev {
                    kind: e.kind,
                    gate: e.gate,
                    verdict: e.verdict,
                    status: e.status,
                    request_id: e.request_id.to_owned(),
                    plugin: e.plugin.to_owned(),
                    reason: e.reason.to_owned(),
                    detail: e.detail.to_owned(),
                    payload_kind: e.payload.kind.to_owned(),
                });
            })
            .unwrap()
            > 0
        {}
    }
    out
}

fn no_plugins() -> PolicyFile {
    policy(1, &[], vec![])
}

/// A port nothing listens on.
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

// ---------------------------------------------------------------------------
// A scripted SSE upstream: the test says when each event goes out

struct Scripted {
    addr: SocketAddr,
    events: Option<mpsc::Sender<String>>,
    thread: Option<JoinHandle<String>>,
}

impl Scripted {
    /// Serves one request with a chunked `text/event-stream` answer whose
    /// events are the ones [`Scripted::send`] gives, when it gives them.
    fn start() -> Scripted {
        Scripted::with_head(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        )
    }

    /// Serves one request with the answer head `answer_head`; what
    /// [`Scripted::send`] gives follows as HTTP chunks when the head says
    /// chunked, else as raw bytes.
    fn with_head(answer_head: &str) -> Scripted {
        let chunked = answer_head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let answer_head = answer_head.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let thread = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("the gateway connects");
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim_end().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut w = stream;
            w.write_all(answer_head.as_bytes()).unwrap();
            for event in rx {
                let sent = if chunked {
                    w.write_all(format!("{:x}\r\n", event.len()).as_bytes())
                        .and_then(|()| w.write_all(event.as_bytes()))
                        .and_then(|()| w.write_all(b"\r\n"))
                } else {
                    w.write_all(event.as_bytes())
                };
                if sent.and_then(|()| w.flush()).is_err() {
                    return head; // the gateway hung up
                }
            }
            if chunked {
                let _ = w.write_all(b"0\r\n\r\n");
            }
            head
        });
        Scripted {
            addr,
            events: Some(tx),
            thread: Some(thread),
        }
    }

    fn send(&self, event: &str) {
        self.events
            .as_ref()
            .unwrap()
            .send(event.to_owned())
            .unwrap();
    }

    /// Sends an event if the upstream still serves.
    fn try_send(&self, event: &str) {
        let _ = self.events.as_ref().unwrap().send(event.to_owned());
    }

    /// Ends the stream; returns the request head the upstream got.
    fn end(&mut self) -> String {
        drop(self.events.take());
        self.thread.take().unwrap().join().unwrap()
    }
}

fn chunk_event(text: &str) -> String {
    let chunk = json!({
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}],
    });
    format!("data: {chunk}\n\n")
}

const DONE: &str = "data: [DONE]\n\n";

// ---------------------------------------------------------------------------
// 1. Authentication

#[test]
fn auth_refuses_missing_and_unknown_keys_and_admits_a_good_one() {
    watchdog(LIMIT, || {
        let env = Env::start(&no_plugins(), MockConfig::default(), |_| {});
        let addr = env.addr();

        let none = chat(addr, None, "hello");
        let e = openai_error(&none, 401, "invalid_api_key");
        assert_eq!(e["type"], "invalid_request_error");
        // Refusals carry a request id too.
        assert!(none.header("x-odock-request-id").is_some());

        let unknown = chat(addr, Some("sk-odock-nobody-999"), "hello");
        openai_error(&unknown, 401, "invalid_api_key");

        // Not a Bearer credential at all.
        let basic = Conn::open(
            addr,
            "POST",
            "/v1/chat/completions",
            &[("authorization", KEY), ("content-type", "application/json")],
            chat_body("hello", false).as_bytes(),
        )
        .finish();
        openai_error(&basic, 401, "invalid_api_key");
        assert!(
            env.mock.requests().is_empty(),
            "a refused request went upstream"
        );
        assert_eq!(env.mock.stats().chat_completions, 0);

        let ok = chat(addr, Some(KEY), "hello");
        assert_eq!(ok.status, 200, "{}", ok.text());
        let v = ok.json();
        assert_eq!(v["object"], "chat.completion", "{v}");
        assert_eq!(v["choices"][0]["message"]["content"], "Echo: hello", "{v}");
        let id = ok.header("x-odock-request-id").expect("x-odock-request-id");
        assert!(id.parse::<u64>().is_ok(), "request id {id:?}");
        // The upstream saw the same id.
        let seen = env.last_upstream();
        assert_eq!(
            seen.headers.get("x-odock-request-id").map(String::as_str),
            Some(id)
        );

        // Every exchange has its own id.
        let ids: std::collections::BTreeSet<String> = (0..6)
            .map(|_| {
                let a = chat(addr, Some(KEY), "again");
                assert_eq!(a.status, 200, "{}", a.text());
                a.header("x-odock-request-id").unwrap().to_owned()
            })
            .chain([id.to_owned()])
            .collect();
        assert_eq!(ids.len(), 7, "{ids:?}");

        let stats = env.gateway.stats();
        assert_eq!(stats.unauthorized, 3, "{stats:?}");
        assert_eq!(stats.requests, 10, "{stats:?}");
        // Gate time is recorded once per exchange that passed the door.
        assert_eq!(stats.gate_overhead.count(), 7, "{stats:?}");
        assert_eq!(env.mock.stats().chat_completions, 7);
    });
}

/// Headers the caller's `Connection` header names are that hop's: they do
/// not travel upstream (RFC 9110 §7.6.1).
#[test]
fn headers_named_by_connection_stay_on_the_callers_hop() {
    watchdog(LIMIT, || {
        let env = Env::start(&no_plugins(), MockConfig::default(), |_| {});
        let bearer = auth(KEY);
        let answer = Conn::open(
            env.addr(),
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
                ("connection", "keep-alive, X-Hop-Secret"),
                ("x-hop-secret", "only-for-the-gateway"),
                ("x-end-to-end", "travels"),
            ],
            chat_body("hello", false).as_bytes(),
        )
        .finish();
        assert_eq!(answer.status, 200, "{}", answer.text());
        let seen = env.last_upstream();
        assert!(!seen.headers.contains_key("x-hop-secret"), "{seen:?}");
        assert_eq!(
            seen.headers.get("x-end-to-end").map(String::as_str),
            Some("travels")
        );
    });
}

// ---------------------------------------------------------------------------
// 2. A request-gate block

#[test]
fn a_request_gate_block_answers_with_the_plugins_status_and_reason_only() {
    let blocker = probe("gw-blocker");
    watchdog(LIMIT, move || {
        let env = Env::with_one(
            &blocker,
            REQUEST,
            "header:x-first=1;block:451:this request breaks the acme policy",
        );
        let mut ids = Vec::new();
        for stream in [false, true] {
            let answer = open_chat(env.addr(), Some(KEY), "hello", stream, &[]).finish();
            assert_eq!(answer.status, 451, "{}", answer.text());
            ids.push(answer.header("x-odock-request-id").unwrap().to_owned());
            assert_eq!(
                answer.json(),
                json!({"error": {
                    "message": "this request breaks the acme policy",
                    "type": "odock_policy",
                    "param": null,
                    "code": "blocked",
                }})
            );
            assert_eq!(answer.header("x-odock-blocked-by"), Some("gw-blocker"));
            assert!(answer.header("x-odock-request-id").is_some());
            assert!(
                answer
                    .header("content-type")
                    .is_some_and(|c| c.starts_with("application/json"))
            );
            // The plugin's internal detail stays in evidence.
            let text = answer.text();
            assert!(!text.contains("internal"), "{text}");
            assert!(
                answer.headers.iter().all(|(_, v)| !v.contains("internal")),
                "{:?}",
                answer.headers
            );
        }
        assert!(
            env.mock.requests().is_empty(),
            "a blocked request went upstream"
        );
        assert_eq!(env.mock.stats().chat_completions, 0);
        assert_eq!(env.gateway.stats().blocked, 2);
        assert_eq!(
            env.gateway
                .runtime()
                .counter("gw-blocker", Gate::Request, Counter::Blocks),
            2
        );
        assert_eq!(env.gateway.stats().gate_overhead.count(), 2);
        // The detail is in evidence, under the id the caller got.
        let blocks: Vec<Ev> = env
            .evidence()
            .into_iter()
            .filter(|e| e.kind == evidence::Kind::Decision && e.plugin == "gw-blocker")
            .collect();
        // (Two threads, two rings: in no particular order.)
        let mut seen: Vec<&str> = blocks.iter().map(|e| e.request_id.as_str()).collect();
        seen.sort_unstable();
        ids.sort();
        assert_eq!(seen, ids, "{blocks:?}");
        for e in &blocks {
            assert_eq!(e.verdict, evidence::Verdict::Block, "{e:?}");
            assert_eq!(e.gate, evidence::Gate::Request, "{e:?}");
            assert_eq!(
                (e.status, e.reason.as_str(), e.detail.as_str()),
                (
                    451,
                    "this request breaks the acme policy",
                    "internal: probe blocked on config"
                )
            );
        }
    });
}

// ---------------------------------------------------------------------------
// 3. An MCP block

fn mcp(addr: SocketAddr, session: Option<&str>, body: &Value) -> Answer {
    mcp_as(addr, KEY, session, body)
}

fn mcp_as(addr: SocketAddr, key: &str, session: Option<&str>, body: &Value) -> Answer {
    let bearer = auth(key);
    let mut headers = vec![
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    if let Some(s) = session {
        headers.push(("mcp-session-id", s));
        headers.push(("mcp-protocol-version", "2025-06-18"));
    }
    Conn::open(addr, "POST", "/mcp", &headers, body.to_string().as_bytes()).finish()
}

/// Opens an MCP session through the gateway as `key`; returns its id.
fn mcp_session(addr: SocketAddr, key: &str) -> String {
    let init = mcp_as(
        addr,
        key,
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "gateway-test", "version": "0"}}}),
    );
    assert_eq!(init.status, 200, "{}", init.text());
    init.header("mcp-session-id")
        .expect("an MCP session id")
        .to_owned()
}

fn tool_call(id: Value, tool: &str, arguments: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    })
}

#[test]
fn an_mcp_tool_call_block_is_a_json_rpc_error_for_the_calls_id() {
    let guard = probe("gw-tool-guard");
    watchdog(LIMIT, move || {
        let p = policy(
            1,
            &[&guard],
            vec![scoped(
                bind(
                    &guard,
                    REQUEST,
                    "block:403:deleting repositories needs a human",
                ),
                ScopeEntry {
                    mcp_server: Some("tools".into()),
                    mcp_tool: Some("delete_repo".into()),
                    ..ScopeEntry::default()
                },
            )],
        );
        let env = Env::start(&p, MockConfig::default(), |_| {});
        let addr = env.addr();

        let init = mcp(
            addr,
            None,
            &json!({
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "gateway-test", "version": "0"},
                },
            }),
        );
        assert_eq!(init.status, 200, "{}", init.text());
        let session = init
            .header("mcp-session-id")
            .expect("the session id passes back through the gateway")
            .to_owned();
        assert_eq!(init.json()["result"]["serverInfo"]["name"], "odock-mock");

        // A tool the binding does not name passes.
        let search = mcp(
            addr,
            Some(&session),
            &tool_call(json!(2), "search", json!({"query": "odock"})),
        );
        assert_eq!(search.status, 200, "{}", search.text());
        let v = search.json();
        assert_eq!(v["id"], 2, "{v}");
        assert!(v.get("error").is_none() && v["result"].is_object(), "{v}");
        let mcp_before = env.mock.stats().mcp;
        assert_eq!(mcp_before, 2);

        for id in [json!(42), json!("call-7")] {
            let blocked = mcp(
                addr,
                Some(&session),
                &tool_call(id.clone(), "delete_repo", json!({"repo": "acme/prod"})),
            );
            assert_eq!(blocked.status, 200, "{}", blocked.text());
            assert_eq!(blocked.header("x-odock-blocked-by"), Some("gw-tool-guard"));
            assert_eq!(
                blocked.json(),
                json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {
                        "code": -32003,
                        "message": "deleting repositories needs a human",
                        "data": {"status": 403, "plugin": "gw-tool-guard"},
                    },
                })
            );
            assert!(!blocked.text().contains("internal"));
        }
        assert_eq!(
            env.mock.stats().mcp,
            mcp_before,
            "a blocked tool call reached the MCP server"
        );
    });
}

/// A blocked MCP message with no id (a notification) has no call to answer
/// with a JSON-RPC error: it is refused with the plugin's HTTP status.
#[test]
fn a_blocked_mcp_notification_is_refused_with_an_http_status() {
    let guard = probe("gw-notify-guard");
    watchdog(LIMIT, move || {
        let env = Env::with_one(&guard, REQUEST, "block:429:slow down");
        let note = mcp(
            env.addr(),
            None,
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        );
        assert_eq!(note.status, 429, "{}", note.text());
        let v = note.json();
        assert_eq!(v["id"], Value::Null, "{v}");
        assert_eq!(v["error"]["code"], -32003, "{v}");
        assert_eq!(v["error"]["message"], "slow down", "{v}");
        // A call with an id is still answered over 200, as its error.
        let call = mcp(env.addr(), None, &tool_call(json!(5), "search", json!({})));
        assert_eq!(call.status, 200, "{}", call.text());
        assert_eq!(call.json()["id"], 5);
        assert_eq!(env.mock.stats().mcp, 0, "nothing reached the MCP server");
    });
}

/// A response-gate block of an MCP answer is a JSON-RPC error for the
/// call's id too: whether the server answered with JSON (the mock) or, as
/// MCP servers commonly do, with an SSE stream holding the response.
#[test]
fn an_mcp_answer_blocked_at_the_response_gate_is_a_json_rpc_error() {
    let guard = chunk_probe("gw-mcp-result-guard");
    watchdog(LIMIT, move || {
        let p = policy(
            1,
            &[&guard],
            vec![scoped(
                bind(&guard, RESPONSE, "block:451:the tool result is withheld"),
                ScopeEntry {
                    mcp_server: Some("tools".into()),
                    ..ScopeEntry::default()
                },
            )],
        );
        let want = |id: Value| {
            json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": -32003,
                    "message": "the tool result is withheld",
                    "data": {"status": 451, "plugin": "gw-mcp-result-guard"},
                },
            })
        };

        // A JSON answer.
        let env = Env::start(&p, MockConfig::default(), |_| {});
        let init = mcp(
            env.addr(),
            None,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "gateway-test", "version": "0"}}}),
        );
        assert_eq!(init.status, 200, "{}", init.text());
        assert_eq!(init.json(), want(json!(1)));
        assert_eq!(
            init.header("x-odock-blocked-by"),
            Some("gw-mcp-result-guard")
        );
        drop(env);

        // An SSE answer.
        let mut upstream = Scripted::start();
        let env = Env::start(&p, MockConfig::default(), |c| {
            c.mcp_upstream = Some(format!("http://{}/mcp", upstream.addr));
        });
        upstream.send(
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"top secret\"}]}}\n\n",
        );
        let bearer = auth(KEY);
        let conn = Conn::open(
            env.addr(),
            "POST",
            "/mcp",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-session-id", "session-1"),
            ],
            tool_call(json!(9), "search", json!({"query": "q"}))
                .to_string()
                .as_bytes(),
        );
        assert_eq!(conn.status, 200);
        let events = conn.events().rest();
        upstream.end();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(!events[0].contains("top secret"), "{events:?}");
        let v: Value = serde_json::from_str(data(&events[0])).unwrap();
        assert_eq!(v, want(json!(9)), "an MCP client matches answers by id");
    });
}

/// `GET /mcp` opens the session's server-to-client event stream (MCP
/// Streamable HTTP); the gateway proxies it after authentication, so the
/// events must reach the caller as they come, not when the stream ends.
#[test]
fn an_mcp_session_stream_passes_through_as_it_comes() {
    watchdog(LIMIT, || {
        let mut upstream = Scripted::start();
        let env = Env::start(&no_plugins(), MockConfig::default(), |c| {
            c.mcp_upstream = Some(format!("http://{}/mcp", upstream.addr));
        });
        let note = |n: u32| {
            format!(
                "event: message\nid: {n}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}}\n\n"
            )
        };
        let refused = Conn::open(env.addr(), "GET", "/mcp", &[], b"").finish();
        openai_error(&refused, 401, "invalid_api_key");

        upstream.send(&note(1));
        let bearer = auth(KEY);
        let conn = Conn::open(
            env.addr(),
            "GET",
            "/mcp",
            &[
                ("authorization", &bearer),
                ("accept", "text/event-stream"),
                ("mcp-session-id", "session-1"),
            ],
            b"",
        );
        assert_eq!(conn.status, 200);
        assert!(
            conn.header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream")),
            "{:?}",
            conn.headers
        );
        let mut events = conn.events();
        assert_eq!(events.next_event(), Some(note(1)));
        upstream.send(&note(2));
        assert_eq!(events.next_event(), Some(note(2)));
        let head = upstream.end();
        assert_eq!(events.next_event(), None);
        assert!(head.starts_with("GET /mcp "), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("mcp-session-id: session-1"),
            "{head}"
        );
        assert!(!head.contains(KEY), "{head}");
    });
}

// ---------------------------------------------------------------------------
// 4. Headers

#[test]
fn gate_headers_travel_and_the_callers_key_never_leaves_the_gateway() {
    let (req, resp) = (probe("gw-req-headers"), chunk_probe("gw-resp-headers"));
    watchdog(LIMIT, move || {
        let p = policy(
            1,
            &[&req, &resp],
            vec![
                bind(
                    &req,
                    REQUEST,
                    "header:x-gate-added=req-1;echo:authorization",
                ),
                bind(&resp, RESPONSE, "header:x-gate-answer=resp-1"),
            ],
        );
        let env = Env::start(&p, MockConfig::default(), |_| {});
        let addr = env.addr();

        // A whole answer.
        let answer = open_chat(addr, Some(KEY), "hi", false, &[("x-caller", "c-1")]).finish();
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.header("x-gate-answer"), Some("resp-1"));
        assert_eq!(
            answer.json()["choices"][0]["message"]["content"],
            "Echo: hi"
        );
        let seen = env.last_upstream();
        let h = |n: &str| seen.headers.get(n).map(String::as_str);
        assert_eq!(h("x-gate-added"), Some("req-1"), "{seen:?}");
        assert_eq!(h("x-caller"), Some("c-1"), "{seen:?}");
        // The upstream's host, not the gateway's.
        assert_eq!(
            h("host"),
            Some(env.mock.addr().to_string().as_str()),
            "{seen:?}"
        );
        assert_eq!(
            h("authorization"),
            Some(auth(UPSTREAM_KEY).as_str()),
            "{seen:?}"
        );
        // Plugins never see the caller's key, so none can hand it on.
        assert_eq!(h("x-saw-authorization"), Some("none"), "{seen:?}");
        assert!(
            seen.headers.values().all(|v| !v.contains(KEY)),
            "the caller's key reached the upstream: {seen:?}"
        );

        // A stream: the response gate's header is in the head, which comes
        // with the first event.
        let conn = open_chat(addr, Some(KEY), "one two three", true, &[]);
        assert_eq!(conn.status, 200);
        assert_eq!(conn.header("x-gate-answer"), Some("resp-1"));
        assert!(
            conn.header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream")),
            "{:?}",
            conn.headers
        );
        let events = conn.events().rest();
        assert!(is_done(events.last().unwrap()), "{events:?}");
        let seen = env.last_upstream();
        assert_eq!(
            seen.headers.get("x-gate-added").map(String::as_str),
            Some("req-1")
        );
        assert!(seen.headers.values().all(|v| !v.contains(KEY)), "{seen:?}");
    });
}

#[test]
fn a_request_gate_rewrite_is_what_the_upstream_gets() {
    let dlp = probe("gw-request-redact");
    watchdog(LIMIT, move || {
        let env = Env::with_one(&dlp, REQUEST, "redact:hunter2");
        let answer = chat(env.addr(), Some(KEY), "my password is hunter2");
        assert_eq!(answer.status, 200, "{}", answer.text());
        // The mock echoes what it got.
        assert_eq!(
            answer.json()["choices"][0]["message"]["content"],
            "Echo: my password is *******"
        );
        let seen = env.last_upstream();
        assert_eq!(
            seen.body_len,
            chat_body("my password is hunter2", false).len()
        );
    });
}

/// The gates read and rewrite bodies (a DLP plugin redacts the answer), so
/// the upstream must answer in the clear: a caller asking for a compressed
/// answer would otherwise get one the response gate cannot read, and its
/// redaction would silently not happen.
#[test]
fn the_callers_accept_encoding_does_not_reach_the_upstream() {
    let dlp = chunk_probe("gw-encoding-redact");
    watchdog(LIMIT, move || {
        let env = Env::with_one(&dlp, RESPONSE, "redact:secret");
        for stream in [false, true] {
            let answer = open_chat(
                env.addr(),
                Some(KEY),
                "the secret",
                stream,
                &[("accept-encoding", "gzip, deflate, br")],
            )
            .finish();
            assert_eq!(answer.status, 200, "{}", answer.text());
            assert!(!answer.text().contains("secret"), "{}", answer.text());
            let seen = env.last_upstream();
            assert!(
                seen.headers
                    .get("accept-encoding")
                    .is_none_or(|v| v == "identity"),
                "the upstream may compress the answer the gates must read: {seen:?}"
            );
        }
    });
}

#[test]
fn without_an_upstream_key_no_authorization_goes_upstream() {
    watchdog(LIMIT, || {
        let env = Env::start(&no_plugins(), MockConfig::default(), |c| {
            c.upstream_api_key = None;
        });
        let answer = chat(env.addr(), Some(KEY), "hi");
        assert_eq!(answer.status, 200, "{}", answer.text());
        let seen = env.last_upstream();
        assert!(!seen.headers.contains_key("authorization"), "{seen:?}");
        assert!(seen.headers.values().all(|v| !v.contains(KEY)), "{seen:?}");

        let models = Conn::open(
            env.addr(),
            "GET",
            "/v1/models",
            &[("authorization", &auth(KEY))],
            b"",
        )
        .finish();
        assert_eq!(models.status, 200, "{}", models.text());
        let seen = env.last_upstream();
        assert_eq!(seen.path, "/v1/models");
        assert!(!seen.headers.contains_key("authorization"), "{seen:?}");
    });
}

// ---------------------------------------------------------------------------
// 5. Streaming

#[test]
fn the_upstreams_path_prefix_and_the_query_are_kept() {
    watchdog(LIMIT, || {
        let mut upstream = Scripted::start();
        let env = Env::start(&no_plugins(), MockConfig::default(), |c| {
            c.upstream = format!("http://{}/openai/", upstream.addr);
        });
        upstream.send(DONE);
        let conn = Conn::open(
            env.addr(),
            "POST",
            "/v1/chat/completions?api-version=2024-10-21",
            &[
                ("authorization", &auth(KEY)),
                ("content-type", "application/json"),
            ],
            chat_body("hi", true).as_bytes(),
        );
        assert_eq!(conn.status, 200);
        assert_eq!(conn.events().rest(), [DONE]);
        let head = upstream.end();
        assert!(
            head.starts_with(
                "POST /openai/v1/chat/completions?api-version=2024-10-21 HTTP/1.1\r\n"
            ),
            "{head}"
        );
    });
}

#[test]
fn a_streamed_answer_passes_event_by_event() {
    watchdog(LIMIT, || {
        let mut upstream = Scripted::start();
        let env = Env::start(&no_plugins(), MockConfig::default(), |c| {
            c.upstream = format!("http://{}", upstream.addr);
        });
        let words = ["Echo: ", "one ", "two ", "three"];
        // Only the first event is out when the caller starts reading: the
        // caller gets each event before the upstream sends the next.
        upstream.send(&chunk_event(words[0]));
        let conn = open_chat(env.addr(), Some(KEY), "one two three", true, &[]);
        assert_eq!(conn.status, 200);
        assert!(conn.header("x-odock-request-id").is_some());
        let mut events = conn.events();
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                upstream.send(&chunk_event(w));
            }
            let e = events.next_event().expect("the next event");
            assert_eq!(delta(&e), *w, "event {i}: {e:?}");
        }
        upstream.send(DONE);
        assert_eq!(events.next_event().as_deref(), Some(DONE));
        let head = upstream.end();
        assert_eq!(events.next_event(), None, "nothing after [DONE]");
        assert!(head.starts_with("POST /v1/chat/completions "), "{head}");
        assert_eq!(env.gateway.stats().streamed, 1);
    });
}

#[test]
fn a_streamed_answer_keeps_the_upstreams_status() {
    watchdog(LIMIT, || {
        let mut upstream = Scripted::with_head(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/event-stream\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        );
        let env = Env::start(&no_plugins(), MockConfig::default(), |c| {
            c.upstream = format!("http://{}", upstream.addr);
        });
        let overloaded = "data: {\"error\":{\"message\":\"the model is overloaded\"}}\n\n";
        upstream.send(overloaded);
        let conn = open_chat(env.addr(), Some(KEY), "x", true, &[]);
        // The caller (and its SDK's retry logic) must see the upstream's
        // 503, not a 200 with an error inside.
        assert_eq!(conn.status, 503, "{:?}", conn.headers);
        let mut events = conn.events();
        assert_eq!(events.next_event().as_deref(), Some(overloaded));
        upstream.end();
        assert_eq!(events.next_event(), None);
    });
}

/// Streams at once on the same threads keep their own events and their own
/// response-gate state.
#[test]
fn concurrent_streams_keep_to_their_own_events() {
    let dlp = chunk_probe("gw-concurrent-redact");
    watchdog(LIMIT, move || {
        let p = policy(1, &[&dlp], vec![bind(&dlp, RESPONSE, "redact:secret")]);
        let env = Env::start(
            &p,
            MockConfig {
                chunk_delay: Duration::from_millis(10),
                ..MockConfig::default()
            },
            |_| {},
        );
        let addr = env.addr();
        let callers: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    let words: Vec<String> = (0..10).map(|w| format!("c{i}w{w}")).collect();
                    let text = format!("{} secret {}", words[..5].join(" "), words[5..].join(" "));
                    let events = open_chat(addr, Some(KEY), &text, true, &[]).events().rest();
                    (text, events)
                })
            })
            .collect();
        for c in callers {
            let (text, events) = c.join().unwrap();
            assert!(is_done(events.last().unwrap()), "{events:?}");
            let got: String = events[..events.len() - 1]
                .iter()
                .map(|e| delta(e))
                .collect();
            assert_eq!(got, format!("Echo: {}", text.replace("secret", "******")));
        }
        assert_eq!(env.gateway.stats().streamed, 8);
    });
}

#[test]
fn a_response_gate_redaction_shows_in_the_streamed_events() {
    let dlp = chunk_probe("gw-chunk-redact");
    watchdog(LIMIT, move || {
        let env = Env::with_one(&dlp, RESPONSE, "redact:secret");
        let conn = open_chat(env.addr(), Some(KEY), "tell me the secret plan", true, &[]);
        assert_eq!(conn.status, 200);
        let events = conn.events().rest();
        assert!(is_done(events.last().unwrap()), "{events:?}");
        let text: String = events[..events.len() - 1]
            .iter()
            .map(|e| delta(e))
            .collect();
        assert_eq!(text, "Echo: tell me the ****** plan");
        assert!(events.iter().all(|e| !e.contains("secret")), "{events:?}");
        // One event per word, each whole JSON (the redaction kept its size).
        assert_eq!(events.len(), 7, "{events:?}");
        assert_eq!(
            env.gateway
                .runtime()
                .counter("gw-chunk-redact", Gate::Response, Counter::Calls),
            7
        );

        // The whole (not streamed) answer is redacted too.
        let answer = chat(env.addr(), Some(KEY), "the secret");
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(
            answer.json()["choices"][0]["message"]["content"],
            "Echo: the ******"
        );
    });
}

#[test]
fn a_block_in_the_middle_of_a_stream_ends_it_with_an_error_event() {
    let judge = probe("gw-stream-judge");
    watchdog(LIMIT, move || {
        // A whole-body plugin judges the answer once it has all of it: at
        // the last event, after the caller has the others.
        let p = policy(
            1,
            &[&judge],
            vec![bind(
                &judge,
                RESPONSE,
                "block:451:the answer broke a policy",
            )],
        );
        let mut upstream = Scripted::start();
        let env = Env::start(&p, MockConfig::default(), |c| {
            c.upstream = format!("http://{}", upstream.addr);
        });
        upstream.send(&chunk_event("Echo: "));
        let conn = open_chat(env.addr(), Some(KEY), "x", true, &[]);
        assert_eq!(conn.status, 200);
        let mut events = conn.events();
        assert_eq!(delta(&events.next_event().unwrap()), "Echo: ");
        upstream.send(&chunk_event("forbidden "));
        assert_eq!(delta(&events.next_event().unwrap()), "forbidden ");
        upstream.send(&chunk_event("words"));
        assert_eq!(delta(&events.next_event().unwrap()), "words");
        upstream.send(DONE);
        let last = events.next_event().expect("a final error event");
        let v: Value = serde_json::from_str(data(&last)).unwrap();
        assert_eq!(v["error"]["message"], "the answer broke a policy", "{v}");
        assert_eq!(v["error"]["type"], "odock_policy", "{v}");
        assert_eq!(v["error"]["code"], "blocked", "{v}");
        assert!(!last.contains("internal"), "{last}");
        let rest = events.rest();
        assert!(rest.is_empty(), "events after the error: {rest:?}");
        upstream.end();
        assert_eq!(env.gateway.stats().blocked, 1);
    });
}

#[test]
fn events_joined_or_split_by_the_network_are_gated_whole() {
    let dlp = chunk_probe("gw-event-redact");
    watchdog(LIMIT, move || {
        let p = policy(1, &[&dlp], vec![bind(&dlp, RESPONSE, "redact:secret")]);
        let mut upstream = Scripted::start();
        let env = Env::start(&p, MockConfig::default(), |c| {
            c.upstream = format!("http://{}", upstream.addr);
        });
        // Two events in one network chunk, then one cut inside "secret".
        upstream.send(&format!("{}{}", chunk_event("Echo: "), chunk_event("the ")));
        let split = chunk_event("top secret");
        let cut = split.find("secret").unwrap() + 3;
        let conn = open_chat(env.addr(), Some(KEY), "x", true, &[]);
        assert_eq!(conn.status, 200);
        let mut events = conn.events();
        assert_eq!(delta(&events.next_event().unwrap()), "Echo: ");
        assert_eq!(delta(&events.next_event().unwrap()), "the ");
        upstream.send(&split[..cut]);
        upstream.send(&split[cut..]);
        assert_eq!(delta(&events.next_event().unwrap()), "top ******");
        upstream.send(DONE);
        assert_eq!(events.next_event().as_deref(), Some(DONE));
        upstream.end();
        assert_eq!(events.next_event(), None);
        // One gate call per event: four, whatever the network did.
        assert_eq!(
            env.gateway
                .runtime()
                .counter("gw-event-redact", Gate::Response, Counter::Calls),
            4
        );
    });
}

#[test]
fn a_response_gate_block_of_a_whole_answer_is_the_callers_error() {
    let judge = probe("gw-answer-judge");
    watchdog(LIMIT, move || {
        let env = Env::with_one(&judge, RESPONSE, "block:502:the answer broke a policy");
        let answer = chat(env.addr(), Some(KEY), "hello");
        let e = openai_error(&answer, 502, "blocked");
        assert_eq!(e["type"], "odock_policy");
        assert_eq!(e["message"], "the answer broke a policy");
        assert_eq!(answer.header("x-odock-blocked-by"), Some("gw-answer-judge"));
        assert!(!answer.text().contains("Echo"), "{}", answer.text());
        assert!(!answer.text().contains("internal"), "{}", answer.text());
        // The upstream did answer; the caller got the block instead.
        assert_eq!(env.mock.stats().chat_completions, 1);
        assert_eq!(env.gateway.stats().blocked, 1);
    });
}

#[test]
fn a_block_at_the_first_event_is_the_streams_only_event() {
    let guard = chunk_probe("gw-chunk-block");
    watchdog(LIMIT, move || {
        let env = Env::with_one(&guard, RESPONSE, "block:451:no streams today");
        let conn = open_chat(env.addr(), Some(KEY), "one two three", true, &[]);
        assert_eq!(conn.status, 200);
        let events = conn.events().rest();
        assert_eq!(events.len(), 1, "{events:?}");
        let v: Value = serde_json::from_str(data(&events[0])).unwrap();
        assert_eq!(v["error"]["message"], "no streams today", "{v}");
        assert_eq!(v["error"]["code"], "blocked", "{v}");
        assert!(events.iter().all(|e| !e.contains("[DONE]")));
    });
}

// ---------------------------------------------------------------------------
// 6. Pauses on a governed integration

const APPROVAL_CONFIG: &str =
    r#"{"models":["gpt-4o"],"timeout_ms":5000,"on_timeout":"deny","on_error":"deny"}"#;

#[test]
fn a_pause_calls_the_integration_and_resumes_with_its_answer() {
    let ap = approval();
    watchdog(LIMIT, move || {
        let env = Env::with_one(&ap, REQUEST, APPROVAL_CONFIG);
        let addr = env.addr();

        // Approved: the request goes on, marked.
        let ok = chat(addr, Some(KEY), "hello");
        assert_eq!(ok.status, 200, "{}", ok.text());
        assert_eq!(ok.json()["choices"][0]["message"]["content"], "Echo: hello");
        let s = env.mock.stats();
        assert_eq!((s.approvals_asked, s.approvals_granted), (1, 1), "{s:?}");
        let seen = env.last_upstream();
        assert_eq!(
            seen.headers.get("x-odock-approval").map(String::as_str),
            Some("approved"),
            "{seen:?}"
        );

        // Denied (the mock denies whatever mentions "deny": the tenant).
        let denied = chat(addr, Some(DENY_KEY), "hello");
        let e = openai_error(&denied, 403, "blocked");
        assert_eq!(e["type"], "odock_policy");
        assert_eq!(
            e["message"],
            format!(
                "this request needs an approval and was denied: {}",
                mock::DENY_REASON
            )
        );
        assert_eq!(denied.header("x-odock-blocked-by"), Some("approval"));
        assert_eq!(env.mock.stats().approvals_denied, 1);
        assert_eq!(
            env.mock.stats().chat_completions,
            1,
            "a denied request went upstream"
        );

        // A model the plugin does not hold: no call.
        let plain = Conn::open(
            addr,
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth(KEY)),
                ("content-type", "application/json"),
            ],
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
                .to_string()
                .as_bytes(),
        )
        .finish();
        assert_eq!(plain.status, 200, "{}", plain.text());
        assert_eq!(env.mock.stats().approvals_asked, 2);
        assert_eq!(env.gateway.stats().paused, 2);

        // A streamed answer after the pause.
        let events = open_chat(addr, Some(KEY), "one two", true, &[])
            .events()
            .rest();
        assert!(is_done(events.last().unwrap()), "{events:?}");
        let text: String = events[..events.len() - 1]
            .iter()
            .map(|e| delta(e))
            .collect();
        assert_eq!(text, "Echo: one two");
        assert_eq!(env.mock.stats().approvals_granted, 2);
    });
}

/// Paused exchanges park on their thread's runner while it serves others;
/// each resumes with its own answer.
#[test]
fn concurrent_pauses_each_resume_with_their_own_answer() {
    let ap = approval();
    watchdog(LIMIT, move || {
        let p = policy(1, &[&ap], vec![bind(&ap, REQUEST, APPROVAL_CONFIG)]);
        let env = Env::start(
            &p,
            MockConfig {
                approval_delay: Duration::from_millis(100),
                ..MockConfig::default()
            },
            |_| {},
        );
        let addr = env.addr();
        let callers: Vec<_> = (0..12)
            .map(|i| {
                std::thread::spawn(move || {
                    let key = if i % 3 == 0 { DENY_KEY } else { KEY };
                    (i, key, chat(addr, Some(key), &format!("caller {i}")))
                })
            })
            .collect();
        for c in callers {
            let (i, key, answer) = c.join().unwrap();
            if key == DENY_KEY {
                openai_error(&answer, 403, "blocked");
                assert_eq!(answer.header("x-odock-blocked-by"), Some("approval"));
            } else {
                assert_eq!(answer.status, 200, "caller {i}: {}", answer.text());
                assert_eq!(
                    answer.json()["choices"][0]["message"]["content"],
                    format!("Echo: caller {i}")
                );
            }
        }
        let s = env.mock.stats();
        assert_eq!(
            (s.approvals_asked, s.approvals_granted, s.approvals_denied),
            (12, 8, 4),
            "{s:?}"
        );
        assert_eq!(s.chat_completions, 8);
        assert_eq!(env.gateway.stats().paused, 12);
        assert!(
            env.mock.requests().iter().all(|r| r
                .headers
                .get("x-odock-approval")
                .map(String::as_str)
                == Some("approved")),
            "{:?}",
            env.mock.requests()
        );
    });
}

/// An MCP tool call the approval plugin holds: approved, it reaches the
/// server; denied, the caller gets the JSON-RPC error for its id.
#[test]
fn an_mcp_tool_call_waits_for_its_approval() {
    let ap = approval();
    watchdog(LIMIT, move || {
        let config =
            r#"{"tools":["delete_repo"],"timeout_ms":5000,"on_timeout":"deny","on_error":"deny"}"#;
        let env = Env::with_one(&ap, REQUEST, config);
        let addr = env.addr();

        let session = mcp_session(addr, KEY);
        assert_eq!(env.mock.stats().approvals_asked, 0, "initialize needs none");
        let ok = mcp_as(
            addr,
            KEY,
            Some(&session),
            &tool_call(json!(2), "delete_repo", json!({"repo": "acme/old"})),
        );
        assert_eq!(ok.status, 200, "{}", ok.text());
        let v = ok.json();
        assert_eq!(v["id"], 2, "{v}");
        assert!(v["result"].is_object(), "{v}");
        let seen = env.last_upstream();
        assert_eq!(
            seen.headers.get("x-odock-approval").map(String::as_str),
            Some("approved"),
            "{seen:?}"
        );

        let session = mcp_session(addr, DENY_KEY);
        let mcp_before = env.mock.stats().mcp;
        let denied = mcp_as(
            addr,
            DENY_KEY,
            Some(&session),
            &tool_call(json!("d-1"), "delete_repo", json!({"repo": "acme/prod"})),
        );
        assert_eq!(denied.status, 200, "{}", denied.text());
        let v = denied.json();
        assert_eq!(v["id"], "d-1", "{v}");
        assert_eq!(v["error"]["code"], -32003, "{v}");
        assert_eq!(
            v["error"]["data"],
            json!({"status": 403, "plugin": "approval"})
        );
        assert_eq!(
            v["error"]["message"],
            format!(
                "this request needs an approval and was denied: {}",
                mock::DENY_REASON
            )
        );
        assert_eq!(
            env.mock.stats().mcp,
            mcp_before,
            "a denied call reached the server"
        );
        let s = env.mock.stats();
        assert_eq!((s.approvals_granted, s.approvals_denied), (1, 1), "{s:?}");
    });
}

#[test]
fn an_integration_that_never_answers_takes_the_plugins_timeout_path() {
    let ap = approval();
    watchdog(LIMIT, move || {
        // Accepts connections (the kernel does) and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let config =
            r#"{"models":["gpt-4o"],"timeout_ms":300,"on_timeout":"deny","on_error":"deny"}"#;
        let p = policy(1, &[&ap], vec![bind(&ap, REQUEST, config)]);
        let env = Env::start(&p, MockConfig::default(), |c| {
            c.integrations.insert(
                "approvals".into(),
                format!("http://{silent_addr}/approvals"),
            );
        });
        let answer = chat(env.addr(), Some(KEY), "hello");
        let e = openai_error(&answer, 504, "blocked");
        assert_eq!(
            e["message"],
            "this request needs an approval, which did not arrive in time; try again later"
        );
        assert_eq!(answer.header("x-odock-blocked-by"), Some("approval"));
        assert!(env.mock.requests().is_empty());
        assert_eq!(env.gateway.stats().paused, 1);
        drop(silent);
    });
}

#[test]
fn an_integration_the_gateway_has_no_url_for_takes_the_failure_path() {
    let ap = approval();
    watchdog(LIMIT, move || {
        let p = policy(1, &[&ap], vec![bind(&ap, REQUEST, APPROVAL_CONFIG)]);
        let env = Env::start(&p, MockConfig::default(), |c| c.integrations.clear());
        let answer = chat(env.addr(), Some(KEY), "hello");
        let e = openai_error(&answer, 502, "blocked");
        assert_eq!(
            e["message"],
            "this request needs an approval, and the approval service is unavailable"
        );
        assert_eq!(answer.header("x-odock-blocked-by"), Some("approval"));
        assert_eq!(env.mock.stats().approvals_asked, 0);
        assert!(env.mock.requests().is_empty());
        drop(env);

        // An integration that answers with an error status fails the same
        // way (the mock has no such route: 404).
        let env = Env::start(&p, MockConfig::default(), |c| {
            let nowhere = c.upstream.clone() + "/no-such-service";
            c.integrations.insert("approvals".into(), nowhere);
        });
        let answer = chat(env.addr(), Some(KEY), "hello");
        let e = openai_error(&answer, 502, "blocked");
        assert_eq!(
            e["message"],
            "this request needs an approval, and the approval service is unavailable"
        );
        assert_eq!(env.mock.stats().not_found, 1, "the call was made");
        assert_eq!(env.gateway.stats().paused, 1);
        assert!(env.mock.requests().is_empty());
    });
}

// ---------------------------------------------------------------------------
// 7. Upstream failures, limits and routes

#[test]
fn an_upstream_that_is_down_is_502_upstream_failed() {
    watchdog(LIMIT, || {
        let down = closed_port();
        let env = Env::start(&no_plugins(), MockConfig::default(), |c| {
            c.upstream = format!("http://{down}");
        });
        for stream in [false, true] {
            let answer = open_chat(env.addr(), Some(KEY), "hello", stream, &[]).finish();
            let e = openai_error(&answer, 502, "upstream_failed");
            assert_eq!(e["type"], "upstream_error");
        }
        let models = Conn::open(
            env.addr(),
            "GET",
            "/v1/models",
            &[("authorization", &auth(KEY))],
            b"",
        )
        .finish();
        openai_error(&models, 502, "upstream_failed");
        assert_eq!(env.gateway.stats().upstream_errors, 3);
    });
}

#[test]
fn an_upstream_that_never_answers_is_502_after_the_upstream_timeout() {
    watchdog(LIMIT, || {
        // Accepts connections (the kernel does) and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let env = Env::start(&no_plugins(), MockConfig::default(), |c| {
            c.upstream = format!("http://{silent_addr}");
            c.upstream_timeout_ms = 300;
        });
        let answer = chat(env.addr(), Some(KEY), "hello");
        let e = openai_error(&answer, 502, "upstream_failed");
        assert_eq!(e["type"], "upstream_error");
        assert_eq!(env.gateway.stats().upstream_errors, 1);
        drop(silent);
    });
}

#[test]
fn an_upstream_answer_that_stalls_is_502_after_the_upstream_timeout() {
    watchdog(LIMIT, || {
        // A head announcing 100 bytes, then 10 of them, then nothing.
        let stalled = || {
            let upstream = Scripted::with_head(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                 content-length: 100\r\n\r\n",
            );
            upstream.send("{\"object\":");
            upstream
        };
        for (method, path) in [("POST", "/v1/chat/completions"), ("GET", "/v1/models")] {
            let mut upstream = stalled();
            let env = Env::start(&no_plugins(), MockConfig::default(), |c| {
                c.upstream = format!("http://{}", upstream.addr);
                c.upstream_timeout_ms = 300;
            });
            let answer = Conn::open(
                env.addr(),
                method,
                path,
                &[
                    ("authorization", &auth(KEY)),
                    ("content-type", "application/json"),
                ],
                chat_body("hello", false).as_bytes(),
            )
            .finish();
            let e = openai_error(&answer, 502, "upstream_failed");
            assert_eq!(e["type"], "upstream_error", "{method} {path}");
            assert_eq!(env.gateway.stats().upstream_errors, 1);
            drop(env);
            upstream.end();
        }
    });
}

/// A stream stays bounded: an event that outgrows `max_body_bytes`, or an
/// upstream silent past its timeout, ends the stream with an error event.
#[test]
fn a_stream_that_outgrows_its_bounds_ends_with_an_error_event() {
    watchdog(LIMIT, || {
        for (oversized, needle) in [(true, "more than 1024 bytes"), (false, "sent nothing")] {
            let mut upstream = Scripted::start();
            let env = Env::start(&no_plugins(), MockConfig::default(), |c| {
                c.upstream = format!("http://{}", upstream.addr);
                c.max_body_bytes = 1024;
                c.upstream_timeout_ms = 300;
            });
            upstream.send(&chunk_event("Echo: "));
            let conn = open_chat(env.addr(), Some(KEY), "x", true, &[]);
            assert_eq!(conn.status, 200);
            let mut events = conn.events();
            assert_eq!(delta(&events.next_event().unwrap()), "Echo: ");
            if oversized {
                // No blank line ends it: it would only grow.
                upstream.send(&format!("data: {}", "x".repeat(2048)));
            }
            let last = events.next_event().expect("an error event");
            let v: Value = serde_json::from_str(data(&last)).unwrap();
            assert_eq!(v["error"]["code"], "upstream_failed", "{v}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains(needle),
                "{v}"
            );
            assert_eq!(events.next_event(), None, "the stream ended");
            assert_eq!(env.gateway.stats().upstream_errors, 1);
            drop(env);
            upstream.end();
        }
    });
}

#[test]
fn a_request_body_over_max_body_bytes_is_413() {
    watchdog(LIMIT, || {
        let env = Env::start(&no_plugins(), MockConfig::default(), |c| {
            c.max_body_bytes = 1000;
        });
        let big = "x".repeat(1500);
        let answer = chat(env.addr(), Some(KEY), &big);
        openai_error(&answer, 413, "body_too_large");
        assert!(env.mock.requests().is_empty());
        // Under the limit passes.
        let small = chat(env.addr(), Some(KEY), &"y".repeat(300));
        assert_eq!(small.status, 200, "{}", small.text());
        assert_eq!(env.mock.requests().len(), 1);
        // The limit also holds for a buffered answer: a request under it
        // whose echo is over it is an upstream failure, not a cut answer.
        let echoed = chat(env.addr(), Some(KEY), &"z".repeat(800));
        let e = openai_error(&echoed, 502, "upstream_failed");
        assert_eq!(e["type"], "upstream_error");
        assert_eq!(env.mock.requests().len(), 2);
    });
}

#[test]
fn unknown_routes_are_404_and_the_model_list_passes_authenticated() {
    watchdog(LIMIT, || {
        let env = Env::start(&no_plugins(), MockConfig::default(), |_| {});
        let addr = env.addr();
        for (method, path) in [
            ("GET", "/nope"),
            ("POST", "/v2/chat/completions"),
            ("PUT", "/v1/chat/completions"),
        ] {
            let a = Conn::open(addr, method, path, &[("authorization", &auth(KEY))], b"").finish();
            openai_error(&a, 404, "not_found");
        }
        // An upstream's own error passes as it is.
        let bad = Conn::open(
            addr,
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth(KEY)),
                ("content-type", "application/json"),
            ],
            br#"{"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .finish();
        assert_eq!(bad.status, 400, "{}", bad.text());
        assert_eq!(bad.json()["error"]["param"], "model", "{}", bad.text());
        assert_eq!(bad.json()["error"]["type"], "invalid_request_error");

        let health = Conn::open(addr, "GET", "/healthz", &[], b"").finish();
        assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

        let refused = Conn::open(addr, "GET", "/v1/models", &[], b"").finish();
        openai_error(&refused, 401, "invalid_api_key");
        assert_eq!(env.mock.stats().models, 0);

        let models = Conn::open(
            addr,
            "GET",
            "/v1/models",
            &[("authorization", &auth(KEY))],
            b"",
        )
        .finish();
        assert_eq!(models.status, 200, "{}", models.text());
        let ids: Vec<String> = models.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, mock::MODELS);
        assert!(models.header("x-odock-request-id").is_some());
        let seen = env.last_upstream();
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("GET", "/v1/models")
        );
        assert_eq!(
            seen.headers.get("authorization").map(String::as_str),
            Some(auth(UPSTREAM_KEY).as_str())
        );
        assert_eq!(env.mock.stats().models, 1);
    });
}

// ---------------------------------------------------------------------------
// 8. The complete gate

/// An auditor on the complete gate for every exchange, and a blocker at the
/// request gate for the `vk-denycorp` key.
fn audited_and_denied(auditor: &PluginSource, blocker: &PluginSource) -> PolicyFile {
    policy(
        1,
        &[auditor, blocker],
        vec![
            bind(auditor, COMPLETE, "evidence:audit.saw"),
            scoped(
                bind(blocker, REQUEST, "block:403:this key is suspended"),
                ScopeEntry {
                    virtual_key: Some("vk-denycorp".into()),
                    ..ScopeEntry::default()
                },
            ),
        ],
    )
}

#[test]
fn the_complete_gate_runs_after_each_exchange_blocked_ones_included() {
    let (auditor, blocker) = (probe("gw-auditor"), probe("gw-vk-blocker"));
    watchdog(LIMIT, move || {
        let env = Env::start(
            &audited_and_denied(&auditor, &blocker),
            MockConfig::default(),
            |_| {},
        );
        let rt = env.gateway.runtime();
        let completes = || rt.counter("gw-auditor", Gate::Complete, Counter::Calls);
        assert_eq!(completes(), 0);

        let mut ids = Vec::new();
        let ok = chat(env.addr(), Some(KEY), "hello");
        assert_eq!(ok.status, 200, "{}", ok.text());
        ids.push(ok.header("x-odock-request-id").unwrap().to_owned());
        eventually("the complete gate after a whole answer", || {
            completes() >= 1
        });

        let blocked = chat(env.addr(), Some(DENY_KEY), "hello");
        openai_error(&blocked, 403, "blocked");
        ids.push(blocked.header("x-odock-request-id").unwrap().to_owned());
        eventually("the complete gate after a blocked exchange", || {
            completes() >= 2
        });

        let conn = open_chat(env.addr(), Some(KEY), "one two", true, &[]);
        ids.push(conn.header("x-odock-request-id").unwrap().to_owned());
        let streamed = conn.events().rest();
        assert!(is_done(streamed.last().unwrap()));
        eventually("the complete gate after a stream", || completes() >= 3);

        // Once per exchange, and only on its gate.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(completes(), 3);
        assert_eq!(rt.counter("gw-auditor", Gate::Request, Counter::Calls), 0);
        assert_eq!(rt.counter("gw-auditor", Gate::Response, Counter::Calls), 0);
        assert_eq!(env.gateway.stats().completes_dropped, 0);
        // The auditor's own record, once per exchange, under its id.
        let mut saw: Vec<String> = env
            .evidence()
            .into_iter()
            .filter(|e| e.plugin == "gw-auditor" && e.payload_kind == "audit.saw")
            .map(|e| e.request_id)
            .collect();
        saw.sort();
        ids.sort();
        assert_eq!(saw, ids);
    });
}

/// Exchanges one after another on one kept-alive connection: a block, a
/// whole answer, a stream; each answered in full and each completed.
#[test]
fn exchanges_on_a_kept_alive_connection_each_end_and_complete() {
    let (auditor, blocker) = (probe("gw-ka-auditor"), probe("gw-ka-blocker"));
    watchdog(LIMIT, move || {
        let env = Env::start(
            &audited_and_denied(&auditor, &blocker),
            MockConfig::default(),
            |_| {},
        );
        let stream = TcpStream::connect(env.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut conn = BufReader::new(stream);
        let path = "/v1/chat/completions";
        let mut ids = std::collections::BTreeSet::new();
        for round in 0..2 {
            for (key, stream, want) in [(DENY_KEY, false, 403), (KEY, false, 200), (KEY, true, 200)]
            {
                let bearer = auth(key);
                let headers = [
                    ("authorization", bearer.as_str()),
                    ("content-type", "application/json"),
                ];
                let body = chat_body("one two", stream);
                write_request(&mut conn, "POST", path, &headers, body.as_bytes());
                let (answer, c) = Conn::read_head(conn, "POST", path).finish_keep();
                conn = c;
                assert_eq!(answer.status, want, "round {round}: {}", answer.text());
                assert_ne!(answer.header("connection"), Some("close"));
                ids.insert(answer.header("x-odock-request-id").unwrap().to_owned());
                if want == 403 {
                    openai_error(&answer, 403, "blocked");
                } else if stream {
                    let mut split = SseSplitter::default();
                    split.push(&answer.body);
                    let events: Vec<String> = std::iter::from_fn(|| split.next_event())
                        .map(|e| String::from_utf8(e.to_vec()).unwrap())
                        .collect();
                    assert!(is_done(events.last().unwrap()), "{events:?}");
                } else {
                    assert_eq!(
                        answer.json()["choices"][0]["message"]["content"],
                        "Echo: one two"
                    );
                }
            }
        }
        assert_eq!(ids.len(), 6, "{ids:?}");
        let rt = env.gateway.runtime();
        eventually("six exchanges completed", || {
            rt.counter("gw-ka-auditor", Gate::Complete, Counter::Calls) >= 6
        });
        assert_eq!(env.mock.stats().chat_completions, 4);
    });
}

#[test]
fn a_caller_that_goes_away_mid_stream_still_completes_its_exchange() {
    let auditor = probe("gw-gone-auditor");
    watchdog(LIMIT, move || {
        let p = policy(
            1,
            &[&auditor],
            vec![bind(&auditor, COMPLETE, "evidence:audit.saw")],
        );
        let mut upstream = Scripted::start();
        let env = Env::start(&p, MockConfig::default(), |c| {
            c.upstream = format!("http://{}", upstream.addr);
        });
        let rt = env.gateway.runtime();
        let completes = || rt.counter("gw-gone-auditor", Gate::Complete, Counter::Calls);
        upstream.send(&chunk_event("Echo: "));
        {
            let conn = open_chat(env.addr(), Some(KEY), "x", true, &[]);
            let mut events = conn.events();
            assert_eq!(delta(&events.next_event().unwrap()), "Echo: ");
        }
        // The upstream goes on (and never ends); the gateway finds out the
        // caller is gone when it writes, ends the exchange and hangs up.
        eventually("the complete gate after the caller went away", || {
            upstream.try_send(&chunk_event("more "));
            completes() >= 1
        });
        let head = upstream.end();
        assert!(head.starts_with("POST "), "{head}");
        assert_eq!(completes(), 1);
    });
}

// ---------------------------------------------------------------------------
// 9. A policy swap while the gateway runs

#[test]
fn a_new_policy_file_changes_the_chain_of_the_next_request() {
    let (tagger, blocker) = (probe("gw-tagger"), probe("gw-swap-blocker"));
    watchdog(LIMIT, move || {
        let v1 = policy(
            1,
            &[&tagger],
            vec![bind(&tagger, REQUEST, "header:x-policy=v1")],
        );
        let env = Env::start(&v1, MockConfig::default(), |_| {});
        let tag = |env: &Env| {
            let a = chat(env.addr(), Some(KEY), "hi");
            assert_eq!(a.status, 200, "{}", a.text());
            env.last_upstream().headers.get("x-policy").cloned()
        };
        assert_eq!(tag(&env).as_deref(), Some("v1"));

        env.install(&policy(
            2,
            &[&tagger],
            vec![bind(&tagger, REQUEST, "header:x-policy=v2")],
        ));
        assert_eq!(tag(&env).as_deref(), Some("v2"));

        env.install(&policy(
            3,
            &[&tagger, &blocker],
            vec![
                bind(&tagger, on(Some(1), None, None), "header:x-policy=v3"),
                bind(&blocker, on(Some(2), None, None), "block:403:closed for v3"),
            ],
        ));
        let blocked = chat(env.addr(), Some(KEY), "hi");
        let e = openai_error(&blocked, 403, "blocked");
        assert_eq!(e["message"], "closed for v3");
        assert_eq!(
            blocked.header("x-odock-blocked-by"),
            Some("gw-swap-blocker")
        );

        env.install(&policy(4, &[], vec![]));
        assert_eq!(tag(&env), None);
        assert_eq!(env.gateway.runtime().policy_version(), 4);
        assert_eq!(env.gateway.control_link().status().last_error, None);
    });
}

// ---------------------------------------------------------------------------
// 10. Shutdown

#[test]
fn shutdown_lets_a_stream_in_flight_finish() {
    let auditor = probe("gw-shutdown-auditor");
    watchdog(LIMIT, move || {
        let mut upstream = Scripted::start();
        let p = policy(
            1,
            &[&auditor],
            vec![bind(&auditor, COMPLETE, "evidence:audit.saw")],
        );
        let env = Env::start(&p, MockConfig::default(), |c| {
            c.upstream = format!("http://{}", upstream.addr);
        });
        let Env { gateway, mock, run } = env;
        let addr = gateway.addr();
        upstream.send(&chunk_event("Echo: "));
        let conn = open_chat(addr, Some(KEY), "one two", true, &[]);
        assert_eq!(conn.status, 200);
        let id = conn.header("x-odock-request-id").unwrap().to_owned();
        let mut events = conn.events();
        assert_eq!(delta(&events.next_event().unwrap()), "Echo: ");

        let stopping = std::thread::spawn(move || gateway.shutdown());
        // The gateway stops accepting while the stream is still open.
        eventually("the gateway stops accepting", || {
            TcpStream::connect(addr).is_err()
        });

        // (The upstream may already be gone if the gateway cut the
        // exchange; the caller's read says so.)
        upstream.try_send(&chunk_event("one "));
        upstream.try_send(&chunk_event("two"));
        upstream.try_send(DONE);
        upstream.end();
        let rest = events.rest();
        assert!(!rest.is_empty(), "the stream ended at shutdown");
        let texts: Vec<String> = rest[..rest.len() - 1].iter().map(|e| delta(e)).collect();
        assert_eq!(texts, ["one ", "two"], "{rest:?}");
        assert!(is_done(rest.last().unwrap()), "{rest:?}");
        stopping.join().expect("shutdown");
        // The complete pool ran what was submitted before it stopped; the
        // evidence stays in the run directory for control.
        let saw: Vec<String> = evidence_in(run.path())
            .into_iter()
            .filter(|e| e.plugin == "gw-shutdown-auditor" && e.payload_kind == "audit.saw")
            .map(|e| e.request_id)
            .collect();
        assert_eq!(saw, [id]);
        drop((mock, run));
    });
}
