//! Gate workloads: a chain run inline against direct calls of the same
//! functions, frames submitted to pinned workers against the atomic
//! ping-pong floor and a Unix socket pair, and 1 against 2 workers.
//!
//! The plugin is the C probe of the runtime tests (`tests/plugin_sources/
//! probe.c`) with an empty config: it is handed the frame, runs no command
//! and continues. Its source is embedded here and built with the system C
//! compiler (`cc`) into a temporary directory when a workload needs it, so
//! the runtime loads it the way it loads any plugin (pinned, memfd,
//! `dlopen`).
//!
//! Every answer is checked (verdict, and for the socket pair the bytes), so
//! a workload that loses or mixes up a frame fails instead of reporting a
//! figure.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use odock_dataplane::plugin::{
    Binding, Decision, Evidence, EvidenceSink, FailureMode, GateOutput, Grant, LoadedPlugin,
    NullSink, Pin, PluginSpec,
};
use odock_dataplane::runtime::policy::{BindingSpec, PolicySpec, Scope};
use odock_dataplane::runtime::{
    DecisionRecord, FollowUpRecord, GateFrame, PluginSource, PoolConfig, RequestFrame, Runtime,
    RuntimeSink, SkipRecord, Verdict, WorkerPool,
};
use odock_plugin_abi::view::{self, Header};
use odock_plugin_abi::{Capabilities, Capability, Gate};

use super::{BenchError, BenchResult, Cpus, Latency, Throughput, pin_to_cpu};

const PROBE_C: &str = include_str!("../../../tests/plugin_sources/probe.c");
const HEADER_H: &str = include_str!("../../../plugin-abi/include/odock_plugin.h");

/// The request body every gate workload sends (an OpenAI chat request).
pub const BODY: &[u8] = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#;

/// The request headers every gate workload sends.
pub fn headers() -> [Header<'static>; 2] {
    [
        Header::new(b"content-type", b"application/json"),
        Header::new(b"x-request-id", b"abc"),
    ]
}

