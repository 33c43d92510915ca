//! The gate runner: one worker's chains, run over one frame at a time.
//!
//! A [`GateRunner`] belongs to one thread (a pinned worker, or a pinned
//! gateway thread running gates inline). It owns that worker's plugin
//! instances (one per binding, `init` once), its scratch buffers and its
//! copy-on-write arena, so a frame's path takes no lock, and once the
//! buffers have grown to their working size, allocates nothing.
//!
//! # One frame through one gate
//!
//! 1. If control pushed a new policy, adopt it *between* frames: instances of
//!    bindings that did not change are kept, new ones are `init`ed, dropped
//!    ones destroyed. A frame therefore sees exactly one whole policy.
//! 2. Look the chain up ([`CompiledPolicy::chain`]).
//! 3. Call each plugin in order with a view of the frame *as the plugins
//!    before it left it*: headers they set or removed, metadata, body
//!    ranges they replaced (copied into the arena; the original bytes are
//!    never written).
//! 4. Time each call against the binding's budget. A call cannot be
//!    preempted in process: an overrun is found when it returns and is
//!    handled like a failure by the binding's [`FailureMode`] (its transforms
//!    are dropped). A watchdog reports a worker stuck inside a plugin
//!    (see `runtime::watchdog`).
//! 5. A block ends the chain; later plugins do not run. Every call leaves a
//!    decision record; the host adds its own (denied calls, errors,
//!    unenforced verdicts, the plugin's records).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use odock_plugin_abi::view::{self, Header, Message};
use odock_plugin_abi::{Gate, ResponseMode};

use super::metrics::{Counter, Histogram, MAX_PLUGINS, WorkerMetrics};
use super::policy::{BindingSpec, CompiledPolicy, FailureMode, FrameKey, PolicyError, PolicySpec};
use crate::index::{ApiKind, FrameIndex, JsonStr, Part};
use crate::plugin::{
    Binding, Decision, EvidenceSink, FAIL_CLOSED_REASON, FAIL_CLOSED_STATUS, GateOutput, InitError,
    IntegrationAnswer, LoadError, LoadedPlugin, Pin, PluginInstance, PluginSpec, Transform,
};

/// Where a plugin binary is, as control's registry pins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSource {
    /// The registered name.
    pub name: String,
    /// The shared library.
    pub path: std::path::PathBuf,
    /// Its SHA-256.
    pub pin: Pin,
}

/// Why a policy could not be installed. Nothing changes when it fails.
#[derive(Debug)]
pub enum InstallError {
    /// The spec does not compile.
    Policy(PolicyError),
    /// A binding names a plugin the registry does not have.
    UnknownPlugin {
        /// The binding's position.
        binding: usize,
        /// The name.
        plugin: String,
    },
    /// A plugin refused to load (wrong pin, not granted, not a plugin...).
    Load(Box<LoadError>),
    /// More distinct plugins than the metrics can keep.
    TooManyPlugins,
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::Policy(e) => write!(f, "policy does not compile: {e}"),
            InstallError::UnknownPlugin { binding, plugin } => {
                write!(
                    f,
                    "bindings[{binding}] names plugin {plugin:?}, which is not registered"
                )
            }
            InstallError::Load(e) => write!(f, "{e}"),
            InstallError::TooManyPlugins => write!(f, "more than {MAX_PLUGINS} distinct plugins"),
        }
    }
}

impl std::error::Error for InstallError {}

/// A compiled policy with everything its bindings need, ready for workers.
pub(crate) struct Installed {
    pub(crate) policy: CompiledPolicy,
    /// Per binding id: the loaded plugin (with the binding's grant).
    plugins: Vec<Arc<LoadedPlugin>>,
    /// Per binding id: the metrics slot of its plugin.
    slots: Vec<usize>,
    /// Per binding id: the config, shared by the instances on every worker.
    configs: Vec<Arc<[u8]>>,
}

/// The runtime: the installed policy, the loaded plugins, every worker's
/// metrics. Cheap to clone; each worker gets its own [`GateRunner`].
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

