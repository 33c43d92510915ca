//! Control's state: the plugin registry, scopes and bindings; validation of
//! every change (nothing is half-applied: a change builds a new state or
//! fails naming the field); and compilation into the dataplanes' policy
//! file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use odock_dataplane::plugin::{Grant, LoadedPlugin, Pin, PluginSpec, Refusal};
use odock_dataplane::runtime::control_link::{
    BindingEntry, GatePriorities, POLICY_FORMAT, PluginEntry, PolicyFile, ScopeEntry,
};
use odock_dataplane::runtime::policy::FailureMode;
use odock_plugin_abi::{Capabilities, Capability};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema;

/// An answer the API gives instead of applying a change: an HTTP status,
/// the field at fault (a JSON path into the request), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// The HTTP status (4xx: the request; 5xx: control).
    #[serde(skip)]
    pub status: u16,
    /// The field at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong.
    pub error: String,
}

impl ApiError {
    /// A 4xx/5xx naming `field`.
    pub fn field(status: u16, field: impl Into<String>, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            field: Some(field.into()),
            error: error.into(),
        }
    }

    /// A 4xx/5xx about the request as a whole.
    pub fn new(status: u16, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            field: None,
            error: error.into(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({field}): {}", self.status, self.error),
            None => write!(f, "{}: {}", self.status, self.error),
        }
    }
}

impl std::error::Error for ApiError {}

/// What inspecting a plugin binary shows an operator before enabling it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginInfo {
    /// The plugin's own version string.
    pub version: String,
    /// The ABI version it was built against (`1.N`).
    pub abi: String,
    /// The gates it joins.
    pub gates: Vec<String>,
    /// The capabilities it asks for.
    pub requested: Vec<String>,
    /// The integrations it may call.
    pub integrations: Vec<String>,
    /// How it wants streamed responses.
    pub response_mode: String,
    /// Its config's JSON Schema (null: none declared, or not JSON).
    pub config_schema: Value,
}

/// A registered plugin binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    /// Its name.
    pub name: String,
    /// The shared library.
    pub path: PathBuf,
    /// Its pinned SHA-256, hex.
    pub sha256: String,
    /// What inspection found.
    pub info: PluginInfo,
}

/// `POST /v1/plugins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRequest {
    /// The plugin's name (must be the one it declares).
    pub name: String,
    /// An absolute path to the shared library.
    pub path: PathBuf,
    /// The SHA-256 the operator expects, hex.
    pub sha256: String,
}

/// A named scope (`POST /v1/scopes`); absent dimensions match any value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeDef {
    /// Its name.
    pub name: String,
    /// Tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Virtual key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_key: Option<String>,
    /// Environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// MCP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_server: Option<String>,
    /// MCP tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_tool: Option<String>,
}

fn default_failure_mode() -> String {
    "enforce".into()
}

fn default_budget() -> u64 {
    100
}

/// A binding (`POST /v1/bindings`): a plugin on a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Its name.
    pub name: String,
    /// The plugin's registered name.
    pub plugin: String,
    /// The scope's name; absent: every frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Whether it runs (default false: enable it explicitly).
    #[serde(default)]
    pub enabled: bool,
    /// The gates it joins, with a priority each (lower runs first).
    pub priority: GatePriorities,
    /// Granted capabilities, by name.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Integrations it may call.
    #[serde(default)]
    pub integrations: Vec<String>,
    /// Config as JSON, validated against the plugin's schema; handed to the
    /// plugin as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// Config as raw text, for a plugin that declares no JSON Schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_text: Option<String>,
    /// `enforce`, `enforce_ignore_error`, `permissive` or `disabled`.
    #[serde(default = "default_failure_mode")]
    pub failure_mode: String,
    /// Time budget per call, ms (1 to 60000; default 100).
    #[serde(default = "default_budget")]
    pub time_budget_ms: u64,
}

/// Control's whole state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Rises by one with every change.
    pub version: u64,
    /// Registered plugins by name.
    pub plugins: BTreeMap<String, Plugin>,
    /// Scopes by name.
    pub scopes: BTreeMap<String, ScopeDef>,
    /// Bindings by name.
    pub bindings: BTreeMap<String, Binding>,
}

/// One change to the state.
#[derive(Debug, Clone)]
pub enum Change {
    /// Register a plugin (already inspected).
    AddPlugin(Plugin),
    /// Remove a plugin no binding uses.
    RemovePlugin(String),
    /// Create (or with `replace`, replace) a scope.
    PutScope(ScopeDef, bool),
    /// Remove a scope no binding uses.
    RemoveScope(String),
    /// Create (or with `replace`, replace) a binding.
    PutBinding(Binding, bool),
    /// Remove a binding.
    RemoveBinding(String),
    /// Enable or disable a binding.
    SetEnabled(String, bool),
}

