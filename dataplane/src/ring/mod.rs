//! An eBPF-style ring of variable-length records in shared memory.
//!
//! This is the one transport of the dataplane: submission and completion
//! frames between a gateway thread and a worker (one producer, one consumer)
//! and evidence records from a worker and its helpers to control (several
//! producers, one consumer), in one process or across processes.
//!
//! ```
//! use odock_dataplane::ring::{Geometry, Ring};
//!
//! let ring = Ring::heap(Geometry::new(1, 4096)?);
//! let producer = ring.producer()?;
//! let mut consumer = ring.consumer()?;
//!
//! let mut record = producer.reserve(5)?;
//! record.copy_from_slice(b"hello");
//! record.commit();
//!
//! let mut batch = consumer.batch();
//! let got = batch.next()?.expect("one record");
//! assert_eq!(&*got, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Shape
//!
//! A ring has one consumer and `lanes` producer lanes. Each lane is a
//! single-producer ring of its own: a power-of-two data area with a producer
//! position and a consumer position. A [`Producer`] handle claims one lane for
//! as long as it lives, so a ring with one lane is SPSC and a ring with N lanes
//! is MPSC with up to N producers at once. Producers never write the same
//! cache line: two producers run as fast as one (the BPF ring buffer halves,
//! because its reserve takes a spinlock). Records are delivered in
//! reservation order within a lane; the consumer visits lanes round robin, so
//! records of different lanes carry no order between them.
//!
//! # Shared layout (version [`LAYOUT_VERSION`])
//!
//! All fields are little-endian machine words, accessed only atomically.
//!
//! ```text
//! file offset                     what                         written by
//! 0                               meta: magic, version,        creator, once
//!                                 page size, lanes, data size
//! 128                             control: consumer owner,     consumer
//!                                 waiting,                     consumer
//!                                 wake_seq (futex word)        producers
//! page * (1 + l)                  lane l control page:
//!    +0                             consumer_pos               consumer
//!    +128                           producer_pos, dropped      lane owner
//!    +256                           owner, abandoned           claimants, reaper
//! page * (1 + lanes) + l * size   lane l data (size bytes)     lane owner
//! ```
//!
//! Each lane's data area is mapped twice back to back, so a record that wraps
//! past the end is one contiguous slice. The consumer and producer positions
//! sit 128 bytes apart (two cache lines, beyond the adjacent-line prefetcher).
//! On the heap ([`HeapMemory`]) the control block and each lane's control
//! words are 128-byte aligned as well, and so are the [`Producer`] and
//! [`Consumer`] handles, whose private positions change on every record: no
//! unrelated allocation shares a line with them.
//!
//! # Records
//!
//! A record is an 8-byte header followed by its payload, padded to 8 bytes.
//! Positions are byte counts that only grow; a record at position `p` lives
//! at data offset `p & (size - 1)`. The header is one 64-bit word:
//!
//! ```text
//! bits 0..30   payload length
//! bit  30      DISCARD: the producer gave the record up; skip it
//! bit  31      BUSY: reserved, not yet committed or discarded
//! bits 32..64  tag: the low 32 bits of p / 8, so a stale or stray header
//!              cannot pass for the record at p
//! ```
//!
//! # Ordering protocol
//!
//! Producer, on `reserve(len)`:
//! 1. if `pos + total - cached_consumer_pos > size`, reload `consumer_pos`
//!    with *Acquire* (pairs with the consumer's Release store in step C3, so
//!    the consumer's reads of the space being reused happen before our
//!    writes); still full: count a drop and fail at once;
//! 2. store the header `BUSY | len | tag` (Relaxed);
//! 3. store `producer_pos = pos + total` with *Release* (publishes the header
//!    of step 2; pairs with the consumer's Acquire load in C1).
//!
//! Producer, on `commit` (or `discard`, or `commit_quiet`):
//! 4. store the header `len | tag` (or `DISCARD | len | tag`) with *Release*
//!    (publishes the payload; pairs with the Acquire load in C2);
//! 5. `fence(SeqCst)`, then load `waiting` (Relaxed); if it is set, bump
//!    `wake_seq` with *Release* and futex-wake it. The fence pairs with the
//!    fence in W2: of the two, whichever comes first in the single total
//!    order makes the other side see its store, so either the producer sees
//!    `waiting` or the consumer's re-check sees the record. This is the
//!    StoreLoad fence whose absence once hung libbpf's and aya's consumers.
//!    Producers never write `waiting`: an earlier design had the waking
//!    producer swap it back to 0, and loom found it could not prove that
//!    design (a third party's RMW between the consumer's announcements);
//!    with one writer per flag the handshake is the plain two-party
//!    store-buffering pattern that loom checks.
//!
//! Step 5 is the expensive part of a commit: a full fence (`lock or` on
//! x86), which also waits for every store before it to reach the cache, so
//! a producer whose lines were last read by the other core stalls on each
//! record. [`Reservation::commit_quiet`] does step 4 only (like the BPF ring
//! buffer's `BPF_RB_NO_WAKEUP`), and [`Producer::notify`] is step 5 alone
//! (`BPF_RB_FORCE_WAKEUP`). The fence orders *every* header store sequenced
//! before it, so one step 5 covers all the quiet commits before it: the
//! pairing argument above holds for each of them with the same fence. Until
//! a step 5 follows, a consumer asleep in W3 (or between W1 and W3) may
//! stay asleep, up to its timeout, with records ready. Hence the rule: a
//! producer that commits quietly runs step 5 (`notify`, a plain `commit`,
//! a `discard`, or dropping the [`Producer`], which notifies) after its
//! last quiet commit of a burst, and before it waits for the consumer (for
//! space after [`ReserveError::Full`], or for an answer). A consumer that
//! busy-polls sees quiet commits exactly as it sees others (step 4, C2).
//! A producer that dies between a quiet commit and step 5 loses nothing
//! (the records are committed), but a consumer asleep without a timeout
//! would only see them when another producer wakes it: waits on rings whose
//! producers may die take a timeout.
//!
//! Consumer, per lane:
//! - C1. load `producer_pos` with *Acquire* and check it: 8-aligned, never
//!   behind what it was, never more than `size` ahead of the consumer;
//! - C2. load the header at the consumer position with *Acquire* and check it:
//!   tag, no unknown bit, length at most the maximum, record within
//!   `producer_pos`. BUSY: stop the lane here. DISCARD: skip it. Else read;
//! - C3. once per batch, store `consumer_pos` with *Release*.
//!
//! A batch ends at the producer position of every lane ([`Stop::Empty`]),
//! at a BUSY record ([`Stop::Busy`]: its producer is writing it now), or
//! when it took a lane's quota ([`Stop::Quota`]); [`Consumer::poll`] says
//! which. A consumer that reads a BUSY header again at once pulls the line
//! the producer is writing back and forth between the cores, several times
//! per record, and its batches stay a few records long; `poll` with a
//! [`PollBackoff`] spins a moment first (C3 done, no shared access), so the
//! producer gets ahead and batches grow to hundreds of records. The pause
//! adds no access and no ordering.
//!
//! Consumer, on `wait`:
//! - W-1. only with [`Consumer::set_wait_spin`]: poll every lane as in C1
//!   and C2 (Acquire loads, the same partners) until a record is ready or
//!   the spin time passes, without announcing anything. Producers see no
//!   sleeper, so a record committed meanwhile costs neither side a system
//!   call; one committed after the last poll is caught by W0-W4, as if the
//!   spin had not happened;
//! - W0. load `seq = wake_seq` (*Acquire*);
//! - W1. store `waiting = 1`;
//! - W2. `fence(SeqCst)`, then re-check every lane as in C1 and C2;
//! - W3. nothing ready: futex-wait on `wake_seq` while it still holds `seq`;
//! - W4. store `waiting = 0`; load `wake_seq` with *Acquire* (pairs with
//!   the producer's Release bump in step 5) and look again.
//!
//! A wake-up costs a syscall only while the consumer sleeps (or is about to);
//! a busy consumer costs producers one fence and one Relaxed load of a line
//! nobody writes per commit (per burst with quiet commits).
//!
//! # What the consumer trusts
//!
//! Nothing in the shared memory. Every position and header is checked as
//! above; a check that fails poisons the consumer with a [`CorruptRing`]
//! error naming the lane, the position and the rule. It never reads outside
//! the lane's mapping and never loops without bound: each step advances the
//! position by at least 8 bytes and stops at `producer_pos`.
//!
//! # Dead producers
//!
//! A lane's `owner` word holds the owning process's pid and start time. A
//! producer that dies between reserve and commit leaves a BUSY record that
//! would block its lane forever. The rule: **a lane whose owner process is
//! gone is reaped** — every BUSY record between the consumer and producer
//! positions becomes a DISCARD record, the count goes to the lane's
//! `abandoned` counter, and the lane is free again. The consumer reaps when
//! its lane head stays busy across a [`Consumer::wait`] timeout, or when asked
//! with [`Consumer::reap_dead_producers`]; a new producer reaps a dead lane it
//! claims. Only the lane's owner writes its data, so once the owner is dead
//! nothing else can race the rewrite. A live producer that holds a record
//! forever (a leaked [`Reservation`]) stalls its own lane only, like a leaked
//! lock guard; [`Consumer::lanes`] shows it.
//!
//! # Memory
//!
//! The protocol is generic over [`RingMemory`]. Production maps a memfd or a
//! file ([`Ring::create`], [`Ring::attach`]); tests, miri and loom run the
//! same code over heap memory ([`Ring::heap`]). Miri cannot run the mapped
//! backend (it models neither `memfd_create` nor `MAP_FIXED`), so the double
//! mapping is covered by ordinary and multi-process tests instead; miri
//! covers every pointer and slice the protocol derives.

