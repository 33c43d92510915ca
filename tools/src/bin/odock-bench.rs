//! `odock-bench`: the project's benchmarks, each figure set beside a baseline
//! measured in the same run.
//!
//! `odock-bench gate [--json] [--quick]` measures the gate API: inline chains,
//! submitted round trips and worker scaling.
//!
//! `odock-bench ring [--json] [--quick]` measures the shared-memory ring (see
//! `docs/BENCHMARKS.md` for what each case means and the latest figures).
#![forbid(unsafe_code)]

#[path = "odock-bench/gate.rs"]
mod gate;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use std::time::Duration;

use odock_dataplane::ring::PollBackoff;
use odock_tools::bench::ring::{self as work, ChildMode, Commit, Idle, LANE_BYTES, Load, Waiting};
use odock_tools::bench::{BenchResult, CpuSample, Cpus, Latency, Throughput, Touch, median};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "odock-bench",
    about = "Odock benchmarks: each figure beside a baseline from the same run"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The shared-memory ring against crossbeam, a Unix socket pair, the
    /// atomic ping-pong floor and memcpy.
    Ring {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// A smaller run (under 20 s) for a quick look or CI.
        #[arg(long)]
        quick: bool,
        /// Only the case groups whose name contains this (spsc, round_trip,
        /// mpsc, cross_process, bulk).
        #[arg(long)]
        only: Option<String>,
        /// Runs per case (default: 3 quick, 7 full); the figures are medians.
        #[arg(long)]
        runs: Option<usize>,
    },
    /// Evidence drained from a ring into control's durable log (io_uring and
    /// pwrite), against JSON lines with the same fsync cadence.
    Evidence {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// A smaller run (under 20 s) for a quick look or CI.
        #[arg(long)]
        quick: bool,
        /// Runs per case (default: 3 quick, 5 full); the figures are medians.
        #[arg(long)]
        runs: Option<usize>,
        /// Where the log and the JSON lines go (default: the current
        /// directory; a tmpfs would make fsync free).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// The gate API: an inline chain against direct calls, submitted round
    /// trips against the atomic floor and a Unix socket pair, 1 against 2
    /// workers.
    Gate {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// A smaller run (under 20 s) for a quick look or CI.
        #[arg(long)]
        quick: bool,
        /// Only the case groups whose name contains this (inline,
        /// submitted, workers).
        #[arg(long)]
        only: Option<String>,
        /// Runs per case (default: 3 quick, 5 full); the figures are medians.
        #[arg(long)]
        runs: Option<usize>,
    },
    /// The child side of the cross-process cases (internal).
    #[command(hide = true)]
    RingChild {
        #[arg(long)]
        mode: Mode,
        #[arg(long)]
        len: usize,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        cpu: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Ring,
    Socket,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Ring {
            json,
            quick,
            only,
            runs,
        } => run_ring(json, quick, only.as_deref(), runs),
        Cmd::Gate {
            json,
            quick,
            only,
            runs,
        } => gate::run(json, quick, only.as_deref(), runs),
        Cmd::Evidence {
            json,
            quick,
            runs,
            dir,
        } => run_evidence(json, quick, runs, dir),
        Cmd::RingChild {
            mode,
            len,
            count,
            cpu,
        } => {
            let mode = match mode {
                Mode::Ring => ChildMode::Ring,
                Mode::Socket => ChildMode::Socket,
            };
            work::child_main(mode, len, count, cpu)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("odock-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long the `spsc_idle_backoff` consumer spins before polling an empty
/// ring again.
const IDLE_BACKOFF: Duration = Duration::from_micros(1);

/// The ring's own poll backoff in the tuned rows: after a batch that ended
/// at a BUSY record, and after one that found the ring empty.
const POLL_BACKOFF: PollBackoff = PollBackoff {
    busy: Duration::from_nanos(200),
    empty: Duration::from_micros(1),
};

/// Records per `Producer::notify` in the tuned rows (quiet commits between).
const NOTIFY_BURST: u64 = 64;

/// How long each side of the adaptive round trip polls before it sleeps.
const WAIT_SPIN: Duration = Duration::from_micros(50);

/// How much work each case does.
struct Scale {
    runs: usize,
    /// Ring records of 64 B per SPSC run (fewer for larger records).
    spsc: u64,
    /// Channel records of 64 B per crossbeam run.
    crossbeam: u64,
    /// Busy-polled round trips per run.
    trips: usize,
    /// Round trips per run of the sleeping and socket cases.
    slow_trips: usize,
    /// Records per cross-process ring run, and per socket run.
    cross_ring: u64,
    cross_socket: u64,
    /// 4 KiB records per bulk run.
    bulk: u64,
}

impl Scale {
    fn new(quick: bool, runs: Option<usize>) -> Self {
        let s = if quick {
            Scale {
                runs: 3,
                spsc: 2_000_000,
                crossbeam: 250_000,
                trips: 20_000,
                slow_trips: 3_000,
                cross_ring: 2_000_000,
                cross_socket: 150_000,
                bulk: 150_000,
            }
        } else {
            Scale {
                runs: 7,
                spsc: 16_000_000,
                crossbeam: 1_500_000,
                trips: 200_000,
                slow_trips: 15_000,
                cross_ring: 16_000_000,
                cross_socket: 800_000,
                bulk: 1_000_000,
            }
        };
        Scale {
            runs: runs.unwrap_or(s.runs).max(1),
            ..s
        }
    }

    /// Scales a 64-byte record count to `len`-byte records (by the square
    /// root of the size ratio: larger records move fewer per second).
    fn sized(count: u64, len: usize) -> u64 {
        let factor = ((len / 64).max(1) as f64).sqrt();
        ((count as f64 / factor) as u64).max(1_000)
    }
}

/// One line of output.
#[derive(Serialize, Default)]
struct Row {
    case: String,
    record_bytes: usize,
    producers: usize,
    records_per_sec: f64,
    baseline: String,
    baseline_records_per_sec: f64,
    /// `records_per_sec / baseline_records_per_sec`: above 1, the ring is faster.
    ratio: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_bytes_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p50_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_p50_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_p99_ns: Option<u64>,
    /// `p50_ns / baseline_p50_ns`: below 1, the ring is faster.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ratio: Option<f64>,
    /// Runs of each side; every figure is the median over them.
    runs: usize,
    /// Where each side ran.
    cpus: String,
    /// How much of the machine (percent of all CPUs) other processes kept
    /// busy while this case ran: above a few percent, distrust the figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    other_load_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meets_target: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl Row {
    fn throughput(
        case: &str,
        len: usize,
        producers: usize,
        ring: &[Throughput],
        baseline: &str,
        base: &[Throughput],
    ) -> Row {
        let rps = median(
            &ring
                .iter()
                .map(Throughput::records_per_sec)
                .collect::<Vec<_>>(),
        );
        let brps = median(
            &base
                .iter()
                .map(Throughput::records_per_sec)
                .collect::<Vec<_>>(),
        );
        let bps = median(
            &ring
                .iter()
                .map(Throughput::bytes_per_sec)
                .collect::<Vec<_>>(),
        );
        let bbps = median(
            &base
                .iter()
                .map(Throughput::bytes_per_sec)
                .collect::<Vec<_>>(),
        );
        Row {
            case: case.into(),
            record_bytes: len,
            producers,
            records_per_sec: rps,
            baseline: baseline.into(),
            baseline_records_per_sec: brps,
            ratio: rps / brps,
            bytes_per_sec: Some(bps),
            baseline_bytes_per_sec: Some(bbps),
            runs: ring.len(),
            ..Row::default()
        }
    }

    fn latency(case: &str, ring: &[Latency], baseline: &str, base: &[Latency]) -> Row {
        let med =
            |v: &[Latency], f: fn(&Latency) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
        let p50 = med(ring, |l| l.p50() as f64);
        let bp50 = med(base, |l| l.p50() as f64);
        let rps = med(ring, Latency::per_sec);
        let brps = med(base, Latency::per_sec);
        Row {
            case: case.into(),
            record_bytes: work::FRAME_BYTES,
            producers: 1,
            records_per_sec: rps,
            baseline: baseline.into(),
            baseline_records_per_sec: brps,
            ratio: rps / brps,
            p50_ns: Some(p50 as u64),
            p99_ns: Some(med(ring, |l| l.p99() as f64) as u64),
            baseline_p50_ns: Some(bp50 as u64),
            baseline_p99_ns: Some(med(base, |l| l.p99() as f64) as u64),
            latency_ratio: Some(p50 / bp50),
            runs: ring.len(),
            ..Row::default()
        }
    }

    fn target(mut self, target: &str, met: bool) -> Row {
        self.target = Some(target.into());
        self.meets_target = Some(met);
        self
    }

    fn cpus(mut self, cpus: String) -> Row {
        self.cpus = cpus;
        self
    }

    fn load(mut self, since: Option<CpuSample>) -> Row {
        self.other_load_pct = since
            .zip(CpuSample::now())
            .map(|(a, b)| (a.foreign_pct(&b) * 10.0).round() / 10.0);
        self
    }

    fn note(mut self, note: &str) -> Row {
        self.note = Some(note.into());
        self
    }
}

/// Prints rows as a table or as JSON lines, as they come.
struct Out {
    json: bool,
}

impl Out {
    /// The table's head: `what` names the suite and how to read its ratio,
    /// `ours` heads the column of our figures.
    fn header(&self, what: &str, ours: &str, runs: usize, quick: bool) {
        if self.json {
            return;
        }
        println!(
            "odock-bench {what} ({}, {} runs per case, medians; {})",
            if quick { "quick" } else { "full" },
            runs,
            match what {
                "ring" => "ratio = ring / baseline, higher is better for the ring",
                _ => "lat ratio = ours / baseline p50, lower is better",
            }
        );
        println!(
            "other = share of the machine other processes used meanwhile; above a few percent, distrust the row"
        );
        println!("machine: {}", machine());
        println!(
            "{:<26} {:>5} {:>4}  {:>24}  {:<18} {:>24}  {:>11} {:>6}  target",
            "case", "bytes", "prod", ours, "baseline", "baseline figure", "ratio", "other"
        );
    }

    fn row(&self, row: &Row) {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let line = serde_json::to_string(row).expect("rows serialize");
            let _ = writeln!(stdout, "{line}");
        } else {
            let (ring, base) = match (row.p50_ns, row.baseline_p50_ns) {
                (Some(p50), Some(bp50)) => (
                    format!("p50 {} p99 {}", ns(p50), ns(row.p99_ns.unwrap_or(0))),
                    format!(
                        "p50 {} p99 {}",
                        ns(bp50),
                        ns(row.baseline_p99_ns.unwrap_or(0))
                    ),
                ),
                _ if row.record_bytes >= 4096 => (
                    format!(
                        "{} {}",
                        rate(row.records_per_sec),
                        gbps(row.bytes_per_sec.unwrap_or(0.0))
                    ),
                    format!(
                        "{} {}",
                        rate(row.baseline_records_per_sec),
                        gbps(row.baseline_bytes_per_sec.unwrap_or(0.0))
                    ),
                ),
                _ => (
                    rate(row.records_per_sec),
                    rate(row.baseline_records_per_sec),
                ),
            };
            let ratio = match row.latency_ratio {
                Some(l) if l >= 1.0 => format!("{l:.2}x lat"),
                Some(l) => format!("1/{:.1} lat", 1.0 / l),
                None => format!("{:.2}x", row.ratio),
            };
            let target = match (&row.target, row.meets_target) {
                (Some(t), Some(true)) => format!("{t}: met"),
                (Some(t), _) => format!("{t}: NOT met"),
                _ => String::new(),
            };
            let other = row
                .other_load_pct
                .map_or_else(|| "?".to_string(), |p| format!("{p:.0}%"));
            let _ = writeln!(
                stdout,
                "{:<26} {:>5} {:>4}  {:>24}  {:<18} {:>24}  {:>11} {:>6}  {}",
                row.case,
                row.record_bytes,
                row.producers,
                ring,
                row.baseline,
                base,
                ratio,
                other,
                target
            );
        }
        let _ = stdout.flush();
    }
}

fn ns(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1}µs", v as f64 / 1000.0)
    } else {
        format!("{v}ns")
    }
}

fn rate(v: f64) -> String {
    format!("{:.2} M/s", v / 1e6)
}

fn gbps(v: f64) -> String {
    format!("{:.1} GB/s", v / 1e9)
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cpus} cpus")
}

