//! One gateway thread: its listener, its runner, and the exchange.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use odock_dataplane::index::ApiKind;
use odock_dataplane::plugin::IntegrationAnswer;
use odock_dataplane::runtime::complete::CompleteSubmitter;
use odock_dataplane::runtime::{
    ChunkFrame, GateRunner, Outcome, RequestFrame, ResponseFrame, Verdict,
};
use odock_plugin_abi::AnswerOutcome;
use odock_plugin_abi::view::Header;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use super::body::GateBody;
use super::config::{HttpUrl, VirtualKey};
use super::sse::{SseSplitter, is_done};
use super::{Counters, Shared};

/// Everything a thread starts with.
pub(crate) struct WorkerSetup {
    pub index: usize,
    pub core: Option<usize>,
    pub shared: Arc<Shared>,
    pub runner: GateRunner,
    pub complete: CompleteSubmitter,
    pub listener: std::net::TcpListener,
    pub stop: watch::Receiver<bool>,
}

/// A listener with `SO_REUSEPORT`, so every thread accepts on the same
/// address and the kernel spreads connections over them.
pub(crate) fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_socket_reuseport(&fd, true)?;
    sockopt::set_tcp_nodelay(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, 1024)?;
    Ok(std::net::TcpListener::from(fd))
}

/// How long open exchanges get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);
/// How often a thread expires parked frames and runs due follow-ups.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// The most of a streamed answer kept for the complete gate.
const COMPLETE_BODY_CAP: usize = 1 << 20;

/// A thread's state, shared by its connections (one thread: `Rc`).
struct Worker {
    index: usize,
    shared: Arc<Shared>,
    runner: RefCell<GateRunner>,
    complete: CompleteSubmitter,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: HttpUrl,
    mcp: HttpUrl,
    next_id: Cell<u64>,
}

pub(crate) fn run(setup: WorkerSetup) {
    if let Some(core) = setup.core {
        let mut set = rustix::thread::CpuSet::new();
        set.set(core);
        // Pinning is best effort: a container may forbid the core.
        let _ = rustix::thread::sched_setaffinity(None, &set);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let local = tokio::task::LocalSet::new();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let worker = Rc::new(Worker {
        index: setup.index,
        upstream: setup.shared.config.upstream_url(),
        mcp: setup.shared.config.mcp_url(),
        shared: setup.shared,
        runner: RefCell::new(setup.runner),
        complete: setup.complete,
        client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector),
        next_id: Cell::new(0),
    });
    let mut stop = setup.stop;
    local.block_on(&rt, async move {
        let listener = TcpListener::from_std(setup.listener).expect("a non-blocking listener");
        let open = Rc::new(Cell::new(0usize));
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        let conn_stop = stop.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    open.set(open.get() + 1);
                    let open = Rc::clone(&open);
                    let w = Rc::clone(&worker);
                    let mut stop = conn_stop.clone();
                    tokio::task::spawn_local(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let w = Rc::clone(&w);
                            async move { Ok::<_, Infallible>(handle(&w, req).await) }
                        });
                        let conn = hyper::server::conn::http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service);
                        let mut conn = std::pin::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            _ = stop.wait_for(|s| *s) => {
                                conn.as_mut().graceful_shutdown();
                                let _ = tokio::time::timeout(DRAIN, conn).await;
                            }
                        }
                        open.set(open.get() - 1);
                    });
                }
                _ = tick.tick() => housekeeping(&worker),
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        drop(listener);
        let deadline = Instant::now() + DRAIN;
        while open.get() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

fn housekeeping(w: &Worker) {
    let mut runner = w.runner.borrow_mut();
    let now = Instant::now();
    runner.expire_parked(now);
    runner.run_followups(now, 16);
}

/// Which API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// An OpenAI-compatible call, gated.
    Llm,
    /// An MCP JSON-RPC message, gated.
    Mcp,
    /// Proxied as is after authentication (model list, MCP session GET and
    /// DELETE).
    Plain { mcp: bool },
}

