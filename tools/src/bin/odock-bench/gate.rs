//! `odock-bench gate`: the gate API's figures against TARGETS.md, each
//! beside a baseline from the same run (workloads in
//! `odock_tools::bench::gate`).

use odock_tools::bench::gate::{self as work, ANSWER_BYTES, Mode};
use odock_tools::bench::ring as ring_work;
use odock_tools::bench::{BenchResult, CpuSample, Cpus, Latency, median};

use super::{Out, Row};

/// How much work each case does.
struct Scale {
    runs: usize,
    /// Frames per inline run.
    inline: usize,
    /// Busy-polled round trips per run.
    trips: usize,
    /// Round trips per run of the sleeping and socket cases.
    slow_trips: usize,
    /// Frames per worker per throughput run.
    frames: u64,
}

impl Scale {
    fn new(quick: bool, runs: Option<usize>) -> Self {
        let s = if quick {
            Scale {
                runs: 3,
                inline: 100_000,
                trips: 20_000,
                slow_trips: 1_500,
                frames: 50_000,
            }
        } else {
            Scale {
                runs: 5,
                inline: 1_000_000,
                trips: 100_000,
                slow_trips: 10_000,
                frames: 400_000,
            }
        };
        Scale {
            runs: runs.unwrap_or(s.runs).max(1),
            ..s
        }
    }
}

/// Frames a throughput submitter keeps in flight per worker.
const IN_FLIGHT: usize = 64;

fn med(v: &[Latency], f: fn(&Latency) -> f64) -> f64 {
    median(&v.iter().map(f).collect::<Vec<_>>())
}

fn latency_row(
    case: &str,
    bytes: usize,
    ours: &[Latency],
    baseline: &str,
    base: &[Latency],
) -> Row {
    let p50 = med(ours, |l| l.p50() as f64);
    let bp50 = med(base, |l| l.p50() as f64);
    let rps = med(ours, Latency::per_sec);
    let brps = med(base, Latency::per_sec);
    Row {
        case: case.into(),
        record_bytes: bytes,
        producers: 1,
        records_per_sec: rps,
        baseline: baseline.into(),
        baseline_records_per_sec: brps,
        ratio: rps / brps,
        p50_ns: Some(p50 as u64),
        p99_ns: Some(med(ours, |l| l.p99() as f64) as u64),
        baseline_p50_ns: Some(bp50 as u64),
        baseline_p99_ns: Some(med(base, |l| l.p99() as f64) as u64),
        latency_ratio: Some(p50 / bp50),
        runs: ours.len(),
        ..Row::default()
    }
}

