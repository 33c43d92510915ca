//! audit-export: writes selected exchanges to a SIEM as JSON lines.
//!
//! On the complete gate (after the caller has the answer) the plugin
//! decides whether the exchange is selected (`only_errors`, `tenants`),
//! builds one JSON object for it (ECS-flavoured: `@timestamp`, `event`,
//! `odock`, `http`, and the configured `headers`) and queues it as
//! follow-up work. The line is written in `on_followup`:
//!
//! - `{"file": "/var/log/odock/audit.jsonl"}`: appended to the file (opened
//!   in append mode for each line, so rotation by rename works; one
//!   `write` per line, so lines from several pool threads do not mix);
//! - `{"webhook": "http://siem.local/ingest"}`: POSTed as
//!   `application/x-ndjson`.
//!
//! # Why a follow-up, and why the plugin does its own I/O there
//!
//! Gate hooks, the complete gate included, must not block: the complete
//! pool serves every exchange of the gateway, and a slow disk or SIEM
//! would back it up until its queue drops records. A follow-up runs after
//! the frame, off that path, and the runtime retries a failed one with
//! doubling backoff and leaves `follow_up` evidence at every step
//! (queued, retried, failed, delivered), so a SIEM outage is visible and
//! short ones lose nothing. Integrations (`call_integration`) exist only
//! at the request gate, to pause a request on an answer; an export has
//! no answer to wait for. So the plugin writes the line itself, from the
//! follow-up, with a plain file append or a small blocking HTTP POST
//! bounded by `timeout_ms`.
//!
//! Config:
//! `{"file": "/abs/path.jsonl"}` or `{"webhook": "http://...", "timeout_ms": 5000}`,
//! plus optional `"only_errors": true` (status 400 and up), `"tenants": [...]`
//! (only these), `"headers": ["x-request-id", ...]` (request and response
//! headers copied into the record, lower-cased names).
#![forbid(unsafe_code)]

use std::io::Write;
use std::time::Duration;

use odock_plugin_abi::sdk::{CompleteGate, Host, InitContext, Plugin};
use odock_plugin_abi::view::Frame;
use odock_plugin_abi::{Capabilities, Capability, Error, LogLevel, TargetKind};
use odock_plugin_common::http::{self, Url};
use odock_plugin_common::{rfc3339_millis, unix_millis};
use serde_json::{Map, Value, json};

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Appended to this file.
    File(std::path::PathBuf),
    /// POSTed here.
    Webhook(Url),
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where lines go.
    pub sink: Sink,
    /// The webhook's timeout.
    pub timeout: Duration,
    /// Only exchanges answered with 400 or more.
    pub only_errors: bool,
    /// Only these tenants (empty: all).
    pub tenants: Vec<String>,
    /// Header names copied into the record (lower case).
    pub headers: Vec<String>,
}

/// The JSON Schema of [`Config`].
pub const CONFIG_SCHEMA: &str = concat!(
    r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","#,
    r#""description":"Exactly one of file and webhook.","additionalProperties":false,"#,
    r#""properties":{"#,
    r#""file":{"type":"string","pattern":"^/"},"#,
    r#""webhook":{"type":"string","pattern":"^http://"},"#,
    r#""timeout_ms":{"type":"integer","minimum":1,"maximum":60000},"#,
    r#""only_errors":{"type":"boolean"},"#,
    r#""tenants":{"type":"array","items":{"type":"string"}},"#,
    r#""headers":{"type":"array","maxItems":32,"items":{"type":"string","pattern":"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"}}}}"#
);

