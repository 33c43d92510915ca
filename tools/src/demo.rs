//! `odock demo`: a mixed LLM and MCP workload through a running stack, with
//! a progress line, and a summary at the end.
//!
//! The mix, round robin over every caller task:
//!
//! | case | request | expected |
//! |---|---|---|
//! | allowed | acme, `gpt-4o`, a plain question | 200, the mock's echo |
//! | streamed | acme, `gpt-4o-mini`, `stream: true` | 200, SSE to `[DONE]` |
//! | blocked | globex, `gpt-4o` (not on globex's allowlist) | 403 from `model-allowlist` |
//! | redacted | acme, a message with an email address | 200, the echo shows `[REDACTED:email]` |
//! | redacted stream | acme, streamed, asks for a contact (the mock answers with an email and a card number) | 200, redacted inside the SSE events |
//! | approved | acme, `o1-preview` (sensitive: `approval` pauses, the mock's approval service says yes) | 200 after the approval's latency |
//! | MCP allowed | acme, `tools/call search` | a tool result |
//! | MCP blocked | globex, `tools/call delete_repo` | a JSON-RPC error from `model-allowlist` |

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use odock_dataplane::runtime::{Counter, Histogram};
use odock_plugin_abi::Gate;
use serde_json::{Value, json};

use crate::up::{KEYS, PLUGINS, Stack};

/// The cases of the mix, in order.
pub const CASES: [&str; 8] = [
    "allowed",
    "streamed",
    "blocked",
    "redacted",
    "redacted-stream",
    "approved",
    "mcp-allowed",
    "mcp-blocked",
];

/// What a case is expected to come back as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    Blocked,
}

/// What the demo saw.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// Wall time of the load.
    pub elapsed: Duration,
    /// Requests sent (MCP session set-up included).
    pub requests: u64,
    /// Per case: (as expected, not as expected).
    pub cases: BTreeMap<&'static str, (u64, u64)>,
    /// The first few unexpected answers, for the summary.
    pub surprises: Vec<String>,
    /// Client-side round trip of each exchange.
    pub round_trip: Histogram,
    /// The verdicts per plugin and gate when the load ended (before the
    /// baseline's requests): (plugin, gate, counter, value).
    pub verdicts: Vec<(&'static str, Gate, Counter, u64)>,
    /// The gateway's counters and gate time when the load ended.
    pub gateway: crate::gateway::GatewayStats,
    /// The same-run baseline: one caller, a plain chat request alternately
    /// through the gateway and straight to the mock upstream.
    pub baseline: Option<Baseline>,
}

/// One caller's plain chat round trips, through the gateway (every plugin
/// of the example policy on the way) and straight to the upstream,
/// alternated so both see the same machine.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// Round trips through the gateway, sorted.
    pub gateway: Vec<Duration>,
    /// Round trips through a second gateway of the same config with an
    /// empty policy (the proxying alone), sorted.
    pub empty: Vec<Duration>,
    /// Round trips straight to the mock upstream, sorted.
    pub direct: Vec<Duration>,
}

impl Baseline {
    /// The `q` quantile (0 to 1) of sorted samples.
    pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }
}

/// The counters the summary shows, in its columns' order.
const COUNTERS: [Counter; 7] = [
    Counter::Calls,
    Counter::Continues,
    Counter::Blocks,
    Counter::Transforms,
    Counter::Pauses,
    Counter::Errors,
    Counter::Timeouts,
];

/// Pairs of plain requests in the baseline.
const BASELINE_PAIRS: usize = 500;

