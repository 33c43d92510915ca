//! Where segments live: a small trait, so tests can freeze writes at step N,
//! keep only what was synced, tear the tail, and reopen the image a crash
//! would leave.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::uring::Uring;

/// A directory of segment files.
pub trait Storage: Clone + Send + Sync + 'static {
    /// A segment open for appending.
    type File: SegmentFile;
    /// The names of the segment files, in any order.
    ///
    /// # Errors
    /// The listing failed.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates a new, empty segment.
    ///
    /// # Errors
    /// It exists already, or creating it failed.
    fn create(&self, name: &str) -> io::Result<Self::File>;
    /// Opens an existing segment for appending.
    ///
    /// # Errors
    /// Opening failed.
    fn open(&self, name: &str) -> io::Result<Self::File>;
    /// Reads a whole segment.
    ///
    /// # Errors
    /// Reading failed (a segment removed by retention gives `NotFound`).
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Reads `len` bytes of a segment from `offset` (fewer at its end).
    ///
    /// # Errors
    /// As for [`Storage::read`].
    fn read_at(&self, name: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut b = self.read(name)?;
        let end = (offset.saturating_add(len) as usize).min(b.len());
        b.truncate(end);
        b.drain(..(offset as usize).min(end));
        Ok(b)
    }
    /// Replaces a small file next to the segments (a summary) atomically:
    /// write, sync, rename, sync of the directory.
    ///
    /// # Errors
    /// Writing failed; the old file, if any, is intact.
    fn write_file(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Removes a segment (or another file of the directory).
    ///
    /// # Errors
    /// Removing failed.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes creations and removals durable (fsync of the directory).
    ///
    /// # Errors
    /// The sync failed.
    fn sync_dir(&self) -> io::Result<()>;
    /// Which write path runs: `io_uring`, `pwrite` or `memory`.
    fn backend(&self) -> &'static str;
}

/// One segment open for appending.
pub trait SegmentFile: Send {
    /// Writes `data` at `offset` and makes it durable (data sync) before
    /// returning.
    ///
    /// # Errors
    /// The write or the sync failed; what reached the disk is unknown.
    fn write_sync(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Writes `data` at `offset` without a sync, and may ask the kernel to
    /// start writing it back; the next [`SegmentFile::write_sync`] makes it
    /// durable.
    ///
    /// # Errors
    /// The write failed; what reached the file is unknown.
    fn write_ahead(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Cuts the segment to `len` bytes, durably.
    ///
    /// # Errors
    /// The truncate or the sync failed.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// Which write path [`FileStorage`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring when the kernel allows it, else pwrite + fdatasync.
    #[default]
    Auto,
    /// io_uring only: opening fails when the kernel refuses it.
    Uring,
    /// pwrite + fdatasync.
    Pwrite,
}

impl IoMode {
    /// Parses `auto`, `io_uring` or `pwrite`.
    pub fn from_name(name: &str) -> Option<IoMode> {
        match name {
            "auto" => Some(IoMode::Auto),
            "io_uring" | "uring" => Some(IoMode::Uring),
            "pwrite" => Some(IoMode::Pwrite),
            _ => None,
        }
    }
}

/// Segments as files in a directory.
#[derive(Clone)]
pub struct FileStorage {
    dir: PathBuf,
    uring: Option<Arc<Mutex<Uring>>>,
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("dir", &self.dir)
            .field("backend", &self.backend())
            .finish()
    }
}

impl FileStorage {
    /// Segments in `dir` (created 0700 if missing), written the way `mode`
    /// says. With [`IoMode::Auto`] io_uring is probed once here.
    ///
    /// # Errors
    /// The directory cannot be created, or [`IoMode::Uring`] was asked for
    /// and the kernel refuses io_uring.
    pub fn new(dir: &Path, mode: IoMode) -> io::Result<FileStorage> {
        fs::create_dir_all(dir)?;
        let uring = match mode {
            IoMode::Pwrite => None,
            IoMode::Auto => Uring::probe().ok(),
            IoMode::Uring => Some(Uring::probe()?),
        };
        Ok(FileStorage {
            dir: dir.to_path_buf(),
            uring: uring.map(|u| Arc::new(Mutex::new(u))),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Storage for FileStorage {
    type File = DiskSegment;

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn create(&self, name: &str) -> io::Result<DiskSegment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.dir.join(name))?;
        Ok(DiskSegment {
            file,
            uring: self.uring.clone(),
        })
    }

    fn open(&self, name: &str) -> io::Result<DiskSegment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(name))?;
        Ok(DiskSegment {
            file,
            uring: self.uring.clone(),
        })
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.dir.join(name))
    }

    fn read_at(&self, name: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let file = File::open(self.dir.join(name))?;
        let size = file.metadata()?.len();
        let len = len.min(size.saturating_sub(offset)) as usize;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        odock_dataplane::runtime::control_link::write_atomic(&self.dir.join(name), bytes)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn backend(&self) -> &'static str {
        if self.uring.is_some() {
            "io_uring"
        } else {
            "pwrite"
        }
    }
}

/// A segment file on disk.
pub struct DiskSegment {
    file: File,
    uring: Option<Arc<Mutex<Uring>>>,
}

impl SegmentFile for DiskSegment {
    fn write_sync(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        match &self.uring {
            Some(uring) => uring
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_sync(self.file.as_raw_fd(), offset, data),
            None => {
                self.file.write_all_at(data, offset)?;
                self.file.sync_data()
            }
        }
    }

