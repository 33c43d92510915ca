//! Shared support for the cross-crate tests in `tests/` and the benches in
//! `benches/`. Product code lives in the member crates.

use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on its own thread and fails the calling test if it has not
/// finished within `limit`: tests that could hang fail instead. A watchdog
/// bounds a test; it never measures one.
///
/// # Panics
/// When `f` panics (with its message) or overruns `limit`.
pub fn watchdog<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(limit) {
        Ok(()) => worker
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e)),
        Err(mpsc::RecvTimeoutError::Disconnected) => worker
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e)),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung: still running after {limit:?}"),
    }
}

/// A 64-bit FNV-1a hash: the checksum test records carry.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A numbered, checksummed test record: `seq`, then a payload of a length
/// and content derived from `seq`, then the checksum of both.
pub mod numbered {
    use super::fnv1a;

    /// The record's total length for `seq`.
    pub fn len(seq: u64) -> usize {
        8 + (seq % 97) as usize + 8
    }

    /// Writes record `seq` into `buf` (exactly [`len`] bytes).
    pub fn write(seq: u64, buf: &mut [u8]) {
        let body = buf.len() - 8;
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        for (i, b) in buf[8..body].iter_mut().enumerate() {
            *b = (seq as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        let sum = fnv1a(&buf[..body]);
        buf[body..].copy_from_slice(&sum.to_le_bytes());
    }

    /// Checks a record and returns its `seq`.
    ///
    /// # Errors
    /// A message naming what does not match.
    pub fn check(buf: &[u8]) -> Result<u64, String> {
        if buf.len() < 16 {
            return Err(format!("record of {} bytes is too short", buf.len()));
        }
        let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
        if buf.len() != len(seq) {
            return Err(format!(
                "record {seq}: length {} where {} was written",
                buf.len(),
                len(seq)
            ));
        }
        let body = buf.len() - 8;
        let sum = u64::from_le_bytes(buf[body..].try_into().unwrap());
        if sum != fnv1a(&buf[..body]) {
            return Err(format!("record {seq}: checksum mismatch"));
        }
        Ok(seq)
    }
}

/// The ring fuzz harness: a hostile peer's view of a ring file.
pub mod fuzzing {
    use std::time::Duration;

    use odock_dataplane::ring::{Backing, ClaimError, Geometry, Ring};

    /// What one run of [`ring_file`] saw.
    #[derive(Debug, Default)]
    pub struct Outcome {
        /// Whether `attach` accepted the patched file.
        pub attached: bool,
        /// Records delivered.
        pub records: usize,
        /// Whether the consumer reported a corrupt ring.
        pub corrupt: bool,
    }

    /// Builds a real ring in a memfd (the geometry and the records chosen by
    /// the first bytes of `input`), lets the rest of `input` patch arbitrary
    /// bytes of the shared file as `(offset: u16, value: u64)` pairs, then
    /// attaches and consumes it through the public API. Whatever the bytes,
    /// attach must refuse or the consumer must deliver records within the
    /// lane's bounds or report corruption: never panic, never loop forever.
    ///
    /// # Panics
    /// When an invariant above breaks (that is the fuzz finding).
    pub fn ring_file(input: &[u8]) -> Outcome {
        let mut outcome = Outcome::default();
        let [lanes, shape, count, rest @ ..] = input else {
            return outcome;
        };
        let geometry = Geometry::new(1 + u32::from(lanes % 3), 4096).unwrap();
        let ring = Ring::create(geometry, Backing::Memfd("odock-fuzz")).unwrap();
        // The producer lives to the end of the run, so its lane has a live
        // owner, as a producer mid-write has.
        let producer = ring.producer().unwrap();
        for i in 0..usize::from(*count) {
            let len = (usize::from(*shape) * (i + 1) * 7) % 600;
            if producer.push(&vec![i as u8; len]).is_err() {
                break;
            }
        }
        // One record left BUSY (a reservation owns nothing: forgetting it
        // leaks nothing).
        if shape % 2 == 1 {
            std::mem::forget(producer.reserve(usize::from(*shape)).ok());
        }
        let fd = ring.memory().fd();
        let file_len = rustix::fs::fstat(fd).unwrap().st_size as u64;
        for patch in rest.chunks_exact(10) {
            let offset = u64::from(u16::from_le_bytes([patch[0], patch[1]])) % file_len;
            let value = &patch[2..10];
            let n = value.len().min((file_len - offset) as usize);
            rustix::io::pwrite(fd, &value[..n], offset).unwrap();
        }
        let Ok(attached) = Ring::attach_fd(rustix::io::dup(fd).unwrap()) else {
            return outcome;
        };
        outcome.attached = true;
        let mut consumer = match attached.consumer() {
            Ok(c) => c,
            Err(ClaimError::ConsumerTaken { .. }) => return outcome,
            Err(e) => panic!("unexpected claim error: {e}"),
        };
        let max = attached.geometry().max_record_len();
        // Each record takes at least 8 bytes of a lane, and producer_pos is
        // at most one data size ahead: a bound on what can be delivered.
        let bound = (geometry.lanes as usize) * 4096 / 8;
        for _ in 0..=bound {
            let result = consumer.drain(|r| {
                assert!(
                    r.len() <= max,
                    "record of {} bytes exceeds the maximum {max}",
                    r.len()
                );
                outcome.records += 1;
            });
            match result {
                Ok(0) => break,
                Ok(_) => assert!(
                    outcome.records <= bound,
                    "delivered more records than the ring can hold"
                ),
                Err(_) => {
                    outcome.corrupt = true;
                    break;
                }
            }
        }
        let _ = consumer.lanes();
        let _ = consumer.reap_dead_producers();
        let _ = consumer.wait(Some(Duration::ZERO));
        drop(consumer);
        drop(producer);
        outcome
    }
}

/// A counting global allocator for the zero-allocation tests: declare it in
/// a test binary with `#[global_allocator] static A: CountingAllocator =
/// CountingAllocator;`, then count between [`counting::start`] and
/// [`counting::stop`]. It counts every allocation and reallocation of the
/// whole process while counting is on.
pub mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    static COUNTING: AtomicBool = AtomicBool::new(false);
    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

    /// The system allocator, counting.
    pub struct CountingAllocator;

    // SAFETY: forwards every call to the system allocator unchanged; only counts.
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if COUNTING.load(Ordering::Relaxed) {
                ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: the caller's contract is passed through.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if COUNTING.load(Ordering::Relaxed) {
                ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Resets the count and starts counting.
    pub fn start() {
        ALLOCATIONS.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
    }

    /// Stops counting; returns the allocations since [`start`].
    pub fn stop() -> u64 {
        COUNTING.store(false, Ordering::Relaxed);
        ALLOCATIONS.load(Ordering::Relaxed)
    }
}
