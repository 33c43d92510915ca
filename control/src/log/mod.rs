//! The durable evidence log: append-only segment files of checksummed
//! records, group commit, torn-tail recovery and retention.
//!
//! # Layout
//!
//! A log is a directory of segment files named `<first index>.seg` (the
//! index as 20 decimal digits, so names sort in log order). A segment is a
//! run of records, each a 48-byte little-endian header and its payload:
//!
//! ```text
//! offset  size  field      meaning
//!  0      4     magic      0x524c444f ("ODLR")
//!  4      4     len        payload bytes
//!  8      4     crc        CRC32C of bytes 12..48+len (header rest and payload)
//! 12      4     ring       id of the ring the record came from (0: control's own)
//! 16      8     index      the record's position in the log: 0, 1, 2, ... with no hole
//! 24      8     stored_ns  wall-clock time of the append, UNIX epoch ns
//! 32      4     lane       the ring lane it came through
//! 36      4     reserved   0
//! 40      8     ring_seq   how many records the drainer had taken from that ring before it
//! 48      len   payload    the evidence record as the dataplane wrote it (binary format)
//! ```
//!
//! # Commit
//!
//! [`Log::append`] buffers; once `write_ahead_bytes` are buffered it writes
//! them to the end of the active segment without a sync (and, on the
//! io_uring path, asks the kernel to start writing them back), so the
//! device works while more records are gathered; they are not committed
//! yet, and a crash may keep or lose them. [`Log::commit`] writes the rest
//! of the buffer and syncs the segment's data (io_uring write linked to an
//! `fsync(DATASYNC)` where the kernel allows, else `pwrite` + `fdatasync`)
//! before it returns: a record is *committed* once `commit` returned after
//! its `append`. [`Log::commit_due`] says when the group-commit cadence
//! (every `fsync_interval`, or once `fsync_bytes` are buffered) asks for
//! one. A segment that reaches `segment_bytes` is sealed at a commit and a
//! new one begins.
//!
//! # Recovery
//!
//! [`Log::open`] scans every segment. A record is valid when its magic,
//! length, CRC and index (one more than the last valid one) check out.
//! After an invalid record the scan resynchronises on the next byte offset
//! where a valid record with a later index starts. In the last segment an
//! invalid run with no valid record after it is a torn tail: it is cut and
//! counted in [`Recovery::truncated_bytes`]. Anywhere else it is corruption:
//! it is kept on disk, reported in [`Recovery::corrupt`], and readers skip
//! it. Committed records before and after it stay readable.
//!
//! # Retention
//!
//! [`Log::enforce_retention`] removes whole sealed segments, oldest first,
//! while the log is larger than `max_bytes` or the segment's newest record
//! is older than `max_age` ([`Log::enforce_retention_holding`]: by age only
//! once every sink has passed it). The active segment is never removed (nor is
//! its summary file, `<first index>.sum`, which goes with it).
//!
//! # Summaries
//!
//! Each segment may carry a [`Summary`] (see [`summary`]'s docs): the
//! time range of its records and, once sealed, a Bloom filter of their
//! keys, so [`Snapshot::scan_where`] can skip segments a query cannot
//! match. A [`Summarizer`] builds them off the drain path.

mod storage;
mod summary;
#[cfg(target_os = "linux")]
mod uring;

pub use storage::{DiskSegment, FileStorage, IoMode, MemSegment, MemStorage, SegmentFile, Storage};
pub use summary::{Bloom, Builder, Summary, key_hash, summary_name};

use std::sync::{Arc, Mutex, PoisonError};

use std::fmt;
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes of a record's log header.
pub const HEADER_LEN: usize = 48;
/// The header's first word.
pub const MAGIC: u32 = 0x524c_444f;
/// The longest payload the log takes (evidence records are far shorter).
pub const MAX_PAYLOAD: usize = 64 << 20;

