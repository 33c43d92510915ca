//! Evidence queries skip segments by their summaries: with many segments,
//! a narrow time-range or request-id query opens only the segments that
//! can match (counted by the storage itself), and answers exactly what a
//! full scan answers; after a restart the summaries are loaded (sealed) or
//! rebuilt (open) and do the same.

mod control_support;

use std::collections::BTreeSet;

use odock_control::log::{Log, LogConfig, MemStorage, Origin, Snapshot, Storage, Summarizer};
use odock_control::query::{Filter, render, run};
use odock_dataplane::evidence::{self, Evidence, Gate, Kind, Scope, Stamp, Verdict};

/// Runs a child role when this binary is re-executed as one (the daemon
/// test's control and dataplane).
#[test]
fn role_child() {
    control_support::maybe_run_role();
}

const T0: u64 = 1_700_000_000_000_000_000;
const N: u64 = 3_000;

fn payload(i: u64) -> Vec<u8> {
    let request_id = format!("req-{i}");
    let plugin = format!("p{}", i % 5);
    let e = Evidence {
        request_id: &request_id,
        plugin: &plugin,
        gate: if i.is_multiple_of(2) {
            Gate::Request
        } else {
            Gate::Response
        },
        verdict: if i.is_multiple_of(7) {
            Verdict::Block
        } else {
            Verdict::Continue
        },
        scope: Scope {
            tenant: if i.is_multiple_of(3) { "acme" } else { "beta" },
            ..Scope::default()
        },
        ..Evidence::new(Kind::Decision)
    };
    let stamp = Stamp {
        sequence: i,
        timestamp_ns: T0 + i * 1_000,
        worker: 0,
    };
    let mut buf = vec![0; evidence::encoded_len(&e)];
    evidence::encode(&stamp, &e, &mut buf).unwrap();
    buf
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    }
}

