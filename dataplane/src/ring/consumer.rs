//! The consumer side: checked batches over every lane, waiting, reaping.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::{Corruption, Header, record_total};
use super::memory::RingMemory;
use super::producer::reap_lane;
use super::{ClaimError, HeapMemory, Ring, owner};
use crate::sync::{Ordering, fence};

/// How long [`Consumer::wait`] sleeps at most while a lane head is BUSY, before
/// it checks whether that lane's producer died.
pub const REAP_INTERVAL: Duration = Duration::from_millis(200);

/// The consumer of a ring. One per ring, across processes: claiming it takes
/// the ring's consumer owner word. It resumes at the positions the last
/// consumer published, so a restarted consumer neither loses nor repeats a
/// record it had not released.
///
/// Aligned to 128 bytes (two cache lines, beyond the adjacent-line
/// prefetcher) so the consumer's hot fields never share a line with the
/// producer's, wherever the two handles are allocated.
#[repr(align(128))]
pub struct Consumer<M: RingMemory = HeapMemory> {
    ring: Arc<Ring<M>>,
    me: u64,
    lanes: Box<[LaneState]>,
    /// The lane the next batch starts at (round robin).
    next_lane: usize,
    mask: u64,
    size: u64,
    max_len: u64,
    /// Bytes a batch takes from one lane before it moves on, so a busy lane
    /// gets space back regularly and cannot starve the others.
    lane_quota: u64,
    /// What [`Consumer::poll`] does when a batch stops short.
    poll_backoff: PollBackoff,
    /// How long [`Consumer::wait`] polls before it announces a sleep.
    wait_spin: Duration,
    poisoned: Option<CorruptRing>,
}

#[repr(align(128))] // hot, written per record: a line of its own
struct LaneState {
    data: *mut u8,
    /// Where we read next.
    pos: u64,
    /// What we last stored in the shared consumer_pos.
    published: u64,
    /// The last producer_pos we accepted.
    producer: u64,
}

// SAFETY: the data pointers point into memory the `Arc` keeps alive; the
// consumer role is ours alone (claimed by CAS), so moving the handle moves
// the ring's only reader.
unsafe impl<M: RingMemory> Send for Consumer<M> {}

/// The ring's shared memory broke a rule of the protocol. The consumer stops
/// at the first such error and returns it from then on; it never follows a
/// corrupt position or header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptRing {
    /// The lane.
    pub lane: u32,
    /// The consumer's position in that lane when it found the fault.
    pub position: u64,
    /// The rule that was broken.
    pub corruption: Corruption,
}

impl fmt::Display for CorruptRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "corrupt ring, lane {} at position {}: {}",
            self.lane, self.position, self.corruption
        )
    }
}

impl std::error::Error for CorruptRing {}

/// What [`Consumer::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// A record is ready (or a lane head moved).
    Ready,
    /// The timeout passed with nothing ready.
    TimedOut,
}

/// Why a batch ended.
///
/// Ordered by urgency: when lanes end differently, a batch reports the
/// greatest (`Quota` over `Busy` over `Empty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Every lane was read up to its producer position: nothing more is
    /// reserved.
    Empty,
    /// A lane stopped at a record that is reserved but not yet committed:
    /// its producer is writing it right now. Reading its header again at
    /// once pulls the cache line the producer is writing; pause first.
    Busy,
    /// The batch took as many bytes from a lane as it may (see
    /// [`Consumer::set_lane_quota`]) and the lane has more reserved: poll
    /// again at once.
    Quota,
}

/// What [`Consumer::poll`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Committed records handed to the callback.
    pub records: usize,
    /// Why the batch ended.
    pub stop: Stop,
}

/// How long [`Consumer::poll`] pauses (spinning, without a system call)
/// before it returns a batch that ended short, so that the producer gets
/// ahead and the next batch is larger. A consumer that polls again at once
/// keeps pulling the cache lines the producer is writing, and the two cores
/// trade them several times per record.
///
/// The pause never delays a record that was ready: it runs after the batch,
/// and only when the batch found nothing more to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollBackoff {
    /// After a batch that stopped at a BUSY record ([`Stop::Busy`]), whether
    /// or not it read records before it.
    pub busy: Duration,
    /// After a batch that read nothing from an empty ring ([`Stop::Empty`]).
    pub empty: Duration,
}

