//! The writer: stamps records, writes them in place into an evidence ring,
//! and turns overflow into counted `gap` records.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::encode::{encoded_len, write_exact};
use super::record::{Evidence, Flags, Stamp};
use crate::ring::{HeapMemory, Producer, ReserveError, RingMemory};

/// Where the writer's timestamps come from: wall-clock ns since the UNIX
/// epoch. Tests use a closure (`|| 42`).
pub trait Clock {
    /// Now, in ns since the UNIX epoch (UTC).
    fn now_unix_ns(&self) -> u64;
}

/// The system's real-time clock (`CLOCK_REALTIME`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_unix_ns(&self) -> u64 {
        // Before 1970 reads as 0; after 2554 saturates.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl<F: Fn() -> u64> Clock for F {
    fn now_unix_ns(&self) -> u64 {
        self()
    }
}

/// Writes evidence records into one lane of an evidence ring.
///
/// It stamps each record with the next sequence number, the time and its
/// worker index; encodes it straight into a ring reservation (one reserve,
/// no allocation); and, when the ring is full, drops the record, counts it,
/// and makes the next write that finds room commit a `gap` record first
/// (see the [module docs](super) for the sequence rules). One thread writes
/// through it, like the [`Producer`] it owns.
pub struct EvidenceWriter<M: RingMemory = HeapMemory, C: Clock = SystemClock> {
    producer: Producer<M>,
    clock: C,
    worker: u32,
    next_sequence: u64,
    /// Whether a record has been committed yet (the first one carries
    /// [`Flags::WRITER_START`]).
    started: bool,
    /// When the first loss not yet reported by a gap happened.
    first_loss_ns: u64,
    counters: WriterCounters,
}

/// What a writer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WriterCounters {
    /// Records committed, gap records not included.
    pub written: u64,
    /// Records dropped: the ring was full, or the record was too large for
    /// it. Each was reported, or will be, by a gap record.
    pub dropped: u64,
    /// Of the dropped, those too large for the ring to ever hold.
    pub too_large: u64,
    /// Gap records committed.
    pub gaps: u64,
    /// Dropped records the next gap record will report.
    pub pending: u64,
}

impl<M: RingMemory> EvidenceWriter<M, SystemClock> {
    /// A writer over `producer`'s lane for worker `worker`, stamping
    /// records with the system clock; its first sequence number is 0.
    pub fn new(producer: Producer<M>, worker: u32) -> Self {
        EvidenceWriter::with_clock(producer, worker, SystemClock)
    }
}

impl<M: RingMemory, C: Clock> EvidenceWriter<M, C> {
    /// A writer that stamps records with `clock`.
    pub fn with_clock(producer: Producer<M>, worker: u32, clock: C) -> Self {
        EvidenceWriter {
            producer,
            clock,
            worker,
            next_sequence: 0,
            started: false,
            first_loss_ns: 0,
            counters: WriterCounters::default(),
        }
    }

    /// Starts numbering at `sequence` instead of 0.
    pub fn starting_at(mut self, sequence: u64) -> Self {
        self.next_sequence = sequence;
        self
    }

    /// Writes one record and returns its sequence number. Never blocks and
    /// never allocates.
    ///
    /// If records were dropped since the last gap record, a gap record
    /// reporting them is committed first; if that finds no room either, this
    /// record is dropped too.
    ///
    /// # Errors
    /// [`WriteError::Full`] or [`WriteError::TooLarge`]: the record was
    /// dropped, counted, and will be reported by the next gap record. It
    /// kept its sequence number.
    #[inline]
    pub fn write(&mut self, evidence: &Evidence<'_>) -> Result<u64, WriteError> {
        let now = self.clock.now_unix_ns();
        if self.counters.pending > 0 && self.put_gap(now).is_err() {
            let sequence = self.next_sequence;
            self.lose(now, false);
            return Err(WriteError::Full { sequence });
        }
        let sequence = self.next_sequence;
        match self.put(sequence, now, evidence) {
            Ok(()) => {
                self.counters.written += 1;
                Ok(sequence)
            }
            Err(err) => {
                let error = match err {
                    ReserveError::Full { .. } => WriteError::Full { sequence },
                    ReserveError::TooLarge { len, max } => {
                        WriteError::TooLarge { sequence, len, max }
                    }
                };
                self.lose(now, matches!(error, WriteError::TooLarge { .. }));
                Err(error)
            }
        }
    }

