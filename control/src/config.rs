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
//! write_ahead_bytes = 1048576 # write (unsynced) and start writeback once this much is buffered; 0: off
//!
//! [access]                    # SO_PEERCRED allow-list; empty admin lists: the daemon's own uid
//! admin_uids = [1000]
//! admin_gids = []
//! read_uids = []
//! read_gids = [1001]
//!
//! [[sinks]]                   # copies of the committed evidence (see crate::sink); any number
//! name = "siem"               # required, unique: names the cursor file <storage>/sinks/<name>.cursor
//! kind = "jsonl"              # jsonl | webhook
//! path = "/var/log/odock/evidence.jsonl"   # jsonl: the file
//! max_bytes = 104857600       # jsonl: rotate before the file passes this size (default 100 MiB)
//! keep = 5                    # jsonl: rotated files kept, <path>.1 .. <path>.5 (default 5)
//! batch_size = 1000           # records per write or post (default 1000)
//! backoff_ms = 100            # first retry wait after a failed delivery (default 100)
//! max_backoff_ms = 30000      # the wait doubles up to this (default 30000)
//! [sinks.filter]              # optional; each non-empty list must hold the record's value
//! plugins = ["dlp-redact"]
//! gates = ["request"]         # none | request | response | complete
//! verdicts = ["block"]        # continue | block | pause | error | ...
//! tenants = ["acme"]
//!
//! [[sinks]]
//! name = "alerts"
//! kind = "webhook"
//! url = "http://127.0.0.1:9000/odock"   # webhook: plain http:// only
//! timeout_ms = 5000           # webhook: per post (default 5000)
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::log::{IoMode, LogConfig};
use crate::sink::{SinkConfig, SinkFilter, SinkKind, Url, gate_names, verdict_names};

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
    /// `[[sinks]]`.
    pub sinks: Vec<SinkSection>,
}

/// One `[[sinks]]` table, as written (checked by [`Config::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    /// Unique name.
    pub name: Option<String>,
    /// `jsonl` or `webhook`.
    pub kind: Option<String>,
    /// jsonl: the file.
    pub path: Option<PathBuf>,
    /// jsonl: rotation size.
    pub max_bytes: Option<u64>,
    /// jsonl: rotated files kept.
    pub keep: Option<u32>,
    /// webhook: the URL.
    pub url: Option<String>,
    /// webhook: per-post timeout, ms.
    pub timeout_ms: Option<u64>,
    /// Records per delivery.
    pub batch_size: Option<usize>,
    /// First retry wait, ms.
    pub backoff_ms: Option<u64>,
    /// Longest retry wait, ms.
    pub max_backoff_ms: Option<u64>,
    /// Which records.
    #[serde(default)]
    pub filter: FilterSection,
}

/// `[sinks.filter]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FilterSection {
    /// Plugin names.
    pub plugins: Vec<String>,
    /// Gate names.
    pub gates: Vec<String>,
    /// Verdict names.
    pub verdicts: Vec<String>,
    /// Tenants.
    pub tenants: Vec<String>,
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
    /// Write buffered records ahead of the commit once this many bytes are
    /// buffered (0: only at commit).
    pub write_ahead_bytes: usize,
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
            write_ahead_bytes: 1 << 20,
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
    /// A value is missing or out of range (the key, and why).
    Value(String, String),
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
    /// Sinks.
    pub sinks: Vec<SinkConfig>,
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
                "log.fsync_interval_ms".into(),
                "must be 1 to 10000".into(),
            ));
        }
        if l.segment_bytes < 4096 {
            return Err(ConfigError::Value(
                "log.segment_bytes".into(),
                "must be at least 4096".into(),
            ));
        }
        let io = IoMode::from_name(&l.io).ok_or_else(|| {
            ConfigError::Value(
                "log.io".into(),
                format!("{:?}: auto, io_uring or pwrite", l.io),
            )
        })?;
        let mut sinks: Vec<SinkConfig> = Vec::with_capacity(self.sinks.len());
        for (i, section) in self.sinks.iter().enumerate() {
            let sink = resolve_sink(i, section)?;
            if sinks.iter().any(|s| s.name == sink.name) {
                return Err(ConfigError::Value(
                    format!("sinks[{i}].name"),
                    format!("{:?} names another sink too", sink.name),
                ));
            }
            sinks.push(sink);
        }
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
                write_ahead_bytes: l.write_ahead_bytes,
            },
            io,
            access,
            sinks,
        })
    }
}

