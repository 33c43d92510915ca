//! The record's content: what a caller fills in to write one, and what a
//! reader gets back, borrowing from the bytes.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::BitOr;

use super::{MAX_LIST_LEN, MAX_TEXT_LEN};

/// Declares a code-carrying enum with an `Other` catch-all: equality and
/// hashing go by code, so `Other(1)` is the same value as the variant whose
/// code is 1.
macro_rules! coded {
    (
        $(#[$meta:meta])*
        $name:ident($label:literal): $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, $text:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A code this version does not name (from a newer minor
            /// version). It compares equal to the named variant of the
            /// same code, if there is one.
            Other($repr),
        }

        impl $name {
            /// The wire code.
            pub const fn code(self) -> $repr {
                match self {
                    $( $name::$variant => $code, )*
                    $name::Other(code) => code,
                }
            }

            /// The value of a wire code; codes this version does not name
            /// become `Other`.
            pub const fn from_code(code: $repr) -> Self {
                match code {
                    $( $code => $name::$variant, )*
                    other => $name::Other(other),
                }
            }

            /// The name used in JSON and in the format's docs; `None` for a
            /// code this version does not name.
            pub const fn name(self) -> Option<&'static str> {
                match Self::from_code(self.code()) {
                    $( $name::$variant => Some($text), )*
                    $name::Other(_) => None,
                }
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.code() == other.code()
            }
        }

        impl Eq for $name {}

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.code().hash(state);
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, "{}({})", $label, self.code()),
                }
            }
        }
    };
}

coded! {
    /// What a record is about. See the module docs for each kind's fields.
    Kind("kind"): u16 {
        /// One plugin decision at a gate.
        Decision = 1, "decision";
        /// A record a plugin emitted through the host (`payload_kind`,
        /// `payload`).
        Plugin = 2, "plugin";
        /// A host call the plugin was not granted.
        CapabilityDenied = 3, "capability_denied";
        /// A gate that was skipped, and why.
        Skip = 4, "skip";
        /// Follow-up work queued, retried, failed or delivered.
        FollowUp = 5, "follow_up";
        /// `count` records of this writer were lost to overflow.
        Gap = 6, "gap";
        /// An operator changed control's state (who, what, when).
        ControlChange = 7, "control_change";
    }
}

coded! {
    /// The lifecycle gate a record belongs to.
    Gate("gate"): u8 {
        /// Not at a gate (init, follow-up, control).
        None = 0, "none";
        /// Before upstream work.
        Request = 1, "request";
        /// After the upstream answers, before the caller sees it.
        Response = 2, "response";
        /// After the caller has the response.
        Complete = 3, "complete";
    }
}

coded! {
    /// What came of the thing recorded: a plugin's verdict, or the state of
    /// follow-up work.
    Verdict("verdict"): u8 {
        /// Nothing to say (gap, control change, a plugin's own record).
        None = 0, "none";
        /// The chain goes on.
        Continue = 1, "continue";
        /// The frame was blocked; `status` and `reason` say how.
        Block = 2, "block";
        /// The frame was parked for an integration call.
        Pause = 3, "pause";
        /// The plugin failed; the failure mode decided (see flags).
        Error = 4, "error";
        /// The plugin or gate did not run.
        Skip = 5, "skip";
        /// The plugin overran its budget, or an awaited answer never came.
        Timeout = 6, "timeout";
        /// A host call was refused for want of a grant.
        Denied = 7, "denied";
        /// Follow-up work was queued.
        Queued = 8, "queued";
        /// Follow-up work failed and will be tried again.
        Retried = 9, "retried";
        /// Follow-up work failed for good.
        Failed = 10, "failed";
        /// Follow-up work was delivered.
        Delivered = 11, "delivered";
    }
}

impl From<odock_plugin_abi::Gate> for Gate {
    fn from(gate: odock_plugin_abi::Gate) -> Gate {
        match gate {
            odock_plugin_abi::Gate::Request => Gate::Request,
            odock_plugin_abi::Gate::Response => Gate::Response,
            odock_plugin_abi::Gate::Complete => Gate::Complete,
        }
    }
}

