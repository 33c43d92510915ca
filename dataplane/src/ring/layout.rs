//! The shared layout: geometry, the control words, and the record header.
//! The module docs of [`crate::ring`] are the spec; this file is its code.

use std::fmt;

use crate::sync::{AtomicU32, AtomicU64};

/// The version of the shared layout. A reader refuses any other.
pub const LAYOUT_VERSION: u32 = 1;
/// The magic word at offset 0: `ODOCKRNG`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"ODOCKRNG");
/// The most producer lanes a ring may have.
pub const MAX_LANES: u32 = 64;
/// The smallest data area of a lane (heap memory; mapped memory needs a page).
pub const MIN_DATA_SIZE: u64 = 64;
/// The largest data area of a lane.
pub const MAX_DATA_SIZE: u64 = 1 << 30;

pub(crate) const HEADER_LEN: u64 = 8;
pub(crate) const LEN_MASK: u64 = (1 << 30) - 1;
pub(crate) const DISCARD: u64 = 1 << 30;
pub(crate) const BUSY: u64 = 1 << 31;
const FLAGS: u64 = BUSY | DISCARD;

/// The size of a lane and how many lanes a ring has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Producer lanes: 1 for SPSC, N for up to N concurrent producers.
    pub lanes: u32,
    /// Bytes of record space per lane: a power of two.
    pub data_size: u64,
}

impl Geometry {
    /// Checks and builds a geometry.
    ///
    /// # Errors
    /// [`GeometryError`] naming the field that is out of range.
    pub fn new(lanes: u32, data_size: u64) -> Result<Self, GeometryError> {
        if lanes == 0 || lanes > MAX_LANES {
            return Err(GeometryError::Lanes(lanes));
        }
        if !data_size.is_power_of_two() || !(MIN_DATA_SIZE..=MAX_DATA_SIZE).contains(&data_size) {
            return Err(GeometryError::DataSize(data_size));
        }
        Ok(Geometry { lanes, data_size })
    }

    /// The longest payload one record can carry.
    pub fn max_record_len(&self) -> usize {
        (self.data_size - HEADER_LEN).min(LEN_MASK) as usize
    }
}

/// A geometry field out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeometryError {
    /// `lanes` must be 1 to [`MAX_LANES`].
    Lanes(u32),
    /// `data_size` must be a power of two from [`MIN_DATA_SIZE`] to 1 GiB
    /// (and at least a page for mapped memory).
    DataSize(u64),
}

impl fmt::Display for GeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeometryError::Lanes(n) => write!(f, "lanes = {n}: must be 1 to {MAX_LANES}"),
            GeometryError::DataSize(n) => write!(
                f,
                "data_size = {n}: must be a power of two from {MIN_DATA_SIZE} bytes to 1 GiB \
                 (at least one page for a mapped ring)"
            ),
        }
    }
}

impl std::error::Error for GeometryError {}

/// Offset 0 of the file: written once by the creator, `magic` last.
#[repr(C)]
pub(crate) struct MetaBlock {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub page_size: AtomicU32,
    pub lanes: AtomicU32,
    pub flags: AtomicU32,
    pub data_size: AtomicU64,
    pub file_len: AtomicU64,
}

/// Ring-wide words the consumer owns; producers read `waiting`. Opaque.
///
/// Aligned to 128 bytes, so that on the heap, as in a mapping, no other
/// allocation shares its cache lines.
#[repr(C, align(128))]
pub struct ControlBlock {
    /// The consumer's owner word (see `owner.rs`); 0 when none.
    pub(crate) consumer_owner: AtomicU64,
    _pad: [u64; 7],
    /// 1 while the consumer sleeps or is about to. Written by the consumer
    /// only; producers read it after every commit.
    pub(crate) waiting: AtomicU32,
    _pad1: [u32; 15],
    /// The futex word: producers bump it (only while `waiting` is 1) and then
    /// wake the consumer, which sleeps while it keeps the value it read.
    pub(crate) wake_seq: AtomicU32,
}

