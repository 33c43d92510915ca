//! Workloads for the ring and the baselines it is measured against.
//!
//! Throughput workloads move `count` numbered records per producer and time
//! from a start barrier (or, across processes, from the first record) to the
//! last record checked. Producers retry on [`ReserveError::Full`] with a short
//! spin, then yield, so the figure is delivered records, never attempts.
//! Round-trip workloads time each round trip with one clock read per trip.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use odock_dataplane::ring::{
    Backing, Consumer, Geometry, MappedMemory, PollBackoff, Producer, ReserveError, Ring,
    RingMemory, WaitOutcome,
};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::{
    Abort, Backoff, BenchError, BenchResult, Cpus, Latency, Throughput, Touch, Verifier, fill,
    payload, pin_to_cpu,
};

/// The data size of each lane in the throughput workloads: 1 MiB, half an L2.
pub const LANE_BYTES: u64 = 1 << 20;

/// The records of a round trip: a 64-byte frame out, a 64-byte answer back.
pub const FRAME_BYTES: usize = 64;

/// Round trips run before timing starts.
const WARMUP_TRIPS: usize = 1_000;

/// How a throughput producer commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// [`Reservation::commit`](odock_dataplane::ring::Reservation::commit)
    /// every record: a full fence and the wake-up check each time.
    Each,
    /// [`Reservation::commit_quiet`](odock_dataplane::ring::Reservation::commit_quiet)
    /// every record and one [`Producer::notify`] per this many records, and
    /// before waiting for space (as the ring's docs require).
    QuietBurst(u64),
}

/// Writes `count` records of `len` bytes into `producer`'s lane, committing
/// each with [`Commit::Each`], retrying while it is full.
///
/// # Errors
/// When the ring refuses the record for a reason other than Full, when the
/// lane stays full for [`super::STALL_LIMIT`], or when `abort` goes up.
pub fn produce<M: RingMemory>(
    producer: &Producer<M>,
    len: usize,
    count: u64,
    abort: &Abort,
) -> BenchResult<()> {
    produce_with(producer, len, count, Commit::Each, abort)
}

/// Writes `count` records of `len` bytes into `producer`'s lane, committing
/// as `commit` says, retrying while it is full.
///
/// # Errors
/// As for [`produce`].
#[inline(never)]
pub fn produce_with<M: RingMemory>(
    producer: &Producer<M>,
    len: usize,
    count: u64,
    commit: Commit,
    abort: &Abort,
) -> BenchResult<()> {
    let src = payload(len);
    let mut backoff = Backoff::yielding();
    let burst = match commit {
        Commit::Each => 0,
        Commit::QuietBurst(n) => n.max(1),
    };
    let mut unnotified = 0;
    for seq in 0..count {
        loop {
            match producer.reserve(len) {
                Ok(mut record) => {
                    fill(&mut record, seq, &src);
                    if burst == 0 {
                        record.commit();
                    } else {
                        record.commit_quiet();
                        unnotified += 1;
                        if unnotified == burst {
                            producer.notify();
                            unnotified = 0;
                        }
                    }
                    backoff.reset();
                    break;
                }
                Err(ReserveError::Full { .. }) => {
                    // Waiting on the consumer: it must know what is there.
                    if unnotified > 0 {
                        producer.notify();
                        unnotified = 0;
                    }
                    backoff.snooze("producer", abort)?;
                }
                Err(e) => {
                    abort.raise();
                    return Err(e.into());
                }
            }
        }
    }
    producer.notify();
    Ok(())
}

/// What a throughput consumer does when a poll finds no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Polls again at once (one `spin_loop` hint): the lowest latency, and
    /// the most cache-line traffic, since every poll pulls the lines the
    /// producer is writing.
    Spin,
    /// Spins this long before polling again, so the producer gets ahead and
    /// the next batch is larger: what a worker with other work to do, or a
    /// consumer with an idle backoff, sees.
    Backoff(Duration),
    /// Reads with [`Consumer::poll`] and the ring's own [`PollBackoff`]:
    /// pauses after a batch that stopped at a BUSY record or found the ring
    /// empty.
    Ring(PollBackoff),
}