/// The group-commit cadence, segment size and retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Seal a segment once it holds this many bytes.
    pub segment_bytes: u64,
    /// Commit at least this often while records are buffered.
    pub fsync_interval: Duration,
    /// Commit once this many bytes are buffered.
    pub fsync_bytes: usize,
    /// Remove sealed segments whose newest record is older than this.
    pub max_age: Option<Duration>,
    /// Remove the oldest sealed segments while the log is larger.
    pub max_bytes: Option<u64>,
    /// Write buffered records to the segment (without syncing, and asking
    /// the kernel to start writing them back) once this many bytes are
    /// buffered, so the device works while the next records are gathered
    /// and the commit's sync has less left to do. 0: write only at commit.
    pub write_ahead_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            fsync_interval: Duration::from_millis(10),
            fsync_bytes: 4 << 20,
            max_age: None,
            max_bytes: None,
            write_ahead_bytes: 1 << 20,
        }
    }
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    /// The ring's id (0: control's own records).
    pub ring: u32,
    /// The lane.
    pub lane: u32,
    /// Records taken from that ring before this one.
    pub ring_seq: u64,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its position in the log.
    pub index: u64,
    /// When it was appended, UNIX epoch ns.
    pub stored_ns: u64,
    /// Where it came from.
    pub origin: Origin,
    /// The evidence record's bytes.
    pub payload: Vec<u8>,
}

/// A run of bytes recovery or a reader could not read as records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptSpan {
    /// The segment file.
    pub segment: String,
    /// Where the unreadable bytes start.
    pub offset: u64,
    /// How many bytes were skipped.
    pub len: u64,
    /// The first check that failed.
    pub reason: &'static str,
}

impl fmt::Display for CorruptSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {} bytes {}..{}: {}",
            self.segment,
            self.offset,
            self.offset + self.len,
            self.reason
        )
    }
}

/// What [`Log::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments scanned.
    pub segments: usize,
    /// Valid records found.
    pub records: u64,
    /// Bytes cut from the end of the last segment (a torn tail).
    pub truncated_bytes: u64,
    /// Corruption kept on disk and skipped by readers.
    pub corrupt: Vec<CorruptSpan>,
}

/// Why the log failed.
#[derive(Debug)]
pub enum LogError {
    /// A storage operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The segment, if any.
        segment: String,
        /// The error.
        source: io::Error,
    },
    /// A payload larger than [`MAX_PAYLOAD`].
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// An earlier commit failed: what reached the disk is unknown, so the
    /// log takes no more appends until it is reopened (and recovered).
    Failed,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Io {
                op,
                segment,
                source,
            } => {
                write!(
                    f,
                    "evidence log: {op} of segment {segment:?} failed: {source}"
                )
            }
            LogError::TooLarge { len } => {
                write!(
                    f,
                    "evidence log: record of {len} bytes exceeds the {MAX_PAYLOAD}-byte limit"
                )
            }
            LogError::Failed => write!(
                f,
                "evidence log: an earlier commit failed; reopen the log to recover"
            ),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err<'a>(op: &'static str, segment: &'a str) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        op,
        segment: segment.to_owned(),
        source,
    }
}