/// Offset of [`ControlBlock`] in page 0.
pub(crate) const CONTROL_OFFSET: usize = 128;

/// One lane's control page. Opaque.
///
/// Aligned to 128 bytes, so that on the heap, as in a mapping, its words
/// share no cache line with another lane's or with any other allocation.
#[repr(C, align(128))]
pub struct LaneControl {
    /// Written by the consumer only.
    pub(crate) consumer_pos: AtomicU64,
    _pad0: [u64; 15],
    /// Written by the lane's owner only.
    pub(crate) producer_pos: AtomicU64,
    /// Reservations refused because the lane was full; owner only.
    pub(crate) dropped: AtomicU64,
    _pad1: [u64; 14],
    /// The owner word of the producer holding the lane; 0 when free.
    pub(crate) owner: AtomicU64,
    /// BUSY records of dead owners turned into discards, by the reaper.
    pub(crate) abandoned: AtomicU64,
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::offset_of!(LaneControl, producer_pos) == 128);
    assert!(std::mem::offset_of!(LaneControl, owner) == 256);
    assert!(std::mem::size_of::<LaneControl>() <= 4096);
    assert!(CONTROL_OFFSET + std::mem::size_of::<ControlBlock>() <= 4096);
    assert!(std::mem::size_of::<MetaBlock>() <= CONTROL_OFFSET);
    assert!(std::mem::offset_of!(ControlBlock, waiting) == 64);
    assert!(std::mem::offset_of!(ControlBlock, wake_seq) == 128);
};

impl ControlBlock {
    pub(crate) fn new() -> Self {
        ControlBlock {
            consumer_owner: AtomicU64::new(0),
            _pad: [0; 7],
            waiting: AtomicU32::new(0),
            _pad1: [0; 15],
            wake_seq: AtomicU32::new(0),
        }
    }
}

impl LaneControl {
    pub(crate) fn new() -> Self {
        LaneControl {
            consumer_pos: AtomicU64::new(0),
            _pad0: [0; 15],
            producer_pos: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            _pad1: [0; 14],
            owner: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        }
    }
}

/// Bytes a record of `len` payload bytes takes: header plus padded payload.
#[inline]
pub(crate) fn record_total(len: u64) -> u64 {
    (HEADER_LEN + len + 7) & !7
}

/// The tag a header at position `pos` must carry.
#[inline]
pub(crate) fn tag(pos: u64) -> u64 {
    ((pos >> 3) & 0xFFFF_FFFF) << 32
}

/// A header word, decoded and checked against the position it was read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    Busy { len: u64 },
    Discarded { len: u64 },
    Committed { len: u64 },
}

/// What is wrong with a corrupt ring: the rule a position or header broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// `producer_pos` is unaligned, went backwards, or is more than the data
    /// size ahead of the consumer.
    ProducerPosition {
        /// What the lane's `producer_pos` held.
        found: u64,
        /// The last value the consumer accepted.
        previous: u64,
    },
    /// `consumer_pos` is unaligned or not within one data size behind
    /// `producer_pos` (checked when a consumer or producer takes over a lane).
    ConsumerPosition {
        /// What the lane's `consumer_pos` held.
        found: u64,
        /// The lane's `producer_pos` at that moment.
        producer: u64,
    },
    /// The header's tag is not the one due at its position: a stray or stale
    /// header, or bytes written past a record's end.
    HeaderTag {
        /// The tag found.
        found: u32,
        /// The tag due.
        expected: u32,
    },
    /// The header has both BUSY and DISCARD set.
    HeaderFlags,
    /// The header's length exceeds the lane's longest record.
    RecordLength {
        /// The length found.
        len: u64,
        /// The most a record may carry.
        max: u64,
    },
    /// The record ends past `producer_pos`.
    RecordPastProducer {
        /// Where the record would end.
        end: u64,
        /// The lane's `producer_pos`.
        producer: u64,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Corruption::ProducerPosition { found, previous } => write!(
                f,
                "producer_pos {found} is unaligned, behind {previous}, or more than the data size ahead"
            ),
            Corruption::ConsumerPosition { found, producer } => write!(
                f,
                "consumer_pos {found} is unaligned or not within one data size behind producer_pos {producer}"
            ),
            Corruption::HeaderTag { found, expected } => {
                write!(
                    f,
                    "header tag {found:#x} where {expected:#x} was due (a stray or stale header)"
                )
            }
            Corruption::HeaderFlags => write!(f, "header has both BUSY and DISCARD set"),
            Corruption::RecordLength { len, max } => {
                write!(f, "record length {len} exceeds the lane's maximum of {max}")
            }
            Corruption::RecordPastProducer { end, producer } => {
                write!(f, "record ends at {end}, past producer_pos {producer}")
            }
        }
    }
}