impl PollBackoff {
    /// No pause: [`Consumer::poll`] returns at once, as [`Consumer::drain`].
    pub const NONE: PollBackoff = PollBackoff {
        busy: Duration::ZERO,
        empty: Duration::ZERO,
    };
}

impl Default for PollBackoff {
    fn default() -> Self {
        PollBackoff::NONE
    }
}

/// One lane as the consumer sees it, for health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneStatus {
    /// The lane.
    pub lane: u32,
    /// The pid of the producer holding it, if any.
    pub owner_pid: Option<u32>,
    /// Bytes committed or reserved and not yet released by the consumer.
    pub backlog_bytes: u64,
    /// Records refused because the lane was full.
    pub dropped: u64,
    /// BUSY records of dead producers turned into discards.
    pub abandoned: u64,
    /// Whether the record at the lane head is still BUSY.
    pub head_busy: bool,
}

impl<M: RingMemory> Consumer<M> {
    pub(super) fn claim(ring: Arc<Ring<M>>) -> Result<Self, ClaimError> {
        let me = owner::current();
        let word = &ring.mem.control().consumer_owner;
        let held = word.load(Ordering::Acquire);
        if held != 0 && owner::alive(held) {
            return Err(ClaimError::ConsumerTaken {
                pid: owner::pid(held),
            });
        }
        // Acquire pairs with the Release store of 0 in the last consumer's
        // Drop: its last published positions are visible to us.
        if word
            .compare_exchange(held, me, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            let now = word.load(Ordering::Relaxed);
            return Err(ClaimError::ConsumerTaken {
                pid: owner::pid(now),
            });
        }
        let g = ring.geometry;
        let mut poisoned = None;
        let lanes = (0..g.lanes as usize)
            .map(|l| {
                let words = ring.mem.lane(l);
                let pos = words.consumer_pos.load(Ordering::Acquire);
                let producer = words.producer_pos.load(Ordering::Acquire);
                if !pos.is_multiple_of(8)
                    || !producer.is_multiple_of(8)
                    || producer.wrapping_sub(pos) > g.data_size
                {
                    poisoned.get_or_insert(CorruptRing {
                        lane: l as u32,
                        position: pos,
                        corruption: Corruption::ConsumerPosition {
                            found: pos,
                            producer,
                        },
                    });
                }
                LaneState {
                    data: ring.mem.data(l),
                    pos,
                    published: pos,
                    producer: pos,
                }
            })
            .collect();
        Ok(Consumer {
            me,
            lanes,
            next_lane: 0,
            mask: g.data_size - 1,
            size: g.data_size,
            max_len: g.max_record_len() as u64,
            lane_quota: (g.data_size / 4).max(64),
            poll_backoff: PollBackoff::NONE,
            wait_spin: Duration::ZERO,
            poisoned,
            ring,
        })
    }

    /// The ring this consumer reads.
    pub fn ring(&self) -> &Arc<Ring<M>> {
        &self.ring
    }

    /// Sets how many bytes a batch takes from one lane before it moves on
    /// (default: a quarter of the data size). Smaller gives producers space
    /// back sooner at the cost of more position stores.
    pub fn set_lane_quota(&mut self, bytes: u64) {
        self.lane_quota = bytes.max(8);
    }