/// Wall-clock now, UNIX epoch ns.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The name of the segment whose first record has `index`.
pub fn segment_name(index: u64) -> String {
    format!("{index:020}.seg")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes one record (header and payload) onto `out`.
pub fn encode_record(
    out: &mut Vec<u8>,
    index: u64,
    stored_ns: u64,
    origin: Origin,
    payload: &[u8],
) {
    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&origin.ring.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&stored_ns.to_le_bytes());
    out.extend_from_slice(&origin.lane.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&origin.ring_seq.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 12..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A record found at an offset of a segment.
#[derive(Debug, Clone, Copy)]
struct Found {
    offset: usize,
    total: usize,
    index: u64,
    stored_ns: u64,
}

/// Checks the record at `at`: `Ok` with its framing, or the failed check.
fn check_at(bytes: &[u8], at: usize) -> Result<Found, &'static str> {
    let rest = &bytes[at..];
    if rest.len() < HEADER_LEN {
        return Err("header cut short");
    }
    if u32_at(rest, 0) != MAGIC {
        return Err("bad magic");
    }
    let len = u32_at(rest, 4) as usize;
    if len > MAX_PAYLOAD {
        return Err("length out of range");
    }
    if rest.len() < HEADER_LEN + len {
        return Err("payload cut short");
    }
    if crc32c::crc32c(&rest[12..HEADER_LEN + len]) != u32_at(rest, 8) {
        return Err("CRC32C mismatch");
    }
    Ok(Found {
        offset: at,
        total: HEADER_LEN + len,
        index: u64_at(rest, 16),
        stored_ns: u64_at(rest, 24),
    })
}

/// The scan of one segment.
#[derive(Debug, Default)]
struct Scan {
    records: Vec<Found>,
    /// Invalid runs: (offset, len, reason).
    bad: Vec<(usize, usize, &'static str)>,
}

/// Scans a segment whose first record must have index `first`. After an
/// invalid record, resynchronises on the next offset (8-byte steps are not
/// assumed: every byte) holding a valid record with a later index.
fn scan(bytes: &[u8], first: u64) -> Scan {
    let mut out = Scan::default();
    let mut at = 0;
    let mut expect = first;
    while at < bytes.len() {
        match check_at(bytes, at) {
            Ok(found) if found.index == expect => {
                out.records.push(found);
                at += found.total;
                expect += 1;
            }
            result => {
                let reason = match result {
                    Ok(_) => "index out of sequence",
                    Err(reason) => reason,
                };
                let mut next = at + 1;
                let resync = loop {
                    if next + HEADER_LEN > bytes.len() {
                        break None;
                    }
                    if u32_at(bytes, next) == MAGIC
                        && let Ok(found) = check_at(bytes, next)
                        && found.index >= expect
                    {
                        break Some(found);
                    }
                    next += 1;
                };
                match resync {
                    Some(found) => {
                        out.bad.push((at, found.offset - at, reason));
                        at = found.offset;
                        expect = found.index;
                    }
                    None => {
                        out.bad.push((at, bytes.len() - at, reason));
                        at = bytes.len();
                    }
                }
            }
        }
    }
    out
}

/// What the log knows of one segment.
#[derive(Debug, Clone)]
struct Segment {
    name: String,
    first: u64,
    /// Committed bytes.
    len: u64,
    /// Index after its last record.
    end: u64,
    /// Newest record's stored time (0: none).
    newest_ns: u64,
    /// What is known of it, if anything yet.
    summary: Option<Arc<Summary>>,
}

/// One segment as a [`Snapshot`] sees it.
#[derive(Debug, Clone)]
pub struct SnapSegment {
    /// The segment file.
    pub name: String,
    /// Its first index.
    pub first: u64,
    /// Its committed bytes.
    pub len: u64,
    /// The index after its last committed record.
    pub end: u64,
    summary: Option<Arc<Summary>>,
}

impl SnapSegment {
    /// Its summary, when one covers all of its committed bytes.
    pub fn summary(&self) -> Option<&Summary> {
        self.summary
            .as_deref()
            .filter(|s| s.first == self.first && s.len >= self.len)
    }
}

/// A consistent view of the committed log, for readers: which segments,
/// and how much of each is committed.
#[derive(Debug, Clone)]
pub struct Snapshot {
    segments: Vec<SnapSegment>,
}

/// A place in the log: the segment (by its first index), a byte offset in
/// it where a record starts (or its end), and that record's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The segment's first index.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
    /// The index of the record at that offset.
    pub index: u64,
}

/// What a [`Snapshot::scan_where`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Corrupt spans skipped.
    pub corrupt: Vec<CorruptSpan>,
    /// Segments read.
    pub segments_read: u64,
    /// Segments skipped because their summary rules a match out.
    pub segments_skipped: u64,
}

