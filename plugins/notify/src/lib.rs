//! notify: a webhook after the response, retried off the hot path.
//!
//! On the complete gate the plugin decides whether the exchange is one to
//! notify about (`on`: `all`, `errors` for status 400 and up, `success`;
//! optionally only some `tenants`), renders the message and queues it with
//! `queue_followup`. The POST happens in `on_followup`, which the runtime
//! runs after the frame (on the complete pool, never on a worker's hot
//! path); a failure (unreachable, timeout, non-2xx) returns an error, and
//! the runtime tries again with doubling backoff, leaving `follow_up`
//! evidence for every attempt. The plugin records `notify.sent` on
//! success.
//!
//! The body is JSON: `{"event": "odock.request.completed", "request_id",
//! "tenant", "environment", "model" | "mcp_server"+"mcp_tool", "status",
//! "text"}`, where `text` is the `message` template with `{request_id}`,
//! `{tenant}`, `{target}` and `{status}` filled in (Slack-style incoming
//! webhooks show it as is).
//!
//! Config:
//! `{"webhook": "http://hooks.local/odock", "on": "errors", "tenants": ["acme"],
//!   "message": "request {request_id} of {tenant} to {target}: {status}",
//!   "headers": {"authorization": "Bearer ..."}, "timeout_ms": 2000}`
#![forbid(unsafe_code)]

use std::time::Duration;

use odock_plugin_abi::sdk::{CompleteGate, Host, InitContext, Plugin};
use odock_plugin_abi::view::Frame;
use odock_plugin_abi::{Capabilities, Capability, Error, LogLevel, TargetKind};
use odock_plugin_common::http::{self, Url};
use serde_json::{Value, json};

/// Which exchanges to notify about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// Every one.
    All,
    /// Status 400 and up.
    Errors,
    /// Status below 400.
    Success,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to POST.
    pub webhook: Url,
    /// Which exchanges.
    pub on: On,
    /// Only these tenants (empty: all).
    pub tenants: Vec<String>,
    /// The message template.
    pub message: String,
    /// Extra headers for the webhook.
    pub headers: Vec<(String, String)>,
    /// Per attempt.
    pub timeout: Duration,
}

/// The JSON Schema of [`Config`].
pub const CONFIG_SCHEMA: &str = concat!(
    r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","#,
    r#""additionalProperties":false,"required":["webhook"],"properties":{"#,
    r#""webhook":{"type":"string","pattern":"^http://"},"#,
    r#""on":{"enum":["all","errors","success"]},"#,
    r#""tenants":{"type":"array","items":{"type":"string"}},"#,
    r#""message":{"type":"string","maxLength":1024},"#,
    r#""headers":{"type":"object","description":"At most 16 headers.","additionalProperties":{"type":"string","pattern":"^[^\\r\\n]*$"}},"#,
    r#""timeout_ms":{"type":"integer","minimum":1,"maximum":60000}}}"#
);

/// The message when the config has none.
pub const DEFAULT_MESSAGE: &str = "request {request_id} of {tenant} to {target} finished: {status}";

impl Config {
    /// Reads and checks a config.
    ///
    /// # Errors
    /// A message naming the offending field.
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        let obj = &odock_plugin_common::config_object(
            bytes,
            &[
                "webhook",
                "on",
                "tenants",
                "message",
                "headers",
                "timeout_ms",
            ],
        )?;
        let webhook = match obj.get("webhook") {
            Some(Value::String(u)) => Url::parse(u).map_err(|e| format!("webhook: {e}"))?,
            _ => return Err("webhook: an http:// URL is required".into()),
        };
        let on = match obj.get("on").map(Value::as_str) {
            None | Some(Some("all")) => On::All,
            Some(Some("errors")) => On::Errors,
            Some(Some("success")) => On::Success,
            _ => return Err("on: \"all\", \"errors\" or \"success\"".into()),
        };
        let tenants = match obj.get("tenants") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or("tenants: an array of strings")?,
            Some(_) => return Err("tenants: an array of strings".into()),
        };
        let message = match obj.get("message") {
            None => DEFAULT_MESSAGE.to_owned(),
            Some(Value::String(m)) if m.len() <= 1024 => m.clone(),
            Some(_) => return Err("message: a string of at most 1024 bytes".into()),
        };
        let headers = match obj.get("headers") {
            None => Vec::new(),
            Some(Value::Object(h)) if h.len() <= 16 => h
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(v)
                        if !k.is_empty()
                            && k.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                            && !v.contains(['\r', '\n']) =>
                    {
                        Ok((k.clone(), v.to_owned()))
                    }
                    _ => Err(format!("headers: `{k}` is not a valid header")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("headers: an object of at most 16 header values".into()),
        };
        let timeout_ms = match obj.get("timeout_ms") {
            None => 2000,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=60_000).contains(n))
                .ok_or("timeout_ms: an integer from 1 to 60000")?,
        };
        Ok(Config {
            webhook,
            on,
            tenants,
            message,
            headers,
            timeout: Duration::from_millis(timeout_ms),
        })
    }

    /// Whether to notify about this exchange.
    pub fn selects(&self, frame: &Frame<'_>) -> bool {
        let status = frame.response.map_or(0, |r| r.status);
        let by_status = match self.on {
            On::All => true,
            On::Errors => status >= 400,
            On::Success => (200..400).contains(&status),
        };
        let tenant = frame.identity.map_or(&b""[..], |i| i.tenant);
        by_status
            && (self.tenants.is_empty() || self.tenants.iter().any(|t| t.as_bytes() == tenant))
    }

    /// The webhook body for this exchange.
    pub fn body(&self, frame: &Frame<'_>) -> Vec<u8> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let id = frame.identity.unwrap_or_default();
        let status = frame.response.map_or(0, |r| r.status);
        let t = frame.target;
        let target = match t.kind {
            TargetKind::Mcp => format!("{}/{}", text(t.mcp_server), text(t.mcp_tool)),
            _ => text(t.model),
        };
        let rendered = self
            .message
            .replace("{request_id}", &frame.request_id.to_string())
            .replace("{tenant}", &text(id.tenant))
            .replace("{target}", &target)
            .replace("{status}", &status.to_string());
        let mut v = json!({
            "event": "odock.request.completed",
            "request_id": frame.request_id.to_string(),
            "tenant": text(id.tenant),
            "environment": text(id.environment),
            "status": status,
            "text": rendered,
        });
        match t.kind {
            TargetKind::Mcp => {
                v["mcp_server"] = text(t.mcp_server).into();
                v["mcp_tool"] = text(t.mcp_tool).into();
            }
            _ => v["model"] = text(t.model).into(),
        }
        v.to_string().into_bytes()
    }
}

