//! Sinks: copies of the committed evidence sent elsewhere (a SIEM's JSON
//! lines file, a webhook), read from the durable log.
//!
//! A sink never touches the rings and never holds up the drain: it runs on
//! its own thread, takes a [`Snapshot`] of the committed log (holding the
//! log's lock only for that), and reads the segment files without it.
//!
//! # Delivery
//!
//! Each sink keeps a durable *cursor*: the log index of the first record it
//! has not yet handed over, in `<storage>/sinks/<name>.cursor`. A record is
//! delivered when the destination took it (the JSON lines file has it; the
//! webhook answered 2xx). At a *checkpoint* (at most every
//! [`CHECKPOINT_INTERVAL`] while delivering, and when the sink stops) the
//! destination is made durable (the JSON lines file is synced) and then the
//! cursor file is replaced atomically (write, fsync, rename, fsync of the
//! directory); so the file never claims more than is durable. A sink
//! stopped cleanly resumes exactly at its cursor; one killed delivers the
//! batches after its last checkpoint again (at-least-once; each webhook
//! post carries the log indexes so a receiver can drop repeats). A failed delivery is retried, the same
//! batch in the same order, after a backoff that doubles up to a cap, so a
//! destination that is down catches up when it comes back. Records that
//! retention removed before the sink reached them are counted as `lost`.
//!
//! Records are rendered as [`crate::query::render`] renders them for
//! `GET /v1/evidence`. A filter keeps only records whose plugin, gate,
//! verdict and tenant are each in its list (an empty list: any); a record
//! that does not decode passes only an empty filter.

mod jsonl;
mod webhook;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use odock_dataplane::evidence::{EvidenceRecord, Gate, Verdict};
use odock_dataplane::runtime::control_link::write_atomic;

use crate::drain::{SharedLog, lock};
use crate::log::{Entry, Position, Snapshot, Storage};
use crate::query::render_if;

pub use jsonl::JsonlSink;
pub use webhook::{Url, WebhookSink};

/// How often, at most, a delivering sink syncs its destination and writes
/// its cursor file.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// A configured sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Its name (names its cursor file; unique).
    pub name: String,
    /// Where records go.
    pub kind: SinkKind,
    /// Which records go.
    pub filter: SinkFilter,
    /// At most this many records per delivery.
    pub batch_size: usize,
    /// The first wait after a failed delivery.
    pub backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
}

/// Where a sink sends records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// A JSON lines file with size-based rotation.
    Jsonl {
        /// The file.
        path: PathBuf,
        /// Rotate before a write would take it past this size.
        max_bytes: u64,
        /// Rotated files kept (`<path>.1` newest .. `<path>.<keep>`).
        keep: u32,
    },
    /// HTTP POSTs of JSON lines.
    Webhook {
        /// Where to.
        url: Url,
        /// How long one post may take.
        timeout: Duration,
    },
}

impl SinkKind {
    /// `jsonl` or `webhook`.
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Jsonl { .. } => "jsonl",
            SinkKind::Webhook { .. } => "webhook",
        }
    }
}

/// Which records a sink takes: each non-empty list must hold the record's
/// value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkFilter {
    /// Plugin names.
    pub plugins: Vec<String>,
    /// Gate names (`none`, `request`, `response`, `complete`).
    pub gates: Vec<String>,
    /// Verdict names (`continue`, `block`, ...).
    pub verdicts: Vec<String>,
    /// Scope tenants.
    pub tenants: Vec<String>,
}

/// The gate names a filter may use.
pub fn gate_names() -> Vec<&'static str> {
    (0..=u8::MAX)
        .map_while(|c| Gate::from_code(c).name())
        .collect()
}

/// The verdict names a filter may use.
pub fn verdict_names() -> Vec<&'static str> {
    (0..=u8::MAX)
        .map_while(|c| Verdict::from_code(c).name())
        .collect()
}

impl SinkFilter {
    /// Whether every list is empty.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
            && self.gates.is_empty()
            && self.verdicts.is_empty()
            && self.tenants.is_empty()
    }

    /// Whether `r` passes.
    pub fn matches(&self, r: &EvidenceRecord<'_>) -> bool {
        let e = &r.evidence;
        let any = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        any(&self.plugins, e.plugin)
            && any(&self.tenants, e.scope.tenant)
            && (self.gates.is_empty() || any(&self.gates, &e.gate.to_string()))
            && (self.verdicts.is_empty() || any(&self.verdicts, &e.verdict.to_string()))
    }
}

/// A destination: takes a batch of JSON lines, or says why not.
pub trait Destination: Send {
    /// Delivers `lines` (each ending in `\n`), holding log indexes
    /// `first..=last`.
    ///
    /// # Errors
    /// Why the destination did not take them; the same batch is offered
    /// again later.
    fn deliver(&mut self, lines: &[String], first: u64, last: u64) -> Result<(), String>;