async fn handle(w: &Rc<Worker>, req: Request<Incoming>) -> Response<GateBody> {
    if req.method() == Method::GET && req.uri().path() == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    // Unique within the process (threads interleave: base + seq × threads +
    // index); the base is the start time in ms × 2^20, so a restart's ids
    // start above the last run's unless it served over a million requests
    // a millisecond. Every answer carries it, refusals included.
    let seq = w.next_id.get() + 1;
    w.next_id.set(seq);
    let request_id = w.shared.id_base + seq * w.shared.overhead.len() as u64 + w.index as u64;
    let mut response = route(w, req, request_id).await;
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        response.headers_mut().insert("x-odock-request-id", v);
    }
    response
}

async fn route(w: &Rc<Worker>, req: Request<Incoming>, request_id: u64) -> Response<GateBody> {
    let path = req.uri().path().to_owned();
    let route = match (req.method(), path.as_str()) {
        (&Method::POST, "/mcp") => Route::Mcp,
        (&Method::GET | &Method::DELETE, "/mcp") => Route::Plain { mcp: true },
        (&Method::POST, p) if p.starts_with("/v1/") => Route::Llm,
        (&Method::GET, p) if p.starts_with("/v1/") => Route::Plain { mcp: false },
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found",
                &format!("no route for {} {path}", req.method()),
                None,
            );
        }
    };
    Counters::bump(&w.shared.counters.requests);
    let Some(key) = authenticate(&w.shared.config.keys, req.headers()) else {
        Counters::bump(&w.shared.counters.unauthorized);
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "a valid virtual API key is required (Authorization: Bearer <key>)",
            None,
        );
    };
    match route {
        Route::Plain { mcp } => plain(w, req, mcp).await,
        Route::Llm | Route::Mcp => exchange(w, req, key, route, request_id).await,
    }
}

fn authenticate<'k>(keys: &'k [VirtualKey], headers: &HeaderMap) -> Option<&'k VirtualKey> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let secret = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    // Compare every key in full, so timing does not tell how much matched.
    let mut found = None;
    for k in keys {
        if constant_time_eq(k.key.as_bytes(), secret.as_bytes()) {
            found = Some(k);
        }
    }
    found
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Headers that describe one hop, never forwarded either way (RFC 9110
/// §7.6.1), plus the ones the gateway sets itself.
fn hop_by_hop(name: &[u8]) -> bool {
    const SKIP: [&[u8]; 11] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"host",
        b"content-length",
        b"authorization",
        b"proxy-authorization",
    ];
    SKIP.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// A header list as owned bytes: what a gate left, or what hyper read.
type Owned = Vec<(Bytes, Bytes)>;

fn owned_headers(map: &HeaderMap) -> Owned {
    // Headers the `Connection` header names are this hop's too.
    let named = |name: &str| {
        map.get_all(hyper::header::CONNECTION).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(name))
        })
    };
    map.iter()
        .filter(|(n, _)| !hop_by_hop(n.as_str().as_bytes()) && !named(n.as_str()))
        .map(|(n, v)| {
            (
                Bytes::copy_from_slice(n.as_str().as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            )
        })
        .collect()
}

fn views(headers: &Owned) -> Vec<Header<'_>> {
    headers.iter().map(|(n, v)| Header::new(n, v)).collect()
}

fn header_map(headers: &Owned) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (n, v) in headers {
        if hop_by_hop(n) {
            continue;
        }
        // A plugin's header that is not valid HTTP is dropped, not sent.
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
            map.append(n, v);
        }
    }
    map
}

/// A gate's verdict and frame, copied out of the runner's arena so the
/// runner can serve other exchanges while this one waits.
enum Decision {
    Continue {
        /// The headers as the chain left them (`None`: unchanged).
        headers: Option<Owned>,
        /// The body as the chain left it (`None`: unchanged).
        body: Option<Bytes>,
    },
    Block {
        status: u16,
        reason: String,
        plugin: String,
    },
    Pause {
        integration: String,
        payload: Bytes,
        timeout: Duration,
        token: u64,
    },
}