struct Shared {
    /// The zero of the runners' `Busy` clocks.
    epoch: Instant,
    busy: Mutex<Vec<Arc<super::watchdog::Busy>>>,
    version: AtomicU64,
    installed: Mutex<Arc<Installed>>,
    loaded: Mutex<HashMap<LoadKey, Arc<LoadedPlugin>>>,
    slot_names: Mutex<Vec<String>>,
    workers: Mutex<Vec<Arc<WorkerMetrics>>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct LoadKey {
    name: String,
    path: std::path::PathBuf,
    pin: String,
    capabilities: u64,
    integrations: Vec<String>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Runtime {
    /// A runtime with an empty policy: every chain is empty.
    pub fn new() -> Runtime {
        let empty = Installed {
            policy: CompiledPolicy::compile(PolicySpec::default())
                .expect("the empty policy compiles"),
            plugins: Vec::new(),
            slots: Vec::new(),
            configs: Vec::new(),
        };
        Runtime {
            shared: Arc::new(Shared {
                epoch: Instant::now(),
                busy: Mutex::new(Vec::new()),
                version: AtomicU64::new(0),
                installed: Mutex::new(Arc::new(empty)),
                loaded: Mutex::new(HashMap::new()),
                slot_names: Mutex::new(Vec::new()),
                workers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Compiles `spec`, loads every plugin its bindings name (each with the
    /// binding's grant; a plugin already loaded with the same pin and grant
    /// is reused), and swaps the result in. Workers adopt it before their
    /// next frame. On error nothing changes.
    ///
    /// # Errors
    /// [`InstallError`] naming the binding, plugin and reason.
    pub fn install(
        &self,
        spec: PolicySpec,
        registry: &[PluginSource],
    ) -> Result<u64, InstallError> {
        let version = spec.version;
        let mut plugins = Vec::with_capacity(spec.bindings.len());
        let mut slots = Vec::with_capacity(spec.bindings.len());
        let mut configs = Vec::with_capacity(spec.bindings.len());
        {
            let mut loaded = self
                .shared
                .loaded
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut names = self
                .shared
                .slot_names
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (i, binding) in spec.bindings.iter().enumerate() {
                let source = registry
                    .iter()
                    .find(|s| s.name == binding.plugin)
                    .ok_or_else(|| InstallError::UnknownPlugin {
                        binding: i,
                        plugin: binding.plugin.clone(),
                    })?;
                let key = LoadKey {
                    name: source.name.clone(),
                    path: source.path.clone(),
                    pin: source.pin.to_string(),
                    capabilities: binding.grant.capabilities().bits(),
                    integrations: binding.grant.integrations().to_vec(),
                };
                let plugin = match loaded.get(&key) {
                    Some(p) => Arc::clone(p),
                    None => {
                        let p = LoadedPlugin::load(&PluginSpec {
                            name: source.name.clone(),
                            path: source.path.clone(),
                            pin: source.pin,
                            grant: binding.grant.clone(),
                        })
                        .map_err(|e| InstallError::Load(Box::new(e)))?;
                        loaded.insert(key, Arc::clone(&p));
                        p
                    }
                };
                let slot = match names.iter().position(|n| *n == binding.plugin) {
                    Some(s) => s,
                    None if names.len() < MAX_PLUGINS => {
                        names.push(binding.plugin.clone());
                        names.len() - 1
                    }
                    None => return Err(InstallError::TooManyPlugins),
                };
                plugins.push(plugin);
                slots.push(slot);
                configs.push(Arc::from(binding.config.as_slice()));
            }
        }
        let policy = CompiledPolicy::compile(spec).map_err(InstallError::Policy)?;
        let installed = Arc::new(Installed {
            policy,
            plugins,
            slots,
            configs,
        });
        *self
            .shared
            .installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = installed;
        // Release pairs with the Acquire load in `GateRunner::refresh`.
        self.shared.version.fetch_add(1, Ordering::Release);
        Ok(version)
    }

    /// The version (control's) of the policy installed last.
    pub fn policy_version(&self) -> u64 {
        self.current().policy.version()
    }

    fn current(&self) -> Arc<Installed> {
        Arc::clone(
            &self
                .shared
                .installed
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// A runner for worker `worker`, writing evidence to `sink`.
    pub fn runner(&self, worker: u32, sink: Box<dyn RuntimeSink>) -> GateRunner {
        let metrics = Arc::new(WorkerMetrics::new());
        let busy = Arc::new(super::watchdog::Busy::new(worker));
        self.shared
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&busy));
        self.shared
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&metrics));
        GateRunner {
            runtime: self.clone(),
            worker,
            seen: u64::MAX,
            installed: self.current(),
            instances: Vec::new(),
            out: GateOutput::new(),
            scratch: Vec::new(),
            chain: Vec::new(),
            state: FrameState::default(),
            views: Vec::new(),
            messages: Vec::new(),
            rewritten: Vec::new(),
            index: Box::new(FrameIndex::new()),
            indexed: Indexed::None,
            parked: HashMap::new(),
            followups: Vec::new(),
            model_text: Vec::with_capacity(64),
            tool_text: Vec::with_capacity(64),
            sink,
            metrics,
            busy,
        }
    }

    /// A counter summed over every worker, for `plugin` at `gate`.
    pub fn counter(&self, plugin: &str, gate: Gate, counter: Counter) -> u64 {
        let Some(slot) = self.slot(plugin) else {
            return 0;
        };
        self.workers()
            .iter()
            .map(|w| w.get(slot, gate, counter))
            .sum()
    }

    /// The latency histogram of `plugin` at `gate`, summed over workers.
    pub fn latency(&self, plugin: &str, gate: Gate) -> Histogram {
        let mut h = Histogram::default();
        if let Some(slot) = self.slot(plugin) {
            for w in self.workers() {
                w.add_latency(slot, gate, &mut h);
            }
        }
        h
    }

    /// The plugins that have metrics, by name.
    pub fn plugins_with_metrics(&self) -> Vec<String> {
        self.shared
            .slot_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn epoch(&self) -> Instant {
        self.shared.epoch
    }

    pub(crate) fn busy_handles(&self) -> Vec<Arc<super::watchdog::Busy>> {
        self.shared
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn plugin_name(&self, slot: usize) -> String {
        self.shared
            .slot_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(slot)
            .cloned()
            .unwrap_or_default()
    }

    fn slot(&self, plugin: &str) -> Option<usize> {
        self.shared
            .slot_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .position(|n| n == plugin)
    }

    fn workers(&self) -> Vec<Arc<WorkerMetrics>> {
        self.shared
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("policy_version", &self.policy_version())
            .finish_non_exhaustive()
    }
}

/// Where a runner's evidence goes: the host's records (a plugin's own,
/// denied calls, errors, unenforced verdicts) and the runtime's decision
/// records, one per plugin call.
pub trait RuntimeSink: EvidenceSink + Send {
    /// One plugin's decision on one frame.
    fn decision(&mut self, decision: &DecisionRecord<'_>);

    /// A plugin that did not run (or whose changes could not apply).
    fn skip(&mut self, skip: &SkipRecord<'_>);

    /// Follow-up work was queued, retried, failed or delivered.
    fn follow_up(&mut self, record: &FollowUpRecord<'_>);
}

/// What one plugin decided on one frame, for evidence.
#[derive(Debug, Clone, Copy)]
pub struct DecisionRecord<'a> {
    /// The request.
    pub request_id: u64,
    /// The worker.
    pub worker: u32,
    /// The gate.
    pub gate: Gate,
    /// The plugin.
    pub plugin: &'a str,
    /// The binding id in the installed policy.
    pub binding: u32,
    /// The installed policy's version.
    pub policy_version: u64,
    /// What the plugin's call came to, after its failure mode.
    pub outcome: CallOutcome<'a>,
    /// The changes it made (names only, see [`Change`]).
    pub changes: &'a [Change<'a>],
    /// How long the call took.
    pub duration: Duration,
    /// The frame's scope.
    pub scope: FrameKey<'a>,
    /// The binding's failure mode.
    pub failure_mode: FailureMode,
    /// The frame's body did not parse: its index is marked invalid.
    pub invalid_index: bool,
}

/// What a call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome<'a> {
    /// The frame goes on.
    Continue,
    /// The frame is blocked: the caller gets `status` and `reason`.
    Block {
        /// HTTP status.
        status: u16,
        /// User-visible reason.
        reason: &'a str,
        /// `true` when the plugin decided it; `false` when its failure mode
        /// did (it failed or overran under enforce).
        by_plugin: bool,
        /// The plugin's internal detail: evidence only, never the caller's.
        detail: &'a [u8],
    },
    /// The frame waits for an integration's answer.
    Pause,
    /// The call failed or overran; its failure mode let the frame go on.
    FailedOpen,
    /// The call overran its budget (the failure mode decided as above).
    Overran {
        /// The budget.
        budget: Duration,
    },
}

/// One change a plugin made, by name: header and metadata names, body
/// fields by JSON pointer, body ranges by position. Values are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// A header set.
    SetHeader(&'a [u8]),
    /// A header removed.
    RemoveHeader(&'a [u8]),
    /// A metadata entry set.
    SetMetadata(&'a str),
    /// A body range replaced.
    BodyRange {
        /// Offset.
        offset: u64,
        /// Length replaced.
        len: u64,
    },
    /// A body field replaced.
    BodyField(&'a str),
}

/// A request as the gateway hands it to the request gate.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFrame<'a> {
    /// The request's id, the same at every gate and in every record.
    pub request_id: u64,
    /// The caller's tenant.
    pub tenant: Option<&'a str>,
    /// The virtual key's id.
    pub virtual_key: Option<&'a str>,
    /// The environment.
    pub environment: Option<&'a str>,
    /// The model, when the gateway knows it from elsewhere; by default it
    /// comes from the body's parse-once index.
    pub model: Option<&'a str>,
    /// The MCP server called (from the gateway's route).
    pub mcp_server: Option<&'a str>,
    /// The MCP tool, when the gateway knows it from elsewhere; by default the
    /// `params.name` of a `tools/call` body.
    pub mcp_tool: Option<&'a str>,
    /// The API the body speaks (from the path, [`ApiKind::from_path`]); the
    /// index confirms or corrects it.
    pub api: ApiKind,
    /// The request headers.
    pub headers: &'a [Header<'a>],
    /// The request body.
    pub body: &'a [u8],
}

/// An upstream's whole answer, for the response gate.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseFrame<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: &'a [Header<'a>],
    /// The whole body.
    pub body: &'a [u8],
}

/// One chunk of a streamed answer (one SSE event, say).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChunkFrame<'a> {
    /// The HTTP status of the answer.
    pub status: u16,
    /// The response headers.
    pub headers: &'a [Header<'a>],
    /// This chunk's bytes.
    pub chunk: &'a [u8],
    /// 0 for the first chunk, then counting up.
    pub index: u64,
    /// Whether no chunk follows.
    pub last: bool,
}

/// One stream's state for [`GateRunner::response_chunk`] (see
/// [`GateRunner::stream_state`]).
#[derive(Debug)]
pub struct StreamState {
    whole_body_plugins: bool,
    buffer: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl StreamState {
    /// Whether the stream's chain has whole-body plugins (so it is buffered).
    pub fn buffers(&self) -> bool {
        self.whole_body_plugins
    }

    /// Whether the buffer passed its cap (the whole-body plugins were
    /// skipped, with evidence).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}

/// A plugin that did not run, or whose changes could not apply, and why.
#[derive(Debug, Clone, Copy)]
pub struct SkipRecord<'a> {
    /// The request.
    pub request_id: u64,
    /// The worker.
    pub worker: u32,
    /// The gate.
    pub gate: Gate,
    /// The plugin.
    pub plugin: &'a str,
    /// The binding id.
    pub binding: u32,
    /// A short code for why (`stream_over_buffer_cap`,
    /// `stream_already_sent`, `complete_queue_full`, ...).
    pub cause: &'static str,
    /// How many frames or calls this record stands for (1 but for queue
    /// overflow, which is counted).
    pub count: u64,
}

/// The gate's answer for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'r> {
    /// Go on, with the frame as the chain left it.
    Continue,
    /// Answer the caller with this status and reason; do not go upstream.
    Block {
        /// HTTP status.
        status: u16,
        /// User-visible reason (never the internal detail).
        reason: &'r str,
        /// The plugin that blocked.
        plugin: &'r str,
    },
    /// The frame is parked: make this integration call, then
    /// [`GateRunner::resume`] with its answer (or a timeout). Only at the
    /// request gate. The caller sees latency, not an error.
    Pause {
        /// The integration to call (one the binding's grant names).
        integration: &'r str,
        /// What to send it.
        payload: &'r [u8],
        /// How long to wait for its answer.
        timeout: Duration,
        /// The token to resume with.
        token: u64,
        /// The plugin that paused.
        plugin: &'r str,
    },
}

/// What a gate made of a frame: the verdict and the frame as the chain
/// left it. Borrows the runner (its arena) and the frame.
pub struct Outcome<'r> {
    /// The verdict.
    pub verdict: Verdict<'r>,
    state: &'r FrameState,
    original_headers: &'r [Header<'r>],
    original_body: &'r [u8],
}

impl<'r> Outcome<'r> {
    /// The headers as the chain left them, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'r [u8], &'r [u8])> + '_ {
        self.state
            .headers
            .iter()
            .map(|h| (self.resolve(h.0), self.resolve(h.1)))
    }

    /// The body as the chain left it (the original when nothing changed it).
    pub fn body(&self) -> &'r [u8] {
        self.resolve(self.state.body)
    }

    /// Whether any plugin changed the body.
    pub fn body_changed(&self) -> bool {
        !matches!(self.state.body, Bytes::Original)
    }

    /// Metadata entries the chain set, in order.
    pub fn metadata(&self) -> impl Iterator<Item = (&'r str, &'r [u8])> + '_ {
        self.state.metadata.iter().map(|(k, v)| {
            let key = std::str::from_utf8(self.resolve(*k))
                .expect("metadata keys are checked UTF-8 by the host");
            (key, self.resolve(*v))
        })
    }

