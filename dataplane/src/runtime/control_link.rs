//! The run-directory contract between a dataplane and control, and the
//! dataplane's side of it.
//!
//! Control and every dataplane of one host share a private run directory
//! (mode 0700, one user):
//!
//! ```text
//! <run>/policy.json                 written by control: the policy and the plugin
//!                                   registry entries it needs ([`PolicyFile`]);
//!                                   replaced atomically (write, fsync, rename)
//! <run>/evidence/<pid>-<ms>-w<N>.ring  created by a dataplane: worker N's evidence
//!                                   ring (MPSC, [`crate::ring`]); control attaches,
//!                                   drains and, once its creator is gone and it
//!                                   is empty, removes it
//! <run>/dataplanes/<pid>.json       written by a dataplane: what it runs
//!                                   ([`DataplaneStatus`]), refreshed every second
//! ```
//!
//! A [`ControlLink`] watches `policy.json` (a `stat` every 10 ms: cheap,
//! and a change reaches the runtime well within the 100 ms promise), installs
//! each new version into its [`Runtime`], and keeps the last good policy
//! when control is down, the file is missing, or a new version does not
//! install (the error is kept in the status). Files beat a socket push here:
//! a dataplane that starts while control is down still finds the last
//! policy, control needs no list of dataplanes to push to, and the rename
//! makes every update all-or-nothing.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use odock_plugin_abi::{Capabilities, Capability, Gate};
use serde::{Deserialize, Serialize};

use super::metrics::Counter;
use super::policy::{BindingSpec, FailureMode, Grant, PolicySpec, Scope};
use super::runner::{PluginSource, Runtime};
use crate::plugin::Pin;
use crate::ring::{AttachError, Backing, Geometry, MappedMemory, Ring};

/// The policy file's name in the run directory.
pub const POLICY_FILE: &str = "policy.json";
/// The directory of evidence rings.
pub const EVIDENCE_DIR: &str = "evidence";
/// The directory of dataplane status files.
pub const DATAPLANES_DIR: &str = "dataplanes";
/// The policy file format this code reads and writes.
pub const POLICY_FORMAT: u32 = 1;
/// How often the link looks at the policy file.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// `policy.json`: a policy version and everything needed to install it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// [`POLICY_FORMAT`].
    pub format: u32,
    /// Control's state version; rises with every change.
    pub version: u64,
    /// The registry entries of the plugins the bindings name.
    pub plugins: Vec<PluginEntry>,
    /// The bindings.
    pub bindings: Vec<BindingEntry>,
}

/// One registered plugin binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// The registered name (the plugin's own).
    pub name: String,
    /// The shared library.
    pub path: PathBuf,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// Where a binding applies; absent or null: any value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScopeEntry {
    /// Tenant.
    pub tenant: Option<String>,
    /// Virtual key id.
    pub virtual_key: Option<String>,
    /// Environment.
    pub environment: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// MCP server.
    pub mcp_server: Option<String>,
    /// MCP tool.
    pub mcp_tool: Option<String>,
}

/// Priority per gate (lower runs first); absent: not on that gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GatePriorities {
    /// Request gate.
    pub request: Option<i32>,
    /// Response gate.
    pub response: Option<i32>,
    /// Complete gate.
    pub complete: Option<i32>,
}

/// One binding as the file carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingEntry {
    /// The plugin's registered name.
    pub plugin: String,
    /// Where it applies.
    pub scope: ScopeEntry,
    /// Whether it runs.
    pub enabled: bool,
    /// Its gates and priorities.
    pub priority: GatePriorities,
    /// Granted capabilities, by name (`block`, `emit_evidence`, ...).
    pub capabilities: Vec<String>,
    /// Integrations it may call.
    pub integrations: Vec<String>,
    /// The config handed to the plugin's init, as text.
    pub config: String,
    /// `enforce`, `enforce_ignore_error`, `permissive` or `disabled`.
    pub failure_mode: String,
    /// The time budget per call, in microseconds.
    pub time_budget_us: u64,
}