impl Snapshot {
    /// Reads every committed record with index ≥ `from`, in log order,
    /// handing each to `f` until it returns `false`. Corrupt spans are
    /// skipped (and returned); a segment retention removed meanwhile is
    /// skipped too.
    ///
    /// # Errors
    /// Reading a segment failed for another reason than its removal.
    pub fn scan<S: Storage>(
        &self,
        storage: &S,
        from: u64,
        f: impl FnMut(Entry) -> bool,
    ) -> Result<Vec<CorruptSpan>, LogError> {
        self.scan_where(storage, from, |_| true, f)
            .map(|r| r.corrupt)
    }

    /// [`Snapshot::scan`], skipping every segment whose summary (one that
    /// covers the segment's committed bytes) `may_match` refuses. Segments
    /// without such a summary are read.
    ///
    /// # Errors
    /// As for [`Snapshot::scan`].
    pub fn scan_where<S: Storage>(
        &self,
        storage: &S,
        from: u64,
        may_match: impl Fn(&Summary) -> bool,
        f: impl FnMut(Entry) -> bool,
    ) -> Result<ScanReport, LogError> {
        self.scan_inner(storage, from, None, may_match, f)
    }

    /// [`Snapshot::scan_where`] from a [`Position`] an earlier snapshot's
    /// [`Snapshot::end`] gave: the segment it names is read from its byte
    /// offset on, not from its start (a follower or a sink polling the open
    /// segment reads only what is new). A position this snapshot does not
    /// hold (its segment was removed) falls back to its index.
    ///
    /// # Errors
    /// As for [`Snapshot::scan`].
    pub fn scan_at<S: Storage>(
        &self,
        storage: &S,
        at: Position,
        may_match: impl Fn(&Summary) -> bool,
        f: impl FnMut(Entry) -> bool,
    ) -> Result<ScanReport, LogError> {
        let start = self
            .segments
            .iter()
            .position(|s| s.first == at.segment && at.offset <= s.len && at.index >= s.first)
            .map(|i| (i, at.offset));
        self.scan_inner(storage, at.index, start, may_match, f)
    }

    /// Where this snapshot ends: the next record goes there.
    pub fn end(&self) -> Option<Position> {
        self.segments.last().map(|s| Position {
            segment: s.first,
            offset: s.len,
            index: s.end,
        })
    }

    fn scan_inner<S: Storage>(
        &self,
        storage: &S,
        from: u64,
        start: Option<(usize, u64)>,
        may_match: impl Fn(&Summary) -> bool,
        mut f: impl FnMut(Entry) -> bool,
    ) -> Result<ScanReport, LogError> {
        let mut report = ScanReport::default();
        for (i, seg) in self.segments.iter().enumerate() {
            let (name, first, len) = (&seg.name, &seg.first, &seg.len);
            if let Some(next) = self.segments.get(i + 1)
                && next.first <= from
            {
                continue;
            }
            // Where to read this segment from, and the index found there.
            let (base, expect) = match start {
                Some((at, _)) if i < at => continue,
                Some((at, offset)) if i == at => (offset, from),
                _ => (0, *first),
            };
            if *len == base {
                // Nothing (new) committed in it.
                report.segments_skipped += 1;
                continue;
            }
            if *len == 0 {
                // Nothing committed in it yet.
                report.segments_skipped += 1;
                continue;
            }
            if let Some(s) = seg.summary()
                && (s.end <= from || !may_match(s))
            {
                report.segments_skipped += 1;
                continue;
            }
            report.segments_read += 1;
            let mut bytes = match storage.read_at(name, base, len - base) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("read", name)(e)),
            };
            bytes.truncate((len - base) as usize);
            let found = scan(&bytes, expect);
            for (offset, len, reason) in found.bad {
                report.corrupt.push(CorruptSpan {
                    segment: name.clone(),
                    offset: base + offset as u64,
                    len: len as u64,
                    reason,
                });
            }
            for r in found.records {
                if r.index < from {
                    continue;
                }
                let h = &bytes[r.offset..];
                let entry = Entry {
                    index: r.index,
                    stored_ns: r.stored_ns,
                    origin: Origin {
                        ring: u32_at(h, 12),
                        lane: u32_at(h, 32),
                        ring_seq: u64_at(h, 40),
                    },
                    payload: h[HEADER_LEN..r.total].to_vec(),
                };
                if !f(entry) {
                    return Ok(report);
                }
            }
        }
        Ok(report)
    }

    /// Committed bytes over all segments.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> &[SnapSegment] {
        &self.segments
    }
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records committed since open.
    pub committed_records: u64,
    /// Commits (data syncs) since open.
    pub commits: u64,
    /// Bytes committed since open.
    pub committed_bytes: u64,
    /// Segments removed by retention since open.
    pub segments_removed: u64,
}

