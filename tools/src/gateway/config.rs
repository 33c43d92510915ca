//! The gateway's configuration: a TOML file, every key checked.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! upstream = "http://127.0.0.1:9090"        # OpenAI-compatible base; the request path is appended
//! mcp_upstream = "http://127.0.0.1:9090/mcp" # default: <upstream>/mcp
//! mcp_server = "tools"                      # the MCP server's name in policy scopes
//! upstream_api_key = "sk-upstream"          # sent upstream as Bearer; default: none
//! run_dir = "/run/user/1000/odock"          # shared with control; default: control's default
//! workers = 2                               # threads, one per core; default: the cores
//! pin = true                                # pin each to its core
//! max_body_bytes = 8388608                 # a request, a buffered answer, one streamed event
//! upstream_timeout_ms = 60000               # the head, a buffered answer, the gap between streamed events
//!
//! [integrations]                            # governed integrations: name -> URL (HTTP POST)
//! approvals = "http://127.0.0.1:9090/approvals"
//!
//! [[keys]]                                  # virtual API keys (Bearer)
//! key = "sk-odock-acme"
//! id = "vk-acme"
//! tenant = "acme"
//! environment = "prod"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// One virtual API key: the secret a caller sends and who it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualKey {
    /// The Bearer secret.
    pub key: String,
    /// The key's id, as policy scopes and evidence name it.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// The environment (`prod`, `dev`, ...).
    #[serde(default)]
    pub environment: Option<String>,
}