/// The log of `N` records (and one undecodable), with a few more so the
/// open segment is not empty; returns it and how many records it holds.
fn fill(storage: &MemStorage) -> (Log<MemStorage>, u64) {
    let (mut log, _) = Log::open(storage.clone(), config()).unwrap();
    for i in 0..N {
        if i == 1234 {
            // One record that is not evidence: answered (as undecodable)
            // by queries without a content filter, whatever their time.
            log.append(Origin::default(), b"not an evidence record")
                .unwrap();
        }
        log.append(Origin::default(), &payload(i)).unwrap();
        if i % 10 == 9 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    let mut i = N;
    while log.snapshot().segments().last().unwrap().len == 0 {
        log.append(Origin::default(), &payload(i)).unwrap();
        log.commit().unwrap();
        i += 1;
    }
    (log, i + 1)
}

/// What a full scan (no segment skipped) answers.
fn full_scan(snapshot: &Snapshot, storage: &MemStorage, filter: &Filter) -> Vec<String> {
    let mut out = Vec::new();
    snapshot
        .scan(storage, 0, |e| {
            out.extend(render(&e, filter));
            true
        })
        .unwrap();
    out
}

/// Runs `filter`; returns its lines, the matched log indexes, and how many
/// segments it read (the report, checked against the storage's count).
fn query(
    snapshot: &Snapshot,
    storage: &MemStorage,
    filter: &Filter,
) -> (Vec<String>, Vec<u64>, u64) {
    let before = storage.segment_reads();
    let mut lines = Vec::new();
    let mut indexes = Vec::new();
    let report = run(snapshot, storage, 0, filter, |i, line| {
        lines.push(line);
        indexes.push(i);
        true
    })
    .unwrap();
    let opened = storage.segment_reads() - before;
    assert_eq!(opened, report.segments_read, "the report counts every open");
    assert_eq!(
        report.segments_read + report.segments_skipped,
        snapshot.segments().len() as u64
    );
    (lines, indexes, opened)
}

/// The segments holding `indexes`.
fn segments_of(snapshot: &Snapshot, indexes: &[u64]) -> BTreeSet<usize> {
    let segs = snapshot.segments();
    indexes
        .iter()
        .map(|&i| segs.iter().rposition(|s| s.first <= i).unwrap())
        .collect()
}

fn parse(q: &str) -> Filter {
    Filter::parse(q).unwrap()
}

fn check_queries(snapshot: &Snapshot, storage: &MemStorage, records: u64) {
    let segs = snapshot.segments().len();
    assert!(segs > 50, "many segments: {segs}");
    let open = segs - 1;

    // A narrow time range: only the segments holding it.
    let f = parse(&format!(
        "since_ns={}&until_ns={}",
        T0 + 2_000 * 1_000,
        T0 + 2_040 * 1_000
    ));
    let (lines, indexes, opened) = query(snapshot, storage, &f);
    assert_eq!(lines, full_scan(snapshot, storage, &f));
    assert_eq!(lines.len(), 41, "40 in the range, and the undecodable one");
    assert!(lines.iter().filter(|l| l.contains("undecodable")).count() == 1);
    // The segments holding the range and the one holding the undecodable
    // record (a query without a content filter answers it whatever the
    // time): those only.
    let holding = segments_of(snapshot, &indexes);
    assert!(holding.len() <= 4, "{holding:?}");
    assert_eq!(
        opened as usize,
        holding.len(),
        "segments opened for a 40-record time range out of {segs}"
    );

    // The same range with a content filter: the undecodable segment is
    // skipped too.
    let f = parse(&format!(
        "since_ns={}&until_ns={}&kind=decision",
        T0 + 2_000 * 1_000,
        T0 + 2_040 * 1_000
    ));
    let (lines, indexes, opened) = query(snapshot, storage, &f);
    assert_eq!(lines, full_scan(snapshot, storage, &f));
    assert_eq!(opened as usize, segments_of(snapshot, &indexes).len());

    // One request id: only the segment holding it (the open segment's
    // summary has a key filter too).
    let f = parse("request_id=req-2222");
    let (lines, indexes, opened) = query(snapshot, storage, &f);
    assert_eq!(lines, full_scan(snapshot, storage, &f));
    assert_eq!(lines.len(), 1);
    assert!(snapshot.segments()[open].len > 0);
    assert_eq!(
        opened as usize,
        segments_of(snapshot, &indexes).len(),
        "request id query"
    );
    // A request id in the open segment: that one only.
    let last = format!("request_id=req-{}", records - 2);
    let f = parse(&last);
    let (lines, indexes, opened) = query(snapshot, storage, &f);
    assert_eq!(lines, full_scan(snapshot, storage, &f));
    assert_eq!(lines.len(), 1, "{last}");
    assert_eq!(
        segments_of(snapshot, &indexes)
            .into_iter()
            .collect::<Vec<_>>(),
        [open]
    );
    assert_eq!(opened, 1, "{last}");

    // Other filters answer what a full scan answers.
    for q in [
        "",
        "tenant=acme",
        "plugin=p3&verdict=block",
        "gate=response&tenant=beta",
        "kind=control_change",
        "request_id=nobody",
        "since_ns=0&until_ns=1",
        &format!("since_ns={}", T0 + (N - 5) * 1_000),
    ] {
        let f = parse(q);
        let (lines, _, opened) = query(snapshot, storage, &f);
        assert_eq!(lines, full_scan(snapshot, storage, &f), "{q}");
        if q == "request_id=nobody" || q == "kind=control_change" {
            assert_eq!(opened, 0, "{q}: {opened} of {segs} segments opened");
        }
    }
}

#[test]
fn narrow_queries_open_only_matching_segments_and_equal_a_full_scan() {
    let storage = MemStorage::new();
    let (log, records) = fill(&storage);
    let log = std::sync::Mutex::new(log);
    // Before any summary: every segment is read, answers the same.
    let snapshot = log.lock().unwrap().snapshot();
    let f = parse("request_id=req-2222");
    let (lines, _, opened) = query(&snapshot, &storage, &f);
    assert_eq!(lines, full_scan(&snapshot, &storage, &f));
    let committed = snapshot.segments().iter().filter(|s| s.len > 0).count();
    assert_eq!(opened as usize, committed, "every segment with records");

    let mut summarizer = Summarizer::new();
    let sealed = summarizer.tick(&log).unwrap();
    assert_eq!(sealed, snapshot.segments().len() - 1);
    assert_eq!(summarizer.tick(&log).unwrap(), 0, "nothing left to do");
    let names = storage.list().unwrap();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".sum")).count(),
        sealed,
        "a summary file per sealed segment"
    );
    let snapshot = log.lock().unwrap().snapshot();
    check_queries(&snapshot, &storage, records);

    // Restart: sealed summaries loaded from their files, the open
    // segment's rebuilt by recovery; no summarizer has run.
    drop(log);
    let (log, recovery) = Log::open(storage.clone(), config()).unwrap();
    assert_eq!(recovery.records, records);
    check_queries(&log.snapshot(), &storage, records);
}

