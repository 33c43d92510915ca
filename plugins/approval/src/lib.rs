//! approval: holds requests for sensitive models (or MCP tools) until an
//! approval service says yes.
//!
//! On the request gate, a request whose model or MCP tool is configured as
//! sensitive starts a call to the governed integration `approvals` (the
//! gateway makes the HTTP call and owns its credentials; the plugin only
//! names it) and pauses: the caller sees latency, not an error. When the
//! answer comes:
//!
//! - **approved** (`{"approved": true}` or `{"decision": "approve"}`): the
//!   request continues with `x-odock-approval: approved` (and the approver,
//!   when named, in metadata `approval.approver`);
//! - **denied**: it is blocked, 403, with the service's reason (at most 200
//!   bytes) shown to the caller and the raw answer kept as detail;
//! - **timeout**: `on_timeout` decides: `deny` blocks with 504, `allow`
//!   continues with `x-odock-approval: timeout-allowed`;
//! - **failed** or an answer it cannot read: `on_error` decides the same
//!   way (502 when denying).
//!
//! Config:
//! `{"models": ["gpt-4o", "o1-*"], "tools": ["delete_repo"], "timeout_ms": 30000,
//!   "on_timeout": "deny", "on_error": "deny"}`
//! (a trailing `*` matches a prefix).
//!
//! The payload sent to the service is JSON: request id, tenant, virtual
//! key, environment, model or MCP server and tool. No body: the plugin
//! does not ask to read it.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::time::Duration;

use odock_plugin_abi::sdk::{Answer, Block, Host, InitContext, Plugin, RequestGate, Verdict};
use odock_plugin_abi::view::Frame;
use odock_plugin_abi::{AnswerOutcome, Capabilities, Capability, Error, TargetKind};
use serde_json::{Value, json};

/// The integration the plugin calls.
pub const INTEGRATION: &str = "approvals";

/// What to do when no usable answer comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Block the request.
    Deny,
    /// Let it through (marked).
    Allow,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Sensitive models (a trailing `*`: prefix).
    pub models: Vec<String>,
    /// Sensitive MCP tools (a trailing `*`: prefix).
    pub tools: Vec<String>,
    /// How long the service has to answer.
    pub timeout: Duration,
    /// On a timeout.
    pub on_timeout: Fallback,
    /// On a failed call or an unreadable answer.
    pub on_error: Fallback,
}

/// The JSON Schema of [`Config`].
pub const CONFIG_SCHEMA: &str = concat!(
    r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","#,
    r#""description":"Name at least one sensitive model or tool.","additionalProperties":false,"#,
    r#""properties":{"#,
    r#""models":{"type":"array","items":{"type":"string","minLength":1,"maxLength":128}},"#,
    r#""tools":{"type":"array","items":{"type":"string","minLength":1,"maxLength":128}},"#,
    r#""timeout_ms":{"type":"integer","minimum":1,"maximum":600000},"#,
    r#""on_timeout":{"enum":["deny","allow"]},"#,
    r#""on_error":{"enum":["deny","allow"]}}}"#
);

impl Config {
    /// Reads and checks a config.
    ///
    /// # Errors
    /// A message naming the offending field.
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        let obj = &odock_plugin_common::config_object(
            bytes,
            &["models", "tools", "timeout_ms", "on_timeout", "on_error"],
        )?;
        let names = |field: &str| -> Result<Vec<String>, String> {
            match obj.get(field) {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| match v.as_str() {
                        Some(s) if (1..=128).contains(&s.len()) => Ok(s.to_owned()),
                        _ => Err(format!("{field}: names of 1 to 128 bytes")),
                    })
                    .collect(),
                Some(_) => Err(format!("{field}: must be an array of names")),
            }
        };
        let (models, tools) = (names("models")?, names("tools")?);
        if models.is_empty() && tools.is_empty() {
            return Err("name at least one sensitive model or tool".into());
        }
        let timeout_ms = match obj.get("timeout_ms") {
            None => 30_000,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=600_000).contains(n))
                .ok_or("timeout_ms: an integer from 1 to 600000")?,
        };
        let fallback = |field: &str| match obj.get(field).map(Value::as_str) {
            None | Some(Some("deny")) => Ok(Fallback::Deny),
            Some(Some("allow")) => Ok(Fallback::Allow),
            _ => Err(format!("{field}: \"deny\" or \"allow\"")),
        };
        Ok(Config {
            models,
            tools,
            timeout: Duration::from_millis(timeout_ms),
            on_timeout: fallback("on_timeout")?,
            on_error: fallback("on_error")?,
        })
    }

    /// Whether a request for this target needs an approval.
    pub fn sensitive(&self, kind: TargetKind, model: &[u8], tool: &[u8]) -> bool {
        let hit = |patterns: &[String], name: &[u8]| {
            !name.is_empty()
                && patterns.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix.as_bytes()),
                    None => p.as_bytes() == name,
                })
        };
        match kind {
            TargetKind::Model => hit(&self.models, model),
            TargetKind::Mcp => hit(&self.tools, tool),
            TargetKind::None => false,
        }
    }
}

