//! Benchmark workloads, shared by `odock-bench` and the criterion benches in
//! `benches/`.
//!
//! Every workload moves numbered records and checks them on arrival: the
//! first 8 bytes of a record carry its sequence number within its lane, and
//! the receiver checks length, order and a checksum, then reports how many
//! arrived. A workload that loses, repeats or reorders a record returns an
//! error instead of a figure. The checksum is also what keeps the compiler
//! from optimising the receiver's reads away.

pub mod evidence;
pub mod gate;
pub mod ring;

use std::fmt;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::CpuSet;

/// Why a workload failed to produce a figure.
#[derive(Debug)]
pub struct BenchError(pub String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

macro_rules! from_error {
    ($($t:ty),*) => {$(
        impl From<$t> for BenchError {
            fn from(e: $t) -> Self {
                BenchError(e.to_string())
            }
        }
    )*};
}

from_error!(
    std::io::Error,
    rustix::io::Errno,
    odock_dataplane::ring::ClaimError,
    odock_dataplane::ring::CorruptRing,
    odock_dataplane::ring::ReserveError,
    odock_dataplane::ring::AttachError,
    odock_dataplane::ring::GeometryError
);

/// The result type of every workload.
pub type BenchResult<T> = Result<T, BenchError>;

/// How long a workload may go without progress before it gives up: a
/// benchmark that hangs is a failed benchmark.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);

/// Pins the calling thread to one CPU.
///
/// # Errors
/// When `sched_setaffinity` refuses (for example, no such CPU).
pub fn pin_to_cpu(cpu: usize) -> BenchResult<()> {
    let mut set = CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| BenchError(format!("cannot pin to cpu {cpu}: {e}")))
}

/// The two CPUs a two-sided workload runs on: `a` for the producer (or the
/// client), `b` for the consumer (or the server). On a one-CPU machine both
/// are 0, and the figures mean little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpus {
    /// Producer or client.
    pub a: usize,
    /// Consumer or server.
    pub b: usize,
}

impl Cpus {
    /// CPU 0 and CPU 1 (or 0 and 0 on a one-CPU machine).
    pub fn two() -> Self {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Cpus {
            a: 0,
            b: usize::from(n > 1),
        }
    }
}

/// Records moved in one timed run.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Records delivered and checked.
    pub records: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// From the start signal to the last record checked.
    pub elapsed: Duration,
}

impl Throughput {
    /// Delivered records per second.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
    /// Delivered payload bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64()
    }
}

/// Round-trip times of one run, in nanoseconds, sorted.
#[derive(Debug, Clone)]
pub struct Latency {
    samples: Vec<u64>,
    elapsed: Duration,
}

impl Latency {
    /// Wraps raw samples (sorted here) and the run's wall time.
    pub fn new(mut samples: Vec<u64>, elapsed: Duration) -> Self {
        samples.sort_unstable();
        Latency { samples, elapsed }
    }
    /// The `q` quantile (0.0 to 1.0), nearest rank.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.samples.is_empty() {
            return 0;
        }
        let rank = ((self.samples.len() as f64 * q).ceil() as usize).clamp(1, self.samples.len());
        self.samples[rank - 1]
    }
    /// The median.
    pub fn p50(&self) -> u64 {
        self.quantile(0.5)
    }
    /// The 99th percentile.
    pub fn p99(&self) -> u64 {
        self.quantile(0.99)
    }
    /// Round trips per second over the whole run.
    pub fn per_sec(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64()
    }
    /// The number of round trips timed.
    pub fn count(&self) -> usize {
        self.samples.len()
    }
    /// The run's wall time.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

/// The median of some figures (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// What the receiver reads of each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// The sequence number in the first 8 bytes.
    First8,
    /// Every byte, summed as little-endian u64 words.
    All,
}

/// The payload every workload sends: `len` bytes of a fixed pattern; the
/// first 8 are overwritten by the sequence number.
///
/// # Panics
/// When `len` is not a multiple of 8 or below 8.
pub fn payload(len: usize) -> Vec<u8> {
    assert!(
        len >= 8 && len.is_multiple_of(8),
        "record length must be a multiple of 8, at least 8"
    );
    (0..len).map(|i| (i.wrapping_mul(31) + 7) as u8).collect()
}

/// Writes record `seq` into `dst` (as long as the payload).
#[inline]
pub fn fill(dst: &mut [u8], seq: u64, payload: &[u8]) {
    dst[..8].copy_from_slice(&seq.to_le_bytes());
    dst[8..].copy_from_slice(&payload[8..]);
}