    /// Makes everything delivered so far durable (before the cursor moves
    /// past it). Default: delivery already is.
    ///
    /// # Errors
    /// Why not; the cursor then stays where it was.
    fn sync(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// A sink's counters, for `/metrics` and `GET /v1/status`.
#[derive(Debug)]
pub struct SinkStatus {
    /// The sink's name.
    pub name: String,
    /// `jsonl` or `webhook`.
    pub kind: &'static str,
    /// Records delivered since start.
    pub delivered: AtomicU64,
    /// Delivery attempts that failed since start.
    pub failed: AtomicU64,
    /// Records the filter left out since start.
    pub filtered: AtomicU64,
    /// Records retention removed before the sink reached them.
    pub lost: AtomicU64,
    /// The cursor: the first log index not yet delivered (or filtered
    /// out); its file is at most [`CHECKPOINT_INTERVAL`] behind.
    pub cursor: AtomicU64,
    /// The last delivery error, if the last attempt failed.
    pub last_error: Mutex<Option<String>>,
}

impl SinkStatus {
    fn new(name: &str, kind: &'static str, cursor: u64) -> SinkStatus {
        SinkStatus {
            name: name.to_owned(),
            kind,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            cursor: AtomicU64::new(cursor),
            last_error: Mutex::new(None),
        }
    }

    /// Committed records the sink has not yet passed (`committed`: the
    /// log's committed index).
    pub fn lag(&self, committed: u64) -> u64 {
        committed.saturating_sub(self.cursor.load(Ordering::Relaxed))
    }

    /// The last delivery error.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_error(&self, e: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = e;
    }
}

/// Why a sink cannot start.
#[derive(Debug)]
pub enum SinkError {
    /// Its cursor file is unreadable or not a cursor.
    Cursor(PathBuf, String),
    /// Its destination cannot be opened.
    Open(String, io::Error),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Cursor(p, e) => write!(f, "sink cursor {}: {e}", p.display()),
            SinkError::Open(what, e) => write!(f, "sink {what}: {e}"),
        }
    }
}

impl std::error::Error for SinkError {}

/// The cursor file of sink `name` under `storage_dir`.
pub fn cursor_path(storage_dir: &Path, name: &str) -> PathBuf {
    storage_dir.join("sinks").join(format!("{name}.cursor"))
}

