//! Unit tests of the ring protocol over heap memory (miri runs these), and a
//! property test against a `VecDeque` model.
#![cfg(not(loom))]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::layout::{BUSY, Header, tag};
use super::*;
use crate::sync::Ordering;

fn ring(lanes: u32, size: u64) -> Arc<Ring> {
    Ring::heap(Geometry::new(lanes, size).unwrap())
}

fn drain_all<M: RingMemory>(consumer: &mut Consumer<M>) -> Result<Vec<Vec<u8>>, CorruptRing> {
    let mut out = Vec::new();
    loop {
        let n = consumer.drain(|r| out.push(r.to_vec()))?;
        if n == 0 {
            return Ok(out);
        }
    }
}

#[test]
fn records_arrive_in_order_and_intact() {
    let ring = ring(1, 256);
    let p = ring.producer().unwrap();
    let mut c = ring.consumer().unwrap();
    for i in 0..200u8 {
        p.push(&vec![i; (i % 23) as usize]).unwrap();
        let got = drain_all(&mut c).unwrap();
        assert_eq!(got, vec![vec![i; (i % 23) as usize]]);
    }
}

#[test]
fn a_wrapping_record_is_one_contiguous_slice() {
    // 64-byte lane: a 40-byte record at position 48 wraps past the end.
    let ring = ring(1, 64);
    let p = ring.producer().unwrap();
    let mut c = ring.consumer().unwrap();
    p.push(&[1; 40]).unwrap(); // positions 0..48
    assert_eq!(drain_all(&mut c).unwrap(), vec![vec![1; 40]]);
    let payload: Vec<u8> = (0..40).collect();
    p.push(&payload).unwrap(); // positions 48..96: wraps
    assert_eq!(drain_all(&mut c).unwrap(), vec![payload]);
}

#[test]
fn full_fails_at_once_and_counts_the_drop() {
    let ring = ring(1, 64);
    let p = ring.producer().unwrap();
    let mut c = ring.consumer().unwrap();
    p.push(&[7; 24]).unwrap(); // 32 bytes
    p.push(&[8; 24]).unwrap(); // 64 bytes: full
    assert_eq!(p.push(&[9; 0]), Err(ReserveError::Full { len: 0 }));
    assert_eq!(p.dropped(), 1);
    assert_eq!(ring.dropped(), 1);
    assert_eq!(drain_all(&mut c).unwrap().len(), 2);
    p.push(&[9; 56]).unwrap(); // the whole lane again
    assert_eq!(drain_all(&mut c).unwrap(), vec![vec![9; 56]]);
}

#[test]
fn too_large_names_the_limit() {
    let ring = ring(1, 64);
    let p = ring.producer().unwrap();
    assert_eq!(
        p.reserve(57).unwrap_err(),
        ReserveError::TooLarge { len: 57, max: 56 }
    );
    assert_eq!(p.dropped(), 0);
}

#[test]
fn visibility_follows_reservation_order_not_commit_order() {
    let ring = ring(1, 256);
    let p = ring.producer().unwrap();
    let mut c = ring.consumer().unwrap();
    let mut a = p.reserve(3).unwrap();
    let mut b = p.reserve(3).unwrap();
    let d = p.reserve(3).unwrap();
    b.copy_from_slice(b"bbb");
    b.commit();
    // `a` is still BUSY: nothing may be seen past it.
    assert!(drain_all(&mut c).unwrap().is_empty());
    a.copy_from_slice(b"aaa");
    a.commit();
    assert_eq!(
        drain_all(&mut c).unwrap(),
        vec![b"aaa".to_vec(), b"bbb".to_vec()]
    );
    d.discard();
    let mut e = p.reserve(1).unwrap();
    e[0] = b'e';
    drop(e); // dropping uncommitted discards
    p.push(b"f").unwrap();
    assert_eq!(drain_all(&mut c).unwrap(), vec![b"f".to_vec()]);
}

