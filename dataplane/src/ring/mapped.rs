//! Rings in memory shared between processes: a memfd (its fd passes to the
//! other process) or a file in a private run directory (mode 0600).
//!
//! The file holds the meta page, one control page per lane, then each lane's
//! data area once. The mapping reserves address space for the control pages
//! plus *twice* each data area, and maps each lane's data area into both
//! halves, so a record that wraps past the end reads as one slice.
//!
//! `attach` trusts nothing in the file: magic, layout version, page size,
//! geometry, flags and the file length are all checked before anything past
//! the first page is mapped. A memfd ring is sealed against shrinking and
//! growing, so the other process cannot make our mapping fault with SIGBUS; a
//! file cannot be sealed, which is why it must live in a directory only the
//! dataplane's and control's user can write.

use std::ffi::c_void;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::{self, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::mm::{self, MapFlags, ProtFlags};

use super::Ring;
use super::layout::{
    CONTROL_OFFSET, ControlBlock, Geometry, GeometryError, LAYOUT_VERSION, LaneControl, MAGIC,
    MetaBlock,
};
use super::memory::{RingMemory, futex};
use crate::sync::{AtomicU64, Ordering};

/// Where a new mapped ring lives.
#[derive(Debug, Clone, Copy)]
pub enum Backing<'a> {
    /// An anonymous memfd with this debug name; share it by passing its fd
    /// ([`MappedMemory::fd`]) to the other process.
    Memfd(&'a str),
    /// A new file at this path (created 0600, never overwritten); the other
    /// process attaches by path. Its directory must be private to the
    /// dataplane's and control's user.
    File(&'a Path),
}

/// Memory mapped from a ring file or memfd.
pub struct MappedMemory {
    base: NonNull<u8>,
    va_len: usize,
    page: usize,
    geometry: Geometry,
    fd: OwnedFd,
}

// SAFETY: the mapping is owned by this value (unmapped in Drop) and every
// access to it goes through the ring protocol's atomics.
unsafe impl Send for MappedMemory {}
// SAFETY: as for Send.
unsafe impl Sync for MappedMemory {}

/// The sizes derived from a geometry and a page size.
#[derive(Debug, Clone, Copy)]
struct Layout {
    page: usize,
    lanes: usize,
    data: usize,
}

impl Layout {
    fn control_len(&self) -> usize {
        self.page * (1 + self.lanes)
    }
    fn file_len(&self) -> usize {
        self.control_len() + self.lanes * self.data
    }
    fn va_len(&self) -> usize {
        self.control_len() + 2 * self.lanes * self.data
    }
    fn data_file_offset(&self, lane: usize) -> usize {
        self.control_len() + lane * self.data
    }
    fn data_va_offset(&self, lane: usize) -> usize {
        self.control_len() + lane * 2 * self.data
    }
}

impl Ring<MappedMemory> {
    /// Creates a ring in new shared memory.
    ///
    /// # Errors
    /// [`AttachError::Geometry`] if a lane's data size is below a page;
    /// [`AttachError::Io`] naming the system call that failed (an existing
    /// file at the path gives `AlreadyExists`).
    pub fn create(geometry: Geometry, backing: Backing<'_>) -> Result<Arc<Self>, AttachError> {
        let page = rustix::param::page_size();
        if geometry.data_size < page as u64 {
            return Err(AttachError::Geometry(GeometryError::DataSize(
                geometry.data_size,
            )));
        }
        let layout = Layout {
            page,
            lanes: geometry.lanes as usize,
            data: geometry.data_size as usize,
        };
        let fd = match backing {
            Backing::Memfd(name) => {
                let fd = fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                    .map_err(io_err("memfd_create"))?;
                fs::ftruncate(&fd, layout.file_len() as u64).map_err(io_err("ftruncate"))?;
                fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
                    .map_err(io_err("fcntl(F_ADD_SEALS)"))?;
                fd
            }
            Backing::File(path) => {
                let fd = fs::open(
                    path,
                    OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io_err("open"))?;
                fs::ftruncate(&fd, layout.file_len() as u64).map_err(io_err("ftruncate"))?;
                fd
            }
        };
        let mem = MappedMemory::map(fd, layout, geometry)?;
        // Zero-filled by ftruncate; publish the meta block, magic last.
        let meta = mem.meta();
        meta.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        meta.page_size.store(page as u32, Ordering::Relaxed);
        meta.lanes.store(geometry.lanes, Ordering::Relaxed);
        meta.flags.store(0, Ordering::Relaxed);
        meta.data_size.store(geometry.data_size, Ordering::Relaxed);
        meta.file_len
            .store(layout.file_len() as u64, Ordering::Relaxed);
        // Release pairs with the Acquire load of magic in `attach_fd`.
        meta.magic.store(MAGIC, Ordering::Release);
        Ok(Ring::from_memory(mem))
    }

    /// Attaches to a ring file by path.
    ///
    /// # Errors
    /// As for [`Ring::attach_fd`], plus the `open` failure.
    pub fn attach(path: &Path) -> Result<Arc<Self>, AttachError> {
        let fd = fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(io_err("open"))?;
        Self::attach_fd(fd)
    }

    /// Attaches to a ring whose fd another process passed us, after checking
    /// everything in its meta page against the file.
    ///
    /// # Errors
    /// [`AttachError`] naming the field that does not check out.
    pub fn attach_fd(fd: OwnedFd) -> Result<Arc<Self>, AttachError> {
        let page = rustix::param::page_size();
        let file_len = fs::fstat(&fd).map_err(io_err("fstat"))?.st_size as u64;
        if file_len < page as u64 {
            return Err(AttachError::TooShort { len: file_len });
        }
        let probe = Probe::map(&fd, page)?;
        let meta = probe.meta();
        let magic = meta.magic.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(AttachError::Magic { found: magic });
        }
        let version = meta.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(AttachError::Version {
                found: version,
                supported: LAYOUT_VERSION,
            });
        }
        let page_size = meta.page_size.load(Ordering::Relaxed);
        if page_size as usize != page {
            return Err(AttachError::PageSize {
                found: page_size,
                ours: page as u32,
            });
        }
        let flags = meta.flags.load(Ordering::Relaxed);
        if flags != 0 {
            return Err(AttachError::Flags { found: flags });
        }
        let geometry = Geometry::new(
            meta.lanes.load(Ordering::Relaxed),
            meta.data_size.load(Ordering::Relaxed),
        )
        .map_err(AttachError::Geometry)?;
        if geometry.data_size < page as u64 {
            return Err(AttachError::Geometry(GeometryError::DataSize(
                geometry.data_size,
            )));
        }
        let layout = Layout {
            page,
            lanes: geometry.lanes as usize,
            data: geometry.data_size as usize,
        };
        let recorded = meta.file_len.load(Ordering::Relaxed);
        if recorded != layout.file_len() as u64 || file_len != recorded {
            return Err(AttachError::Length {
                file: file_len,
                recorded,
                expected: layout.file_len() as u64,
            });
        }
        drop(probe);
        Ok(Ring::from_memory(MappedMemory::map(fd, layout, geometry)?))
    }
}

