//! The `evidence` benchmark: evidence records drained from an evidence ring
//! into control's durable log with group commit, against JSON lines
//! written with the same fsync cadence.
//!
//! One producer thread fills a one-lane ring file with 256-byte evidence
//! records (valid records of the binary format, retrying while the ring is
//! full, so nothing is dropped). The consumer is either
//!
//! - control's [`Drainer`] into a [`Log`] (segments, CRC32C per record, a
//!   commit at least every 10 ms, batches released only after their
//!   commit), once with io_uring writes and once with pwrite + fdatasync;
//!   or
//! - the baseline: decode each record, render it as a JSON line
//!   (`write_json_line`) into a buffered file, `fdatasync` every 10 ms.
//!   It releases ring space as soon as a record is rendered, not after the
//!   sync: the baseline's durability is weaker, which only favours it.
//!
//! The figure is records per second from the first record written to the
//! last record durable (log) or synced (baseline).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use odock_control::drain::Drainer;
use odock_control::log::{FileStorage, IoMode, Log, LogConfig, Storage};
use odock_dataplane::evidence::{self, Evidence, Gate, Kind, Stamp, Verdict};
use odock_dataplane::ring::{Backing, Geometry, MappedMemory, Ring};
use odock_dataplane::runtime::control_link::EVIDENCE_DIR;

use super::{BenchError, BenchResult, STALL_LIMIT, Throughput};

/// Bytes of each evidence record.
pub const RECORD_BYTES: usize = 256;
/// The group-commit cadence.
pub const FSYNC_EVERY: Duration = Duration::from_millis(10);
/// Bytes of the ring's one lane.
pub const LANE_BYTES: u64 = 64 << 20;

/// A valid evidence record of exactly [`RECORD_BYTES`] bytes.
///
/// # Panics
/// Never for this record (its fixed fields fit).
pub fn record() -> Vec<u8> {
    let base = Evidence {
        gate: Gate::Request,
        verdict: Verdict::Continue,
        request_id: "req-0000000001",
        plugin: "bench-plugin",
        duration_ns: 1_234,
        ..Evidence::new(Kind::Decision)
    };
    let pad = RECORD_BYTES - evidence::encoded_len(&base);
    let detail = "d".repeat(pad);
    let e = Evidence {
        detail: &detail,
        ..base
    };
    let mut buf = vec![0; RECORD_BYTES];
    let stamp = Stamp {
        sequence: 1,
        timestamp_ns: 1,
        worker: 0,
    };
    let n = evidence::encode(&stamp, &e, &mut buf).expect("fits");
    assert_eq!(n, RECORD_BYTES);
    buf
}

/// The consumer under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// control's drainer and log, with this write path.
    Log(IoMode),
    /// JSON lines with fdatasync every 10 ms.
    JsonLines,
}

fn producer(ring: Arc<Ring<MappedMemory>>, count: u64, stop: Arc<AtomicBool>) -> BenchResult<()> {
    let p = ring.producer()?;
    let rec = record();
    let mut last = Instant::now();
    let mut sent = 0;
    while sent < count {
        match p.reserve(RECORD_BYTES) {
            Ok(mut r) => {
                r.copy_from_slice(&rec);
                r.commit();
                sent += 1;
                last = Instant::now();
            }
            Err(_) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if last.elapsed() > STALL_LIMIT {
                    return Err(BenchError("evidence bench: the consumer stalled".into()));
                }
                std::hint::spin_loop();
            }
        }
    }
    Ok(())
}