impl DemoReport {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Exchanges that did not come back as the case expects.
    pub fn unexpected(&self) -> u64 {
        self.cases.values().map(|c| c.1).sum()
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Drives the mix through the stack's gateway for `seconds` with `callers`
/// concurrent callers; draws a progress line on stderr when `progress`.
pub fn run(stack: &Stack, seconds: u64, callers: usize, progress: bool) -> DemoReport {
    let addr = stack.gateway().addr();
    let report = Arc::new(Mutex::new(DemoReport::default()));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    let duration = Duration::from_secs(seconds);
    rt.block_on(async {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
        let mut tasks = Vec::new();
        for c in 0..callers.max(1) {
            let (client, report, sent, stop) = (
                client.clone(),
                Arc::clone(&report),
                Arc::clone(&sent),
                Arc::clone(&stop),
            );
            tasks.push(tokio::spawn(async move {
                caller(c, addr, client, report, sent, stop).await;
            }));
        }
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let elapsed = started.elapsed();
            if progress {
                draw(elapsed, duration, sent.load(Ordering::Relaxed));
            }
            if elapsed >= duration {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        if progress {
            draw(duration, duration, sent.load(Ordering::Relaxed));
            eprintln!();
        }
    });
    let mut r = report.lock().expect("the report").clone();
    r.elapsed = started.elapsed();
    r.requests = sent.load(Ordering::Relaxed);
    let counters = stack.gateway().runtime();
    for plugin in PLUGINS {
        for gate in [Gate::Request, Gate::Response, Gate::Complete] {
            for c in COUNTERS {
                r.verdicts
                    .push((plugin, gate, c, counters.counter(plugin, gate, c)));
            }
        }
    }
    r.gateway = stack.gateway().stats();
    r.baseline = baseline_run(&rt, stack);
    r
}

/// Starts a gateway like the stack's but with an empty policy (its own run
/// directory, no control), and measures the baseline through both.
fn baseline_run(rt: &tokio::runtime::Runtime, stack: &Stack) -> Option<Baseline> {
    let run = std::env::temp_dir().join(format!("odock-demo-baseline-{}", std::process::id()));
    let config = crate::gateway::GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("an address"),
        run_dir: Some(run.clone()),
        ..stack.gateway_config().clone()
    };
    let empty = crate::gateway::Gateway::start(config).ok()?;
    let b = rt.block_on(baseline(
        stack.gateway().addr(),
        empty.addr(),
        stack.mock().addr(),
    ));
    empty.shutdown();
    let _ = std::fs::remove_dir_all(&run);
    b
}

/// Plain chat round trips from one caller, alternately through the gateway
/// and straight to the mock; `None` if any did not come back 200.
async fn baseline(gateway: SocketAddr, empty: SocketAddr, mock: SocketAddr) -> Option<Baseline> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let body = chat("gpt-4o", "What is a ring buffer?", false);
    let sent = AtomicU64::new(0);
    let mut b = Baseline::default();
    for i in 0..BASELINE_PAIRS * 3 {
        let (target, into) = match i % 3 {
            0 => (gateway, &mut b.gateway),
            1 => (empty, &mut b.empty),
            _ => (mock, &mut b.direct),
        };
        let started = Instant::now();
        let a = post(
            &client,
            target,
            "/v1/chat/completions",
            KEYS[0].0,
            &body,
            None,
            &sent,
        )
        .await
        .ok()?;
        if a.status != 200 {
            return None;
        }
        into.push(started.elapsed());
    }
    b.gateway.sort_unstable();
    b.empty.sort_unstable();
    b.direct.sort_unstable();
    Some(b)
}

fn draw(elapsed: Duration, total: Duration, sent: u64) {
    use std::io::IsTerminal as _;
    let tty = std::io::stderr().is_terminal();
    // On a terminal the line redraws in place; in a log, one line a second.
    if !tty && elapsed.as_millis() % 1000 >= 200 && elapsed < total {
        return;
    }
    const WIDTH: usize = 30;
    let frac = (elapsed.as_secs_f64() / total.as_secs_f64().max(1e-9)).min(1.0);
    let done = (frac * WIDTH as f64) as usize;
    let rate = sent as f64 / elapsed.as_secs_f64().max(1e-9);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "{}[{}{}] {:>4.1}/{} s  {sent} requests  {rate:.0} req/s ",
        if tty { "\r" } else { "\n" },
        "#".repeat(done),
        ".".repeat(WIDTH - done),
        elapsed.as_secs_f64().min(total.as_secs_f64()),
        total.as_secs(),
    );
    let _ = err.flush();
}

async fn caller(
    c: usize,
    addr: SocketAddr,
    client: HttpClient,
    report: Arc<Mutex<DemoReport>>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut sessions: [Option<String>; 2] = [None, None];
    let mut i = c;
    while !stop.load(Ordering::Relaxed) {
        let case = CASES[i % CASES.len()];
        i += 1;
        let started = Instant::now();
        let outcome = one(case, addr, &client, &mut sessions, &sent).await;
        let rtt = started.elapsed();
        let mut r = report.lock().expect("the report");
        r.round_trip.record(rtt);
        let e = r.cases.entry(case).or_default();
        match outcome {
            Ok(()) => e.0 += 1,
            Err(why) => {
                e.1 += 1;
                if r.surprises.len() < 5 {
                    r.surprises.push(format!("{case}: {why}"));
                }
            }
        }
    }
}