mod consumer;
mod layout;
#[cfg(not(loom))]
mod mapped;
mod memory;
mod owner;
mod producer;

pub use consumer::{
    Batch, Consumer, CorruptRing, Drained, LaneStatus, PollBackoff, REAP_INTERVAL, Record, Stop,
    WaitOutcome,
};
pub use layout::{ControlBlock, LaneControl};
pub use layout::{Corruption, Geometry, GeometryError, LAYOUT_VERSION, MAX_LANES, MIN_DATA_SIZE};
#[cfg(not(loom))]
pub use mapped::{AttachError, Backing, MappedMemory};
pub use memory::{HeapMemory, RingMemory};
pub use producer::{Producer, Reservation, ReserveError};

use std::fmt;
use std::sync::Arc;

/// A ring: its memory plus the validated geometry. Handles to it
/// ([`Producer`], [`Consumer`]) keep it alive.
pub struct Ring<M: RingMemory = HeapMemory> {
    mem: M,
    geometry: Geometry,
}

impl<M: RingMemory> Ring<M> {
    /// Wraps memory whose geometry has been validated.
    pub fn from_memory(mem: M) -> Arc<Self> {
        let geometry = mem.geometry();
        Arc::new(Ring { mem, geometry })
    }

    /// The ring's geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The memory behind the ring.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Claims a free producer lane.
    ///
    /// A lane whose owner process has died is reaped and claimed.
    ///
    /// # Errors
    /// [`ClaimError::NoFreeLane`] when every lane has a live owner.
    pub fn producer(self: &Arc<Self>) -> Result<Producer<M>, ClaimError> {
        Producer::claim(Arc::clone(self))
    }

