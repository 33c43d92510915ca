//! Writes and data syncs through io_uring: the only module of the crate
//! with `unsafe` code (pushing a submission entry whose buffer must outlive
//! the operation).
//!
//! One write and one `fsync(DATASYNC)` are submitted together, linked
//! (`IOSQE_IO_LINK`), so one `io_uring_enter` does both; the call waits for
//! both completions before it returns, so the buffer outlives the kernel's
//! use of it. A write ahead (no sync) is linked the same way to a
//! `sync_file_range(SYNC_FILE_RANGE_WRITE)` of its range, which only starts
//! the device writing it back, so the commit's sync later finds less to do.
#![allow(
    unsafe_code,
    reason = "io_uring submission entries point at caller memory"
)]

use std::io;
use std::os::fd::RawFd;

use io_uring::{IoUring, opcode, squeue, types};

/// An io_uring instance for one log's writes.
pub(crate) struct Uring {
    ring: IoUring,
}

impl Uring {
    /// Sets up a small ring and checks that the kernel runs a no-op on it
    /// (seccomp filters and `io_uring_disabled` fail here).
    pub(crate) fn probe() -> io::Result<Uring> {
        let mut ring = IoUring::new(8)?;
        let nop = opcode::Nop::new().build().user_data(7);
        // SAFETY: a no-op references no memory.
        unsafe { ring.submission().push(&nop) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        ring.submit_and_wait(1)?;
        let cqe = ring
            .completion()
            .next()
            .ok_or_else(|| io::Error::other("io_uring gave no completion for a no-op"))?;
        if cqe.result() < 0 {
            return Err(io::Error::from_raw_os_error(-cqe.result()));
        }
        Ok(Uring { ring })
    }

    /// Writes all of `data` at `offset` of `fd`, then syncs its data.
    pub(crate) fn write_sync(&mut self, fd: RawFd, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_then(fd, offset, data, |_, _| {
            opcode::Fsync::new(types::Fd(fd))
                .flags(types::FsyncFlags::DATASYNC)
                .build()
        })
    }

    /// Writes all of `data` at `offset` of `fd` and starts its writeback,
    /// without waiting for the device.
    pub(crate) fn write_ahead(&mut self, fd: RawFd, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_then(fd, offset, data, |offset, len| {
            opcode::SyncFileRange::new(types::Fd(fd), len)
                .offset(offset)
                .flags(SYNC_FILE_RANGE_WRITE)
                .build()
        })
    }

    /// Writes all of `data` at `offset`, each write linked to the entry
    /// `then(offset, len)` makes for the range written.
    fn write_then(
        &mut self,
        fd: RawFd,
        mut offset: u64,
        mut data: &[u8],
        then: impl Fn(u64, u32) -> squeue::Entry,
    ) -> io::Result<()> {
        loop {
            let len = data.len().min(1 << 30) as u32;
            let write = opcode::Write::new(types::Fd(fd), data.as_ptr(), len)
                .offset(offset)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(1);
            let sync = then(offset, len).user_data(2);
            {
                let mut sq = self.ring.submission();
                // The queue has 8 slots and holds nothing else: every call
                // drains what it submitted.
                // SAFETY: `data` is borrowed for the whole call and we wait for
                // both completions below, so the kernel never reads it after.
                unsafe { sq.push_multiple(&[write, sync]) }
                    .map_err(|_| io::Error::other("io_uring submission queue full"))?;
            }
            self.ring.submit_and_wait(2)?;
            let mut written: Option<i32> = None;
            let mut synced: Option<i32> = None;
            while written.is_none() || synced.is_none() {
                let next = self.ring.completion().next();
                match next {
                    Some(cqe) if cqe.user_data() == 1 => written = Some(cqe.result()),
                    Some(cqe) => synced = Some(cqe.result()),
                    None => {
                        self.ring.submit_and_wait(1)?;
                    }
                }
            }
            let (w, s) = (
                written.unwrap_or(-libc_eio()),
                synced.unwrap_or(-libc_eio()),
            );
            if w < 0 {
                return Err(io::Error::from_raw_os_error(-w));
            }
            let w = w as usize;
            if w == data.len() {
                if s < 0 {
                    return Err(io::Error::from_raw_os_error(-s));
                }
                return Ok(());
            }
            if w == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "io_uring write wrote nothing",
                ));
            }
            // A short write cancels the linked sync: write the rest.
            data = &data[w..];
            offset += w as u64;
        }
    }
}

const fn libc_eio() -> i32 {
    5
}

/// `SYNC_FILE_RANGE_WRITE` (linux/fs.h): start writeback of dirty pages in
/// the range, do not wait.
const SYNC_FILE_RANGE_WRITE: u32 = 2;
