//! Where a ring's words and bytes live.
//!
//! The protocol in [`crate::ring`] is written once, against [`RingMemory`].
//! [`HeapMemory`] backs rings inside one process, and is what miri runs; under
//! `cfg(loom)` it keeps header words in loom atomics and tracks payload
//! accesses so loom can report a data race. [`super::MappedMemory`] backs rings
//! shared with another process.

use std::time::Duration;

use super::layout::{ControlBlock, Geometry, LaneControl};
use crate::sync::AtomicU64;

/// The memory of a ring.
///
/// # Safety
///
/// An implementation promises, for as long as `&self` lives:
/// - `control()` and `lane(l)` for `l < geometry().lanes` are the ring's words,
///   the same for every handle of the ring;
/// - `data(l)` points to `2 * data_size` bytes, 8-byte aligned, readable and
///   writable, disjoint from every other lane's and from the control words;
///   whether byte `i` and byte `i + data_size` alias (a double mapping) or not
///   (a plain buffer), the protocol reads a record through the same addresses
///   it was written through, so both are correct;
/// - `header(l, off)` for `off < data_size` with `off % 8 == 0` is the word at
///   `data(l) + off`, or (loom) a word standing for it;
/// - `geometry()` never changes.
pub unsafe trait RingMemory: Send + Sync + 'static {
    /// The validated geometry.
    fn geometry(&self) -> Geometry;
    /// The ring-wide control words.
    fn control(&self) -> &ControlBlock;
    /// Lane `lane`'s control words.
    fn lane(&self, lane: usize) -> &LaneControl;
    /// The start of lane `lane`'s data area (valid for `2 * data_size` bytes).
    fn data(&self, lane: usize) -> *mut u8;
    /// The header word at data offset `off` of lane `lane`.
    fn header(&self, lane: usize, off: usize) -> &AtomicU64;
    /// Sleeps while `control().wake_seq == expected`, up to `timeout`. May
    /// wake spuriously.
    fn wait(&self, expected: u32, timeout: Option<Duration>);
    /// Wakes the consumer sleeping in [`RingMemory::wait`] (after `wake_seq`
    /// was bumped).
    fn wake(&self);
    /// Called before a producer writes `len` payload bytes at `off` (loom's
    /// race detector hooks in here; a no-op elsewhere).
    #[inline(always)]
    fn track_write(&self, _lane: usize, _off: usize, _len: usize) {}
    /// Called before the consumer reads `len` payload bytes at `off`.
    #[inline(always)]
    fn track_read(&self, _lane: usize, _off: usize, _len: usize) {}
}

pub use heap::HeapMemory;

#[cfg(not(loom))]
mod heap {
    use std::alloc::{self, Layout};
    use std::ptr::NonNull;
    use std::time::Duration;

    use super::super::layout::{ControlBlock, Geometry, LaneControl};
    use super::RingMemory;
    use crate::sync::AtomicU64;

    /// Heap memory for a ring that stays inside one process.
    pub struct HeapMemory {
        geometry: Geometry,
        control: Box<ControlBlock>,
        lanes: Box<[LaneControl]>,
        data: NonNull<u8>,
        layout: Layout,
    }

    // SAFETY: the raw data pointer is owned by this value (freed in Drop) and
    // every access to it goes through the ring protocol, whose atomics order
    // all cross-thread access; the rest is plain owned data.
    unsafe impl Send for HeapMemory {}
    // SAFETY: as for Send; shared access is through atomics or through
    // payload ranges the protocol hands to one side at a time.
    unsafe impl Sync for HeapMemory {}

    impl HeapMemory {
        /// Allocates zeroed memory for `geometry`.
        pub fn new(geometry: Geometry) -> Self {
            let per_lane = 2 * geometry.data_size as usize;
            let layout = Layout::from_size_align(per_lane * geometry.lanes as usize, 64)
                .expect("geometry bounds keep the size far below isize::MAX");
            // SAFETY: the layout has a non-zero size (data_size >= 64, lanes >= 1).
            let raw = unsafe { alloc::alloc_zeroed(layout) };
            let data = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
            HeapMemory {
                geometry,
                control: Box::new(ControlBlock::new()),
                lanes: (0..geometry.lanes).map(|_| LaneControl::new()).collect(),
                data,
                layout,
            }
        }
    }

    impl Drop for HeapMemory {
        fn drop(&mut self) {
            // SAFETY: `data` came from `alloc_zeroed(self.layout)` and is freed once.
            unsafe { alloc::dealloc(self.data.as_ptr(), self.layout) }
        }
    }

    // SAFETY: `data(l)` is `2 * data_size` bytes of our own allocation, 64-byte
    // aligned, one disjoint slice per lane; the control words are owned boxes;
    // `header` points inside lane `l`'s slice at an 8-aligned offset.
    unsafe impl RingMemory for HeapMemory {
        fn geometry(&self) -> Geometry {
            self.geometry
        }
        fn control(&self) -> &ControlBlock {
            &self.control
        }
        fn lane(&self, lane: usize) -> &LaneControl {
            &self.lanes[lane]
        }
        #[inline]
        fn data(&self, lane: usize) -> *mut u8 {
            debug_assert!(lane < self.geometry.lanes as usize);
            // SAFETY: lane < lanes, so the offset stays inside the allocation.
            unsafe {
                self.data
                    .as_ptr()
                    .add(lane * 2 * self.geometry.data_size as usize)
            }
        }
        #[inline]
        fn header(&self, lane: usize, off: usize) -> &AtomicU64 {
            debug_assert!(off < self.geometry.data_size as usize && off.is_multiple_of(8));
            // Masked, so the deref below is sound whatever the caller passes.
            let off = off & (self.geometry.data_size as usize - 1) & !7;
            // SAFETY: `data(lane) + off` is inside the lane's slice, 8-aligned
            // (the slice is 64-aligned, off is a multiple of 8), and lives as
            // long as `self`; AtomicU64 has the size and alignment of u64.
            unsafe { &*(self.data(lane).add(off) as *const AtomicU64) }
        }
        fn wait(&self, expected: u32, timeout: Option<Duration>) {
            super::futex::wait(&self.control.wake_seq, expected, timeout, true);
        }
        fn wake(&self) {
            super::futex::wake(&self.control.wake_seq, true);
        }
    }
}