/// The request frame every gate workload sends.
pub fn request<'a>(headers: &'a [Header<'a>], id: u64) -> RequestFrame<'a> {
    RequestFrame {
        request_id: id,
        tenant: Some("acme"),
        environment: Some("prod"),
        api: odock_dataplane::index::ApiKind::OpenAiChat,
        headers,
        body: BODY,
        ..RequestFrame::default()
    }
}

/// Builds the probe plugin with `cc` into `dir`; returns the library.
///
/// # Errors
/// When the compiler is missing or fails.
pub fn build_probe(dir: &Path) -> BenchResult<PathBuf> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("probe.c"), PROBE_C)?;
    std::fs::write(dir.join("odock_plugin.h"), HEADER_H)?;
    let lib = dir.join("libodock_bench_probe.so");
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .current_dir(dir)
        .args(["-O2", "-fPIC", "-shared", "-std=c99", "-I."])
        .arg("-o")
        .arg(&lib)
        .arg("probe.c")
        .output()
        .map_err(|e| BenchError(format!("cannot run the C compiler (cc): {e}")))?;
    if !out.status.success() {
        return Err(BenchError(format!(
            "building the probe plugin failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(lib)
}

fn grant() -> Grant {
    Grant::new(Capabilities::ALL.without(Capabilities::of(&[
        Capability::CallIntegration,
        Capability::QueueFollowup,
    ])))
}

/// A runtime whose request chain is `plugins` bindings of the probe at
/// `path`, each with an empty config (a no-op).
///
/// # Errors
/// When the plugin does not load.
pub fn noop_runtime(path: &Path, plugins: usize) -> BenchResult<Runtime> {
    let source = PluginSource {
        name: "probe".into(),
        pin: Pin::of_file(path)?,
        path: path.to_owned(),
    };
    let bindings = (0..plugins)
        .map(|i| BindingSpec {
            plugin: "probe".into(),
            scope: Scope::default(),
            enabled: true,
            priority: [Some(i as i32), None, None],
            grant: grant(),
            config: Vec::new(),
            failure_mode: FailureMode::Enforce,
            time_budget: Duration::from_secs(1),
        })
        .collect();
    let runtime = Runtime::new();
    runtime
        .install(
            PolicySpec {
                version: 1,
                bindings,
            },
            &[source],
        )
        .map_err(|e| BenchError(e.to_string()))?;
    Ok(runtime)
}

/// A runtime sink that keeps nothing.
#[derive(Debug, Default)]
pub struct Discard;

impl EvidenceSink for Discard {
    fn record(&mut self, _: &Evidence<'_>) {}
}

impl RuntimeSink for Discard {
    fn decision(&mut self, d: &DecisionRecord<'_>) {
        black_box(d.request_id);
    }
    fn skip(&mut self, _: &SkipRecord<'_>) {}
    fn follow_up(&mut self, _: &FollowUpRecord<'_>) {}
}

/// Times `n` calls of `f`, one sample per call: the difference of
/// consecutive clock reads, so each sample includes one clock read (see
/// [`clock_overhead`]).
fn per_call(n: usize, mut f: impl FnMut(u64)) -> Latency {
    let mut samples = Vec::with_capacity(n);
    let t0 = Instant::now();
    let mut last = t0;
    for i in 0..n {
        f(i as u64);
        let now = Instant::now();
        samples.push((now - last).as_nanos() as u64);
        last = now;
    }
    Latency::new(samples, t0.elapsed())
}

/// What one sample of the inline workloads pays for reading the clock.
pub fn clock_overhead(n: usize) -> Latency {
    per_call(n, |i| {
        black_box(i);
    })
}

/// `runner.request` over the workload frame, `n` times on `cpu`, after a
/// warm-up (buffers grown, policy adopted).
///
/// # Errors
/// When pinning fails or a verdict is not `Continue`.
pub fn inline_chain(runtime: &Runtime, n: usize, cpu: usize) -> BenchResult<Latency> {
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(cpu)?;
            let mut runner = runtime.runner(0, Box::new(Discard));
            let headers = headers();
            let frame = request(&headers, 1);
            for _ in 0..1000 {
                runner.request(&frame);
            }
            let mut bad = 0u64;
            let lat = per_call(n, |_| {
                let out = runner.request(black_box(&frame));
                bad += u64::from(out.verdict != Verdict::Continue || out.changed());
            });
            if bad > 0 {
                return Err(BenchError(format!(
                    "{bad} frames were not continued unchanged"
                )));
            }
            Ok(lat)
        })
        .join()
        .map_err(|_| BenchError("the inline workload panicked".into()))?
    })
}

/// A no-op gate function, as a plugin's logic would be called in Rust.
#[inline(never)]
fn noop(frame: &view::Frame<'_>) -> bool {
    black_box(frame.request_id);
    true
}

/// The baseline: the same 4 (or `plugins`) functions called directly on
/// the same frame view.
///
/// # Errors
/// When pinning fails.
pub fn direct_chain(plugins: usize, n: usize, cpu: usize) -> BenchResult<Latency> {
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(cpu)?;
            let headers = headers();
            let mut frame = view::Frame::new(Gate::Request, 1);
            frame.request = view::Request {
                headers: &headers,
                body: BODY,
            };
            let fns: Vec<fn(&view::Frame<'_>) -> bool> = vec![noop; plugins];
            let mut ok = 0u64;
            let lat = per_call(n, |_| {
                for f in black_box(&fns) {
                    if !f(black_box(&frame)) {
                        break;
                    }
                    ok += 1;
                }
            });
            black_box(ok);
            Ok(lat)
        })
        .join()
        .map_err(|_| BenchError("the direct workload panicked".into()))?
    })
}

/// Part of the inline cost: `plugins` plugin calls through the ABI
/// (`PluginInstance::call_gate`) on a prebuilt frame view, without the
/// runner around them.
///
/// # Errors
/// When the plugin does not load or pinning fails.
pub fn abi_calls(path: &Path, plugins: usize, n: usize, cpu: usize) -> BenchResult<Latency> {
    let loaded = LoadedPlugin::load(&PluginSpec {
        name: "probe".into(),
        path: path.to_owned(),
        pin: Pin::of_file(path)?,
        grant: grant(),
    })
    .map_err(|e| BenchError(e.to_string()))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(cpu)?;
            let mut sink = NullSink;
            let mut instances = (0..plugins)
                .map(|_| {
                    loaded
                        .instantiate(Binding::new(0, &b""[..], FailureMode::Enforce), &mut sink)
                        .map_err(|e| BenchError(format!("init: {e:?}")))
                })
                .collect::<BenchResult<Vec<_>>>()?;
            let headers = headers();
            let mut frame = view::Frame::new(Gate::Request, 1);
            frame.request = view::Request {
                headers: &headers,
                body: BODY,
            };
            let mut out = GateOutput::new();
            let mut bad = 0u64;
            let lat = per_call(n, |_| {
                for instance in instances.iter_mut() {
                    let d = instance.call_gate(black_box(&frame), &mut out, &mut sink);
                    bad += u64::from(d != Decision::Continue);
                }
            });
            if bad > 0 {
                return Err(BenchError(format!("{bad} calls did not continue")));
            }
            Ok(lat)
        })
        .join()
        .map_err(|_| BenchError("the ABI workload panicked".into()))?
    })
}

/// How a submitted round trip waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The worker and the waiter busy-poll.
    Busy,
    /// The worker sleeps on its ring's futex between frames; the waiter
    /// busy-polls for its answer.
    SleepingWorker,
    /// Both sleep: the worker on its ring's futex, the waiter parked until
    /// the dispatcher (asleep on the completion ring's futex) wakes it.
    Sleeping,
}