    /// Commits the pending gap record now, if records were dropped since the
    /// last one: call it when the writer goes idle, so losses at the end of
    /// a burst show without waiting for the next record. Returns whether a
    /// gap record was committed. Dropping the writer does this too, best
    /// effort.
    ///
    /// # Errors
    /// [`WriteError::Full`] when the ring still has no room; the gap stays
    /// pending (and consumes no sequence number).
    pub fn flush_gap(&mut self) -> Result<bool, WriteError> {
        if self.counters.pending == 0 {
            return Ok(false);
        }
        let now = self.clock.now_unix_ns();
        self.put_gap(now)
            .map(|()| true)
            .map_err(|_| WriteError::Full {
                sequence: self.next_sequence,
            })
    }

    /// The writer's counters.
    pub fn counters(&self) -> WriterCounters {
        self.counters
    }

    /// The sequence number the next record (or gap) will get.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The worker index stamped on records.
    pub fn worker(&self) -> u32 {
        self.worker
    }

    /// The ring producer the writer writes through.
    pub fn producer(&self) -> &Producer<M> {
        &self.producer
    }

    /// Commits a gap record for the pending losses.
    fn put_gap(&mut self, now: u64) -> Result<(), ReserveError> {
        let mut gap = Evidence::gap(self.counters.pending);
        gap.duration_ns = now.saturating_sub(self.first_loss_ns);
        self.put(self.next_sequence, now, &gap)?;
        self.counters.gaps += 1;
        self.counters.pending = 0;
        Ok(())
    }

    /// Reserves, encodes in place, commits; on success the sequence number
    /// is used.
    #[inline]
    fn put(
        &mut self,
        sequence: u64,
        now: u64,
        evidence: &Evidence<'_>,
    ) -> Result<(), ReserveError> {
        let len = encoded_len(evidence);
        let Ok(total) = u32::try_from(len) else {
            return Err(ReserveError::TooLarge {
                len,
                max: self.producer.max_record_len(),
            });
        };
        let stamp = Stamp {
            sequence,
            timestamp_ns: now,
            worker: self.worker,
        };
        let mut reservation = self.producer.reserve(len)?;
        if self.started {
            write_exact(&stamp, evidence, &mut reservation, total);
        } else {
            let first = Evidence {
                flags: evidence.flags | Flags::WRITER_START,
                ..*evidence
            };
            write_exact(&stamp, &first, &mut reservation, total);
        }
        reservation.commit();
        self.started = true;
        self.next_sequence = sequence.wrapping_add(1);
        Ok(())
    }

    /// Counts a dropped record, which keeps its sequence number.
    fn lose(&mut self, now: u64, too_large: bool) {
        if self.counters.pending == 0 {
            self.first_loss_ns = now;
        }
        self.counters.pending += 1;
        self.counters.dropped += 1;
        self.counters.too_large += u64::from(too_large);
        self.next_sequence = self.next_sequence.wrapping_add(1);
    }
}

impl<M: RingMemory, C: Clock> Drop for EvidenceWriter<M, C> {
    fn drop(&mut self) {
        // Best effort: a gap that still finds no room is counted in
        // `counters().pending`, and the ring's own drop counter saw it.
        let _ = self.flush_gap();
    }
}

impl<M: RingMemory, C: Clock> fmt::Debug for EvidenceWriter<M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvidenceWriter")
            .field("worker", &self.worker)
            .field("lane", &self.producer.lane())
            .field("next_sequence", &self.next_sequence)
            .field("counters", &self.counters)
            .finish()
    }
}

/// Why a record was dropped. Either way it was counted and keeps its
/// sequence number; the next gap record reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The ring had no room (for the record, or for the gap record that had
    /// to go first).
    Full {
        /// The dropped record's sequence number.
        sequence: u64,
    },
    /// The record is larger than the ring can ever hold.
    TooLarge {
        /// The dropped record's sequence number.
        sequence: u64,
        /// Its encoded length.
        len: usize,
        /// The longest record the ring holds.
        max: usize,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Full { sequence } => write!(
                f,
                "evidence ring full: record {sequence} dropped (a gap record will report it)"
            ),
            WriteError::TooLarge { sequence, len, max } => write!(
                f,
                "evidence record {sequence} of {len} bytes exceeds the ring's maximum of {max}: \
                 dropped (a gap record will report it)"
            ),
        }
    }
}

impl std::error::Error for WriteError {}
