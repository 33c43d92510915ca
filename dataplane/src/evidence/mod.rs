//! Evidence records: the versioned binary format, the writer that puts
//! records into an evidence ring, and the checked decoder control reads them
//! back with.
//!
//! Every plugin decision leaves one record; plugins add their own through
//! the host; denied host calls, skipped gates, follow-up work, ring overflow
//! and operator changes leave records of their own kinds. The dataplane
//! writes them into per-worker evidence rings ([`crate::ring`]); control
//! drains the rings into its durable log and renders records as JSON lines
//! for export ([`write_json_line`]).
//!
//! ```
//! use odock_dataplane::evidence::{
//!     decode, Evidence, EvidenceWriter, Gate, Kind, Names, Scope, Verdict,
//! };
//! use odock_dataplane::ring::{Geometry, Ring};
//!
//! let ring = Ring::heap(Geometry::new(1, 4096)?);
//! let mut writer = EvidenceWriter::new(ring.producer()?, 0);
//! let mut consumer = ring.consumer()?;
//!
//! let changed = ["messages[0].content"];
//! let seq = writer.write(&Evidence {
//!     gate: Gate::Request,
//!     verdict: Verdict::Continue,
//!     request_id: "req-7",
//!     plugin: "redact-ssn",
//!     scope: Scope { tenant: "acme", model: "gpt-4o", ..Scope::NONE },
//!     changed: Names::new(&changed),
//!     duration_ns: 1_800,
//!     ..Evidence::new(Kind::Decision)
//! })?;
//!
//! consumer.drain(|bytes| {
//!     let record = decode(&bytes).expect("a record we wrote");
//!     assert_eq!(record.stamp.sequence, seq);
//!     assert_eq!(record.evidence.plugin, "redact-ssn");
//!     assert_eq!(record.evidence.changed.iter().collect::<Vec<_>>(), changed);
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Format (version 1.0)
//!
//! A record is one byte string: a fixed little-endian header, then
//! length-prefixed fields in a fixed order. Every record has every field
//! (empty when it does not apply), whatever its kind, so a reader that does
//! not know a kind still reads its request id, plugin, scope and reason.
//!
//! ```text
//! offset  size  field          meaning
//!  0      1     major          format major version: 1
//!  1      1     minor          format minor version: 0
//!  2      2     header_len     bytes of the fixed header: 56 in 1.0; fields start here
//!  4      4     total_len      bytes of the whole record, header included
//!  8      2     kind           Kind code (below)
//! 10      2     flags          Flags bits (below)
//! 12      4     worker         index of the writing worker
//! 16      8     sequence       per-writer sequence number (below)
//! 24      8     timestamp_ns   wall-clock time of the write, UNIX epoch ns (UTC, CLOCK_REALTIME)
//! 32      8     duration_ns    how long the thing recorded took (0: not timed)
//! 40      8     count          kind-specific number (below)
//! 48      4     plugin_id      the plugin's id in the policy (0: none)
//! 52      2     status         HTTP status involved (a block's, a webhook's answer); 0: none
//! 54      1     gate           Gate code: 0 none, 1 request, 2 response, 3 complete
//! 55      1     verdict        Verdict code (below)
//! 56      ...   fields
//! ```
//!
//! The first 8 bytes (`major`, `minor`, `header_len`, `total_len`) keep
//! their place and meaning in every version, so any reader can frame and
//! skip any record. Fields, in order (`text` is a `u16` byte length then
//! that many bytes of UTF-8; `bytes` is a `u32` length then the bytes):
//!
//! ```text
//!  #  field          encoding                           meaning
//!  1  request_id     text                               the gateway's request id
//!  2  plugin         text                               the plugin's name
//!  3  tenant         text                               scope: tenant
//!  4  virtual_key    text                               scope: virtual key id
//!  5  environment    text                               scope: environment
//!  6  model          text                               scope: model
//!  7  mcp_server     text                               scope: MCP server
//!  8  tool           text                               scope: MCP tool
//!  9  reason         text                               user-visible reason (what the caller was told)
//! 10  detail         text                               internal detail: evidence only, never to the caller
//! 11  changed        u16 n, then n × text               names of the fields a transform changed (never values)
//! 12  attrs          u16 n, then n × (text, text)       kind-specific (key, value) pairs
//! 13  payload_kind   text                               a plugin record's own kind
//! 14  payload        bytes                              a plugin record's opaque bytes
//! ```
//!
//! A 1.0 record with nothing in its fields is 86 bytes. A text field holds
//! at most 65,535 bytes and a list 65,535 entries: the encoder cuts a longer
//! one (text at a character boundary) and sets [`Flags::TRUNCATED`].
//!
//! ## Kinds
//!
//! ```text
//! code  kind               one per             count       attrs, verdict
//!  1    decision           plugin decision     -           verdict: continue/block/pause/error/timeout/...
//!  2    plugin             emit_evidence call  -           payload_kind + payload: the plugin's record
//!  3    capability_denied  denied host call    -           capability, operation, integration
//!  4    skip               skipped gate        -           cause; detail says why in prose
//!  5    follow_up          follow-up event     attempt     followup (its kind), target; verdict: queued/retried/failed/delivered
//!  6    gap                overflow report     lost        -  (see "Sequence numbers and gaps")
//!  7    control_change     operator change     version     actor, action, resource (control's audit)
//! ```
//!
//! The attrs keys above are the conventional ones ([`attr`] names them);
//! a kind may carry more. The plugin host's `plugin_error` maps to a
//! `decision` with verdict `error`, and its `verdict_not_enforced` to a
//! `decision` with [`Flags::SHADOW`].
//!
//! ## Verdicts and flags
//!
//! Verdict codes: 0 none, 1 continue, 2 block, 3 pause, 4 error, 5 skip,
//! 6 timeout, 7 denied, 8 queued, 9 retried, 10 failed, 11 delivered.
//! Flag bits: 0 `shadow` (permissive mode: recorded, not enforced),
//! 1 `over_budget` (the call overran its time budget), 2 `error_ignored`
//! (the failure mode let an error continue), 3 `invalid_index` (the frame's
//! JSON did not parse), 4 `stream_chunk` (a response gate run on one SSE
//! chunk), 14 `truncated` (the encoder cut a field), 15 `writer_start` (the
//! first record of a writer: its sequence numbers start afresh).
//!
//! ## Versions
//!
//! A reader refuses a record whose `major` differs from its own. A newer
//! `minor` may lengthen the fixed header (`header_len` grows), add fields
//! after field 14, and add kinds, verdicts, gates, flag bits and attrs
//! keys; it never moves or re-purposes what 1.0 defines. A reader of an
//! older minor skips the header bytes past its own, the fields past its
//! last, and hands unknown codes through as [`Kind::Other`],
//! [`Gate::Other`], [`Verdict::Other`] and raw flag bits; what to do with a
//! kind it does not know (store it, skip it) is its caller's choice, and
//! the record's framing is intact either way. A record whose minor is not
//! newer than the reader's must have exactly the reader's layout: extra
//! bytes there are an error, not an extension.
//!
//! # Sequence numbers and gaps
//!
//! Each [`EvidenceWriter`] numbers the records it is asked to write, 0, 1,
//! 2, ... in the order of the calls. A record the ring has no room for is
//! dropped, counted, and keeps its number. The next write that finds room
//! first commits a `gap` record, numbered after the lost ones, whose
//! `count` is the number lost since the last gap, and whose `duration_ns`
//! is the time from the first of those losses to the gap. So the writer's
//! stream in the ring reads, for example,
//!
//! ```text
//! seq 0..=9 (written), [10..=13 dropped], gap at 14 with count 4, seq 15, ...
//! ```
//!
//! and a reader proves it lost and repeated nothing: each record's sequence
//! is the last one plus one, except a gap's, which is the last one plus one
//! plus its count. [`SequenceCheck`] does exactly that. A pending gap is
//! also committed by [`EvidenceWriter::flush_gap`] and, best effort, when
//! the writer is dropped, so losses at the end of a stream show too. A
//! writer's first committed record carries [`Flags::WRITER_START`]: the
//! reader restarts its count there rather than calling it a repeat.
//!
//! # Decoding trusts nothing
//!
//! [`decode`] checks every length against the bytes it has, validates the
//! UTF-8 of every text field (the writer only takes `&str`, so text that
//! is not UTF-8 is corruption, reported with the field and its offset), and
//! borrows everything from the input: it never allocates. Payload bytes are
//! opaque and not checked. Truncated or malformed input is a
//! [`DecodeError`], never a panic; the `evidence_decode` fuzz target and
//! property tests hold it to that.
//!
//! # Encoding allocates nothing
//!
//! An [`Evidence`] borrows all its text. [`encoded_len`] computes the exact
//! size, the writer reserves that much ring memory once, [`encode`] writes
//! the record in place, and the reservation is committed. No step
//! allocates (`dataplane/tests/evidence_alloc.rs` counts).
#![forbid(unsafe_code)]