    /// Whether the chain changed anything.
    pub fn changed(&self) -> bool {
        self.state.headers_changed || self.body_changed() || !self.state.metadata.is_empty()
    }

    fn resolve(&self, bytes: Bytes) -> &'r [u8] {
        self.state
            .resolve(bytes, self.original_headers, self.original_body)
    }
}

impl fmt::Debug for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("verdict", &self.verdict)
            .field("changed", &self.changed())
            .finish()
    }
}

/// Where bytes of the current frame live: in the caller's original frame or
/// in the runner's arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Bytes {
    /// The whole original body.
    #[default]
    Original,
    /// The name (0) or value (1) of original header `i`.
    OriginalHeader(u32, u8),
    /// `len` bytes at `start` of the arena.
    Arena { start: u32, len: u32 },
}

/// The frame as the chain has changed it so far.
#[derive(Default)]
struct FrameState {
    arena: Vec<u8>,
    headers: Vec<(Bytes, Bytes)>,
    headers_changed: bool,
    body: Bytes,
    metadata: Vec<(Bytes, Bytes)>,
    changes: Vec<ChangeRef>,
    ranges: Vec<(u64, u64, Bytes)>,
}

#[derive(Debug, Clone, Copy)]
enum ChangeRef {
    SetHeader(Bytes),
    RemoveHeader(Bytes),
    SetMetadata(Bytes),
    BodyRange(u64, u64),
    BodyField(Bytes),
}

impl FrameState {
    fn begin(&mut self, headers: &[Header<'_>]) {
        self.arena.clear();
        self.headers.clear();
        self.headers.extend(
            (0..headers.len() as u32)
                .map(|i| (Bytes::OriginalHeader(i, 0), Bytes::OriginalHeader(i, 1))),
        );
        self.headers_changed = false;
        self.body = Bytes::Original;
        self.metadata.clear();
    }

    fn stash(&mut self, bytes: &[u8]) -> Bytes {
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        Bytes::Arena {
            start,
            len: bytes.len() as u32,
        }
    }

    fn resolve<'s>(&'s self, bytes: Bytes, headers: &'s [Header<'s>], body: &'s [u8]) -> &'s [u8] {
        match bytes {
            Bytes::Arena { start, len } => &self.arena[start as usize..(start + len) as usize],
            original => resolve_original(original, headers, body),
        }
    }