#[test]
fn a_stale_or_torn_summary_file_is_rebuilt_at_recovery() {
    let storage = MemStorage::new();
    let (log, records) = fill(&storage);
    let log = std::sync::Mutex::new(log);
    Summarizer::new().tick(&log).unwrap();
    drop(log);
    // Corrupt one summary and replace another with a wrong one.
    let mut sums: Vec<String> = storage
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".sum"))
        .collect();
    sums.sort();
    let mut torn = storage.file(&sums[3]).unwrap();
    torn[20] ^= 0xff;
    storage.set_file(&sums[3], torn);
    let other = storage.file(&sums[10]).unwrap();
    storage.set_file(&sums[40], other);
    let (log, _) = Log::open(storage.clone(), config()).unwrap();
    check_queries(&log.snapshot(), &storage, records);
}

mod daemon {
    //! The same through a real control process: its maintenance thread
    //! builds the summaries, and `GET /v1/status` counts what queries did.

    use std::time::{Duration, Instant};

    use super::control_support::Setup;
    use odock_suite::watchdog;
    use serde_json::Value;

    fn lines(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_narrow_time_range_through_control_reads_few_of_many_segments() {
        if std::env::var("ODOCK_TEST_ROLE").is_ok() {
            return;
        }
        watchdog(Duration::from_secs(240), || {
            let s = Setup::new();
            let _control = s.control(None);
            let c = s.client();
            let mut dp = s.dataplane(Some(20_000));
            dp.wait_line("done", Duration::from_secs(120));
            let _ = dp.child.wait();
            let deadline = Instant::now() + Duration::from_secs(60);
            let all = loop {
                let all = c
                    .request("GET", "/v1/evidence?limit=18446744073709551615", None)
                    .unwrap()
                    .text();
                let all = lines(&all);
                if all.len() >= 20_000 {
                    break all;
                }
                assert!(Instant::now() < deadline, "{} drained", all.len());
                std::thread::sleep(Duration::from_millis(50));
            };
            let segments = c.request("GET", "/v1/status", None).unwrap().json()["log"]["segments"]
                .as_u64()
                .unwrap();
            assert!(segments > 20, "{segments} segments");
            let ts = |i: usize| all[i]["timestamp_ns"].as_u64().unwrap();
            let (since, until) = (ts(10_000), ts(10_050));
            let want: Vec<&Value> = all
                .iter()
                .filter(|v| {
                    let t = v["timestamp_ns"].as_u64().unwrap();
                    t >= since && t < until
                })
                .collect();
            assert!(want.len() >= 50);
            // The summaries are built every 100 ms: ask until the query
            // opens few segments (a hang fails; nothing is timed).
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let before =
                    c.request("GET", "/v1/status", None).unwrap().json()["queries"].clone();
                let got = c
                    .request(
                        "GET",
                        &format!("/v1/evidence?since_ns={since}&until_ns={until}&limit=100000"),
                        None,
                    )
                    .unwrap()
                    .text();
                let after = c.request("GET", "/v1/status", None).unwrap().json()["queries"].clone();
                let got = lines(&got);
                assert_eq!(got.iter().collect::<Vec<_>>(), want, "same as a full scan");
                let read = after["segments_read"].as_u64().unwrap()
                    - before["segments_read"].as_u64().unwrap();
                let skipped = after["segments_skipped"].as_u64().unwrap()
                    - before["segments_skipped"].as_u64().unwrap();
                assert_eq!(read + skipped, segments, "every segment read or skipped");
                if read <= 3 {
                    eprintln!(
                        "a {}-record time range: {read} of {segments} segments read",
                        want.len()
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "still {read} of {segments} segments read"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }
}
