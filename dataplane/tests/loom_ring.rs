//! Loom models of the ring protocol: positions, busy bits, lane reuse and the
//! sleep/wake handshake, run on the production code over loom's atomics.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p odock-dataplane --release
//! --test loom_ring` (scripts/test.sh does). A missing Acquire/Release pair
//! shows up as a data race on a payload granule; a missing StoreLoad fence as
//! a deadlock (the consumer asleep, the producer done).
#![cfg(loom)]

use loom::thread;
use odock_dataplane::ring::{Geometry, ReserveError, Ring, WaitOutcome};

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