    fn write_ahead(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        match &self.uring {
            Some(uring) => uring
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_ahead(self.file.as_raw_fd(), offset, data),
            // No safe call starts writeback here (sync_file_range); the
            // data waits in the page cache for the commit's sync.
            None => self.file.write_all_at(data, offset),
        }
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }
}

/// Segments in memory, with a crash model: every file has the bytes
/// written (`data`) and the bytes synced (`durable`). Tests freeze writes
/// at step N (that write lands torn, half of it, and fails; every later
/// write fails) and reopen [`MemStorage::crash_image`].
#[derive(Clone, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Default)]
struct MemInner {
    files: BTreeMap<String, MemFile>,
    /// Segment reads (`read` or `read_at` of a `.seg` file).
    segment_reads: u64,
    writes: u64,
    freeze_at: Option<u64>,
    frozen: bool,
}

#[derive(Default, Clone)]
struct MemFile {
    data: Vec<u8>,
    durable: Vec<u8>,
}

impl MemStorage {
    /// Empty storage.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Makes write number `step` (counting from 0, over all files) land
    /// torn and fail, and every write after it fail.
    pub fn freeze_at(&self, step: u64) {
        self.lock().freeze_at = Some(step);
    }

    /// The image a crash leaves now: each file as synced, plus, with
    /// `keep_unsynced`, whatever was written after the last sync (torn
    /// writes included), as a page cache flushed at the wrong moment would.
    pub fn crash_image(&self, keep_unsynced: bool) -> MemStorage {
        let inner = self.lock();
        let files = inner
            .files
            .iter()
            .map(|(name, f)| {
                let bytes = if keep_unsynced {
                    f.data.clone()
                } else {
                    f.durable.clone()
                };
                (
                    name.clone(),
                    MemFile {
                        data: bytes.clone(),
                        durable: bytes,
                    },
                )
            })
            .collect();
        MemStorage {
            inner: Arc::new(Mutex::new(MemInner {
                files,
                ..MemInner::default()
            })),
        }
    }

    /// Replaces a file's bytes (written and durable): for tearing or
    /// corrupting an image by hand.
    pub fn set_file(&self, name: &str, bytes: Vec<u8>) {
        self.lock().files.insert(
            name.to_owned(),
            MemFile {
                data: bytes.clone(),
                durable: bytes,
            },
        );
    }

    /// How many times a segment file was read (whole or in part) since
    /// this storage was made.
    pub fn segment_reads(&self) -> u64 {
        self.lock().segment_reads
    }

    /// A file's bytes as written.
    pub fn file(&self, name: &str) -> Option<Vec<u8>> {
        self.lock().files.get(name).map(|f| f.data.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn frozen() -> io::Error {
    io::Error::other("storage frozen (simulated crash)")
}

impl Storage for MemStorage {
    type File = MemSegment;

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.lock().files.keys().cloned().collect())
    }

    fn create(&self, name: &str) -> io::Result<MemSegment> {
        let mut inner = self.lock();
        if inner.frozen {
            return Err(frozen());
        }
        if inner.files.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        inner.files.insert(name.to_owned(), MemFile::default());
        Ok(MemSegment {
            storage: self.clone(),
            name: name.to_owned(),
        })
    }

    fn open(&self, name: &str) -> io::Result<MemSegment> {
        if !self.lock().files.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(MemSegment {
            storage: self.clone(),
            name: name.to_owned(),
        })
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        if name.ends_with(".seg") {
            self.lock().segment_reads += 1;
        }
        self.file(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.frozen {
            return Err(frozen());
        }
        inner.files.insert(
            name.to_owned(),
            MemFile {
                data: bytes.to_vec(),
                durable: bytes.to_vec(),
            },
        );
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.frozen {
            return Err(frozen());
        }
        inner.files.remove(name);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// A segment of a [`MemStorage`].
pub struct MemSegment {
    storage: MemStorage,
    name: String,
}

impl MemSegment {
    /// A write, torn in half (and the storage frozen) when it is the write
    /// the test asked to fail; `sync` makes it durable.
    fn write(&mut self, offset: u64, data: &[u8], sync: bool) -> io::Result<()> {
        let mut inner = self.storage.lock();
        if inner.frozen {
            return Err(frozen());
        }
        let step = inner.writes;
        inner.writes += 1;
        let torn = inner.freeze_at == Some(step);
        let file = inner.files.entry(self.name.clone()).or_default();
        let data = if torn { &data[..data.len() / 2] } else { data };
        let end = offset as usize + data.len();
        if file.data.len() < end {
            file.data.resize(end, 0);
        }
        file.data[offset as usize..end].copy_from_slice(data);
        if torn {
            inner.frozen = true;
            return Err(frozen());
        }
        if sync {
            file.durable = file.data.clone();
        }
        Ok(())
    }
}

impl SegmentFile for MemSegment {
    fn write_sync(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write(offset, data, true)
    }

    fn write_ahead(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write(offset, data, false)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut inner = self.storage.lock();
        if inner.frozen {
            return Err(frozen());
        }
        let file = inner.files.entry(self.name.clone()).or_default();
        file.data.truncate(len as usize);
        file.durable = file.data.clone();
        Ok(())
    }
}