#[test]
fn a_batch_holds_space_until_dropped() {
    let ring = ring(1, 64);
    let p = ring.producer().unwrap();
    let mut c = ring.consumer().unwrap();
    p.push(&[1; 56]).unwrap();
    {
        let mut batch = c.batch();
        let r = batch.next().unwrap().unwrap();
        assert_eq!(&*r, &[1; 56][..]);
        // Read but not released: the producer must not overwrite it.
        assert_eq!(p.push(&[2; 8]), Err(ReserveError::Full { len: 8 }));
    }
    p.push(&[2; 8]).unwrap();
}

#[test]
fn a_consumer_resumes_where_the_last_one_released() {
    let ring = ring(1, 256);
    let p = ring.producer().unwrap();
    for i in 0..4u8 {
        p.push(&[i]).unwrap();
    }
    {
        let mut c = ring.consumer().unwrap();
        assert!(matches!(
            ring.consumer(),
            Err(ClaimError::ConsumerTaken { .. })
        ));
        let mut batch = c.batch();
        assert_eq!(&*batch.next().unwrap().unwrap(), &[0]);
        assert_eq!(&*batch.next().unwrap().unwrap(), &[1]);
    }
    let mut c = ring.consumer().unwrap();
    assert_eq!(drain_all(&mut c).unwrap(), vec![vec![2], vec![3]]);
}

