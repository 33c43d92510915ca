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