/// Reads a cursor file: `0` when there is none yet.
///
/// # Errors
/// The file is unreadable or does not hold a number.
pub fn read_cursor(path: &Path) -> Result<u64, SinkError> {
    match fs::read_to_string(path) {
        Ok(t) => t.trim().parse().map_err(|_| {
            SinkError::Cursor(path.into(), format!("{:?} is not a log index", t.trim()))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(SinkError::Cursor(path.into(), e.to_string())),
    }
}

/// One sink: its configuration, destination, cursor and counters (see the
/// [module docs](self)).
pub struct Sink<S: Storage> {
    config: SinkConfig,
    destination: Box<dyn Destination>,
    log: SharedLog<S>,
    cursor_file: PathBuf,
    status: Arc<SinkStatus>,
    /// Sleep between looks at the log when there is nothing new.
    poll: Duration,
    /// Where the last full pass ended (the cursor's place in its segment),
    /// so the next pass reads only what is new.
    at: Option<Position>,
    /// The cursor in the file.
    durable: u64,
    /// When the cursor file was last written.
    checkpointed: Instant,
}

impl<S: Storage> Sink<S> {
    /// Opens sink `config` on `log`, its cursor under `storage_dir`.
    ///
    /// # Errors
    /// [`SinkError`]: the cursor or the destination.
    pub fn open(
        config: SinkConfig,
        storage_dir: &Path,
        log: SharedLog<S>,
    ) -> Result<Sink<S>, SinkError> {
        let destination: Box<dyn Destination> = match &config.kind {
            SinkKind::Jsonl {
                path,
                max_bytes,
                keep,
            } => Box::new(JsonlSink::open(path, *max_bytes, *keep).map_err(|e| {
                SinkError::Open(format!("{} file {}", config.name, path.display()), e)
            })?),
            SinkKind::Webhook { url, timeout } => Box::new(
                WebhookSink::new(url.clone(), *timeout, &config.name)
                    .map_err(|e| SinkError::Open(format!("{} runtime", config.name), e))?,
            ),
        };
        Sink::with_destination(config, destination, storage_dir, log)
    }

    /// A sink with a destination of the caller's (tests).
    ///
    /// # Errors
    /// [`SinkError::Cursor`].
    pub fn with_destination(
        config: SinkConfig,
        destination: Box<dyn Destination>,
        storage_dir: &Path,
        log: SharedLog<S>,
    ) -> Result<Sink<S>, SinkError> {
        let cursor_file = cursor_path(storage_dir, &config.name);
        if let Some(dir) = cursor_file.parent() {
            fs::create_dir_all(dir)
                .map_err(|e| SinkError::Cursor(cursor_file.clone(), e.to_string()))?;
        }
        let cursor = read_cursor(&cursor_file)?;
        let end = lock(&log).next_index();
        if cursor > end {
            return Err(SinkError::Cursor(
                cursor_file,
                format!(
                    "cursor {cursor} is past the end of the evidence log ({end}): the log was replaced, or the cursor belongs to another one; remove the file to deliver from the log's start"
                ),
            ));
        }
        let status = Arc::new(SinkStatus::new(&config.name, config.kind.name(), cursor));
        Ok(Sink {
            config,
            destination,
            log,
            cursor_file,
            status,
            poll: Duration::from_millis(20),
            at: None,
            durable: cursor,
            checkpointed: Instant::now(),
        })
    }

    /// The sink's counters (shared with the API).
    pub fn status(&self) -> Arc<SinkStatus> {
        Arc::clone(&self.status)
    }

    /// Runs until `stop` is set: delivers every committed record past the
    /// cursor, then waits for more.
    pub fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match self.round(stop) {
                Ok(0) => std::thread::sleep(self.poll),
                Ok(_) => {}
                Err(e) => {
                    self.status.set_error(Some(e));
                    std::thread::sleep(self.poll);
                }
            }
        }
        if let Err(e) = self.checkpoint(true) {
            self.status.set_error(Some(e));
        }
    }

    /// Syncs the destination and writes the cursor file, when the cursor
    /// moved and `force` or [`CHECKPOINT_INTERVAL`] has passed.
    ///
    /// # Errors
    /// The sync or the cursor write failed (the file keeps the old cursor).
    pub fn checkpoint(&mut self, force: bool) -> Result<(), String> {
        let cursor = self.status.cursor.load(Ordering::Relaxed);
        if cursor == self.durable || !(force || self.checkpointed.elapsed() >= CHECKPOINT_INTERVAL)
        {
            return Ok(());
        }
        self.destination.sync()?;
        self.save_cursor(cursor)?;
        self.durable = cursor;
        self.checkpointed = Instant::now();
        Ok(())
    }

    /// One pass over the committed log from the cursor; returns how many
    /// records it passed (delivered or filtered out). Stops early when
    /// `stop` is set while a delivery is being retried.
    ///
    /// # Errors
    /// Reading the log or writing the cursor failed (the cursor stays).
    pub fn round(&mut self, stop: &AtomicBool) -> Result<u64, String> {
        let (snapshot, storage, first, committed) = {
            let log = lock(&self.log);
            (
                log.snapshot(),
                log.storage().clone(),
                log.first_index(),
                log.committed_index(),
            )
        };
        let start = self.status.cursor.load(Ordering::Relaxed);
        if first > start {
            self.status.lost.fetch_add(first - start, Ordering::Relaxed);
            self.status.cursor.store(first, Ordering::Relaxed);
            self.checkpoint(true)?;
        }
        let start = self.status.cursor.load(Ordering::Relaxed);
        if start >= committed {
            self.checkpoint(false)?;
            return Ok(0);
        }
        let passed = self.pass(&snapshot, &storage, start, stop)?;
        self.checkpoint(false)?;
        Ok(passed)
    }

    fn pass(
        &mut self,
        snapshot: &Snapshot,
        storage: &S,
        start: u64,
        stop: &AtomicBool,
    ) -> Result<u64, String> {
        let mut lines: Vec<String> = Vec::new();
        let mut batch_first = start;
        let mut next = start;
        let mut error = None;
        let filter = self.config.filter.clone();
        let pass_undecodable = filter.is_empty();
        let at = self.at.take().filter(|p| p.index == start);
        let each = |entry: Entry| {
            next = entry.index + 1;
            match render_if(&entry, |r| filter.matches(r), pass_undecodable) {
                Some(line) => {
                    if lines.is_empty() {
                        batch_first = entry.index;
                    }
                    lines.push(line);
                }
                None => {
                    self.status.filtered.fetch_add(1, Ordering::Relaxed);
                }
            }
            if lines.len() >= self.config.batch_size
                && let Err(e) = self.flush(&mut lines, batch_first, next, stop)
            {
                error = Some(e);
                return false;
            }
            true
        };
        let r = match at {
            Some(p) => snapshot.scan_at(storage, p, |_| true, each),
            None => snapshot.scan_where(storage, start, |_| true, each),
        };
        if let Some(e) = error {
            return Err(e);
        }
        r.map_err(|e| e.to_string())?;
        self.flush(&mut lines, batch_first, next, stop)?;
        // A whole pass: the next one starts where this snapshot ends.
        self.at = snapshot
            .end()
            .filter(|e| e.index == self.status.cursor.load(Ordering::Relaxed));
        Ok(next - start)
    }

    /// Delivers `lines` (log indexes `first..end`), retrying with backoff,
    /// then moves the cursor to `end` (its file follows at a checkpoint).
    fn flush(
        &mut self,
        lines: &mut Vec<String>,
        first: u64,
        end: u64,
        stop: &AtomicBool,
    ) -> Result<(), String> {
        if !lines.is_empty() {
            let mut backoff = self.config.backoff;
            loop {
                match self.destination.deliver(lines, first, end - 1) {
                    Ok(()) => break,
                    Err(e) => {
                        self.status.failed.fetch_add(1, Ordering::Relaxed);
                        self.status.set_error(Some(e));
                        // Sleep in short steps, so a stop is not held up
                        // by a long backoff.
                        let mut left = backoff;
                        while !left.is_zero() {
                            if stop.load(Ordering::Relaxed) {
                                return Err("stopped while retrying a delivery".into());
                            }
                            let step = left.min(Duration::from_millis(20));
                            std::thread::sleep(step);
                            left -= step;
                        }
                        backoff = (backoff * 2).min(self.config.max_backoff);
                    }
                }
            }
            self.status.set_error(None);
            self.status
                .delivered
                .fetch_add(lines.len() as u64, Ordering::Relaxed);
            lines.clear();
        }
        if end > self.status.cursor.load(Ordering::Relaxed) {
            self.status.cursor.store(end, Ordering::Relaxed);
        }
        self.checkpoint(false)
    }

    fn save_cursor(&self, cursor: u64) -> Result<(), String> {
        write_atomic(&self.cursor_file, format!("{cursor}\n").as_bytes()).map_err(|e| {
            format!(
                "sink {}: writing its cursor {}: {e}",
                self.config.name,
                self.cursor_file.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Log, LogConfig, MemStorage, Origin};
    use odock_dataplane::evidence::{self, Evidence, Kind, Scope, Stamp};

    struct Collect(Arc<Mutex<Vec<String>>>, u32);

    impl Destination for Collect {
        fn deliver(&mut self, lines: &[String], _: u64, _: u64) -> Result<(), String> {
            if self.1 > 0 {
                self.1 -= 1;
                return Err("down".into());
            }
            self.0.lock().unwrap().extend(lines.iter().cloned());
            Ok(())
        }
    }

    fn record(seq: u64, plugin: &str, tenant: &str) -> Vec<u8> {
        let e = Evidence {
            plugin,
            scope: Scope {
                tenant,
                ..Scope::default()
            },
            ..Evidence::new(Kind::Plugin)
        };
        let stamp = Stamp {
            sequence: seq,
            timestamp_ns: 1_000 + seq,
            worker: 0,
        };
        let mut buf = vec![0; evidence::encoded_len(&e)];
        evidence::encode(&stamp, &e, &mut buf).unwrap();
        buf
    }

    #[test]
    fn filter_keeps_only_matching_records_and_the_cursor_passes_all() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(MemStorage::new(), LogConfig::default()).unwrap();
        for i in 0..30 {
            let plugin = if i % 3 == 0 { "dlp" } else { "other" };
            log.append(Origin::default(), &record(i, plugin, "acme"))
                .unwrap();
        }
        log.commit().unwrap();
        let log = Arc::new(Mutex::new(log));
        let got = Arc::new(Mutex::new(Vec::new()));
        let config = SinkConfig {
            name: "t".into(),
            kind: SinkKind::Jsonl {
                path: dir.path().join("unused"),
                max_bytes: 1 << 20,
                keep: 1,
            },
            filter: SinkFilter {
                plugins: vec!["dlp".into()],
                ..SinkFilter::default()
            },
            batch_size: 4,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        };
        let mut sink = Sink::with_destination(
            config,
            Box::new(Collect(Arc::clone(&got), 2)),
            dir.path(),
            Arc::clone(&log),
        )
        .unwrap();
        let stop = AtomicBool::new(false);
        assert_eq!(sink.round(&stop).unwrap(), 30);
        sink.checkpoint(true).unwrap();
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|l| l.contains("\"plugin\":\"dlp\"")));
        assert_eq!(sink.status().failed.load(Ordering::Relaxed), 2);
        assert_eq!(sink.status().filtered.load(Ordering::Relaxed), 20);
        assert_eq!(
            read_cursor(&cursor_path(dir.path(), "t")).unwrap(),
            30,
            "the cursor passes the filtered-out records too"
        );
    }

    #[test]
    fn names_for_filters() {
        assert_eq!(gate_names(), ["none", "request", "response", "complete"]);
        assert!(verdict_names().contains(&"block"));
        assert!(verdict_names().contains(&"delivered"));
    }
}