/// A record's flag bits. Bits this version does not name are kept as they
/// are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// No flag.
    pub const NONE: Flags = Flags(0);
    /// Permissive (shadow) mode: the verdict was recorded, not enforced.
    pub const SHADOW: Flags = Flags(1 << 0);
    /// The call overran its time budget.
    pub const OVER_BUDGET: Flags = Flags(1 << 1);
    /// The plugin failed and its failure mode let the frame continue.
    pub const ERROR_IGNORED: Flags = Flags(1 << 2);
    /// The frame's JSON did not parse; its index is marked invalid.
    pub const INVALID_INDEX: Flags = Flags(1 << 3);
    /// A response gate run on one chunk of a streamed answer.
    pub const STREAM_CHUNK: Flags = Flags(1 << 4);
    /// The encoder cut a text field or list that was too long.
    pub const TRUNCATED: Flags = Flags(1 << 14);
    /// The first record a writer committed: its sequence numbers start
    /// afresh here.
    pub const WRITER_START: Flags = Flags(1 << 15);

    /// The named bits, with their JSON names.
    pub const NAMED: [(Flags, &'static str); 7] = [
        (Flags::SHADOW, "shadow"),
        (Flags::OVER_BUDGET, "over_budget"),
        (Flags::ERROR_IGNORED, "error_ignored"),
        (Flags::INVALID_INDEX, "invalid_index"),
        (Flags::STREAM_CHUNK, "stream_chunk"),
        (Flags::TRUNCATED, "truncated"),
        (Flags::WRITER_START, "writer_start"),
    ];

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// Who and what a request is for: the dimensions a policy scope matches on.
/// An empty string means "not known" or "does not apply".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scope<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The virtual key's id.
    pub virtual_key: &'a str,
    /// The environment (`prod`, `staging`, ...).
    pub environment: &'a str,
    /// The model asked for.
    pub model: &'a str,
    /// The MCP server called.
    pub mcp_server: &'a str,
    /// The MCP tool called.
    pub tool: &'a str,
}

impl Scope<'_> {
    /// A scope with nothing known.
    pub const NONE: Scope<'static> = Scope {
        tenant: "",
        virtual_key: "",
        environment: "",
        model: "",
        mcp_server: "",
        tool: "",
    };

    /// The fields in wire order, with their names.
    pub(crate) fn fields(&self) -> [(&'static str, &str); 6] {
        [
            ("tenant", self.tenant),
            ("virtual_key", self.virtual_key),
            ("environment", self.environment),
            ("model", self.model),
            ("mcp_server", self.mcp_server),
            ("tool", self.tool),
        ]
    }

    /// Whether every field is empty.
    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_empty())
    }
}

/// A plugin's own record: its kind and opaque bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Payload<'a> {
    /// The plugin's kind for the record (UTF-8).
    pub kind: &'a str,
    /// The plugin's bytes, opaque to the dataplane and control.
    pub data: &'a [u8],
}

impl Payload<'_> {
    /// No payload.
    pub const NONE: Payload<'static> = Payload {
        kind: "",
        data: &[],
    };

    /// Whether both kind and data are empty.
    pub fn is_empty(&self) -> bool {
        self.kind.is_empty() && self.data.is_empty()
    }
}

/// A list of field names (the `changed` field): a borrowed slice when
/// writing, a checked view into the record when reading. Equality compares
/// the names.
#[derive(Clone, Copy)]
pub struct Names<'a>(pub(crate) NamesRepr<'a>);

#[derive(Clone, Copy)]
pub(crate) enum NamesRepr<'a> {
    List(&'a [&'a str]),
    /// Encoded entries that [`super::decode`] checked: `count` times a u16
    /// length and that many bytes of UTF-8.
    Wire {
        count: u16,
        bytes: &'a [u8],
    },
}

impl<'a> Names<'a> {
    /// No names.
    pub const EMPTY: Names<'static> = Names(NamesRepr::List(&[]));

    /// Names to write.
    pub const fn new(names: &'a [&'a str]) -> Names<'a> {
        Names(NamesRepr::List(names))
    }

    /// How many names.
    pub fn len(&self) -> usize {
        match self.0 {
            NamesRepr::List(list) => list.len(),
            NamesRepr::Wire { count, .. } => count as usize,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names, in order.
    pub fn iter(&self) -> NamesIter<'a> {
        NamesIter(match self.0 {
            NamesRepr::List(list) => IterRepr::List(list.iter()),
            NamesRepr::Wire { count, bytes } => IterRepr::Wire(WireTexts {
                left: count as usize,
                bytes,
            }),
        })
    }
}

impl Default for Names<'_> {
    fn default() -> Self {
        Names::EMPTY
    }
}

impl PartialEq for Names<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Names<'_> {}

impl fmt::Debug for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Names<'a> {
    type Item = &'a str;
    type IntoIter = NamesIter<'a>;
    fn into_iter(self) -> NamesIter<'a> {
        self.iter()
    }
}