/// What the service said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead; by whom, if it says.
    Approved(Option<String>),
    /// No; why, if it says.
    Denied(Option<String>),
}

/// Reads the service's answer: `{"approved": bool}` or
/// `{"decision": "approve" | "deny"}`, with optional `reason` and
/// `approver`. `None` for anything else.
pub fn read_answer(body: &[u8]) -> Option<Decision> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let approved = match (v.get("approved"), v.get("decision").and_then(Value::as_str)) {
        (Some(Value::Bool(b)), _) => *b,
        (None, Some("approve" | "approved" | "allow")) => true,
        (None, Some("deny" | "denied" | "reject" | "rejected")) => false,
        _ => return None,
    };
    let text = |key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .map(|s| truncate(s, 200).to_owned())
    };
    Some(if approved {
        Decision::Approved(text("approver"))
    } else {
        Decision::Denied(text("reason"))
    })
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One instance per worker.
pub struct Approval {
    config: Config,
}

impl Plugin for Approval {
    const NAME: &'static str = "approval";
    const VERSION: &'static str = "1.0.0";
    const CAPABILITIES: Capabilities = Capabilities::of(&[
        Capability::ReadIdentity,
        Capability::WriteHeaders,
        Capability::Block,
        Capability::EmitEvidence,
        Capability::CallIntegration,
    ]);
    const CONFIG_SCHEMA: &'static str = CONFIG_SCHEMA;
    const INTEGRATIONS: &'static [&'static str] = &[INTEGRATION];

    fn init(ctx: &InitContext<'_>) -> Result<Self, Error> {
        let config = odock_plugin_common::init_config(ctx, Self::NAME, Config::parse)?;
        Ok(Approval { config })
    }

    fn on_integration_answer(
        &mut self,
        host: &Host<'_>,
        _frame: &Frame<'_>,
        answer: &Answer<'_>,
    ) -> Result<Verdict, Error> {
        let decision = match answer.outcome {
            AnswerOutcome::Ok => read_answer(answer.body),
            AnswerOutcome::Timeout => {
                host.emit_evidence("approval.timeout", b"")?;
                return self.fallback(host, NoAnswer::Timeout);
            }
            AnswerOutcome::Failed => None,
        };
        match decision {
            Some(Decision::Approved(approver)) => {
                host.set_header("x-odock-approval", b"approved")?;
                if let Some(who) = &approver {
                    host.set_metadata("approval.approver", who.as_bytes())?;
                }
                host.emit_evidence(
                    "approval.approved",
                    approver.as_deref().unwrap_or("").as_bytes(),
                )?;
                Ok(Verdict::Continue)
            }
            Some(Decision::Denied(reason)) => {
                host.emit_evidence(
                    "approval.denied",
                    reason.as_deref().unwrap_or("").as_bytes(),
                )?;
                let shown: Cow<'static, str> = match reason {
                    Some(r) => format!("this request needs an approval and was denied: {r}").into(),
                    None => "this request needs an approval and was denied".into(),
                };
                let detail = answer.body[..answer.body.len().min(4096)].to_vec();
                Ok(Block::new(403, shown).with_detail(detail).into())
            }
            None => {
                let what = if answer.outcome == AnswerOutcome::Ok {
                    "unreadable answer"
                } else {
                    "call failed"
                };
                host.emit_evidence("approval.error", what.as_bytes())?;
                self.fallback(host, NoAnswer::Error(what))
            }
        }
    }
}

/// Why no usable answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoAnswer {
    /// The call timed out.
    Timeout,
    /// The call failed, or its answer could not be read (the text says which).
    Error(&'static str),
}