    /// Applies one call's transforms; records their names in `changes`.
    fn apply(
        &mut self,
        out: &GateOutput,
        headers: &[Header<'_>],
        body: &[u8],
    ) -> Result<(), ApplyError> {
        self.changes.clear();
        self.ranges.clear();
        for t in out.transforms() {
            match t {
                Transform::SetHeader { name, value } => {
                    let (n, v) = (self.stash(name), self.stash(value));
                    self.remove_header(name, headers, body);
                    self.headers.push((n, v));
                    self.headers_changed = true;
                    self.changes.push(ChangeRef::SetHeader(n));
                }
                Transform::RemoveHeader { name } => {
                    let n = self.stash(name);
                    self.remove_header(name, headers, body);
                    self.headers_changed = true;
                    self.changes.push(ChangeRef::RemoveHeader(n));
                }
                Transform::SetMetadata { key, value } => {
                    let (k, v) = (self.stash(key.as_bytes()), self.stash(value));
                    self.metadata.push((k, v));
                    self.changes.push(ChangeRef::SetMetadata(k));
                }
                Transform::ReplaceBodyRange { offset, len, bytes } => {
                    let b = self.stash(bytes);
                    self.ranges.push((offset, len, b));
                    self.changes.push(ChangeRef::BodyRange(offset, len));
                }
                Transform::ReplaceBodyField { pointer, value } => {
                    // The field becomes a range of the body the plugin saw;
                    // the new value must be a whole JSON text.
                    crate::index::validate(value).map_err(|_| ApplyError::FieldValueNotJson)?;
                    let current = self.resolve(self.body, headers, body);
                    let span = crate::index::locate(current, pointer)
                        .map_err(|_| ApplyError::FieldNotFound)?;
                    let b = self.stash(value);
                    let p = self.stash(pointer.as_bytes());
                    self.ranges
                        .push((u64::from(span.start), u64::from(span.len), b));
                    self.changes.push(ChangeRef::BodyField(p));
                }
            }
        }
        if !self.ranges.is_empty() {
            self.rewrite_body(headers, body)?;
        }
        Ok(())
    }

    fn remove_header(&mut self, name: &[u8], headers: &[Header<'_>], body: &[u8]) {
        let mut i = 0;
        while i < self.headers.len() {
            let current = self.headers[i].0;
            if self
                .resolve(current, headers, body)
                .eq_ignore_ascii_case(name)
            {
                self.headers.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Copy-on-write: the body becomes the current body with the call's
    /// ranges replaced (the host checked they lie inside and do not overlap).
    fn rewrite_body(&mut self, headers: &[Header<'_>], body: &[u8]) -> Result<(), ApplyError> {
        self.ranges.sort_unstable_by_key(|r| r.0);
        let current = self.body;
        let current_len = self.resolve(current, headers, body).len() as u64;
        let start = self.arena.len();
        let mut at = 0u64;
        for i in 0..self.ranges.len() {
            let (offset, len, bytes) = self.ranges[i];
            if offset < at || offset + len > current_len {
                return Err(ApplyError::RangeOutOfBody);
            }
            self.copy_within_body(current, at as usize..offset as usize, headers, body);
            let Bytes::Arena { start, len: n } = bytes else {
                unreachable!("replacements are stashed")
            };
            self.arena
                .extend_from_within(start as usize..(start + n) as usize);
            at = offset + len;
        }
        self.copy_within_body(current, at as usize..current_len as usize, headers, body);
        self.body = Bytes::Arena {
            start: start as u32,
            len: (self.arena.len() - start) as u32,
        };
        Ok(())
    }

    fn copy_within_body(
        &mut self,
        current: Bytes,
        range: std::ops::Range<usize>,
        headers: &[Header<'_>],
        body: &[u8],
    ) {
        match current {
            Bytes::Arena { start, .. } => {
                let from = start as usize + range.start..start as usize + range.end;
                self.arena.extend_from_within(from);
            }
            original => self
                .arena
                .extend_from_slice(&resolve_original(original, headers, body)[range]),
        }
    }
}

/// Bytes of the caller's frame (not the arena).
fn resolve_original<'b>(bytes: Bytes, headers: &'b [Header<'b>], body: &'b [u8]) -> &'b [u8] {
    match bytes {
        Bytes::Original => body,
        Bytes::OriginalHeader(i, 0) => headers[i as usize].name(),
        Bytes::OriginalHeader(i, _) => headers[i as usize].value(),
        Bytes::Arena { .. } => unreachable!("arena bytes are resolved through the state"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApplyError {
    /// A field replacement's value is not a whole JSON text.
    FieldValueNotJson,
    /// A field replacement's pointer names no value of the body.
    FieldNotFound,
    /// Ranges overlap or run past the body.
    RangeOutOfBody,
}

/// One worker's runner. See the module docs.
pub struct GateRunner {
    runtime: Runtime,
    worker: u32,
    seen: u64,
    installed: Arc<Installed>,
    /// Per binding id of `installed`: the instance, or why it has none.
    instances: Vec<Result<PluginInstance, InitError>>,
    out: GateOutput,
    scratch: Vec<u64>,
    chain: Vec<u32>,
    state: FrameState,
    /// Recycled storage for the header views handed to plugins.
    views: Vec<HeaderSlot>,
    /// Recycled storage for the message views handed to plugins (the
    /// chain's cache, see `MessageCache`).
    messages: Vec<MessageSlot>,
    /// Recycled storage for the message views of a body a plugin rewrote.
    rewritten: Vec<MessageSlot>,
    /// The parse-once index of the current body.
    index: Box<FrameIndex>,
    /// Which body `index` describes.
    indexed: Indexed,
    /// Frames paused at the request gate, by request id.
    parked: HashMap<u64, Parked>,
    /// Follow-up work queued by hooks, in no particular order.
    followups: Vec<FollowUpTask>,
    /// Buffers for the decoded model and tool names of the current frame
    /// (scope keys).
    model_text: Vec<u8>,
    tool_text: Vec<u8>,
    sink: Box<dyn RuntimeSink>,
    metrics: Arc<WorkerMetrics>,
    /// What the watchdog reads: which plugin this runner is inside, since when.
    busy: Arc<super::watchdog::Busy>,
}

/// Storage with the layout of a [`Header`], so a cleared `Vec<Header<'a>>`
/// can be turned back into one without allocating (see `recycle`).
#[derive(Clone, Copy)]
#[repr(C)]
struct HeaderSlot([usize; 4]);

const _: () = assert!(std::mem::size_of::<HeaderSlot>() == std::mem::size_of::<Header<'static>>());
const _: () =
    assert!(std::mem::size_of::<MessageSlot>() == std::mem::size_of::<Message<'static>>());
const _: () =
    assert!(std::mem::align_of::<MessageSlot>() == std::mem::align_of::<Message<'static>>());

/// Storage with the layout of a [`Message`] (see `HeaderSlot`).
#[derive(Clone, Copy)]
#[repr(C)]
struct MessageSlot([u64; 5]);
const _: () =
    assert!(std::mem::align_of::<HeaderSlot>() == std::mem::align_of::<Header<'static>>());

/// A chain's message views of the request body, built on first use.
struct MessageCache<'f> {
    messages: Vec<Message<'f>>,
    built: bool,
}

/// The message views (system prompt first) of `body` as `index` found them.
fn message_views<'i, 'b>(
    index: &'i FrameIndex,
    body: &'b [u8],
) -> impl Iterator<Item = Message<'b>> + use<'i, 'b> {
    index.system.iter().chain(index.messages()).map(move |m| {
        Message::new(
            m.role,
            span_view(body, m.role_name_span()),
            span_view(body, m.content.map(|c| c.span)),
        )
    })
}

/// Turns an empty vector of one element type into an empty vector of another
/// of the same size and alignment, keeping its allocation (the standard
/// library's in-place collect; the zero-allocation test guards it).
fn recycle<A, B>(mut v: Vec<A>) -> Vec<B> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

impl GateRunner {
    /// The worker this runner serves.
    pub fn worker(&self) -> u32 {
        self.worker
    }

    /// The version of the policy this runner runs.
    pub fn policy_version(&self) -> u64 {
        self.installed.policy.version()
    }

    /// Adopts a newly installed policy, if any (step 1 of the module docs).
    /// Called before every frame; costs one atomic load when nothing changed.
    pub fn refresh(&mut self) {
        // Acquire pairs with the Release increment in `Runtime::install`.
        let version = self.runtime.shared.version.load(Ordering::Acquire);
        if version == self.seen {
            return;
        }
        // A parked frame finishes under the policy it started with: a new
        // policy waits until none is parked (overdue ones are expired).
        if !self.parked.is_empty() {
            self.expire_parked(Instant::now());
            if !self.parked.is_empty() {
                return;
            }
        }
        self.seen = version;
        let next = self.runtime.current();
        let mut old: Vec<Option<(usize, Result<PluginInstance, InitError>)>> =
            std::mem::take(&mut self.instances)
                .into_iter()
                .enumerate()
                .map(Some)
                .collect();
        let mut instances = Vec::with_capacity(next.plugins.len());
        for (id, binding) in next.policy.bindings().iter().enumerate() {
            // Keep an instance whose plugin, config and failure mode are the
            // same as before.
            let reuse = old.iter_mut().find_map(|slot| {
                let (old_id, inst) = slot.as_ref()?;
                let same = Arc::ptr_eq(&self.installed.plugins[*old_id], &next.plugins[id])
                    && self.installed.configs[*old_id] == next.configs[id]
                    && self.installed.policy.bindings()[*old_id].failure_mode
                        == binding.failure_mode
                    && inst.is_ok();
                if same {
                    slot.take().map(|(_, inst)| inst)
                } else {
                    None
                }
            });
            let instance = match reuse {
                Some(inst) => inst,
                None => next.plugins[id].instantiate(
                    Binding::new(
                        self.worker,
                        Arc::clone(&next.configs[id]),
                        binding.failure_mode,
                    ),
                    &mut *self.sink,
                ),
            };
            instances.push(instance);
        }
        drop(old); // destroys the instances of bindings that went away
        self.instances = instances;
        self.scratch.resize(next.policy.words(), 0);
        self.chain.reserve(next.policy.bindings().len());
        self.installed = next;
    }

    /// Runs the request gate over `frame`.
    pub fn request<'r>(&'r mut self, frame: &'r RequestFrame<'r>) -> Outcome<'r> {
        let subject = Subject {
            headers: frame.headers,
            body: frame.body,
        };
        let verdict = self.run_chain(Gate::Request, frame, subject, None);
        self.outcome(frame.request_id, verdict, subject)
    }

    /// Runs the response gate over a whole (not streamed) answer. Every
    /// plugin of the chain sees the whole body; a per-chunk plugin sees it
    /// as one last chunk. `request` is the request as it went upstream.
    pub fn response<'r>(
        &'r mut self,
        request: &'r RequestFrame<'r>,
        response: &'r ResponseFrame<'r>,
    ) -> Outcome<'r> {
        let subject = Subject {
            headers: response.headers,
            body: response.body,
        };
        let meta = ResponseMeta {
            status: response.status,
            chunk: None,
        };
        let verdict = self.run_chain(Gate::Response, request, subject, Some(meta));
        self.outcome(request.request_id, verdict, subject)
    }

    /// Runs the complete gate, after the caller has the answer: plugins
    /// emit evidence and queue follow-up work; nothing they decide changes
    /// the exchange (a block is not valid here and counts as a failure).
    /// Meant for the complete pool (`runtime::complete`), off the workers'
    /// hot path.
    pub fn complete(&mut self, request: &RequestFrame<'_>, response: &ResponseFrame<'_>) {
        let subject = Subject {
            headers: response.headers,
            body: response.body,
        };
        let meta = ResponseMeta {
            status: response.status,
            chunk: None,
        };
        let _ = self.run_chain(Gate::Complete, request, subject, Some(meta));
    }

    /// Runs the response gate over one chunk of a streamed answer (one SSE
    /// event, say). Per-chunk plugins see the chunk and may change it or end
    /// the stream (a block: the gateway sends a final error event instead of
    /// the chunk). Whole-body plugins do not run per chunk: `stream` buffers
    /// the chunks as they leave the chain (only when the chain has such a
    /// plugin, up to its cap), and on the last chunk they see the whole body.
    /// What they decide then can end the stream (a block) and leaves
    /// evidence; a change they make to the body comes too late to apply and
    /// is recorded as skipped. Header changes apply only on chunk 0, before
    /// the gateway sends the response head.
    pub fn response_chunk<'r>(
        &'r mut self,
        request: &'r RequestFrame<'r>,
        chunk: &'r ChunkFrame<'r>,
        stream: &'r mut StreamState,
    ) -> Outcome<'r> {
        let subject = Subject {
            headers: chunk.headers,
            body: chunk.chunk,
        };
        let meta = ResponseMeta {
            status: chunk.status,
            chunk: Some(ChunkMeta {
                index: chunk.index,
                last: chunk.last,
                whole_body: false,
            }),
        };
        let mut verdict = self.run_chain(Gate::Response, request, subject, Some(meta));
        if stream.whole_body_plugins {
            let out = self
                .state
                .resolve(self.state.body, subject.headers, subject.body);
            if stream.buffer.len() + out.len() <= stream.cap {
                stream.buffer.extend_from_slice(out);
            } else {
                stream.overflowed = true;
            }
        }
        if chunk.last && matches!(verdict, VerdictRef::Continue) && stream.whole_body_plugins {
            verdict = self.run_whole_body(request, chunk, stream);
        }
        self.outcome(request.request_id, verdict, subject)
    }

    /// The whole-body plugins of a stream, on its buffered body, at its end.
    fn run_whole_body(
        &mut self,
        request: &RequestFrame<'_>,
        chunk: &ChunkFrame<'_>,
        stream: &mut StreamState,
    ) -> VerdictRef {
        let buffer = std::mem::take(&mut stream.buffer);
        let verdict = if stream.overflowed {
            // Past the cap: the whole-body plugins cannot see the body.
            self.skip_whole_body(request, "stream_over_buffer_cap");
            VerdictRef::Continue
        } else {
            // The chunk state was for the last chunk; the whole body is a
            // subject of its own, read-only for a stream already sent.
            let subject = Subject {
                headers: chunk.headers,
                body: &buffer,
            };
            let meta = ResponseMeta {
                status: chunk.status,
                chunk: Some(ChunkMeta {
                    index: chunk.index,
                    last: true,
                    whole_body: true,
                }),
            };
            // A state of its own, so the last chunk's stays intact for its
            // outcome; a block's reason is carried over into it.
            let chunk_state = std::mem::take(&mut self.state);
            let v = self.run_chain(Gate::Response, request, subject, Some(meta));
            let nested = std::mem::replace(&mut self.state, chunk_state);
            match v {
                VerdictRef::Block {
                    status,
                    reason,
                    binding,
                } => {
                    let text = nested.resolve(reason, subject.headers, subject.body);
                    let reason = self.state.stash(text);
                    VerdictRef::Block {
                        status,
                        reason,
                        binding,
                    }
                }
                // The host refuses a pause outside the request gate.
                VerdictRef::Continue | VerdictRef::Pause => VerdictRef::Continue,
            }
        };
        stream.buffer = buffer;
        stream.buffer.clear();
        verdict
    }

    fn outcome<'r>(
        &'r self,
        request_id: u64,
        verdict: VerdictRef,
        subject: Subject<'r>,
    ) -> Outcome<'r> {
        let verdict = match verdict {
            VerdictRef::Continue => Verdict::Continue,
            VerdictRef::Pause => {
                let call = &self
                    .parked
                    .get(&request_id)
                    .expect("a paused frame is parked")
                    .call;
                Verdict::Pause {
                    integration: &call.integration,
                    payload: &call.payload,
                    timeout: call.timeout,
                    token: call.token,
                    plugin: &call.plugin,
                }
            }
            VerdictRef::Block {
                status,
                reason,
                binding,
            } => Verdict::Block {
                status,
                reason: std::str::from_utf8(self.state.resolve(
                    reason,
                    subject.headers,
                    subject.body,
                ))
                .expect("block reasons are checked UTF-8 by the host"),
                plugin: installed_plugin_name(&self.installed, binding),
            },
        };
        Outcome {
            verdict,
            state: &self.state,
            original_headers: subject.headers,
            original_body: subject.body,
        }
    }

    /// A stream's state for [`GateRunner::response_chunk`]: whether its
    /// chain has whole-body plugins, and their buffer. One per stream.
    pub fn stream_state(&mut self, request: &RequestFrame<'_>, cap: usize) -> StreamState {
        self.refresh();
        let key = self.frame_key_owned(request);
        let installed = Arc::clone(&self.installed);
        let key = key.as_key();
        let whole = installed
            .policy
            .chain(Gate::Response, &key, &mut self.scratch)
            .any(|id| installed.plugins[id as usize].response_mode() == ResponseMode::WholeBody);
        StreamState {
            whole_body_plugins: whole,
            buffer: Vec::new(),
            cap,
            overflowed: false,
        }
    }

    /// Runs the chain of `gate` over `subject`.
    fn run_chain(
        &mut self,
        gate: Gate,
        frame: &RequestFrame<'_>,
        subject: Subject<'_>,
        response: Option<ResponseMeta>,
    ) -> VerdictRef {
        self.refresh();
        self.state.begin(subject.headers);
        if gate == Gate::Request {
            self.indexed = Indexed::None;
        }
        // Parse once, and only when needed: a gate whose policy scopes
        // nothing on model or tool finds its chain without the body, and an
        // empty chain never reads it.
        let installed = Arc::clone(&self.installed);
        let body_keys = installed.policy.scopes_on_body_keys(gate)
            && (frame.model.is_none() || frame.mcp_tool.is_none());
        if !body_keys {
            // The chain does not depend on what the body says: found once,
            // here, before any parsing.
            let key = FrameKey {
                tenant: frame.tenant,
                virtual_key: frame.virtual_key,
                environment: frame.environment,
                model: frame.model,
                mcp_server: frame.mcp_server,
                mcp_tool: frame.mcp_tool,
            };
            self.chain.clear();
            self.chain
                .extend(installed.policy.chain(gate, &key, &mut self.scratch));
            if self.chain.is_empty() {
                return VerdictRef::Continue;
            }
        }
        self.index_request(gate, frame, subject);
        // The scope keys: the gateway's, else the index's, decoded (so an
        // escaped "gpt\u002d4o" cannot pass for another model than the
        // upstream will read). They live in buffers taken out of `self` for
        // the frame, so the chain may borrow `self` mutably meanwhile.
        let mut model_text = std::mem::take(&mut self.model_text);
        let mut tool_text = std::mem::take(&mut self.tool_text);
        let indexed_body = if gate == Gate::Request {
            subject.body
        } else {
            frame.body
        };
        let model = frame
            .model
            .or_else(|| decode(self.index.model, indexed_body, &mut model_text));
        let tool_name = self
            .index
            .mcp()
            .filter(|c| c.kind == crate::index::McpMethod::ToolsCall)
            .and_then(|c| c.name);
        let tool = frame
            .mcp_tool
            .or_else(|| decode(tool_name, indexed_body, &mut tool_text));
        let key = FrameKey {
            tenant: frame.tenant,
            virtual_key: frame.virtual_key,
            environment: frame.environment,
            model,
            mcp_server: frame.mcp_server,
            mcp_tool: tool,
        };
        if body_keys {
            self.chain.clear();
            self.chain
                .extend(installed.policy.chain(gate, &key, &mut self.scratch));
        }
        let (verdict, at) =
            self.chain_loop(&installed, gate, frame, subject, response, key, 0, None);
        if let VerdictRef::Pause = verdict {
            self.park(&installed, frame, subject, key, at);
        }
        self.model_text = model_text;
        self.tool_text = tool_text;
        verdict
    }

    /// Runs the chain from position `start`; the first call gets `answer`
    /// (a resumed pause). Returns the verdict and the position it stopped at.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one frame, passed through"
    )]
    fn chain_loop(
        &mut self,
        installed: &Arc<Installed>,
        gate: Gate,
        frame: &RequestFrame<'_>,
        subject: Subject<'_>,
        response: Option<ResponseMeta>,
        key: FrameKey<'_>,
        start: usize,
        answer: Option<&IntegrationAnswer<'_>>,
    ) -> (VerdictRef, usize) {
        // The message views of the request body, built once for the chain
        // while that body is the frame's own (every gate but a request gate
        // whose body a plugin rewrote), and handed to each plugin.
        let mut cache = MessageCache {
            messages: recycle(std::mem::take(&mut self.messages)),
            built: false,
        };
        let result = self.chain_loop_cached(
            installed, gate, frame, subject, response, key, start, answer, &mut cache,
        );
        self.messages = recycle(cache.messages);
        result
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one frame, passed through"
    )]
    fn chain_loop_cached<'f>(
        &mut self,
        installed: &'f Arc<Installed>,
        gate: Gate,
        frame: &'f RequestFrame<'f>,
        subject: Subject<'f>,
        response: Option<ResponseMeta>,
        key: FrameKey<'f>,
        start: usize,
        mut answer: Option<&IntegrationAnswer<'_>>,
        cache: &mut MessageCache<'f>,
    ) -> (VerdictRef, usize) {
        for i in start..self.chain.len() {
            let id = self.chain[i];
            // Per chunk, only per-chunk plugins; at a stream's end, only
            // whole-body ones.
            if let Some(ResponseMeta { chunk: Some(c), .. }) = response {
                let whole =
                    installed.plugins[id as usize].response_mode() == ResponseMode::WholeBody;
                if whole != c.whole_body {
                    continue;
                }
            }
            let site = Site {
                installed,
                id,
                gate,
                frame,
                key,
                subject,
                response,
            };
            if let Some(stop) = self.call(&site, answer.take(), cache) {
                return (stop, i);
            }
        }
        (VerdictRef::Continue, self.chain.len())
    }

    /// Parks a frame whose plugin at chain position `at` paused: its state,
    /// chain and policy move into the parked table until
    /// [`GateRunner::resume`] or expiry.
    fn park(
        &mut self,
        installed: &Arc<Installed>,
        frame: &RequestFrame<'_>,
        subject: Subject<'_>,
        key: FrameKey<'_>,
        at: usize,
    ) {
        let call = self
            .out
            .integration_call()
            .expect("a pause carries its integration call");
        let pending = PendingCall {
            token: call.token,
            integration: call.name.to_owned(),
            payload: call.payload.to_owned(),
            timeout: Duration::from_millis(u64::from(call.timeout_ms)),
            plugin: installed.policy.bindings()[self.chain[at] as usize]
                .plugin
                .clone(),
        };
        let parked = Parked {
            installed: Arc::clone(installed),
            chain: self.chain.clone(),
            at,
            state: std::mem::take(&mut self.state),
            key: OwnedKey::of(&key),
            body: (subject.body.as_ptr() as usize, subject.body.len()),
            deadline: Instant::now() + pending.timeout + PARK_GRACE,
            call: pending,
        };
        self.parked.insert(frame.request_id, parked);
    }

    /// Resumes a frame that paused at the request gate, with the answer to
    /// its integration call (or [`AnswerOutcome::Timeout`] /
    /// [`AnswerOutcome::Failed`](odock_plugin_abi::AnswerOutcome::Failed)).
    /// `frame` must be the frame that paused. The paused plugin decides on
    /// the answer; then the rest of the chain runs, under the policy the
    /// frame started with.
    ///
    /// # Errors
    /// [`ResumeError`] when no frame of this id is parked, the token is not
    /// the one the pause returned, or `frame` is not the frame that paused.
    pub fn resume<'r>(
        &'r mut self,
        frame: &'r RequestFrame<'r>,
        answer: &IntegrationAnswer<'_>,
    ) -> Result<Outcome<'r>, ResumeError> {
        let Some(parked) = self.parked.remove(&frame.request_id) else {
            return Err(ResumeError::NotParked {
                request_id: frame.request_id,
            });
        };
        let subject = Subject {
            headers: frame.headers,
            body: frame.body,
        };
        if parked.call.token != answer.token
            || parked.body != (frame.body.as_ptr() as usize, frame.body.len())
        {
            let wrong_token = parked.call.token != answer.token;
            self.parked.insert(frame.request_id, parked);
            return Err(if wrong_token {
                ResumeError::WrongToken {
                    request_id: frame.request_id,
                }
            } else {
                ResumeError::OtherFrame {
                    request_id: frame.request_id,
                }
            });
        }
        let Parked {
            installed,
            chain,
            at,
            state,
            key,
            ..
        } = parked;
        self.state = state;
        self.chain = chain;
        self.indexed = Indexed::None;
        self.index_request(Gate::Request, frame, subject);
        let key_ref = key.as_key();
        let (verdict, at) = self.chain_loop(
            &installed,
            Gate::Request,
            frame,
            subject,
            None,
            key_ref,
            at,
            Some(answer),
        );
        if let VerdictRef::Pause = verdict {
            self.park(&installed, frame, subject, key_ref, at);
        }
        Ok(self.outcome(frame.request_id, verdict, subject))
    }

    /// Queues the follow-up work the last call asked for (a failed call's
    /// was dropped by the host).
    fn queue_followups(&mut self, site: &Site<'_>) {
        if self.out.followups().len() == 0 {
            return;
        }
        let now = Instant::now();
        let plugin = &site.installed.policy.bindings()[site.id as usize].plugin;
        for f in self.out.followups() {
            self.sink.follow_up(&FollowUpRecord {
                request_id: site.frame.request_id,
                worker: self.worker,
                plugin,
                binding: site.id,
                kind: f.kind,
                attempts: 0,
                state: FollowUpState::Queued,
                detail: "",
            });
            self.followups.push(FollowUpTask {
                installed: Arc::clone(site.installed),
                binding: site.id,
                request_id: site.frame.request_id,
                kind: f.kind.to_owned(),
                payload: f.payload.to_owned(),
                attempts: 0,
                due: now,
            });
        }
    }

    /// Runs the follow-up work that is due (at most `max` pieces), off the
    /// hot path: a worker calls this when idle, the complete pool after each
    /// frame. A failure is tried again after a backoff that doubles (from
    /// 100 ms, at most 30 s), [`FOLLOW_UP_ATTEMPTS`] times in all; every
    /// step leaves a `follow_up` record. Returns how many ran.
    pub fn run_followups(&mut self, now: Instant, max: usize) -> usize {
        let mut ran = 0;
        let mut i = 0;
        while i < self.followups.len() && ran < max {
            if self.followups[i].due > now {
                i += 1;
                continue;
            }
            let mut task = self.followups.swap_remove(i);
            ran += 1;
            task.attempts += 1;
            let binding = &task.installed.policy.bindings()[task.binding as usize];
            // The instance of its binding, unless the policy changed since.
            let result = if Arc::ptr_eq(&task.installed, &self.installed) {
                match &mut self.instances[task.binding as usize] {
                    Ok(instance) => instance
                        .run_followup(
                            crate::plugin::FollowUp {
                                kind: &task.kind,
                                payload: &task.payload,
                            },
                            &mut *self.sink,
                        )
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            } else {
                task.attempts = FOLLOW_UP_ATTEMPTS;
                Err("its binding went away with a new policy".to_owned())
            };
            let (state, detail) = match &result {
                Ok(()) => (FollowUpState::Delivered, ""),
                Err(e) if task.attempts < FOLLOW_UP_ATTEMPTS => {
                    (FollowUpState::Retried, e.as_str())
                }
                Err(e) => (FollowUpState::Failed, e.as_str()),
            };
            self.sink.follow_up(&FollowUpRecord {
                request_id: task.request_id,
                worker: self.worker,
                plugin: &binding.plugin,
                binding: task.binding,
                kind: &task.kind,
                attempts: task.attempts,
                state,
                detail,
            });
            if state == FollowUpState::Retried {
                let backoff = FOLLOW_UP_BACKOFF
                    .saturating_mul(1 << (task.attempts - 1).min(16))
                    .min(FOLLOW_UP_BACKOFF_MAX);
                task.due = now + backoff;
                self.followups.push(task);
            }
        }
        ran
    }

    /// Follow-up work waiting (due or not).
    pub fn followups_pending(&self) -> usize {
        self.followups.len()
    }

    /// When the next follow-up is due, if any is waiting.
    pub fn next_followup_due(&self) -> Option<Instant> {
        self.followups.iter().map(|t| t.due).min()
    }

    /// Records a skip that is not a plugin's (the complete pool's).
    pub(crate) fn record_skip(&mut self, skip: &SkipRecord<'_>) {
        self.sink.skip(skip);
    }

    /// Frames parked on this runner.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Whether a frame of this request id is parked on this runner.
    pub fn is_parked(&self, request_id: u64) -> bool {
        self.parked.contains_key(&request_id)
    }

    /// Tells the runner that parked frame `request_id` now lives at `body`:
    /// a copy of the same frame that the caller keeps in place until the
    /// frame is resumed (with a frame over that copy) or expired. The
    /// submitted path needs it: a frame that paused in ring memory is
    /// copied out before the ring space is released. Returns `false`, and
    /// changes nothing, when no frame of this id is parked or `body` is not
    /// as long as the body that paused.
    pub fn move_parked(&mut self, request_id: u64, body: &[u8]) -> bool {
        match self.parked.get_mut(&request_id) {
            Some(p) if p.body.1 == body.len() => {
                p.body = (body.as_ptr() as usize, body.len());
                true
            }
            _ => false,
        }
    }

    /// Drops parked frames whose answer is overdue (their integration
    /// timeout plus a grace period passed without [`GateRunner::resume`]),
    /// recording a timeout decision for each; returns how many. The gateway
    /// normally resumes a timed-out call itself, with
    /// [`AnswerOutcome::Timeout`]; this is for answers that never come.
    pub fn expire_parked(&mut self, now: Instant) -> usize {
        let overdue: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &overdue {
            let parked = self.parked.remove(id).expect("listed above");
            let binding_id = parked.chain[parked.at];
            let binding = &parked.installed.policy.bindings()[binding_id as usize];
            let key = parked.key.as_key();
            self.sink.decision(&DecisionRecord {
                request_id: *id,
                worker: self.worker,
                gate: Gate::Request,
                plugin: &binding.plugin,
                binding: binding_id,
                policy_version: parked.installed.policy.version(),
                outcome: CallOutcome::Overran {
                    budget: parked.call.timeout,
                },
                changes: &[],
                duration: parked.call.timeout,
                scope: key,
                failure_mode: binding.failure_mode,
                invalid_index: false,
            });
        }
        overdue.len()
    }

    /// Indexes the request body the plugins see: at the request gate the
    /// current subject (again only after a plugin rewrote it); at the
    /// response gate the request as sent (once per request, across the
    /// chunks of its stream).
    fn index_request(&mut self, gate: Gate, frame: &RequestFrame<'_>, subject: Subject<'_>) {
        let want = if gate == Gate::Request {
            Indexed::Subject(self.state.body)
        } else {
            Indexed::Request {
                id: frame.request_id,
                ptr: frame.body.as_ptr() as usize,
                len: frame.body.len(),
            }
        };
        if self.indexed == want {
            return;
        }
        let body = if gate == Gate::Request {
            self.state
                .resolve(self.state.body, subject.headers, subject.body)
        } else {
            frame.body
        };
        self.index.rebuild(body, Part::Request, frame.api);
        self.indexed = want;
    }

    /// Calls the binding of `site` on the current frame state; `Some` when
    /// it blocks.
    fn call<'f>(
        &mut self,
        site: &Site<'f>,
        answer: Option<&IntegrationAnswer<'_>>,
        cache: &mut MessageCache<'f>,
    ) -> Option<VerdictRef> {
        let (frame, gate, subject) = (site.frame, site.gate, site.subject);
        let binding: &BindingSpec = &site.installed.policy.bindings()[site.id as usize];
        let slot = site.installed.slots[site.id as usize];
        self.index_request(gate, frame, subject);
        let instance = match &mut self.instances[site.id as usize] {
            Ok(instance) => instance,
            Err(_) => {
                // Its init failed on this worker (recorded then): the
                // failure mode decides, as for a failed call.
                self.metrics.add(slot, gate, Counter::Errors, 1);
                return self.fail(site, Duration::ZERO, None);
            }
        };
        // The subject as the plugins before this one left it: its own
        // header list while no plugin changed a header (the common case,
        // no copy), else views into the arena.
        let mut views: Vec<Header<'_>> = recycle(std::mem::take(&mut self.views));
        let header_views: &[Header<'_>] = if self.state.headers_changed {
            views.extend(self.state.headers.iter().map(|&(n, v)| {
                Header::new(
                    self.state.resolve(n, subject.headers, subject.body),
                    self.state.resolve(v, subject.headers, subject.body),
                )
            }));
            &views
        } else {
            subject.headers
        };
        let mut view = view::Frame::new(gate, frame.request_id);
        view.identity = Some(view::Identity {
            tenant: frame.tenant.unwrap_or("").as_bytes(),
            virtual_key_id: frame.virtual_key.unwrap_or("").as_bytes(),
            environment: frame.environment.unwrap_or("").as_bytes(),
        });
        view.target = match (site.key.model, site.key.mcp_server) {
            (Some(model), _) => view::Target::model(model.as_bytes()),
            (None, Some(server)) => view::Target::mcp(
                server.as_bytes(),
                site.key.mcp_tool.unwrap_or("").as_bytes(),
            ),
            (None, None) => view::Target::default(),
        };
        let current = self
            .state
            .resolve(self.state.body, subject.headers, subject.body);
        let request_body = if gate == Gate::Request {
            current
        } else {
            frame.body
        };
        // The index describes `request_body`; its message views are the
        // chain's cached ones while that body is the frame's own, else
        // built for this call from the rewritten body.
        let own_body: Option<&'f [u8]> = if gate != Gate::Request {
            Some(frame.body)
        } else if matches!(self.state.body, Bytes::Original) {
            Some(subject.body)
        } else {
            None
        };
        let index = &self.index;
        let mut messages: Vec<Message<'_>> = recycle(std::mem::take(&mut self.rewritten));
        let message_views: &[Message<'_>] = match own_body {
            Some(body) => {
                if !cache.built {
                    cache.messages.clear();
                    cache.messages.extend(message_views(index, body));
                    cache.built = true;
                }
                &cache.messages
            }
            None => {
                messages.extend(message_views(index, request_body));
                &messages
            }
        };
        view.index = index.abi_index(request_body, message_views);
        match site.response {
            None => {
                view.request = view::Request {
                    headers: header_views,
                    body: current,
                }
            }
            Some(meta) => {
                view.request = view::Request {
                    headers: frame.headers,
                    body: frame.body,
                };
                let (body, chunk, chunk_index, last_chunk) = match meta.chunk {
                    None => (current, current, 0, true),
                    Some(c) if c.whole_body => (current, &[][..], c.index, true),
                    Some(c) => (&[][..], current, c.index, c.last),
                };
                view.response = Some(view::Response {
                    status: meta.status,
                    headers: header_views,
                    body,
                    chunk,
                    chunk_index,
                    last_chunk,
                });
            }
        }

        let started = Instant::now();
        self.busy.enter(
            started.duration_since(self.runtime.shared.epoch).as_nanos() as u64,
            slot,
            binding.time_budget,
        );
        let decision = match answer {
            None => instance.call_gate(&view, &mut self.out, &mut *self.sink),
            Some(answer) => {
                instance.on_integration_answer(&view, answer, &mut self.out, &mut *self.sink)
            }
        };
        let duration = started.elapsed();
        self.busy.leave();
        self.views = recycle(views);
        self.rewritten = recycle(messages);

        self.metrics.add(slot, gate, Counter::Calls, 1);
        self.metrics.record(slot, gate, duration);
        self.metrics
            .add(slot, gate, Counter::Denied, u64::from(self.out.denials()));
        if self.out.error().is_some() {
            self.metrics.add(slot, gate, Counter::Errors, 1);
        }
        if duration > binding.time_budget {
            self.metrics.add(slot, gate, Counter::Timeouts, 1);
            return self.fail(site, duration, Some(binding.time_budget));
        }
        self.queue_followups(site);
        match decision {
            Decision::Continue => {
                let read_only = matches!(
                    site.response,
                    Some(ResponseMeta {
                        chunk: Some(ChunkMeta {
                            whole_body: true,
                            ..
                        }),
                        ..
                    })
                );
                if read_only && self.out.transforms().len() > 0 {
                    // A stream already sent cannot be changed: recorded.
                    self.skip(site, "stream_already_sent");
                } else if self
                    .state
                    .apply(&self.out, subject.headers, subject.body)
                    .is_err()
                {
                    // A change the runtime cannot make is the plugin's
                    // failure: its failure mode decides.
                    self.metrics.add(slot, gate, Counter::Errors, 1);
                    return self.fail(site, duration, None);
                }
                let n = self.out.transforms().len() as u64;
                self.metrics.add(slot, gate, Counter::Continues, 1);
                self.metrics.add(slot, gate, Counter::Transforms, n);
                self.decide(site, Outcome_::Continue, !read_only, duration);
                None
            }
            Decision::Block => {
                let block = self
                    .out
                    .block()
                    .expect("a block decision carries its block");
                let (status, by_plugin) = (block.status, block.by_plugin);
                let detail = self.state.stash(block.detail);
                let reason = self.state.stash(block.reason.as_bytes());
                self.metrics.add(slot, gate, Counter::Blocks, 1);
                let outcome = Outcome_::Block {
                    status,
                    reason: Reason::Arena(reason),
                    by_plugin,
                    detail: Some(detail),
                };
                self.decide(site, outcome, false, duration);
                Some(VerdictRef::Block {
                    status,
                    reason,
                    binding: site.id,
                })
            }
            Decision::Pause => {
                self.metrics.add(slot, gate, Counter::Pauses, 1);
                self.decide(site, Outcome_::Pause, false, duration);
                Some(VerdictRef::Pause)
            }
        }
    }

    /// Records that `site`'s plugin did not get (or could not act on) what
    /// it asked for, and why.
    fn skip(&mut self, site: &Site<'_>, cause: &'static str) {
        let binding = &site.installed.policy.bindings()[site.id as usize];
        self.sink.skip(&SkipRecord {
            request_id: site.frame.request_id,
            worker: self.worker,
            gate: site.gate,
            plugin: &binding.plugin,
            binding: site.id,
            cause,
            count: 1,
        });
    }

    /// Records that the whole-body plugins of a stream did not run.
    fn skip_whole_body(&mut self, request: &RequestFrame<'_>, cause: &'static str) {
        let key = self.frame_key_owned(request);
        let installed = Arc::clone(&self.installed);
        let key = key.as_key();
        self.chain.clear();
        self.chain.extend(
            installed
                .policy
                .chain(Gate::Response, &key, &mut self.scratch),
        );
        for i in 0..self.chain.len() {
            let id = self.chain[i];
            if installed.plugins[id as usize].response_mode() != ResponseMode::WholeBody {
                continue;
            }
            self.sink.skip(&SkipRecord {
                request_id: request.request_id,
                worker: self.worker,
                gate: Gate::Response,
                plugin: &installed.policy.bindings()[id as usize].plugin,
                binding: id,
                cause,
                count: 1,
            });
        }
    }

    /// The scope key of a request, its decoded texts copied out (for the
    /// rare paths outside `run_chain`).
    fn frame_key_owned(&mut self, frame: &RequestFrame<'_>) -> OwnedKey {
        self.index_request(
            Gate::Response,
            frame,
            Subject {
                headers: frame.headers,
                body: frame.body,
            },
        );
        let mut model = Vec::new();
        let mut tool = Vec::new();
        let m = frame
            .model
            .map(str::to_owned)
            .or_else(|| decode(self.index.model, frame.body, &mut model).map(str::to_owned));
        let tool_name = self
            .index
            .mcp()
            .filter(|c| c.kind == crate::index::McpMethod::ToolsCall)
            .and_then(|c| c.name);
        let t = frame
            .mcp_tool
            .map(str::to_owned)
            .or_else(|| decode(tool_name, frame.body, &mut tool).map(str::to_owned));
        OwnedKey {
            tenant: frame.tenant.map(str::to_owned),
            virtual_key: frame.virtual_key.map(str::to_owned),
            environment: frame.environment.map(str::to_owned),
            model: m,
            mcp_server: frame.mcp_server.map(str::to_owned),
            mcp_tool: t,
        }
    }

    /// A call failed (or overran): its transforms are dropped and its
    /// failure mode decides.
    fn fail(
        &mut self,
        site: &Site<'_>,
        duration: Duration,
        overran: Option<Duration>,
    ) -> Option<VerdictRef> {
        let binding = &site.installed.policy.bindings()[site.id as usize];
        let slot = site.installed.slots[site.id as usize];
        let blocks = binding.failure_mode == FailureMode::Enforce;
        let outcome = match (overran, blocks) {
            (Some(budget), _) => Outcome_::Overran { budget },
            (None, true) => Outcome_::Block {
                status: FAIL_CLOSED_STATUS,
                reason: Reason::Static(FAIL_CLOSED_REASON),
                by_plugin: false,
                detail: None,
            },
            (None, false) => Outcome_::FailedOpen,
        };
        self.decide(site, outcome, false, duration);
        if blocks {
            self.metrics.add(slot, site.gate, Counter::Blocks, 1);
            let reason = self.state.stash(FAIL_CLOSED_REASON.as_bytes());
            Some(VerdictRef::Block {
                status: FAIL_CLOSED_STATUS,
                reason,
                binding: site.id,
            })
        } else {
            self.metrics.add(slot, site.gate, Counter::Continues, 1);
            None
        }
    }

    /// Leaves the decision record of one call: its outcome, and with
    /// `with_changes` the names of the changes it made.
    fn decide(
        &mut self,
        site: &Site<'_>,
        outcome: Outcome_,
        with_changes: bool,
        duration: Duration,
    ) {
        let binding = &site.installed.policy.bindings()[site.id as usize];
        let (frame, subject) = (site.frame, site.subject);
        let state = &self.state;
        let resolve = |b: Bytes| state.resolve(b, subject.headers, subject.body);
        let text = |b: Bytes| std::str::from_utf8(resolve(b)).unwrap_or("");
        let outcome = match outcome {
            Outcome_::Continue => CallOutcome::Continue,
            Outcome_::Block {
                status,
                reason,
                by_plugin,
                detail,
            } => CallOutcome::Block {
                status,
                reason: match reason {
                    Reason::Static(r) => r,
                    Reason::Arena(b) => text(b),
                },
                by_plugin,
                detail: detail.map_or(&[][..], resolve),
            },
            Outcome_::FailedOpen => CallOutcome::FailedOpen,
            Outcome_::Pause => CallOutcome::Pause,
            Outcome_::Overran { budget } => CallOutcome::Overran { budget },
        };
        // At most a handful of changes per call: a fixed array, no heap,
        // filled only when the call changed something (most calls do not).
        let buffer: [Change<'_>; 16];
        let changes: &[Change<'_>] = if with_changes && !state.changes.is_empty() {
            let mut filled = [Change::BodyRange { offset: 0, len: 0 }; 16];
            let n = state.changes.len().min(filled.len());
            for (slot, c) in filled.iter_mut().zip(&state.changes) {
                *slot = match *c {
                    ChangeRef::SetHeader(b) => Change::SetHeader(resolve(b)),
                    ChangeRef::RemoveHeader(b) => Change::RemoveHeader(resolve(b)),
                    ChangeRef::SetMetadata(b) => Change::SetMetadata(text(b)),
                    ChangeRef::BodyRange(offset, len) => Change::BodyRange { offset, len },
                    ChangeRef::BodyField(b) => Change::BodyField(text(b)),
                };
            }
            buffer = filled;
            &buffer[..n]
        } else {
            &[]
        };
        self.sink.decision(&DecisionRecord {
            request_id: frame.request_id,
            worker: self.worker,
            gate: site.gate,
            plugin: &binding.plugin,
            binding: site.id,
            policy_version: site.installed.policy.version(),
            outcome,
            changes,
            duration,
            scope: site.key,
            failure_mode: binding.failure_mode,
            invalid_index: !self.index.valid(),
        });
    }
}

