//! Safe names for the header's integers: status codes, capabilities, gates
//! and the small enumerations. Shared by the SDK and the host.

use core::fmt;

use crate::sys;

/// A failed `odock_status_t`: every code but `ODOCK_OK`.
///
/// Host calls return it to a plugin; hooks return it to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// `ODOCK_ERR_DENIED`: the capability or integration is not granted.
    Denied,
    /// `ODOCK_ERR_INVALID_ARGUMENT`: a malformed argument.
    InvalidArgument,
    /// `ODOCK_ERR_OUT_OF_RANGE`: a byte range outside its body or chunk.
    OutOfRange,
    /// `ODOCK_ERR_WRONG_GATE`: the host call is not available in this hook.
    WrongGate,
    /// `ODOCK_ERR_LIMIT_EXCEEDED`: a per-call budget is spent.
    LimitExceeded,
    /// `ODOCK_ERR_UNSUPPORTED`: the host does not offer this call.
    Unsupported,
    /// `ODOCK_ERR_INVALID_CONFIG`: init rejects the configuration.
    InvalidConfig,
    /// `ODOCK_ERR_FAILED`: a hook failed to decide.
    Failed,
    /// `ODOCK_ERR_PANICKED`: a hook panicked; the SDK caught it.
    Panicked,
    /// `ODOCK_ERR_HOST_INTERNAL`: the host failed serving a host call.
    HostInternal,
    /// A code this version of the header does not know.
    Unknown(u32),
}

impl Error {
    /// The `odock_status_t` of this error.
    pub const fn code(self) -> sys::odock_status_t {
        match self {
            Error::Denied => sys::ODOCK_ERR_DENIED,
            Error::InvalidArgument => sys::ODOCK_ERR_INVALID_ARGUMENT,
            Error::OutOfRange => sys::ODOCK_ERR_OUT_OF_RANGE,
            Error::WrongGate => sys::ODOCK_ERR_WRONG_GATE,
            Error::LimitExceeded => sys::ODOCK_ERR_LIMIT_EXCEEDED,
            Error::Unsupported => sys::ODOCK_ERR_UNSUPPORTED,
            Error::InvalidConfig => sys::ODOCK_ERR_INVALID_CONFIG,
            Error::Failed => sys::ODOCK_ERR_FAILED,
            Error::Panicked => sys::ODOCK_ERR_PANICKED,
            Error::HostInternal => sys::ODOCK_ERR_HOST_INTERNAL,
            Error::Unknown(code) => code,
        }
    }

    /// Reads a status: `Ok(())` for `ODOCK_OK`, the error otherwise.
    ///
    /// ```
    /// use odock_plugin_abi::{Error, sys};
    /// assert_eq!(Error::check(sys::ODOCK_OK), Ok(()));
    /// assert_eq!(Error::check(sys::ODOCK_ERR_DENIED), Err(Error::Denied));
    /// assert_eq!(Error::check(4242), Err(Error::Unknown(4242)));
    /// ```
    pub const fn check(code: sys::odock_status_t) -> Result<(), Error> {
        Err(match code {
            sys::ODOCK_OK => return Ok(()),
            sys::ODOCK_ERR_DENIED => Error::Denied,
            sys::ODOCK_ERR_INVALID_ARGUMENT => Error::InvalidArgument,
            sys::ODOCK_ERR_OUT_OF_RANGE => Error::OutOfRange,
            sys::ODOCK_ERR_WRONG_GATE => Error::WrongGate,
            sys::ODOCK_ERR_LIMIT_EXCEEDED => Error::LimitExceeded,
            sys::ODOCK_ERR_UNSUPPORTED => Error::Unsupported,
            sys::ODOCK_ERR_INVALID_CONFIG => Error::InvalidConfig,
            sys::ODOCK_ERR_FAILED => Error::Failed,
            sys::ODOCK_ERR_PANICKED => Error::Panicked,
            sys::ODOCK_ERR_HOST_INTERNAL => Error::HostInternal,
            other => Error::Unknown(other),
        })
    }