/// The durable evidence log (see the [module docs](self)).
pub struct Log<S: Storage = FileStorage> {
    storage: S,
    config: LogConfig,
    /// Sealed segments, oldest first, then the active one last.
    segments: Vec<Segment>,
    active: S::File,
    pending: Vec<u8>,
    /// Bytes of the active segment after its committed length that were
    /// written ahead (not synced, not committed).
    written_ahead: u64,
    pending_records: u64,
    pending_newest_ns: u64,
    first_pending: Option<Instant>,
    next_index: u64,
    failed: bool,
    stats: LogStats,
}

impl<S: Storage> Log<S> {
    /// Opens (or creates) the log in `storage`, recovering as the
    /// [module docs](self) say.
    ///
    /// # Errors
    /// Listing, reading, truncating or creating a segment failed.
    pub fn open(storage: S, config: LogConfig) -> Result<(Log<S>, Recovery), LogError> {
        let listed = storage.list().map_err(io_err("list", ""))?;
        let mut names: Vec<(u64, String)> = listed
            .iter()
            .filter_map(|n| parse_segment_name(n).map(|i| (i, n.clone())))
            .collect();
        names.sort();
        // Leftovers: a summary whose segment retention removed while it
        // was being written, and temporary files of an interrupted atomic
        // write. Removing them is tidying: a failure changes nothing.
        for n in &listed {
            let orphan_summary = n.strip_suffix(".sum").is_some_and(|stem| {
                !names
                    .iter()
                    .any(|(_, seg)| seg.strip_suffix(".seg") == Some(stem))
            });
            let temporary = n.starts_with('.') && n.ends_with(".tmp");
            if orphan_summary || temporary {
                let _ = storage.remove(n);
            }
        }
        let mut recovery = Recovery {
            segments: names.len(),
            ..Recovery::default()
        };
        let mut segments = Vec::new();
        let count = names.len();
        for (i, (first, name)) in names.into_iter().enumerate() {
            let bytes = storage.read(&name).map_err(io_err("read", &name))?;
            let found = scan(&bytes, first);
            let last = i + 1 == count;
            let valid_end = found.records.last().map_or(0, |r| r.offset + r.total);
            let mut len = bytes.len() as u64;
            for &(offset, span, reason) in &found.bad {
                if last && offset >= valid_end {
                    recovery.truncated_bytes += span as u64;
                } else {
                    recovery.corrupt.push(CorruptSpan {
                        segment: name.clone(),
                        offset: offset as u64,
                        len: span as u64,
                        reason,
                    });
                }
            }
            if last && (valid_end as u64) < len {
                storage
                    .open(&name)
                    .and_then(|mut f| f.truncate(valid_end as u64))
                    .map_err(io_err("truncate", &name))?;
                len = valid_end as u64;
            }
            recovery.records += found.records.len() as u64;
            let end = found.records.last().map_or(first, |r| r.index + 1);
            let committed = &bytes[..len as usize];
            let summary = if last {
                // The open segment: its time summary, rebuilt.
                let mut b = Builder::new(first, config.segment_bytes);
                b.extend(committed);
                b.partial()
            } else {
                let sum_name = summary_name(&name);
                let kept = storage
                    .read(&sum_name)
                    .ok()
                    .and_then(|b| Summary::decode(&b))
                    .filter(|s| {
                        s.first == first
                            && s.end == end
                            && s.len == len
                            && s.records == found.records.len() as u64
                    });
                match kept {
                    Some(s) => s,
                    None => {
                        let s = Summary::of_sealed(first, committed);
                        storage
                            .write_file(&sum_name, &s.encode())
                            .map_err(io_err("write the summary", &name))?;
                        s
                    }
                }
            };
            segments.push(Segment {
                name,
                first,
                len,
                end,
                newest_ns: found.records.iter().map(|r| r.stored_ns).max().unwrap_or(0),
                summary: Some(Arc::new(summary)),
            });
        }
        let next_index = segments.last().map_or(0, |s| s.end);
        let active = match segments.last() {
            Some(s) => storage.open(&s.name).map_err(io_err("open", &s.name))?,
            None => {
                let name = segment_name(0);
                let f = storage.create(&name).map_err(io_err("create", &name))?;
                storage
                    .sync_dir()
                    .map_err(io_err("sync directory", &name))?;
                segments.push(Segment {
                    name,
                    first: 0,
                    len: 0,
                    end: 0,
                    newest_ns: 0,
                    summary: None,
                });
                f
            }
        };
        Ok((
            Log {
                storage,
                config,
                segments,
                active,
                pending: Vec::new(),
                written_ahead: 0,
                pending_records: 0,
                pending_newest_ns: 0,
                first_pending: None,
                next_index,
                failed: false,
                stats: LogStats::default(),
            },
            recovery,
        ))
    }