/// The follow-up kind of one webhook call.
pub const FOLLOW_UP: &str = "notify.webhook";

/// One instance per worker (per complete pool thread).
pub struct Notify {
    config: Config,
}

impl Plugin for Notify {
    const NAME: &'static str = "notify";
    const VERSION: &'static str = "1.0.0";
    const CAPABILITIES: Capabilities = Capabilities::of(&[
        Capability::ReadIdentity,
        Capability::EmitEvidence,
        Capability::QueueFollowup,
    ]);
    const CONFIG_SCHEMA: &'static str = CONFIG_SCHEMA;

    fn init(ctx: &InitContext<'_>) -> Result<Self, Error> {
        let config = odock_plugin_common::init_config(ctx, Self::NAME, Config::parse)?;
        Ok(Notify { config })
    }

    fn on_followup(&mut self, host: &Host<'_>, kind: &str, payload: &[u8]) -> Result<(), Error> {
        if kind != FOLLOW_UP {
            return Ok(());
        }
        let headers: Vec<(&str, &str)> = self
            .config
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match http::post(
            &self.config.webhook,
            "application/json",
            &headers,
            payload,
            self.config.timeout,
        ) {
            Ok(status) => {
                host.emit_evidence("notify.sent", status.to_string().as_bytes())?;
                Ok(())
            }
            Err(e) => {
                let _ = host.log(LogLevel::Warn, &format!("notify: {e}"));
                Err(Error::Failed)
            }
        }
    }
}

impl CompleteGate for Notify {
    fn on_complete(&mut self, host: &Host<'_>, frame: &Frame<'_>) -> Result<(), Error> {
        if self.config.selects(frame) {
            host.queue_followup(FOLLOW_UP, &self.config.body(frame))?;
        }
        Ok(())
    }
}

odock_plugin_abi::export_plugin!(Notify, complete);

#[cfg(test)]
mod tests {
    use super::*;
    use odock_plugin_abi::Gate;
    use odock_plugin_abi::view::{Identity, Response, Target};

    #[test]
    fn config_and_body() {
        let c = Config::parse(br#"{"webhook":"http://127.0.0.1:1/h","on":"errors","message":"{tenant}: {target} {status}","headers":{"authorization":"Bearer t"}}"#).unwrap();
        let mut f = Frame::new(Gate::Complete, 5);
        f.target = Target::mcp(b"github", b"delete_repo");
        f.identity = Some(Identity {
            tenant: b"acme",
            ..Identity::default()
        });
        f.response = Some(Response {
            status: 502,
            ..Response::default()
        });
        assert!(c.selects(&f));
        let v: Value = serde_json::from_slice(&c.body(&f)).unwrap();
        assert_eq!(v["text"], "acme: github/delete_repo 502");
        assert_eq!(v["mcp_tool"], "delete_repo");
        f.response = Some(Response {
            status: 200,
            ..Response::default()
        });
        assert!(!c.selects(&f));
        for bad in [
            &b"{}"[..],
            br#"{"webhook":"ftp://x"}"#,
            br#"{"webhook":"http://x/","on":"some"}"#,
            br#"{"webhook":"http://x/","headers":{"a b":"c"}}"#,
            br#"{"webhook":"http://x/","y":1}"#,
        ] {
            assert!(
                Config::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        serde_json::from_str::<Value>(CONFIG_SCHEMA).unwrap();
    }
}