/// One timed run of `count` records through `sink`, in a fresh directory
/// under `dir`.
///
/// # Errors
/// A setup step, the log, or a stall.
pub fn run_once(dir: &Path, sink: Sink, count: u64) -> BenchResult<Throughput> {
    let run = tempfile_dir(dir)?;
    let evidence_dir = run.join(EVIDENCE_DIR);
    std::fs::create_dir_all(&evidence_dir)?;
    let ring = Ring::create(
        Geometry::new(1, LANE_BYTES)?,
        Backing::File(&evidence_dir.join(format!("{}-0-w0.ring", std::process::id()))),
    )?;
    warm_up(&ring)?;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let s = Arc::clone(&stop);
    let r = Arc::clone(&ring);
    let prod = std::thread::spawn(move || producer(r, count, s));
    let result = match sink {
        Sink::Log(mode) => drain_log(&run, mode, count),
        Sink::JsonLines => drain_json(&run, &ring, count),
    };
    stop.store(true, Ordering::Relaxed);
    let produced = prod
        .join()
        .map_err(|_| BenchError("evidence bench: producer panicked".into()))?;
    let _ = std::fs::remove_dir_all(&run);
    produced?;
    result?;
    Ok(Throughput {
        records: count,
        bytes: count * RECORD_BYTES as u64,
        elapsed: start.elapsed(),
    })
}

/// Writes and reads the whole lane once, so the timed run meets a ring
/// whose pages are resident, as a long-lived dataplane's are (the first
/// touch of a fresh 64 MiB file mapping costs page faults, not drain work).
fn warm_up(ring: &Arc<Ring<MappedMemory>>) -> BenchResult<()> {
    let p = ring.producer()?;
    let mut c = ring.consumer()?;
    let rec = record();
    let mut written = 0u64;
    while written < LANE_BYTES * 2 {
        match p.reserve(RECORD_BYTES) {
            Ok(mut r) => {
                r.copy_from_slice(&rec);
                r.commit();
                written += RECORD_BYTES as u64 + 8;
            }
            Err(_) => {
                c.drain(|_| ())?;
            }
        }
    }
    while c.drain(|_| ())? > 0 {}
    Ok(())
}

fn tempfile_dir(dir: &Path) -> BenchResult<PathBuf> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let p = dir.join(format!(
        "odock-evidence-bench-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

fn drain_log(run: &Path, mode: IoMode, count: u64) -> BenchResult<()> {
    let storage = FileStorage::new(&run.join("log"), mode)?;
    let config = LogConfig {
        fsync_interval: FSYNC_EVERY,
        fsync_bytes: usize::MAX,
        segment_bytes: 256 << 20,
        ..LogConfig::default()
    };
    let (log, _) = Log::open(storage, config).map_err(|e| BenchError(e.to_string()))?;
    let log = Arc::new(Mutex::new(log));
    let mut drainer = Drainer::new(run, Arc::clone(&log));
    let stats = drainer.stats();
    let mut last = Instant::now();
    let mut seen = 0;
    while stats.records.load(Ordering::Relaxed) < count {
        drainer.round().map_err(|e| BenchError(e.to_string()))?;
        let now = stats.records.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            last = Instant::now();
        } else if last.elapsed() > STALL_LIMIT {
            return Err(BenchError(format!(
                "evidence bench: drained {now} of {count}, then stalled"
            )));
        }
    }
    Ok(())
}

fn drain_json(run: &Path, ring: &Arc<Ring<MappedMemory>>, count: u64) -> BenchResult<()> {
    let mut consumer = ring.consumer()?;
    consumer.set_lane_quota(u64::MAX);
    let file = File::create(run.join("evidence.jsonl"))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut done = 0u64;
    let mut synced = Instant::now();
    let mut last = Instant::now();
    while done < count {
        let mut batch = consumer.batch();
        let mut n = 0;
        while let Some(r) = batch.next()? {
            let rec = evidence::decode(&r).map_err(|e| BenchError(e.to_string()))?;
            evidence::write_json_line(&rec, &mut out)?;
            n += 1;
        }
        drop(batch);
        done += n;
        if n > 0 {
            last = Instant::now();
        } else if last.elapsed() > STALL_LIMIT {
            return Err(BenchError("evidence bench: JSON drain stalled".into()));
        }
        if synced.elapsed() >= FSYNC_EVERY || done >= count {
            out.flush()?;
            out.get_ref().sync_data()?;
            synced = Instant::now();
        }
    }
    Ok(())
}

/// Whether the kernel lets this process use io_uring.
pub fn uring_available(dir: &Path) -> bool {
    FileStorage::new(dir, IoMode::Uring).is_ok_and(|s| s.backend() == "io_uring")
}
