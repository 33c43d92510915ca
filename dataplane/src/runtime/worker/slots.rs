//! The slot table of one worker: where a submitter waits for its answer.
//!
//! A slot's state word is `generation << 2 | state`; the token a record
//! carries is `generation << 32 | index`, so a completion for an old
//! occupant of the slot (or a forged one) matches nothing. See "Routing" in
//! the module docs of [`super`] for the transitions and who makes each.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread::Thread;

pub(super) const FREE: u64 = 0;
pub(super) const PENDING: u64 = 1;
pub(super) const DONE: u64 = 2;
pub(super) const ABANDONED: u64 = 3;

/// Who to wake when a slot's answer arrives.
pub(super) enum Waiter {
    Thread(Thread),
    Task(Waker),
}

impl Waiter {
    pub(super) fn wake(self) {
        match self {
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(w) => w.wake(),
        }
    }
}

pub(super) struct Slot {
    pub word: AtomicU64,
    pub waiter: Mutex<Option<Waiter>>,
    /// The completion record, copied out of the ring by the drainer.
    pub answer: Mutex<Vec<u8>>,
}

pub(super) fn word(generation: u32, state: u64) -> u64 {
    (u64::from(generation) << 2) | state
}

pub(super) fn token(generation: u32, index: usize) -> u64 {
    (u64::from(generation) << 32) | index as u64
}

/// `(generation, index)` of a token.
pub(super) fn split(token: u64) -> (u32, usize) {
    ((token >> 32) as u32, (token & 0xffff_ffff) as usize)
}

pub(super) struct Slots {
    slots: Box<[Slot]>,
    hint: AtomicUsize,
}

impl Slots {
    pub fn new(n: usize, answer_capacity: usize) -> Slots {
        Slots {
            slots: (0..n)
                .map(|_| Slot {
                    word: AtomicU64::new(word(0, FREE)),
                    waiter: Mutex::new(None),
                    answer: Mutex::new(Vec::with_capacity(answer_capacity)),
                })
                .collect(),
            hint: AtomicUsize::new(0),
        }
    }

    pub fn get(&self, index: usize) -> Option<&Slot> {
        self.slots.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter()
    }

    /// Takes a free slot: `(index, generation)`. SeqCst: the pool's
    /// shutdown scan and the submitter's `closed` check after the claim are
    /// ordered by it (see "Shutdown" in the module docs).
    pub fn claim(&self) -> Option<(usize, u32)> {
        let n = self.slots.len();
        let start = self.hint.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let index = (start + i) % n;
            let slot = &self.slots[index];
            let w = slot.word.load(Ordering::Relaxed);
            if w & 3 != FREE {
                continue;
            }
            let generation = ((w >> 2) as u32).wrapping_add(1);
            if slot
                .word
                .compare_exchange(
                    w,
                    word(generation, PENDING),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Some((index, generation));
            }
        }
        None
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