impl MappedMemory {
    fn map(fd: OwnedFd, layout: Layout, geometry: Geometry) -> Result<Self, AttachError> {
        let va_len = layout.va_len();
        // SAFETY: a fresh anonymous PROT_NONE reservation at an address of the
        // kernel's choosing touches no existing mapping.
        let base = unsafe {
            mm::mmap_anonymous(
                std::ptr::null_mut(),
                va_len,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(io_err("mmap(reserve)"))?;
        // From here the reservation is owned by `mem`: its Drop unmaps it on
        // any error below.
        let mem = MappedMemory {
            base: NonNull::new(base.cast()).expect("mmap never returns null on success"),
            va_len,
            page: layout.page,
            geometry,
            fd,
        };
        let rw = ProtFlags::READ | ProtFlags::WRITE;
        let fixed = MapFlags::SHARED | MapFlags::FIXED;
        mem.map_fixed(0, layout.control_len(), rw, fixed, 0)?;
        for lane in 0..layout.lanes {
            let file_off = layout.data_file_offset(lane) as u64;
            let va = layout.data_va_offset(lane);
            mem.map_fixed(va, layout.data, rw, fixed | MapFlags::POPULATE, file_off)?;
            mem.map_fixed(
                va + layout.data,
                layout.data,
                rw,
                fixed | MapFlags::POPULATE,
                file_off,
            )?;
        }
        Ok(mem)
    }

    fn map_fixed(
        &self,
        va_off: usize,
        len: usize,
        prot: ProtFlags,
        flags: MapFlags,
        file_off: u64,
    ) -> Result<(), AttachError> {
        debug_assert!(va_off + len <= self.va_len);
        // SAFETY: [base + va_off, + len) lies inside our own PROT_NONE
        // reservation (checked above), so MAP_FIXED replaces only pages this
        // value owns; the file is at least `file_off + len` long (the caller
        // derived both from a checked layout).
        unsafe {
            mm::mmap(
                self.base.as_ptr().add(va_off).cast::<c_void>(),
                len,
                prot,
                flags,
                &self.fd,
                file_off,
            )
        }
        .map(|_| ())
        .map_err(io_err("mmap(fixed)"))
    }

    fn meta(&self) -> &MetaBlock {
        // SAFETY: page 0 is mapped read-write for our lifetime; MetaBlock is
        // all atomics, page-aligned here.
        unsafe { &*self.base.as_ptr().cast::<MetaBlock>() }
    }

    /// The ring's fd, to pass to another process (for example over a Unix
    /// socket with SCM_RIGHTS, or by inheritance after clearing CLOEXEC).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for MappedMemory {
    fn drop(&mut self) {
        // SAFETY: [base, base + va_len) is the reservation we made; every
        // handle that could touch it holds the Arc that owns us.
        let _ = unsafe { mm::munmap(self.base.as_ptr().cast(), self.va_len) };
    }
}

// SAFETY: `control()` is at CONTROL_OFFSET of page 0 and lane `l`'s control
// page is page 1 + l, all mapped read-write for our lifetime and aligned;
// `data(l)` is the start of lane l's double mapping, 2 * data_size bytes,
// page-aligned and disjoint from the others; `header` stays below data_size.
unsafe impl RingMemory for MappedMemory {
    fn geometry(&self) -> Geometry {
        self.geometry
    }
    #[inline]
    fn control(&self) -> &ControlBlock {
        // SAFETY: see the impl's SAFETY comment.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(CONTROL_OFFSET)
                .cast::<ControlBlock>()
        }
    }
    #[inline]
    fn lane(&self, lane: usize) -> &LaneControl {
        assert!(lane < self.geometry.lanes as usize);
        // SAFETY: see the impl's SAFETY comment; lane < lanes was checked.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(self.page * (1 + lane))
                .cast::<LaneControl>()
        }
    }
    #[inline]
    fn data(&self, lane: usize) -> *mut u8 {
        assert!(lane < self.geometry.lanes as usize);
        let offset = self.page * (1 + self.geometry.lanes as usize)
            + lane * 2 * self.geometry.data_size as usize;
        // SAFETY: the offset is data_va_offset(lane), inside the reservation.
        unsafe { self.base.as_ptr().add(offset) }
    }
    #[inline]
    fn header(&self, lane: usize, off: usize) -> &AtomicU64 {
        debug_assert!(off < self.geometry.data_size as usize && off.is_multiple_of(8));
        // Masked, so the deref below is sound whatever the caller passes.
        let off = off & (self.geometry.data_size as usize - 1) & !7;
        // SAFETY: data(lane) + off is inside the lane's first mapping,
        // 8-aligned (page-aligned base, off a multiple of 8).
        unsafe { &*self.data(lane).add(off).cast::<AtomicU64>() }
    }
    fn wait(&self, expected: u32, timeout: Option<Duration>) {
        futex::wait(&self.control().wake_seq, expected, timeout, false);
    }
    fn wake(&self) {
        futex::wake(&self.control().wake_seq, false);
    }
}

