//! `odock-gateway`: the reference gateway, the worked example of how a
//! gateway links the dataplane.
//!
//! It proxies OpenAI-compatible `POST /v1/chat/completions` (also with
//! `stream: true`, as server-sent events) and MCP over streamable HTTP
//! (`POST /mcp`, JSON-RPC) to a configured upstream, and runs the plugin
//! gates around each exchange:
//!
//! ```text
//!  caller ──► auth (virtual key → tenant, environment)
//!         ──► request gate ──(pause: integration call, resume)──► upstream
//!         ◄── response gate (whole body, or per SSE event) ◄────── upstream
//!         ◄── answer;  then the complete gate, on the complete pool
//! ```
//!
//! # Shape: thread per core, inline gates
//!
//! [`Gateway::start`] starts one thread per core (pinned), each with a
//! current-thread tokio runtime, its own `SO_REUSEPORT` listener on the
//! shared address, and its own [`GateRunner`]: the *inline* gate API. A
//! gate runs on the thread that accepted the connection, over the bytes
//! hyper read, with no hop and no lock. The complete gate runs on the
//! dataplane's [`CompletePool`], fed through its ring, after the caller has
//! the answer. Policy comes from control through the run directory
//! ([`ControlLink`]); each thread's evidence goes to its own ring there,
//! which control drains.
//!
//! # What the caller sees
//!
//! - No or unknown key: 401, an OpenAI-style error (`invalid_api_key`).
//! - A block: the plugin's status and user-visible reason, as an
//!   OpenAI-style error (`type: "odock_policy"`, `code: "blocked"`), or for
//!   MCP a JSON-RPC error (code `-32003`, with `data.status` and
//!   `data.plugin`) answered with HTTP 200 so MCP clients read it (a
//!   notification, which has no id to answer, gets the plugin's HTTP
//!   status); the internal detail stays in evidence. Header `x-odock-blocked-by` names
//!   the plugin.
//! - A pause (an approval): latency. The gateway calls the integration the
//!   plugin named (`[integrations]` maps names to URLs), with the plugin's
//!   timeout, and resumes the chain with the answer, a timeout or a
//!   failure.
//! - A block in the middle of a stream: a final SSE event
//!   `data: {"error": {...}}` (for MCP, the JSON-RPC error above), and the
//!   stream ends.
//! - Headers the request gate set go upstream; headers the response gate
//!   set (on a stream: at its first event) reach the caller.
//! - Every answer, refusals included, carries `x-odock-request-id`, the id
//!   in every evidence record of the exchange.

mod body;
pub mod config;
mod proxy;
pub mod sse;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use odock_dataplane::evidence::EvidenceWriter;
use odock_dataplane::ring::Geometry;
use odock_dataplane::runtime::complete::{CompleteConfig, CompletePool};
use odock_dataplane::runtime::control_link::ControlLink;
use odock_dataplane::runtime::{GateRunner, Histogram, RingSink, Runtime, RuntimeSink};
use tokio::sync::watch;

pub use config::{ConfigError, GatewayConfig, VirtualKey};

/// Counters of what the gateway did, summed over its threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    unauthorized: AtomicU64,
    blocked: AtomicU64,
    paused: AtomicU64,
    streamed: AtomicU64,
    upstream_errors: AtomicU64,
    completes_dropped: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of the gateway's counters and its gate overhead.
#[derive(Debug, Clone, Default)]
pub struct GatewayStats {
    /// Requests received on the proxied routes.
    pub requests: u64,
    /// Requests refused for want of a valid key.
    pub unauthorized: u64,
    /// Exchanges a plugin blocked (request gate, response gate, or a stream
    /// ended).
    pub blocked: u64,
    /// Integration calls made for paused frames.
    pub paused: u64,
    /// Answers streamed.
    pub streamed: u64,
    /// Upstream failures (no answer, timeout, too large).
    pub upstream_errors: u64,
    /// Exchanges the complete pool could not take (its ring was full).
    pub completes_dropped: u64,
    /// Time spent in the gates per exchange (request gate, response gate
    /// or every chunk of it), integration calls and upstream time excluded.
    pub gate_overhead: Histogram,
}

/// What the threads share.
pub(crate) struct Shared {
    config: GatewayConfig,
    counters: Counters,
    overhead: Vec<Mutex<Histogram>>,
    id_base: u64,
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    link: Arc<ControlLink>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    complete: Option<CompletePool>,
}