/// Drains `consumer` until `verifier` has seen `total` records, busy-polling
/// as `idle` says.
///
/// # Errors
/// A corrupt ring, a stall of [`super::STALL_LIMIT`], or `abort`.
#[inline(never)]
pub fn consume<M: RingMemory>(
    consumer: &mut Consumer<M>,
    verifier: &mut Verifier,
    total: u64,
    idle: Idle,
    abort: &Abort,
) -> BenchResult<()> {
    let mut backoff = Backoff::spin();
    if let Idle::Ring(pause) = idle {
        consumer.set_poll_backoff(pause);
    }
    while verifier.records() < total {
        let n = match idle {
            Idle::Ring(_) => consumer
                .poll(|rec| verifier.record(rec.lane() as usize, &rec))
                .map(|d| d.records),
            _ => consumer.drain(|rec| verifier.record(rec.lane() as usize, &rec)),
        }
        .inspect_err(|_| abort.raise())?;
        if n == 0 {
            backoff.snooze("consumer", abort)?;
            if let Idle::Backoff(pause) = idle {
                let t0 = Instant::now();
                while t0.elapsed() < pause {
                    std::hint::spin_loop();
                }
            }
        } else {
            backoff.reset();
        }
        if verifier.failed() {
            abort.raise();
            break;
        }
    }
    Ok(())
}

fn join<T>(handle: thread::ScopedJoinHandle<'_, BenchResult<T>>, who: &str) -> BenchResult<T> {
    handle
        .join()
        .map_err(|_| BenchError(format!("{who} thread panicked")))?
}

/// A heap ring of `lanes` lanes of [`LANE_BYTES`] each, its pages touched.
///
/// # Errors
/// Never for these constants; the type says what could go wrong.
pub fn heap_ring(lanes: u32) -> BenchResult<Arc<Ring>> {
    let ring = Ring::heap(Geometry::new(lanes, LANE_BYTES)?);
    warm(&ring)?;
    Ok(ring)
}

/// Runs each lane once round its data area so no page fault lands in a
/// timed run.
fn warm<M: RingMemory>(ring: &Arc<Ring<M>>) -> BenchResult<()> {
    let lanes = ring.geometry().lanes;
    let producers = (0..lanes)
        .map(|_| ring.producer())
        .collect::<Result<Vec<_>, _>>()?;
    let mut consumer = ring.consumer()?;
    let len = 4096 - 8;
    let rounds = 2 * LANE_BYTES as usize / 4096;
    for _ in 0..rounds {
        for p in &producers {
            let mut r = p.reserve(len)?;
            r.fill(1);
            r.commit();
        }
        while consumer.drain(|rec| {
            black_box(rec.len());
        })? > 0
        {}
    }
    Ok(())
}

/// What a throughput run moves and how its consumer behaves.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Payload bytes per record.
    pub len: usize,
    /// Records each producer writes.
    pub per_producer: u64,
    /// What the consumer reads of each record.
    pub touch: Touch,
    /// What the consumer does when a poll finds nothing.
    pub idle: Idle,
    /// How producers commit.
    pub commit: Commit,
}

impl Load {
    /// `per_producer` records of `len` bytes, committed one by one, the
    /// consumer reading the sequence number and polling again at once when
    /// idle.
    pub fn new(len: usize, per_producer: u64) -> Self {
        Load {
            len,
            per_producer,
            touch: Touch::First8,
            idle: Idle::Spin,
            commit: Commit::Each,
        }
    }
}

