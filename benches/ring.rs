//! Criterion benches of the ring's core cases, at a smaller scale than
//! `odock-bench ring` (which prints the figures against their targets; see
//! `docs/BENCHMARKS.md`). The workloads are the same code, from
//! `odock_tools::bench`.
//!
//! `cargo bench --bench ring`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use odock_dataplane::ring::{Geometry, Ring};
use odock_tools::bench::ring::{self as work, Load, Waiting};
use odock_tools::bench::{Cpus, Touch, payload};

/// SPSC, 64-byte records, producer and consumer on two cores; the baseline
/// is `crossbeam_channel::bounded` carrying a fresh `Vec<u8>` per record.
fn spsc(c: &mut Criterion) {
    let cpus = Cpus::two();
    let ring = work::heap_ring(1).expect("ring");
    let mut g = c.benchmark_group("spsc_64");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ring", |b| {
        b.iter_custom(|n| {
            work::ring_throughput(&ring, &[cpus.a], cpus.b, &Load::new(64, n))
                .expect("ring run")
                .elapsed
        });
    });
    g.bench_function("crossbeam_vec", |b| {
        b.iter_custom(|n| {
            work::crossbeam_throughput(64, n, 4096, cpus, Touch::First8)
                .expect("crossbeam run")
                .elapsed
        });
    });
    g.finish();
}

/// What a record costs one thread that both writes and reads it: reserve,
/// write 64 bytes, commit, drain, in batches of 1 and of 16.
fn single_thread(c: &mut Criterion) {
    let ring = Ring::heap(Geometry::new(1, 1 << 16).expect("geometry"));
    let producer = ring.producer().expect("producer");
    let mut consumer = ring.consumer().expect("consumer");
    let src = payload(64);
    let mut g = c.benchmark_group("reserve_commit_drain_64");
    for batch in [1u64, 16] {
        g.throughput(Throughput::Elements(batch));
        g.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| {
                for _ in 0..batch {
                    let mut r = producer.reserve(64).expect("room");
                    r.copy_from_slice(black_box(&src));
                    r.commit();
                }
                let mut sum = 0u64;
                let n = consumer
                    .drain(|rec| sum = sum.wrapping_add(u64::from(rec[0])))
                    .expect("drain");
                assert_eq!(n as u64, batch);
                black_box(sum)
            });
        });
    }
    g.finish();
}

/// A 64-byte frame out and an answer back through two rings, busy-polling,
/// against the floor: two atomics ping-ponged between the same two cores.
fn round_trip(c: &mut Criterion) {
    let cpus = Cpus::two();
    let mut g = c.benchmark_group("round_trip");
    g.bench_function("ring_busy", |b| {
        b.iter_custom(|n| {
            work::round_trip_ring(n as usize, cpus, Waiting::Spin)
                .expect("ring round trips")
                .elapsed()
        });
    });
    g.bench_function("atomic_ping_pong", |b| {
        b.iter_custom(|n| {
            work::round_trip_atomics(n as usize, cpus)
                .expect("ping-pong")
                .elapsed()
        });
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = spsc, single_thread, round_trip
}
criterion_main!(benches);