/// The decoded text of a JSON string of `body`: borrowed from the body when
/// it has no escapes, else unescaped into `buf`. `None` when absent or not
/// valid text.
fn decode<'a>(s: Option<JsonStr>, body: &'a [u8], buf: &'a mut Vec<u8>) -> Option<&'a str> {
    let s = s?;
    if !s.escaped {
        return std::str::from_utf8(s.get(body)).ok();
    }
    // Unescaped text is never longer than its escaped spelling.
    buf.clear();
    buf.resize(s.span.len as usize, 0);
    s.unescape_into(body, buf).ok()
}

/// The bytes of `span` in `body`, or none.
fn span_view(body: &[u8], span: Option<crate::index::Span>) -> &[u8] {
    span.map_or(&[][..], |s| s.get(body))
}

/// One call of one binding on one frame.
struct Site<'a> {
    installed: &'a Arc<Installed>,
    id: u32,
    gate: Gate,
    frame: &'a RequestFrame<'a>,
    key: FrameKey<'a>,
    /// What the chain changes: the request, or the response or chunk.
    subject: Subject<'a>,
    /// At the response gate: the response's status and chunk.
    response: Option<ResponseMeta>,
}

/// The original bytes a chain changes (copy-on-write).
#[derive(Clone, Copy)]
struct Subject<'a> {
    headers: &'a [Header<'a>],
    body: &'a [u8],
}