#[test]
fn lanes_are_claimed_and_freed() {
    let ring = ring(2, 128);
    let a = ring.producer().unwrap();
    let b = ring.producer().unwrap();
    assert_ne!(a.lane(), b.lane());
    assert_eq!(
        ring.producer().unwrap_err(),
        ClaimError::NoFreeLane { lanes: 2 }
    );
    a.push(b"a1").unwrap();
    let lane = a.lane();
    drop(a);
    // The next producer continues the freed lane where the last one stopped.
    let a2 = ring.producer().unwrap();
    assert_eq!(a2.lane(), lane);
    a2.push(b"a2").unwrap();
    b.push(b"b1").unwrap();
    let mut c = ring.consumer().unwrap();
    let mut got = Vec::new();
    c.drain(|r| got.push((r.lane(), r.to_vec()))).unwrap();
    c.drain(|r| got.push((r.lane(), r.to_vec()))).unwrap();
    got.sort();
    let mut want = vec![
        (lane, b"a1".to_vec()),
        (lane, b"a2".to_vec()),
        (b.lane(), b"b1".to_vec()),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_busy_lane_does_not_block_another() {
    let ring = ring(2, 128);
    let a = ring.producer().unwrap();
    let b = ring.producer().unwrap();
    let held = a.reserve(4).unwrap();
    b.push(b"b").unwrap();
    let mut c = ring.consumer().unwrap();
    assert_eq!(drain_all(&mut c).unwrap(), vec![b"b".to_vec()]);
    assert!(c.lanes()[a.lane() as usize].head_busy);
    held.commit();
}

/// Writes `word` over the header at data offset `off` of lane 0.
fn poke_header(ring: &Ring, off: usize, word: u64) {
    ring.memory().header(0, off).store(word, Ordering::Release);
}

#[test]
fn corrupt_headers_poison_the_consumer() {
    type Case = (&'static str, fn(u64) -> u64, fn(&Corruption) -> bool);
    let cases: [Case; 4] = [
        (
            "stale tag",
            |_| Header::committed(4, 4096),
            |c| matches!(c, Corruption::HeaderTag { .. }),
        ),
        (
            "both flags",
            |pos| BUSY | (1 << 30) | 4 | tag(pos),
            |c| *c == Corruption::HeaderFlags,
        ),
        (
            "huge length",
            |pos| 1_000_000 | tag(pos),
            |c| matches!(c, Corruption::RecordLength { .. }),
        ),
        (
            "past producer",
            |pos| 100 | tag(pos),
            |c| matches!(c, Corruption::RecordPastProducer { .. }),
        ),
    ];
    for (name, word, check) in cases {
        let ring = ring(1, 256);
        let p = ring.producer().unwrap();
        let mut c = ring.consumer().unwrap();
        p.push(b"ok").unwrap();
        p.push(b"bad").unwrap(); // at position 16
        poke_header(&ring, 16, word(16));
        let mut seen = Vec::new();
        let err = loop {
            match c.drain(|r| seen.push(r.to_vec())) {
                Ok(0) => panic!("{name}: corruption not detected"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(seen, vec![b"ok".to_vec()], "{name}");
        assert!(check(&err.corruption), "{name}: {err}");
        assert_eq!((err.lane, err.position), (0, 16), "{name}");
        // Poisoned: the same error from then on, from every entry point.
        assert_eq!(c.drain(|_| ()).unwrap_err(), err, "{name}");
        assert_eq!(
            c.wait(Some(std::time::Duration::ZERO)).unwrap_err(),
            err,
            "{name}"
        );
    }
}

#[test]
fn corrupt_positions_poison_the_consumer() {
    // producer_pos beyond one data size ahead, unaligned, and going backwards.
    for bad in [|_: u64| 4096u64, |p: u64| p + 3, |_: u64| 0] {
        let ring = ring(1, 256);
        let p = ring.producer().unwrap();
        let mut c = ring.consumer().unwrap();
        p.push(b"one").unwrap();
        p.push(b"two").unwrap();
        let mut batch = c.batch();
        batch.next().unwrap().unwrap();
        drop(batch);
        let words = ring.memory().lane(0);
        let now = words.producer_pos.load(Ordering::Relaxed);
        // Force a reload: consume up to the cached producer_pos first.
        c.drain(|_| ()).unwrap();
        words.producer_pos.store(bad(now), Ordering::Release);
        let err = c.drain(|_| ()).unwrap_err();
        assert!(
            matches!(err.corruption, Corruption::ProducerPosition { .. }),
            "{err}"
        );
    }
}

#[test]
fn a_consumer_refuses_a_corrupt_consumer_position() {
    let ring = ring(1, 256);
    ring.memory()
        .lane(0)
        .consumer_pos
        .store(5, Ordering::Release);
    let mut c = ring.consumer().unwrap();
    let err = c.drain(|_| ()).unwrap_err();
    assert!(
        matches!(
            err.corruption,
            Corruption::ConsumerPosition { found: 5, .. }
        ),
        "{err}"
    );
    assert_eq!(
        ring.producer().unwrap_err(),
        ClaimError::CorruptLane { lane: 0 }
    );
}

#[test]
fn a_dead_owners_busy_records_are_reaped() {
    let ring = ring(1, 256);
    let p = ring.producer().unwrap();
    p.push(b"before").unwrap();
    let held = p.reserve(5).unwrap();
    std::mem::forget(held); // BUSY forever, as if the process died here
    p.push(b"after").unwrap();
    std::mem::forget(p); // the lane stays claimed
    // Pretend the owner was a process that has since exited.
    ring.memory()
        .lane(0)
        .owner
        .store(super::owner::encode(0x3F_FFFF, 12345), Ordering::Release);
    let mut c = ring.consumer().unwrap();
    assert_eq!(drain_all(&mut c).unwrap(), vec![b"before".to_vec()]);
    assert!(c.lanes()[0].head_busy);
    assert_eq!(c.reap_dead_producers().unwrap(), 1);
    assert_eq!(drain_all(&mut c).unwrap(), vec![b"after".to_vec()]);
    let status = c.lanes()[0];
    assert_eq!(
        (status.abandoned, status.owner_pid, status.head_busy),
        (1, None, false)
    );
    // The lane is free again.
    let p = ring.producer().unwrap();
    p.push(b"next").unwrap();
    assert_eq!(drain_all(&mut c).unwrap(), vec![b"next".to_vec()]);
}

#[test]
fn a_new_producer_reaps_a_dead_lane_it_claims() {
    let ring = ring(1, 256);
    let p = ring.producer().unwrap();
    std::mem::forget(p.reserve(5).unwrap());
    std::mem::forget(p);
    ring.memory()
        .lane(0)
        .owner
        .store(super::owner::encode(0x3F_FFFF, 1), Ordering::Release);
    let p = ring.producer().unwrap();
    p.push(b"x").unwrap();
    let mut c = ring.consumer().unwrap();
    assert_eq!(drain_all(&mut c).unwrap(), vec![b"x".to_vec()]);
    assert_eq!(c.lanes()[0].abandoned, 1);
}

#[test]
fn wait_returns_when_a_record_is_committed() {
    let ring = ring(1, 4096);
    let mut c = ring.consumer().unwrap();
    let p = ring.producer().unwrap();
    assert_eq!(
        c.wait(Some(std::time::Duration::from_millis(1))).unwrap(),
        WaitOutcome::TimedOut
    );
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        p.push(b"wake").unwrap();
    });
    // No timeout: only the producer's wake-up can end this wait.
    loop {
        if c.wait(None).unwrap() == WaitOutcome::Ready {
            break;
        }
    }
    assert_eq!(drain_all(&mut c).unwrap(), vec![b"wake".to_vec()]);
    t.join().unwrap();
}

#[test]
fn a_lane_quota_ends_a_batch_and_moves_on() {
    let ring = ring(2, 256);
    let a = ring.producer().unwrap();
    let b = ring.producer().unwrap();
    let mut c = ring.consumer().unwrap();
    c.set_lane_quota(32);
    for _ in 0..6 {
        a.push(&[0xa; 8]).unwrap(); // 16 bytes each
    }
    b.push(&[0xb; 8]).unwrap();
    let mut lanes = Vec::new();
    c.drain(|r| lanes.push(r.lane())).unwrap();
    // Two records of lane a (32 bytes), then lane b: not six of a first.
    assert_eq!(lanes, vec![a.lane(), a.lane(), b.lane()]);
}

#[test]
fn a_batch_says_why_it_stopped() {
    let ring = ring(1, 256);
    let p = ring.producer().unwrap();
    let mut c = ring.consumer().unwrap();
    let none = |_: Record<'_>| {};
    let empty = Drained {
        records: 0,
        stop: Stop::Empty,
    };
    assert_eq!(c.poll(none).unwrap(), empty);
    p.push(b"a").unwrap();
    let held = p.reserve(1).unwrap();
    let got = c.poll(none).unwrap();
    assert_eq!(
        got,
        Drained {
            records: 1,
            stop: Stop::Busy
        }
    );
    held.commit_quiet();
    c.set_lane_quota(16);
    for _ in 0..3 {
        p.push(b"b").unwrap();
    }
    // The quota (16 bytes: one record) ends each batch with more to read.
    let quota = Drained {
        records: 1,
        stop: Stop::Quota,
    };
    for _ in 0..3 {
        assert_eq!(c.poll(none).unwrap(), quota);
    }
    assert_eq!(
        c.poll(none).unwrap(),
        Drained {
            records: 1,
            stop: Stop::Empty
        }
    );
    // With a backoff set, the answers are the same (the pause is after).
    c.set_poll_backoff(PollBackoff {
        busy: Duration::from_micros(1),
        empty: Duration::from_micros(1),
    });
    assert_eq!(c.poll(none).unwrap(), empty);
    let held = p.reserve(1).unwrap();
    assert_eq!(
        c.poll(none).unwrap(),
        Drained {
            records: 0,
            stop: Stop::Busy
        }
    );
    held.discard();
    assert_eq!(c.poll(none).unwrap(), empty);
}

#[test]
fn the_busiest_lane_decides_the_stop() {
    let ring = ring(2, 256);
    let a = ring.producer().unwrap();
    let b = ring.producer().unwrap();
    let mut c = ring.consumer().unwrap();
    let _held = a.reserve(1).unwrap();
    b.push(b"b").unwrap();
    // Lane a is BUSY, lane b empties: Busy, whichever lane the batch starts at.
    for _ in 0..2 {
        let got = c.poll(|_| {}).unwrap();
        assert_eq!(got.stop, Stop::Busy);
    }
}

#[test]
fn quiet_commits_are_seen_by_a_polling_consumer() {
    let ring = ring(1, 4096);
    let p = ring.producer().unwrap();
    let mut c = ring.consumer().unwrap();
    for i in 0..3u8 {
        let mut r = p.reserve(1).unwrap();
        r[0] = i;
        r.commit_quiet();
    }
    assert_eq!(drain_all(&mut c).unwrap(), vec![vec![0], vec![1], vec![2]]);
}

#[test]
fn notify_wakes_a_consumer_asleep_on_quiet_commits() {
    let ring = ring(1, 4096);
    let mut c = ring.consumer().unwrap();
    let p = ring.producer().unwrap();
    let (done, seen) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        for i in 0..3u8 {
            let mut r = p.reserve(1).unwrap();
            r[0] = i;
            r.commit_quiet();
        }
        p.notify();
        // Keep the producer alive until the consumer is through, so only
        // notify (not the producer's drop) can have woken it.
        seen.recv().unwrap();
        drop(p);
    });
    // No timeout: only a wake-up can end this wait.
    while c.wait(None).unwrap() != WaitOutcome::Ready {}
    let mut got = Vec::new();
    while got.len() < 3 {
        c.drain(|r| got.push(r[0])).unwrap();
    }
    assert_eq!(got, vec![0, 1, 2]);
    done.send(()).unwrap();
    t.join().unwrap();
}

#[test]
fn dropping_a_producer_wakes_a_consumer_asleep_on_quiet_commits() {
    let ring = ring(1, 4096);
    let mut c = ring.consumer().unwrap();
    let p = ring.producer().unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        p.reserve(1).unwrap().commit_quiet();
    });
    while c.wait(None).unwrap() != WaitOutcome::Ready {}
    assert_eq!(drain_all(&mut c).unwrap().len(), 1);
    t.join().unwrap();
}