impl Change {
    /// The action's name for the audit record (`plugin.add`, ...).
    pub fn action(&self) -> &'static str {
        match self {
            Change::AddPlugin(_) => "plugin.add",
            Change::RemovePlugin(_) => "plugin.remove",
            Change::PutScope(_, false) => "scope.add",
            Change::PutScope(_, true) => "scope.replace",
            Change::RemoveScope(_) => "scope.remove",
            Change::PutBinding(_, false) => "binding.add",
            Change::PutBinding(_, true) => "binding.replace",
            Change::RemoveBinding(_) => "binding.remove",
            Change::SetEnabled(_, true) => "binding.enable",
            Change::SetEnabled(_, false) => "binding.disable",
        }
    }

    /// What it was done to (`plugin/probe`, ...).
    pub fn resource(&self) -> String {
        match self {
            Change::AddPlugin(p) => format!("plugin/{}", p.name),
            Change::RemovePlugin(n) => format!("plugin/{n}"),
            Change::PutScope(s, _) => format!("scope/{}", s.name),
            Change::RemoveScope(n) => format!("scope/{n}"),
            Change::PutBinding(b, _) => format!("binding/{}", b.name),
            Change::RemoveBinding(n) | Change::SetEnabled(n, _) => format!("binding/{n}"),
        }
    }
}

/// Checks a resource name: 1 to 128 of `[A-Za-z0-9._-]`.
///
/// # Errors
/// A 422 naming `field`.
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ApiError::field(
            422,
            field,
            format!("{name:?} is not a valid name: 1 to 128 of letters, digits, '.', '_', '-'"),
        ));
    }
    Ok(())
}

/// Checks and inspects a plugin binary: the file must exist, match the
/// SHA-256, and load as a plugin of this ABI whose declared name is
/// `name`. It is loaded in this process with every capability granted,
/// only to read its descriptor, and unloaded again.
///
/// # Errors
/// A 422 naming `name`, `path` or `sha256`.
pub fn inspect_plugin(req: &PluginRequest) -> Result<Plugin, ApiError> {
    check_name("name", &req.name)?;
    if !req.path.is_absolute() {
        return Err(ApiError::field(422, "path", "must be an absolute path"));
    }
    let pin = Pin::from_hex(&req.sha256)
        .map_err(|e| ApiError::field(422, "sha256", format!("not a SHA-256 in hex: {e}")))?;
    let mut grant = Grant::new(Capabilities::ALL);
    for _ in 0..64 {
        let spec = PluginSpec {
            name: req.name.clone(),
            path: req.path.clone(),
            pin,
            grant: grant.clone(),
        };
        match LoadedPlugin::load(&spec) {
            Ok(p) => {
                let info = PluginInfo {
                    version: p.version().to_owned(),
                    abi: format!("1.{}", p.abi_minor()),
                    gates: p.gates().iter().map(|g| g.to_string()).collect(),
                    requested: p.requested().iter().map(|c| c.name().to_owned()).collect(),
                    integrations: p.integrations().to_vec(),
                    response_mode: format!("{:?}", p.response_mode()).to_lowercase(),
                    config_schema: serde_json::from_str(p.config_schema()).unwrap_or(Value::Null),
                };
                return Ok(Plugin {
                    name: req.name.clone(),
                    path: req.path.clone(),
                    sha256: pin.to_string(),
                    info,
                });
            }
            Err(e) => match e.refusal {
                Refusal::IntegrationNotGranted { name } => grant = grant.with_integration(name),
                Refusal::PinMismatch { .. } => {
                    return Err(ApiError::field(422, "sha256", e.refusal.to_string()));
                }
                Refusal::NameMismatch { .. } => {
                    return Err(ApiError::field(422, "name", e.refusal.to_string()));
                }
                other => {
                    return Err(ApiError::field(
                        422,
                        "path",
                        format!("{} is not a loadable plugin: {other}", req.path.display()),
                    ));
                }
            },
        }
    }
    Err(ApiError::field(
        422,
        "path",
        "the plugin names too many integrations",
    ))
}

fn check_scope_value(field: &str, v: &Option<String>) -> Result<(), ApiError> {
    if let Some(s) = v
        && s.is_empty()
    {
        return Err(ApiError::field(
            422,
            field,
            "empty value: leave the field out to match any value",
        ));
    }
    Ok(())
}