    /// The status of a result: `ODOCK_OK` or the error's code.
    pub const fn status(result: Result<(), Error>) -> sys::odock_status_t {
        match result {
            Ok(()) => sys::ODOCK_OK,
            Err(e) => e.code(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Denied => {
                f.write_str("denied: the capability is not granted (ODOCK_ERR_DENIED)")
            }
            Error::InvalidArgument => f.write_str("invalid argument (ODOCK_ERR_INVALID_ARGUMENT)"),
            Error::OutOfRange => {
                f.write_str("byte range outside the body or chunk (ODOCK_ERR_OUT_OF_RANGE)")
            }
            Error::WrongGate => {
                f.write_str("host call not available in this hook (ODOCK_ERR_WRONG_GATE)")
            }
            Error::LimitExceeded => {
                f.write_str("per-call budget exceeded (ODOCK_ERR_LIMIT_EXCEEDED)")
            }
            Error::Unsupported => f.write_str("not supported by this host (ODOCK_ERR_UNSUPPORTED)"),
            Error::InvalidConfig => f.write_str("invalid configuration (ODOCK_ERR_INVALID_CONFIG)"),
            Error::Failed => f.write_str("the plugin failed (ODOCK_ERR_FAILED)"),
            Error::Panicked => f.write_str("the plugin panicked (ODOCK_ERR_PANICKED)"),
            Error::HostInternal => f.write_str("host internal failure (ODOCK_ERR_HOST_INTERNAL)"),
            Error::Unknown(code) => write!(f, "unknown status code {code}"),
        }
    }
}

impl std::error::Error for Error {}

/// One capability (one `ODOCK_CAP_*` bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Capability {
    /// Read who is calling (tenant, virtual key, environment).
    ReadIdentity = sys::ODOCK_CAP_READ_IDENTITY,
    /// Read the request body, its messages and tool arguments.
    ReadRequestBody = sys::ODOCK_CAP_READ_REQUEST_BODY,
    /// Change the request body.
    WriteRequestBody = sys::ODOCK_CAP_WRITE_REQUEST_BODY,
    /// Read the response body and chunks.
    ReadResponseBody = sys::ODOCK_CAP_READ_RESPONSE_BODY,
    /// Change the response body and chunks.
    WriteResponseBody = sys::ODOCK_CAP_WRITE_RESPONSE_BODY,
    /// Read request and response headers.
    ReadHeaders = sys::ODOCK_CAP_READ_HEADERS,
    /// Set and remove headers; set metadata.
    WriteHeaders = sys::ODOCK_CAP_WRITE_HEADERS,
    /// Block a request or response.
    Block = sys::ODOCK_CAP_BLOCK,
    /// Emit evidence records.
    EmitEvidence = sys::ODOCK_CAP_EMIT_EVIDENCE,
    /// Call the integrations the grant names.
    CallIntegration = sys::ODOCK_CAP_CALL_INTEGRATION,
    /// Queue follow-up work.
    QueueFollowup = sys::ODOCK_CAP_QUEUE_FOLLOWUP,
}

impl Capability {
    /// Every capability, in bit order.
    pub const ALL: [Capability; 11] = [
        Capability::ReadIdentity,
        Capability::ReadRequestBody,
        Capability::WriteRequestBody,
        Capability::ReadResponseBody,
        Capability::WriteResponseBody,
        Capability::ReadHeaders,
        Capability::WriteHeaders,
        Capability::Block,
        Capability::EmitEvidence,
        Capability::CallIntegration,
        Capability::QueueFollowup,
    ];