fn run_ring(json: bool, quick: bool, only: Option<&str>, runs: Option<usize>) -> BenchResult<()> {
    let scale = Scale::new(quick, runs);
    let out = Out { json };
    let cpus = Cpus::two();
    let wanted = |group: &str| only.is_none_or(|o| group.contains(o));
    out.header("ring", "ring", scale.runs, quick);
    let two = format!("producer cpu {}, consumer cpu {}", cpus.a, cpus.b);

    if wanted("spsc") {
        let ring = work::heap_ring(1)?;
        for len in [64, 256, 1024, 4096] {
            let since = CpuSample::now();
            let eager = Load::new(len, Scale::sized(scale.spsc, len));
            let backoff = Load {
                idle: Idle::Backoff(IDLE_BACKOFF),
                ..eager
            };
            // The ring's own API for a busy-polling pair: quiet commits with
            // one notify per burst, the consumer's poll backoff.
            let tuned = Load {
                idle: Idle::Ring(POLL_BACKOFF),
                commit: Commit::QuietBurst(NOTIFY_BURST),
                ..eager
            };
            // The consumer's poll backoff alone, every record committed.
            let polled = Load {
                idle: Idle::Ring(POLL_BACKOFF),
                ..eager
            };
            let nb = Scale::sized(scale.crossbeam, len);
            // One untimed run of each warms caches and the allocator.
            let warm = Load {
                per_producer: eager.per_producer / 4,
                ..eager
            };
            work::ring_throughput(&ring, &[cpus.a], cpus.b, &warm)?;
            work::crossbeam_throughput(len, nb / 4, 4096, cpus, Touch::First8)?;
            let (mut r, mut rb, mut b) = (Vec::new(), Vec::new(), Vec::new());
            let (mut rt, mut rp) = (Vec::new(), Vec::new());
            for _ in 0..scale.runs {
                r.push(work::ring_throughput(&ring, &[cpus.a], cpus.b, &eager)?);
                rt.push(work::ring_throughput(&ring, &[cpus.a], cpus.b, &tuned)?);
                if len == 64 {
                    rb.push(work::ring_throughput(&ring, &[cpus.a], cpus.b, &backoff)?);
                    rp.push(work::ring_throughput(&ring, &[cpus.a], cpus.b, &polled)?);
                }
                b.push(work::crossbeam_throughput(
                    len,
                    nb,
                    4096,
                    cpus,
                    Touch::First8,
                )?);
            }
            let mut row = Row::throughput("spsc", len, 1, &r, "crossbeam_vec", &b)
                .cpus(two.clone())
                .load(since);
            if len == 64 {
                let met = row.records_per_sec >= 50e6 && row.ratio >= 10.0;
                row = row
                    .target(">= 50 M/s and >= 10x", met)
                    .note("consumer polls again at once when the ring is empty");
                out.row(&row);
                let row = Row::throughput("spsc_idle_backoff", len, 1, &rb, "crossbeam_vec", &b)
                    .cpus(two.clone())
                    .load(since);
                let met = row.records_per_sec >= 50e6 && row.ratio >= 10.0;
                out.row(
                    &row.target(">= 50 M/s and >= 10x", met)
                        .note("consumer spins 1 µs before polling again when the ring is empty"),
                );
                let row = Row::throughput("spsc_poll_backoff", len, 1, &rp, "crossbeam_vec", &b)
                    .cpus(two.clone())
                    .load(since);
                let met = row.records_per_sec >= 50e6 && row.ratio >= 10.0;
                out.row(&row.target(">= 50 M/s and >= 10x", met).note(&format!(
                    "every record committed; Consumer::poll pausing {} ns after a BUSY stop, {} ns when empty",
                    POLL_BACKOFF.busy.as_nanos(),
                    POLL_BACKOFF.empty.as_nanos()
                )));
            } else {
                out.row(&row);
            }
            let row = Row::throughput("spsc_quiet_poll_backoff", len, 1, &rt, "crossbeam_vec", &b)
                .cpus(two.clone())
                .load(since);
            let note = format!(
                "commit_quiet + notify every {NOTIFY_BURST}; Consumer::poll pausing {} ns after a BUSY stop, {} ns when empty",
                POLL_BACKOFF.busy.as_nanos(),
                POLL_BACKOFF.empty.as_nanos()
            );
            if len == 64 {
                let met = row.records_per_sec >= 50e6 && row.ratio >= 10.0;
                out.row(&row.target(">= 50 M/s and >= 10x", met).note(&note));
            } else {
                out.row(&row.note(&note));
            }
        }
    }

    if wanted("round_trip") {
        let since = CpuSample::now();
        let (mut busy, mut sleep, mut floor, mut sock) = (vec![], vec![], vec![], vec![]);
        let (mut futex, mut adaptive) = (vec![], vec![]);
        for _ in 0..scale.runs {
            busy.push(work::round_trip_ring(scale.trips, cpus, Waiting::Spin)?);
            floor.push(work::round_trip_atomics(scale.trips, cpus)?);
            sock.push(work::round_trip_socketpair(scale.slow_trips, cpus)?);
            sleep.push(work::round_trip_ring(
                scale.slow_trips,
                cpus,
                Waiting::Sleep,
            )?);
            futex.push(work::round_trip_futex(scale.slow_trips, cpus)?);
            adaptive.push(work::round_trip_ring(
                scale.slow_trips,
                cpus,
                Waiting::Adaptive(WAIT_SPIN),
            )?);
        }
        let where_ = format!("client cpu {}, server cpu {}", cpus.a, cpus.b);
        let row = Row::latency("round_trip_busy", &busy, "atomic_ping_pong", &floor).load(since);
        let met = row.latency_ratio.is_some_and(|l| l <= 3.0);
        out.row(&row.target("<= 3x floor p50", met).cpus(where_.clone()));
        let row = Row::latency("round_trip_busy", &busy, "unix_seqpacket", &sock).load(since);
        let met = row.latency_ratio.is_some_and(|l| l <= 1.0 / 20.0);
        out.row(&row.target(">= 20x faster p50", met).cpus(where_.clone()));
        let row = Row::latency("round_trip_sleeping", &sleep, "unix_seqpacket", &sock).load(since);
        let met = row.latency_ratio.is_some_and(|l| l <= 1.0 / 2.0);
        out.row(
            &row.target(">= 2x faster p50", met)
                .cpus(where_.clone())
                .note("both sides sleep when idle: ring in Consumer::wait (futex), socket in recv"),
        );
        let row = Row::latency(
            "round_trip_adaptive_wait",
            &adaptive,
            "unix_seqpacket",
            &sock,
        )
        .load(since);
        let met = row.latency_ratio.is_some_and(|l| l <= 1.0 / 2.0);
        out.row(
            &row.target(">= 2x faster p50", met)
                .cpus(where_.clone())
                .note(&format!(
                    "both sides in Consumer::wait with set_wait_spin({} µs): poll, then futex",
                    WAIT_SPIN.as_micros()
                )),
        );
        let row =
            Row::latency("round_trip_sleeping", &sleep, "futex_ping_pong", &futex).load(since);
        out.row(&row.cpus(where_).note(
            "floor of any sleeping handoff: two futex wake-ups of a sleeping thread per round trip",
        ));
    }

    if wanted("mpsc") {
        let since = CpuSample::now();
        let ring = work::heap_ring(2)?;
        let len = 64;
        let half = Load::new(len, scale.spsc / 2);
        let whole = Load::new(len, scale.spsc);
        let warm = Load::new(len, scale.spsc / 8);
        work::ring_throughput(&ring, &[cpus.a, cpus.a], cpus.b, &warm)?;
        let (mut two_p, mut one_p) = (vec![], vec![]);
        for _ in 0..scale.runs {
            two_p.push(work::ring_throughput(
                &ring,
                &[cpus.a, cpus.a],
                cpus.b,
                &half,
            )?);
            one_p.push(work::ring_throughput(&ring, &[cpus.a], cpus.b, &whole)?);
        }
        let row =
            Row::throughput("mpsc", len, 2, &two_p, "same_ring_1_producer", &one_p).load(since);
        let met = row.ratio >= 0.8;
        out.row(
            &row.target(">= 0.8x of 1 producer", met)
                .cpus(format!(
                    "producers share cpu {}, consumer cpu {}",
                    cpus.a, cpus.b
                ))
                .note(
                    "2 cores only: both producers time-share one core, so this shows \
                     that a second lane costs nothing, not parallel producer scaling",
                ),
        );
    }

    if wanted("cross_process") {
        let exe = std::env::current_exe()?;
        for len in [64, 1024] {
            let since = CpuSample::now();
            let n = Scale::sized(scale.cross_ring, len);
            let ns = Scale::sized(scale.cross_socket, len);
            cross_once(&exe, len, n / 4, ns / 4, cpus)?;
            let (mut r, mut b) = (vec![], vec![]);
            for _ in 0..scale.runs {
                let (x, y) = cross_once(&exe, len, n, ns, cpus)?;
                r.push(x);
                b.push(y);
            }
            let row = Row::throughput("cross_process_spsc", len, 1, &r, "unix_seqpacket", &b)
                .cpus(format!(
                    "child producer cpu {}, parent consumer cpu {}",
                    cpus.a, cpus.b
                ))
                .note("memfd ring; timed from the first record received")
                .load(since);
            out.row(&row);
        }
    }

    if wanted("bulk") {
        let ring = work::heap_ring(1)?;
        let len = 4096;
        let n = scale.bulk;
        for (touch, tuned) in [
            (Touch::First8, false),
            (Touch::All, false),
            (Touch::First8, true),
        ] {
            let since = CpuSample::now();
            let load = if tuned {
                Load {
                    touch,
                    idle: Idle::Ring(POLL_BACKOFF),
                    commit: Commit::QuietBurst(NOTIFY_BURST),
                    ..Load::new(len, n)
                }
            } else {
                Load {
                    touch,
                    ..Load::new(len, n)
                }
            };
            let warm = Load {
                per_producer: n / 4,
                ..load
            };
            work::ring_throughput(&ring, &[cpus.a], cpus.b, &warm)?;
            odock_tools::bench::memcpy_blocks(len, n / 4, LANE_BYTES as usize, cpus.a)?;
            let (mut r, mut b) = (vec![], vec![]);
            for _ in 0..scale.runs {
                r.push(work::ring_throughput(&ring, &[cpus.a], cpus.b, &load)?);
                b.push(odock_tools::bench::memcpy_blocks(
                    len,
                    n,
                    LANE_BYTES as usize,
                    cpus.a,
                )?);
            }
            let (case, note) = match (touch, tuned) {
                (Touch::First8, false) => (
                    "bulk_4k",
                    "consumer reads the first 8 bytes; memcpy copies the same 4 KiB blocks into a 1 MiB area on one core",
                ),
                (Touch::First8, true) => (
                    "bulk_4k_quiet_poll_backoff",
                    "as bulk_4k, with commit_quiet + notify per burst and Consumer::poll's backoff",
                ),
                (Touch::All, _) => (
                    "bulk_4k_read_all",
                    "consumer reads every byte (pulls all 4 KiB across cores)",
                ),
            };
            let row = Row::throughput(case, len, 1, &r, "memcpy_1_core", &b).load(since);
            let met = row.ratio >= 0.8;
            out.row(
                &row.target(">= 0.8x memcpy bandwidth", met)
                    .cpus(two.clone())
                    .note(note),
            );
        }
    }
    Ok(())
}