#[derive(Clone, Copy)]
struct ResponseMeta {
    status: u16,
    chunk: Option<ChunkMeta>,
}

#[derive(Clone, Copy)]
struct ChunkMeta {
    index: u64,
    last: bool,
    /// The whole-body plugins at a stream's end (read-only).
    whole_body: bool,
}

/// What the runner's index describes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Indexed {
    None,
    /// The request gate's current body.
    Subject(Bytes),
    /// A request's original body, by id and address.
    Request {
        id: u64,
        ptr: usize,
        len: usize,
    },
}

/// How often a failed follow-up is tried in all.
pub const FOLLOW_UP_ATTEMPTS: u32 = 5;
/// The wait before the first retry of a follow-up; it doubles each time.
const FOLLOW_UP_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
const FOLLOW_UP_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Work a plugin queued, waiting to run off the hot path.
struct FollowUpTask {
    installed: Arc<Installed>,
    binding: u32,
    request_id: u64,
    kind: String,
    payload: Vec<u8>,
    /// Tries so far.
    attempts: u32,
    due: Instant,
}

/// What happened to a piece of follow-up work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpState {
    /// Queued by a hook.
    Queued,
    /// Failed; tried again after a backoff.
    Retried,
    /// Failed for good (out of tries, or its binding went away).
    Failed,
    /// Done.
    Delivered,
}