impl State {
    /// The state after `change`, with the version raised; or why not.
    ///
    /// # Errors
    /// 404 (no such resource), 409 (exists, or in use) or 422 (invalid),
    /// naming the field.
    pub fn apply(&self, change: &Change) -> Result<State, ApiError> {
        let mut next = self.clone();
        match change {
            Change::AddPlugin(p) => {
                if next.plugins.contains_key(&p.name) {
                    return Err(ApiError::field(
                        409,
                        "name",
                        format!("plugin {:?} is already registered", p.name),
                    ));
                }
                next.plugins.insert(p.name.clone(), p.clone());
            }
            Change::RemovePlugin(name) => {
                if next.plugins.remove(name).is_none() {
                    return Err(ApiError::new(404, format!("no plugin {name:?}")));
                }
                if let Some(b) = next.bindings.values().find(|b| &b.plugin == name) {
                    return Err(ApiError::new(
                        409,
                        format!(
                            "plugin {name:?} is used by binding {:?}; remove it first",
                            b.name
                        ),
                    ));
                }
            }
            Change::PutScope(s, replace) => {
                check_name("name", &s.name)?;
                for (field, v) in [
                    ("tenant", &s.tenant),
                    ("virtual_key", &s.virtual_key),
                    ("environment", &s.environment),
                    ("model", &s.model),
                    ("mcp_server", &s.mcp_server),
                    ("mcp_tool", &s.mcp_tool),
                ] {
                    check_scope_value(field, v)?;
                }
                let exists = next.scopes.contains_key(&s.name);
                if exists && !replace {
                    return Err(ApiError::field(
                        409,
                        "name",
                        format!("scope {:?} exists", s.name),
                    ));
                }
                if !exists && *replace {
                    return Err(ApiError::new(404, format!("no scope {:?}", s.name)));
                }
                next.scopes.insert(s.name.clone(), s.clone());
            }
            Change::RemoveScope(name) => {
                if next.scopes.remove(name).is_none() {
                    return Err(ApiError::new(404, format!("no scope {name:?}")));
                }
                if let Some(b) = next
                    .bindings
                    .values()
                    .find(|b| b.scope.as_ref() == Some(name))
                {
                    return Err(ApiError::new(
                        409,
                        format!(
                            "scope {name:?} is used by binding {:?}; remove it first",
                            b.name
                        ),
                    ));
                }
            }
            Change::PutBinding(b, replace) => {
                self.check_binding(b)?;
                let exists = next.bindings.contains_key(&b.name);
                if exists && !replace {
                    return Err(ApiError::field(
                        409,
                        "name",
                        format!("binding {:?} exists", b.name),
                    ));
                }
                if !exists && *replace {
                    return Err(ApiError::new(404, format!("no binding {:?}", b.name)));
                }
                next.bindings.insert(b.name.clone(), b.clone());
            }
            Change::RemoveBinding(name) => {
                if next.bindings.remove(name).is_none() {
                    return Err(ApiError::new(404, format!("no binding {name:?}")));
                }
            }
            Change::SetEnabled(name, on) => match next.bindings.get_mut(name) {
                Some(b) => b.enabled = *on,
                None => return Err(ApiError::new(404, format!("no binding {name:?}"))),
            },
        }
        next.version = self.version + 1;
        Ok(next)
    }