/// The first page alone, mapped to read the meta block before trusting it.
struct Probe {
    base: NonNull<u8>,
    len: usize,
}

impl Probe {
    fn map(fd: &OwnedFd, page: usize) -> Result<Self, AttachError> {
        // SAFETY: a fresh shared mapping of the file's first page (the file is
        // at least a page long) at an address of the kernel's choosing.
        let base = unsafe {
            mm::mmap(
                std::ptr::null_mut(),
                page,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(io_err("mmap(meta)"))?;
        Ok(Probe {
            base: NonNull::new(base.cast()).expect("mmap never returns null on success"),
            len: page,
        })
    }

    fn meta(&self) -> &MetaBlock {
        // SAFETY: one page mapped read-write for our lifetime, page-aligned.
        unsafe { &*self.base.as_ptr().cast::<MetaBlock>() }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly [base, base + len).
        let _ = unsafe { mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Why a mapped ring could not be created or attached.
#[derive(Debug)]
pub enum AttachError {
    /// A system call failed.
    Io {
        /// The call.
        op: &'static str,
        /// Its error.
        source: io::Error,
    },
    /// The file is shorter than one page.
    TooShort {
        /// Its length.
        len: u64,
    },
    /// The file does not start with the ring magic: not a ring.
    Magic {
        /// The first 8 bytes, little-endian.
        found: u64,
    },
    /// The ring has another layout version.
    Version {
        /// The file's version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The ring was created with another page size.
    PageSize {
        /// The file's page size.
        found: u32,
        /// Ours.
        ours: u32,
    },
    /// Unknown flags are set.
    Flags {
        /// The flags word.
        found: u32,
    },
    /// The recorded geometry is out of range.
    Geometry(GeometryError),
    /// The file length disagrees with the geometry.
    Length {
        /// The file's actual length.
        file: u64,
        /// The length its meta block records.
        recorded: u64,
        /// The length the geometry implies.
        expected: u64,
    },
}

fn io_err(op: &'static str) -> impl FnOnce(rustix::io::Errno) -> AttachError {
    move |e| AttachError::Io {
        op,
        source: e.into(),
    }
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Io { op, source } => write!(f, "{op} failed: {source}"),
            AttachError::TooShort { len } => {
                write!(f, "not a ring: the file is {len} bytes, less than a page")
            }
            AttachError::Magic { found } => {
                write!(f, "not a ring: magic {found:#018x} is not ODOCKRNG")
            }
            AttachError::Version { found, supported } => {
                write!(
                    f,
                    "ring layout version {found} is not supported (this build reads {supported})"
                )
            }
            AttachError::PageSize { found, ours } => {
                write!(
                    f,
                    "ring made for page size {found}, this machine's is {ours}"
                )
            }
            AttachError::Flags { found } => write!(f, "ring has unknown flags {found:#x}"),
            AttachError::Geometry(e) => write!(f, "ring geometry out of range: {e}"),
            AttachError::Length {
                file,
                recorded,
                expected,
            } => write!(
                f,
                "ring file is {file} bytes, its meta block records {recorded}, its geometry implies {expected}"
            ),
        }
    }
}

impl std::error::Error for AttachError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AttachError::Io { source, .. } => Some(source),
            AttachError::Geometry(e) => Some(e),
            _ => None,
        }
    }
}
