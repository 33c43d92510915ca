//! Every ring workload of `odock-bench`, at a tiny scale: each must deliver
//! and check all its records (a workload that loses one fails here, not in a
//! benchmark table). No test asserts a time.

use std::path::Path;
use std::time::Duration;

use odock_tools::bench::ring::{self as work, Idle, Load, Waiting};
use odock_tools::bench::{Cpus, Touch, memcpy_blocks};

#[test]
fn throughput_workloads_deliver_every_record() {
    let cpus = Cpus::two();
    let ring = work::heap_ring(2).expect("ring");
    for len in [8, 64, 4096] {
        for touch in [Touch::First8, Touch::All] {
            for idle in [Idle::Spin, Idle::Backoff(Duration::from_micros(1))] {
                let load = Load {
                    touch,
                    idle,
                    ..Load::new(len, 20_000)
                };
                let one = work::ring_throughput(&ring, &[cpus.a], cpus.b, &load).expect("spsc");
                assert_eq!(one.records, 20_000);
                let two =
                    work::ring_throughput(&ring, &[cpus.a, cpus.a], cpus.b, &load).expect("mpsc");
                assert_eq!(two.records, 40_000);
            }
            let cb = work::crossbeam_throughput(len, 5_000, 64, cpus, touch).expect("crossbeam");
            assert_eq!(cb.records, 5_000);
        }
    }
    let copied = memcpy_blocks(4096, 1_000, 1 << 20, cpus.a).expect("memcpy");
    assert_eq!(copied.bytes, 4096 * 1_000);
}

#[test]
fn round_trip_workloads_complete() {
    let cpus = Cpus::two();
    assert_eq!(
        work::round_trip_ring(2_000, cpus, Waiting::Spin)
            .expect("busy")
            .count(),
        2_000
    );
    assert_eq!(
        work::round_trip_ring(500, cpus, Waiting::Sleep)
            .expect("sleeping")
            .count(),
        500
    );
    assert_eq!(
        work::round_trip_atomics(2_000, cpus)
            .expect("floor")
            .count(),
        2_000
    );
    assert_eq!(
        work::round_trip_futex(500, cpus).expect("futex").count(),
        500
    );
    assert_eq!(
        work::round_trip_socketpair(500, cpus)
            .expect("socket pair")
            .count(),
        500
    );
}

#[test]
fn cross_process_workloads_deliver_every_record() {
    let exe = Path::new(env!("CARGO_BIN_EXE_odock-bench"));
    let cpus = Cpus::two();
    for len in [64, 1024] {
        let ring = work::cross_process_ring(exe, len, 50_000, cpus).expect("ring");
        assert!(ring.records > 0 && ring.records < 50_000);
        let socket = work::cross_process_socket(exe, len, 5_000, cpus).expect("socket");
        assert_eq!(socket.records, 4_999);
    }
}
