//! The drainer: attaches every evidence ring under `<run>/evidence/`, and
//! moves committed records into the durable log.
//!
//! Each round takes one batch from every ring (starting at a different ring
//! each round) and appends its records to the log, stopping early once the
//! group-commit cadence asks for a commit (so a full ring cannot stretch a
//! round past `fsync_interval`); then it waits out the cadence, commits,
//! and only then drops the batches, which publishes each ring's consumer
//! position.
//! So a record leaves its ring only once it is durable: control killed at
//! any point loses nothing a dataplane committed. A control killed between
//! a commit and the release leaves records that are in the log and still in
//! the ring; the next control, at its first listing, reads from the log the
//! last record of every ring lane it holds (its writer, sequence number and
//! time) and skips the records up to that one in the lane's first batch. So
//! nothing is stored twice either (a failed commit stops the drainer
//! without releasing anything).
//!
//! A ring whose creator process is gone, with no live producer and nothing
//! left in it, is removed after its last records are durable.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use odock_dataplane::evidence::decode;
use odock_dataplane::ring::{Consumer, LaneStatus, MappedMemory, Ring};
use odock_dataplane::runtime::control_link::EVIDENCE_DIR;

use crate::log::{Log, LogError, Origin, Storage};

/// Records between two looks at the commit cadence while gathering.
const GATHER_CHECK: usize = 256;

/// How often the evidence directory is listed for new rings.
pub const RESCAN_INTERVAL: Duration = Duration::from_millis(100);

/// The log shared by the drainer, the API (control's own records) and
/// readers.
pub type SharedLog<S> = Arc<Mutex<Log<S>>>;

/// Locks a shared log (a panic elsewhere does not make it unusable: the log
/// keeps its own failed state).
pub fn lock<S: Storage>(log: &SharedLog<S>) -> MutexGuard<'_, Log<S>> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The id a ring file gets in the log: CRC32C of its name, never 0 (0 is
/// control's own records).
pub fn ring_id(name: &str) -> u32 {
    crc32c::crc32c(name.as_bytes()).max(1)
}

/// One attached ring, as health and metrics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingHealth {
    /// The ring file's name.
    pub name: String,
    /// Its id in the log.
    pub id: u32,
    /// The pid that created it (from its name).
    pub creator_pid: Option<u32>,
    /// Records drained into the log since control started.
    pub drained: u64,
    /// Its lanes.
    pub lanes: Vec<LaneStatus>,
    /// Why the consumer stopped, if the ring broke the protocol.
    pub corrupt: Option<String>,
}

struct Attached {
    name: String,
    path: PathBuf,
    id: u32,
    creator_pid: Option<u32>,
    consumer: Consumer<MappedMemory>,
    drained: u64,
    corrupt: Option<String>,
    /// For a ring a previous control drained: per lane, the stamp of the
    /// last record of that lane the log has. The first batch skips the
    /// records up to and including it (see [`Drainer::round`]).
    resume: Option<HashMap<u32, Mark>>,
}

/// A record's identity within its lane: (worker, sequence, timestamp_ns).
type Mark = (u32, u64, u64);

fn mark_of(bytes: &[u8]) -> Option<Mark> {
    decode(bytes)
        .ok()
        .map(|r| (r.stamp.worker, r.stamp.sequence, r.stamp.timestamp_ns))
}

/// Counters the metrics endpoint shows.
#[derive(Debug, Default)]
pub struct DrainStats {
    /// Records drained and committed.
    pub records: AtomicU64,
    /// Rounds that committed something.
    pub rounds: AtomicU64,
    /// Rings removed after their creator died and they were empty.
    pub rings_retired: AtomicU64,
    /// Rings that could not be attached (counted per attempt).
    pub attach_errors: AtomicU64,
    /// Records a previous control committed but had not yet released from
    /// their ring (it died between the two), found again and skipped.
    pub duplicates_skipped: AtomicU64,
    /// Nanoseconds spent taking records from the rings into the log's
    /// buffer (rounds that moved records).
    pub gather_ns: AtomicU64,
    /// Nanoseconds spent waiting for the group-commit cadence.
    pub wait_ns: AtomicU64,
    /// Nanoseconds spent in commits (write and data sync).
    pub commit_ns: AtomicU64,
}

