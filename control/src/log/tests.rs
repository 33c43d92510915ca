use proptest::prelude::*;

use super::*;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        ..LogConfig::default()
    }
}

fn payload(i: u64) -> Vec<u8> {
    let len = (i * 37 % 200) as usize;
    (0..len).map(|b| (b as u64 ^ i) as u8).collect()
}

fn origin(i: u64) -> Origin {
    Origin {
        ring: (i % 3) as u32,
        lane: (i % 2) as u32,
        ring_seq: i,
    }
}

fn read_all<S: Storage>(log: &Log<S>) -> Vec<Entry> {
    let mut out = Vec::new();
    let corrupt = log
        .snapshot()
        .scan(log.storage(), 0, |e| {
            out.push(e);
            true
        })
        .unwrap();
    assert!(corrupt.is_empty(), "{corrupt:?}");
    out
}

#[test]
fn round_trip_across_segments_and_reopen() {
    let storage = MemStorage::new();
    let (mut log, recovery) = Log::open(storage.clone(), config()).unwrap();
    assert_eq!(recovery.records, 0);
    for i in 0..100 {
        assert_eq!(log.append(origin(i), &payload(i)).unwrap(), i);
        if i % 7 == 0 {
            log.commit().unwrap();
        }
    }
    assert_eq!(log.commit().unwrap(), 100);
    assert!(log.segment_count() > 3, "small segments roll");
    let entries = read_all(&log);
    assert_eq!(entries.len(), 100);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
        assert_eq!(e.payload, payload(i as u64));
        assert_eq!(e.origin, origin(i as u64));
    }
    drop(log);
    let (log, recovery) = Log::open(storage, config()).unwrap();
    assert_eq!(recovery.records, 100);
    assert_eq!(recovery.truncated_bytes, 0);
    assert!(recovery.corrupt.is_empty());
    assert_eq!(log.next_index(), 100);
    assert_eq!(read_all(&log).len(), 100);
}

#[test]
fn torn_last_record_is_cut_and_earlier_ones_kept() {
    let storage = MemStorage::new();
    let (mut log, _) = Log::open(storage.clone(), LogConfig::default()).unwrap();
    for i in 0..10 {
        log.append(origin(i), &payload(i)).unwrap();
    }
    log.commit().unwrap();
    drop(log);
    let name = segment_name(0);
    let mut bytes = storage.file(&name).unwrap();
    let whole = bytes.len();
    // Tear the last record: keep its header and a few payload bytes.
    let last_len = HEADER_LEN + payload(9).len();
    bytes.truncate(whole - last_len + HEADER_LEN + 3);
    storage.set_file(&name, bytes);
    let (mut log, recovery) = Log::open(storage.clone(), LogConfig::default()).unwrap();
    assert_eq!(recovery.records, 9);
    assert_eq!(recovery.truncated_bytes, (HEADER_LEN + 3) as u64);
    assert!(recovery.corrupt.is_empty());
    assert_eq!(log.next_index(), 9);
    // The log goes on from the cut.
    log.append(origin(9), b"again").unwrap();
    log.commit().unwrap();
    let entries = read_all(&log);
    assert_eq!(entries.len(), 10);
    assert_eq!(entries[9].payload, b"again");
}

#[test]
fn garbage_tail_after_a_crash_is_cut() {
    let storage = MemStorage::new();
    let (mut log, _) = Log::open(storage.clone(), LogConfig::default()).unwrap();
    log.append(origin(0), b"kept").unwrap();
    log.commit().unwrap();
    drop(log);
    let name = segment_name(0);
    let mut bytes = storage.file(&name).unwrap();
    let good = bytes.len();
    bytes.extend_from_slice(&[0xA5; 300]);
    storage.set_file(&name, bytes);
    let (_, recovery) = Log::open(storage.clone(), LogConfig::default()).unwrap();
    assert_eq!(recovery.records, 1);
    assert_eq!(recovery.truncated_bytes, 300);
    assert_eq!(storage.file(&name).unwrap().len(), good);
}