    /// The capability's name as control and evidence spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Capability::ReadIdentity => "read_identity",
            Capability::ReadRequestBody => "read_request_body",
            Capability::WriteRequestBody => "write_request_body",
            Capability::ReadResponseBody => "read_response_body",
            Capability::WriteResponseBody => "write_response_body",
            Capability::ReadHeaders => "read_headers",
            Capability::WriteHeaders => "write_headers",
            Capability::Block => "block",
            Capability::EmitEvidence => "emit_evidence",
            Capability::CallIntegration => "call_integration",
            Capability::QueueFollowup => "queue_followup",
        }
    }

    /// The capability of this name.
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The capability's bit.
    pub const fn bit(self) -> u64 {
        self as u64
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities (the `ODOCK_CAP_*` bits).
///
/// ```
/// use odock_plugin_abi::{Capabilities, Capability};
/// let asked = Capabilities::of(&[Capability::Block, Capability::EmitEvidence]);
/// let granted = Capabilities::of(&[Capability::Block]);
/// assert_eq!(asked.without(granted).to_string(), "emit_evidence");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u64);

impl Capabilities {
    /// No capability.
    pub const NONE: Capabilities = Capabilities(0);
    /// Every capability this version of the header knows.
    pub const ALL: Capabilities = Capabilities((1 << 11) - 1);

    /// The set of exactly these capabilities.
    pub const fn of(caps: &[Capability]) -> Capabilities {
        let mut bits = 0;
        let mut i = 0;
        while i < caps.len() {
            bits |= caps[i].bit();
            i += 1;
        }
        Capabilities(bits)
    }

    /// The set of these bits, unknown bits included.
    pub const fn from_bits(bits: u64) -> Capabilities {
        Capabilities(bits)
    }

    /// The bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The bits no capability of this header version stands for.
    pub const fn unknown_bits(self) -> u64 {
        self.0 & !Self::ALL.0
    }

    /// Whether `cap` is in the set.
    pub const fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// Whether every capability of `other` is in the set.
    pub const fn contains_all(self, other: Capabilities) -> bool {
        other.0 & !self.0 == 0
    }

    /// Both sets together.
    pub const fn with(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }

    /// The capabilities in both sets.
    pub const fn intersect(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & other.0)
    }

    /// The capabilities of `self` that are not in `other`.
    pub const fn without(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The known capabilities in the set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl fmt::Display for Capabilities {
    /// The names joined by `|`, `none` for the empty set; unknown bits as hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut first = true;
        for cap in self.iter() {
            if !first {
                f.write_str("|")?;
            }
            first = false;
            f.write_str(cap.name())?;
        }
        if self.unknown_bits() != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{:#x}", self.unknown_bits())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Capabilities({self})")
    }
}

/// A lifecycle gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Gate {
    /// Before upstream work.
    Request = sys::ODOCK_GATE_REQUEST,
    /// After the upstream answers, before the caller sees it.
    Response = sys::ODOCK_GATE_RESPONSE,
    /// After the caller has the response.
    Complete = sys::ODOCK_GATE_COMPLETE,
}

impl Gate {
    /// Every gate, in the order a request meets them.
    pub const ALL: [Gate; 3] = [Gate::Request, Gate::Response, Gate::Complete];

    /// The gate's `ODOCK_GATE_*` bit.
    pub const fn bit(self) -> u32 {
        self as u32
    }

    /// The gate of this bit.
    pub const fn from_bit(bit: u32) -> Option<Gate> {
        match bit {
            sys::ODOCK_GATE_REQUEST => Some(Gate::Request),
            sys::ODOCK_GATE_RESPONSE => Some(Gate::Response),
            sys::ODOCK_GATE_COMPLETE => Some(Gate::Complete),
            _ => None,
        }
    }

    /// The gate's name: `request`, `response` or `complete`.
    pub const fn name(self) -> &'static str {
        match self {
            Gate::Request => "request",
            Gate::Response => "response",
            Gate::Complete => "complete",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of gates (the `ODOCK_GATE_*` bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Gates(u32);

impl Gates {
    /// No gate.
    pub const NONE: Gates = Gates(0);
    /// Every gate this version of the header knows.
    pub const ALL: Gates = Gates(0b111);

    /// The set of these bits, unknown bits included.
    pub const fn from_bits(bits: u32) -> Gates {
        Gates(bits)
    }

    /// The set of exactly these gates.
    pub const fn of(gates: &[Gate]) -> Gates {
        let mut bits = 0;
        let mut i = 0;
        while i < gates.len() {
            bits |= gates[i].bit();
            i += 1;
        }
        Gates(bits)
    }

    /// The bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether `gate` is in the set.
    pub const fn contains(self, gate: Gate) -> bool {
        self.0 & gate.bit() != 0
    }

    /// The known gates in the set.
    pub fn iter(self) -> impl Iterator<Item = Gate> {
        Gate::ALL.into_iter().filter(move |g| self.contains(*g))
    }
}

impl fmt::Display for Gates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for gate in self.iter() {
            if !first {
                f.write_str("|")?;
            }
            first = false;
            f.write_str(gate.name())?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Gates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gates({self})")
    }
}

/// How the response gate sees a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum ResponseMode {
    /// Once, with the whole body.
    #[default]
    WholeBody = sys::ODOCK_RESPONSE_WHOLE_BODY,
    /// Once per chunk of a streamed answer.
    PerChunk = sys::ODOCK_RESPONSE_PER_CHUNK,
}

impl ResponseMode {
    /// The mode of this value.
    pub const fn from_raw(raw: u32) -> Option<ResponseMode> {
        match raw {
            sys::ODOCK_RESPONSE_WHOLE_BODY => Some(ResponseMode::WholeBody),
            sys::ODOCK_RESPONSE_PER_CHUNK => Some(ResponseMode::PerChunk),
            _ => None,
        }
    }
}

/// The role of a message in the parse-once index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Role {
    /// A role the index does not name; see the role's spelling.
    Other = sys::ODOCK_ROLE_OTHER,
    /// `system`.
    System = sys::ODOCK_ROLE_SYSTEM,
    /// `user`.
    User = sys::ODOCK_ROLE_USER,
    /// `assistant`.
    Assistant = sys::ODOCK_ROLE_ASSISTANT,
    /// `tool`.
    Tool = sys::ODOCK_ROLE_TOOL,
    /// `developer`.
    Developer = sys::ODOCK_ROLE_DEVELOPER,
}

impl Role {
    /// The role of this value; unknown values are [`Role::Other`].
    pub const fn from_raw(raw: u32) -> Role {
        match raw {
            sys::ODOCK_ROLE_SYSTEM => Role::System,
            sys::ODOCK_ROLE_USER => Role::User,
            sys::ODOCK_ROLE_ASSISTANT => Role::Assistant,
            sys::ODOCK_ROLE_TOOL => Role::Tool,
            sys::ODOCK_ROLE_DEVELOPER => Role::Developer,
            _ => Role::Other,
        }
    }
}

/// What a frame targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum TargetKind {
    /// Nothing the index recognized.
    None = sys::ODOCK_TARGET_NONE,
    /// An LLM model.
    Model = sys::ODOCK_TARGET_MODEL,
    /// An MCP server (and tool).
    Mcp = sys::ODOCK_TARGET_MCP,
}