/// The drainer (see the [module docs](self)).
pub struct Drainer<S: Storage> {
    dir: PathBuf,
    log: SharedLog<S>,
    rings: BTreeMap<String, Attached>,
    health: Arc<Mutex<Vec<RingHealth>>>,
    stats: Arc<DrainStats>,
    last_scan: Option<Instant>,
    /// A commit or append failed: the consumers' positions are ahead of
    /// what is durable, so they must never be published (see `Drop`).
    failed: bool,
    /// Whether the first listing (the one that finds the rings a previous
    /// control may have drained) is done.
    scanned_once: bool,
    /// Resume marks of rings in the log not attached yet.
    known_marks: HashMap<u32, HashMap<u32, Mark>>,
    /// Which ring the next round starts at.
    next_start: usize,
}

impl<S: Storage> Drop for Drainer<S> {
    fn drop(&mut self) {
        if self.failed {
            // A consumer publishes its position when dropped; after a
            // failed commit that would release records the log does not
            // have. Leak them instead: the ring files keep the records and
            // the next control (another process: this one exits) resumes at
            // the last durable position.
            std::mem::forget(std::mem::take(&mut self.rings));
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn creator_pid(name: &str) -> Option<u32> {
    name.split('-').next()?.parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

impl<S: Storage> Drainer<S> {
    /// A drainer of the rings under `<run_dir>/evidence/` into `log`.
    pub fn new(run_dir: &Path, log: SharedLog<S>) -> Drainer<S> {
        Drainer {
            dir: run_dir.join(EVIDENCE_DIR),
            log,
            rings: BTreeMap::new(),
            health: Arc::new(Mutex::new(Vec::new())),
            stats: Arc::new(DrainStats::default()),
            last_scan: None,
            failed: false,
            scanned_once: false,
            known_marks: HashMap::new(),
            next_start: 0,
        }
    }

    /// The rings' health, refreshed every round.
    pub fn health(&self) -> Arc<Mutex<Vec<RingHealth>>> {
        Arc::clone(&self.health)
    }

    /// The drainer's counters.
    pub fn stats(&self) -> Arc<DrainStats> {
        Arc::clone(&self.stats)
    }

    /// Drains until `stop` is set, then commits what it holds.
    ///
    /// # Errors
    /// A log append or commit failed: the drainer stops without releasing
    /// what it held (those records stay in the rings for the next control;
    /// the caller should exit the process so its consumer claims die too).
    pub fn run(mut self, stop: &AtomicBool) -> Result<(), LogError> {
        while !stop.load(Ordering::Relaxed) {
            let n = self.round()?;
            if n == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    }

    /// Lists the evidence directory: attaches new rings, retires dead
    /// empty ones.
    pub fn rescan(&mut self) {
        self.last_scan = Some(Instant::now());
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if !name.ends_with(".ring") || self.rings.contains_key(&name) {
                    continue;
                }
                let path = entry.path();
                let attached = Ring::attach(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|ring| ring.consumer().map_err(|e| e.to_string()));
                match attached {
                    Ok(mut consumer) => {
                        consumer.set_lane_quota(u64::MAX);
                        let id = ring_id(&name);
                        self.rings.insert(
                            name.clone(),
                            Attached {
                                id,
                                creator_pid: creator_pid(&name),
                                name,
                                path,
                                consumer,
                                drained: 0,
                                corrupt: None,
                                resume: self.known_marks.remove(&id),
                            },
                        );
                    }
                    Err(_) => {
                        // A ring still being created, or another control
                        // holds it: try again next scan.
                        self.stats.attach_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if !self.scanned_once {
            self.scanned_once = true;
            self.find_resume_marks();
        }
        // Retire rings whose creator is gone and which hold nothing.
        let mut gone = Vec::new();
        for (name, a) in &mut self.rings {
            if a.corrupt.is_some() {
                continue;
            }
            let dead = a.creator_pid.is_some_and(|pid| !alive(pid));
            if !dead {
                continue;
            }
            let _ = a.consumer.reap_dead_producers();
            let lanes = a.consumer.lanes();
            if lanes
                .iter()
                .all(|l| l.owner_pid.is_none() && l.backlog_bytes == 0)
            {
                gone.push(name.clone());
            }
        }
        for name in gone {
            if let Some(a) = self.rings.remove(&name) {
                let _ = fs::remove_file(&a.path);
                self.stats.rings_retired.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// For every ring the log has records of: the last record of each lane.
    /// A previous control may have committed records and died before
    /// releasing them from their ring (the release follows the commit); the
    /// consumer then resumes before them, and the first batch skips them.
    /// Reads the whole log once, at the first listing (as recovery did).
    fn find_resume_marks(&mut self) {
        let (snapshot, storage) = {
            let log = lock(&self.log);
            (log.snapshot(), log.storage().clone())
        };
        let mut marks: HashMap<u32, HashMap<u32, Mark>> = HashMap::new();
        let _ = snapshot.scan(&storage, 0, |entry| {
            if entry.origin.ring != 0
                && let Some(mark) = mark_of(&entry.payload)
            {
                marks
                    .entry(entry.origin.ring)
                    .or_default()
                    .insert(entry.origin.lane, mark);
            }
            true
        });
        for a in self.rings.values_mut() {
            a.resume = marks.remove(&a.id);
        }
        self.known_marks = marks;
    }

    /// One round: a batch from every ring into the log, the commit when the
    /// cadence asks, then the release. Returns the records moved.
    ///
    /// # Errors
    /// An append or the commit failed; the drainer is then failed for good
    /// and never releases ring space again.
    pub fn round(&mut self) -> Result<usize, LogError> {
        if self
            .last_scan
            .is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL)
        {
            self.rescan();
        }
        if self.failed {
            return Err(LogError::Failed);
        }
        let log = Arc::clone(&self.log);
        let mut total = 0;
        let mut failure = None;
        let mut due = false;
        let gather_start = Instant::now();
        let mut batches = Vec::with_capacity(self.rings.len());
        {
            let mut guard = lock(&log);
            // Start at another ring each round: a round that stops early
            // (the cadence) must not always leave the same rings last.
            let mut order: Vec<&mut Attached> = self.rings.values_mut().collect();
            if !order.is_empty() {
                let start = self.next_start % order.len();
                order.rotate_left(start);
            }
            self.next_start = self.next_start.wrapping_add(1);
            'rings: for a in order {
                if a.corrupt.is_some() {
                    continue;
                }
                let mut batch = a.consumer.batch();
                if let Some(marks) = a.resume.take() {
                    // The first batch after a restart holds every record
                    // not released, the already-committed ones first.
                    let mut records: Vec<(u32, Vec<u8>)> = Vec::new();
                    loop {
                        match batch.next() {
                            Ok(Some(r)) => records.push((r.lane(), r.to_vec())),
                            Ok(None) => break,
                            Err(e) => {
                                a.corrupt = Some(e.to_string());
                                break;
                            }
                        }
                    }
                    let mut skip_until: HashMap<u32, usize> = HashMap::new();
                    for (i, (lane, bytes)) in records.iter().enumerate() {
                        if marks.get(lane).is_some_and(|m| mark_of(bytes) == Some(*m)) {
                            skip_until.insert(*lane, i);
                        }
                    }
                    for (i, (lane, bytes)) in records.iter().enumerate() {
                        if skip_until.get(lane).is_some_and(|&last| i <= last) {
                            self.stats
                                .duplicates_skipped
                                .fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let appended = guard.append(
                            Origin {
                                ring: a.id,
                                lane: *lane,
                                ring_seq: a.drained,
                            },
                            bytes,
                        );
                        if let Err(e) = appended {
                            failure = Some(e);
                            break;
                        }
                        a.drained += 1;
                        total += 1;
                    }
                    batches.push(batch);
                    if failure.is_some() {
                        break 'rings;
                    }
                    continue;
                }
                loop {
                    // Keep the cadence while gathering too: once a commit
                    // is due, stop taking records (the batch releases only
                    // what it read), so a full ring never makes a round
                    // outgrow `fsync_interval` / `fsync_bytes`.
                    if total % GATHER_CHECK == GATHER_CHECK - 1 && guard.commit_due() {
                        due = true;
                        break;
                    }
                    match batch.next() {
                        Ok(Some(record)) => {
                            let appended = guard.append(
                                Origin {
                                    ring: a.id,
                                    lane: record.lane(),
                                    ring_seq: a.drained,
                                },
                                &record,
                            );
                            if let Err(e) = appended {
                                failure = Some(e);
                                batches.push(batch);
                                break 'rings;
                            }
                            a.drained += 1;
                            total += 1;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            a.corrupt = Some(e.to_string());
                            break;
                        }
                    }
                }
                batches.push(batch);
                if due {
                    break 'rings;
                }
            }
        }
        if let Some(e) = failure {
            // Dropping the batches would release records that are not
            // durable: keep them in the rings for the next control.
            std::mem::forget(batches);
            self.failed = true;
            return Err(e);
        }
        if total > 0 {
            let wait_start = Instant::now();
            self.stats
                .gather_ns
                .fetch_add(nanos(wait_start - gather_start), Ordering::Relaxed);
            // Wait out the cadence without the lock (the API may commit
            // meanwhile; its commit covers our records too), then commit.
            loop {
                let wait = lock(&log).commit_wait();
                match wait {
                    Some(w) if !w.is_zero() && !lock(&log).commit_due() => {
                        std::thread::sleep(w.min(Duration::from_millis(10)));
                    }
                    _ => break,
                }
            }
            let commit_start = Instant::now();
            self.stats
                .wait_ns
                .fetch_add(nanos(commit_start - wait_start), Ordering::Relaxed);
            if let Err(e) = lock(&log).commit() {
                std::mem::forget(batches);
                self.failed = true;
                return Err(e);
            }
            self.stats
                .commit_ns
                .fetch_add(nanos(commit_start.elapsed()), Ordering::Relaxed);
            self.stats
                .records
                .fetch_add(total as u64, Ordering::Relaxed);
            self.stats.rounds.fetch_add(1, Ordering::Relaxed);
        }
        // Durable: now the rings may reuse the space.
        drop(batches);
        self.refresh_health();
        Ok(total)
    }

    fn refresh_health(&mut self) {
        let health = self
            .rings
            .values()
            .map(|a| RingHealth {
                name: a.name.clone(),
                id: a.id,
                creator_pid: a.creator_pid,
                drained: a.drained,
                lanes: a.consumer.lanes(),
                corrupt: a.corrupt.clone(),
            })
            .collect();
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = health;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{LogConfig, MemStorage};
    use odock_dataplane::evidence::{Evidence, EvidenceWriter, Kind, SequenceCheck, decode};
    use odock_dataplane::ring::{Backing, Geometry};

    #[test]
    fn drains_every_ring_into_the_log_and_releases_only_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let evidence = dir.path().join(EVIDENCE_DIR);
        fs::create_dir_all(&evidence).unwrap();
        let ring = Ring::create(
            Geometry::new(1, 1 << 16).unwrap(),
            Backing::File(&evidence.join(format!("{}-1-w0.ring", std::process::id()))),
        )
        .unwrap();
        let mut writer = EvidenceWriter::new(ring.producer().unwrap(), 3);
        let storage = MemStorage::new();
        let config = LogConfig {
            fsync_interval: Duration::from_millis(1),
            ..LogConfig::default()
        };
        let (log, _) = Log::open(storage.clone(), config).unwrap();
        let log = Arc::new(Mutex::new(log));
        let mut drainer = Drainer::new(dir.path(), Arc::clone(&log));
        let mut written = 0u64;
        for round in 0..20 {
            for _ in 0..50 {
                if writer.write(&Evidence::new(Kind::Decision)).is_ok() {
                    written += 1;
                }
            }
            drainer.round().unwrap();
            let health = drainer.health();
            let h = health.lock().unwrap();
            assert_eq!(h.len(), 1, "round {round}");
            assert_eq!(h[0].lanes[0].backlog_bytes, 0, "released after the commit");
        }
        assert_eq!(written, 1000);
        let snapshot = lock(&log).snapshot();
        let mut check = SequenceCheck::new();
        let mut n = 0;
        snapshot
            .scan(&storage, 0, |e| {
                let r = decode(&e.payload).unwrap();
                check.observe(&r).unwrap();
                assert_eq!(r.stamp.worker, 3);
                assert_eq!(e.origin.ring, drainer.rings.values().next().unwrap().id);
                n += 1;
                true
            })
            .unwrap();
        assert_eq!(n, 1000);
        assert_eq!(drainer.stats().records.load(Ordering::Relaxed), 1000);
    }
}

#[cfg(test)]
mod cadence_tests {
    use super::*;
    use crate::log::{LogConfig, MemStorage};
    use odock_dataplane::evidence::{Evidence, EvidenceWriter, Kind};
    use odock_dataplane::ring::{Backing, Geometry};

    /// A round stops gathering once a commit is due, and the next round
    /// starts at the next ring, so two full rings are both drained.
    #[test]
    fn a_round_stops_when_a_commit_is_due_and_rings_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let evidence = dir.path().join(EVIDENCE_DIR);
        fs::create_dir_all(&evidence).unwrap();
        let mut rings = Vec::new();
        for n in 0..2 {
            let ring = Ring::create(
                Geometry::new(1, 1 << 17).unwrap(),
                Backing::File(&evidence.join(format!("{}-{n}-w0.ring", std::process::id()))),
            )
            .unwrap();
            let mut w = EvidenceWriter::new(ring.producer().unwrap(), n);
            for _ in 0..600 {
                w.write(&Evidence::new(Kind::Decision)).unwrap();
            }
            rings.push(ring);
        }
        let config = LogConfig {
            fsync_bytes: 1,
            ..LogConfig::default()
        };
        let (log, _) = Log::open(MemStorage::new(), config).unwrap();
        let log = Arc::new(Mutex::new(log));
        let mut drainer = Drainer::new(dir.path(), Arc::clone(&log));
        let first = drainer.round().unwrap();
        assert_eq!(first, GATHER_CHECK - 1, "stopped once due");
        let second = drainer.round().unwrap();
        assert_eq!(second, GATHER_CHECK - 1);
        let drained: Vec<u64> = drainer.rings.values().map(|a| a.drained).collect();
        assert_eq!(
            drained,
            [255, 255],
            "the second round began at the other ring"
        );
        while drainer.round().unwrap() > 0 {}
        let drained: Vec<u64> = drainer.rings.values().map(|a| a.drained).collect();
        assert_eq!(drained, [600, 600]);
        assert_eq!(lock(&log).committed_index(), 1200);
        assert!(drainer.stats().rounds.load(Ordering::Relaxed) >= 1200 / 255);
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;
    use crate::log::{FileStorage, IoMode, LogConfig};
    use odock_dataplane::evidence::{Evidence, EvidenceWriter, Kind, SequenceCheck};
    use odock_dataplane::ring::{Backing, Geometry};

    const CHILD: &str = "ODOCK_DRAIN_TEST_CHILD";

    /// The dead control: drains the first 40 records of the ring into the
    /// log, commits, and dies without releasing them.
    #[test]
    fn child_commits_then_dies() {
        let Ok(dir) = std::env::var(CHILD) else {
            return;
        };
        let dir = PathBuf::from(dir);
        let name = fs::read_dir(dir.join(EVIDENCE_DIR))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name()
            .into_string()
            .unwrap();
        let ring = Ring::attach(&dir.join(EVIDENCE_DIR).join(&name)).unwrap();
        let mut consumer = ring.consumer().unwrap();
        let storage = FileStorage::new(&dir.join("log"), IoMode::Auto).unwrap();
        let (mut log, _) = Log::open(storage, LogConfig::default()).unwrap();
        let mut batch = consumer.batch();
        for i in 0..40 {
            let r = batch.next().unwrap().unwrap();
            let origin = Origin {
                ring: ring_id(&name),
                lane: r.lane(),
                ring_seq: i,
            };
            log.append(origin, &r).unwrap();
        }
        log.commit().unwrap();
        // Killed between the commit and the release.
        std::process::abort();
    }

    /// A control that committed records and died before releasing them
    /// leaves them in the log and in the ring: the next one skips them.
    #[test]
    fn records_committed_but_not_released_are_not_stored_twice() {
        if std::env::var(CHILD).is_ok() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let evidence = dir.path().join(EVIDENCE_DIR);
        fs::create_dir_all(&evidence).unwrap();
        let name = format!("{}-2-w0.ring", std::process::id());
        let ring = Ring::create(
            Geometry::new(1, 1 << 16).unwrap(),
            Backing::File(&evidence.join(&name)),
        )
        .unwrap();
        let mut writer = EvidenceWriter::new(ring.producer().unwrap(), 0);
        for _ in 0..100 {
            writer.write(&Evidence::new(Kind::Decision)).unwrap();
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "drain::resume_tests::child_commits_then_dies",
                "--nocapture",
            ])
            .env(CHILD, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child dies");
        let storage = FileStorage::new(&dir.path().join("log"), IoMode::Auto).unwrap();
        let (log, recovery) = Log::open(storage.clone(), LogConfig::default()).unwrap();
        assert_eq!(recovery.records, 40);
        let log = Arc::new(Mutex::new(log));
        let mut drainer = Drainer::new(dir.path(), Arc::clone(&log));
        drainer.round().unwrap();
        assert_eq!(
            drainer.stats().duplicates_skipped.load(Ordering::Relaxed),
            40
        );
        let mut check = SequenceCheck::new();
        let mut n = 0;
        lock(&log)
            .snapshot()
            .scan(&storage, 0, |e| {
                check.observe(&decode(&e.payload).unwrap()).unwrap();
                n += 1;
                true
            })
            .unwrap();
        assert_eq!(n, 100);
        assert_eq!(check.next_expected(), Some(100));
    }
}
