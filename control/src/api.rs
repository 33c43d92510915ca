//! The local socket API: HTTP/1.1 and JSON over a Unix domain socket
//! (`docs/CONTROL_API.md` documents every route).
//!
//! Each connection's peer credentials (SO_PEERCRED) are checked against the
//! allow-list once, at accept: a peer on no list gets 403 for every request;
//! a read-only peer gets 403 for every change. Handlers run on tokio's
//! blocking pool (they read files, load plugins to inspect them, and commit
//! the log), one request at a time per state change (the store is behind a
//! mutex, so changes are serialized and each sees the last).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use odock_dataplane::runtime::control_link::{DATAPLANES_DIR, DataplaneStatus, EVIDENCE_DIR};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::Access;
use crate::drain::{DrainStats, RingHealth, SharedLog, lock};
use crate::log::Storage;
use crate::query::{Filter, run_at};
use crate::sink::SinkStatus;
use crate::state::{ApiError, Binding, Change, PluginRequest, ScopeDef, inspect_plugin};
use crate::store::{Actor, Role, Store};

/// The largest request body taken.
pub const MAX_BODY: usize = 1 << 20;

/// Everything the handlers share.
pub struct Control<S: Storage> {
    /// The durable state.
    pub store: Mutex<Store<S>>,
    /// The evidence log.
    pub log: SharedLog<S>,
    /// The drainer's view of the rings.
    pub rings: Arc<Mutex<Vec<RingHealth>>>,
    /// The drainer's counters.
    pub drain: Arc<DrainStats>,
    /// The sinks' counters.
    pub sinks: Vec<Arc<SinkStatus>>,
    /// Evidence queries' segment counters.
    pub queries: Arc<QueryStats>,
    /// The allow-list.
    pub access: Access,
    /// The run directory.
    pub run_dir: PathBuf,
    /// When control started.
    pub started: Instant,
    /// Requests served.
    pub requests: AtomicU64,
    /// Requests refused by the allow-list or the role.
    pub denied: AtomicU64,
    /// Changes applied.
    pub changes: AtomicU64,
}

/// What evidence queries did to the log's segments.
#[derive(Debug, Default)]
pub struct QueryStats {
    /// Segments read.
    pub segments_read: AtomicU64,
    /// Segments skipped by their summaries.
    pub segments_skipped: AtomicU64,
}

/// The role of a peer, or `None`: not on the allow-list.
pub fn role_of(access: &Access, uid: u32, gid: u32) -> Option<Role> {
    if access.admin_uids.contains(&uid) || access.admin_gids.contains(&gid) {
        Some(Role::Admin)
    } else if access.read_uids.contains(&uid) || access.read_gids.contains(&gid) {
        Some(Role::ReadOnly)
    } else {
        None
    }
}

/// A response body: all at once, or streamed from a channel (follow).
pub enum ApiBody {
    /// The whole body.
    Full(Full<Bytes>),
    /// Chunks as they come.
    Stream(mpsc::Receiver<Bytes>),
}

impl Body for ApiBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ApiBody::Full(f) => Pin::new(f).poll_frame(cx),
            ApiBody::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }
}