/// A follow-up's progress, for evidence.
#[derive(Debug, Clone, Copy)]
pub struct FollowUpRecord<'a> {
    /// The request that queued it.
    pub request_id: u64,
    /// The worker.
    pub worker: u32,
    /// The plugin.
    pub plugin: &'a str,
    /// The binding id.
    pub binding: u32,
    /// The plugin's kind of work.
    pub kind: &'a str,
    /// Tries so far.
    pub attempts: u32,
    /// What happened.
    pub state: FollowUpState,
    /// Why it failed, if it did.
    pub detail: &'a str,
}

/// How long past its integration timeout a parked frame waits for
/// [`GateRunner::resume`] before [`GateRunner::expire_parked`] drops it.
const PARK_GRACE: Duration = Duration::from_secs(1);

/// The integration call a parked frame waits on.
struct PendingCall {
    token: u64,
    integration: String,
    payload: Vec<u8>,
    timeout: Duration,
    plugin: String,
}

/// A frame paused at the request gate.
struct Parked {
    installed: Arc<Installed>,
    chain: Vec<u32>,
    /// The chain position of the plugin that paused.
    at: usize,
    state: FrameState,
    key: OwnedKey,
    /// The address and length of the body that paused, to check `resume`.
    body: (usize, usize),
    deadline: Instant,
    call: PendingCall,
}