#[test]
fn an_adaptive_wait_sees_a_record_while_it_polls_or_after_it_sleeps() {
    let ring = ring(1, 4096);
    let mut c = ring.consumer().unwrap();
    let p = ring.producer().unwrap();
    c.set_wait_spin(Duration::from_millis(5));
    assert_eq!(
        c.wait(Some(Duration::from_millis(1))).unwrap(),
        WaitOutcome::TimedOut
    );
    p.push(b"now").unwrap();
    assert_eq!(c.wait(None).unwrap(), WaitOutcome::Ready);
    assert_eq!(drain_all(&mut c).unwrap(), vec![b"now".to_vec()]);
    let t = std::thread::spawn(move || {
        // Within the spin window (most of the time), then well after it.
        for (delay, what) in [(1, b"soon"), (30, b"late")] {
            std::thread::sleep(Duration::from_millis(delay));
            p.push(what).unwrap();
        }
        p
    });
    let mut got = Vec::new();
    while got.len() < 2 {
        if c.drain(|r| got.push(r.to_vec())).unwrap() == 0 {
            while c.wait(None).unwrap() != WaitOutcome::Ready {}
        }
    }
    assert_eq!(got, vec![b"soon".to_vec(), b"late".to_vec()]);
    drop(t.join().unwrap());
}