impl Config {
    /// Reads and checks a config.
    ///
    /// # Errors
    /// A message naming the offending field.
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        let obj = &odock_plugin_common::config_object(
            bytes,
            &[
                "file",
                "webhook",
                "timeout_ms",
                "only_errors",
                "tenants",
                "headers",
            ],
        )?;
        let sink = match (obj.get("file"), obj.get("webhook")) {
            (Some(Value::String(f)), None) if f.starts_with('/') => Sink::File(f.into()),
            (Some(_), None) => return Err("file: an absolute path".into()),
            (None, Some(Value::String(u))) => {
                Sink::Webhook(Url::parse(u).map_err(|e| format!("webhook: {e}"))?)
            }
            (None, Some(_)) => return Err("webhook: an http:// URL".into()),
            _ => return Err("exactly one of `file` and `webhook`".into()),
        };
        let timeout_ms = match obj.get("timeout_ms") {
            None => 5000,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=60_000).contains(n))
                .ok_or("timeout_ms: an integer from 1 to 60000")?,
        };
        let only_errors = match obj.get("only_errors") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("only_errors: true or false".into()),
        };
        let list = |field: &str| -> Result<Vec<String>, String> {
            match obj.get(field) {
                None => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{field}: an array of strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("{field}: an array of strings")),
            }
        };
        let tenants = list("tenants")?;
        let headers: Vec<String> = list("headers")?
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if headers.len() > 32
            || headers
                .iter()
                .any(|h| h.is_empty() || h.contains([' ', ':']))
        {
            return Err("headers: at most 32 header names".into());
        }
        Ok(Config {
            sink,
            timeout: Duration::from_millis(timeout_ms),
            only_errors,
            tenants,
            headers,
        })
    }

    /// Whether this exchange is exported.
    pub fn selects(&self, frame: &Frame<'_>) -> bool {
        let status = frame.response.map_or(0, |r| r.status);
        if self.only_errors && status < 400 {
            return false;
        }
        if self.tenants.is_empty() {
            return true;
        }
        let tenant = frame.identity.map_or(&b""[..], |i| i.tenant);
        self.tenants.iter().any(|t| t.as_bytes() == tenant)
    }
}

/// The record of one exchange, as one JSON line (no newline).
pub fn record(frame: &Frame<'_>, headers: &[String], unix_ms: u64) -> String {
    let text = |b: &[u8]| Value::String(String::from_utf8_lossy(b).into_owned());
    let id = frame.identity.unwrap_or_default();
    let status = frame.response.map_or(0, |r| r.status);
    let t = frame.target;
    let mut odock = Map::new();
    odock.insert("request_id".into(), frame.request_id.to_string().into());
    odock.insert("tenant".into(), text(id.tenant));
    odock.insert("virtual_key".into(), text(id.virtual_key_id));
    odock.insert("environment".into(), text(id.environment));
    let action = match t.kind {
        TargetKind::Mcp => {
            odock.insert("mcp_server".into(), text(t.mcp_server));
            odock.insert("mcp_tool".into(), text(t.mcp_tool));
            odock.insert("mcp_method".into(), text(frame.index.mcp_method));
            "mcp_exchange"
        }
        _ => {
            odock.insert("model".into(), text(t.model));
            "llm_exchange"
        }
    };
    odock.insert("stream".into(), frame.index.stream.into());
    let mut copied = Map::new();
    for name in headers {
        let value = frame
            .response_header(name.as_bytes())
            .or_else(|| frame.request_header(name.as_bytes()));
        if let Some(v) = value {
            copied.insert(name.clone(), text(v));
        }
    }
    json!({
        "@timestamp": rfc3339_millis(unix_ms),
        "event": {
            "kind": "event",
            "category": ["web"],
            "action": action,
            "outcome": if (200..400).contains(&status) { "success" } else { "failure" },
        },
        "odock": odock,
        "http": {"response": {"status_code": status}},
        "headers": copied,
    })
    .to_string()
}

/// One instance per worker (per complete pool thread).
pub struct AuditExport {
    config: Config,
}

/// The follow-up kind of one line.
pub const FOLLOW_UP: &str = "audit_export.line";

impl Plugin for AuditExport {
    const NAME: &'static str = "audit-export";
    const VERSION: &'static str = "1.0.0";
    const CAPABILITIES: Capabilities = Capabilities::of(&[
        Capability::ReadIdentity,
        Capability::ReadHeaders,
        Capability::EmitEvidence,
        Capability::QueueFollowup,
    ]);
    const CONFIG_SCHEMA: &'static str = CONFIG_SCHEMA;

