//! Per plugin and gate counters and latency histograms.
//!
//! Each worker owns one [`WorkerMetrics`] and is the only writer of it: a
//! counter update is a Relaxed load and store of a word no other core
//! writes, so the per-call cost is a few cycles and no lock. Readers (the
//! metrics endpoint, tests) read the same words with Relaxed loads from any
//! thread and sum them over workers; a read racing an update sees the old or
//! the new value of each word, never a torn one.
//!
//! Latencies go into log-linear buckets: 4 sub-buckets per power of two of
//! nanoseconds, so a quantile read from the histogram is within 19 % of the
//! true value, in fixed memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use odock_plugin_abi::Gate;

use super::policy::gate_index;

/// Plugins a runtime can keep metrics for (slots are given out by name at
/// policy install and never reused).
pub const MAX_PLUGINS: usize = 256;
const SUB: u32 = 4;
/// Buckets of the latency histogram.
pub const BUCKETS: usize = 64 * SUB as usize;

/// What is counted per plugin and gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Hooks called.
    Calls,
    /// Calls that continued.
    Continues,
    /// Calls that blocked (by the plugin, or by its failure mode).
    Blocks,
    /// Calls that paused on an integration.
    Pauses,
    /// Transforms applied.
    Transforms,
    /// Calls that failed (error, panic, malformed verdict).
    Errors,
    /// Calls that overran their time budget.
    Timeouts,
    /// Host calls denied for want of a grant.
    Denied,
}

const COUNTERS: usize = 8;

impl Counter {
    /// Every counter, in export order.
    pub const ALL: [Counter; COUNTERS] = [
        Counter::Calls,
        Counter::Continues,
        Counter::Blocks,
        Counter::Pauses,
        Counter::Transforms,
        Counter::Errors,
        Counter::Timeouts,
        Counter::Denied,
    ];

    /// The counter's name in exports.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Calls => "calls",
            Counter::Continues => "continues",
            Counter::Blocks => "blocks",
            Counter::Pauses => "pauses",
            Counter::Transforms => "transforms",
            Counter::Errors => "errors",
            Counter::Timeouts => "timeouts",
            Counter::Denied => "denied",
        }
    }
}

struct Cell {
    counters: [AtomicU64; COUNTERS],
    latency: [AtomicU64; BUCKETS],
}

/// One worker's metrics: a cell per (plugin slot, gate).
pub struct WorkerMetrics {
    cells: Box<[Cell]>,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        WorkerMetrics::new()
    }
}

