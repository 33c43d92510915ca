//! The producer side: one lane, reserve → write in place → commit.

use std::cell::Cell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::layout::{Corruption, Header, record_total};
use super::memory::RingMemory;
use super::{ClaimError, HeapMemory, Ring, owner};
use crate::sync::{Ordering, fence};

/// The producer of one lane. It is `Send` but not `Sync`: one thread writes a
/// lane. Dropping it wakes a sleeping consumer (see [`Self::notify`]) and
/// frees the lane for the next producer.
///
/// Aligned to 128 bytes (two cache lines) so its position, written on every
/// reservation, never shares a line with the consumer's state.
#[repr(align(128))]
pub struct Producer<M: RingMemory = HeapMemory> {
    ring: Arc<Ring<M>>,
    lane: usize,
    data: *mut u8,
    mask: u64,
    size: u64,
    max_len: u64,
    /// Our `producer_pos`: we are its only writer, so the shared word is a copy.
    pos: Cell<u64>,
    /// The last `consumer_pos` we loaded; reloaded only when the lane looks full.
    cached_consumer: Cell<u64>,
}

// SAFETY: `data` points into the ring's memory, which the `Arc` keeps alive;
// the lane is ours alone (claimed by CAS on its owner word), so moving the
// handle to another thread moves the lane's only writer with it.
unsafe impl<M: RingMemory> Send for Producer<M> {}

impl<M: RingMemory> Producer<M> {
    pub(super) fn claim(ring: Arc<Ring<M>>) -> Result<Self, ClaimError> {
        let me = owner::current();
        let lanes = ring.geometry.lanes;
        for lane in 0..lanes as usize {
            let words = ring.mem.lane(lane);
            let word = words.owner.load(Ordering::Acquire);
            let free = word == 0 || !owner::alive(word);
            // Acquire pairs with the Release store of 0 in the last owner's
            // Drop, so its final producer_pos is visible to us.
            if free
                && words
                    .owner
                    .compare_exchange(word, me, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                // The last owner died: its BUSY records become discards.
                if word != 0 && reap_lane(&ring.mem, lane).is_err() {
                    words.owner.store(0, Ordering::Release);
                    return Err(ClaimError::CorruptLane { lane: lane as u32 });
                }
                return Producer::on_lane(ring, lane)
                    .ok_or(ClaimError::CorruptLane { lane: lane as u32 });
            }
        }
        Err(ClaimError::NoFreeLane { lanes })
    }

    /// Sets up on a claimed lane; `None` (and the lane released) when its
    /// positions are inconsistent.
    fn on_lane(ring: Arc<Ring<M>>, lane: usize) -> Option<Self> {
        let words = ring.mem.lane(lane);
        let size = ring.geometry.data_size;
        let pos = words.producer_pos.load(Ordering::Acquire);
        let consumer = words.consumer_pos.load(Ordering::Acquire);
        if !pos.is_multiple_of(8)
            || !consumer.is_multiple_of(8)
            || pos.wrapping_sub(consumer) > size
        {
            words.owner.store(0, Ordering::Release);
            return None;
        }
        Some(Producer {
            data: ring.mem.data(lane),
            mask: size - 1,
            size,
            max_len: ring.geometry.max_record_len() as u64,
            pos: Cell::new(pos),
            cached_consumer: Cell::new(consumer),
            lane,
            ring,
        })
    }

    /// The lane this producer holds.
    pub fn lane(&self) -> u32 {
        self.lane as u32
    }

    /// The longest payload one record can carry.
    pub fn max_record_len(&self) -> usize {
        self.max_len as usize
    }

    /// Records refused on this lane because it was full, by any owner.
    pub fn dropped(&self) -> u64 {
        self.ring
            .mem
            .lane(self.lane)
            .dropped
            .load(Ordering::Relaxed)
    }

    /// Reserves `len` bytes of ring memory to write a record in place.
    ///
    /// Never blocks: a full lane fails at once and the drop is counted. Several
    /// reservations may be outstanding; they become visible to the consumer in
    /// the order they were reserved, as each is committed or discarded.
    ///
    /// # Errors
    /// [`ReserveError::Full`] when the consumer is too far behind;
    /// [`ReserveError::TooLarge`] when `len` exceeds [`Self::max_record_len`].
    #[inline]
    pub fn reserve(&self, len: usize) -> Result<Reservation<'_, M>, ReserveError> {
        if len as u64 > self.max_len {
            return Err(ReserveError::TooLarge {
                len,
                max: self.max_len as usize,
            });
        }
        let pos = self.pos.get();
        let end = pos + record_total(len as u64);
        if end.wrapping_sub(self.cached_consumer.get()) > self.size {
            // Acquire pairs with the consumer's Release store of consumer_pos
            // (protocol step C3): its reads of the space we are about to
            // reuse happen before our writes. A bogus value from a broken
            // consumer can only make us refuse, never overrun: the wrapping
            // difference is then larger than the size.
            let consumer = self
                .ring
                .mem
                .lane(self.lane)
                .consumer_pos
                .load(Ordering::Acquire);
            self.cached_consumer.set(consumer);
            if end.wrapping_sub(consumer) > self.size {
                let dropped = &self.ring.mem.lane(self.lane).dropped;
                // We are the lane's only writer of `dropped`.
                dropped.store(dropped.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                return Err(ReserveError::Full { len });
            }
        }
        let off = (pos & self.mask) as usize;
        let words = self.ring.mem.lane(self.lane);
        // Step 2, then step 3: the Release store of producer_pos publishes the
        // BUSY header (pairs with the consumer's Acquire load in C1).
        self.ring
            .mem
            .header(self.lane, off)
            .store(Header::busy(len as u64, pos), Ordering::Relaxed);
        words.producer_pos.store(end, Ordering::Release);
        self.pos.set(end);
        self.ring.mem.track_write(self.lane, off + 8, len);
        Ok(Reservation {
            producer: self,
            pos,
            len: len as u32,
        })
    }

