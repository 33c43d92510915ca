//! The gate API under criterion: an inline chain of 4 no-op plugins against
//! a direct call of the same 4 functions; a submitted round trip to a
//! pinned worker (busy-polling, and sleeping) against the atomic ping-pong
//! floor and a Unix socket pair; 1 against 2 workers.
//!
//! The workloads are `odock_tools::bench::gate`'s, the ones `odock-bench
//! gate` runs (see there and `docs/BENCHMARKS.md`); the plugin is the C
//! probe with an empty config, built with the system C compiler.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use odock_tools::bench::Cpus;
use odock_tools::bench::gate::{self as work, ANSWER_BYTES, Mode};
use odock_tools::bench::ring as ring_work;

fn gate(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gate-bench");
    let plugin = work::build_probe(&dir).expect("the probe plugin builds (needs cc)");
    let chain4 = work::noop_runtime(&plugin, 4).expect("the chain installs");
    let empty = work::noop_runtime(&plugin, 0).expect("the empty policy installs");
    let cpus = Cpus::two();
    let bytes = work::submission_bytes();
    // Each workload reports its own wall time for `iters` frames; setup
    // (threads, pools) stays outside it.
    let total = |l: odock_tools::bench::Latency| l.elapsed();

    let mut group = c.benchmark_group("gate/inline");
    group.bench_function("chain_4_noop", |b| {
        b.iter_custom(|iters| total(work::inline_chain(&chain4, iters as usize, cpus.a).unwrap()))
    });
    group.bench_function("direct_4_fn", |b| {
        b.iter_custom(|iters| total(work::direct_chain(4, iters as usize, cpus.a).unwrap()))
    });
    group.bench_function("chain_0", |b| {
        b.iter_custom(|iters| total(work::inline_chain(&empty, iters as usize, cpus.a).unwrap()))
    });
    group.bench_function("abi_4_calls", |b| {
        b.iter_custom(|iters| total(work::abi_calls(&plugin, 4, iters as usize, cpus.a).unwrap()))
    });
    group.finish();

    let mut group = c.benchmark_group("gate/round_trip");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("submitted_busy", |b| {
        b.iter_custom(|iters| {
            total(work::submitted_round_trip(&empty, iters as usize, cpus, Mode::Busy).unwrap())
        })
    });
    group.bench_function("atomic_ping_pong", |b| {
        b.iter_custom(|iters| total(ring_work::round_trip_atomics(iters as usize, cpus).unwrap()))
    });
    group.sample_size(10);
    group.bench_function("submitted_sleeping_worker", |b| {
        b.iter_custom(|iters| {
            total(
                work::submitted_round_trip(&empty, iters as usize, cpus, Mode::SleepingWorker)
                    .unwrap(),
            )
        })
    });
    group.bench_function("submitted_sleeping", |b| {
        b.iter_custom(|iters| {
            total(work::submitted_round_trip(&empty, iters as usize, cpus, Mode::Sleeping).unwrap())
        })
    });
    group.bench_function("unix_seqpacket", |b| {
        b.iter_custom(|iters| {
            total(work::socket_round_trip(iters as usize, cpus, bytes, ANSWER_BYTES).unwrap())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("gate/workers");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    for (name, cores) in [("1", vec![cpus.b]), ("2", vec![cpus.a, cpus.b])] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per = (iters / cores.len() as u64).max(1);
                let t = work::workers_throughput(&chain4, &cores, per, 64).unwrap();
                // Time per frame over all workers, scaled back to `iters`.
                t.elapsed.mul_f64(iters as f64 / t.records as f64)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, gate);
criterion_main!(benches);