fn resolve_sink(i: usize, s: &SinkSection) -> Result<SinkConfig, ConfigError> {
    let key = |k: &str| format!("sinks[{i}].{k}");
    let bad = |k: &str, why: String| ConfigError::Value(key(k), why);
    let name = s
        .name
        .clone()
        .ok_or_else(|| bad("name", "missing".into()))?;
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        || name.starts_with('.')
    {
        return Err(bad(
            "name",
            format!("{name:?}: 1 to 64 of letters, digits, '.', '_', '-', not starting with '.'"),
        ));
    }
    let kind = s
        .kind
        .as_deref()
        .ok_or_else(|| bad("kind", "missing: jsonl or webhook".into()))?;
    let refuse = |k: &str, present: bool| {
        if present {
            Err(bad(k, format!("does not apply to a {kind} sink")))
        } else {
            Ok(())
        }
    };
    let kind = match kind {
        "jsonl" => {
            refuse("url", s.url.is_some())?;
            refuse("timeout_ms", s.timeout_ms.is_some())?;
            let path = s
                .path
                .clone()
                .ok_or_else(|| bad("path", "missing: the JSON lines file".into()))?;
            if !path.is_absolute() {
                return Err(bad(
                    "path",
                    format!("{}: must be an absolute path", path.display()),
                ));
            }
            let max_bytes = s.max_bytes.unwrap_or(100 << 20);
            if max_bytes < 4096 {
                return Err(bad("max_bytes", "must be at least 4096".into()));
            }
            let keep = s.keep.unwrap_or(5);
            if keep > 1000 {
                return Err(bad("keep", "must be 0 to 1000".into()));
            }
            SinkKind::Jsonl {
                path,
                max_bytes,
                keep,
            }
        }
        "webhook" => {
            refuse("path", s.path.is_some())?;
            refuse("max_bytes", s.max_bytes.is_some())?;
            refuse("keep", s.keep.is_some())?;
            let url = s
                .url
                .as_deref()
                .ok_or_else(|| bad("url", "missing: http://host[:port]/path".into()))?;
            let url = Url::parse(url).map_err(|e| bad("url", e))?;
            let timeout_ms = s.timeout_ms.unwrap_or(5000);
            if timeout_ms == 0 || timeout_ms > 600_000 {
                return Err(bad("timeout_ms", "must be 1 to 600000".into()));
            }
            SinkKind::Webhook {
                url,
                timeout: Duration::from_millis(timeout_ms),
            }
        }
        other => {
            return Err(bad(
                "kind",
                format!("unknown kind {other:?}: jsonl or webhook"),
            ));
        }
    };
    let batch_size = s.batch_size.unwrap_or(1000);
    if batch_size == 0 || batch_size > 1_000_000 {
        return Err(bad("batch_size", "must be 1 to 1000000".into()));
    }
    let backoff_ms = s.backoff_ms.unwrap_or(100);
    if backoff_ms == 0 || backoff_ms > 3_600_000 {
        return Err(bad("backoff_ms", "must be 1 to 3600000".into()));
    }
    let max_backoff_ms = s.max_backoff_ms.unwrap_or(30_000);
    if max_backoff_ms < backoff_ms || max_backoff_ms > 3_600_000 {
        return Err(bad(
            "max_backoff_ms",
            format!("must be backoff_ms ({backoff_ms}) to 3600000"),
        ));
    }
    let f = &s.filter;
    let check = |list: &[String], field: &str, known: Option<&[&str]>| {
        for (j, v) in list.iter().enumerate() {
            let k = format!("filter.{field}[{j}]");
            if v.is_empty() {
                return Err(bad(&k, "empty value".into()));
            }
            if let Some(known) = known
                && !known.contains(&v.as_str())
            {
                return Err(bad(
                    &k,
                    format!("unknown {v:?}: one of {}", known.join(", ")),
                ));
            }
        }
        Ok(())
    };
    check(&f.plugins, "plugins", None)?;
    check(&f.tenants, "tenants", None)?;
    check(&f.gates, "gates", Some(&gate_names()))?;
    check(&f.verdicts, "verdicts", Some(&verdict_names()))?;
    Ok(SinkConfig {
        name,
        kind,
        filter: SinkFilter {
            plugins: f.plugins.clone(),
            gates: f.gates.clone(),
            verdicts: f.verdicts.clone(),
            tenants: f.tenants.clone(),
        },
        batch_size,
        backoff: Duration::from_millis(backoff_ms),
        max_backoff: Duration::from_millis(max_backoff_ms),
    })
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