    /// Copies `bytes` into a new record and commits it.
    ///
    /// # Errors
    /// As for [`Self::reserve`].
    #[inline]
    pub fn push(&self, bytes: &[u8]) -> Result<(), ReserveError> {
        let mut record = self.reserve(bytes.len())?;
        record.copy_from_slice(bytes);
        record.commit();
        Ok(())
    }

    /// Wakes the consumer if it sleeps, so that it sees every record this
    /// producer committed before the call, including those of
    /// [`Reservation::commit_quiet`] (protocol step 5 on its own). Costs a
    /// full fence and a load of a line nobody writes; a system call only
    /// when the consumer sleeps.
    ///
    /// Call it once after a burst of quiet commits, and always before this
    /// thread waits for anything the consumer does (space in a full lane,
    /// an answer), or the two may wait for each other until the consumer's
    /// `wait` times out.
    #[inline]
    pub fn notify(&self) {
        // Step 5: the StoreLoad fence pairs with the consumer's fence in W2,
        // and orders every header store before it, quiet or not.
        fence(Ordering::SeqCst);
        wake_if_waiting(&self.ring.mem);
    }

    /// Ends a reservation: stores its final header, then (if `wake`) wakes
    /// the consumer if it sleeps.
    #[inline]
    fn finish(&self, pos: u64, len: u32, header: u64, wake: bool) {
        let off = (pos & self.mask) as usize;
        // The payload was written between reserve and now: the last write
        // is what the consumer's read must be ordered after.
        self.ring.mem.track_write(self.lane, off + 8, len as usize);
        // Step 4: Release publishes the payload (pairs with the consumer's
        // Acquire load of the header in C2).
        self.ring
            .mem
            .header(self.lane, off)
            .store(header, Ordering::Release);
        if wake {
            self.notify();
        }
    }
}

impl<M: RingMemory> Drop for Producer<M> {
    fn drop(&mut self) {
        // Records committed quietly and never notified must not be left to
        // a sleeping consumer's timeout.
        self.notify();
        // Release pairs with the Acquire CAS of the next claimant: our last
        // producer_pos is visible to it. No reservation is outstanding: each
        // borrows `self`.
        self.ring
            .mem
            .lane(self.lane)
            .owner
            .store(0, Ordering::Release);
    }
}

impl<M: RingMemory> fmt::Debug for Producer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("lane", &self.lane)
            .field("pos", &self.pos.get())
            .finish()
    }
}

/// The producer's half of the sleep handshake, after its header store and
/// the SeqCst fence: if the consumer announced a sleep, bump `wake_seq` and
/// wake it. The Release pairs with the consumer's Acquire load of `wake_seq`
/// after it wakes, so our commit is visible to its next look. Only the
/// consumer writes `waiting`; a consumer that stays awake clears it, and a
/// commit that sees a stale 1 costs one spurious wake-up, never a lost one.
#[inline]
pub(super) fn wake_if_waiting<M: RingMemory>(mem: &M) {
    let control = mem.control();
    if control.waiting.load(Ordering::Relaxed) != 0 {
        control.wake_seq.fetch_add(1, Ordering::Release);
        mem.wake();
    }
}

/// Turns every BUSY record between the consumer and producer positions of a
/// lane whose owner died into a DISCARD record, and counts them in the lane's
/// `abandoned` word. The caller holds the lane's owner word, so the dead owner
/// was the lane's only writer and nothing races the rewrite. Stops at the
/// first header that does not check out (the consumer will report it).
pub(super) fn reap_lane<M: RingMemory>(mem: &M, lane: usize) -> Result<u64, Corruption> {
    let geometry = mem.geometry();
    let words = mem.lane(lane);
    let end = words.producer_pos.load(Ordering::Acquire);
    let mut pos = words.consumer_pos.load(Ordering::Acquire);
    if !pos.is_multiple_of(8)
        || !end.is_multiple_of(8)
        || end.wrapping_sub(pos) > geometry.data_size
    {
        return Err(Corruption::ConsumerPosition {
            found: pos,
            producer: end,
        });
    }
    let max = geometry.max_record_len() as u64;
    let mut reaped = 0;
    while pos < end {
        let off = (pos & (geometry.data_size - 1)) as usize;
        let header = mem.header(lane, off);
        let decoded = Header::decode(header.load(Ordering::Acquire), pos, max)?;
        if let Header::Busy { len } = decoded {
            // Release, as in protocol step 4.
            header.store(Header::discarded(len, pos), Ordering::Release);
            reaped += 1;
        }
        pos += record_total(decoded.len());
    }
    if reaped > 0 {
        words.abandoned.fetch_add(reaped, Ordering::Relaxed);
        // A consumer asleep on the busy head must look again.
        fence(Ordering::SeqCst);
        wake_if_waiting(mem);
    }
    Ok(reaped)
}