impl Approval {
    /// Applies the configured fallback for a missing answer.
    fn fallback(&self, host: &Host<'_>, why: NoAnswer) -> Result<Verdict, Error> {
        let mode = match why {
            NoAnswer::Timeout => self.config.on_timeout,
            NoAnswer::Error(_) => self.config.on_error,
        };
        match (mode, why) {
            (Fallback::Allow, NoAnswer::Timeout) => {
                host.set_header("x-odock-approval", b"timeout-allowed")?;
                Ok(Verdict::Continue)
            }
            (Fallback::Allow, NoAnswer::Error(_)) => {
                host.set_header("x-odock-approval", b"error-allowed")?;
                Ok(Verdict::Continue)
            }
            (Fallback::Deny, NoAnswer::Timeout) => Ok(Block::new(
                504,
                "this request needs an approval, which did not arrive in time; try again later",
            )
            .with_detail(&b"approval timeout, on_timeout=deny"[..])
            .into()),
            (Fallback::Deny, NoAnswer::Error(what)) => Ok(Block::new(
                502,
                "this request needs an approval, and the approval service is unavailable",
            )
            .with_detail(format!("approval {what}, on_error=deny").into_bytes())
            .into()),
        }
    }
}

/// The payload sent to the approval service.
pub fn payload(frame: &Frame<'_>) -> Vec<u8> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let id = frame.identity.unwrap_or_default();
    let mut v = json!({
        "request_id": frame.request_id.to_string(),
        "tenant": text(id.tenant),
        "virtual_key": text(id.virtual_key_id),
        "environment": text(id.environment),
    });
    match frame.target.kind {
        TargetKind::Mcp => {
            v["mcp_server"] = text(frame.target.mcp_server).into();
            v["mcp_tool"] = text(frame.target.mcp_tool).into();
        }
        _ => v["model"] = text(frame.target.model).into(),
    }
    v.to_string().into_bytes()
}

impl RequestGate for Approval {
    fn on_request(&mut self, host: &Host<'_>, frame: &Frame<'_>) -> Result<Verdict, Error> {
        let t = frame.target;
        if !self.config.sensitive(t.kind, t.model, t.mcp_tool) {
            return Ok(Verdict::Continue);
        }
        let call = host.call_integration(INTEGRATION, &payload(frame), self.config.timeout)?;
        host.emit_evidence("approval.requested", b"")?;
        Ok(Verdict::Pause(call))
    }
}

odock_plugin_abi::export_plugin!(Approval, request);

#[cfg(test)]
mod tests {
    use super::*;
    use odock_plugin_abi::Gate;
    use odock_plugin_abi::view::{Identity, Target};

    #[test]
    fn config_and_matching() {
        let c = Config::parse(br#"{"models":["gpt-4o","o1-*"],"on_timeout":"allow"}"#).unwrap();
        assert_eq!(
            (c.timeout, c.on_timeout, c.on_error),
            (Duration::from_secs(30), Fallback::Allow, Fallback::Deny)
        );
        assert!(c.sensitive(TargetKind::Model, b"gpt-4o", b""));
        assert!(c.sensitive(TargetKind::Model, b"o1-mini", b""));
        assert!(!c.sensitive(TargetKind::Model, b"gpt-4o-mini", b""));
        assert!(!c.sensitive(TargetKind::Mcp, b"", b"gpt-4o"));
        for bad in [
            &b"{}"[..],
            br#"{"models":[]}"#,
            br#"{"models":["a"],"timeout_ms":0}"#,
            br#"{"models":["a"],"on_error":"maybe"}"#,
            br#"{"models":["a"],"x":1}"#,
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
    fn reads_answers() {
        assert_eq!(
            read_answer(br#"{"approved":true,"approver":"ana"}"#),
            Some(Decision::Approved(Some("ana".into())))
        );
        assert_eq!(
            read_answer(br#"{"decision":"deny","reason":"no budget"}"#),
            Some(Decision::Denied(Some("no budget".into())))
        );
        assert_eq!(read_answer(br#"{"decision":"maybe"}"#), None);
        assert_eq!(read_answer(b"yes"), None);
    }

    #[test]
    fn payload_names_the_target_not_the_body() {
        let mut f = Frame::new(Gate::Request, 9);
        f.target = Target::model(b"gpt-4o");
        f.identity = Some(Identity {
            tenant: b"acme",
            virtual_key_id: b"vk1",
            environment: b"prod",
        });
        f.request.body = b"{\"secret\":1}";
        let v: Value = serde_json::from_slice(&payload(&f)).unwrap();
        assert_eq!(
            v,
            json!({"request_id":"9","tenant":"acme","virtual_key":"vk1","environment":"prod","model":"gpt-4o"})
        );
    }
}