impl TargetKind {
    /// The kind of this value; unknown values are [`TargetKind::None`].
    pub const fn from_raw(raw: u32) -> TargetKind {
        match raw {
            sys::ODOCK_TARGET_MODEL => TargetKind::Model,
            sys::ODOCK_TARGET_MCP => TargetKind::Mcp,
            _ => TargetKind::None,
        }
    }
}

/// The level of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum LogLevel {
    /// Something failed.
    Error = sys::ODOCK_LOG_ERROR,
    /// Something looks wrong.
    Warn = sys::ODOCK_LOG_WARN,
    /// Worth knowing.
    Info = sys::ODOCK_LOG_INFO,
    /// For the plugin's developer.
    Debug = sys::ODOCK_LOG_DEBUG,
    /// Very detailed.
    Trace = sys::ODOCK_LOG_TRACE,
}

impl LogLevel {
    /// The level of this value.
    pub const fn from_raw(raw: u32) -> Option<LogLevel> {
        match raw {
            sys::ODOCK_LOG_ERROR => Some(LogLevel::Error),
            sys::ODOCK_LOG_WARN => Some(LogLevel::Warn),
            sys::ODOCK_LOG_INFO => Some(LogLevel::Info),
            sys::ODOCK_LOG_DEBUG => Some(LogLevel::Debug),
            sys::ODOCK_LOG_TRACE => Some(LogLevel::Trace),
            _ => None,
        }
    }
}

/// How an integration call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum AnswerOutcome {
    /// The integration answered.
    Ok = sys::ODOCK_ANSWER_OK,
    /// No answer within the timeout.
    Timeout = sys::ODOCK_ANSWER_TIMEOUT,
    /// The integration failed.
    Failed = sys::ODOCK_ANSWER_FAILED,
}

impl AnswerOutcome {
    /// The outcome of this value; unknown values are [`AnswerOutcome::Failed`].
    pub const fn from_raw(raw: u32) -> AnswerOutcome {
        match raw {
            sys::ODOCK_ANSWER_OK => AnswerOutcome::Ok,
            sys::ODOCK_ANSWER_TIMEOUT => AnswerOutcome::Timeout,
            _ => AnswerOutcome::Failed,
        }
    }
}
