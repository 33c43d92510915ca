//! Encoding: exact length first, then the bytes, in place.

use std::fmt;

use super::record::{AttrsRepr, Evidence, Flags, NamesRepr, Stamp, fit_list, fit_text};
use super::{HEADER_LEN, MAJOR, MINOR};

/// The exact number of bytes [`encode`] writes for `evidence` (after it cuts
/// over-long text and lists; see [`MAX_TEXT_LEN`](super::MAX_TEXT_LEN)).
/// Allocates nothing.
pub fn encoded_len(evidence: &Evidence<'_>) -> usize {
    let mut len = HEADER_LEN;
    for text in texts(evidence) {
        len += 2 + fit_text(text).len();
    }
    len += names_len(evidence);
    len += attrs_len(evidence);
    len.saturating_add(4 + evidence.payload.data.len())
}

/// The text fields in wire order, less the lists and the payload bytes.
fn texts<'a>(e: &Evidence<'a>) -> [&'a str; 11] {
    let s = &e.scope;
    [
        e.request_id,
        e.plugin,
        s.tenant,
        s.virtual_key,
        s.environment,
        s.model,
        s.mcp_server,
        s.tool,
        e.reason,
        e.detail,
        e.payload.kind,
    ]
}

fn names_len(e: &Evidence<'_>) -> usize {
    2 + match e.changed.0 {
        NamesRepr::List(list) => list[..fit_list(list.len())]
            .iter()
            .map(|name| 2 + fit_text(name).len())
            .sum(),
        NamesRepr::Wire { bytes, .. } => bytes.len(),
    }
}

fn attrs_len(e: &Evidence<'_>) -> usize {
    2 + match e.attrs.0 {
        AttrsRepr::List(list) => list[..fit_list(list.len())]
            .iter()
            .map(|(k, v)| 4 + fit_text(k).len() + fit_text(v).len())
            .sum(),
        AttrsRepr::Wire { bytes, .. } => bytes.len(),
    }
}

/// Writes one record into the front of `out` and returns its length,
/// [`encoded_len`] bytes. Sets [`Flags::TRUNCATED`] if it had to cut a field.
/// Allocates nothing.
///
/// # Errors
/// [`EncodeError::TooLarge`] when the record exceeds the format's 4 GiB
/// limit; [`EncodeError::BufferTooSmall`] when `out` is shorter than the
/// record. Nothing is written then.
pub fn encode(
    stamp: &Stamp,
    evidence: &Evidence<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let len = encoded_len(evidence);
    let Ok(total) = u32::try_from(len) else {
        return Err(EncodeError::TooLarge { len });
    };
    let Some(out) = out.get_mut(..len) else {
        return Err(EncodeError::BufferTooSmall {
            needed: len,
            available: out.len(),
        });
    };
    write_exact(stamp, evidence, out, total);
    Ok(len)
}

/// Writes the record into `out`, which is exactly its [`encoded_len`],
/// `total` bytes.
pub(crate) fn write_exact(stamp: &Stamp, evidence: &Evidence<'_>, out: &mut [u8], total: u32) {
    let e = evidence;
    let mut w = Out {
        buf: out,
        pos: HEADER_LEN,
        truncated: false,
    };
    // Fields 1 to 10; the payload kind (the last text) follows the lists.
    let [fields @ .., payload_kind] = texts(e);
    for text in fields {
        w.text(text);
    }
    match e.changed.0 {
        NamesRepr::List(list) => {
            let n = w.list_len(list.len());
            for name in &list[..n] {
                w.text(name);
            }
        }
        NamesRepr::Wire { count, bytes } => {
            w.put(&count.to_le_bytes());
            w.put(bytes);
        }
    }
    match e.attrs.0 {
        AttrsRepr::List(list) => {
            let n = w.list_len(list.len());
            for (key, value) in &list[..n] {
                w.text(key);
                w.text(value);
            }
        }
        AttrsRepr::Wire { count, bytes } => {
            w.put(&count.to_le_bytes());
            w.put(bytes);
        }
    }
    w.text(payload_kind);
    // The payload fits: the whole record's length fits a u32.
    w.put(&(e.payload.data.len() as u32).to_le_bytes());
    w.put(e.payload.data);
    debug_assert_eq!(w.pos, total as usize, "encoded_len and encode disagree");

    let flags = if w.truncated {
        e.flags | Flags::TRUNCATED
    } else {
        e.flags
    };
    let h = &mut w.buf[..HEADER_LEN];
    h[0] = MAJOR;
    h[1] = MINOR;
    h[2..4].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    h[4..8].copy_from_slice(&total.to_le_bytes());
    h[8..10].copy_from_slice(&e.kind.code().to_le_bytes());
    h[10..12].copy_from_slice(&flags.0.to_le_bytes());
    h[12..16].copy_from_slice(&stamp.worker.to_le_bytes());
    h[16..24].copy_from_slice(&stamp.sequence.to_le_bytes());
    h[24..32].copy_from_slice(&stamp.timestamp_ns.to_le_bytes());
    h[32..40].copy_from_slice(&e.duration_ns.to_le_bytes());
    h[40..48].copy_from_slice(&e.count.to_le_bytes());
    h[48..52].copy_from_slice(&e.plugin_id.to_le_bytes());
    h[52..54].copy_from_slice(&e.status.to_le_bytes());
    h[54] = e.gate.code();
    h[55] = e.verdict.code();
}

/// A cursor over the record's bytes, which [`encoded_len`] sized exactly.
struct Out<'b> {
    buf: &'b mut [u8],
    pos: usize,
    truncated: bool,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        self.buf[self.pos..end].copy_from_slice(bytes);
        self.pos = end;
    }

    fn text(&mut self, text: &str) {
        let fitted = fit_text(text);
        self.truncated |= fitted.len() < text.len();
        // fit_text keeps it within u16.
        self.put(&(fitted.len() as u16).to_le_bytes());
        self.put(fitted.as_bytes());
    }

    /// Writes a list's entry count, cut to what fits; returns it.
    fn list_len(&mut self, len: usize) -> usize {
        let n = fit_list(len);
        self.truncated |= n < len;
        self.put(&(n as u16).to_le_bytes());
        n
    }
}

/// Why a record could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The record is longer than the format's `u32` length allows.
    TooLarge {
        /// Its encoded length.
        len: usize,
    },
    /// The output buffer is too short.
    BufferTooSmall {
        /// The record's encoded length.
        needed: usize,
        /// The buffer's length.
        available: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLarge { len } => write!(
                f,
                "evidence record of {len} bytes exceeds the format's limit of {} bytes",
                u32::MAX
            ),
            EncodeError::BufferTooSmall { needed, available } => write!(
                f,
                "evidence record needs {needed} bytes, the buffer has {available}"
            ),
        }
    }
}

impl std::error::Error for EncodeError {}