enum Reply {
    Json(u16, Value),
    Text(u16, &'static str, String),
    Stream(mpsc::Receiver<Bytes>),
}

fn json_reply(status: u16, v: impl serde::Serialize) -> Reply {
    Reply::Json(status, serde_json::to_value(v).unwrap_or(Value::Null))
}

/// The state store, locked.
fn locked<S: Storage>(ctl: &Control<S>) -> std::sync::MutexGuard<'_, Store<S>> {
    ctl.store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every resource of a kind, as a JSON array.
fn list<T: serde::Serialize>(resources: &BTreeMap<String, T>) -> Reply {
    json_reply(200, resources.values().collect::<Vec<_>>())
}

/// One resource by name, or 404 naming it.
fn one<T: serde::Serialize>(
    resources: &BTreeMap<String, T>,
    name: &str,
    noun: &str,
) -> Result<Reply, ApiError> {
    resources
        .get(name)
        .map(|r| json_reply(200, r))
        .ok_or_else(|| ApiError::new(404, format!("no {noun} {name:?}")))
}

/// A replacing body must name the resource its path names.
fn same_name(in_body: &str, in_path: &str) -> Result<(), ApiError> {
    if in_body == in_path {
        Ok(())
    } else {
        Err(ApiError::field(
            422,
            "name",
            "differs from the name in the path",
        ))
    }
}

fn err_reply(e: ApiError) -> Reply {
    Reply::Json(e.status, serde_json::to_value(&e).unwrap_or(Value::Null))
}

/// Serves one request from `peer` (uid, gid, pid).
pub async fn serve<S: Storage>(
    ctl: Arc<Control<S>>,
    peer: (u32, u32, i32),
    req: Request<Incoming>,
) -> Result<Response<ApiBody>, Infallible> {
    ctl.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(ApiError::new(
            413,
            format!("request body unreadable or over {MAX_BODY} bytes: {e}"),
        )),
    };
    let c = Arc::clone(&ctl);
    let reply = tokio::task::spawn_blocking(move || match body {
        Ok(body) => route(&c, peer, &method, &path, &query, &body),
        Err(e) => err_reply(e),
    })
    .await
    .unwrap_or_else(|e| Reply::Json(500, json!({"error": format!("handler panicked: {e}")})));
    let (status, ctype, body) = match reply {
        Reply::Json(s, v) => {
            let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
            text.push('\n');
            (
                s,
                "application/json",
                ApiBody::Full(Full::new(Bytes::from(text))),
            )
        }
        Reply::Text(s, ctype, t) => (s, ctype, ApiBody::Full(Full::new(Bytes::from(t)))),
        Reply::Stream(rx) => (200, "application/x-ndjson", ApiBody::Stream(rx)),
    };
    if status == 403 {
        ctl.denied.fetch_add(1, Ordering::Relaxed);
    }
    let resp = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", ctype)
        .body(body)
        .unwrap_or_else(|_| Response::new(ApiBody::Full(Full::new(Bytes::new()))));
    Ok(resp)
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let at = byte_offset(body, e.line(), e.column());
        let mut path = json_path_at(body, at);
        // serde names unknown and missing fields in its message; the path
        // says in which object.
        let named = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"));
        let field = match named {
            Some(name) => {
                if path.last() == Some(&PathSeg::Key(name.to_owned())) {
                    path.pop();
                }
                path.push(PathSeg::Key(name.to_owned()));
                Some(path_text(&path))
            }
            // A value of the wrong type, or out of range: the path to it.
            None if e.is_data() && !path.is_empty() => Some(path_text(&path)),
            None => None,
        };
        let status = 400;
        match field {
            Some(f) => ApiError::field(status, f, format!("invalid request body: {msg}")),
            None => ApiError::new(status, format!("invalid request body: {msg}")),
        }
    })
}