    fn init(ctx: &InitContext<'_>) -> Result<Self, Error> {
        let config = odock_plugin_common::init_config(ctx, Self::NAME, Config::parse)?;
        Ok(AuditExport { config })
    }

    fn on_followup(&mut self, host: &Host<'_>, kind: &str, payload: &[u8]) -> Result<(), Error> {
        if kind != FOLLOW_UP {
            return Ok(());
        }
        let result = match &self.config.sink {
            Sink::File(path) => {
                let mut line = Vec::with_capacity(payload.len() + 1);
                line.extend_from_slice(payload);
                line.push(b'\n');
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(&line))
                    .map_err(|e| format!("audit-export: writing {}: {e}", path.display()))
            }
            Sink::Webhook(url) => http::post(
                url,
                "application/x-ndjson",
                &[],
                payload,
                self.config.timeout,
            )
            .map(|_| ())
            .map_err(|e| format!("audit-export: {e}")),
        };
        match result {
            Ok(()) => {
                host.emit_evidence("audit_export.exported", b"")?;
                Ok(())
            }
            Err(e) => {
                let _ = host.log(LogLevel::Warn, &e);
                Err(Error::Failed)
            }
        }
    }
}

impl CompleteGate for AuditExport {
    fn on_complete(&mut self, host: &Host<'_>, frame: &Frame<'_>) -> Result<(), Error> {
        if !self.config.selects(frame) {
            return Ok(());
        }
        let line = record(frame, &self.config.headers, unix_millis());
        host.queue_followup(FOLLOW_UP, line.as_bytes())
    }
}

odock_plugin_abi::export_plugin!(AuditExport, complete);

#[cfg(test)]
mod tests {
    use super::*;
    use odock_plugin_abi::Gate;
    use odock_plugin_abi::view::{Header, Identity, Response, Target};

    #[test]
    fn config_shapes() {
        let c = Config::parse(
            br#"{"file":"/tmp/a.jsonl","only_errors":true,"headers":["X-Request-Id"]}"#,
        )
        .unwrap();
        assert_eq!(c.sink, Sink::File("/tmp/a.jsonl".into()));
        assert_eq!(c.headers, vec!["x-request-id".to_string()]);
        assert!(matches!(
            Config::parse(br#"{"webhook":"http://127.0.0.1:9/in"}"#)
                .unwrap()
                .sink,
            Sink::Webhook(_)
        ));
        for bad in [
            &b"{}"[..],
            br#"{"file":"rel.jsonl"}"#,
            br#"{"file":"/a","webhook":"http://x/"}"#,
            br#"{"webhook":"https://x/"}"#,
            br#"{"file":"/a","only_errors":1}"#,
            br#"{"file":"/a","x":1}"#,
        ] {
            assert!(
                Config::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        serde_json::from_str::<Value>(CONFIG_SCHEMA).unwrap();
    }

    #[test]
    fn records_are_one_json_object() {
        let req = [
            Header::new(b"X-Request-Id", b"r-1"),
            Header::new(b"authorization", b"Bearer s"),
        ];
        let mut f = Frame::new(Gate::Complete, 77);
        f.target = Target::model(b"gpt-4o");
        f.identity = Some(Identity {
            tenant: b"acme",
            virtual_key_id: b"vk",
            environment: b"prod",
        });
        f.request.headers = &req;
        f.response = Some(Response {
            status: 403,
            ..Response::default()
        });
        let line = record(&f, &["x-request-id".into()], 0);
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["odock"]["request_id"], "77");
        assert_eq!(v["odock"]["model"], "gpt-4o");
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["http"]["response"]["status_code"], 403);
        assert_eq!(v["headers"], json!({"x-request-id": "r-1"}));
        assert_eq!(v["@timestamp"], "1970-01-01T00:00:00.000Z");
        let c = Config::parse(br#"{"file":"/a","only_errors":true,"tenants":["acme"]}"#).unwrap();
        assert!(c.selects(&f));
        f.response = Some(Response {
            status: 200,
            ..Response::default()
        });
        assert!(!c.selects(&f));
    }
}