#[inline]
fn word_sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("chunks of 8")))
        .fold(0u64, u64::wrapping_add)
}

/// Checks records as they arrive: length, per-lane order, checksum.
#[derive(Debug)]
pub struct Verifier {
    len: usize,
    touch: Touch,
    next: Vec<u64>,
    sum: u64,
    records: u64,
    fault: Option<String>,
    /// What one record adds to the checksum besides its sequence number.
    rest: u64,
}

impl Verifier {
    /// A verifier for records of `len` bytes from `lanes` lanes.
    pub fn new(len: usize, lanes: usize, touch: Touch) -> Self {
        let rest = match touch {
            Touch::First8 => 0,
            Touch::All => word_sum(&payload(len)[8..]),
        };
        Verifier {
            len,
            touch,
            next: vec![0; lanes],
            sum: 0,
            records: 0,
            fault: None,
            rest,
        }
    }

    /// Checks one record that came through `lane`.
    #[inline]
    pub fn record(&mut self, lane: usize, bytes: &[u8]) {
        self.records += 1;
        if bytes.len() != self.len || lane >= self.next.len() {
            self.fail(lane, bytes.len(), u64::MAX);
            return;
        }
        let seq = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if seq != self.next[lane] {
            self.fail(lane, bytes.len(), seq);
        }
        self.next[lane] = seq.wrapping_add(1);
        let add = match self.touch {
            Touch::First8 => seq,
            Touch::All => word_sum(black_box(bytes)),
        };
        self.sum = self.sum.wrapping_add(add);
    }

    #[cold]
    #[inline(never)]
    fn fail(&mut self, lane: usize, len: usize, seq: u64) {
        if self.fault.is_none() {
            let due = self.next.get(lane).copied().unwrap_or(u64::MAX);
            self.fault = Some(format!(
                "record {} of lane {lane}: {len} bytes (expected {}), sequence {seq} (expected {due})",
                self.records, self.len
            ));
        }
    }

    /// Records seen so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Whether a record has failed its check.
    pub fn failed(&self) -> bool {
        self.fault.is_some()
    }

    /// Checks that each lane delivered exactly `per_lane` records with the
    /// right contents; returns the checksum.
    ///
    /// # Errors
    /// The first bad record, or a count or checksum that does not add up.
    pub fn finish(self, per_lane: u64) -> BenchResult<u64> {
        if let Some(fault) = self.fault {
            return Err(BenchError(format!("bad record: {fault}")));
        }
        for (lane, &n) in self.next.iter().enumerate() {
            if n != per_lane {
                return Err(BenchError(format!(
                    "lane {lane} delivered {n} records, {per_lane} were sent"
                )));
            }
        }
        let lanes = self.next.len() as u64;
        let seqs = (per_lane.wrapping_mul(per_lane.wrapping_sub(1)) / 2).wrapping_mul(lanes);
        let expected = seqs.wrapping_add(self.rest.wrapping_mul(per_lane * lanes));
        if self.sum != expected {
            return Err(BenchError(format!(
                "checksum {:#x}, expected {expected:#x}",
                self.sum
            )));
        }
        Ok(black_box(self.sum))
    }
}

/// Tells every side of a workload to give up; set by the side that failed.
#[derive(Debug, Default)]
pub struct Abort(AtomicBool);

impl Abort {
    /// Raises the flag.
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Whether the flag is up.
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Waits out a moment of no progress: spins, and, if it may yield, yields
/// the CPU now and then (which matters when two threads share one). Gives up
/// after [`STALL_LIMIT`] without progress, or when another side aborted.
#[derive(Debug)]
pub struct Backoff {
    spins: u32,
    yields: bool,
    since: Option<Instant>,
}

impl Backoff {
    /// Spins only: for a side that has its core to itself and must react at
    /// once (a consumer, either side of a round trip).
    pub fn spin() -> Self {
        Backoff {
            spins: 0,
            yields: false,
            since: None,
        }
    }

    /// Spins 64 times, then yields every 64 spins: for producers waiting on a
    /// full ring, which may share a core with another producer.
    pub fn yielding() -> Self {
        Backoff {
            spins: 0,
            yields: true,
            since: None,
        }
    }

    /// Progress was made: start over.
    #[inline]
    pub fn reset(&mut self) {
        self.spins = 0;
        self.since = None;
    }

