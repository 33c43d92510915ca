//! Rings shared between processes: a child producer SIGKILLed at a random
//! point, and a memfd handed to a child by fd inheritance.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use odock_dataplane::ring::{Backing, Geometry, MappedMemory, ReserveError, Ring, WaitOutcome};
use odock_suite::{numbered, watchdog};

const CHILD_ENV: &str = "ODOCK_RING_CHILD";

/// Re-runs this test binary as a child that executes only `test`.
fn spawn_child(test: &str, arg: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, arg)
        // The child's own test-harness lines would read like ours.
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Produces numbered records from 0 until killed (or `limit` records).
fn produce(ring: &std::sync::Arc<Ring<MappedMemory>>, limit: u64) {
    let producer = ring.producer().unwrap();
    for seq in 0..limit {
        loop {
            match producer.reserve(numbered::len(seq)) {
                Ok(mut r) => {
                    numbered::write(seq, &mut r);
                    r.commit();
                    break;
                }
                Err(ReserveError::Full { .. }) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

/// The child side of the kill test: attach by path, produce forever.
#[test]
#[ignore = "runs only as the child of ring_survives_a_producer_killed_mid_stream"]
fn child_producer_by_path() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let ring = Ring::attach(path.as_ref()).unwrap();
    produce(&ring, u64::MAX);
}

/// The child side of the held-record test: 100 records, then one reserved,
/// half written and never committed; then it waits to be killed.
#[test]
#[ignore = "runs only as the child of a_producer_killed_inside_a_record_does_not_wedge_the_consumer"]
fn child_producer_holding() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let ring = Ring::attach(path.as_ref()).unwrap();
    produce(&ring, 100);
    let producer = ring.producer().unwrap();
    let mut held = producer.reserve(numbered::len(100)).unwrap();
    held[..8].copy_from_slice(&100u64.to_le_bytes());
    std::thread::sleep(Duration::from_secs(600));
    held.commit();
}

/// The child side of the memfd test: attach the inherited fd, produce `n`.
#[test]
#[ignore = "runs only as the child of memfd_ring_crosses_a_process_boundary"]
fn child_producer_by_fd() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (fd, n) = arg.split_once(':').unwrap();
    // SAFETY: the parent cleared CLOEXEC on this fd for us and passed its
    // number; nothing else in this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd.parse().unwrap()) };
    let ring = Ring::attach_fd(fd).unwrap();
    produce(&ring, n.parse().unwrap());
}

/// Drains until the child is gone and the lane is empty, checking that the
/// records are numbered 0, 1, 2, ... with no gap, no repeat, intact.
fn drain_until_done(
    ring: &std::sync::Arc<Ring<MappedMemory>>,
    child: &mut Child,
    kill_after: Duration,
) -> u64 {
    let mut consumer = ring.consumer().unwrap();
    let mut next = 0u64;
    let start = Instant::now();
    let mut exited = false;
    loop {
        consumer
            .drain(|r| {
                let seq = numbered::check(&r).unwrap();
                assert_eq!(seq, next, "records out of order, lost or repeated");
                next += 1;
            })
            .unwrap();
        if !exited && start.elapsed() >= kill_after {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            exited = true;
        }
        if exited {
            let lane = consumer.lanes()[0];
            if lane.backlog_bytes == 0 && lane.owner_pid.is_none() {
                assert!(
                    lane.abandoned <= 1,
                    "at most the one record in flight is abandoned"
                );
                return next;
            }
            if lane.owner_pid.is_some() || lane.head_busy {
                // The dead child's lane: reaped by wait once its head stays busy.
                consumer.wait(Some(Duration::from_millis(300))).unwrap();
                consumer.reap_dead_producers().unwrap();
            }
        } else if consumer.wait(Some(Duration::from_millis(5))).unwrap() == WaitOutcome::TimedOut {
            continue;
        }
    }
}

#[test]
fn ring_survives_a_producer_killed_mid_stream() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    watchdog(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        // A small ring, so the child is often mid-record, wrapping, or full.
        let geometry = Geometry::new(1, 64 * 1024).unwrap();
        let seed = Instant::now().elapsed().subsec_nanos() as u64 ^ u64::from(std::process::id());
        for round in 0..4u64 {
            let path = dir.path().join(format!("ring-{round}"));
            let ring = Ring::create(geometry, Backing::File(&path)).unwrap();
            let mut child = spawn_child("child_producer_by_path", path.to_str().unwrap());
            // Kill somewhere between 30 and 230 ms in.
            let kill_after = Duration::from_millis(30 + (seed.wrapping_mul(round + 7) % 200));
            let got = drain_until_done(&ring, &mut child, kill_after);
            assert!(got > 0, "round {round}: the child committed nothing");
            let consumer = ring.consumer().unwrap();
            let lane = consumer.lanes()[0];
            eprintln!(
                "round {round}: {got} records, killed after {kill_after:?}, {} abandoned",
                lane.abandoned
            );
        }
    });
}

#[test]
fn memfd_ring_crosses_a_process_boundary() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        let ring = Ring::create(
            Geometry::new(1, 16 * 1024).unwrap(),
            Backing::Memfd("odock-test"),
        )
        .unwrap();
        // Hand the child a duplicate without CLOEXEC.
        let inheritable = rustix::io::dup(ring.memory().fd()).unwrap();
        let n = 50_000u64;
        let mut child = spawn_child(
            "child_producer_by_fd",
            &format!("{}:{n}", inheritable.as_raw_fd()),
        );
        drop(inheritable);
        let mut consumer = ring.consumer().unwrap();
        let mut next = 0;
        while next < n {
            let got = consumer
                .drain(|r| {
                    assert_eq!(numbered::check(&r).unwrap(), next);
                    next += 1;
                })
                .unwrap();
            if got == 0 {
                // Sleeps on the shared futex; the child's commits wake us.
                consumer.wait(Some(Duration::from_secs(5))).unwrap();
            }
        }
        assert!(child.wait().unwrap().success());
    });
}

#[test]
fn a_producer_killed_inside_a_record_does_not_wedge_the_consumer() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let ring =
            Ring::create(Geometry::new(1, 64 * 1024).unwrap(), Backing::File(&path)).unwrap();
        let mut child = spawn_child("child_producer_holding", path.to_str().unwrap());
        let mut consumer = ring.consumer().unwrap();
        let mut next = 0;
        // Take the 100 committed records; then the head is the held one.
        while next < 100 || !consumer.lanes()[0].head_busy {
            consumer
                .drain(|r| {
                    assert_eq!(numbered::check(&r).unwrap(), next);
                    next += 1;
                })
                .unwrap();
            consumer.wait(Some(Duration::from_millis(10))).unwrap();
        }
        assert_eq!(next, 100);
        child.kill().unwrap();
        child.wait().unwrap();
        // No explicit reap: wait() notices the busy head of a dead owner.
        while consumer.lanes()[0].head_busy {
            consumer.wait(Some(Duration::from_secs(1))).unwrap();
        }
        assert_eq!(
            consumer
                .drain(|_| panic!("the abandoned record must not be delivered"))
                .unwrap(),
            0
        );
        let lane = consumer.lanes()[0];
        assert_eq!(
            (lane.abandoned, lane.owner_pid, lane.backlog_bytes),
            (1, None, 0)
        );
        // The lane is free for a new producer, which continues after the hole.
        let producer = ring.producer().unwrap();
        producer.push(b"after").unwrap();
        let mut got = Vec::new();
        consumer.drain(|r| got.push(r.to_vec())).unwrap();
        assert_eq!(got, vec![b"after".to_vec()]);
    });
}
