//! Decoding: every length checked, every text validated, nothing copied.

use std::fmt;

use super::record::{
    Attrs, AttrsRepr, Evidence, EvidenceRecord, Flags, Gate, Kind, Names, NamesRepr, Payload,
    Scope, Stamp, Verdict, Version,
};
use super::{HEADER_LEN, MAJOR, MINOR};

/// Bytes every version begins with: major, minor, header_len, total_len.
const FRAME_LEN: usize = 8;

/// Decodes one record that fills `bytes` exactly (one ring record, say).
/// The result borrows from `bytes`; nothing is allocated.
///
/// # Errors
/// A [`DecodeError`] naming the field, its offset and the [`Problem`]:
/// truncation, a major version other than [`MAJOR`], a length that does not
/// match, text that is not UTF-8, or bytes past the end of a record whose
/// minor version is not newer than [`MINOR`].
pub fn decode(bytes: &[u8]) -> Result<EvidenceRecord<'_>, DecodeError> {
    let total = frame(bytes)?;
    if total != bytes.len() {
        return Err(DecodeError::new(
            "total_len",
            4,
            Problem::LengthMismatch {
                declared: total as u64,
                actual: bytes.len(),
            },
        ));
    }
    decode_exact(bytes)
}

/// Decodes the record at the front of `bytes` (records laid end to end, as
/// in a file) and returns it with the bytes after it.
///
/// # Errors
/// As for [`decode`]; a record longer than `bytes` is
/// [`Problem::Truncated`].
pub fn decode_prefix(bytes: &[u8]) -> Result<(EvidenceRecord<'_>, &[u8]), DecodeError> {
    let total = frame(bytes)?;
    let Some((record, rest)) = bytes.split_at_checked(total) else {
        return Err(DecodeError::new(
            "total_len",
            4,
            Problem::Truncated {
                needed: total,
                available: bytes.len(),
            },
        ));
    };
    Ok((decode_exact(record)?, rest))
}

/// Reads the frame every version shares and refuses another major version;
/// returns `total_len`.
fn frame(bytes: &[u8]) -> Result<usize, DecodeError> {
    let Some(f) = bytes.first_chunk::<FRAME_LEN>() else {
        return Err(DecodeError::new(
            "header",
            0,
            Problem::Truncated {
                needed: FRAME_LEN,
                available: bytes.len(),
            },
        ));
    };
    if f[0] != MAJOR {
        return Err(DecodeError::new(
            "major",
            0,
            Problem::UnsupportedMajor { major: f[0] },
        ));
    }
    Ok(u32::from_le_bytes([f[4], f[5], f[6], f[7]]) as usize)
}

/// Decodes a record whose `total_len` is `bytes.len()`.
fn decode_exact(bytes: &[u8]) -> Result<EvidenceRecord<'_>, DecodeError> {
    let Some(f) = bytes.first_chunk::<FRAME_LEN>() else {
        // A `total_len` shorter than the frame (from `decode_prefix`).
        return Err(DecodeError::new(
            "total_len",
            4,
            Problem::Truncated {
                needed: FRAME_LEN,
                available: bytes.len(),
            },
        ));
    };
    let minor = f[1];
    let newer = minor > MINOR;
    let header_len = u16::from_le_bytes([f[2], f[3]]);
    let h = usize::from(header_len);
    if h < HEADER_LEN || h > bytes.len() || (!newer && h != HEADER_LEN) {
        return Err(DecodeError::new(
            "header_len",
            2,
            Problem::BadHeaderLen {
                header_len,
                total_len: bytes.len(),
            },
        ));
    }
    let Some(head) = bytes.first_chunk::<HEADER_LEN>() else {
        // h >= HEADER_LEN and h <= bytes.len(): unreachable, but no panic.
        return Err(DecodeError::new(
            "header",
            0,
            Problem::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            },
        ));
    };
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
    let u64_at = |o: usize| {
        let mut b = [0; 8];
        b.copy_from_slice(&head[o..o + 8]);
        u64::from_le_bytes(b)
    };

    let mut r = In { bytes, pos: h };
    let request_id = r.text("request_id")?;
    let plugin = r.text("plugin")?;
    let scope = Scope {
        tenant: r.text("tenant")?,
        virtual_key: r.text("virtual_key")?,
        environment: r.text("environment")?,
        model: r.text("model")?,
        mcp_server: r.text("mcp_server")?,
        tool: r.text("tool")?,
    };
    let reason = r.text("reason")?;
    let detail = r.text("detail")?;
    let changed = {
        let (count, bytes) = r.texts("changed", 1)?;
        Names(NamesRepr::Wire { count, bytes })
    };
    let attrs = {
        let (count, bytes) = r.texts("attrs", 2)?;
        Attrs(AttrsRepr::Wire { count, bytes })
    };
    let payload = Payload {
        kind: r.text("payload_kind")?,
        data: {
            let len = r.u32("payload")? as usize;
            r.take("payload", len)?
        },
    };
    if r.pos != bytes.len() && !newer {
        return Err(DecodeError::new(
            "end",
            r.pos,
            Problem::TrailingBytes {
                count: bytes.len() - r.pos,
            },
        ));
    }

    Ok(EvidenceRecord {
        version: Version {
            major: head[0],
            minor,
        },
        stamp: Stamp {
            sequence: u64_at(16),
            timestamp_ns: u64_at(24),
            worker: u32_at(12),
        },
        evidence: Evidence {
            kind: Kind::from_code(u16_at(8)),
            gate: Gate::from_code(head[54]),
            verdict: Verdict::from_code(head[55]),
            flags: Flags(u16_at(10)),
            status: u16_at(52),
            plugin_id: u32_at(48),
            duration_ns: u64_at(32),
            count: u64_at(40),
            request_id,
            plugin,
            scope,
            reason,
            detail,
            changed,
            attrs,
            payload,
        },
    })
}