#[test]
fn corruption_in_the_middle_is_reported_and_skipped() {
    let storage = MemStorage::new();
    let (mut log, _) = Log::open(storage.clone(), LogConfig::default()).unwrap();
    let mut offsets = Vec::new();
    let mut at = 0;
    for i in 0..10 {
        offsets.push(at);
        at += HEADER_LEN + payload(i).len();
        log.append(origin(i), &payload(i)).unwrap();
    }
    log.commit().unwrap();
    drop(log);
    let name = segment_name(0);
    let mut bytes = storage.file(&name).unwrap();
    // Flip a payload byte of record 4: its CRC fails.
    bytes[offsets[4] + HEADER_LEN] ^= 0xff;
    let whole = bytes.len();
    storage.set_file(&name, bytes);
    let (log, recovery) = Log::open(storage.clone(), LogConfig::default()).unwrap();
    assert_eq!(
        recovery.truncated_bytes, 0,
        "nothing cut: valid records follow"
    );
    assert_eq!(storage.file(&name).unwrap().len(), whole);
    assert_eq!(recovery.corrupt.len(), 1);
    let span = &recovery.corrupt[0];
    assert_eq!(span.offset, offsets[4] as u64);
    assert_eq!(span.len, (offsets[5] - offsets[4]) as u64);
    assert_eq!(span.reason, "CRC32C mismatch");
    assert!(span.to_string().contains("CRC32C"), "{span}");
    assert_eq!(recovery.records, 9);
    let mut seen = Vec::new();
    let corrupt = log
        .snapshot()
        .scan(log.storage(), 0, |e| {
            seen.push(e.index);
            true
        })
        .unwrap();
    assert_eq!(corrupt.len(), 1);
    assert_eq!(seen, [0, 1, 2, 3, 5, 6, 7, 8, 9]);
    assert_eq!(log.next_index(), 10);
}

#[test]
fn a_crash_at_any_write_keeps_every_committed_record() {
    for (step, keep_unsynced, write_ahead_bytes) in (0..24)
        .flat_map(|s| [(s, false), (s, true)])
        .flat_map(|(s, k)| [(s, k, 0), (s, k, 300)])
    {
        {
            let config = LogConfig {
                write_ahead_bytes,
                ..config()
            };
            let storage = MemStorage::new();
            storage.freeze_at(step);
            let (mut log, _) = Log::open(storage.clone(), config).unwrap();
            let mut committed = 0;
            for i in 0..60 {
                if log.append(origin(i), &payload(i)).is_err() {
                    // A write ahead failed: the log is failed.
                    assert!(matches!(log.commit(), Err(LogError::Failed)));
                    break;
                }
                if i % 5 == 4 {
                    match log.commit() {
                        Ok(n) => committed = n,
                        Err(_) => break,
                    }
                }
            }
            assert!(matches!(
                log.append(origin(0), b"x"),
                Err(LogError::Failed) | Ok(_)
            ));
            let image = storage.crash_image(keep_unsynced);
            let (log, recovery) = Log::open(image, config).unwrap();
            assert!(
                recovery.corrupt.is_empty(),
                "step {step}: {:?}",
                recovery.corrupt
            );
            let entries = read_all(&log);
            assert!(
                entries.len() as u64 >= committed,
                "step {step}: {} read, {committed} committed",
                entries.len()
            );
            for (i, e) in entries.iter().enumerate() {
                assert_eq!(e.index, i as u64);
                assert_eq!(e.payload, payload(i as u64));
            }
        }
    }
}