impl Header {
    #[inline]
    pub(crate) fn busy(len: u64, pos: u64) -> u64 {
        BUSY | len | tag(pos)
    }
    #[inline]
    pub(crate) fn committed(len: u64, pos: u64) -> u64 {
        len | tag(pos)
    }
    #[inline]
    pub(crate) fn discarded(len: u64, pos: u64) -> u64 {
        DISCARD | len | tag(pos)
    }

    /// Decodes `word`, read at position `pos`, for a lane whose longest
    /// payload is `max_len`.
    #[inline]
    pub(crate) fn decode(word: u64, pos: u64, max_len: u64) -> Result<Header, Corruption> {
        let expected = tag(pos);
        if word & !(LEN_MASK | FLAGS) != expected {
            return Err(Corruption::HeaderTag {
                found: (word >> 32) as u32,
                expected: (expected >> 32) as u32,
            });
        }
        let len = word & LEN_MASK;
        if len > max_len {
            return Err(Corruption::RecordLength { len, max: max_len });
        }
        match word & FLAGS {
            0 => Ok(Header::Committed { len }),
            BUSY => Ok(Header::Busy { len }),
            DISCARD => Ok(Header::Discarded { len }),
            _ => Err(Corruption::HeaderFlags),
        }
    }

    /// The payload length, whatever the state.
    #[inline]
    pub(crate) fn len(self) -> u64 {
        match self {
            Header::Busy { len } | Header::Discarded { len } | Header::Committed { len } => len,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn geometry_rejects_out_of_range() {
        assert_eq!(Geometry::new(0, 4096), Err(GeometryError::Lanes(0)));
        assert_eq!(Geometry::new(65, 4096), Err(GeometryError::Lanes(65)));
        assert_eq!(Geometry::new(1, 4095), Err(GeometryError::DataSize(4095)));
        assert_eq!(Geometry::new(1, 32), Err(GeometryError::DataSize(32)));
        assert_eq!(
            Geometry::new(1, 1 << 31),
            Err(GeometryError::DataSize(1 << 31))
        );
        assert_eq!(Geometry::new(2, 4096).unwrap().max_record_len(), 4088);
    }

    #[test]
    fn header_round_trips_and_rejects_faults() {
        let pos = 0x1234_5678_9ab8;
        assert_eq!(
            Header::decode(Header::busy(10, pos), pos, 100),
            Ok(Header::Busy { len: 10 })
        );
        assert_eq!(
            Header::decode(Header::committed(10, pos), pos, 100),
            Ok(Header::Committed { len: 10 })
        );
        assert_eq!(
            Header::decode(Header::discarded(0, pos), pos, 100),
            Ok(Header::Discarded { len: 0 })
        );
        assert!(matches!(
            Header::decode(Header::committed(10, pos + 8), pos, 100),
            Err(Corruption::HeaderTag { .. })
        ));
        assert_eq!(
            Header::decode(Header::committed(101, pos), pos, 100),
            Err(Corruption::RecordLength { len: 101, max: 100 })
        );
        assert_eq!(
            Header::decode(BUSY | DISCARD | tag(pos), pos, 100),
            Err(Corruption::HeaderFlags)
        );
        assert_eq!(record_total(0), 8);
        assert_eq!(record_total(1), 16);
        assert_eq!(record_total(8), 16);
        assert_eq!(record_total(9), 24);
    }
}