struct Answer {
    status: u16,
    body: Bytes,
    session: Option<String>,
}

async fn post(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    key: &str,
    body: &Value,
    session: Option<&str>,
    sent: &AtomicU64,
) -> Result<Answer, String> {
    let mut req = Request::post(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    sent.fetch_add(1, Ordering::Relaxed);
    let answer = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "no answer within 30 s".to_owned())?
        .map_err(|e| format!("the gateway did not answer: {e}"))?;
    let status = answer.status().as_u16();
    let session = answer
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok(Answer {
        status,
        body,
        session,
    })
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})
}

async fn one(
    case: &str,
    addr: SocketAddr,
    client: &HttpClient,
    sessions: &mut [Option<String>; 2],
    sent: &AtomicU64,
) -> Result<(), String> {
    let (acme, globex) = (KEYS[0].0, KEYS[1].0);
    let path = "/v1/chat/completions";
    let (answer, expect, must_contain) = match case {
        "allowed" => (
            post(
                client,
                addr,
                path,
                acme,
                &chat("gpt-4o", "What is a ring buffer?", false),
                None,
                sent,
            )
            .await?,
            Expect::Ok,
            "Echo: What is a ring buffer?",
        ),
        "streamed" => (
            post(
                client,
                addr,
                path,
                acme,
                &chat("gpt-4o-mini", "Stream me a haiku", true),
                None,
                sent,
            )
            .await?,
            Expect::Ok,
            "[DONE]",
        ),
        "blocked" => (
            post(
                client,
                addr,
                path,
                globex,
                &chat("gpt-4o", "Hello", false),
                None,
                sent,
            )
            .await?,
            Expect::Blocked,
            "",
        ),
        "redacted" => (
            post(
                client,
                addr,
                path,
                acme,
                &chat("gpt-4o", "My address is jane.doe@example.com", false),
                None,
                sent,
            )
            .await?,
            Expect::Ok,
            "[REDACTED:email]",
        ),
        "redacted-stream" => (
            post(
                client,
                addr,
                path,
                acme,
                &chat("gpt-4o-mini", "How do I contact you?", true),
                None,
                sent,
            )
            .await?,
            Expect::Ok,
            "[REDACTED:",
        ),
        "approved" => (
            post(
                client,
                addr,
                path,
                acme,
                &chat("o1-preview", "Plan the migration", false),
                None,
                sent,
            )
            .await?,
            Expect::Ok,
            "Echo: Plan the migration",
        ),
        "mcp-allowed" | "mcp-blocked" => {
            let (slot, key, tool, args) = if case == "mcp-allowed" {
                (0, acme, "search", json!({"query": "ring buffers"}))
            } else {
                (1, globex, "delete_repo", json!({"repo": "odock/prod"}))
            };
            if sessions[slot].is_none() {
                let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-03-26", "capabilities": {},
                    "clientInfo": {"name": "odock-demo", "version": "1"}}});
                let a = post(client, addr, "/mcp", key, &init, None, sent).await?;
                if a.status != 200 || a.session.is_none() {
                    return Err(format!("MCP initialize answered {}", a.status));
                }
                let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
                post(client, addr, "/mcp", key, &note, a.session.as_deref(), sent).await?;
                sessions[slot] = a.session;
            }
            let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                              "params": {"name": tool, "arguments": args}});
            let a = post(
                client,
                addr,
                "/mcp",
                key,
                &call,
                sessions[slot].as_deref(),
                sent,
            )
            .await?;
            let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
            let errored = v.get("error").is_some();
            return match (case, errored) {
                ("mcp-allowed", false) if v["result"]["content"].is_array() => Ok(()),
                ("mcp-blocked", true) => Ok(()),
                _ => Err(format!("MCP answered {}: {}", a.status, truncate(&a.body))),
            };
        }
        other => return Err(format!("unknown case {other}")),
    };
    match expect {
        Expect::Ok if answer.status == 200 => {
            let text = String::from_utf8_lossy(&answer.body);
            if text.contains(must_contain) {
                Ok(())
            } else {
                Err(format!(
                    "200 without `{must_contain}`: {}",
                    truncate(&answer.body)
                ))
            }
        }
        Expect::Blocked if (400..500).contains(&answer.status) => Ok(()),
        _ => Err(format!(
            "answered {}: {}",
            answer.status,
            truncate(&answer.body)
        )),
    }
}

fn truncate(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(200).collect()
}