/// `load.per_producer` records from one producer per entry of
/// `producer_cpus` (each pinned there) to a consumer on `consumer_cpu`,
/// through `ring` (which needs a lane per producer).
///
/// # Errors
/// When a handle cannot be claimed, a thread cannot be pinned, or a record
/// is lost, repeated, reordered or corrupt.
pub fn ring_throughput<M: RingMemory>(
    ring: &Arc<Ring<M>>,
    producer_cpus: &[usize],
    consumer_cpu: usize,
    load: &Load,
) -> BenchResult<Throughput> {
    let Load {
        len,
        per_producer,
        touch,
        idle,
        commit,
    } = *load;
    let producers = producer_cpus
        .iter()
        .map(|_| ring.producer())
        .collect::<Result<Vec<_>, _>>()?;
    let mut consumer = ring.consumer()?;
    let barrier = Barrier::new(producers.len() + 1);
    let abort = Abort::default();
    let total = per_producer * producers.len() as u64;
    let (barrier, abort) = (&barrier, &abort);
    thread::scope(|s| {
        let mut handles = Vec::new();
        for (producer, &cpu) in producers.into_iter().zip(producer_cpus) {
            handles.push(s.spawn(move || {
                let pinned = pin_to_cpu(cpu);
                barrier.wait();
                pinned.inspect_err(|_| abort.raise())?;
                produce_with(&producer, len, per_producer, commit, abort)
            }));
        }
        let consumer = s.spawn(move || {
            let pinned = pin_to_cpu(consumer_cpu);
            // Producers claim the lowest free lanes, so lanes 0..producers
            // carry records; a record from any other lane fails the check.
            let mut verifier = Verifier::new(len, producer_cpus.len(), touch);
            barrier.wait();
            pinned.inspect_err(|_| abort.raise())?;
            let t0 = Instant::now();
            consume(&mut consumer, &mut verifier, total, idle, abort)?;
            let elapsed = t0.elapsed();
            verifier.finish(per_producer)?;
            Ok(elapsed)
        });
        let mut first_err = None;
        for h in handles {
            if let Err(e) = join(h, "producer") {
                first_err.get_or_insert(e);
            }
        }
        let elapsed = join(consumer, "consumer");
        if let Some(e) = first_err {
            return Err(e);
        }
        let elapsed = elapsed?;
        Ok(Throughput {
            records: total,
            bytes: total * len as u64,
            elapsed,
        })
    })
}

/// The baseline for SPSC: `count` freshly allocated `Vec<u8>` of `len` bytes
/// through a `crossbeam_channel::bounded(capacity)`, producer on `cpus.a`,
/// consumer on `cpus.b`; the consumer checks each and frees it.
///
/// # Errors
/// As for [`ring_throughput`].
pub fn crossbeam_throughput(
    len: usize,
    count: u64,
    capacity: usize,
    cpus: Cpus,
    touch: Touch,
) -> BenchResult<Throughput> {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(capacity);
    let barrier = Barrier::new(2);
    let barrier = &barrier;
    thread::scope(|s| {
        let producer = s.spawn(move || {
            let pinned = pin_to_cpu(cpus.a);
            let src = payload(len);
            barrier.wait();
            pinned?;
            for seq in 0..count {
                let mut v = Vec::with_capacity(len);
                v.extend_from_slice(&src);
                v[..8].copy_from_slice(&seq.to_le_bytes());
                tx.send(v)
                    .map_err(|_| BenchError("crossbeam consumer hung up".into()))?;
            }
            Ok(())
        });
        let consumer = s.spawn(move || {
            let pinned = pin_to_cpu(cpus.b);
            let mut verifier = Verifier::new(len, 1, touch);
            barrier.wait();
            pinned?;
            let t0 = Instant::now();
            while verifier.records() < count {
                let v = rx
                    .recv_timeout(super::STALL_LIMIT)
                    .map_err(|e| BenchError(format!("crossbeam consumer: {e}")))?;
                verifier.record(0, &v);
            }
            let elapsed = t0.elapsed();
            verifier.finish(count)?;
            Ok(elapsed)
        });
        let produced = join(producer, "producer");
        let elapsed = join(consumer, "consumer")?;
        produced?;
        Ok(Throughput {
            records: count,
            bytes: count * len as u64,
            elapsed,
        })
    })
}

/// One side of a round trip: `Trips` times, frame out, answer back.
struct Trips {
    warmup: usize,
    timed: usize,
}

impl Trips {
    fn total(&self) -> usize {
        self.warmup + self.timed
    }
}

/// Times round trips on the client side: `trip(i)` sends frame `i` and waits
/// for its answer.
fn time_trips(trips: &Trips, mut trip: impl FnMut(u64) -> BenchResult<()>) -> BenchResult<Latency> {
    for i in 0..trips.warmup {
        trip(i as u64)?;
    }
    let mut samples = Vec::with_capacity(trips.timed);
    let t0 = Instant::now();
    let mut last = t0;
    for i in trips.warmup..trips.total() {
        trip(i as u64)?;
        let now = Instant::now();
        samples.push((now - last).as_nanos() as u64);
        last = now;
    }
    Ok(Latency::new(samples, last - t0))
}