/// The names of a [`Names`].
#[derive(Debug, Clone)]
pub struct NamesIter<'a>(IterRepr<'a, &'a str>);

#[derive(Debug, Clone)]
enum IterRepr<'a, T> {
    List(std::slice::Iter<'a, T>),
    Wire(WireTexts<'a>),
}

impl<'a> Iterator for NamesIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        match &mut self.0 {
            IterRepr::List(it) => it.next().copied(),
            IterRepr::Wire(w) => w.next_text(),
        }
    }
}

/// Kind-specific `(key, value)` pairs (the `attrs` field): a borrowed slice
/// when writing, a checked view into the record when reading. Equality
/// compares the pairs in order.
#[derive(Clone, Copy)]
pub struct Attrs<'a>(pub(crate) AttrsRepr<'a>);

#[derive(Clone, Copy)]
pub(crate) enum AttrsRepr<'a> {
    List(&'a [(&'a str, &'a str)]),
    /// Encoded pairs that [`super::decode`] checked: `count` times two
    /// texts.
    Wire {
        count: u16,
        bytes: &'a [u8],
    },
}

impl<'a> Attrs<'a> {
    /// No pairs.
    pub const EMPTY: Attrs<'static> = Attrs(AttrsRepr::List(&[]));

    /// Pairs to write.
    pub const fn new(pairs: &'a [(&'a str, &'a str)]) -> Attrs<'a> {
        Attrs(AttrsRepr::List(pairs))
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        match self.0 {
            AttrsRepr::List(list) => list.len(),
            AttrsRepr::Wire { count, .. } => count as usize,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs, in order.
    pub fn iter(&self) -> AttrsIter<'a> {
        AttrsIter(match self.0 {
            AttrsRepr::List(list) => IterRepr::List(list.iter()),
            AttrsRepr::Wire { count, bytes } => IterRepr::Wire(WireTexts {
                left: count as usize * 2,
                bytes,
            }),
        })
    }

    /// The value of the first pair with this key.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl Default for Attrs<'_> {
    fn default() -> Self {
        Attrs::EMPTY
    }
}

impl PartialEq for Attrs<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Attrs<'_> {}

impl fmt::Debug for Attrs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Attrs<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = AttrsIter<'a>;
    fn into_iter(self) -> AttrsIter<'a> {
        self.iter()
    }
}

/// The pairs of an [`Attrs`].
#[derive(Debug, Clone)]
pub struct AttrsIter<'a>(IterRepr<'a, (&'a str, &'a str)>);

impl<'a> Iterator for AttrsIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        match &mut self.0 {
            IterRepr::List(it) => it.next().copied(),
            IterRepr::Wire(w) => Some((w.next_text()?, w.next_text()?)),
        }
    }
}

/// Reads `left` texts back out of bytes the decoder already checked. Should
/// the bytes not check out after all, it ends early rather than panic.
#[derive(Debug, Clone)]
struct WireTexts<'a> {
    left: usize,
    bytes: &'a [u8],
}

impl<'a> WireTexts<'a> {
    fn next_text(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        let (len, rest) = self.bytes.split_first_chunk::<2>()?;
        let len = u16::from_le_bytes(*len) as usize;
        let text = rest.get(..len).and_then(|t| std::str::from_utf8(t).ok());
        let Some(text) = text else {
            self.left = 0;
            return None;
        };
        self.bytes = &rest[len..];
        self.left -= 1;
        Some(text)
    }
}

/// Conventional `attrs` keys.
pub mod attr {
    /// `capability_denied`: the capability the plugin lacks.
    pub const CAPABILITY: &str = "capability";
    /// `capability_denied`: the host call it attempted.
    pub const OPERATION: &str = "operation";
    /// `capability_denied` of `call_integration`, and `follow_up`: the
    /// integration named.
    pub const INTEGRATION: &str = "integration";
    /// `skip`: a short code for why the gate was skipped (`no_chain`,
    /// `disabled`, `invalid_index`, `worker_stuck`, ...).
    pub const CAUSE: &str = "cause";
    /// `follow_up`: the follow-up's kind (`webhook`, `email`, ...).
    pub const FOLLOWUP: &str = "followup";
    /// `follow_up`: where it goes.
    pub const TARGET: &str = "target";
    /// `control_change`: who made the change (peer uid, gid, role).
    pub const ACTOR: &str = "actor";
    /// `control_change`: what was done (`binding.enable`, `plugin.add`, ...).
    pub const ACTION: &str = "action";
    /// `control_change`: what it was done to.
    pub const RESOURCE: &str = "resource";
}

