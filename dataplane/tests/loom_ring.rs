//! Loom models of the ring protocol: positions, busy bits, lane reuse and the
//! sleep/wake handshake, run on the production code over loom's atomics.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p odock-dataplane --release
//! --test loom_ring` (scripts/test.sh does). A missing Acquire/Release pair
//! shows up as a data race on a payload granule; a missing StoreLoad fence as
//! a deadlock (the consumer asleep, the producer done).
#![cfg(loom)]

use loom::thread;
use odock_dataplane::ring::{Geometry, PollBackoff, ReserveError, Ring, WaitOutcome};

/// Pushes `payload`, yielding while the lane is full.
fn push(p: &odock_dataplane::ring::Producer, payload: &[u8]) {
    loop {
        match p.reserve(payload.len()) {
            Ok(mut r) => {
                r.copy_from_slice(payload);
                r.commit();
                return;
            }
            Err(ReserveError::Full { .. }) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// Three 24-byte records through a 64-byte lane: the third reuses the space
/// of the first, so the producer's Acquire of consumer_pos must order the
/// consumer's reads before its writes, and the consumer's Acquire of the
/// header must order the producer's writes before its reads.
#[test]
fn spsc_records_arrive_whole_across_space_reuse() {
    model(|| {
        let ring = Ring::heap(Geometry::new(1, 64).unwrap());
        let p = ring.producer().unwrap();
        let mut c = ring.consumer().unwrap();
        let t = thread::spawn(move || {
            for i in 1..=3u8 {
                push(&p, &[i; 24]);
            }
        });
        let mut next = 1u8;
        while next <= 3 {
            let n = c
                .drain(|r| {
                    assert_eq!(&*r, &[next; 24][..]);
                    next += 1;
                })
                .unwrap();
            if n == 0 {
                thread::yield_now();
            }
        }
        t.join().unwrap();
    });
}

/// The consumer sleeps; the producer must wake it. Without the fences of
/// protocol steps 5 and W2 this deadlocks.
#[test]
fn a_sleeping_consumer_is_always_woken() {
    model(|| {
        let ring = Ring::heap(Geometry::new(1, 64).unwrap());
        let p = ring.producer().unwrap();
        let mut c = ring.consumer().unwrap();
        let t = thread::spawn(move || {
            push(&p, b"one");
            push(&p, b"two");
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            if c.drain(|r| got.push(r.to_vec())).unwrap() == 0 {
                assert_eq!(c.wait(None).unwrap(), WaitOutcome::Ready);
            }
        }
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        t.join().unwrap();
    });
}

/// Two producers on two lanes and a sleeping consumer.
#[test]
fn two_producers_and_a_sleeping_consumer() {
    model(|| {
        let ring = Ring::heap(Geometry::new(2, 64).unwrap());
        let a = ring.producer().unwrap();
        let b = ring.producer().unwrap();
        let mut c = ring.consumer().unwrap();
        let ta = thread::spawn(move || push(&a, b"a"));
        let tb = thread::spawn(move || push(&b, b"b"));
        let mut got = Vec::new();
        while got.len() < 2 {
            if c.drain(|r| got.push(r.to_vec())).unwrap() == 0 {
                c.wait(None).unwrap();
            }
        }
        got.sort();
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);
        ta.join().unwrap();
        tb.join().unwrap();
    });
}

/// Out-of-order commits: the consumer sees nothing past a BUSY record, then
/// both in reservation order; a discard in between is skipped.
#[test]
fn commits_out_of_order_are_seen_in_reservation_order() {
    model(|| {
        let ring = Ring::heap(Geometry::new(1, 64).unwrap());
        let p = ring.producer().unwrap();
        let mut c = ring.consumer().unwrap();
        let t = thread::spawn(move || {
            let mut first = p.reserve(1).unwrap();
            let gone = p.reserve(1).unwrap();
            let mut second = p.reserve(1).unwrap();
            second[0] = 2;
            second.commit();
            gone.discard();
            first[0] = 1;
            first.commit();
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            if c.drain(|r| got.push(r[0])).unwrap() == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(got, vec![1, 2]);
        t.join().unwrap();
    });
}

/// Quiet commits skip the wake-up check; one notify after the burst must
/// wake a consumer that went to sleep at any point of it. Without the fence
/// in `notify` this deadlocks.
#[test]
fn quiet_commits_then_notify_wake_a_sleeping_consumer() {
    model(|| {
        let ring = Ring::heap(Geometry::new(1, 64).unwrap());
        let p = ring.producer().unwrap();
        let mut c = ring.consumer().unwrap();
        let t = thread::spawn(move || {
            for payload in [b"one", b"two"] {
                let mut r = p.reserve(3).unwrap();
                r.copy_from_slice(payload);
                r.commit_quiet();
            }
            p.notify();
            // Hold the lane: the producer's drop must not be what wakes.
            p
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            if c.drain(|r| got.push(r.to_vec())).unwrap() == 0 {
                assert_eq!(c.wait(None).unwrap(), WaitOutcome::Ready);
            }
        }
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        drop(t.join().unwrap());
    });
}

/// A consumer that polls before it sleeps (an adaptive wait): a record
/// committed while it polls, or after it announced the sleep, ends the
/// wait; none is missed between the two phases.
#[test]
fn an_adaptive_wait_is_always_woken() {
    model(|| {
        let ring = Ring::heap(Geometry::new(1, 64).unwrap());
        let p = ring.producer().unwrap();
        let mut c = ring.consumer().unwrap();
        c.set_wait_spin(std::time::Duration::from_secs(1));
        let t = thread::spawn(move || {
            push(&p, b"one");
            push(&p, b"two");
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            if c.drain(|r| got.push(r.to_vec())).unwrap() == 0 {
                assert_eq!(c.wait(None).unwrap(), WaitOutcome::Ready);
            }
        }
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        t.join().unwrap();
    });
}

/// `poll` with a backoff pauses (under loom: yields) after a batch that
/// ended at a BUSY record or found nothing, and never loses a record.
#[test]
fn polling_with_a_backoff_delivers_every_record() {
    model(|| {
        let ring = Ring::heap(Geometry::new(1, 64).unwrap());
        let p = ring.producer().unwrap();
        let mut c = ring.consumer().unwrap();
        let pause = std::time::Duration::from_micros(1);
        c.set_poll_backoff(PollBackoff {
            busy: pause,
            empty: pause,
        });
        let t = thread::spawn(move || {
            for i in 1..=3u8 {
                loop {
                    match p.reserve(20) {
                        Ok(mut r) => {
                            r.fill(i);
                            r.commit_quiet();
                            break;
                        }
                        Err(ReserveError::Full { .. }) => {
                            p.notify();
                            thread::yield_now();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        let mut next = 1u8;
        while next <= 3 {
            c.poll(|r| {
                assert_eq!(&*r, &[next; 20][..]);
                next += 1;
            })
            .unwrap();
        }
        t.join().unwrap();
    });
}