impl Decision {
    fn of(outcome: &Outcome<'_>) -> Decision {
        match outcome.verdict {
            Verdict::Continue => {
                let changed = outcome.changed();
                Decision::Continue {
                    headers: changed.then(|| {
                        outcome
                            .headers()
                            .map(|(n, v)| (Bytes::copy_from_slice(n), Bytes::copy_from_slice(v)))
                            .collect()
                    }),
                    body: outcome
                        .body_changed()
                        .then(|| Bytes::copy_from_slice(outcome.body())),
                }
            }
            Verdict::Block {
                status,
                reason,
                plugin,
            } => Decision::Block {
                status,
                reason: reason.to_owned(),
                plugin: plugin.to_owned(),
            },
            Verdict::Pause {
                integration,
                payload,
                timeout,
                token,
                ..
            } => Decision::Pause {
                integration: integration.to_owned(),
                payload: Bytes::copy_from_slice(payload),
                timeout,
                token,
            },
        }
    }
}

/// The identity and target of an exchange, owned.
struct Identity<'k> {
    key: &'k VirtualKey,
    api: ApiKind,
    mcp_server: Option<&'k str>,
}

fn frame<'a>(
    id: &'a Identity<'_>,
    request_id: u64,
    headers: &'a [Header<'a>],
    body: &'a [u8],
) -> RequestFrame<'a> {
    RequestFrame {
        request_id,
        tenant: Some(&id.key.tenant),
        virtual_key: Some(&id.key.id),
        environment: id.key.environment.as_deref(),
        model: None,
        mcp_server: id.mcp_server,
        mcp_tool: None,
        api: id.api,
        headers,
        body,
    }
}

async fn exchange(
    w: &Rc<Worker>,
    req: Request<Incoming>,
    key: &VirtualKey,
    route: Route,
    request_id: u64,
) -> Response<GateBody> {
    let mcp = route == Route::Mcp;
    let (parts, incoming) = req.into_parts();
    let limit = w.shared.config.max_body_bytes;
    let body = match Limited::new(incoming, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_large {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    "body_too_large",
                    &format!("the request body is larger than {limit} bytes"),
                    None,
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "body_unreadable",
                    "the request body could not be read",
                    None,
                )
            };
        }
    };
    let in_headers = owned_headers(&parts.headers);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let id = Identity {
        key,
        api: ApiKind::from_path(parts.uri.path().as_bytes()),
        mcp_server: mcp.then_some(w.shared.config.mcp_server.as_str()),
    };

    // The request gate, with its pauses.
    let mut overhead = Duration::ZERO;
    let header_views = views(&in_headers);
    let mut decision = {
        let started = Instant::now();
        let mut runner = w.runner.borrow_mut();
        let f = frame(&id, request_id, &header_views, &body);
        let d = Decision::of(&runner.request(&f));
        overhead += started.elapsed();
        d
    };
    while let Decision::Pause {
        integration,
        payload,
        timeout,
        token,
    } = &decision
    {
        Counters::bump(&w.shared.counters.paused);
        let (outcome, answer) = call_integration(w, integration, payload.clone(), *timeout).await;
        let started = Instant::now();
        let mut runner = w.runner.borrow_mut();
        let f = frame(&id, request_id, &header_views, &body);
        let a = IntegrationAnswer {
            token: *token,
            outcome,
            body: &answer,
        };
        decision = match runner.resume(&f, &a) {
            Ok(o) => Decision::of(&o),
            Err(e) => {
                drop(runner);
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "odock_error",
                    "resume_failed",
                    &format!("the paused request could not resume: {e}"),
                    None,
                );
            }
        };
        overhead += started.elapsed();
    }
    let (up_headers, up_body) = match decision {
        Decision::Block {
            status,
            reason,
            plugin,
        } => {
            record_overhead(w, overhead);
            Counters::bump(&w.shared.counters.blocked);
            let (resp, sent) = blocked(mcp, &body, status, &reason, &plugin);
            // The complete gate sees blocked exchanges too (audit wants
            // them): the request as the gate left it, the answer given.
            let ex = Exchange {
                w: Rc::clone(w),
                key: key.clone(),
                api: id.api,
                mcp,
                request_id,
                up_headers: in_headers,
                up_body: body,
                status: resp.status().as_u16(),
                resp_headers: json_headers(),
            };
            return resp.map(|b| {
                b.on_end(Box::new(move || {
                    let headers = ex.resp_headers.clone();
                    ex.complete(&headers, &sent);
                }))
            });
        }
        Decision::Continue { headers, body: b } => {
            (headers.unwrap_or(in_headers), b.unwrap_or(body))
        }
        Decision::Pause { .. } => unreachable!("the loop above resolves pauses"),
    };

    // Upstream.
    let target = if mcp { &w.mcp } else { &w.upstream };
    let uri = if mcp {
        let query = parts.uri.query().map_or(String::new(), |q| format!("?{q}"));
        target.join(&query)
    } else {
        target.join(&path_and_query)
    };
    let mut up = Request::builder().method(parts.method.clone()).uri(&uri);
    let mut map = header_map(&up_headers);
    // The gates read and rewrite bodies: the upstream must answer in the
    // clear, whatever encodings the caller accepts.
    map.remove(hyper::header::ACCEPT_ENCODING);
    if let Some(k) = &w.shared.config.upstream_api_key
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {k}"))
    {
        map.insert(hyper::header::AUTHORIZATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        map.insert("x-odock-request-id", v);
    }
    if let Some(h) = up.headers_mut() {
        *h = map;
    }
    let up = up
        .body(Full::new(up_body.clone()))
        .expect("a request built from checked parts");
    let timeout = w.shared.config.upstream_timeout();
    let answer = match tokio::time::timeout(timeout, w.client.request(up)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            record_overhead(w, overhead);
            return upstream_failed(w, &format!("the upstream did not answer: {e}"));
        }
        Err(_) => {
            record_overhead(w, overhead);
            return upstream_failed(
                w,
                &format!("the upstream did not answer within {timeout:?}"),
            );
        }
    };
    let (rparts, rbody) = answer.into_parts();
    let status = rparts.status.as_u16();
    let resp_headers = owned_headers(&rparts.headers);
    let streamed = rparts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let ex = Exchange {
        w: Rc::clone(w),
        key: key.clone(),
        api: id.api,
        mcp,
        request_id,
        up_headers,
        up_body,
        status,
        resp_headers,
    };
    if streamed {
        Counters::bump(&w.shared.counters.streamed);
        stream(ex, rbody, overhead).await
    } else {
        whole(ex, rbody, overhead, timeout).await
    }
}