/// Runs the gate cases whose group name contains `only` (inline, submitted,
/// workers).
pub fn run(json: bool, quick: bool, only: Option<&str>, runs: Option<usize>) -> BenchResult<()> {
    let scale = Scale::new(quick, runs);
    let out = Out { json };
    let cpus = Cpus::two();
    let wanted = |group: &str| only.is_none_or(|o| group.contains(o));
    out.header("gate", "ours", scale.runs, quick);
    let dir = std::env::temp_dir().join(format!("odock-bench-gate-{}", std::process::id()));
    let plugin = work::build_probe(&dir)?;
    let result = cases(&out, &scale, cpus, &plugin, wanted);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn cases(
    out: &Out,
    scale: &Scale,
    cpus: Cpus,
    plugin: &std::path::Path,
    wanted: impl Fn(&str) -> bool,
) -> BenchResult<()> {
    let bytes = work::submission_bytes();
    let chain4 = work::noop_runtime(plugin, 4)?;
    let empty = work::noop_runtime(plugin, 0)?;

    if wanted("inline") {
        let since = CpuSample::now();
        let n = scale.inline;
        let (mut chain, mut direct, mut bare, mut abi, mut clock) =
            (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..scale.runs {
            chain.push(work::inline_chain(&chain4, n, cpus.a)?);
            direct.push(work::direct_chain(4, n, cpus.a)?);
            bare.push(work::inline_chain(&empty, n, cpus.a)?);
            abi.push(work::abi_calls(plugin, 4, n, cpus.a)?);
            clock.push(work::clock_overhead(n));
        }
        let clock_ns = med(&clock, |l| l.p50() as f64);
        let note = format!(
            "runner.request over a 2-header, 114 B chat frame, 4 bindings of the C probe with an empty config; \
             each sample includes one clock read ({clock_ns:.0} ns p50); 0 allocations per frame: tests/runtime_alloc.rs"
        );
        let row = latency_row("inline_chain_4_noop", bytes, &chain, "direct_4_fn", &direct)
            .load(since)
            .cpus(format!("cpu {}", cpus.a));
        let met = row.p50_ns.is_some_and(|p| p <= 150) && row.p99_ns.is_some_and(|p| p <= 1000);
        out.row(&row.target("p50 <= 150 ns, p99 <= 1 µs", met).note(&note));
        let row = latency_row("inline_chain_0", bytes, &bare, "clock_read", &clock)
            .load(since)
            .cpus(format!("cpu {}", cpus.a));
        out.row(&row.note(
            "breakdown: runner.request with an empty chain (policy check, chain lookup, parse-once index of the body)",
        ));
        let row = latency_row("abi_4_calls", bytes, &abi, "direct_4_fn", &direct)
            .load(since)
            .cpus(format!("cpu {}", cpus.a));
        out.row(&row.note(
            "breakdown: 4 x PluginInstance::call_gate on a prebuilt frame view, no runner (frame view, masking, call slot, verdict check)",
        ));
    }

    if wanted("submitted") {
        let since = CpuSample::now();
        let (mut busy, mut sleeping_worker, mut sleeping, mut floor, mut futex, mut sock) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut bare = vec![];
        for _ in 0..scale.runs {
            bare.push(work::submitted_round_trip_with(
                &empty,
                scale.trips,
                cpus,
                Mode::Busy,
                b"",
            )?);
            busy.push(work::submitted_round_trip(
                &empty,
                scale.trips,
                cpus,
                Mode::Busy,
            )?);
            floor.push(ring_work::round_trip_atomics(scale.trips, cpus)?);
            sock.push(work::socket_round_trip(
                scale.slow_trips,
                cpus,
                bytes,
                ANSWER_BYTES,
            )?);
            sleeping_worker.push(work::submitted_round_trip(
                &empty,
                scale.slow_trips,
                cpus,
                Mode::SleepingWorker,
            )?);
            sleeping.push(work::submitted_round_trip(
                &empty,
                scale.slow_trips,
                cpus,
                Mode::Sleeping,
            )?);
            futex.push(ring_work::round_trip_futex(scale.slow_trips, cpus)?);
        }
        let where_ = format!("submitter cpu {}, worker cpu {}", cpus.a, cpus.b);
        let frame_note = "request frame of 2 headers and a 114 B chat body, empty chain (runner and index still run); answer: a 40 B continue";
        let row = latency_row("submitted_busy", bytes, &busy, "atomic_ping_pong", &floor)
            .load(since)
            .cpus(where_.clone());
        let met = row.latency_ratio.is_some_and(|l| l <= 3.0);
        out.row(&row.target("<= 3x floor p50", met).note(frame_note));
        let bare_bytes = bytes - work::BODY.len();
        let row = latency_row(
            "submitted_busy_no_body",
            bare_bytes,
            &bare,
            "atomic_ping_pong",
            &floor,
        )
        .load(since)
        .cpus(where_.clone());
        out.row(&row.note(
            "breakdown: the same frame without its body (the index has nothing to parse): mostly the transport",
        ));
        let row = latency_row("submitted_busy", bytes, &busy, "unix_seqpacket", &sock)
            .load(since)
            .cpus(where_.clone());
        let met = row.latency_ratio.is_some_and(|l| l <= 1.0 / 20.0);
        out.row(
            &row.target(">= 20x faster p50", met).note(
                "socket: the same record length each way, both sides asleep in recv when idle",
            ),
        );
        let row = latency_row(
            "submitted_sleeping_worker",
            bytes,
            &sleeping_worker,
            "unix_seqpacket",
            &sock,
        )
        .load(since)
        .cpus(where_.clone());
        let met = row.latency_ratio.is_some_and(|l| l <= 0.5);
        out.row(&row.target(">= 2x faster p50", met).note(
            "worker sleeps on its submission ring's futex between frames (woken by the commit); the waiter busy-polls",
        ));
        let row = latency_row(
            "submitted_sleeping",
            bytes,
            &sleeping,
            "unix_seqpacket",
            &sock,
        )
        .load(since)
        .cpus(where_.clone());
        let met = row.latency_ratio.is_some_and(|l| l <= 0.5);
        out.row(&row.target(">= 2x faster p50", met).note(
            "both sleep: worker on the submission futex, waiter parked until the dispatcher (asleep on the completion futex) unparks it: 3 wake-ups",
        ));
        let row = latency_row(
            "submitted_sleeping",
            bytes,
            &sleeping,
            "futex_ping_pong",
            &futex,
        )
        .load(since)
        .cpus(where_);
        out.row(&row.note("floor of a sleeping handoff: two futex wake-ups per round trip"));
    }

    if wanted("workers") {
        let since = CpuSample::now();
        let (mut one, mut two) = (vec![], vec![]);
        let warm = scale.frames / 10;
        work::workers_throughput(&chain4, &[cpus.b], warm, IN_FLIGHT)?;
        work::workers_throughput(&chain4, &[cpus.a, cpus.b], warm, IN_FLIGHT)?;
        for _ in 0..scale.runs {
            one.push(work::workers_throughput(
                &chain4,
                &[cpus.b],
                2 * scale.frames,
                IN_FLIGHT,
            )?);
            two.push(work::workers_throughput(
                &chain4,
                &[cpus.a, cpus.b],
                scale.frames,
                IN_FLIGHT,
            )?);
        }
        // Frames, not bytes, are what the workers move: no byte rates.
        let row = Row {
            bytes_per_sec: None,
            baseline_bytes_per_sec: None,
            ..Row::throughput("workers_2", bytes, 2, &two, "workers_1", &one)
        }
        .load(since);
        let met = row.ratio >= 1.8;
        out.row(
            &row.target(">= 1.8x 1 worker", met)
                .cpus(format!(
                    "workers pinned to cpus {} and {} (1 worker: cpu {}); submitters unpinned",
                    cpus.a, cpus.b, cpus.b
                ))
                .note(&format!(
                    "4 no-op plugins per frame; one submitting thread per worker keeps a window of {IN_FLIGHT} frames in flight; \
                     on 2 cores, 2 workers + 2 submitters + dispatchers oversubscribe the machine"
                )),
        );
    }
    Ok(())
}