/// Why a policy file cannot be used. Nothing is installed then.
#[derive(Debug)]
pub enum PolicyFileError {
    /// Reading it failed.
    Io(io::Error),
    /// It is not valid JSON of the format.
    Json(serde_json::Error),
    /// Its `format` is not [`POLICY_FORMAT`].
    Format(u32),
    /// A field holds a value the dataplane does not know.
    Field {
        /// The field, as a JSON path.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The runtime refused it.
    Install(super::runner::InstallError),
}

impl fmt::Display for PolicyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyFileError::Io(e) => write!(f, "policy file cannot be read: {e}"),
            PolicyFileError::Json(e) => write!(f, "policy file is not valid: {e}"),
            PolicyFileError::Format(v) => {
                write!(
                    f,
                    "policy file format {v}, this dataplane reads {POLICY_FORMAT}"
                )
            }
            PolicyFileError::Field { field, problem } => {
                write!(f, "policy file: {field}: {problem}")
            }
            PolicyFileError::Install(e) => write!(f, "policy does not install: {e}"),
        }
    }
}

impl std::error::Error for PolicyFileError {}

impl PolicyFile {
    /// Reads and parses a policy file.
    ///
    /// # Errors
    /// [`PolicyFileError::Io`], [`PolicyFileError::Json`] or
    /// [`PolicyFileError::Format`].
    pub fn read(path: &Path) -> Result<PolicyFile, PolicyFileError> {
        let bytes = fs::read(path).map_err(PolicyFileError::Io)?;
        let file: PolicyFile = serde_json::from_slice(&bytes).map_err(PolicyFileError::Json)?;
        if file.format != POLICY_FORMAT {
            return Err(PolicyFileError::Format(file.format));
        }
        Ok(file)
    }

    /// Writes the file as `<run>/policy.json` atomically: a temporary file
    /// in the same directory, fsync, rename, fsync of the directory.
    ///
    /// # Errors
    /// A step failed; the old file is then unchanged.
    pub fn write_atomic(&self, run_dir: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomic(&run_dir.join(POLICY_FILE), &bytes)
    }