/// An exchange's header lists as views.
struct Views<'e> {
    up: Vec<Header<'e>>,
    resp: Vec<Header<'e>>,
}

/// What an exchange carries from the request gate to the response and
/// complete gates: the request as it went upstream, and the answer's head.
struct Exchange {
    w: Rc<Worker>,
    key: VirtualKey,
    api: ApiKind,
    mcp: bool,
    request_id: u64,
    up_headers: Owned,
    up_body: Bytes,
    status: u16,
    resp_headers: Owned,
}

impl Exchange {
    fn identity(&self) -> Identity<'_> {
        Identity {
            key: &self.key,
            api: self.api,
            mcp_server: self.mcp.then_some(self.w.shared.config.mcp_server.as_str()),
        }
    }

    /// The header views of the request as it went upstream and of the
    /// answer, built once for every gate call of the exchange.
    fn views(&self) -> Views<'_> {
        Views {
            up: views(&self.up_headers),
            resp: views(&self.resp_headers),
        }
    }

    /// Runs a response-gate call over the request as it went upstream and
    /// the answer's headers, adding its time to `overhead`.
    fn response_gate(
        &self,
        views: &Views<'_>,
        overhead: &mut Duration,
        call: impl FnOnce(&mut GateRunner, &RequestFrame<'_>, &[Header<'_>]) -> Decision,
    ) -> Decision {
        let started = Instant::now();
        let mut runner = self.w.runner.borrow_mut();
        let id = self.identity();
        let req = frame(&id, self.request_id, &views.up, &self.up_body);
        let decision = call(&mut runner, &req, &views.resp);
        *overhead += started.elapsed();
        decision
    }

    /// Hands the finished exchange to the complete pool (never blocks).
    fn complete(&self, headers: &Owned, body: &[u8]) {
        let id = self.identity();
        let up_views = views(&self.up_headers);
        let req = frame(&id, self.request_id, &up_views, &self.up_body);
        let resp_views = views(headers);
        let resp = ResponseFrame {
            status: self.status,
            headers: &resp_views,
            body,
        };
        if self.w.complete.submit(&req, &resp).is_err() {
            Counters::bump(&self.w.shared.counters.completes_dropped);
        }
    }
}