#[cfg(loom)]
mod heap {
    use std::time::Duration;

    use loom::cell::UnsafeCell;
    use loom::sync::{Condvar, Mutex};

    use super::super::layout::{ControlBlock, Geometry, LaneControl};
    use super::RingMemory;
    use crate::sync::{AtomicU64, Ordering};

    /// Under loom: header words are loom atomics, every 8-byte payload granule
    /// has a loom cell so a read not ordered after its write is reported, and
    /// the futex is a loom mutex and condition variable.
    pub struct HeapMemory {
        geometry: Geometry,
        control: ControlBlock,
        lanes: Box<[LaneControl]>,
        headers: Box<[AtomicU64]>,
        granules: Box<[UnsafeCell<()>]>,
        data: Box<[std::cell::UnsafeCell<u8>]>,
        sleep: Mutex<()>,
        woken: Condvar,
    }

    // SAFETY: loom runs one thread at a time; payload bytes are only touched
    // in ranges the protocol hands to one side, which loom checks through the
    // granule cells.
    unsafe impl Send for HeapMemory {}
    // SAFETY: as for Send.
    unsafe impl Sync for HeapMemory {}

    impl HeapMemory {
        /// Allocates memory for `geometry` under loom.
        pub fn new(geometry: Geometry) -> Self {
            let slots = (geometry.data_size / 8) as usize * geometry.lanes as usize;
            HeapMemory {
                geometry,
                control: ControlBlock::new(),
                lanes: (0..geometry.lanes).map(|_| LaneControl::new()).collect(),
                headers: (0..slots).map(|_| AtomicU64::new(0)).collect(),
                granules: (0..slots).map(|_| UnsafeCell::new(())).collect(),
                data: (0..2 * geometry.data_size as usize * geometry.lanes as usize)
                    .map(|_| std::cell::UnsafeCell::new(0))
                    .collect(),
                sleep: Mutex::new(()),
                woken: Condvar::new(),
            }
        }

        fn granules(
            &self,
            lane: usize,
            off: usize,
            len: usize,
        ) -> impl Iterator<Item = &UnsafeCell<()>> {
            let per_lane = (self.geometry.data_size / 8) as usize;
            (off / 8..(off + len).div_ceil(8))
                .map(move |g| &self.granules[lane * per_lane + g % per_lane])
        }
    }

    // SAFETY: as for the std HeapMemory; headers live in their own array,
    // which the trait allows under loom.
    unsafe impl RingMemory for HeapMemory {
        fn geometry(&self) -> Geometry {
            self.geometry
        }
        fn control(&self) -> &ControlBlock {
            &self.control
        }
        fn lane(&self, lane: usize) -> &LaneControl {
            &self.lanes[lane]
        }
        fn data(&self, lane: usize) -> *mut u8 {
            self.data[lane * 2 * self.geometry.data_size as usize].get()
        }
        fn header(&self, lane: usize, off: usize) -> &AtomicU64 {
            &self.headers[lane * (self.geometry.data_size / 8) as usize + off / 8]
        }
        fn wait(&self, expected: u32, _timeout: Option<Duration>) {
            let guard = self.sleep.lock().unwrap();
            if self.control.wake_seq.load(Ordering::Relaxed) == expected {
                drop(self.woken.wait(guard).unwrap());
            }
        }
        fn wake(&self) {
            let _guard = self.sleep.lock().unwrap();
            self.woken.notify_all();
        }
        fn track_write(&self, lane: usize, off: usize, len: usize) {
            for g in self.granules(lane, off, len) {
                g.with_mut(|_| ());
            }
        }
        fn track_read(&self, lane: usize, off: usize, len: usize) {
            for g in self.granules(lane, off, len) {
                g.with(|_| ());
            }
        }
    }
}

/// Futex wait and wake on a control word.
#[cfg(not(loom))]
pub(crate) mod futex {
    use std::time::Duration;

    use rustix::thread::futex;

    use crate::sync::AtomicU32;

    /// Sleeps while `*word == expected`, up to `timeout`. `private` is for
    /// memory no other process maps.
    pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>, private: bool) {
        let flags = if private {
            futex::Flags::PRIVATE
        } else {
            futex::Flags::empty()
        };
        let ts = timeout.map(|t| rustix::time::Timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: t.subsec_nanos() as _,
        });
        // EAGAIN (the word changed), EINTR and ETIMEDOUT all mean "look again";
        // the caller re-checks the ring in every case.
        let _ = futex::wait(word, flags, expected, ts.as_ref());
    }

    /// Wakes every sleeper on `word`.
    pub(crate) fn wake(word: &AtomicU32, private: bool) {
        let flags = if private {
            futex::Flags::PRIVATE
        } else {
            futex::Flags::empty()
        };
        let _ = futex::wake(word, flags, u32::MAX);
    }
}