impl WorkerMetrics {
    /// Zeroed metrics for [`MAX_PLUGINS`] plugins.
    pub fn new() -> WorkerMetrics {
        WorkerMetrics {
            cells: (0..MAX_PLUGINS * 3)
                .map(|_| Cell {
                    counters: std::array::from_fn(|_| AtomicU64::new(0)),
                    latency: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
        }
    }

    fn cell(&self, slot: usize, gate: Gate) -> &Cell {
        &self.cells[slot * 3 + gate_index(gate)]
    }

    /// Adds `n` to a counter. Only the owning worker calls this.
    #[inline]
    pub(crate) fn add(&self, slot: usize, gate: Gate, counter: Counter, n: u64) {
        let word = &self.cell(slot, gate).counters[counter as usize];
        // Single writer: a load and a store, no read-modify-write.
        word.store(word.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Records one call's latency. Only the owning worker calls this.
    #[inline]
    pub(crate) fn record(&self, slot: usize, gate: Gate, latency: Duration) {
        let word = &self.cell(slot, gate).latency[bucket(latency.as_nanos() as u64)];
        word.store(word.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(&self, slot: usize, gate: Gate, counter: Counter) -> u64 {
        self.cell(slot, gate).counters[counter as usize].load(Ordering::Relaxed)
    }

    /// Adds this worker's histogram of (slot, gate) into `into`.
    pub fn add_latency(&self, slot: usize, gate: Gate, into: &mut Histogram) {
        for (sum, word) in into.buckets.iter_mut().zip(&self.cell(slot, gate).latency) {
            *sum += word.load(Ordering::Relaxed);
        }
    }
}

/// The bucket of a latency of `ns` nanoseconds.
fn bucket(ns: u64) -> usize {
    if ns < u64::from(SUB) {
        return ns as usize;
    }
    let log = 63 - ns.leading_zeros(); // >= 2
    let sub = (ns >> (log - 2)) & u64::from(SUB - 1);
    ((log - 1) * SUB) as usize + sub as usize
}

/// The smallest latency (ns) that falls into bucket `b`.
fn bucket_floor(b: usize) -> u64 {
    let b = b as u64;
    if b < u64::from(SUB) {
        return b;
    }
    let log = b / u64::from(SUB) + 1;
    let sub = b % u64::from(SUB);
    (1 << log) | (sub << (log - 2))
}

/// A latency histogram summed over workers.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Box<[u64; BUCKETS]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: Box::new([0; BUCKETS]),
        }
    }
}

impl Histogram {
    /// Records one latency (for histograms kept outside the runtime, such
    /// as a gateway's own gate overhead).
    pub fn record(&mut self, latency: Duration) {
        self.buckets[bucket(latency.as_nanos().min(u128::from(u64::MAX)) as u64)] += 1;
    }

    /// Adds every count of `other` into this histogram.
    pub fn merge(&mut self, other: &Histogram) {
        for (sum, n) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *sum += n;
        }
    }

    /// Calls recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The latency below which a fraction `q` (0 to 1) of calls fell, as the
    /// floor of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_nanos(bucket_floor(b)));
            }
        }
        None
    }

    /// The bucket the `q` quantile falls in, as (floor, ceiling): the
    /// quantile lies in `[floor, ceiling)`. `None` when empty.
    pub fn quantile_bounds(&self, q: f64) -> Option<(Duration, Duration)> {
        let floor = self.quantile(q)?;
        let b = bucket(floor.as_nanos() as u64);
        let ceiling = if b + 1 < BUCKETS {
            bucket_floor(b + 1)
        } else {
            u64::MAX
        };
        Some((floor, Duration::from_nanos(ceiling)))
    }

    /// Non-empty buckets as (floor in ns, count), for export.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(b, &n)| (bucket_floor(b), n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in 0..100_000u64 {
            let b = bucket(ns);
            assert!(b >= last, "bucket of {ns} went down");
            last = b;
        }
        for ns in (0..100_000u64).chain((1..63).map(|s| (1u64 << s) + 12_345 % (1 << s))) {
            let b = bucket(ns);
            assert!(b < BUCKETS);
            let floor = bucket_floor(b);
            assert!(floor <= ns, "floor {floor} above {ns}");
            // Within one sub-bucket: at most 25 % of the power of two.
            assert!(ns - floor <= ns / 4 + 1, "{ns} in a bucket from {floor}");
        }
    }

    #[test]
    fn quantiles_come_from_the_histogram() {
        let m = WorkerMetrics::new();
        for i in 1..=100u64 {
            m.record(3, Gate::Request, Duration::from_nanos(i * 1000));
        }
        m.add(3, Gate::Request, Counter::Calls, 100);
        let mut h = Histogram::default();
        m.add_latency(3, Gate::Request, &mut h);
        assert_eq!(h.count(), 100);
        let p50 = h.quantile(0.5).unwrap().as_nanos() as f64;
        assert!((40_000.0..=50_000.0).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap().as_nanos() as f64;
        assert!((80_000.0..=99_000.0).contains(&p99), "{p99}");
        assert_eq!(m.get(3, Gate::Request, Counter::Calls), 100);
        assert_eq!(m.get(3, Gate::Response, Counter::Calls), 0);
    }

    #[test]
    fn recorded_and_merged_histograms_agree_with_the_workers() {
        let m = WorkerMetrics::new();
        let mut own = Histogram::default();
        for i in 1..=50u64 {
            m.record(0, Gate::Response, Duration::from_nanos(i * 700));
            own.record(Duration::from_nanos(i * 700));
        }
        let mut from_worker = Histogram::default();
        m.add_latency(0, Gate::Response, &mut from_worker);
        assert_eq!(
            own.buckets().collect::<Vec<_>>(),
            from_worker.buckets().collect::<Vec<_>>()
        );
        let mut both = own.clone();
        both.merge(&from_worker);
        assert_eq!(both.count(), 100);
        assert_eq!(both.quantile(0.5), own.quantile(0.5));
        let (lo, hi) = own.quantile_bounds(0.5).unwrap();
        let median = Duration::from_nanos(25 * 700);
        assert!(lo <= median && median < hi, "{lo:?}..{hi:?}");
        assert!(
            hi.as_nanos() * 4 <= lo.as_nanos() * 5 + 4,
            "a bucket is at most 25 % wide"
        );
        assert_eq!(Histogram::default().quantile_bounds(0.5), None);
    }
}