    /// Buffers one record; returns its index. It is committed by the next
    /// [`Log::commit`] that succeeds.
    ///
    /// # Errors
    /// [`LogError::TooLarge`], or [`LogError::Failed`] after a failed
    /// commit.
    pub fn append(&mut self, origin: Origin, payload: &[u8]) -> Result<u64, LogError> {
        self.append_at(now_ns(), origin, payload)
    }

    /// [`Log::append`] with the stored time given (tests, retention).
    ///
    /// # Errors
    /// As for [`Log::append`].
    pub fn append_at(
        &mut self,
        stored_ns: u64,
        origin: Origin,
        payload: &[u8],
    ) -> Result<u64, LogError> {
        if self.failed {
            return Err(LogError::Failed);
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(LogError::TooLarge { len: payload.len() });
        }
        let index = self.next_index;
        encode_record(&mut self.pending, index, stored_ns, origin, payload);
        self.next_index += 1;
        self.pending_records += 1;
        self.pending_newest_ns = self.pending_newest_ns.max(stored_ns);
        self.first_pending.get_or_insert_with(Instant::now);
        if self.config.write_ahead_bytes > 0 && self.pending.len() >= self.config.write_ahead_bytes
        {
            self.write_ahead()?;
        }
        Ok(index)
    }

    /// Writes the buffer after what is already written of the active
    /// segment, unsynced (see [`LogConfig::write_ahead_bytes`]). The
    /// records stay uncommitted until the next [`Log::commit`].
    ///
    /// # Errors
    /// The write failed: the log is then failed.
    fn write_ahead(&mut self) -> Result<(), LogError> {
        let seg = self.segments.last().expect("an active segment");
        let offset = seg.len + self.written_ahead;
        if let Err(e) = self.active.write_ahead(offset, &self.pending) {
            self.failed = true;
            return Err(io_err("write ahead", &seg.name)(e));
        }
        self.written_ahead += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Whether the cadence asks for a commit now: records are buffered and
    /// the oldest waited `fsync_interval`, or `fsync_bytes` are buffered.
    pub fn commit_due(&self) -> bool {
        match self.first_pending {
            None => false,
            Some(t) => {
                self.pending.len() as u64 + self.written_ahead >= self.config.fsync_bytes as u64
                    || t.elapsed() >= self.config.fsync_interval
            }
        }
    }

    /// How long until the cadence asks for a commit (`None`: nothing buffered).
    pub fn commit_wait(&self) -> Option<Duration> {
        self.first_pending
            .map(|t| self.config.fsync_interval.saturating_sub(t.elapsed()))
    }

    /// Writes and syncs everything buffered; returns the index after the
    /// last committed record. Seals the active segment when it is full.
    ///
    /// # Errors
    /// The write or sync failed: the log is then failed (see
    /// [`LogError::Failed`]) and the buffered records are not committed.
    pub fn commit(&mut self) -> Result<u64, LogError> {
        if self.failed {
            return Err(LogError::Failed);
        }
        if self.pending_records == 0 {
            return Ok(self.next_index);
        }
        let seg = self.segments.last_mut().expect("an active segment");
        // The sync covers what was written ahead too.
        let offset = seg.len + self.written_ahead;
        if let Err(e) = self.active.write_sync(offset, &self.pending) {
            self.failed = true;
            return Err(io_err("write", &seg.name)(e));
        }
        let bytes = self.written_ahead + self.pending.len() as u64;
        seg.len += bytes;
        seg.end = self.next_index;
        seg.newest_ns = seg.newest_ns.max(self.pending_newest_ns);
        self.stats.commits += 1;
        self.stats.committed_records += self.pending_records;
        self.stats.committed_bytes += bytes;
        self.pending.clear();
        self.written_ahead = 0;
        self.pending_records = 0;
        self.pending_newest_ns = 0;
        self.first_pending = None;
        if seg.len >= self.config.segment_bytes {
            let name = segment_name(self.next_index);
            let file = self.storage.create(&name).map_err(|e| {
                self.failed = true;
                io_err("create", &name)(e)
            })?;
            self.storage
                .sync_dir()
                .map_err(io_err("sync directory", &name))?;
            self.active = file;
            self.segments.push(Segment {
                name,
                first: self.next_index,
                len: 0,
                end: self.next_index,
                newest_ns: 0,
                summary: None,
            });
        }
        Ok(self.next_index)
    }

    /// Removes sealed segments past the retention limits; returns how many.
    ///
    /// # Errors
    /// Removing a segment failed.
    pub fn enforce_retention(&mut self, now_ns: u64) -> Result<usize, LogError> {
        self.enforce_retention_holding(now_ns, u64::MAX)
    }

    /// [`Log::enforce_retention`], except that age alone does not remove a
    /// segment holding records at or after index `hold` (the oldest sink
    /// cursor: records a sink has not delivered yet). Size still does: a
    /// sink down for good must not fill the disk.
    ///
    /// # Errors
    /// Removing a segment failed.
    pub fn enforce_retention_holding(&mut self, now_ns: u64, hold: u64) -> Result<usize, LogError> {
        let mut removed = 0;
        while self.segments.len() > 1 {
            let total: u64 = self.segments.iter().map(|s| s.len).sum();
            let oldest = &self.segments[0];
            let too_big = self.config.max_bytes.is_some_and(|m| total > m);
            let too_old = oldest.end <= hold
                && self.config.max_age.is_some_and(|age| {
                    now_ns.saturating_sub(oldest.newest_ns)
                        > u64::try_from(age.as_nanos()).unwrap_or(u64::MAX)
                });
            if !(too_big || too_old) {
                break;
            }
            let name = oldest.name.clone();
            self.storage
                .remove(&name)
                .map_err(io_err("remove", &name))?;
            match self.storage.remove(&summary_name(&name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("remove the summary", &name)(e));
                }
                _ => {}
            }
            self.segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            self.storage
                .sync_dir()
                .map_err(io_err("sync directory", ""))?;
            self.stats.segments_removed += removed as u64;
        }
        Ok(removed)
    }