/// Why a frame could not be resumed. Nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeError {
    /// No frame of this request id is parked on this runner (never paused,
    /// already resumed, or expired).
    NotParked {
        /// The request id.
        request_id: u64,
    },
    /// The answer's token is not the one the pause returned.
    WrongToken {
        /// The request id.
        request_id: u64,
    },
    /// The frame is not the one that paused (another body).
    OtherFrame {
        /// The request id.
        request_id: u64,
    },
}

impl fmt::Display for ResumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResumeError::NotParked { request_id } => {
                write!(
                    f,
                    "request {request_id} is not parked here (never paused, resumed, or expired)"
                )
            }
            ResumeError::WrongToken { request_id } => {
                write!(
                    f,
                    "request {request_id}: the answer's token is not the pending call's"
                )
            }
            ResumeError::OtherFrame { request_id } => {
                write!(
                    f,
                    "request {request_id}: resumed with another frame than the one that paused"
                )
            }
        }
    }
}

impl std::error::Error for ResumeError {}

/// A frame's scope key with its texts owned.
struct OwnedKey {
    tenant: Option<String>,
    virtual_key: Option<String>,
    environment: Option<String>,
    model: Option<String>,
    mcp_server: Option<String>,
    mcp_tool: Option<String>,
}

impl OwnedKey {
    fn of(key: &FrameKey<'_>) -> OwnedKey {
        OwnedKey {
            tenant: key.tenant.map(str::to_owned),
            virtual_key: key.virtual_key.map(str::to_owned),
            environment: key.environment.map(str::to_owned),
            model: key.model.map(str::to_owned),
            mcp_server: key.mcp_server.map(str::to_owned),
            mcp_tool: key.mcp_tool.map(str::to_owned),
        }
    }

    fn as_key(&self) -> FrameKey<'_> {
        FrameKey {
            tenant: self.tenant.as_deref(),
            virtual_key: self.virtual_key.as_deref(),
            environment: self.environment.as_deref(),
            model: self.model.as_deref(),
            mcp_server: self.mcp_server.as_deref(),
            mcp_tool: self.mcp_tool.as_deref(),
        }
    }
}

/// A call's outcome before its reason is resolved (see `decide`).
#[derive(Clone, Copy)]
enum Outcome_ {
    Continue,
    Pause,
    Block {
        status: u16,
        reason: Reason,
        by_plugin: bool,
        detail: Option<Bytes>,
    },
    FailedOpen,
    Overran {
        budget: Duration,
    },
}

#[derive(Clone, Copy)]
enum Reason {
    Static(&'static str),
    Arena(Bytes),
}

fn installed_plugin_name(installed: &Installed, binding: u32) -> &str {
    &installed.policy.bindings()[binding as usize].plugin
}

#[derive(Debug, Clone, Copy)]
enum VerdictRef {
    Continue,
    Pause,
    Block {
        status: u16,
        reason: Bytes,
        binding: u32,
    },
}

impl fmt::Debug for GateRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateRunner")
            .field("worker", &self.worker)
            .field("policy_version", &self.policy_version())
            .finish()
    }
}