/// A cursor over one record's bytes.
struct In<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> In<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        let rest = &self.bytes[self.pos..];
        let Some(taken) = rest.get(..n) else {
            return Err(DecodeError::new(
                field,
                self.pos,
                Problem::Truncated {
                    needed: n,
                    available: rest.len(),
                },
            ));
        };
        self.pos += n;
        Ok(taken)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(field, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn text(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.u16(field)?;
        let at = self.pos;
        let bytes = self.take(field, usize::from(len))?;
        std::str::from_utf8(bytes).map_err(|e| {
            DecodeError::new(
                field,
                at,
                Problem::InvalidUtf8 {
                    valid_up_to: e.valid_up_to(),
                },
            )
        })
    }

    /// A list: a u16 count of entries, each `per_entry` texts. Returns the
    /// count and the entries' bytes, all checked.
    fn texts(
        &mut self,
        field: &'static str,
        per_entry: usize,
    ) -> Result<(u16, &'a [u8]), DecodeError> {
        let count = self.u16(field)?;
        let start = self.pos;
        for _ in 0..usize::from(count) * per_entry {
            self.text(field)?;
        }
        Ok((count, &self.bytes[start..self.pos]))
    }
}

/// Why bytes are not a record this reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// The field being read (as the format's docs name it; `header` for
    /// the fixed header, `end` for what follows the last field).
    pub field: &'static str,
    /// Its byte offset in the record.
    pub offset: usize,
    /// What is wrong with it.
    pub problem: Problem,
}

impl DecodeError {
    fn new(field: &'static str, offset: usize, problem: Problem) -> DecodeError {
        DecodeError {
            field,
            offset,
            problem,
        }
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The bytes end before the field does.
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A major version this reader does not read.
    UnsupportedMajor {
        /// The record's major version.
        major: u8,
    },
    /// `total_len` is not the length of the bytes.
    LengthMismatch {
        /// The record's `total_len`.
        declared: u64,
        /// The bytes' length.
        actual: usize,
    },
    /// `header_len` is shorter than this version's header, longer than the
    /// record, or, in a record not newer than this reader, not exactly this
    /// version's header.
    BadHeaderLen {
        /// The record's `header_len`.
        header_len: u16,
        /// The record's length.
        total_len: usize,
    },
    /// A text field is not UTF-8.
    InvalidUtf8 {
        /// The length of its valid prefix.
        valid_up_to: usize,
    },
    /// Bytes follow the last field of a record whose minor version is not
    /// newer than this reader's.
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad evidence record: field `{}` at offset {}: ",
            self.field, self.offset
        )?;
        match self.problem {
            Problem::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, {available} left")
            }
            Problem::UnsupportedMajor { major } => write!(
                f,
                "format major version {major} is not supported (this reader reads {MAJOR}.x)"
            ),
            Problem::LengthMismatch { declared, actual } => write!(
                f,
                "total_len says {declared} bytes, the record has {actual}"
            ),
            Problem::BadHeaderLen {
                header_len,
                total_len,
            } => write!(
                f,
                "header_len {header_len} is invalid (version {MAJOR}.{MINOR} header: {HEADER_LEN} bytes; record: {total_len} bytes)"
            ),
            Problem::InvalidUtf8 { valid_up_to } => {
                write!(f, "text is not UTF-8 after its first {valid_up_to} bytes")
            }
            Problem::TrailingBytes { count } => write!(
                f,
                "{count} bytes follow the last field of a record not newer than {MAJOR}.{MINOR}"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}
