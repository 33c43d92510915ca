//! Checking one writer's sequence numbers: nothing lost that a gap does not
//! report, nothing repeated.

use std::fmt;

use super::record::{EvidenceRecord, Flags, Kind};

/// Follows the records of one writer (one worker's stream, in the order the
/// ring delivered them) and proves that none was lost without a gap record
/// saying so, and none was repeated. See the [module docs](super) for the
/// rule.
///
/// ```
/// use odock_dataplane::evidence::{Evidence, EvidenceRecord, Kind, SequenceCheck, Stamp, Version};
///
/// let at = |sequence, evidence| EvidenceRecord {
///     version: Version { major: 1, minor: 0 },
///     stamp: Stamp { sequence, ..Stamp::default() },
///     evidence,
/// };
/// let mut check = SequenceCheck::new();
/// check.observe(&at(0, Evidence::new(Kind::Decision)))?;
/// check.observe(&at(4, Evidence::gap(3)))?; // 1, 2, 3 lost, and reported
/// check.observe(&at(5, Evidence::new(Kind::Decision)))?;
/// assert!(check.observe(&at(7, Evidence::new(Kind::Decision))).is_err()); // 6 lost silently
/// assert_eq!(check.lost(), 3);
/// # Ok::<(), odock_dataplane::evidence::SequenceError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct SequenceCheck {
    next: Option<u64>,
    records: u64,
    lost: u64,
    restarts: u64,
}

impl SequenceCheck {
    /// A check that has seen nothing: it takes the first record's number as
    /// the start.
    pub fn new() -> SequenceCheck {
        SequenceCheck::default()
    }

    /// Takes the next record of the writer.
    ///
    /// # Errors
    /// [`SequenceError`] when the record's number is not the one expected;
    /// the check then resynchronises on it, so later records are judged
    /// against it.
    pub fn observe(&mut self, record: &EvidenceRecord<'_>) -> Result<(), SequenceError> {
        let found = record.stamp.sequence;
        let lost = if record.evidence.kind == Kind::Gap {
            record.evidence.count
        } else {
            0
        };
        let start = record.evidence.flags.contains(Flags::WRITER_START);
        let result = match self.next {
            _ if start => {
                self.restarts += u64::from(self.next.is_some());
                if found < lost {
                    Err(SequenceError::GapTooLarge { found, lost })
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
            Some(expected) => match expected.checked_add(lost) {
                Some(want) if found == want => Ok(()),
                Some(want) if found < want => Err(SequenceError::Repeated {
                    expected: want,
                    found,
                }),
                _ => Err(SequenceError::Missing {
                    expected: expected.saturating_add(lost),
                    found,
                }),
            },
        };
        self.records += 1;
        self.lost += lost;
        self.next = Some(found.wrapping_add(1));
        result
    }

    /// Records seen, gap records included.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records the gap records reported lost.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// How often the writer started afresh (a [`Flags::WRITER_START`] after
    /// the first record).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The sequence number expected next (counting no loss).
    pub fn next_expected(&self) -> Option<u64> {
        self.next
    }
}

/// A record whose sequence number breaks the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceError {
    /// Records between the last one and this were lost with no gap record
    /// to say so.
    Missing {
        /// The number expected.
        expected: u64,
        /// The number found.
        found: u64,
    },
    /// The record repeats or goes back before one already seen.
    Repeated {
        /// The number expected.
        expected: u64,
        /// The number found.
        found: u64,
    },
    /// A gap at the start of a writer's stream reports more losses than
    /// numbers before it.
    GapTooLarge {
        /// The gap record's number.
        found: u64,
        /// The losses it reports.
        lost: u64,
    },
}

impl fmt::Display for SequenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceError::Missing { expected, found } => write!(
                f,
                "evidence lost without a gap record: expected sequence {expected}, found {found}"
            ),
            SequenceError::Repeated { expected, found } => write!(
                f,
                "evidence repeated or out of order: expected sequence {expected}, found {found}"
            ),
            SequenceError::GapTooLarge { found, lost } => write!(
                f,
                "gap record {found} reports {lost} losses, more than records before it"
            ),
        }
    }
}

impl std::error::Error for SequenceError {}