/// The summary: rates, cases, verdicts per plugin and gate time (as the load
/// left them, before the baseline), the baseline.
pub fn summary(report: &DemoReport) -> String {
    let mut out = String::new();
    let line = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(
        &mut out,
        format!(
            "{} requests in {:.1} s: {:.0} requests/s ({} not as expected)",
            report.requests,
            report.elapsed.as_secs_f64(),
            report.rate(),
            report.unexpected()
        ),
    );
    line(&mut out, String::new());
    line(
        &mut out,
        format!("{:<18} {:>8} {:>10}", "case", "as meant", "otherwise"),
    );
    for case in CASES {
        let (ok, bad) = report.cases.get(case).copied().unwrap_or_default();
        line(&mut out, format!("{case:<18} {ok:>8} {bad:>10}"));
    }
    for s in &report.surprises {
        line(&mut out, format!("  unexpected: {s}"));
    }
    line(&mut out, String::new());
    line(
        &mut out,
        format!(
            "{:<16} {:<9} {:>7} {:>9} {:>7} {:>10} {:>7} {:>7} {:>8}",
            "plugin",
            "gate",
            "calls",
            "continue",
            "block",
            "transform",
            "pause",
            "error",
            "timeout"
        ),
    );
    for plugin in PLUGINS {
        for gate in [Gate::Request, Gate::Response, Gate::Complete] {
            let n = |c| {
                report
                    .verdicts
                    .iter()
                    .find(|v| v.0 == plugin && v.1 == gate && v.2 == c)
                    .map_or(0, |v| v.3)
            };
            if n(Counter::Calls) == 0 {
                continue;
            }
            line(
                &mut out,
                format!(
                    "{plugin:<16} {:<9} {:>7} {:>9} {:>7} {:>10} {:>7} {:>7} {:>8}",
                    gate.to_string(),
                    n(Counter::Calls),
                    n(Counter::Continues),
                    n(Counter::Blocks),
                    n(Counter::Transforms),
                    n(Counter::Pauses),
                    n(Counter::Errors),
                    n(Counter::Timeouts),
                ),
            );
        }
    }
    let stats = &report.gateway;
    // The runtime's histograms have buckets 25 % wide: say which bucket.
    let range = |h: &Histogram, p| {
        h.quantile_bounds(p).map_or("-".to_owned(), |(lo, hi)| {
            format!(
                "{:.1}-{:.1} µs",
                lo.as_nanos() as f64 / 1000.0,
                hi.as_nanos() as f64 / 1000.0
            )
        })
    };
    line(&mut out, String::new());
    line(
        &mut out,
        format!(
            "gate overhead per exchange: p50 {}, p99 {} ({} exchanges; upstream and approval waits excluded)",
            range(&stats.gate_overhead, 0.5),
            range(&stats.gate_overhead, 0.99),
            stats.gate_overhead.count()
        ),
    );
    line(
        &mut out,
        format!(
            "round trip seen by callers: p50 {}, p99 {}",
            range(&report.round_trip, 0.5),
            range(&report.round_trip, 0.99)
        ),
    );
    match &report.baseline {
        Some(b) => {
            let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
            let p = |v: &[Duration], q| us(Baseline::quantile(v, q));
            line(
                &mut out,
                format!(
                    "baseline, one caller, {} plain chat requests each, alternated: p50 / p99",
                    b.gateway.len()
                ),
            );
            for (what, v) in [
                ("  through the gateway, example policy", &b.gateway),
                ("  through a gateway, empty policy", &b.empty),
                ("  straight to the upstream", &b.direct),
            ] {
                line(
                    &mut out,
                    format!("{what:<40} {:>7.0} µs {:>7.0} µs", p(v, 0.5), p(v, 0.99)),
                );
            }
            line(
                &mut out,
                format!(
                    "  the gateway's hop adds {:.0} µs at p50 ({:.2}x the upstream); the plugins {:.0} µs more ({:.2}x the empty policy)",
                    p(&b.empty, 0.5) - p(&b.direct, 0.5),
                    p(&b.empty, 0.5) / p(&b.direct, 0.5).max(1e-9),
                    p(&b.gateway, 0.5) - p(&b.empty, 0.5),
                    p(&b.gateway, 0.5) / p(&b.empty, 0.5).max(1e-9),
                ),
            );
        }
        None => line(
            &mut out,
            "baseline: not measured (a plain request did not come back 200)".to_owned(),
        ),
    }
    out
}