mod model {
    //! Random reserve/commit/discard/drain sequences against a model: per
    //! lane, a `VecDeque` of reserved records; committed ones at the front
    //! are what the consumer must see, in order.
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Reserve {
            lane: usize,
            len: usize,
        },
        Commit {
            lane: usize,
            pick: usize,
            quiet: bool,
        },
        Discard {
            lane: usize,
            pick: usize,
        },
        Notify {
            lane: usize,
        },
        Drain,
    }

    fn op(lanes: usize) -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..lanes, 0usize..80).prop_map(|(lane, len)| Op::Reserve { lane, len }),
            3 => (0..lanes, any::<usize>(), any::<bool>())
                .prop_map(|(lane, pick, quiet)| Op::Commit { lane, pick, quiet }),
            1 => (0..lanes, any::<usize>()).prop_map(|(lane, pick)| Op::Discard { lane, pick }),
            1 => (0..lanes).prop_map(|lane| Op::Notify { lane }),
            2 => Just(Op::Drain),
        ]
    }

    #[derive(Debug, Clone, PartialEq)]
    enum State {
        Busy,
        Committed,
        Discarded,
    }

    fn run(lanes: usize, ops: Vec<Op>) {
        let size = 256;
        let ring = ring(lanes as u32, size);
        let producers: Vec<_> = (0..lanes).map(|_| ring.producer().unwrap()).collect();
        let mut consumer = ring.consumer().unwrap();
        // Per lane: (payload, state) in reservation order, and the live
        // reservations, oldest first, as (model index, reservation).
        let mut model: Vec<VecDeque<(Vec<u8>, State)>> = vec![VecDeque::new(); lanes];
        let mut used = vec![0u64; lanes];
        let mut seq = 0u8;
        let mut live: Vec<Vec<(u64, Reservation<'_>)>> = (0..lanes).map(|_| Vec::new()).collect();
        let mut base = vec![0u64; lanes]; // model index of model[lane][0]
        for op in ops {
            match op {
                Op::Reserve { lane, len } => {
                    let total = super::super::layout::record_total(len as u64);
                    let result = producers[lane].reserve(len);
                    if used[lane] + total > size {
                        assert_eq!(result.unwrap_err(), ReserveError::Full { len });
                        continue;
                    }
                    let mut r = result.unwrap();
                    seq = seq.wrapping_add(1);
                    let payload: Vec<u8> = (0..len).map(|i| seq.wrapping_add(i as u8)).collect();
                    r.copy_from_slice(&payload);
                    used[lane] += total;
                    let index = base[lane] + model[lane].len() as u64;
                    model[lane].push_back((payload, State::Busy));
                    live[lane].push((index, r));
                }
                Op::Notify { lane } => producers[lane].notify(),
                Op::Commit { lane, pick, .. } | Op::Discard { lane, pick } => {
                    if live[lane].is_empty() {
                        continue;
                    }
                    let at = pick % live[lane].len();
                    let (index, r) = live[lane].remove(at);
                    let slot = &mut model[lane][(index - base[lane]) as usize];
                    if let Op::Commit { quiet, .. } = op {
                        if quiet {
                            r.commit_quiet();
                        } else {
                            r.commit();
                        }
                        slot.1 = State::Committed;
                    } else {
                        r.discard();
                        slot.1 = State::Discarded;
                    }
                }
                Op::Drain => {
                    let mut got: Vec<Vec<Vec<u8>>> = vec![Vec::new(); lanes];
                    let stop = loop {
                        let drained = consumer
                            .poll(|r| got[r.lane() as usize].push(r.to_vec()))
                            .unwrap();
                        if drained.records == 0 {
                            break drained.stop;
                        }
                    };
                    let mut busy = false;
                    for lane in 0..lanes {
                        let mut want = Vec::new();
                        while model[lane].front().is_some_and(|(_, s)| *s != State::Busy) {
                            let (payload, state) = model[lane].pop_front().unwrap();
                            used[lane] -= super::super::layout::record_total(payload.len() as u64);
                            base[lane] += 1;
                            if state == State::Committed {
                                want.push(payload);
                            }
                        }
                        assert_eq!(got[lane], want, "lane {lane}");
                        busy |= !model[lane].is_empty();
                    }
                    // A batch that took nothing ended at a BUSY head or at
                    // the producer position of every lane.
                    assert_eq!(stop, if busy { Stop::Busy } else { Stop::Empty });
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 256 }, ..ProptestConfig::default() })]
        #[test]
        fn spsc_matches_the_model(ops in proptest::collection::vec(op(1), 1..if cfg!(miri) { 60 } else { 200 })) {
            run(1, ops);
        }

        #[test]
        fn mpsc_matches_the_model(ops in proptest::collection::vec(op(3), 1..if cfg!(miri) { 60 } else { 300 })) {
            run(3, ops);
        }
    }
}

#[test]
fn two_threads_move_numbered_records_intact() {
    let n: u64 = if cfg!(miri) { 200 } else { 200_000 };
    let ring = ring(1, 1024);
    let p = ring.producer().unwrap();
    let mut c = ring.consumer().unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..n {
            let len = (i % 61) as usize + 8;
            loop {
                match p.reserve(len) {
                    Ok(mut r) => {
                        r[..8].copy_from_slice(&i.to_le_bytes());
                        r[8..].fill(i as u8);
                        r.commit();
                        break;
                    }
                    Err(ReserveError::Full { .. }) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
    });
    let mut next = 0;
    while next < n {
        let got = c
            .drain(|r| {
                assert_eq!(u64::from_le_bytes(r[..8].try_into().unwrap()), next);
                assert_eq!(r.len(), (next % 61) as usize + 8);
                assert!(r[8..].iter().all(|&b| b == next as u8));
                next += 1;
            })
            .unwrap();
        if got == 0 {
            c.wait(Some(std::time::Duration::from_millis(10))).unwrap();
        }
    }
    t.join().unwrap();
}
