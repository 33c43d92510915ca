//! A JSON lines file (what a SIEM's file collector tails), written at each
//! delivery and synced at each checkpoint (and before a rotation), rotated
//! by size:
//! before a batch would take the file past `max_bytes`, `<path>` becomes
//! `<path>.1`, `<path>.1` becomes `<path>.2`, ... up to `<path>.<keep>`,
//! and the oldest goes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::Destination;

/// The JSON lines destination.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    len: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o640)
        .open(path)
}

fn sync_parent(path: &Path) -> io::Result<()> {
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

impl JsonlSink {
    /// Opens (or creates) the file. A last line cut short by a crash (no
    /// newline at the end) is cut off: its records are past the cursor and
    /// are written again whole.
    ///
    /// # Errors
    /// The directory or the file cannot be created or read.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<JsonlSink> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let mut len = file.metadata()?.len();
        if len > 0 {
            let bytes = fs::read(path)?;
            let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) as u64;
            if whole < len {
                file.set_len(whole)?;
                file.sync_all()?;
                len = whole;
            }
        }
        Ok(JsonlSink {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            file,
            len,
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        // What the cursor may move past must be durable in whichever file
        // holds it.
        self.file.sync_data()?;
        let _ = fs::remove_file(self.rotated(self.keep));
        for n in (1..self.keep).rev() {
            match fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = open_append(&self.path)?;
        self.len = 0;
        sync_parent(&self.path)
    }
}

impl Destination for JsonlSink {
    fn deliver(&mut self, lines: &[String], _first: u64, _last: u64) -> Result<(), String> {
        let bytes: usize = lines.iter().map(String::len).sum();
        if self.len > 0 && self.len + bytes as u64 > self.max_bytes {
            self.rotate()
                .map_err(|e| format!("rotating {}: {e}", self.path.display()))?;
        }
        let mut buf = Vec::with_capacity(bytes);
        for l in lines {
            buf.extend_from_slice(l.as_bytes());
        }
        if let Err(e) = self.file.write_all(&buf) {
            // What reached the file is unknown: cut back to the last whole
            // batch so a retry does not leave a torn line in the middle.
            let _ = self.file.set_len(self.len);
            return Err(format!("writing {}: {e}", self.path.display()));
        }
        self.len += bytes as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), String> {
        self.file
            .sync_data()
            .map_err(|e| format!("syncing {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_keeping_n_files_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.jsonl");
        fs::write(&path, "{\"a\":1}\n{\"tor").unwrap();
        let mut s = JsonlSink::open(&path, 40, 2).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
        let line = |i: u32| format!("{{\"i\":{i:010}}}\n"); // 17 bytes
        for i in 0..8 {
            s.deliver(&[line(i)], 0, 0).unwrap();
        }
        // 8 + 17 fits, 8 + 17 + 17 > 40: then two lines a file.
        let cur = fs::read_to_string(&path).unwrap();
        let one = fs::read_to_string(s.rotated(1)).unwrap();
        let two = fs::read_to_string(s.rotated(2)).unwrap();
        assert_eq!(cur, line(7));
        assert_eq!(one, line(5) + &line(6));
        assert_eq!(two, line(3) + &line(4));
        assert!(!s.rotated(3).exists(), "keep = 2");
    }
}