/// A pool of one worker on `cpus.b` running `runtime`'s chain, set up for
/// `mode`.
///
/// # Errors
/// When the pool does not start.
pub fn pool(runtime: &Runtime, cores: Vec<usize>, mode: Mode) -> BenchResult<WorkerPool> {
    let long = Duration::from_secs(3600);
    let (worker_spin, waiter_spin) = match mode {
        Mode::Busy => (long, long),
        Mode::SleepingWorker => (Duration::ZERO, long),
        Mode::Sleeping => (Duration::ZERO, Duration::ZERO),
    };
    let config = PoolConfig {
        cores: Some(cores),
        worker_spin,
        waiter_spin,
        ..PoolConfig::default()
    };
    WorkerPool::start(runtime, config, |_| Box::new(Discard)).map_err(|e| BenchError(e.to_string()))
}

/// The length of the workload frame's submission record.
pub fn submission_bytes() -> usize {
    let h = headers();
    GateFrame::new(request(&h, 0))
        .encoded_len()
        .expect("the workload frame fits a record")
}

/// The length of an unchanged "continue" completion.
pub const ANSWER_BYTES: usize = 40;

/// `trips` submitted round trips from a thread on `cpus.a` to a worker on
/// `cpus.b`, one at a time.
///
/// # Errors
/// When pinning or the pool fails, or an answer is not `Continue`.
pub fn submitted_round_trip(
    runtime: &Runtime,
    trips: usize,
    cpus: Cpus,
    mode: Mode,
) -> BenchResult<Latency> {
    submitted_round_trip_with(runtime, trips, cpus, mode, BODY)
}

/// As [`submitted_round_trip`], with `body` for the workload's body (an
/// empty body leaves the parse-once index next to nothing to do, which
/// shows the transport's own share).
///
/// # Errors
/// As for [`submitted_round_trip`].
pub fn submitted_round_trip_with(
    runtime: &Runtime,
    trips: usize,
    cpus: Cpus,
    mode: Mode,
    body: &[u8],
) -> BenchResult<Latency> {
    let pool = pool(runtime, vec![cpus.b], mode)?;
    let submitter = pool.submitter();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(cpus.a)?;
            let headers = headers();
            let warm = trips.min(1000);
            let mut samples = Vec::with_capacity(trips);
            let mut t0 = Instant::now();
            for i in 0..warm + trips {
                if i == warm {
                    t0 = Instant::now();
                }
                let frame = GateFrame::new(RequestFrame {
                    body,
                    ..request(&headers, i as u64)
                });
                let start = Instant::now();
                let answer = submitter
                    .request(0, &frame)
                    .map_err(|e| BenchError(e.to_string()))?;
                if answer.verdict() != Verdict::Continue {
                    return Err(BenchError(format!("frame {i} was not continued")));
                }
                drop(answer);
                if i >= warm {
                    samples.push(start.elapsed().as_nanos() as u64);
                }
            }
            Ok(Latency::new(samples, t0.elapsed()))
        })
        .join()
        .map_err(|_| BenchError("the submitting thread panicked".into()))?
    });
    pool.shutdown();
    result
}

/// The same frame over a Unix `SOCK_SEQPACKET` pair: the client on
/// `cpus.a` sends the `request_len` bytes of a submission record, the server
/// on `cpus.b` reads it, checks it and answers `answer_len` bytes. Both
/// sleep in `recv` when idle.
///
/// # Errors
/// When a socket call or a check fails.
pub fn socket_round_trip(
    trips: usize,
    cpus: Cpus,
    request_len: usize,
    answer_len: usize,
) -> BenchResult<Latency> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
    let (client, server) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let warm = trips.min(200);
    let total = warm + trips;
    std::thread::scope(|s| {
        let server = s.spawn(move || -> BenchResult<()> {
            pin_to_cpu(cpus.b)?;
            let mut buf = vec![0u8; request_len + 64];
            let answer = vec![7u8; answer_len];
            for i in 0..total {
                let (n, _) = rustix::net::recv(&server, &mut buf[..], RecvFlags::empty())?;
                let seq = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
                if n != request_len || seq != i as u64 {
                    return Err(BenchError(format!(
                        "socket frame {i}: {n} bytes, seq {seq}"
                    )));
                }
                rustix::net::send(&server, &answer, SendFlags::empty())?;
            }
            Ok(())
        });
        let client = s.spawn(move || -> BenchResult<Latency> {
            pin_to_cpu(cpus.a)?;
            let mut frame = vec![1u8; request_len];
            let mut buf = vec![0u8; answer_len + 64];
            let mut samples = Vec::with_capacity(trips);
            let mut t0 = Instant::now();
            for i in 0..total {
                if i == warm {
                    t0 = Instant::now();
                }
                let start = Instant::now();
                frame[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                rustix::net::send(&client, &frame, SendFlags::empty())?;
                let (n, _) = rustix::net::recv(&client, &mut buf[..], RecvFlags::empty())?;
                if n != answer_len {
                    return Err(BenchError(format!("socket answer {i}: {n} bytes")));
                }
                if i >= warm {
                    samples.push(start.elapsed().as_nanos() as u64);
                }
            }
            Ok(Latency::new(samples, t0.elapsed()))
        });
        let lat = client
            .join()
            .map_err(|_| BenchError("socket client panicked".into()))?;
        server
            .join()
            .map_err(|_| BenchError("socket server panicked".into()))??;
        lat
    })
}

