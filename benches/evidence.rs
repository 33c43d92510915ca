//! Writing one 256-byte evidence decision record into a ring, against
//! rendering the same record as JSON into a reused `Vec`.
//!
//! Cases, all on one thread:
//! - `ring_write`: `EvidenceWriter::write`: read the clock, compute the
//!   length, reserve ring memory, encode in place, commit. A consumer
//!   releases the ring between timed batches (untimed).
//! - `encode_vec`: `encode` alone into a reused buffer (no ring, no clock).
//! - `json_vec` (the baseline): `serde_json::to_writer` of the same
//!   stamped record into a reused, cleared `Vec<u8>`: what writing JSON
//!   lines costs before any I/O.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use odock_dataplane::evidence::{
    Evidence, EvidenceRecord, EvidenceWriter, Gate, Kind, MAJOR, MINOR, Names, Scope, Stamp,
    Verdict, Version, encode, encoded_len,
};
use odock_dataplane::ring::{Geometry, Ring};

const CHANGED: [&str; 2] = ["messages[3].content", "metadata.billing_tag"];

/// A decision record of exactly 256 bytes encoded.
fn record(reason: &str) -> Evidence<'_> {
    Evidence {
        gate: Gate::Request,
        verdict: Verdict::Block,
        status: 403,
        plugin_id: 12,
        duration_ns: 1_840,
        request_id: "req_01J9Z3K4M5N6P7Q8R9S0T1",
        plugin: "tenant-model-guard",
        scope: Scope {
            tenant: "acme-corp",
            virtual_key: "vk_live_42",
            environment: "prod",
            model: "gpt-4o-mini",
            ..Scope::NONE
        },
        reason,
        detail: "rule 17: model not in tenant allow-list",
        changed: Names::new(&CHANGED),
        ..Evidence::new(Kind::Decision)
    }
}

fn reason_for_256() -> String {
    let base = encoded_len(&record(""));
    assert!(base < 256, "the fixed part is {base} bytes");
    "m".repeat(256 - base)
}

fn evidence(c: &mut Criterion) {
    let reason = reason_for_256();
    let rec = record(&reason);
    assert_eq!(encoded_len(&rec), 256);
    let mut g = c.benchmark_group("evidence");
    g.throughput(Throughput::Elements(1));

    g.bench_function("ring_write", |b| {
        let ring = Ring::heap(Geometry::new(1, 1 << 20).unwrap());
        let mut consumer = ring.consumer().unwrap();
        let mut writer = EvidenceWriter::new(ring.producer().unwrap(), 0);
        // 1 MiB holds 3,971 records of 264 bytes: batches of 2,048 never
        // overflow once the consumer has released the last one.
        const BATCH: u64 = 2048;
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                let start = Instant::now();
                for _ in 0..n {
                    let _ = black_box(writer.write(black_box(&rec)));
                }
                spent += start.elapsed();
                left -= n;
                while consumer.drain(|r| _ = black_box(r.len())).unwrap() > 0 {}
            }
            assert_eq!(writer.counters().dropped, 0, "the bench overflowed");
            spent
        });
    });

    let stamp = Stamp {
        sequence: 1_000_000,
        timestamp_ns: 1_767_225_600_000_000_000,
        worker: 1,
    };
    g.bench_function("encode_vec", |b| {
        let mut buf = vec![0u8; 256];
        b.iter(|| encode(black_box(&stamp), black_box(&rec), &mut buf).unwrap());
    });

    g.bench_function("json_vec", |b| {
        let stamped = EvidenceRecord {
            version: Version {
                major: MAJOR,
                minor: MINOR,
            },
            stamp,
            evidence: rec,
        };
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            serde_json::to_writer(&mut out, black_box(&stamped)).unwrap();
            black_box(out.len())
        });
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = evidence
}
criterion_main!(benches);