/// How the sides of a ring round trip wait for their next record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Spin on the ring (busy-polling).
    Spin,
    /// Sleep in [`Consumer::wait`] (futex) whenever the ring is empty.
    Sleep,
    /// Wait in [`Consumer::wait`] with [`Consumer::set_wait_spin`] set to
    /// this: poll that long, then sleep on the futex.
    Adaptive(Duration),
}

/// Drains one batch and hands each record to `f`; when nothing came, waits
/// as `waiting` says.
fn poll<M: RingMemory>(
    consumer: &mut Consumer<M>,
    waiting: Waiting,
    backoff: &mut Backoff,
    abort: &Abort,
    mut f: impl FnMut(&[u8]),
) -> BenchResult<usize> {
    let n = consumer.drain(|rec| f(&rec))?;
    if n > 0 {
        backoff.reset();
        return Ok(n);
    }
    match waiting {
        Waiting::Spin => backoff.snooze("round trip", abort)?,
        Waiting::Sleep | Waiting::Adaptive(_) => {
            if consumer.wait(Some(Duration::from_millis(100)))? == WaitOutcome::TimedOut {
                // Count timeouts as a stall towards the limit.
                backoff.snooze("round trip", abort)?;
            }
        }
    }
    Ok(0)
}

/// Round trips through two heap rings: the client (on `cpus.a`) pushes a
/// 64-byte frame into one, the server (on `cpus.b`) answers through the
/// other. Both busy-poll, or both wait in [`Consumer::wait`] when idle
/// (sleeping at once, or after polling for a while).
///
/// # Errors
/// When a frame or answer is lost, repeated or corrupt, or a side stalls.
pub fn round_trip_ring(timed: usize, cpus: Cpus, waiting: Waiting) -> BenchResult<Latency> {
    let geometry = Geometry::new(1, 64 * 1024)?;
    let (out, back) = (Ring::heap(geometry), Ring::heap(geometry));
    let (out_p, mut out_c) = (out.producer()?, out.consumer()?);
    let (back_p, mut back_c) = (back.producer()?, back.consumer()?);
    if let Waiting::Adaptive(spin) = waiting {
        out_c.set_wait_spin(spin);
        back_c.set_wait_spin(spin);
    }
    let trips = Trips {
        warmup: WARMUP_TRIPS,
        timed,
    };
    let abort = Abort::default();
    let barrier = Barrier::new(2);
    let (abort, barrier, trips) = (&abort, &barrier, &trips);
    thread::scope(|s| {
        let server = s.spawn(move || {
            let pinned = pin_to_cpu(cpus.b);
            barrier.wait();
            pinned.inspect_err(|_| abort.raise())?;
            let src = payload(FRAME_BYTES);
            let mut verifier = Verifier::new(FRAME_BYTES, 1, Touch::First8);
            let mut backoff = Backoff::spin();
            let mut answered = 0u64;
            let mut full = false;
            while (answered as usize) < trips.total() {
                poll(&mut out_c, waiting, &mut backoff, abort, |frame| {
                    verifier.record(0, frame);
                    match back_p.reserve(FRAME_BYTES) {
                        Ok(mut answer) => {
                            fill(&mut answer, answered, &src);
                            answer.commit();
                        }
                        Err(_) => full = true,
                    }
                    answered += 1;
                })
                .inspect_err(|_| abort.raise())?;
                if full || verifier.failed() {
                    abort.raise();
                    break;
                }
            }
            if full {
                return Err(BenchError("answer ring full".into()));
            }
            verifier.finish(trips.total() as u64)?;
            Ok(())
        });
        let client = s.spawn(move || {
            let pinned = pin_to_cpu(cpus.a);
            barrier.wait();
            pinned.inspect_err(|_| abort.raise())?;
            let src = payload(FRAME_BYTES);
            let mut verifier = Verifier::new(FRAME_BYTES, 1, Touch::First8);
            let mut backoff = Backoff::spin();
            let latency = time_trips(trips, |i| {
                let mut frame = out_p.reserve(FRAME_BYTES)?;
                fill(&mut frame, i, &src);
                frame.commit();
                while poll(&mut back_c, waiting, &mut backoff, abort, |answer| {
                    verifier.record(0, answer)
                })? == 0
                {}
                Ok(())
            })
            .inspect_err(|_| abort.raise())?;
            verifier.finish(trips.total() as u64)?;
            Ok(latency)
        });
        let served = join(server, "server");
        let latency = join(client, "client")?;
        served?;
        Ok(latency)
    })
}

