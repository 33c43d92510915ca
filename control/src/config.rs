//! The daemon's configuration: a TOML file, and defaults good enough to run
//! with none.
//!
//! ```toml
//! run_dir = "/run/user/1000/odock"       # default: $XDG_RUNTIME_DIR/odock, else /tmp/odock-<uid>
//! socket = "/run/user/1000/odock/control.sock"   # default: <run_dir>/control.sock
//! storage_dir = "/var/lib/odock"          # default: <run_dir>/control (put it on persistent storage)
//!
//! [log]
//! fsync_interval_ms = 10      # group commit: at least this often
//! fsync_bytes = 4194304       # ... or once this much is buffered
//! segment_bytes = 67108864
//! max_age_s = 604800          # retention; 0: keep forever
//! max_bytes = 1073741824      # retention; 0: no limit
//! io = "auto"                 # auto | io_uring | pwrite
//!
//! [access]                    # SO_PEERCRED allow-list; empty admin lists: the daemon's own uid
//! admin_uids = [1000]
//! admin_gids = []
//! read_uids = []
//! read_gids = [1001]
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::log::{IoMode, LogConfig};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The run directory shared with the dataplanes.
    pub run_dir: Option<PathBuf>,
    /// The API socket.
    pub socket: Option<PathBuf>,
    /// Where the state and the evidence log live.
    pub storage_dir: Option<PathBuf>,
    /// The evidence log.
    pub log: LogSection,
    /// Who may use the socket.
    pub access: Access,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Group commit interval, ms.
    pub fsync_interval_ms: u64,
    /// Group commit size, bytes.
    pub fsync_bytes: usize,
    /// Segment size, bytes.
    pub segment_bytes: u64,
    /// Retention by age, seconds (0: none).
    pub max_age_s: u64,
    /// Retention by size, bytes (0: none).
    pub max_bytes: u64,
    /// `auto`, `io_uring` or `pwrite`.
    pub io: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            fsync_interval_ms: 10,
            fsync_bytes: 4 << 20,
            segment_bytes: 64 << 20,
            max_age_s: 7 * 24 * 3600,
            max_bytes: 1 << 30,
            io: "auto".into(),
        }
    }
}

/// `[access]`: the SO_PEERCRED allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// Uids with the admin role.
    pub admin_uids: Vec<u32>,
    /// Gids with the admin role.
    pub admin_gids: Vec<u32>,
    /// Uids with the read-only role.
    pub read_uids: Vec<u32>,
    /// Gids with the read-only role.
    pub read_gids: Vec<u32>,
}

/// A configuration that cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file cannot be read.
    Read(PathBuf, std::io::Error),
    /// The TOML is invalid (the message names the key).
    Parse(PathBuf, String),
    /// A value is out of range.
    Value(&'static str, String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "config {}: {e}", p.display()),
            ConfigError::Parse(p, e) => write!(f, "config {}: {e}", p.display()),
            ConfigError::Value(k, e) => write!(f, "config key {k}: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A configuration with every default filled in.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Run directory.
    pub run_dir: PathBuf,
    /// Socket path.
    pub socket: PathBuf,
    /// Storage directory.
    pub storage_dir: PathBuf,
    /// Log settings.
    pub log: LogConfig,
    /// Write path.
    pub io: IoMode,
    /// Allow-list.
    pub access: Access,
}

/// The default run directory: `$XDG_RUNTIME_DIR/odock`, else
/// `/tmp/odock-<uid>`.
pub fn default_run_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => Path::new(&d).join("odock"),
        _ => PathBuf::from(format!("/tmp/odock-{}", rustix::process::getuid().as_raw())),
    }
}

impl Config {
    /// Reads a TOML file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        Config::parse(&text).map_err(|e| ConfigError::Parse(path.into(), e))
    }

    /// Parses TOML text.
    ///
    /// # Errors
    /// The parser's message.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Fills in the defaults.
    ///
    /// # Errors
    /// [`ConfigError::Value`] for a value out of range.
    pub fn resolve(self) -> Result<Resolved, ConfigError> {
        let run_dir = self.run_dir.unwrap_or_else(default_run_dir);
        let socket = self.socket.unwrap_or_else(|| run_dir.join("control.sock"));
        let storage_dir = self.storage_dir.unwrap_or_else(|| run_dir.join("control"));
        let l = &self.log;
        if l.fsync_interval_ms == 0 || l.fsync_interval_ms > 10_000 {
            return Err(ConfigError::Value(
                "log.fsync_interval_ms",
                "must be 1 to 10000".into(),
            ));
        }
        if l.segment_bytes < 4096 {
            return Err(ConfigError::Value(
                "log.segment_bytes",
                "must be at least 4096".into(),
            ));
        }
        let io = IoMode::from_name(&l.io).ok_or_else(|| {
            ConfigError::Value("log.io", format!("{:?}: auto, io_uring or pwrite", l.io))
        })?;
        let mut access = self.access;
        if access.admin_uids.is_empty() && access.admin_gids.is_empty() {
            access.admin_uids.push(rustix::process::getuid().as_raw());
        }
        Ok(Resolved {
            run_dir,
            socket,
            storage_dir,
            log: LogConfig {
                segment_bytes: l.segment_bytes,
                fsync_interval: Duration::from_millis(l.fsync_interval_ms),
                fsync_bytes: l.fsync_bytes.max(1),
                max_age: (l.max_age_s > 0).then(|| Duration::from_secs(l.max_age_s)),
                max_bytes: (l.max_bytes > 0).then_some(l.max_bytes),
            },
            io,
            access,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let c = Config::parse("run_dir = \"/tmp/x\"\n[log]\nfsync_interval_ms = 5\n").unwrap();
        let r = c.resolve().unwrap();
        assert_eq!(r.socket, Path::new("/tmp/x/control.sock"));
        assert_eq!(r.log.fsync_interval, Duration::from_millis(5));
        assert!(!r.access.admin_uids.is_empty());
        let e = Config::parse("[log]\nfsync_every = 5\n").unwrap_err();
        assert!(e.contains("fsync_every"), "{e}");
    }
}