    /// Claims the consumer role.
    ///
    /// # Errors
    /// [`ClaimError::ConsumerTaken`] when a live consumer holds it.
    pub fn consumer(self: &Arc<Self>) -> Result<Consumer<M>, ClaimError> {
        Consumer::claim(Arc::clone(self))
    }

    /// Records dropped because the ring was full, over all lanes.
    pub fn dropped(&self) -> u64 {
        (0..self.geometry.lanes as usize)
            .map(|l| self.mem.lane(l).dropped.load(sync::Ordering::Relaxed))
            .sum()
    }
}

impl Ring<HeapMemory> {
    /// A ring on the heap, for one process (and for miri and loom).
    pub fn heap(geometry: Geometry) -> Arc<Self> {
        Self::from_memory(HeapMemory::new(geometry))
    }
}

impl<M: RingMemory> fmt::Debug for Ring<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}

/// Why a handle could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// Every producer lane has a live owner.
    NoFreeLane {
        /// The ring's lane count.
        lanes: u32,
    },
    /// The lane's shared positions or headers do not check out.
    CorruptLane {
        /// The lane.
        lane: u32,
    },
    /// A live consumer holds the ring.
    ConsumerTaken {
        /// The holder's process id.
        pid: u32,
    },
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::NoFreeLane { lanes } => {
                write!(
                    f,
                    "no free producer lane: all {lanes} lanes have a live producer"
                )
            }
            ClaimError::CorruptLane { lane } => {
                write!(
                    f,
                    "lane {lane} is corrupt: its positions or headers do not check out"
                )
            }
            ClaimError::ConsumerTaken { pid } => {
                write!(f, "the ring already has a live consumer (pid {pid})")
            }
        }
    }
}

impl std::error::Error for ClaimError {}

use crate::sync;

#[cfg(test)]
mod tests;