    fn check_binding(&self, b: &Binding) -> Result<(), ApiError> {
        check_name("name", &b.name)?;
        let Some(plugin) = self.plugins.get(&b.plugin) else {
            return Err(ApiError::field(
                422,
                "plugin",
                format!("no plugin {:?} is registered", b.plugin),
            ));
        };
        if let Some(scope) = &b.scope
            && !self.scopes.contains_key(scope)
        {
            return Err(ApiError::field(422, "scope", format!("no scope {scope:?}")));
        }
        let p = b.priority;
        let gates = [
            ("request", p.request),
            ("response", p.response),
            ("complete", p.complete),
        ];
        if gates.iter().all(|(_, v)| v.is_none()) {
            return Err(ApiError::field(
                422,
                "priority",
                "give a priority for at least one gate",
            ));
        }
        for (gate, v) in gates {
            if v.is_some() && !plugin.info.gates.iter().any(|g| g == gate) {
                return Err(ApiError::field(
                    422,
                    format!("priority.{gate}"),
                    format!(
                        "plugin {:?} does not join the {gate} gate (it joins {})",
                        plugin.name,
                        plugin.info.gates.join(", ")
                    ),
                ));
            }
        }
        let mut granted = Capabilities::NONE;
        for (i, name) in b.capabilities.iter().enumerate() {
            let cap = Capability::from_name(name).ok_or_else(|| {
                ApiError::field(
                    422,
                    format!("capabilities[{i}]"),
                    format!("unknown capability {name:?}"),
                )
            })?;
            granted = granted.with(Capabilities::of(&[cap]));
        }
        let missing: Vec<&String> = plugin
            .info
            .requested
            .iter()
            .filter(|r| !b.capabilities.contains(r))
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::field(
                422,
                "capabilities",
                format!(
                    "plugin {:?} asks for {} which this binding does not grant; it would not load",
                    plugin.name,
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        for (i, name) in plugin.info.integrations.iter().enumerate() {
            if !b.integrations.contains(name) {
                return Err(ApiError::field(
                    422,
                    "integrations",
                    format!(
                        "plugin {:?} names integration {name:?} (#{i}), which this binding does not allow; it would not load",
                        plugin.name
                    ),
                ));
            }
        }
        let _ = granted;
        if FailureMode::from_name(&b.failure_mode).is_none() {
            return Err(ApiError::field(
                422,
                "failure_mode",
                format!(
                    "unknown failure mode {:?}: enforce, enforce_ignore_error, permissive or disabled",
                    b.failure_mode
                ),
            ));
        }
        if b.time_budget_ms == 0 || b.time_budget_ms > 60_000 {
            return Err(ApiError::field(422, "time_budget_ms", "must be 1 to 60000"));
        }
        // No schema, or the empty schema `{}` (which accepts anything):
        // nothing to check, and raw text is fine.
        let schema = &plugin.info.config_schema;
        let schema = if schema.as_object().is_some_and(|o| o.is_empty()) {
            &Value::Null
        } else {
            schema
        };
        match (&b.config, &b.config_text) {
            (Some(_), Some(_)) => {
                return Err(ApiError::field(
                    422,
                    "config_text",
                    "give config or config_text, not both",
                ));
            }
            (Some(config), None) => {
                if !schema.is_null() {
                    schema::validate(schema, config, "config")
                        .map_err(|e| ApiError::field(422, e.path.clone(), e.message))?;
                }
            }
            (None, Some(_)) => {
                if !schema.is_null() {
                    return Err(ApiError::field(
                        422,
                        "config_text",
                        "this plugin declares a JSON Schema: give its config as JSON in config",
                    ));
                }
            }
            (None, None) => {
                if !schema.is_null() {
                    schema::validate(schema, &Value::Object(Default::default()), "config")
                        .map_err(|e| ApiError::field(422, e.path.clone(), e.message))?;
                }
            }
        }
        Ok(())
    }

    /// The policy file the dataplanes install for this state.
    pub fn policy_file(&self) -> PolicyFile {
        let mut used: Vec<&str> = self.bindings.values().map(|b| b.plugin.as_str()).collect();
        used.sort_unstable();
        used.dedup();
        PolicyFile {
            format: POLICY_FORMAT,
            version: self.version,
            plugins: used
                .into_iter()
                .filter_map(|n| self.plugins.get(n))
                .map(|p| PluginEntry {
                    name: p.name.clone(),
                    path: p.path.clone(),
                    sha256: p.sha256.clone(),
                })
                .collect(),
            bindings: self
                .bindings
                .values()
                .map(|b| {
                    let s = b.scope.as_ref().and_then(|n| self.scopes.get(n));
                    BindingEntry {
                        plugin: b.plugin.clone(),
                        scope: s.map_or_else(ScopeEntry::default, |s| ScopeEntry {
                            tenant: s.tenant.clone(),
                            virtual_key: s.virtual_key.clone(),
                            environment: s.environment.clone(),
                            model: s.model.clone(),
                            mcp_server: s.mcp_server.clone(),
                            mcp_tool: s.mcp_tool.clone(),
                        }),
                        enabled: b.enabled,
                        priority: b.priority,
                        capabilities: b.capabilities.clone(),
                        integrations: b.integrations.clone(),
                        config: match (&b.config, &b.config_text) {
                            (Some(v), _) => v.to_string(),
                            (None, Some(t)) => t.clone(),
                            (None, None) => String::new(),
                        },
                        failure_mode: b.failure_mode.clone(),
                        time_budget_us: b.time_budget_ms * 1000,
                    }
                })
                .collect(),
        }
    }
}