/// The byte offset of serde_json's (1-based) line and column in `text`.
fn byte_offset(text: &[u8], line: usize, column: usize) -> usize {
    let mut at = 0;
    for _ in 1..line {
        match text[at..].iter().position(|&b| b == b'\n') {
            Some(nl) => at += nl + 1,
            None => return text.len(),
        }
    }
    (at + column).min(text.len())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathSeg {
    Key(String),
    Index(usize),
}

fn path_text(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) if out.is_empty() => out.push_str(k),
            PathSeg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The JSON path of the value being read at byte `at` of `text` (the
/// enclosing object's path when `at` falls between its members). A small
/// tokenizer: strings (with escapes), objects, arrays and commas.
fn json_path_at(text: &[u8], at: usize) -> Vec<PathSeg> {
    enum Frame {
        Obj(Option<String>),
        Arr(usize),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let end = at.min(text.len());
    while i < end {
        match text[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                let s = String::from_utf8_lossy(&text[start..i.min(text.len())]).into_owned();
                let mut j = i + 1;
                while j < text.len() && text[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < end
                    && text[j] == b':'
                    && let Some(Frame::Obj(key)) = stack.last_mut()
                {
                    *key = Some(s);
                }
            }
            b'{' => stack.push(Frame::Obj(None)),
            b'[' => stack.push(Frame::Arr(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Arr(n)) => *n += 1,
                Some(Frame::Obj(key)) => *key = None,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    stack
        .into_iter()
        .filter_map(|f| match f {
            Frame::Obj(key) => key.map(PathSeg::Key),
            Frame::Arr(n) => Some(PathSeg::Index(n)),
        })
        .collect()
}

fn route<S: Storage>(
    ctl: &Control<S>,
    (uid, gid, pid): (u32, u32, i32),
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Reply {
    let Some(role) = role_of(&ctl.access, uid, gid) else {
        return err_reply(ApiError::new(
            403,
            format!("peer uid {uid} gid {gid} is not on control's allow-list"),
        ));
    };
    let actor = Actor {
        uid,
        gid,
        pid,
        role,
    };
    let change = !matches!(*method, Method::GET | Method::HEAD);
    if change && role != Role::Admin {
        return err_reply(ApiError::new(
            403,
            format!("peer uid {uid} gid {gid} has the read-only role; changes need admin"),
        ));
    }
    let (op, params) = match find(method.as_str(), path) {
        Ok(found) => found,
        Err(e) => return err_reply(e),
    };
    let name = params.first().copied().unwrap_or("");
    let result = match op {
        Op::Metrics => {
            return Reply::Text(200, "text/plain; version=0.0.4", metrics(ctl));
        }
        Op::Status => Ok(status(ctl, &actor)),
        Op::ListPlugins => Ok(list(&locked(ctl).state().plugins)),
        Op::GetPlugin => one(&locked(ctl).state().plugins, name, "plugin"),
        Op::AddPlugin => parse::<PluginRequest>(body)
            .and_then(|r| inspect_plugin(&r))
            .and_then(|p| apply(ctl, Change::AddPlugin(p), &actor)),
        Op::RemovePlugin => apply(ctl, Change::RemovePlugin(name.into()), &actor),
        Op::ListScopes => Ok(list(&locked(ctl).state().scopes)),
        Op::GetScope => one(&locked(ctl).state().scopes, name, "scope"),
        Op::AddScope => {
            parse::<ScopeDef>(body).and_then(|s| apply(ctl, Change::PutScope(s, false), &actor))
        }
        Op::PutScope => parse::<ScopeDef>(body).and_then(|s| {
            same_name(&s.name, name)?;
            apply(ctl, Change::PutScope(s, true), &actor)
        }),
        Op::RemoveScope => apply(ctl, Change::RemoveScope(name.into()), &actor),
        Op::ListBindings => Ok(list(&locked(ctl).state().bindings)),
        Op::GetBinding => one(&locked(ctl).state().bindings, name, "binding"),
        Op::AddBinding => {
            parse::<Binding>(body).and_then(|b| apply(ctl, Change::PutBinding(b, false), &actor))
        }
        Op::PutBinding => parse::<Binding>(body).and_then(|b| {
            same_name(&b.name, name)?;
            apply(ctl, Change::PutBinding(b, true), &actor)
        }),
        Op::RemoveBinding => apply(ctl, Change::RemoveBinding(name.into()), &actor),
        Op::Enable => apply(ctl, Change::SetEnabled(name.into(), true), &actor),
        Op::Disable => apply(ctl, Change::SetEnabled(name.into(), false), &actor),
        Op::History => {
            let s = locked(ctl);
            Ok(json_reply(200, s.history()))
        }
        Op::Rollback => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Rollback {
                version: u64,
            }
            parse::<Rollback>(body).and_then(|r| {
                let mut s = locked(ctl);
                let v = s.rollback(r.version, &actor)?;
                ctl.changes.fetch_add(1, Ordering::Relaxed);
                Ok(json_reply(
                    200,
                    json!({"version": v, "rolled_back_to": r.version}),
                ))
            })
        }
        Op::Dataplanes => Ok(json_reply(200, dataplanes(ctl))),
        Op::Evidence => Filter::parse(query).and_then(|f| evidence(ctl, f)),
    };
    result.unwrap_or_else(err_reply)
}

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Metrics,
    Status,
    ListPlugins,
    GetPlugin,
    AddPlugin,
    RemovePlugin,
    ListScopes,
    GetScope,
    AddScope,
    PutScope,
    RemoveScope,
    ListBindings,
    GetBinding,
    AddBinding,
    PutBinding,
    RemoveBinding,
    Enable,
    Disable,
    History,
    Rollback,
    Dataplanes,
    Evidence,
}

/// One route: a method, a path pattern (`{name}` matches one non-empty
/// path segment), and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path pattern, as written in `docs/openapi.json`.
    pub path: &'static str,
    op: Op,
}

const fn r(method: &'static str, path: &'static str, op: Op) -> Route {
    Route { method, path, op }
}

/// Every route the API serves: the router looks requests up in this
/// table, and `docs/openapi.json` must describe exactly these (a test
/// checks it).
pub const ROUTES: &[Route] = &[
    r("GET", "/metrics", Op::Metrics),
    r("GET", "/v1/status", Op::Status),
    r("GET", "/v1/plugins", Op::ListPlugins),
    r("POST", "/v1/plugins", Op::AddPlugin),
    r("GET", "/v1/plugins/{name}", Op::GetPlugin),
    r("DELETE", "/v1/plugins/{name}", Op::RemovePlugin),
    r("GET", "/v1/scopes", Op::ListScopes),
    r("POST", "/v1/scopes", Op::AddScope),
    r("GET", "/v1/scopes/{name}", Op::GetScope),
    r("PUT", "/v1/scopes/{name}", Op::PutScope),
    r("DELETE", "/v1/scopes/{name}", Op::RemoveScope),
    r("GET", "/v1/bindings", Op::ListBindings),
    r("POST", "/v1/bindings", Op::AddBinding),
    r("GET", "/v1/bindings/{name}", Op::GetBinding),
    r("PUT", "/v1/bindings/{name}", Op::PutBinding),
    r("DELETE", "/v1/bindings/{name}", Op::RemoveBinding),
    r("POST", "/v1/bindings/{name}/enable", Op::Enable),
    r("POST", "/v1/bindings/{name}/disable", Op::Disable),
    r("GET", "/v1/history", Op::History),
    r("POST", "/v1/rollback", Op::Rollback),
    r("GET", "/v1/dataplanes", Op::Dataplanes),
    r("GET", "/v1/evidence", Op::Evidence),
];

/// The path parameters of `pattern` matched against `path`, or `None`.
fn match_path<'p>(pattern: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = Vec::new();
    let mut want = pattern.trim_matches('/').split('/');
    let mut got = path.trim_matches('/').split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                params.push(g)
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// Looks `method path` up in [`ROUTES`].
///
/// # Errors
/// 404 when no route has the path; 405 when one has it with another
/// method.
fn find<'p>(method: &str, path: &'p str) -> Result<(Op, Vec<&'p str>), ApiError> {
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = match_path(route.path, path) {
            if route.method == method {
                return Ok((route.op, params));
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        Err(ApiError::new(404, format!("no route {method} {path}")))
    } else {
        Err(ApiError::new(
            405,
            format!(
                "{method} is not served on {path} (it answers {})",
                allowed.join(", ")
            ),
        ))
    }
}

fn apply<S: Storage>(ctl: &Control<S>, change: Change, actor: &Actor) -> Result<Reply, ApiError> {
    let mut store = locked(ctl);
    let version = store.change(&change, actor)?;
    ctl.changes.fetch_add(1, Ordering::Relaxed);
    let status = if matches!(
        change,
        Change::AddPlugin(_) | Change::PutScope(_, false) | Change::PutBinding(_, false)
    ) {
        201
    } else {
        200
    };
    Ok(json_reply(
        status,
        json!({"version": version, "action": change.action(), "resource": change.resource()}),
    ))
}

fn status<S: Storage>(ctl: &Control<S>, actor: &Actor) -> Reply {
    let version = ctl
        .store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .state()
        .version;
    let log = lock(&ctl.log);
    let committed = log.committed_index();
    let sinks: Vec<Value> = ctl
        .sinks
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "kind": s.kind,
                "cursor": s.cursor.load(Ordering::Relaxed),
                "lag": s.lag(committed),
                "delivered": s.delivered.load(Ordering::Relaxed),
                "failed": s.failed.load(Ordering::Relaxed),
                "filtered": s.filtered.load(Ordering::Relaxed),
                "lost": s.lost.load(Ordering::Relaxed),
                "last_error": s.last_error(),
            })
        })
        .collect();
    json_reply(
        200,
        json!({
            "sinks": sinks,
            "queries": {
                "segments_read": ctl.queries.segments_read.load(Ordering::Relaxed),
                "segments_skipped": ctl.queries.segments_skipped.load(Ordering::Relaxed),
            },
            "version": version,
            "uptime_s": ctl.started.elapsed().as_secs(),
            "you": {"uid": actor.uid, "gid": actor.gid, "role": actor.role},
            "run_dir": ctl.run_dir,
            "log": {
                "backend": log.storage().backend(),
                "first_index": log.first_index(),
                "next_index": log.next_index(),
                "committed_index": committed,
                "segments": log.segment_count(),
                "bytes": log.bytes(),
            },
        }),
    )
}

