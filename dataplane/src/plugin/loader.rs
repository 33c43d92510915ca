//! Loading a plugin: pin, dlopen, entry, descriptor, grant.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use odock_plugin_abi::sys::{
    ODOCK_PLUGIN_ABI_MAJOR, ODOCK_PLUGIN_ABI_MINOR, ODOCK_PLUGIN_ENTRY_SYMBOL,
    odock_plugin_descriptor_t, odock_plugin_entry_fn, odock_plugin_view_t,
};
use odock_plugin_abi::{Capabilities, Capability, Gate, Gates, ResponseMode};
use sha2::{Digest, Sha256};

use super::Grant;

/// The largest plugin file the loader reads.
const MAX_PLUGIN_FILE: u64 = 256 << 20;
/// The largest config schema a descriptor may carry.
const MAX_SCHEMA: usize = 1 << 20;
/// The most integrations a descriptor may name.
const MAX_INTEGRATIONS: usize = 64;

/// The SHA-256 a plugin binary must have.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin([u8; 32]);

impl Pin {
    /// The pin of this digest.
    pub const fn sha256(digest: [u8; 32]) -> Pin {
        Pin(digest)
    }

    /// The pin of these bytes.
    pub fn of_bytes(bytes: &[u8]) -> Pin {
        Pin(Sha256::digest(bytes).into())
    }

    /// The pin of a file's current contents (what an operator registers).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn of_file(path: &Path) -> io::Result<Pin> {
        Ok(Pin::of_bytes(&std::fs::read(path)?))
    }

    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// [`PinParseError`] when `hex` is not 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Pin, PinParseError> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(PinParseError { len: bytes.len() });
        }
        let mut digest = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16);
            let lo = (pair[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(hi), Some(lo)) => digest[i] = (hi * 16 + lo) as u8,
                _ => return Err(PinParseError { len: bytes.len() }),
            }
        }
        Ok(Pin(digest))
    }

    /// The digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Pin {
    /// 64 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin(sha256:{self})")
    }
}

/// A pin that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinParseError {
    len: usize,
}

impl fmt::Display for PinParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a SHA-256 pin is 64 hex digits; got {} characters that are not",
            self.len
        )
    }
}

impl std::error::Error for PinParseError {}

/// What control says about a plugin: which file, pinned to what, granted
/// what.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The name control registered; the descriptor must carry the same.
    pub name: String,
    /// The shared library.
    pub path: PathBuf,
    /// The SHA-256 the file must have.
    pub pin: Pin,
    /// What the plugin may do.
    pub grant: Grant,
}

/// A plugin the loader refused, and why.
#[derive(Debug)]
pub struct LoadError {
    /// The plugin's registered name.
    pub plugin: String,
    /// The file, when it came from one.
    pub path: Option<PathBuf>,
    /// Why.
    pub refusal: Refusal,
}