    /// The runtime's spec and registry for this file.
    ///
    /// # Errors
    /// [`PolicyFileError::Field`] naming a field whose value is unknown.
    pub fn to_spec(&self) -> Result<(PolicySpec, Vec<PluginSource>), PolicyFileError> {
        let field = |field: String, problem: String| PolicyFileError::Field { field, problem };
        let mut registry = Vec::with_capacity(self.plugins.len());
        for (i, p) in self.plugins.iter().enumerate() {
            let pin = Pin::from_hex(&p.sha256)
                .map_err(|e| field(format!("plugins[{i}].sha256"), e.to_string()))?;
            registry.push(PluginSource {
                name: p.name.clone(),
                path: p.path.clone(),
                pin,
            });
        }
        let mut bindings = Vec::with_capacity(self.bindings.len());
        for (i, b) in self.bindings.iter().enumerate() {
            let mut caps = Capabilities::NONE;
            for (j, name) in b.capabilities.iter().enumerate() {
                let cap = Capability::from_name(name).ok_or_else(|| {
                    field(
                        format!("bindings[{i}].capabilities[{j}]"),
                        format!("unknown capability {name:?}"),
                    )
                })?;
                caps = caps.with(Capabilities::of(&[cap]));
            }
            let mut grant = Grant::new(caps);
            for name in &b.integrations {
                grant = grant.with_integration(name.clone());
            }
            let failure_mode = FailureMode::from_name(&b.failure_mode).ok_or_else(|| {
                field(
                    format!("bindings[{i}].failure_mode"),
                    format!("unknown failure mode {:?}", b.failure_mode),
                )
            })?;
            let s = &b.scope;
            bindings.push(BindingSpec {
                plugin: b.plugin.clone(),
                scope: Scope {
                    tenant: s.tenant.clone(),
                    virtual_key: s.virtual_key.clone(),
                    environment: s.environment.clone(),
                    model: s.model.clone(),
                    mcp_server: s.mcp_server.clone(),
                    mcp_tool: s.mcp_tool.clone(),
                },
                enabled: b.enabled,
                priority: [b.priority.request, b.priority.response, b.priority.complete],
                grant,
                config: b.config.as_bytes().to_vec(),
                failure_mode,
                time_budget: Duration::from_micros(b.time_budget_us),
            });
        }
        Ok((
            PolicySpec {
                version: self.version,
                bindings,
            },
            registry,
        ))
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename,
/// fsync of the directory); the file is created 0600.
///
/// # Errors
/// A step failed; `path` is then unchanged.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `<run>/dataplanes/<pid>.json`: what one dataplane runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DataplaneStatus {
    /// Its process id.
    pub pid: u32,
    /// The policy version installed (0: none yet).
    pub policy_version: u64,
    /// Why the last policy file seen did not install, if it did not.
    pub last_error: Option<String>,
    /// Its evidence ring files (names in `<run>/evidence`).
    pub rings: Vec<String>,
    /// When this status was written, UNIX epoch ms.
    pub updated_ms: u64,
    /// Per plugin and gate: the runtime's counters summed over workers
    /// (only gates with calls).
    #[serde(default)]
    pub plugins: Vec<PluginGateCounters>,
}

/// One plugin at one gate, as a dataplane's status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PluginGateCounters {
    /// The plugin.
    pub plugin: String,
    /// The gate.
    pub gate: String,
    /// Counter name ([`Counter::name`]) to value.
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Median call latency, ns (0: no calls).
    pub p50_ns: u64,
    /// 99th percentile call latency, ns.
    pub p99_ns: u64,
}

/// What the link has done, for health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// The policy version installed (0: none yet).
    pub policy_version: u64,
    /// Why the last policy file seen did not install, if it did not.
    pub last_error: Option<String>,
    /// Policies installed since start.
    pub installs: u64,
}

struct Shared {
    run_dir: PathBuf,
    runtime: Runtime,
    status: Mutex<LinkStatus>,
    rings: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// A dataplane's link to control through the run directory (see the
/// [module docs](self)). Dropping it stops the watcher and removes the
/// status file; the evidence rings stay for control to drain.
pub struct ControlLink {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

impl ControlLink {
    /// Starts watching `<run_dir>/policy.json` for `runtime`. Installs the
    /// policy already there, if any, before returning.
    ///
    /// # Errors
    /// The run directory or its subdirectories cannot be created.
    pub fn start(run_dir: &Path, runtime: Runtime) -> io::Result<ControlLink> {
        private_dir(run_dir)?;
        private_dir(&run_dir.join(EVIDENCE_DIR))?;
        private_dir(&run_dir.join(DATAPLANES_DIR))?;
        let shared = Arc::new(Shared {
            run_dir: run_dir.to_path_buf(),
            runtime,
            status: Mutex::new(LinkStatus::default()),
            rings: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let mut watcher = Watcher::default();
        watcher.poll(&shared);
        shared.write_status();
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("odock-control-link".into())
            .spawn(move || watcher.run(&s))?;
        Ok(ControlLink {
            shared,
            thread: Some(thread),
        })
    }

    /// Creates worker `worker`'s evidence ring under `<run>/evidence/`.
    ///
    /// # Errors
    /// What [`Ring::create`] returns.
    pub fn evidence_ring(
        &self,
        worker: u32,
        geometry: Geometry,
    ) -> Result<Arc<Ring<MappedMemory>>, AttachError> {
        let name = format!("{}-{}-w{worker}.ring", std::process::id(), unix_ms());
        let path = self.shared.run_dir.join(EVIDENCE_DIR).join(&name);
        let ring = Ring::create(geometry, Backing::File(&path))?;
        self.shared
            .rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name);
        self.shared.write_status();
        Ok(ring)
    }

    /// What the link has done.
    pub fn status(&self) -> LinkStatus {
        self.shared.status()
    }

    /// Waits until policy `version` (or a later one) is installed.
    pub fn wait_for_version(&self, version: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.status().policy_version < version {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// The runtime the link installs into.
    pub fn runtime(&self) -> &Runtime {
        &self.shared.runtime
    }
}

impl Drop for ControlLink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(self.shared.status_path());
    }
}

impl fmt::Debug for ControlLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlLink")
            .field("run_dir", &self.shared.run_dir)
            .field("status", &self.status())
            .finish()
    }
}

impl Shared {
    fn status(&self) -> LinkStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn plugin_counters(&self) -> Vec<PluginGateCounters> {
        let rt = &self.runtime;
        let mut out = Vec::new();
        for plugin in rt.plugins_with_metrics() {
            for gate in [Gate::Request, Gate::Response, Gate::Complete] {
                let counters: std::collections::BTreeMap<String, u64> = Counter::ALL
                    .iter()
                    .map(|c| (c.name().to_owned(), rt.counter(&plugin, gate, *c)))
                    .collect();
                if counters.get(Counter::Calls.name()).copied().unwrap_or(0) == 0 {
                    continue;
                }
                let h = rt.latency(&plugin, gate);
                let ns = |q| h.quantile(q).map_or(0, |d: Duration| d.as_nanos() as u64);
                out.push(PluginGateCounters {
                    plugin: plugin.clone(),
                    gate: gate.to_string(),
                    counters,
                    p50_ns: ns(0.5),
                    p99_ns: ns(0.99),
                });
            }
        }
        out
    }