    /// The committed log as it stands, for reading.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            segments: self
                .segments
                .iter()
                .map(|s| SnapSegment {
                    name: s.name.clone(),
                    first: s.first,
                    len: s.len,
                    end: s.end,
                    summary: s.summary.clone(),
                })
                .collect(),
        }
    }

    /// What the [`Summarizer`] has to do: every segment whose summary is
    /// missing, lags its committed length, or (sealed) is not final yet.
    fn summary_work(&self) -> Vec<Work> {
        let open = self.segments.len() - 1;
        self.segments
            .iter()
            .enumerate()
            .filter(|(i, s)| match &s.summary {
                None => s.len > 0 || *i < open,
                Some(sum) => sum.len < s.len || (*i < open && !sum.sealed),
            })
            .map(|(i, s)| Work {
                name: s.name.clone(),
                first: s.first,
                len: s.len,
                sealed: i < open,
            })
            .collect()
    }

    /// Installs `summary` for segment `name` (if retention has not removed
    /// it meanwhile).
    fn set_summary(&mut self, name: &str, summary: Summary) -> bool {
        match self.segments.iter_mut().find(|s| s.name == name) {
            Some(seg) => {
                seg.summary = Some(Arc::new(summary));
                true
            }
            None => false,
        }
    }

    /// The storage (readers use it with a [`Snapshot`]).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The index the next appended record gets.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The index after the last committed record (records from here on
    /// are only buffered).
    pub fn committed_index(&self) -> u64 {
        self.next_index - self.pending_records
    }

    /// The index of the oldest record still kept.
    pub fn first_index(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.first)
    }

    /// Records buffered, not yet committed.
    pub fn pending_records(&self) -> u64 {
        self.pending_records
    }

    /// Counters since open.
    pub fn stats(&self) -> LogStats {
        self.stats
    }

    /// Segments kept (the active one included).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Committed bytes over all segments.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
}