#[test]
fn retention_by_size_and_age_keeps_the_active_segment() {
    let storage = MemStorage::new();
    let cfg = LogConfig {
        segment_bytes: 512,
        max_bytes: Some(2048),
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open(storage.clone(), cfg).unwrap();
    for i in 0..200 {
        log.append_at(1_000 + i, origin(i), &[7; 100]).unwrap();
        log.commit().unwrap();
    }
    let removed = log.enforce_retention(0).unwrap();
    assert!(removed > 0);
    assert!(log.bytes() <= 2048 + 512);
    let entries = read_all(&log);
    assert_eq!(entries.last().unwrap().index, 199);
    assert_eq!(entries[0].index, log.first_index());

    let cfg = LogConfig {
        segment_bytes: 512,
        max_age: Some(Duration::from_nanos(50)),
        ..LogConfig::default()
    };
    let storage = MemStorage::new();
    let (mut log, _) = Log::open(storage, cfg).unwrap();
    for i in 0..50 {
        log.append_at(i, origin(i), &[1; 100]).unwrap();
        log.commit().unwrap();
    }
    log.enforce_retention(1_000_000).unwrap();
    assert_eq!(log.segment_count(), 1, "only the active segment is left");

    // Age does not remove what a sink has not passed; size does.
    let cfg = LogConfig {
        segment_bytes: 512,
        max_age: Some(Duration::from_nanos(50)),
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open(MemStorage::new(), cfg).unwrap();
    for i in 0..50 {
        log.append_at(i, origin(i), &[1; 100]).unwrap();
        log.commit().unwrap();
    }
    let segments = log.segment_count();
    assert!(segments > 3);
    assert_eq!(log.enforce_retention_holding(1_000_000, 0).unwrap(), 0);
    let hold = log.snapshot().segments()[2].first;
    assert_eq!(log.enforce_retention_holding(1_000_000, hold).unwrap(), 2);
    assert_eq!(log.first_index(), hold, "kept from the oldest cursor on");
    let cfg = LogConfig {
        max_bytes: Some(1024),
        ..cfg
    };
    let (mut log, _) = Log::open(log.storage().clone(), cfg).unwrap();
    assert!(log.enforce_retention_holding(1_000_000, 0).unwrap() > 0);
    assert!(log.bytes() <= 1024 + 512);
}

#[test]
fn disk_storage_round_trip_on_both_paths() {
    for mode in [IoMode::Auto, IoMode::Pwrite] {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileStorage::new(dir.path(), mode).unwrap();
        if mode == IoMode::Pwrite {
            assert_eq!(storage.backend(), "pwrite");
        }
        let (mut log, _) = Log::open(storage.clone(), config()).unwrap();
        for i in 0..50 {
            log.append(origin(i), &payload(i)).unwrap();
        }
        log.commit().unwrap();
        drop(log);
        let (log, recovery) =
            Log::open(FileStorage::new(dir.path(), mode).unwrap(), config()).unwrap();
        assert_eq!(recovery.records, 50);
        assert_eq!(read_all(&log).len(), 50);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Commit,
    Crash { keep_unsynced: bool },
    Tear(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..120).prop_map(Op::Append),
        3 => Just(Op::Commit),
        1 => any::<bool>().prop_map(|keep_unsynced| Op::Crash { keep_unsynced }),
        1 => (1usize..80).prop_map(Op::Tear),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Against a Vec model: what was committed is always read back, in
    /// order; a crash loses only what was not committed; tearing bytes off
    /// the end loses only the records those bytes held.
    #[test]
    fn log_matches_a_vec_model(
        ops in proptest::collection::vec(op(), 1..60),
        write_ahead_bytes in prop_oneof![Just(0usize), 1usize..400],
    ) {
        let cfg = LogConfig { segment_bytes: 700, write_ahead_bytes, ..LogConfig::default() };
        let mut storage = MemStorage::new();
        let (mut log, _) = Log::open(storage.clone(), cfg).unwrap();
        let mut committed: Vec<Vec<u8>> = Vec::new();
        let mut pending: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            match op {
                Op::Append(bytes) => {
                    log.append(Origin::default(), &bytes).unwrap();
                    pending.push(bytes);
                }
                Op::Commit => {
                    log.commit().unwrap();
                    committed.append(&mut pending);
                }
                Op::Crash { keep_unsynced } => {
                    drop(log);
                    storage = storage.crash_image(keep_unsynced);
                    let (l, r) = Log::open(storage.clone(), cfg).unwrap();
                    prop_assert!(r.corrupt.is_empty());
                    log = l;
                    // Records written ahead but not committed may survive
                    // (a prefix of the uncommitted ones, in order).
                    let kept = log.next_index() as usize;
                    prop_assert!(kept >= committed.len(), "lost committed records");
                    prop_assert!(kept <= committed.len() + pending.len());
                    prop_assert!(keep_unsynced || kept == committed.len());
                    let survived = kept - committed.len();
                    committed.extend(pending.drain(..survived));
                    pending.clear();
                }
                Op::Tear(n) => {
                    log.commit().unwrap();
                    committed.append(&mut pending);
                    drop(log);
                    let mut names = storage.list().unwrap();
                    names.sort();
                    let last = names.last().unwrap().clone();
                    let mut bytes = storage.file(&last).unwrap();
                    let cut = n.min(bytes.len());
                    bytes.truncate(bytes.len() - cut);
                    storage.set_file(&last, bytes);
                    let (l, r) = Log::open(storage.clone(), cfg).unwrap();
                    prop_assert!(r.corrupt.is_empty());
                    log = l;
                    // The model loses the records that lost bytes.
                    committed.truncate(log.next_index() as usize);
                }
            }
            let entries = read_all(&log);
            prop_assert_eq!(entries.len(), committed.len());
            for (e, want) in entries.iter().zip(&committed) {
                prop_assert_eq!(&e.payload, want);
            }
        }
    }
}

fn scan_at_round_trip<S: Storage>(storage: S) {
    let cfg = LogConfig {
        segment_bytes: 2048,
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open(storage.clone(), cfg).unwrap();
    let indexes = |snap: &Snapshot, at: Position| {
        let mut out = Vec::new();
        let report = snap
            .scan_at(
                &storage,
                at,
                |_| true,
                |e| {
                    assert_eq!(e.payload, payload(e.index));
                    out.push(e.index);
                    true
                },
            )
            .unwrap();
        (out, report)
    };
    for i in 0..30 {
        log.append(origin(i), &payload(i)).unwrap();
    }
    log.commit().unwrap();
    let end = log.snapshot().end().unwrap();
    assert_eq!(end.index, 30);
    let segments_before = log.segment_count();
    // More records, across segment boundaries.
    for i in 30..90 {
        log.append(origin(i), &payload(i)).unwrap();
        log.commit().unwrap();
    }
    assert!(log.segment_count() > segments_before + 1);
    let snap = log.snapshot();
    let (got, report) = indexes(&snap, end);
    assert_eq!(got, (30..90).collect::<Vec<_>>());
    assert!(report.corrupt.is_empty());
    // Nothing new since the end: nothing read.
    let (got, report) = indexes(&snap, snap.end().unwrap());
    assert!(got.is_empty());
    assert_eq!(report.segments_read, 0);
    // A position of a segment retention removed: by its index.
    let gone = Position {
        segment: 999_999,
        offset: 0,
        index: 45,
    };
    assert_eq!(indexes(&snap, gone).0, (45..90).collect::<Vec<_>>());
}

#[test]
fn scan_at_an_earlier_end_reads_only_what_came_after() {
    scan_at_round_trip(MemStorage::new());
    let dir = tempfile::tempdir().unwrap();
    scan_at_round_trip(FileStorage::new(dir.path(), IoMode::Pwrite).unwrap());
}

#[test]
fn open_removes_orphan_summaries_and_temporary_files() {
    let storage = MemStorage::new();
    let (mut log, _) = Log::open(storage.clone(), config()).unwrap();
    for i in 0..40 {
        log.append(origin(i), &payload(i)).unwrap();
        log.commit().unwrap();
    }
    drop(log);
    storage.set_file("00000000000000999999.sum", vec![1, 2, 3]);
    storage.set_file(".00000000000000000000.sum.4242.tmp", vec![1]);
    let (log, recovery) = Log::open(storage.clone(), config()).unwrap();
    assert_eq!(recovery.records, 40);
    let names = storage.list().unwrap();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("999999") || n.ends_with(".tmp")),
        "{names:?}"
    );
    let sums = names.iter().filter(|n| n.ends_with(".sum")).count();
    assert_eq!(
        sums,
        log.segment_count() - 1,
        "one per sealed segment: {names:?}"
    );
}