/// The floor of any cross-core round trip: two atomics ping-ponged, the
/// client (on `cpus.a`) writes `i` into one and spins until the server (on
/// `cpus.b`) echoes it in the other.
///
/// # Errors
/// When a side cannot be pinned or stalls.
pub fn round_trip_atomics(timed: usize, cpus: Cpus) -> BenchResult<Latency> {
    let ping = CachePadded::new(AtomicU64::new(u64::MAX));
    let pong = CachePadded::new(AtomicU64::new(u64::MAX));
    let trips = Trips {
        warmup: WARMUP_TRIPS,
        timed,
    };
    let abort = Abort::default();
    let barrier = Barrier::new(2);
    let (ping, pong, trips, abort, barrier) = (&ping, &pong, &trips, &abort, &barrier);
    thread::scope(|s| {
        let server = s.spawn(move || {
            let pinned = pin_to_cpu(cpus.b);
            barrier.wait();
            pinned.inspect_err(|_| abort.raise())?;
            let mut backoff = Backoff::spin();
            for i in 0..trips.total() as u64 {
                // Acquire/Release: the same pairing a real gate would need.
                while ping.load(Ordering::Acquire) != i {
                    backoff.snooze("server", abort)?;
                }
                backoff.reset();
                pong.store(i, Ordering::Release);
            }
            Ok(())
        });
        let client = s.spawn(move || {
            let pinned = pin_to_cpu(cpus.a);
            barrier.wait();
            pinned.inspect_err(|_| abort.raise())?;
            let mut backoff = Backoff::spin();
            time_trips(trips, |i| {
                ping.store(i, Ordering::Release);
                while pong.load(Ordering::Acquire) != i {
                    backoff.snooze("client", abort)?;
                }
                backoff.reset();
                Ok(())
            })
            .inspect_err(|_| abort.raise())
        });
        let served = join(server, "server");
        let latency = join(client, "client")?;
        served?;
        Ok(latency)
    })
}

/// The floor of a sleeping handoff: the client writes `i` into a word and
/// futex-wakes the server, which was asleep on it; the server answers the
/// same way through a second word. Both always sleep when they have nothing,
/// so each round trip pays two futex wake-ups of a sleeping thread: what
/// any transport whose consumer sleeps pays at least.
///
/// # Errors
/// When a side cannot be pinned or stalls.
pub fn round_trip_futex(timed: usize, cpus: Cpus) -> BenchResult<Latency> {
    use rustix::thread::futex;
    use std::sync::atomic::AtomicU32;

    fn sleep_until(word: &AtomicU32, want: u32, abort: &Abort) -> BenchResult<()> {
        let limit = Instant::now();
        loop {
            let now = word.load(Ordering::Acquire);
            if now == want {
                return Ok(());
            }
            let tick = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            // EAGAIN (the word moved), EINTR and ETIMEDOUT all mean: look again.
            let _ = futex::wait(word, futex::Flags::PRIVATE, now, Some(&tick));
            if abort.raised() || limit.elapsed() > super::STALL_LIMIT {
                abort.raise();
                return Err(BenchError("futex round trip stalled".into()));
            }
        }
    }

    let ping = CachePadded::new(AtomicU32::new(0));
    let pong = CachePadded::new(AtomicU32::new(0));
    let trips = Trips {
        warmup: WARMUP_TRIPS.min(timed),
        timed,
    };
    let abort = Abort::default();
    let (ping, pong, trips, abort) = (&ping, &pong, &trips, &abort);
    thread::scope(|s| {
        let server = s.spawn(move || {
            pin_to_cpu(cpus.b).inspect_err(|_| abort.raise())?;
            for i in 1..=trips.total() as u32 {
                sleep_until(ping, i, abort)?;
                // Release pairs with the client's Acquire load in sleep_until.
                pong.store(i, Ordering::Release);
                futex::wake(pong, futex::Flags::PRIVATE, 1)?;
            }
            Ok(())
        });
        let client = s.spawn(move || {
            pin_to_cpu(cpus.a).inspect_err(|_| abort.raise())?;
            time_trips(trips, |i| {
                let i = i as u32 + 1;
                // Release pairs with the server's Acquire load in sleep_until.
                ping.store(i, Ordering::Release);
                futex::wake(ping, futex::Flags::PRIVATE, 1)?;
                sleep_until(pong, i, abort)
            })
            .inspect_err(|_| abort.raise())
        });
        let served = join(server, "server");
        let latency = join(client, "client")?;
        served?;
        Ok(latency)
    })
}