mod decode;
mod encode;
mod json;
mod record;
mod sequence;
mod writer;

pub use decode::{DecodeError, Problem, decode, decode_prefix};
pub use encode::{EncodeError, encode, encoded_len};
pub use json::write_json_line;
pub use record::{
    Attrs, AttrsIter, Evidence, EvidenceRecord, Flags, Gate, Kind, Names, NamesIter, Payload,
    Scope, Stamp, Verdict, Version, attr, text_prefix,
};
pub use sequence::{SequenceCheck, SequenceError};
pub use writer::{Clock, EvidenceWriter, SystemClock, WriteError, WriterCounters};

/// The format's major version. A reader refuses any other.
pub const MAJOR: u8 = 1;
/// The format's minor version this code writes and reads in full.
pub const MINOR: u8 = 0;
/// Bytes of the fixed header in this version.
pub const HEADER_LEN: usize = 56;
/// Bytes of a record whose fields are all empty.
pub const MIN_RECORD_LEN: usize = HEADER_LEN + 10 * 2 + 2 + 2 + 2 + 4;
/// The longest text field, in bytes.
pub const MAX_TEXT_LEN: usize = u16::MAX as usize;
/// The most entries in a list field (`changed` names, `attrs` pairs).
pub const MAX_LIST_LEN: usize = u16::MAX as usize;

#[cfg(test)]
mod tests;
