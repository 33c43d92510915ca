//! Wake-up stress: a consumer that sleeps whenever the ring is empty and a
//! producer that keeps emptying it, 10 million records. A lost wake-up hangs
//! the consumer; the watchdog turns a hang into a failure.

use std::time::Duration;

use odock_dataplane::ring::{Backing, Geometry, ReserveError, Ring};
use odock_suite::watchdog;

const RECORDS: u64 = 10_000_000;

#[test]
fn ten_million_records_to_a_sleeping_consumer_without_a_lost_wake_up() {
    watchdog(Duration::from_secs(300), || {
        // Mapped memory: the futex is the shared (non-private) one.
        let ring = Ring::create(
            Geometry::new(1, 64 * 1024).unwrap(),
            Backing::Memfd("odock-wakeup"),
        )
        .unwrap();
        let producer = ring.producer().unwrap();
        let mut consumer = ring.consumer().unwrap();
        let t = std::thread::spawn(move || {
            for seq in 0..RECORDS {
                loop {
                    match producer.reserve(8) {
                        Ok(mut r) => {
                            r.copy_from_slice(&seq.to_le_bytes());
                            r.commit();
                            break;
                        }
                        Err(ReserveError::Full { .. }) => std::hint::spin_loop(),
                        Err(e) => panic!("{e}"),
                    }
                }
                // Pause now and then so the consumer catches up and sleeps.
                if seq % 1024 == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let (mut next, mut sleeps) = (0u64, 0u64);
        while next < RECORDS {
            let got = consumer
                .drain(|r| {
                    assert_eq!(u64::from_le_bytes((*r).try_into().unwrap()), next);
                    next += 1;
                })
                .unwrap();
            if got == 0 {
                // No timeout: only a producer's wake-up ends this sleep.
                consumer.wait(None).unwrap();
                sleeps += 1;
            }
        }
        t.join().unwrap();
        eprintln!("{RECORDS} records, {sleeps} sleeps");
        assert!(
            sleeps > 0,
            "the consumer never slept: the test did not test wake-ups"
        );
    });
}

/// Quiet commits in bursts of 7 with one `notify` per burst (and before
/// spinning on a full lane), to a consumer that sleeps whenever the ring is
/// empty: a burst whose notify misses the sleeper hangs the consumer.
#[test]
fn ten_million_quiet_records_notified_per_burst_without_a_lost_wake_up() {
    watchdog(Duration::from_secs(300), || {
        let ring = Ring::create(
            Geometry::new(1, 64 * 1024).unwrap(),
            Backing::Memfd("odock-wakeup-quiet"),
        )
        .unwrap();
        let producer = ring.producer().unwrap();
        let mut consumer = ring.consumer().unwrap();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            for seq in 0..RECORDS {
                loop {
                    match producer.reserve(8) {
                        Ok(mut r) => {
                            r.copy_from_slice(&seq.to_le_bytes());
                            r.commit_quiet();
                            break;
                        }
                        Err(ReserveError::Full { .. }) => {
                            producer.notify();
                            std::hint::spin_loop();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                if seq % 7 == 6 || seq + 1 == RECORDS {
                    producer.notify();
                }
                if seq % 1024 == 0 {
                    std::thread::yield_now();
                }
            }
            // Hold the lane until the consumer is through: dropping the
            // producer notifies, and must not be what rescues a lost wake-up.
            finished.recv().unwrap();
        });
        let (mut next, mut sleeps) = (0u64, 0u64);
        while next < RECORDS {
            let got = consumer
                .drain(|r| {
                    assert_eq!(u64::from_le_bytes((*r).try_into().unwrap()), next);
                    next += 1;
                })
                .unwrap();
            if got == 0 {
                consumer.wait(None).unwrap();
                sleeps += 1;
            }
        }
        done.send(()).unwrap();
        t.join().unwrap();
        eprintln!("{RECORDS} quiet records, {sleeps} sleeps");
        assert!(
            sleeps > 0,
            "the consumer never slept: the test did not test wake-ups"
        );
    });
}

/// A consumer whose `wait` polls 2 µs before it sleeps: records land while
/// it polls, while it announces the sleep, and while it sleeps.
#[test]
fn an_adaptive_wait_loses_no_wake_up() {
    watchdog(Duration::from_secs(300), || {
        let ring = Ring::create(
            Geometry::new(1, 64 * 1024).unwrap(),
            Backing::Memfd("odock-wakeup-adaptive"),
        )
        .unwrap();
        let producer = ring.producer().unwrap();
        let mut consumer = ring.consumer().unwrap();
        consumer.set_wait_spin(Duration::from_micros(2));
        let count = RECORDS / 5;
        let t = std::thread::spawn(move || {
            for seq in 0..count {
                loop {
                    match producer.reserve(8) {
                        Ok(mut r) => {
                            r.copy_from_slice(&seq.to_le_bytes());
                            r.commit();
                            break;
                        }
                        Err(ReserveError::Full { .. }) => std::hint::spin_loop(),
                        Err(e) => panic!("{e}"),
                    }
                }
                // Gaps shorter and longer than the spin.
                match seq % 1024 {
                    0 => std::thread::yield_now(),
                    512 => std::thread::sleep(Duration::from_micros(20)),
                    _ => {}
                }
            }
            producer
        });
        let (mut next, mut waits) = (0u64, 0u64);
        while next < count {
            let got = consumer
                .drain(|r| {
                    assert_eq!(u64::from_le_bytes((*r).try_into().unwrap()), next);
                    next += 1;
                })
                .unwrap();
            if got == 0 {
                consumer.wait(None).unwrap();
                waits += 1;
            }
        }
        drop(t.join().unwrap());
        eprintln!("{count} records, {waits} waits");
        assert!(waits > 0, "the consumer never waited");
    });
}