fn seqpacket_pair() -> BenchResult<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Receives one message of exactly `buf.len()` bytes.
fn recv_exact(fd: impl AsFd, buf: &mut [u8]) -> BenchResult<()> {
    let want = buf.len();
    let (n, _) = rustix::net::recv(fd, &mut *buf, RecvFlags::empty())?;
    if n != want {
        return Err(BenchError(format!(
            "socket gave a {n}-byte message, {want} expected (peer gone?)"
        )));
    }
    Ok(())
}

fn send_all(fd: impl AsFd, buf: &[u8]) -> BenchResult<()> {
    let n = rustix::net::send(fd, buf, SendFlags::empty())?;
    if n != buf.len() {
        return Err(BenchError(format!(
            "socket took {n} of {} bytes",
            buf.len()
        )));
    }
    Ok(())
}

/// The baseline transport: round trips of 64-byte messages over a Unix
/// SOCK_SEQPACKET pair, both sides blocking in `recv`.
///
/// # Errors
/// A socket error or a wrong message.
pub fn round_trip_socketpair(timed: usize, cpus: Cpus) -> BenchResult<Latency> {
    let (client_fd, server_fd) = seqpacket_pair()?;
    let trips = Trips {
        warmup: WARMUP_TRIPS.min(timed),
        timed,
    };
    let trips = &trips;
    thread::scope(|s| {
        let server = s.spawn(move || -> BenchResult<()> {
            pin_to_cpu(cpus.b)?;
            let src = payload(FRAME_BYTES);
            let mut buf = vec![0u8; FRAME_BYTES];
            let mut verifier = Verifier::new(FRAME_BYTES, 1, Touch::First8);
            for i in 0..trips.total() as u64 {
                recv_exact(&server_fd, &mut buf)?;
                verifier.record(0, &buf);
                fill(&mut buf, i, &src);
                send_all(&server_fd, &buf)?;
            }
            verifier.finish(trips.total() as u64)?;
            Ok(())
        });
        let client = s.spawn(move || {
            pin_to_cpu(cpus.a)?;
            let src = payload(FRAME_BYTES);
            let mut buf = vec![0u8; FRAME_BYTES];
            let mut verifier = Verifier::new(FRAME_BYTES, 1, Touch::First8);
            let latency = time_trips(trips, |i| {
                fill(&mut buf, i, &src);
                send_all(&client_fd, &buf)?;
                recv_exact(&client_fd, &mut buf)?;
                verifier.record(0, &buf);
                Ok(())
            })?;
            verifier.finish(trips.total() as u64)?;
            Ok(latency)
        });
        let latency = join(client, "client");
        // A failed client closes nothing the server waits on: the fds live
        // in this scope. Report the client's error first.
        let latency = latency?;
        join(server, "server")?;
        Ok(latency)
    })
}

/// Which transport the child process writes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildMode {
    /// A ring whose memfd is the child's standard input.
    Ring,
    /// A SOCK_SEQPACKET socket that is the child's standard input.
    Socket,
}

impl ChildMode {
    /// The name on the child's command line.
    pub fn name(self) -> &'static str {
        match self {
            ChildMode::Ring => "ring",
            ChildMode::Socket => "socket",
        }
    }
}

/// The child side of the cross-process workloads: pins itself to `cpu`, then
/// writes `count` records of `len` bytes into the transport it finds on its
/// standard input (the memfd of a ring, or a socket), then prints `done`.
///
/// # Errors
/// When the transport cannot be attached or written.
pub fn child_main(mode: ChildMode, len: usize, count: u64, cpu: usize) -> BenchResult<()> {
    pin_to_cpu(cpu)?;
    match mode {
        ChildMode::Ring => {
            // The memfd is our stdin; opening its /proc link gives a fresh
            // fd to the same memory, without any unsafe fd juggling.
            let ring = Ring::attach(Path::new("/proc/self/fd/0"))?;
            let producer = ring.producer()?;
            produce(&producer, len, count, &Abort::default())?;
        }
        ChildMode::Socket => {
            let stdin = std::io::stdin();
            let src = payload(len);
            let mut buf = vec![0u8; len];
            for seq in 0..count {
                fill(&mut buf, seq, &src);
                send_all(stdin.as_fd(), &buf)?;
            }
        }
    }
    writeln!(std::io::stdout(), "done")?;
    Ok(())
}