async fn whole(
    ex: Exchange,
    rbody: Incoming,
    mut overhead: Duration,
    timeout: Duration,
) -> Response<GateBody> {
    let w = Rc::clone(&ex.w);
    let limit = w.shared.config.max_body_bytes;
    let body = match tokio::time::timeout(timeout, Limited::new(rbody, limit).collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            record_overhead(&w, overhead);
            return upstream_failed(&w, &format!("the upstream's answer could not be read: {e}"));
        }
        Err(_) => {
            record_overhead(&w, overhead);
            return upstream_failed(&w, "the upstream's answer did not end in time");
        }
    };
    let decision = ex.response_gate(&ex.views(), &mut overhead, |runner, req, headers| {
        let resp = ResponseFrame {
            status: ex.status,
            headers,
            body: &body,
        };
        Decision::of(&runner.response(req, &resp))
    });
    record_overhead(&w, overhead);
    match decision {
        Decision::Continue { headers, body: b } => {
            let headers = headers.unwrap_or_else(|| ex.resp_headers.clone());
            let body = b.unwrap_or(body);
            let mut resp = Response::new(GateBody::full(body.clone()));
            *resp.status_mut() = StatusCode::from_u16(ex.status).unwrap_or(StatusCode::BAD_GATEWAY);
            *resp.headers_mut() = header_map(&headers);
            resp.map(|b| b.on_end(Box::new(move || ex.complete(&headers, &body))))
        }
        Decision::Block {
            status,
            reason,
            plugin,
        } => {
            Counters::bump(&w.shared.counters.blocked);
            let (resp, sent) = blocked(ex.mcp, &ex.up_body, status, &reason, &plugin);
            let headers = json_headers();
            resp.map(|b| b.on_end(Box::new(move || ex.complete(&headers, &sent))))
        }
        Decision::Pause { .. } => {
            // The runner only pauses at the request gate.
            upstream_failed(&w, "a response-gate plugin paused, which is not allowed")
        }
    }
}