impl<S: Storage> fmt::Debug for Log<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("backend", &self.storage.backend())
            .field("segments", &self.segments.len())
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

struct Work {
    name: String,
    first: u64,
    len: u64,
    sealed: bool,
}

/// Builds segment summaries off the drain path (see [`summary`]): tick it
/// now and then; each tick reads only what was committed since the last.
#[derive(Debug, Default)]
pub struct Summarizer {
    /// The open segment's builder (name, builder with its keys).
    open: Option<(String, Builder)>,
}

impl Summarizer {
    /// A summarizer with nothing built yet.
    pub fn new() -> Summarizer {
        Summarizer::default()
    }

    /// Brings every summary of `log` up to date; returns how many sealed
    /// segments got their summary file. Holds the log's lock only to list
    /// the work and to install each summary.
    ///
    /// # Errors
    /// Reading a segment or writing a summary file failed.
    pub fn tick<S: Storage>(&mut self, log: &Mutex<Log<S>>) -> Result<usize, LogError> {
        let lock = || log.lock().unwrap_or_else(PoisonError::into_inner);
        let (work, storage, segment_bytes) = {
            let l = lock();
            (
                l.summary_work(),
                l.storage().clone(),
                l.config().segment_bytes,
            )
        };
        let mut sealed = 0;
        for w in work {
            let mut b = match self.open.take() {
                Some((name, b)) if name == w.name => b,
                _ => Builder::new(w.first, segment_bytes),
            };
            if b.len() < w.len {
                match storage.read_at(&w.name, b.len(), w.len - b.len()) {
                    Ok(bytes) => b.extend(&bytes),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("read", &w.name)(e)),
                }
            }
            if w.sealed {
                let s = b.finish();
                let sum_name = summary_name(&w.name);
                storage
                    .write_file(&sum_name, &s.encode())
                    .map_err(io_err("write the summary", &w.name))?;
                let mut l = lock();
                if l.set_summary(&w.name, s) {
                    sealed += 1;
                } else {
                    // Retention removed the segment meanwhile (under the
                    // lock we hold now, so it cannot come back).
                    let _ = l.storage().remove(&sum_name);
                }
            } else {
                if lock().set_summary(&w.name, b.partial()) {
                    self.open = Some((w.name, b));
                }
            }
        }
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests;