fn spawn_child(
    exe: &Path,
    mode: ChildMode,
    len: usize,
    count: u64,
    cpu: usize,
    stdin: OwnedFd,
) -> BenchResult<std::process::Child> {
    let mut cmd = Command::new(exe);
    cmd.args([
        "ring-child",
        "--mode",
        mode.name(),
        "--len",
        &len.to_string(),
        "--count",
        &count.to_string(),
        "--cpu",
        &cpu.to_string(),
    ])
    .stdin(Stdio::from(stdin))
    .stdout(Stdio::piped());
    let child = cmd.spawn()?;
    // Dropping `cmd` closes our copy of the child's stdin, so a socket sees
    // end-of-file when the child exits.
    drop(cmd);
    Ok(child)
}

fn reap_child(mut child: std::process::Child) -> BenchResult<()> {
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let status = child.wait()?;
    if !status.success() || line.trim() != "done" {
        return Err(BenchError(format!("child process failed: {status}")));
    }
    Ok(())
}

/// Cross-process SPSC through a ring in a memfd: a child process (`exe
/// ring-child`, pinned to `cpus.a`) attaches and produces `count` records
/// of `len` bytes; this process consumes them on `cpus.b`. Timed from the
/// first record to the last, so process start-up is not counted.
///
/// # Errors
/// As for [`ring_throughput`], plus a failed child.
pub fn cross_process_ring(
    exe: &Path,
    len: usize,
    count: u64,
    cpus: Cpus,
) -> BenchResult<Throughput> {
    let ring: Arc<Ring<MappedMemory>> =
        Ring::create(Geometry::new(1, LANE_BYTES)?, Backing::Memfd("odock-bench"))?;
    warm(&ring)?;
    let mut consumer = ring.consumer()?;
    let abort = Abort::default();
    thread::scope(|s| {
        let consumer = s.spawn(|| {
            pin_to_cpu(cpus.b)?;
            let fd = ring.memory().fd().try_clone_to_owned()?;
            let child = spawn_child(exe, ChildMode::Ring, len, count, cpus.a, fd)?;
            let mut verifier = Verifier::new(len, 1, Touch::First8);
            // Wait for the first record, then time the rest.
            consume(&mut consumer, &mut verifier, 1, Idle::Spin, &abort)?;
            let t0 = Instant::now();
            let before = verifier.records();
            consume(&mut consumer, &mut verifier, count, Idle::Spin, &abort)?;
            let elapsed = t0.elapsed();
            reap_child(child)?;
            verifier.finish(count)?;
            let timed = count - before;
            Ok(Throughput {
                records: timed,
                bytes: timed * len as u64,
                elapsed,
            })
        });
        join(consumer, "consumer")
    })
}

/// The baseline for [`cross_process_ring`]: the child sends the same records
/// over a Unix SOCK_SEQPACKET pair; this process receives them.
///
/// # Errors
/// A socket error, a wrong record, or a failed child.
pub fn cross_process_socket(
    exe: &Path,
    len: usize,
    count: u64,
    cpus: Cpus,
) -> BenchResult<Throughput> {
    let (ours, theirs) = seqpacket_pair()?;
    thread::scope(|s| {
        let consumer = s.spawn(move || {
            pin_to_cpu(cpus.b)?;
            let child = spawn_child(exe, ChildMode::Socket, len, count, cpus.a, theirs)?;
            let mut verifier = Verifier::new(len, 1, Touch::First8);
            let mut buf = vec![0u8; len];
            recv_exact(&ours, &mut buf)?;
            verifier.record(0, &buf);
            let t0 = Instant::now();
            for _ in 1..count {
                recv_exact(&ours, &mut buf)?;
                verifier.record(0, &buf);
            }
            let elapsed = t0.elapsed();
            reap_child(child)?;
            verifier.finish(count)?;
            Ok(Throughput {
                records: count - 1,
                bytes: (count - 1) * len as u64,
                elapsed,
            })
        });
        join(consumer, "consumer")
    })
}