fn cross_once(
    exe: &Path,
    len: usize,
    n: u64,
    ns: u64,
    cpus: Cpus,
) -> BenchResult<(Throughput, Throughput)> {
    Ok((
        work::cross_process_ring(exe, len, n, cpus)?,
        work::cross_process_socket(exe, len, ns, cpus)?,
    ))
}

/// `odock-bench evidence`: see `odock_tools::bench::evidence`.
fn run_evidence(
    json: bool,
    quick: bool,
    runs: Option<usize>,
    dir: Option<std::path::PathBuf>,
) -> BenchResult<()> {
    use odock_control::log::IoMode;
    use odock_tools::bench::evidence::{self as ev, Sink};
    let runs = runs.unwrap_or(if quick { 3 } else { 5 });
    let count: u64 = if quick { 400_000 } else { 2_000_000 };
    let dir = match dir {
        Some(d) => d,
        None => std::env::current_dir()?,
    };
    let out = Out { json };
    if !json {
        println!(
            "odock-bench evidence ({}, {runs} runs per case, medians; {count} records of {} B, fsync every {} ms, in {})",
            if quick { "quick" } else { "full" },
            ev::RECORD_BYTES,
            ev::FSYNC_EVERY.as_millis(),
            dir.display()
        );
        println!("machine: {}", machine());
        println!(
            "{:<26} {:>5} {:>4}  {:>24}  {:<18} {:>24}  {:>11} {:>6}  target",
            "case", "bytes", "prod", "log", "baseline", "baseline figure", "ratio", "other"
        );
    }
    let mut modes = vec![("evidence_drain_pwrite", IoMode::Pwrite)];
    if ev::uring_available(&dir) {
        modes.insert(0, ("evidence_drain_io_uring", IoMode::Uring));
    }
    for (case, mode) in modes {
        let load = CpuSample::now();
        let mut log = Vec::new();
        let mut base = Vec::new();
        for _ in 0..runs {
            log.push(ev::run_once(&dir, Sink::Log(mode), count)?);
            base.push(ev::run_once(&dir, Sink::JsonLines, count)?);
        }
        let row = Row::throughput(
            case,
            ev::RECORD_BYTES,
            1,
            &log,
            "json_lines_fdatasync",
            &base,
        );
        let met = row.records_per_sec >= 2e6;
        out.row(
            &row.target(">= 2 M records/s", met)
                .cpus("producer and drainer unpinned".into())
                .load(load)
                .note("log: segments, CRC32C, commit every 10 ms, ring released after commit; baseline releases before its sync"),
        );
    }
    if !ev::uring_available(&dir) && !json {
        println!(
            "io_uring: refused by this kernel or sandbox; only the pwrite + fdatasync fallback ran"
        );
    }
    Ok(())
}