/// Frames per second through `cores.len()` workers (one per core), each fed
/// by its own submitting thread that keeps `in_flight` frames outstanding
/// (a sliding window: it waits for the oldest answer, parked, then submits
/// the next frame).
///
/// # Errors
/// When the pool fails or an answer is not `Continue`.
pub fn workers_throughput(
    runtime: &Runtime,
    cores: &[usize],
    frames_per_worker: u64,
    in_flight: usize,
) -> BenchResult<Throughput> {
    let config = PoolConfig {
        cores: Some(cores.to_vec()),
        slots: in_flight.max(1) * 2,
        // A submitter shares a core with a worker (2 cores): it must not
        // spin while it waits, or it takes the core its worker needs.
        waiter_spin: Duration::ZERO,
        ..PoolConfig::default()
    };
    let pool = WorkerPool::start(runtime, config, |_| Box::new(Discard))
        .map_err(|e| BenchError(e.to_string()))?;
    let submitter = pool.submitter();
    let t0 = Instant::now();
    let result: BenchResult<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cores.len())
            .map(|w| {
                let submitter = &submitter;
                s.spawn(move || -> BenchResult<u64> {
                    let headers = headers();
                    let mut window = std::collections::VecDeque::with_capacity(in_flight);
                    let mut answered = 0u64;
                    for i in 0..frames_per_worker {
                        if window.len() == in_flight {
                            answered += check(window.pop_front())?;
                        }
                        let frame = GateFrame::new(request(&headers, i));
                        window.push_back(
                            submitter
                                .submit(w, &frame)
                                .map_err(|e| BenchError(e.to_string()))?,
                        );
                    }
                    while !window.is_empty() {
                        answered += check(window.pop_front())?;
                    }
                    Ok(answered)
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h
                .join()
                .map_err(|_| BenchError("a submitting thread panicked".into()))??;
        }
        Ok(total)
    });
    let elapsed = t0.elapsed();
    let stats = pool.shutdown();
    let records = result?;
    let frames: u64 = stats.iter().map(|s| s.frames).sum();
    if frames != records {
        return Err(BenchError(format!(
            "{records} answers, but the workers ran {frames} frames"
        )));
    }
    Ok(Throughput {
        records,
        bytes: records * submission_bytes() as u64,
        elapsed,
    })
}

/// Waits for a ticket's answer and checks it: 1 when it is `Continue`.
fn check(ticket: Option<odock_dataplane::runtime::Ticket<'_>>) -> BenchResult<u64> {
    let ticket = ticket.ok_or_else(|| BenchError("an empty window".into()))?;
    let answer = ticket.wait().map_err(|e| BenchError(e.to_string()))?;
    if answer.verdict() != Verdict::Continue {
        return Err(BenchError("a frame was not continued".into()));
    }
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every workload at a tiny scale (they check their own answers).
    #[test]
    fn workloads_run_at_a_tiny_scale() {
        let dir = std::env::temp_dir().join(format!("odock-gate-test-{}", std::process::id()));
        let lib = match build_probe(&dir) {
            Ok(lib) => lib,
            Err(e) => panic!("{e}"),
        };
        let cpus = Cpus::two();
        let runtime = noop_runtime(&lib, 4).unwrap();
        assert_eq!(inline_chain(&runtime, 200, cpus.a).unwrap().count(), 200);
        assert_eq!(direct_chain(4, 200, cpus.a).unwrap().count(), 200);
        assert_eq!(abi_calls(&lib, 4, 200, cpus.a).unwrap().count(), 200);
        for mode in [Mode::Busy, Mode::SleepingWorker, Mode::Sleeping] {
            let lat = submitted_round_trip(&runtime, 200, cpus, mode).unwrap();
            assert_eq!(lat.count(), 200);
        }
        let bytes = submission_bytes();
        assert_eq!(
            socket_round_trip(100, cpus, bytes, ANSWER_BYTES)
                .unwrap()
                .count(),
            100
        );
        let t = workers_throughput(&runtime, &[cpus.a, cpus.b], 500, 16).unwrap();
        assert_eq!(t.records, 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