/// Why the gateway could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is not usable.
    Config(ConfigError),
    /// The run directory, a ring, the listener or a thread failed.
    Io(&'static str, io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Bytes of each evidence lane (one lane per ring: its thread).
const EVIDENCE_LANE_BYTES: u64 = 4 << 20;

impl Gateway {
    /// Starts the gateway: attaches to control's run directory, starts the
    /// complete pool and one pinned thread per core, and binds
    /// `config.listen` (port 0: any free port; see [`Gateway::addr`]).
    ///
    /// # Errors
    /// [`StartError`] naming what failed.
    pub fn start(config: GatewayConfig) -> Result<Gateway, StartError> {
        config.check().map_err(StartError::Config)?;
        let runtime = Runtime::new();
        let link = Arc::new(
            ControlLink::start(&config.run_dir(), runtime.clone())
                .map_err(|e| StartError::Io("the run directory", e))?,
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = if config.workers == 0 {
            cores
        } else {
            config.workers
        };
        let evidence_sink = |w: u32| -> Result<Box<dyn RuntimeSink>, StartError> {
            let geometry = Geometry::new(1, EVIDENCE_LANE_BYTES).expect("a valid geometry");
            let ring = link
                .evidence_ring(w, geometry)
                .map_err(|e| StartError::Io("an evidence ring", io::Error::other(e.to_string())))?;
            let producer = ring.producer().expect("a new ring has a free lane");
            Ok(Box::new(RingSink::new(EvidenceWriter::new(producer, w))))
        };
        let complete_config = CompleteConfig {
            threads: 1,
            lanes: workers as u32 + 1,
            ..CompleteConfig::default()
        };
        let mut complete_sinks = Vec::new();
        for t in 0..complete_config.threads {
            complete_sinks.push(Mutex::new(Some(evidence_sink(
                complete_config.first_worker + t,
            )?)));
        }
        let complete = CompletePool::start(&runtime, complete_config, |w| {
            complete_sinks[(w - complete_config.first_worker) as usize]
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .expect("one sink per pool thread")
        })
        .map_err(|e| StartError::Io("the complete pool", io::Error::other(e.to_string())))?;

        let shared = Arc::new(Shared {
            overhead: (0..workers)
                .map(|_| Mutex::new(Histogram::default()))
                .collect(),
            config,
            counters: Counters::default(),
            id_base: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
                << 20,
        });
        let first = proxy::listener(shared.config.listen)
            .map_err(|e| StartError::Io("binding the listen address", e))?;
        let addr = first
            .local_addr()
            .map_err(|e| StartError::Io("the listen address", e))?;
        let (stop, stop_rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(workers);
        let mut first = Some(first);
        for w in 0..workers {
            let listener = match first.take() {
                Some(l) => l,
                None => proxy::listener(addr)
                    .map_err(|e| StartError::Io("binding a worker's listener", e))?,
            };
            let runner: GateRunner = runtime.runner(w as u32, evidence_sink(w as u32)?);
            let submitter = complete.submitter().map_err(|e| {
                StartError::Io("a complete-pool lane", io::Error::other(e.to_string()))
            })?;
            let worker = proxy::WorkerSetup {
                index: w,
                core: (shared.config.pin).then_some(w % cores),
                shared: Arc::clone(&shared),
                runner,
                complete: submitter,
                listener,
                stop: stop_rx.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("odock-gw-{w}"))
                .spawn(move || proxy::run(worker))
                .map_err(|e| StartError::Io("spawning a gateway thread", e))?;
            threads.push(thread);
        }
        Ok(Gateway {
            addr,
            shared,
            link,
            stop,
            threads,
            complete: Some(complete),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The dataplane runtime (policy version, per-plugin counters and
    /// latency).
    pub fn runtime(&self) -> &Runtime {
        self.link.runtime()
    }

    /// The link to control (policy status, evidence rings).
    pub fn control_link(&self) -> &ControlLink {
        &self.link
    }

    /// Waits until policy `version` or later is installed.
    pub fn wait_for_policy(&self, version: u64, timeout: Duration) -> bool {
        self.link.wait_for_version(version, timeout)
    }

    /// The counters and the gate overhead so far.
    pub fn stats(&self) -> GatewayStats {
        let c = &self.shared.counters;
        let mut gate_overhead = Histogram::default();
        for h in &self.shared.overhead {
            gate_overhead.merge(&h.lock().unwrap_or_else(PoisonError::into_inner));
        }
        GatewayStats {
            requests: c.requests.load(Ordering::Relaxed),
            unauthorized: c.unauthorized.load(Ordering::Relaxed),
            blocked: c.blocked.load(Ordering::Relaxed),
            paused: c.paused.load(Ordering::Relaxed),
            streamed: c.streamed.load(Ordering::Relaxed),
            upstream_errors: c.upstream_errors.load(Ordering::Relaxed),
            completes_dropped: c.completes_dropped.load(Ordering::Relaxed),
            gate_overhead,
        }
    }

    /// Stops accepting, lets open exchanges finish (at most 5 s), stops the
    /// threads and then the complete pool (which runs what was submitted).
    /// Evidence rings stay in the run directory for control to drain.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    /// Stops the traffic as [`Gateway::shutdown`] does, but keeps the link
    /// to control: its status file keeps naming the evidence rings, so a
    /// caller can wait for control to drain them before dropping the
    /// gateway (which removes the status file).
    pub fn stop_traffic(&mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(pool) = self.complete.take() {
            pool.shutdown();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.addr)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}