/// Ring memory reserved for one record. Write the payload through
/// `DerefMut<Target = [u8]>`, then [`commit`](Self::commit). Dropping it
/// uncommitted discards it.
#[must_use = "a reservation is discarded unless committed"]
pub struct Reservation<'p, M: RingMemory = HeapMemory> {
    producer: &'p Producer<M>,
    pos: u64,
    len: u32,
}

impl<M: RingMemory> Reservation<'_, M> {
    /// Makes the record visible to the consumer (once every record reserved
    /// before it on the lane is committed or discarded), and wakes the
    /// consumer if it sleeps. Never leaves a sleeping consumer asleep.
    #[inline]
    pub fn commit(self) {
        let this = std::mem::ManuallyDrop::new(self);
        this.producer.finish(
            this.pos,
            this.len,
            Header::committed(u64::from(this.len), this.pos),
            true,
        );
    }

    /// Makes the record visible, as [`Self::commit`], but skips the wake-up
    /// check (protocol step 5): no fence, no load of `waiting`. Like the BPF
    /// ring buffer's `BPF_RB_NO_WAKEUP`, for the records of a burst.
    ///
    /// A consumer that polls sees the record as soon as after `commit`. A
    /// consumer that sleeps in [`Consumer::wait`](super::Consumer::wait), or
    /// is about to, may not: it stays asleep (at most until its `wait` times
    /// out) until this producer calls [`Producer::notify`], commits a
    /// record with [`Self::commit`], discards one, or is dropped. Each of
    /// those wakes it for every record committed before. So: end every burst
    /// of quiet commits with one of them, and always before waiting for the
    /// consumer (for space on [`ReserveError::Full`], or for an answer).
    ///
    /// A producer killed between a quiet commit and its notify loses
    /// nothing: the records are committed and stay in the ring, and the
    /// consumer reads them when its `wait` times out or another producer
    /// wakes it. A consumer that waits without a timeout on a ring whose
    /// producers may die should therefore pass one.
    #[inline]
    pub fn commit_quiet(self) {
        let this = std::mem::ManuallyDrop::new(self);
        this.producer.finish(
            this.pos,
            this.len,
            Header::committed(u64::from(this.len), this.pos),
            false,
        );
    }

    /// Gives the space up; the consumer skips it.
    #[inline]
    pub fn discard(self) {
        drop(self);
    }

    /// The ring position of the record (unique within the lane).
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl<M: RingMemory> Drop for Reservation<'_, M> {
    fn drop(&mut self) {
        self.producer.finish(
            self.pos,
            self.len,
            Header::discarded(u64::from(self.len), self.pos),
            true,
        );
    }
}

impl<M: RingMemory> Deref for Reservation<'_, M> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let off = (self.pos & self.producer.mask) as usize + 8;
        // SAFETY: [off, off + len) lies within the lane's 2 * data_size bytes
        // (off < data_size + 8, len <= data_size - 8). The record is BUSY, so
        // the consumer does not read it and no other reservation overlaps it;
        // the memory lives as long as the producer's Arc.
        unsafe { std::slice::from_raw_parts(self.producer.data.add(off), self.len as usize) }
    }
}

impl<M: RingMemory> DerefMut for Reservation<'_, M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let off = (self.pos & self.producer.mask) as usize + 8;
        // SAFETY: as in `deref`; `&mut self` makes this the only live view.
        unsafe { std::slice::from_raw_parts_mut(self.producer.data.add(off), self.len as usize) }
    }
}

impl<M: RingMemory> fmt::Debug for Reservation<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("pos", &self.pos)
            .field("len", &self.len)
            .finish()
    }
}

/// Why a reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveError {
    /// The lane has no room for the record; the drop was counted.
    Full {
        /// The payload length asked for.
        len: usize,
    },
    /// The record is longer than a lane can ever hold.
    TooLarge {
        /// The payload length asked for.
        len: usize,
        /// The longest payload a record can carry.
        max: usize,
    },
}

impl fmt::Display for ReserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReserveError::Full { len } => {
                write!(f, "ring lane full: no room for a {len}-byte record")
            }
            ReserveError::TooLarge { len, max } => {
                write!(
                    f,
                    "record of {len} bytes exceeds the ring's maximum of {max}"
                )
            }
        }
    }
}

impl std::error::Error for ReserveError {}