    /// No progress: wait a little.
    ///
    /// # Errors
    /// When the stall has lasted [`STALL_LIMIT`] or `abort` is raised.
    #[inline]
    pub fn snooze(&mut self, what: &str, abort: &Abort) -> BenchResult<()> {
        self.spins = self.spins.wrapping_add(1);
        if self.spins <= 64 {
            std::hint::spin_loop();
            return Ok(());
        }
        if self.yields && self.spins.is_multiple_of(64) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        if self.spins.is_multiple_of(1024) {
            if abort.raised() {
                return Err(BenchError(format!("{what}: the other side failed")));
            }
            let since = *self.since.get_or_insert_with(Instant::now);
            if since.elapsed() > STALL_LIMIT {
                abort.raise();
                return Err(BenchError(format!(
                    "{what}: no progress for {STALL_LIMIT:?}"
                )));
            }
        }
        Ok(())
    }
}

/// CPU time counters, to tell how much of the machine other processes used
/// while a case ran: the figures of a shared machine mean little without it.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    /// Busy jiffies of all CPUs (everything but idle and iowait).
    busy: u64,
    /// All jiffies of all CPUs.
    total: u64,
    /// Jiffies this process and its waited-for children used.
    ours: u64,
}

impl CpuSample {
    /// Reads `/proc/stat` and `/proc/self/stat`; `None` where they are
    /// missing or unreadable.
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let total: u64 = cpu.iter().take(8).sum();
        let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
        let me = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces) start at
        // field 3; utime, stime, cutime, cstime are fields 14 to 17.
        let rest = &me[me.rfind(')')? + 2..];
        let fields: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(4)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        Some(CpuSample {
            busy: total - idle,
            total,
            ours: fields.iter().sum(),
        })
    }

    /// The share of the whole machine (all CPUs), in percent, that other
    /// processes kept busy between `self` and `later`.
    pub fn foreign_pct(&self, later: &CpuSample) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        let busy = later.busy.saturating_sub(self.busy);
        let ours = later.ours.saturating_sub(self.ours);
        100.0 * busy.saturating_sub(ours) as f64 / total as f64
    }
}

/// Copies `count` blocks of `len` bytes from one source into a destination of
/// `footprint` bytes, at the positions a ring with the same data size would
/// use, on `cpu`: the baseline for bulk records.
///
/// # Errors
/// When pinning fails.
pub fn memcpy_blocks(
    len: usize,
    count: u64,
    footprint: usize,
    cpu: usize,
) -> BenchResult<Throughput> {
    let src = payload(len);
    let stride = len + 8;
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(cpu)?;
            let mut dst = vec![1u8; footprint + len];
            let t0 = Instant::now();
            let mut off = 0usize;
            for seq in 0..count {
                fill(&mut dst[off..off + len], seq, black_box(&src));
                black_box(&mut dst[off..off + len]);
                off = (off + stride) & (footprint - 1);
            }
            let elapsed = t0.elapsed();
            black_box(&dst);
            Ok(Throughput {
                records: count,
                bytes: count * len as u64,
                elapsed,
            })
        })
        .join()
        .map_err(|_| BenchError("memcpy thread panicked".into()))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_accepts_the_right_records_and_rejects_a_lost_one() {
        for touch in [Touch::First8, Touch::All] {
            let p = payload(64);
            let mut buf = vec![0u8; 64];
            let mut v = Verifier::new(64, 2, touch);
            for lane in 0..2 {
                for seq in 0..10 {
                    fill(&mut buf, seq, &p);
                    v.record(lane, &buf);
                }
            }
            assert!(v.finish(10).is_ok());

            let mut v = Verifier::new(64, 1, touch);
            for seq in (0..10).filter(|&s| s != 4) {
                fill(&mut buf, seq, &p);
                v.record(0, &buf);
            }
            assert!(v.finish(10).is_err());
        }
    }

    #[test]
    fn cpu_samples_read_and_compare() {
        let a = CpuSample::now().expect("/proc is there");
        let b = CpuSample::now().expect("/proc is there");
        let pct = a.foreign_pct(&b);
        assert!((0.0..=100.0).contains(&pct), "{pct}");
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let l = Latency::new((1..=100).rev().collect(), Duration::from_secs(1));
        assert_eq!(l.p50(), 50);
        assert_eq!(l.p99(), 99);
        assert_eq!(l.quantile(1.0), 100);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