/// Streams the upstream's events through the response gate, one at a time,
/// to the caller. The response head waits for the first event's gate (a
/// plugin may set headers there).
async fn stream(ex: Exchange, mut rbody: Incoming, overhead: Duration) -> Response<GateBody> {
    let w = Rc::clone(&ex.w);
    let status = StatusCode::from_u16(ex.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let (head_tx, head_rx) = oneshot::channel::<Owned>();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let pump = async move {
        let w = Rc::clone(&ex.w);
        let mut overhead = overhead;
        let views = ex.views();
        let mut state = {
            let mut runner = w.runner.borrow_mut();
            let id = ex.identity();
            let req = frame(&id, ex.request_id, &views.up, &ex.up_body);
            runner.stream_state(&req, w.shared.config.max_body_bytes)
        };
        let mut head_tx = Some(head_tx);
        let mut split = SseSplitter::default();
        let mut sent = BytesMut::new();
        let mut index = 0u64;
        let mut ended = false;
        let mut upstream_done = false;
        let (cap, idle) = (
            w.shared.config.max_body_bytes,
            w.shared.config.upstream_timeout(),
        );
        while !ended {
            // The next event: from the buffer, else from the upstream.
            let (event, last) = if let Some(e) = split.next_event() {
                let last = is_done(&e);
                (e, last)
            } else if upstream_done {
                match split.finish() {
                    Some(e) => (e, true),
                    None => (Bytes::new(), true),
                }
            } else {
                // Bounded: an event may not outgrow `max_body_bytes`, nor the
                // upstream stay silent past its timeout.
                let failure = match tokio::time::timeout(idle, rbody.frame()).await {
                    Ok(Some(Ok(f))) => {
                        if let Ok(data) = f.into_data() {
                            split.push(&data);
                        }
                        if split.pending() <= cap {
                            continue;
                        }
                        format!("the upstream sent an event of more than {cap} bytes")
                    }
                    Ok(Some(Err(_)) | None) => {
                        upstream_done = true;
                        continue;
                    }
                    Err(_) => format!("the upstream sent nothing for {idle:?}"),
                };
                Counters::bump(&w.shared.counters.upstream_errors);
                if let Some(h) = head_tx.take() {
                    let _ = h.send(ex.resp_headers.clone());
                }
                let out = error_event("upstream_error", "upstream_failed", &failure);
                sent.extend_from_slice(&out);
                let _ = tx.send(out).await;
                break;
            };
            let decision = ex.response_gate(&views, &mut overhead, |runner, req, headers| {
                let chunk = ChunkFrame {
                    status: ex.status,
                    headers,
                    chunk: &event,
                    index,
                    last,
                };
                Decision::of(&runner.response_chunk(req, &chunk, &mut state))
            });
            index += 1;
            let out = match decision {
                Decision::Continue { headers, body } => {
                    if let Some(h) = head_tx.take() {
                        let _ = h.send(headers.unwrap_or_else(|| ex.resp_headers.clone()));
                    }
                    body.unwrap_or(event)
                }
                Decision::Block {
                    status,
                    reason,
                    plugin,
                } => {
                    Counters::bump(&w.shared.counters.blocked);
                    ended = true;
                    if let Some(h) = head_tx.take() {
                        let _ = h.send(ex.resp_headers.clone());
                    }
                    // For MCP, the JSON-RPC error for the call's id: the
                    // client matches answers by id.
                    let (_, event) = block_body(ex.mcp, &ex.up_body, status, &reason, &plugin);
                    Bytes::from(format!("data: {event}\n\n"))
                }
                Decision::Pause { .. } => {
                    ended = true;
                    error_event(
                        "odock_error",
                        "gate_failed",
                        "the gateway could not gate this stream",
                    )
                }
            };
            ended |= last;
            if sent.len() + out.len() <= COMPLETE_BODY_CAP {
                sent.extend_from_slice(&out);
            }
            if !out.is_empty() && tx.send(out).await.is_err() {
                break; // the caller went away
            }
        }
        drop(tx);
        record_overhead(&w, overhead);
        let headers = ex.resp_headers.clone();
        ex.complete(&headers, &sent);
    };
    tokio::task::spawn_local(pump);
    let Ok(headers) = head_rx.await else {
        return upstream_failed(&w, "the upstream's stream ended before it began");
    };
    let mut resp = Response::new(GateBody::stream(rx));
    *resp.status_mut() = status;
    *resp.headers_mut() = header_map(&headers);
    resp
}

/// A last SSE event carrying an OpenAI-style error.
fn error_event(kind: &str, code: &str, message: &str) -> Bytes {
    let error = json!({"error": {"message": message, "type": kind, "code": code, "param": null}});
    Bytes::from(format!("data: {error}\n\n"))
}

/// Calls a governed integration: HTTP POST of the plugin's payload to the
/// URL the gateway's config names for it.
async fn call_integration(
    w: &Worker,
    name: &str,
    payload: Bytes,
    timeout: Duration,
) -> (AnswerOutcome, Bytes) {
    let Some(url) = w.shared.config.integrations.get(name) else {
        let msg = format!("the gateway has no integration `{name}` configured");
        return (AnswerOutcome::Failed, Bytes::from(msg));
    };
    let req = Request::post(url.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(payload));
    let Ok(req) = req else {
        return (
            AnswerOutcome::Failed,
            Bytes::from_static(b"bad integration URL"),
        );
    };
    let call = async {
        let answer = w.client.request(req).await.map_err(|e| e.to_string())?;
        let ok = answer.status().is_success();
        let body = Limited::new(answer.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((ok, body))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok((true, body))) => (AnswerOutcome::Ok, body),
        Ok(Ok((false, body))) => (AnswerOutcome::Failed, body),
        Ok(Err(e)) => (AnswerOutcome::Failed, Bytes::from(e)),
        Err(_) => (AnswerOutcome::Timeout, Bytes::new()),
    }
}

/// Proxies a request that no gate covers (after authentication).
async fn plain(w: &Rc<Worker>, req: Request<Incoming>, mcp: bool) -> Response<GateBody> {
    let (parts, _) = req.into_parts();
    let uri = if mcp {
        w.mcp.join("")
    } else {
        w.upstream
            .join(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
    };
    let mut map = header_map(&owned_headers(&parts.headers));
    if let Some(k) = &w.shared.config.upstream_api_key
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {k}"))
    {
        map.insert(hyper::header::AUTHORIZATION, v);
    }
    let mut up = Request::builder().method(parts.method).uri(uri);
    if let Some(h) = up.headers_mut() {
        *h = map;
    }
    let Ok(up) = up.body(Full::new(Bytes::new())) else {
        return upstream_failed(w, "the request could not be forwarded");
    };
    let timeout = w.shared.config.upstream_timeout();
    let limit = w.shared.config.max_body_bytes;
    let answer = match tokio::time::timeout(timeout, w.client.request(up)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return upstream_failed(w, &format!("the upstream did not answer: {e}")),
        Err(_) => return upstream_failed(w, "the upstream did not answer in time"),
    };
    let (rparts, mut rbody) = answer.into_parts();
    let streamed = rparts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = if streamed {
        // An MCP session's server-to-client stream: it may never end, so
        // pass it on as it comes instead of collecting it.
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        tokio::task::spawn_local(async move {
            while let Some(Ok(f)) = rbody.frame().await {
                if let Ok(data) = f.into_data()
                    && tx.send(data).await.is_err()
                {
                    break; // the caller went away
                }
            }
        });
        GateBody::stream(rx)
    } else {
        match tokio::time::timeout(timeout, Limited::new(rbody, limit).collect()).await {
            Ok(Ok(body)) => GateBody::full(body.to_bytes()),
            Ok(Err(_)) => return upstream_failed(w, "the upstream's answer could not be read"),
            Err(_) => return upstream_failed(w, "the upstream's answer did not end in time"),
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = rparts.status;
    *resp.headers_mut() = header_map(&owned_headers(&rparts.headers));
    resp
}

fn record_overhead(w: &Worker, d: Duration) {
    w.shared.overhead[w.index]
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .record(d);
}

fn upstream_failed(w: &Worker, message: &str) -> Response<GateBody> {
    Counters::bump(&w.shared.counters.upstream_errors);
    error(
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        "upstream_failed",
        message,
        None,
    )
}

/// The caller's answer to a block: the plugin's status and its
/// user-visible reason, never the internal detail. Also returns the body,
/// for the complete gate.
fn blocked(
    mcp: bool,
    request: &[u8],
    status: u16,
    reason: &str,
    plugin: &str,
) -> (Response<GateBody>, Bytes) {
    let (http_status, body) = block_body(mcp, request, status, reason, plugin);
    let body = Bytes::from(body.to_string());
    let mut resp = Response::new(GateBody::full(body.clone()));
    *resp.status_mut() = http_status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(plugin) {
        resp.headers_mut().insert("x-odock-blocked-by", v);
    }
    (resp, body)
}

/// What a block tells the caller, and with which HTTP status: an
/// OpenAI-style error, or for MCP a JSON-RPC error for the request's id.
fn block_body(
    mcp: bool,
    request: &[u8],
    status: u16,
    reason: &str,
    plugin: &str,
) -> (StatusCode, serde_json::Value) {
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::FORBIDDEN);
    let (http_status, body) = if mcp {
        // A JSON-RPC error for the message's id, over HTTP 200 so MCP
        // clients read it as the call's error. A message with no id (a
        // notification or a response) or a batch has no call to answer:
        // the transport says to refuse it with an HTTP error status.
        let id = serde_json::from_slice::<serde_json::Value>(request)
            .ok()
            .and_then(|v| v.get("id").cloned());
        let http = if id.is_some() { StatusCode::OK } else { status };
        let id = id.unwrap_or(serde_json::Value::Null);
        let body = json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": -32003,
                "message": reason,
                "data": {"status": status.as_u16(), "plugin": plugin},
            },
        });
        (http, body)
    } else {
        (
            status,
            json!({"error": {"message": reason, "type": "odock_policy", "param": null, "code": "blocked"}}),
        )
    };
    (http_status, body)
}

fn json_headers() -> Owned {
    vec![(
        Bytes::from_static(b"content-type"),
        Bytes::from_static(b"application/json"),
    )]
}

/// An OpenAI-style error answer.
fn error(
    status: StatusCode,
    kind: &str,
    code: &str,
    message: &str,
    param: Option<&str>,
) -> Response<GateBody> {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    let mut r = Response::new(GateBody::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<GateBody> {
    let mut r = Response::new(GateBody::full(body));
    *r.status_mut() = status;
    r
}