/// One record's content: everything but the writer's stamp. All text is
/// borrowed, so building one allocates nothing. Start from
/// [`Evidence::new`] and set what applies:
///
/// ```
/// use odock_dataplane::evidence::{Evidence, Gate, Kind, Verdict};
///
/// let record = Evidence {
///     gate: Gate::Request,
///     verdict: Verdict::Block,
///     status: 403,
///     plugin: "tenant-check",
///     reason: "this tenant may not use this model",
///     detail: "rule 12 matched model=gpt-4o",
///     ..Evidence::new(Kind::Decision)
/// };
/// assert_eq!(record.request_id, "");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence<'a> {
    /// What the record is about.
    pub kind: Kind,
    /// The gate, if any.
    pub gate: Gate,
    /// What came of it.
    pub verdict: Verdict,
    /// Flag bits. The writer adds [`Flags::WRITER_START`] and the encoder
    /// [`Flags::TRUNCATED`] where they apply.
    pub flags: Flags,
    /// The HTTP status involved (a block's, a webhook's answer); 0: none.
    pub status: u16,
    /// The plugin's id in the policy; 0: none.
    pub plugin_id: u32,
    /// How long the thing recorded took, in ns; 0: not timed.
    pub duration_ns: u64,
    /// Kind-specific: `gap` records lost, `follow_up` attempt,
    /// `control_change` state version.
    pub count: u64,
    /// The gateway's request id.
    pub request_id: &'a str,
    /// The plugin's name.
    pub plugin: &'a str,
    /// The request's scope.
    pub scope: Scope<'a>,
    /// The user-visible reason: what the caller was told.
    pub reason: &'a str,
    /// The internal detail, kept apart from the reason: never shown to the
    /// caller.
    pub detail: &'a str,
    /// Names of the fields a transform changed (never their values).
    pub changed: Names<'a>,
    /// Kind-specific pairs ([`attr`] has the conventional keys).
    pub attrs: Attrs<'a>,
    /// A plugin record's own kind and bytes.
    pub payload: Payload<'a>,
}

impl Evidence<'_> {
    /// A record of this kind with every other field empty.
    pub const fn new(kind: Kind) -> Evidence<'static> {
        Evidence {
            kind,
            gate: Gate::None,
            verdict: Verdict::None,
            flags: Flags::NONE,
            status: 0,
            plugin_id: 0,
            duration_ns: 0,
            count: 0,
            request_id: "",
            plugin: "",
            scope: Scope::NONE,
            reason: "",
            detail: "",
            changed: Names::EMPTY,
            attrs: Attrs::EMPTY,
            payload: Payload::NONE,
        }
    }

    /// A `gap` record: `lost` records were dropped.
    pub const fn gap(lost: u64) -> Evidence<'static> {
        let mut gap = Evidence::new(Kind::Gap);
        gap.count = lost;
        gap
    }
}

/// What the writer stamps on each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Stamp {
    /// The writer's sequence number for the record.
    pub sequence: u64,
    /// Wall-clock time of the write: ns since the UNIX epoch (UTC).
    pub timestamp_ns: u64,
    /// The writing worker's index.
    pub worker: u32,
}

/// A format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Readers refuse a major version other than theirs.
    pub major: u8,
    /// Minor versions only add.
    pub minor: u8,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A decoded record: its version, the writer's stamp and the content, all
/// borrowed from the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvidenceRecord<'a> {
    /// The version the record was written in.
    pub version: Version,
    /// Sequence number, time and worker.
    pub stamp: Stamp,
    /// What the record says.
    pub evidence: Evidence<'a>,
}

/// The longest prefix of `bytes` that is valid UTF-8, and whether that is
/// all of it. For putting bytes of unknown encoding (an integration name a
/// plugin passed, say) into a text field without allocating: set
/// [`Flags::TRUNCATED`] when the second value is `false`.
pub fn text_prefix(bytes: &[u8]) -> (&str, bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text, true),
        Err(e) => (
            // valid_up_to is a boundary from_utf8 vouched for.
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
            false,
        ),
    }
}

/// `text` cut to at most [`MAX_TEXT_LEN`] bytes at a character boundary.
pub(crate) fn fit_text(text: &str) -> &str {
    if text.len() <= MAX_TEXT_LEN {
        text
    } else {
        &text[..text.floor_char_boundary(MAX_TEXT_LEN)]
    }
}

/// How many list entries are written.
pub(crate) fn fit_list(len: usize) -> usize {
    len.min(MAX_LIST_LEN)
}