/// Why a plugin does not load.
#[derive(Debug)]
pub enum Refusal {
    /// The file cannot be read (or is larger than 256 MiB).
    Unreadable(io::Error),
    /// The file's SHA-256 is not its pin.
    PinMismatch {
        /// The pin control gave.
        pinned: Pin,
        /// The file's digest.
        actual: Pin,
    },
    /// The dynamic loader rejected the file (not a shared library, wrong
    /// architecture, an unresolved symbol).
    NotLoadable(String),
    /// The library does not export `odock_plugin_entry_v1`.
    MissingEntry {
        /// The major version whose entry it exports instead, if any.
        other_major: Option<u16>,
    },
    /// The entry function returned NULL.
    NullDescriptor,
    /// The descriptor pointer is not aligned for the descriptor.
    MisalignedDescriptor,
    /// The descriptor says it is smaller than version 1.0's.
    DescriptorTooSmall {
        /// Its `size`.
        size: u32,
        /// Version 1.0's size.
        needed: usize,
    },
    /// The descriptor is of another major version.
    MajorMismatch {
        /// The plugin's major version.
        plugin: u16,
    },
    /// The plugin needs a newer minor version than this host's.
    MinorTooNew {
        /// The minor the plugin needs.
        plugin: u16,
    },
    /// A descriptor field breaks the header's rules.
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// The descriptor's name is not the registered one.
    NameMismatch {
        /// The name the descriptor carries.
        declared: String,
    },
    /// Gate bits this host does not know, or none.
    BadGates(u32),
    /// Capability bits this host does not know.
    UnknownCapabilities(u64),
    /// A response mode this host does not know.
    BadResponseMode(u32),
    /// A hook the descriptor's gates or capabilities require is NULL.
    MissingHook(&'static str),
    /// A gate hook is set for a gate the plugin does not join.
    StrayHook(&'static str),
    /// The plugin asks for capabilities the grant does not give.
    NotGranted {
        /// The capabilities asked for and not granted.
        missing: Capabilities,
    },
    /// The plugin names an integration the grant does not allow.
    IntegrationNotGranted {
        /// The integration.
        name: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unreadable(e) => write!(f, "the file cannot be read: {e}"),
            Refusal::PinMismatch { pinned, actual } => write!(
                f,
                "SHA-256 mismatch: pinned {pinned}, the file is {actual}; an unpinned or changed binary does not load"
            ),
            Refusal::NotLoadable(e) => write!(f, "not a loadable shared library: {e}"),
            Refusal::MissingEntry { other_major: None } => write!(
                f,
                "no entry symbol: the library does not export {ODOCK_PLUGIN_ENTRY_SYMBOL}"
            ),
            Refusal::MissingEntry {
                other_major: Some(m),
            } => write!(
                f,
                "built for plugin ABI major version {m} (it exports odock_plugin_entry_v{m}); this host speaks major version {ODOCK_PLUGIN_ABI_MAJOR}"
            ),
            Refusal::NullDescriptor => write!(f, "{ODOCK_PLUGIN_ENTRY_SYMBOL} returned NULL"),
            Refusal::MisalignedDescriptor => f.write_str("the descriptor pointer is misaligned"),
            Refusal::DescriptorTooSmall { size, needed } => write!(
                f,
                "descriptor size {size} is smaller than version {ODOCK_PLUGIN_ABI_MAJOR}.0's {needed} bytes"
            ),
            Refusal::MajorMismatch { plugin } => write!(
                f,
                "the descriptor is of plugin ABI major version {plugin}; this host speaks major version {ODOCK_PLUGIN_ABI_MAJOR}"
            ),
            Refusal::MinorTooNew { plugin } => write!(
                f,
                "the plugin needs plugin ABI {ODOCK_PLUGIN_ABI_MAJOR}.{plugin}; this host provides {ODOCK_PLUGIN_ABI_MAJOR}.{ODOCK_PLUGIN_ABI_MINOR}"
            ),
            Refusal::BadField { field, problem } => {
                write!(f, "descriptor field `{field}`: {problem}")
            }
            Refusal::NameMismatch { declared } => write!(
                f,
                "the library calls itself `{}`, not the registered name",
                declared.escape_debug()
            ),
            Refusal::BadGates(bits) => write!(
                f,
                "descriptor field `gates` is {bits:#x}: it must join at least one gate and name only request, response, complete"
            ),
            Refusal::UnknownCapabilities(bits) => write!(
                f,
                "descriptor field `capabilities` has bits {bits:#x} this host does not know"
            ),
            Refusal::BadResponseMode(m) => {
                write!(f, "descriptor field `response_mode` is {m}, not 0 or 1")
            }
            Refusal::MissingHook(hook) => {
                write!(f, "descriptor field `{hook}` is NULL but required")
            }
            Refusal::StrayHook(hook) => write!(
                f,
                "descriptor field `{hook}` is set for a gate the plugin does not join"
            ),
            Refusal::NotGranted { missing } => write!(
                f,
                "it asks for capabilities that are not granted: {missing}"
            ),
            Refusal::IntegrationNotGranted { name } => write!(
                f,
                "it names integration `{}`, which is not granted",
                name.escape_debug()
            ),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin `{}`", self.plugin)?;
        if let Some(path) = &self.path {
            write!(f, " ({})", path.display())?;
        }
        write!(f, " refused: {}", self.refusal)
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.refusal {
            Refusal::Unreadable(e) => Some(e),
            _ => None,
        }
    }
}

/// A checked, loaded plugin, shared by every worker.
///
/// Holds the library open as long as it (and any [`PluginInstance`] made
/// from it) lives.
///
/// [`PluginInstance`]: super::PluginInstance
pub struct LoadedPlugin {
    name: String,
    version: String,
    config_schema: String,
    integrations: Vec<String>,
    gates: Gates,
    requested: Capabilities,
    effective: Capabilities,
    response_mode: ResponseMode,
    abi_minor: u16,
    /// A copy of the descriptor's version 1.0 part. Its pointers point into
    /// the library's static memory.
    pub(crate) descriptor: odock_plugin_descriptor_t,
    /// Dropped after everything above (fields drop in order), once nothing
    /// can call into it. `None` for a plugin linked into the process.
    _image: Option<Image>,
}

/// A loaded library and the sealed memfd it was loaded from. Fields drop in
/// order: the library is closed before the memfd, so while the library is
/// loaded its `/proc/self/fd/N` name belongs to it alone. (glibc finds an
/// already-loaded object by that name, so a reused fd number would hand a
/// later plugin this one's handle.) Every path that drops an `Image`, the
/// refusals included, keeps that order.
struct Image {
    library: libloading::Library,
    _file: Option<std::fs::File>,
}

// The header requires hooks to be callable from any thread (never two at
// once per instance, which `PluginInstance: !Sync` and `&mut self` ensure).
// SAFETY: the descriptor copy holds function pointers and views into the
// library's immutable static data, kept mapped by `_image` while we live.
unsafe impl Send for LoadedPlugin {}
// SAFETY: as for `Send`: `&LoadedPlugin` only reads immutable data.
unsafe impl Sync for LoadedPlugin {}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("gates", &self.gates)
            .field("capabilities", &self.effective)
            .field("response_mode", &self.response_mode)
            .field("integrations", &self.integrations)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Checks and loads the plugin `spec` describes (see the module docs for
    /// the checks, in order).
    ///
    /// # Errors
    /// A [`LoadError`] naming the plugin, the file and the [`Refusal`].
    pub fn load(spec: &PluginSpec) -> Result<Arc<LoadedPlugin>, LoadError> {
        let refuse = |refusal| LoadError {
            plugin: spec.name.clone(),
            path: Some(spec.path.clone()),
            refusal,
        };
        let bytes = read_limited(&spec.path).map_err(|e| refuse(Refusal::Unreadable(e)))?;
        let actual = Pin::of_bytes(&bytes);
        if actual != spec.pin {
            return Err(refuse(Refusal::PinMismatch {
                pinned: spec.pin,
                actual,
            }));
        }
        let image = open_pinned(&spec.name, &spec.path, &bytes).map_err(refuse)?;
        drop(bytes);
        // SAFETY: we look up a function with the entry's signature. Calling
        // it runs the plugin's code in this process: the header requires it
        // to return a static descriptor and do nothing else; that trust is
        // what loading a native plugin means (see the module docs).
        let entry = unsafe {
            image
                .library
                .get::<odock_plugin_entry_fn>(ODOCK_PLUGIN_ENTRY_SYMBOL.as_bytes())
        };
        let entry = match entry {
            Ok(symbol) => *symbol,
            Err(_) => {
                return Err(refuse(Refusal::MissingEntry {
                    other_major: other_major(&image.library),
                }));
            }
        };
        // SAFETY: `entry` is the library's entry function, and the library
        // stays open: it moves into the result.
        unsafe { Self::from_entry_inner(entry, &spec.name, &spec.grant, Some(image)) }
            .map_err(refuse)
    }

    /// Checks a plugin linked into this process (or defined in a test or a
    /// bench with [`odock_plugin_abi::plugin_entry!`]), the same way
    /// [`LoadedPlugin::load`] checks a file, minus the pin and the
    /// `dlopen`.
    ///
    /// # Errors
    /// A [`LoadError`] naming the plugin and the [`Refusal`].
    ///
    /// # Safety
    /// `entry` must behave as the header requires of `odock_plugin_entry_v1`:
    /// return NULL or a descriptor whose pointers stay valid for the life of
    /// the process, with hooks that honour the header's contract.
    pub unsafe fn from_entry(
        entry: odock_plugin_entry_fn,
        name: &str,
        grant: &Grant,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        // SAFETY: forwarded from the caller; no library to keep open.
        unsafe { Self::from_entry_inner(entry, name, grant, None) }.map_err(|refusal| LoadError {
            plugin: name.to_owned(),
            path: None,
            refusal,
        })
    }

    /// # Safety
    /// `entry` is a plugin's entry function whose code and data stay mapped
    /// while `image` (or, when `None`, the process) lives.
    unsafe fn from_entry_inner(
        entry: odock_plugin_entry_fn,
        name: &str,
        grant: &Grant,
        image: Option<Image>,
    ) -> Result<Arc<LoadedPlugin>, Refusal> {
        // SAFETY: the caller vouches for `entry`.
        let ptr = unsafe { entry() };
        if ptr.is_null() {
            return Err(Refusal::NullDescriptor);
        }
        if !ptr.is_aligned() {
            return Err(Refusal::MisalignedDescriptor);
        }
        // SAFETY: non-NULL and aligned; every descriptor starts with its
        // `uint32_t size` (rule R3), so these four bytes are the plugin's.
        let size = unsafe { ptr.cast::<u32>().read() };
        let needed = size_of::<odock_plugin_descriptor_t>();
        if (size as usize) < needed {
            return Err(Refusal::DescriptorTooSmall { size, needed });
        }
        // Every field is an integer, a pointer or an `Option` of a function
        // pointer, valid for any bits; pointers are checked before followed.
        // SAFETY: the plugin says the descriptor has at least `needed` bytes,
        // and we copy exactly the version 1.0 part.
        let d = unsafe { ptr.read() };
        if d.abi_major != ODOCK_PLUGIN_ABI_MAJOR {
            return Err(Refusal::MajorMismatch {
                plugin: d.abi_major,
            });
        }
        if d.abi_minor > ODOCK_PLUGIN_ABI_MINOR {
            return Err(Refusal::MinorTooNew {
                plugin: d.abi_minor,
            });
        }
        // SAFETY: the header requires the descriptor's views to live as long
        // as the library; `text` checks NULL and length before reading.
        let declared = unsafe { text(d.name, "name", 64) }?;
        if !valid_name(&declared) {
            return Err(Refusal::BadField {
                field: "name",
                problem: "must be 1 to 64 bytes of [a-z0-9._-]",
            });
        }
        if declared != name {
            return Err(Refusal::NameMismatch { declared });
        }
        // SAFETY: as above.
        let version = unsafe { text(d.version, "version", 64) }?;
        if version.is_empty() {
            return Err(Refusal::BadField {
                field: "version",
                problem: "is empty",
            });
        }
        // SAFETY: as above.
        let config_schema = unsafe { text(d.config_schema, "config_schema", MAX_SCHEMA) }?;

        let gates = Gates::from_bits(d.gates);
        if d.gates == 0 || d.gates & !Gates::ALL.bits() != 0 {
            return Err(Refusal::BadGates(d.gates));
        }
        let requested = Capabilities::from_bits(d.capabilities);
        if requested.unknown_bits() != 0 {
            return Err(Refusal::UnknownCapabilities(requested.unknown_bits()));
        }
        let response_mode = ResponseMode::from_raw(d.response_mode)
            .ok_or(Refusal::BadResponseMode(d.response_mode))?;

        require_hook(d.init.is_some(), "init")?;
        require_hook(d.destroy.is_some(), "destroy")?;
        for (gate, set, hook) in [
            (Gate::Request, d.on_request.is_some(), "on_request"),
            (Gate::Response, d.on_response.is_some(), "on_response"),
            (Gate::Complete, d.on_complete.is_some(), "on_complete"),
        ] {
            match (gates.contains(gate), set) {
                (true, false) => return Err(Refusal::MissingHook(hook)),
                (false, true) => return Err(Refusal::StrayHook(hook)),
                _ => {}
            }
        }
        if requested.contains(Capability::CallIntegration) {
            require_hook(d.on_integration_answer.is_some(), "on_integration_answer")?;
        }
        if requested.contains(Capability::QueueFollowup) {
            require_hook(d.on_followup.is_some(), "on_followup")?;
        }

        // SAFETY: the header requires the array to live as long as the
        // library; `integration_names` checks NULL and the count.
        let integrations = unsafe { integration_names(&d) }?;
        if !integrations.is_empty() && !requested.contains(Capability::CallIntegration) {
            return Err(Refusal::BadField {
                field: "integrations",
                problem: "names integrations without asking for call_integration",
            });
        }

        let missing = requested.without(grant.capabilities());
        if !missing.is_empty() {
            return Err(Refusal::NotGranted { missing });
        }
        if let Some(name) = integrations
            .iter()
            .find(|n| !grant.allows_integration(n.as_bytes()))
        {
            return Err(Refusal::IntegrationNotGranted { name: name.clone() });
        }

        Ok(Arc::new(LoadedPlugin {
            name: declared,
            version,
            config_schema,
            integrations,
            gates,
            effective: requested.intersect(grant.capabilities()),
            requested,
            response_mode,
            abi_minor: d.abi_minor,
            descriptor: d,
            _image: image,
        }))
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's own version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The JSON Schema of its configuration.
    pub fn config_schema(&self) -> &str {
        &self.config_schema
    }

    /// The gates it joins.
    pub fn gates(&self) -> Gates {
        self.gates
    }

    /// The capabilities it asked for.
    pub fn requested(&self) -> Capabilities {
        self.requested
    }

    /// The capabilities it may use: asked for and granted.
    pub fn capabilities(&self) -> Capabilities {
        self.effective
    }

    /// The integrations it may call.
    pub fn integrations(&self) -> &[String] {
        &self.integrations
    }

    /// How its response gate sees bodies.
    pub fn response_mode(&self) -> ResponseMode {
        self.response_mode
    }

    /// The lowest host minor version it needs.
    pub fn abi_minor(&self) -> u16 {
        self.abi_minor
    }
}

fn require_hook(set: bool, hook: &'static str) -> Result<(), Refusal> {
    if !set {
        return Err(Refusal::MissingHook(hook));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Reads a descriptor view as UTF-8 text of at most `max` bytes.
///
/// # Safety
/// When `len > 0` and `ptr` is not NULL, the view points to `len` readable
/// bytes.
unsafe fn text(
    view: odock_plugin_view_t,
    field: &'static str,
    max: usize,
) -> Result<String, Refusal> {
    if view.len > max {
        return Err(Refusal::BadField {
            field,
            problem: "is longer than the header allows",
        });
    }
    if view.len > 0 && view.ptr.is_null() {
        return Err(Refusal::BadField {
            field,
            problem: "has a length but a NULL pointer",
        });
    }
    let bytes = if view.len == 0 {
        &[][..]
    } else {
        // SAFETY: non-NULL, bounded length, readable by the caller's word.
        unsafe { std::slice::from_raw_parts(view.ptr, view.len) }
    };
    String::from_utf8(bytes.to_vec()).map_err(|_| Refusal::BadField {
        field,
        problem: "is not UTF-8",
    })
}

/// # Safety
/// When `integrations_len > 0` and `integrations` is not NULL, it points to
/// that many readable views, each as `text` requires.
unsafe fn integration_names(d: &odock_plugin_descriptor_t) -> Result<Vec<String>, Refusal> {
    let field = "integrations";
    if d.integrations_len == 0 {
        return Ok(Vec::new());
    }
    if d.integrations_len > MAX_INTEGRATIONS {
        return Err(Refusal::BadField {
            field,
            problem: "names more than 64 integrations",
        });
    }
    if d.integrations.is_null() || !d.integrations.is_aligned() {
        return Err(Refusal::BadField {
            field,
            problem: "has a length but a NULL or misaligned pointer",
        });
    }
    // SAFETY: non-NULL, aligned, and the caller vouches for the count.
    let views = unsafe { std::slice::from_raw_parts(d.integrations, d.integrations_len) };
    let mut names = Vec::with_capacity(views.len());
    for &v in views {
        // SAFETY: forwarded from the caller.
        let name = unsafe { text(v, field, 64) }?;
        if name.is_empty() {
            return Err(Refusal::BadField {
                field,
                problem: "holds an empty name",
            });
        }
        names.push(name);
    }
    Ok(names)
}

fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_PLUGIN_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PLUGIN_FILE {
        return Err(io::Error::other("the file is larger than 256 MiB"));
    }
    Ok(bytes)
}

/// The major version whose entry the library exports, other than ours.
fn other_major(library: &libloading::Library) -> Option<u16> {
    (0..=16u16)
        .filter(|&m| m != ODOCK_PLUGIN_ABI_MAJOR)
        .find(|m| {
            let symbol = format!("odock_plugin_entry_v{m}");
            // SAFETY: we only check whether the symbol exists; the pointer
            // is never called or read.
            unsafe { library.get::<*const ()>(symbol.as_bytes()) }.is_ok()
        })
}

/// Loads exactly `bytes` (already checked against the pin).
///
/// On Linux: a sealed memfd holding `bytes`, opened through
/// `/proc/self/fd`, so the file changing after the check cannot matter.
#[cfg(target_os = "linux")]
fn open_pinned(name: &str, _path: &Path, bytes: &[u8]) -> Result<Image, Refusal> {
    use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, memfd_create};
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;

    super::elf::check(bytes).map_err(|problem| Refusal::NotLoadable(problem.to_string()))?;
    let fd = memfd_create(
        format!("odock-plugin:{name}"),
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| Refusal::Unreadable(e.into()))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).map_err(Refusal::Unreadable)?;
    fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )
    .map_err(|e| Refusal::Unreadable(e.into()))?;
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    // SAFETY: loading a library runs its initializers in this process; that
    // trust is what loading a native plugin means, and the bytes are the
    // pinned ones. RTLD_NOW binds every symbol now, so an unresolved one
    // fails here instead of at a call.
    let library = unsafe {
        libloading::os::unix::Library::open(
            Some(&proc_path),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
        )
    }
    .map_err(|e| Refusal::NotLoadable(e.to_string()))?;
    // The memfd stays open as long as the library: see `LoadedPlugin::_image`.
    Ok(Image {
        library: library.into(),
        _file: Some(file),
    })
}

/// Loads the file at `path` (already checked against the pin). Without
/// sealed memfds the file could change between the check and the load;
/// keep plugin directories writable by the operator only.
#[cfg(not(target_os = "linux"))]
fn open_pinned(_name: &str, path: &Path, _bytes: &[u8]) -> Result<Image, Refusal> {
    // SAFETY: as in the Linux version.
    unsafe { libloading::Library::new(path) }
        .map(|library| Image {
            library,
            _file: None,
        })
        .map_err(|e| Refusal::NotLoadable(e.to_string()))
}