/// The gateway's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Where callers connect.
    pub listen: SocketAddr,
    /// The OpenAI-compatible upstream's base URL (`http://host:port`, with an
    /// optional path prefix); the request's path is appended.
    pub upstream: String,
    /// The MCP upstream's URL; default `<upstream>/mcp`.
    pub mcp_upstream: Option<String>,
    /// The MCP server's name in policy scopes.
    pub mcp_server: String,
    /// The credential sent upstream (`Authorization: Bearer`); the caller's
    /// virtual key never leaves the gateway.
    pub upstream_api_key: Option<String>,
    /// The run directory shared with control; default: control's default.
    pub run_dir: Option<PathBuf>,
    /// Threads, one per core; 0: one per available core.
    pub workers: usize,
    /// Pin each thread to its core.
    pub pin: bool,
    /// The largest request, buffered response body, or streamed event.
    pub max_body_bytes: usize,
    /// How long an upstream has to answer: the head, a buffered body, and
    /// each gap between streamed events.
    pub upstream_timeout_ms: u64,
    /// Governed integrations: name to URL.
    pub integrations: BTreeMap<String, String>,
    /// Virtual API keys.
    pub keys: Vec<VirtualKey>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            upstream: "http://127.0.0.1:9090".into(),
            mcp_upstream: None,
            mcp_server: "tools".into(),
            upstream_api_key: None,
            run_dir: None,
            workers: 0,
            pin: true,
            max_body_bytes: 8 << 20,
            upstream_timeout_ms: 60_000,
            integrations: BTreeMap::new(),
            keys: Vec::new(),
        }
    }
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug)]
pub enum ConfigError {
    /// The file cannot be read.
    Read(PathBuf, std::io::Error),
    /// The TOML is invalid or has an unknown key.
    Parse(String),
    /// A value is out of range.
    Value(&'static str, String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "gateway config {}: {e}", p.display()),
            ConfigError::Parse(e) => write!(f, "gateway config: {e}"),
            ConfigError::Value(k, e) => write!(f, "gateway config key `{k}`: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// An `http://host:port[/prefix]` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    /// `host:port`.
    pub authority: String,
    /// The path, without a trailing `/` (empty for none).
    pub path: String,
}

impl HttpUrl {
    pub(crate) fn parse(key: &'static str, url: &str) -> Result<HttpUrl, ConfigError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            ConfigError::Value(
                key,
                format!("`{url}` is not an http:// URL (TLS is the front proxy's job)"),
            )
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') || authority.contains(['?', '#']) {
            return Err(ConfigError::Value(
                key,
                format!("`{url}` has no usable host"),
            ));
        }
        if path.contains(['?', '#']) {
            return Err(ConfigError::Value(
                key,
                format!("`{url}` has a query or fragment"),
            ));
        }
        Ok(HttpUrl {
            authority: authority.to_owned(),
            path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// This URL with `path` appended, as a URI string.
    pub(crate) fn join(&self, path: &str) -> String {
        format!("http://{}{}{}", self.authority, self.path, path)
    }
}

impl GatewayConfig {
    /// Reads and checks a config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, the key, or what is wrong with it.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        GatewayConfig::parse(&text)
    }

    /// Parses and checks a config's text.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key or what is wrong with it.
    pub fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
        let config: GatewayConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`ConfigError::Value`] naming the first bad key.
    pub fn check(&self) -> Result<(), ConfigError> {
        HttpUrl::parse("upstream", &self.upstream)?;
        if let Some(m) = &self.mcp_upstream {
            HttpUrl::parse("mcp_upstream", m)?;
        }
        for url in self.integrations.values() {
            HttpUrl::parse("integrations", url)?;
        }
        if self.mcp_server.is_empty() {
            return Err(ConfigError::Value("mcp_server", "is empty".into()));
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > 1 << 30 {
            return Err(ConfigError::Value(
                "max_body_bytes",
                format!("{} is not in 1..=1 GiB", self.max_body_bytes),
            ));
        }
        if self.upstream_timeout_ms == 0 {
            return Err(ConfigError::Value("upstream_timeout_ms", "is 0".into()));
        }
        if self.workers > 1024 {
            return Err(ConfigError::Value(
                "workers",
                format!("{} is more than 1024", self.workers),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for k in &self.keys {
            if k.key.len() < 8 {
                return Err(ConfigError::Value(
                    "keys.key",
                    format!("the key of `{}` is shorter than 8 characters", k.id),
                ));
            }
            if k.id.is_empty() || k.tenant.is_empty() {
                return Err(ConfigError::Value(
                    "keys",
                    "every key needs a non-empty id and tenant".into(),
                ));
            }
            if !seen.insert(k.key.as_str()) {
                return Err(ConfigError::Value(
                    "keys.key",
                    format!("the key of `{}` is given twice", k.id),
                ));
            }
        }
        Ok(())
    }

    /// The upstream request timeout.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    /// The run directory: the configured one, else control's default.
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir
            .clone()
            .unwrap_or_else(odock_control::config::default_run_dir)
    }

    pub(crate) fn upstream_url(&self) -> HttpUrl {
        HttpUrl::parse("upstream", &self.upstream).expect("checked")
    }

    pub(crate) fn mcp_url(&self) -> HttpUrl {
        match &self.mcp_upstream {
            Some(m) => HttpUrl::parse("mcp_upstream", m).expect("checked"),
            None => {
                let mut u = self.upstream_url();
                u.path.push_str("/mcp");
                u
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let c = GatewayConfig::parse(
            r#"
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:9/base/"
workers = 2
[integrations]
approvals = "http://127.0.0.1:9/approvals"
[[keys]]
key = "sk-odock-acme"
id = "vk-acme"
tenant = "acme"
environment = "prod"
"#,
        )
        .unwrap();
        assert_eq!(
            c.upstream_url().join("/v1/x"),
            "http://127.0.0.1:9/base/v1/x"
        );
        assert_eq!(c.mcp_url().join(""), "http://127.0.0.1:9/base/mcp");
        assert_eq!(c.keys[0].environment.as_deref(), Some("prod"));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("upstream = \"https://x\"", "upstream"),
            ("upstream = \"http:///x\"", "upstream"),
            ("max_body_bytes = 0", "max_body_bytes"),
            ("[integrations]\napprovals = \"ftp://x\"", "integrations"),
            (
                "[[keys]]\nkey = \"short\"\nid = \"a\"\ntenant = \"t\"",
                "keys.key",
            ),
        ] {
            let e = GatewayConfig::parse(text).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
        }
        let e = GatewayConfig::parse("listen = \"x\"\nbogus = 1").unwrap_err();
        assert!(matches!(e, ConfigError::Parse(_)), "{e}");
        let e = GatewayConfig::parse("bogus = 1").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let dup = "[[keys]]\nkey = \"sk-12345678\"\nid = \"a\"\ntenant = \"t\"\n\
                   [[keys]]\nkey = \"sk-12345678\"\nid = \"b\"\ntenant = \"t\"";
        assert!(
            GatewayConfig::parse(dup)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