    /// Starts a batch. Records read through it stay valid until it is
    /// dropped; dropping it releases their space to the producers, publishing
    /// each lane's position once.
    pub fn batch(&mut self) -> Batch<'_, M> {
        let start = self.next_lane;
        self.next_lane = if start + 1 == self.lanes.len() {
            0
        } else {
            start + 1
        };
        Batch {
            consumer: self,
            lane: start,
            visited: 0,
            taken: 0,
            stop: Stop::Empty,
        }
    }

    /// Sets what [`Self::poll`] does when a batch ends short (default:
    /// [`PollBackoff::NONE`]).
    pub fn set_poll_backoff(&mut self, backoff: PollBackoff) {
        self.poll_backoff = backoff;
    }

    /// Sets how long [`Self::wait`] keeps polling the ring before it
    /// announces a sleep and takes the futex (default: zero, sleep at once).
    ///
    /// As in an adaptive mutex: a record committed within that time is seen
    /// without any system call on either side (the producer sees no sleeper
    /// and skips the wake-up), at the cost of up to `spin` of CPU time each
    /// time the ring goes idle. Worth it when records usually follow each
    /// other within a few tens of microseconds, as a request and its answer
    /// do; a wake-up of a sleeping thread costs tens of microseconds on a
    /// virtual machine.
    pub fn set_wait_spin(&mut self, spin: Duration) {
        self.wait_spin = spin;
    }

    /// Reads one batch, handing each record to `f`; returns how many.
    ///
    /// # Errors
    /// [`CorruptRing`] when the shared memory breaks the protocol; the
    /// records before the fault were delivered and released.
    pub fn drain(&mut self, f: impl FnMut(Record<'_>)) -> Result<usize, CorruptRing> {
        Ok(self.drain_batch(f)?.records)
    }

    /// Reads one batch as [`Self::drain`] does and says why it ended; then,
    /// if it ended short, pauses as [`Self::set_poll_backoff`] says: after
    /// [`Stop::Busy`] for `busy`, after an empty batch for `empty`. The
    /// records are released before the pause.
    ///
    /// This is the call for a consumer that busy-polls: batches grow from a
    /// handful of records to hundreds, because the consumer stops pulling
    /// the cache lines the producer is writing.
    ///
    /// # Errors
    /// As for [`Self::drain`].
    pub fn poll(&mut self, f: impl FnMut(Record<'_>)) -> Result<Drained, CorruptRing> {
        let drained = self.drain_batch(f)?;
        let pause = match drained.stop {
            Stop::Busy => self.poll_backoff.busy,
            Stop::Empty if drained.records == 0 => self.poll_backoff.empty,
            _ => Duration::ZERO,
        };
        if !pause.is_zero() {
            let mut spin = Spin::new(pause);
            while spin.again() {}
        }
        Ok(drained)
    }

    #[inline]
    fn drain_batch(&mut self, mut f: impl FnMut(Record<'_>)) -> Result<Drained, CorruptRing> {
        let mut batch = self.batch();
        let mut records = 0;
        while let Some(record) = batch.next()? {
            f(record);
            records += 1;
        }
        Ok(Drained {
            records,
            stop: batch.stop,
        })
    }

    /// Sleeps until a record is ready or `timeout` passes (`None`: until a
    /// record is ready). Producers issue a wake-up only while the consumer
    /// sleeps.
    ///
    /// With a spin set ([`Self::set_wait_spin`]) it first polls the ring for
    /// that long (bounded by `timeout`) without announcing anything, and
    /// returns as soon as a record is ready.
    ///
    /// While a lane head is BUSY the sleep is cut to [`REAP_INTERVAL`], after
    /// which a lane whose producer died is reaped.
    ///
    /// # Errors
    /// [`CorruptRing`], as for [`Self::batch`].
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<WaitOutcome, CorruptRing> {
        let deadline = timeout.map(|t| Instant::now() + t);
        if !self.wait_spin.is_zero() {
            // W-1: poll before announcing anything. Only Acquire loads (C1,
            // C2), so no new ordering: a record seen here is read as in a
            // batch; one not seen is caught by the handshake below.
            let spin = timeout.map_or(self.wait_spin, |t| t.min(self.wait_spin));
            let mut spin = Spin::new(spin);
            loop {
                if self.probe()?.0 {
                    return Ok(WaitOutcome::Ready);
                }
                if !spin.again() {
                    break;
                }
            }
        }
        let ring = Arc::clone(&self.ring);
        let control = ring.mem.control();
        loop {
            let (ready, busy_head) = self.probe()?;
            if ready {
                return Ok(WaitOutcome::Ready);
            }
            let seq = control.wake_seq.load(Ordering::Acquire);
            // W1, W2: announce the sleep, then the StoreLoad fence that
            // pairs with the producer's fence after commit (step 5).
            control.waiting.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let (ready, _) = self.probe()?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if ready || left == Some(Duration::ZERO) {
                control.waiting.store(0, Ordering::Relaxed);
                return Ok(if ready {
                    WaitOutcome::Ready
                } else {
                    WaitOutcome::TimedOut
                });
            }
            let sleep = if busy_head {
                Some(left.map_or(REAP_INTERVAL, |l| l.min(REAP_INTERVAL)))
            } else {
                left
            };
            // W3: the futex sleeps only while `wake_seq` still holds `seq`,
            // so a wake-up between W2 and here is not lost.
            ring.mem.wait(seq, sleep);
            control.waiting.store(0, Ordering::Relaxed);
            // Acquire pairs with the producer's Release bump: its commit is
            // visible to the probe at the top of the loop.
            if control.wake_seq.load(Ordering::Acquire) != seq {
                continue;
            }
            // Timed out or woken spuriously.
            if busy_head && self.reap_dead_producers()? > 0 {
                return Ok(WaitOutcome::Ready);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(if self.probe()?.0 {
                    WaitOutcome::Ready
                } else {
                    WaitOutcome::TimedOut
                });
            }
        }
    }

    /// Reaps every lane whose owner process is gone (see "Dead producers" in
    /// the module docs); returns how many BUSY records became discards.
    ///
    /// # Errors
    /// [`CorruptRing`] when a reaped lane's positions or headers are corrupt.
    pub fn reap_dead_producers(&mut self) -> Result<u64, CorruptRing> {
        self.check_poison()?;
        let mut reaped = 0;
        for l in 0..self.lanes.len() {
            let words = self.ring.mem.lane(l);
            let word = words.owner.load(Ordering::Acquire);
            if word == 0 || owner::alive(word) {
                continue;
            }
            // Hold the lane while we rewrite it, so no producer claims it
            // meanwhile; then free it.
            if words
                .owner
                .compare_exchange(word, self.me, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let result = reap_lane(&self.ring.mem, l);
            words.owner.store(0, Ordering::Release);
            match result {
                Ok(n) => reaped += n,
                Err(corruption) => {
                    return Err(self.poison(l, corruption));
                }
            }
        }
        Ok(reaped)
    }

    /// Every lane's state, for health and metrics.
    pub fn lanes(&self) -> Vec<LaneStatus> {
        (0..self.lanes.len())
            .map(|l| {
                let words = self.ring.mem.lane(l);
                let owner = words.owner.load(Ordering::Relaxed);
                let producer = words.producer_pos.load(Ordering::Acquire);
                let pos = self.lanes[l].pos;
                // A poisoned consumer's positions are not to be followed.
                let head_busy = self.poisoned.is_none()
                    && producer != pos
                    && matches!(self.header_at(l, pos), Ok(Header::Busy { .. }));
                LaneStatus {
                    lane: l as u32,
                    owner_pid: (owner != 0).then(|| owner::pid(owner)),
                    backlog_bytes: producer.wrapping_sub(self.lanes[l].published),
                    dropped: words.dropped.load(Ordering::Relaxed),
                    abandoned: words.abandoned.load(Ordering::Relaxed),
                    head_busy,
                }
            })
            .collect()
    }

    fn check_poison(&self) -> Result<(), CorruptRing> {
        match self.poisoned {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    #[cold]
    fn poison(&mut self, lane: usize, corruption: Corruption) -> CorruptRing {
        let e = CorruptRing {
            lane: lane as u32,
            position: self.lanes[lane].pos,
            corruption,
        };
        *self.poisoned.get_or_insert(e)
    }

    /// Loads and checks a lane's producer_pos (protocol step C1).
    #[inline]
    fn load_producer(&mut self, lane: usize) -> Result<u64, CorruptRing> {
        let found = self
            .ring
            .mem
            .lane(lane)
            .producer_pos
            .load(Ordering::Acquire);
        let st = &self.lanes[lane];
        if !found.is_multiple_of(8) || found < st.producer || found.wrapping_sub(st.pos) > self.size
        {
            let previous = st.producer;
            return Err(self.poison(lane, Corruption::ProducerPosition { found, previous }));
        }
        self.lanes[lane].producer = found;
        Ok(found)
    }

    /// Loads and checks the header at `pos` (protocol step C2).
    #[inline]
    fn header_at(&self, lane: usize, pos: u64) -> Result<Header, Corruption> {
        let off = (pos & self.mask) as usize;
        let word = self.ring.mem.header(lane, off).load(Ordering::Acquire);
        let header = Header::decode(word, pos, self.max_len)?;
        let end = pos + record_total(header.len());
        let producer = self.lanes[lane].producer;
        if end > producer {
            return Err(Corruption::RecordPastProducer { end, producer });
        }
        Ok(header)
    }

    /// Whether any lane has a record (committed or discarded) at its head,
    /// and whether any lane head is BUSY.
    fn probe(&mut self) -> Result<(bool, bool), CorruptRing> {
        self.check_poison()?;
        let mut busy = false;
        for l in 0..self.lanes.len() {
            let producer = self.load_producer(l)?;
            let pos = self.lanes[l].pos;
            if producer == pos {
                continue;
            }
            match self.header_at(l, pos) {
                Ok(Header::Busy { .. }) => busy = true,
                Ok(_) => return Ok((true, busy)),
                Err(c) => return Err(self.poison(l, c)),
            }
        }
        Ok((false, busy))
    }

    /// The next committed record of lane `l`, skipping discards: its payload
    /// offset and length; or why there is none: the producer position
    /// (`Empty`), a BUSY record, or the lane quota taken in committed
    /// records.
    #[inline]
    fn step(
        &mut self,
        l: usize,
        taken: &mut u64,
    ) -> Result<Result<(usize, usize), Stop>, CorruptRing> {
        loop {
            let pos = self.lanes[l].pos;
            if pos == self.lanes[l].producer && self.load_producer(l)? == pos {
                return Ok(Err(Stop::Empty));
            }
            if *taken >= self.lane_quota {
                return Ok(Err(Stop::Quota));
            }
            let header = match self.header_at(l, pos) {
                Ok(h) => h,
                Err(c) => return Err(self.poison(l, c)),
            };
            let total = record_total(header.len());
            match header {
                Header::Busy { .. } => return Ok(Err(Stop::Busy)),
                // Discards cost no quota, so a batch that returns nothing
                // means no committed record was ready.
                Header::Discarded { .. } => self.lanes[l].pos = pos + total,
                Header::Committed { len } => {
                    self.lanes[l].pos = pos + total;
                    *taken += total;
                    let off = (pos & self.mask) as usize + 8;
                    self.ring.mem.track_read(l, off, len as usize);
                    return Ok(Ok((off, len as usize)));
                }
            }
        }
    }

    /// C3: publishes every lane position that moved.
    fn publish(&mut self) {
        for (l, st) in self.lanes.iter_mut().enumerate() {
            if st.pos != st.published {
                // Release pairs with the producer's Acquire load of
                // consumer_pos in reserve (protocol step 1).
                self.ring
                    .mem
                    .lane(l)
                    .consumer_pos
                    .store(st.pos, Ordering::Release);
                st.published = st.pos;
            }
        }
    }
}

impl<M: RingMemory> Drop for Consumer<M> {
    fn drop(&mut self) {
        self.publish();
        // Release pairs with the next consumer's Acquire CAS in `claim`.
        let _ = self.ring.mem.control().consumer_owner.compare_exchange(
            self.me,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

impl<M: RingMemory> fmt::Debug for Consumer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("lanes", &self.lanes.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// A batch of records. Each [`Record`] borrows the batch; dropping the batch
/// releases every record it read.
pub struct Batch<'c, M: RingMemory = HeapMemory> {
    consumer: &'c mut Consumer<M>,
    /// The lane being read.
    lane: usize,
    /// Lanes finished so far.
    visited: usize,
    /// Bytes of committed records taken from `lane`.
    taken: u64,
    /// Why the lanes finished so far ended (the greatest).
    stop: Stop,
}

impl<M: RingMemory> Batch<'_, M> {
    /// The next record, lane by lane from the batch's starting lane.
    ///
    /// # Errors
    /// [`CorruptRing`] when a position or header breaks the protocol. The
    /// consumer is poisoned: every later call returns the same error.
    #[allow(
        clippy::should_implement_trait,
        reason = "a lending iterator: each record borrows the batch"
    )]
    pub fn next(&mut self) -> Result<Option<Record<'_>>, CorruptRing> {
        self.consumer.check_poison()?;
        let lanes = self.consumer.lanes.len();
        while self.visited < lanes {
            let l = self.lane;
            let stop = match self.consumer.step(l, &mut self.taken)? {
                Err(stop) => stop,
                Ok((off, len)) => {
                    let data = self.consumer.lanes[l].data;
                    // The range lies within the lane's 2 * data_size bytes (both
                    // bounds checked in `header_at`); `publish` runs only when the
                    // batch, which this borrow keeps alive, is dropped.
                    // SAFETY: in bounds; the committed header was Acquire-loaded, and
                    // the producer cannot reuse the space before `publish`.
                    let bytes = unsafe { std::slice::from_raw_parts(data.add(off), len) };
                    return Ok(Some(Record {
                        bytes,
                        lane: l as u32,
                    }));
                }
            };
            self.stop = self.stop.max(stop);
            self.visited += 1;
            self.taken = 0;
            self.lane = if l + 1 == lanes { 0 } else { l + 1 };
        }
        Ok(None)
    }

    /// Why the batch ended, once [`Self::next`] has returned `None` (before
    /// that: why the lanes finished so far ended).
    pub fn stop(&self) -> Stop {
        self.stop
    }
}

impl<M: RingMemory> Drop for Batch<'_, M> {
    fn drop(&mut self) {
        self.consumer.publish();
    }
}

/// One committed record, read in place from ring memory.
#[derive(Debug, Clone, Copy)]
pub struct Record<'b> {
    bytes: &'b [u8],
    lane: u32,
}

impl Record<'_> {
    /// The lane the record came through.
    pub fn lane(&self) -> u32 {
        self.lane
    }
}

impl Deref for Record<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

/// A bounded busy wait: [`Spin::again`] spins a moment (one `spin_loop`
/// hint, no system call) and says whether time is left, reading the clock
/// every fourth call. Under loom, whose threads must not spin and whose
/// models must be deterministic, it yields instead and allows two rounds,
/// so a model explores both "seen while spinning" and "fell through to the
/// sleep".
struct Spin {
    #[cfg(not(loom))]
    until: Instant,
    #[cfg(not(loom))]
    calls: u32,
    #[cfg(loom)]
    rounds: u32,
}

impl Spin {
    #[cfg_attr(loom, allow(unused_variables))]
    fn new(span: Duration) -> Self {
        Spin {
            #[cfg(not(loom))]
            until: Instant::now() + span,
            #[cfg(not(loom))]
            calls: 0,
            #[cfg(loom)]
            rounds: 2,
        }
    }

    /// Spins for a moment (one `spin_loop` hint: tens of nanoseconds), then
    /// whether the span has time left. Short, so a caller that polls the
    /// ring between calls sees a record soon after it lands.
    #[inline]
    fn again(&mut self) -> bool {
        #[cfg(not(loom))]
        {
            std::hint::spin_loop();
            self.calls = self.calls.wrapping_add(1);
            !self.calls.is_multiple_of(4) || Instant::now() < self.until
        }
        #[cfg(loom)]
        {
            loom::thread::yield_now();
            self.rounds -= 1;
            self.rounds > 0
        }
    }
}