    fn status_path(&self) -> PathBuf {
        self.run_dir
            .join(DATAPLANES_DIR)
            .join(format!("{}.json", std::process::id()))
    }

    fn write_status(&self) {
        let status = self.status();
        let file = DataplaneStatus {
            pid: std::process::id(),
            policy_version: status.policy_version,
            last_error: status.last_error,
            rings: self
                .rings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            updated_ms: unix_ms(),
            plugins: self.plugin_counters(),
        };
        if let Ok(bytes) = serde_json::to_vec(&file) {
            let _ = write_atomic(&self.status_path(), &bytes);
        }
    }
}

/// The file identity last seen: (inode, size, mtime ns).
#[derive(Default)]
struct Watcher {
    seen: Option<(u64, u64, i64)>,
    last_status: Option<Instant>,
}

impl Watcher {
    fn run(&mut self, shared: &Shared) {
        while !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(POLL_INTERVAL);
            let changed = self.poll(shared);
            if changed
                || self
                    .last_status
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                shared.write_status();
                self.last_status = Some(Instant::now());
            }
        }
    }

    /// Looks at the file once; installs a new version. Returns whether the
    /// status changed.
    fn poll(&mut self, shared: &Shared) -> bool {
        let path = shared.run_dir.join(POLICY_FILE);
        let Ok(meta) = fs::metadata(&path) else {
            // Control not there yet (or down): keep the last policy.
            return false;
        };
        let id = (
            meta.ino(),
            meta.size(),
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        );
        if self.seen == Some(id) {
            return false;
        }
        self.seen = Some(id);
        let installed = shared.status().policy_version;
        let result = PolicyFile::read(&path).and_then(|file| {
            if file.version == installed && installed != 0 {
                return Ok(None);
            }
            let (spec, registry) = file.to_spec()?;
            shared
                .runtime
                .install(spec, &registry)
                .map(Some)
                .map_err(PolicyFileError::Install)
        });
        let mut status = shared.status.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(None) => false,
            Ok(Some(version)) => {
                status.policy_version = version;
                status.last_error = None;
                status.installs += 1;
                true
            }
            Err(e) => {
                status.last_error = Some(e.to_string());
                true
            }
        }
    }
}