fn dataplanes<S: Storage>(ctl: &Control<S>) -> Vec<Value> {
    let rings = ctl
        .rings
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(ctl.run_dir.join(DATAPLANES_DIR)) {
        for e in entries.flatten() {
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            let Ok(st) = serde_json::from_slice::<DataplaneStatus>(&bytes) else {
                continue;
            };
            let alive = Path::new("/proc").join(st.pid.to_string()).exists();
            let rings_left = st
                .rings
                .iter()
                .any(|r| ctl.run_dir.join(EVIDENCE_DIR).join(r).exists());
            if !alive && !rings_left {
                // Gone, and its evidence is all drained: a stale report.
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            let mine: Vec<Value> = rings
                .iter()
                .filter(|r| st.rings.contains(&r.name))
                .map(ring_json)
                .collect();
            out.push(json!({
                "pid": st.pid,
                "alive": alive,
                "healthy": alive && st.last_error.is_none(),
                "policy_version": st.policy_version,
                "last_error": st.last_error,
                "updated_ms": st.updated_ms,
                "workers": st.rings.len(),
                "rings": mine,
                "plugins": st.plugins,
            }));
        }
    }
    out
}

fn ring_json(r: &RingHealth) -> Value {
    json!({
        "name": r.name,
        "id": r.id,
        "drained": r.drained,
        "corrupt": r.corrupt,
        "lanes": r.lanes.iter().map(|l| json!({
            "lane": l.lane,
            "owner_pid": l.owner_pid,
            "backlog_bytes": l.backlog_bytes,
            "dropped": l.dropped,
            "abandoned": l.abandoned,
        })).collect::<Vec<_>>(),
    })
}

fn evidence<S: Storage>(ctl: &Control<S>, f: Filter) -> Result<Reply, ApiError> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let log = Arc::clone(&ctl.log);
    let stats = Arc::clone(&ctl.queries);
    let limit = f.limit.unwrap_or(if f.follow { usize::MAX } else { 1000 });
    // Scan on the blocking pool; the body streams as lines come.
    tokio::task::spawn_blocking(move || {
        let mut next = f.from_index;
        let mut at = None;
        let mut sent = 0usize;
        loop {
            let (snapshot, storage, committed) = {
                let l = lock(&log);
                (l.snapshot(), l.storage().clone(), l.committed_index())
            };
            let mut chunk = String::new();
            let mut closed = false;
            let r = run_at(&snapshot, &storage, at, next, &f, |index, line| {
                next = index + 1;
                chunk.push_str(&line);
                sent += 1;
                if chunk.len() > 64 * 1024 {
                    closed |= tx
                        .blocking_send(Bytes::from(std::mem::take(&mut chunk)))
                        .is_err();
                }
                !closed && sent < limit
            });
            if let Ok(report) = &r {
                stats
                    .segments_read
                    .fetch_add(report.segments_read, Ordering::Relaxed);
                stats
                    .segments_skipped
                    .fetch_add(report.segments_skipped, Ordering::Relaxed);
                // Following: records that did not match need not be
                // looked at again, and the next pass reads only what is
                // new in the open segment.
                if !closed && sent < limit {
                    next = next.max(committed);
                    at = snapshot.end().filter(|e| e.index == next);
                }
            }
            if !chunk.is_empty() && tx.blocking_send(Bytes::from(chunk)).is_err() {
                return;
            }
            if r.is_err() || closed || sent >= limit || !f.follow {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
            if tx.is_closed() {
                return;
            }
        }
    });
    Ok(Reply::Stream(rx))
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn metrics<S: Storage>(ctl: &Control<S>) -> String {
    use std::fmt::Write as _;
    let mut m = String::new();
    let mut put = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            m,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    let version = ctl
        .store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .state()
        .version;
    put(
        "odock_control_state_version",
        "gauge",
        "Version of control's state.",
        version,
    );
    put(
        "odock_control_uptime_seconds",
        "gauge",
        "Seconds since control started.",
        ctl.started.elapsed().as_secs(),
    );
    put(
        "odock_control_requests_total",
        "counter",
        "API requests served.",
        ctl.requests.load(Ordering::Relaxed),
    );
    put(
        "odock_control_denied_total",
        "counter",
        "API requests refused by the allow-list or role.",
        ctl.denied.load(Ordering::Relaxed),
    );
    put(
        "odock_control_changes_total",
        "counter",
        "State changes applied since start.",
        ctl.changes.load(Ordering::Relaxed),
    );
    put(
        "odock_evidence_drained_total",
        "counter",
        "Evidence records drained from rings and committed.",
        ctl.drain.records.load(Ordering::Relaxed),
    );
    put(
        "odock_evidence_duplicates_skipped_total",
        "counter",
        "Records a killed control had committed but not released from their ring, skipped on restart.",
        ctl.drain.duplicates_skipped.load(Ordering::Relaxed),
    );
    put(
        "odock_evidence_rings_retired_total",
        "counter",
        "Rings removed after their dataplane exited and they were drained.",
        ctl.drain.rings_retired.load(Ordering::Relaxed),
    );
    let (backend, stats, next, segments, bytes, committed) = {
        let l = lock(&ctl.log);
        (
            l.storage().backend(),
            l.stats(),
            l.next_index(),
            l.segment_count(),
            l.bytes(),
            l.committed_index(),
        )
    };
    put(
        "odock_evidence_query_segments_read_total",
        "counter",
        "Log segments evidence queries opened.",
        ctl.queries.segments_read.load(Ordering::Relaxed),
    );
    put(
        "odock_evidence_query_segments_skipped_total",
        "counter",
        "Log segments evidence queries skipped by their summaries.",
        ctl.queries.segments_skipped.load(Ordering::Relaxed),
    );
    put(
        "odock_evidence_log_commits_total",
        "counter",
        "Group commits (data syncs) of the evidence log.",
        stats.commits,
    );
    put(
        "odock_evidence_log_committed_records_total",
        "counter",
        "Records committed to the evidence log since start.",
        stats.committed_records,
    );
    put(
        "odock_evidence_log_next_index",
        "gauge",
        "Index the next log record gets.",
        next,
    );
    put(
        "odock_evidence_log_segments",
        "gauge",
        "Segment files kept.",
        segments as u64,
    );
    put(
        "odock_evidence_log_bytes",
        "gauge",
        "Bytes kept in the evidence log.",
        bytes,
    );
    let _ = writeln!(
        m,
        "# HELP odock_evidence_log_backend The evidence log's write path.\n# TYPE odock_evidence_log_backend gauge\nodock_evidence_log_backend{{backend=\"{backend}\"}} 1"
    );
    for (name, help, ns) in [
        (
            "odock_evidence_drain_gather_seconds_total",
            "Time the drainer spent taking records from rings into the log buffer.",
            &ctl.drain.gather_ns,
        ),
        (
            "odock_evidence_drain_wait_seconds_total",
            "Time the drainer spent waiting for the group-commit cadence.",
            &ctl.drain.wait_ns,
        ),
        (
            "odock_evidence_drain_commit_seconds_total",
            "Time the drainer spent in commits (write and data sync).",
            &ctl.drain.commit_ns,
        ),
    ] {
        let _ = writeln!(
            m,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {:.6}",
            ns.load(Ordering::Relaxed) as f64 / 1e9
        );
    }
    type SinkMetric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&SinkStatus, u64) -> u64,
    );
    let sink_metrics: [SinkMetric; 5] = [
        (
            "odock_sink_delivered_total",
            "counter",
            "Evidence records a sink delivered since start.",
            |s, _| s.delivered.load(Ordering::Relaxed),
        ),
        (
            "odock_sink_failed_total",
            "counter",
            "Failed delivery attempts of a sink since start (each retried).",
            |s, _| s.failed.load(Ordering::Relaxed),
        ),
        (
            "odock_sink_lag_records",
            "gauge",
            "Committed log records a sink has not yet passed.",
            |s, c| s.lag(c),
        ),
        (
            "odock_sink_filtered_total",
            "counter",
            "Records a sink's filter left out since start.",
            |s, _| s.filtered.load(Ordering::Relaxed),
        ),
        (
            "odock_sink_lost_total",
            "counter",
            "Records retention removed before a sink reached them.",
            |s, _| s.lost.load(Ordering::Relaxed),
        ),
    ];
    if !ctl.sinks.is_empty() {
        for (name, kind, help, value) in sink_metrics {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in &ctl.sinks {
                let _ = writeln!(
                    m,
                    "{name}{{sink=\"{}\",kind=\"{}\"}} {}",
                    s.name,
                    s.kind,
                    value(s, committed)
                );
            }
        }
    }
    let planes = dataplanes(ctl);
    let _ = writeln!(
        m,
        "# HELP odock_dataplane_plugin_total A dataplane's counters per plugin and gate (calls, blocks, errors, ...), summed over its workers.\n# TYPE odock_dataplane_plugin_total counter"
    );
    for dp in &planes {
        for p in dp["plugins"].as_array().into_iter().flatten() {
            for (counter, value) in p["counters"].as_object().into_iter().flatten() {
                let _ = writeln!(
                    m,
                    "odock_dataplane_plugin_total{{pid=\"{}\",plugin=\"{}\",gate=\"{}\",counter=\"{}\"}} {}",
                    dp["pid"],
                    label(p["plugin"].as_str().unwrap_or("")),
                    label(p["gate"].as_str().unwrap_or("")),
                    label(counter),
                    value.as_u64().unwrap_or(0)
                );
            }
        }
    }
    let _ = writeln!(
        m,
        "# HELP odock_dataplane_healthy Whether a dataplane is alive with no policy error (1) or not (0).\n# TYPE odock_dataplane_healthy gauge"
    );
    for dp in &planes {
        let _ = writeln!(
            m,
            "odock_dataplane_healthy{{pid=\"{}\"}} {}",
            dp["pid"],
            u8::from(dp["healthy"] == true)
        );
    }
    let rings = ctl
        .rings
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let _ = writeln!(
        m,
        "# HELP odock_evidence_ring_backlog_bytes Bytes waiting in an evidence ring.\n# TYPE odock_evidence_ring_backlog_bytes gauge"
    );
    for r in &rings {
        let backlog: u64 = r.lanes.iter().map(|l| l.backlog_bytes).sum();
        let _ = writeln!(
            m,
            "odock_evidence_ring_backlog_bytes{{ring=\"{}\"}} {backlog}",
            r.name
        );
    }
    let _ = writeln!(
        m,
        "# HELP odock_evidence_ring_dropped_total Records an evidence ring refused because it was full.\n# TYPE odock_evidence_ring_dropped_total counter"
    );
    for r in &rings {
        let dropped: u64 = r.lanes.iter().map(|l| l.dropped).sum();
        let _ = writeln!(
            m,
            "odock_evidence_ring_dropped_total{{ring=\"{}\"}} {dropped}",
            r.name
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_name_the_field_by_its_path() {
        let field = |body: &str| {
            parse::<Binding>(body.as_bytes())
                .unwrap_err()
                .field
                .unwrap_or_default()
        };
        let ok = r#""name": "b", "plugin": "p""#;
        assert_eq!(
            field(&format!("{{{ok}, \"priority\": {{\"request\": \"x\"}}}}")),
            "priority.request"
        );
        assert_eq!(
            field(&format!("{{{ok}, \"priority\": {{\"requst\": 1}}}}")),
            "priority.requst"
        );
        assert_eq!(
            field(&format!(
                "{{{ok}, \"priority\": {{}}, \"capabilities\": [\"a\", 7]}}"
            )),
            "capabilities[1]"
        );
        assert_eq!(
            field(&format!(
                "{{{ok}, \"priority\": {{}}, \"time_budget_ms\": -5}}"
            )),
            "time_budget_ms"
        );
        assert_eq!(
            field(&format!(
                "{{{ok},\n  \"enabled\": \"yes\",\n \"priority\": {{}}}}"
            )),
            "enabled"
        );
        assert_eq!(field(r#"{"name": "b", "priority": {}}"#), "plugin");
        assert_eq!(field(r#"{"name": "b", "plugin": "p", "prio": {}}"#), "prio");
        assert_eq!(
            field(r#"{"name": "a\"b", "plugin": 5, "priority": {}}"#),
            "plugin"
        );
        let e = parse::<Binding>(b"{\"name\": ").unwrap_err();
        assert_eq!(e.field, None, "a syntax error has no field: {e}");
    }

    #[test]
    fn every_route_is_found_and_others_are_404_or_405() {
        for route in ROUTES {
            let path = route.path.replace("{name}", "x.y-z");
            let (op, params) = find(route.method, &path).unwrap();
            assert_eq!(op, route.op, "{} {}", route.method, route.path);
            assert_eq!(params.len(), route.path.matches('{').count());
        }
        assert_eq!(find("GET", "/v1/nothing").unwrap_err().status, 404);
        assert_eq!(find("GET", "/v1/plugins/a/b").unwrap_err().status, 404);
        assert_eq!(find("GET", "/v1/plugins//x").unwrap_err().status, 404);
        let e = find("PATCH", "/v1/bindings/b").unwrap_err();
        assert_eq!(e.status, 405);
        assert!(e.error.contains("GET, PUT, DELETE"), "{}", e.error);
        let (_, params) = find("POST", "/v1/bindings/guard/enable").unwrap();
        assert_eq!(params, ["guard"]);
    }
}
