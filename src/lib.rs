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
