//! model-guard, in Rust: the example plugin of the Odock plugin ABI.
//!
//! On the request gate it
//! 1. adds the header `x-odock-model-guard: checked` to the request,
//! 2. blocks (403) a request whose model is not in the configured allow
//!    list, with a reason the caller can act on,
//! 3. emits one evidence record: `model_guard.allowed` or
//!    `model_guard.blocked`, with the model as data.
//!
//! Config: `{"allow": ["gpt-4o", "gpt-4o-mini"]}`
//!
//! Its twin in plain C is `c/model_guard.c`; the tests load both and check
//! that they behave the same. Build the shared library with
//! `cargo build -p odock-example-model-guard --release`.
#![forbid(unsafe_code)]

use odock_plugin_abi::sdk::{Block, Host, InitContext, Plugin, RequestGate, Verdict};
use odock_plugin_abi::view::Frame;
use odock_plugin_abi::{Capabilities, Capability, Error, LogLevel};

/// One instance per worker: the allow list from the config.
pub struct ModelGuard {
    allowed: Vec<Vec<u8>>,
}

impl Plugin for ModelGuard {
    const NAME: &'static str = "model-guard";
    const VERSION: &'static str = "1.0.0";
    const CAPABILITIES: Capabilities = Capabilities::of(&[
        Capability::WriteHeaders,
        Capability::Block,
        Capability::EmitEvidence,
    ]);
    const CONFIG_SCHEMA: &'static str = concat!(
        r#"{"type":"object","required":["allow"],"#,
        r#""properties":{"allow":{"type":"array","items":{"type":"string"}}},"#,
        r#""additionalProperties":false}"#
    );

    fn init(ctx: &InitContext<'_>) -> Result<Self, Error> {
        match parse_allow_list(ctx.config()) {
            Some(allowed) => Ok(ModelGuard { allowed }),
            None => {
                let _ = ctx.host().log(
                    LogLevel::Error,
                    r#"model-guard: config needs {"allow": [model, ...]}"#,
                );
                Err(Error::InvalidConfig)
            }
        }
    }
}

impl RequestGate for ModelGuard {
    fn on_request(&mut self, host: &Host<'_>, frame: &Frame<'_>) -> Result<Verdict, Error> {
        host.set_header("x-odock-model-guard", b"checked")?;
        let model = frame.target.model;
        if self.allowed.iter().any(|m| m == model) {
            host.emit_evidence("model_guard.allowed", model)?;
            return Ok(Verdict::Continue);
        }
        host.emit_evidence("model_guard.blocked", model)?;
        let shown = &model[..model.len().min(128)];
        let reason = format!(
            "model `{}` is not allowed for this key",
            String::from_utf8_lossy(shown)
        );
        Ok(Block::new(403, reason)
            .with_detail(&b"not in the allow list"[..])
            .into())
    }
}

odock_plugin_abi::export_plugin!(ModelGuard, request);

/// Reads `{"allow": ["a", "b"]}`, the one shape the schema allows. The same
/// deliberately small reader as the C twin (a real plugin would use
/// serde_json): `None` for anything it does not understand.
fn parse_allow_list(config: &[u8]) -> Option<Vec<Vec<u8>>> {
    let key = b"\"allow\"";
    let at = config.windows(key.len()).position(|w| w == key)? + key.len();
    let mut rest = &config[at..];
    let skip = |r: &mut &[u8], set: &[u8]| {
        while let [b, tail @ ..] = *r {
            if !set.contains(b) {
                break;
            }
            *r = tail;
        }
    };
    skip(&mut rest, b" :\n\t");
    rest = rest.strip_prefix(b"[")?;
    let mut allowed = Vec::new();
    loop {
        skip(&mut rest, b" ,\n\t");
        match rest.first()? {
            b']' => return Some(allowed),
            b'"' => {
                let end = rest[1..].iter().position(|&b| b == b'"')? + 1;
                let model = &rest[1..end];
                if model.is_empty()
                    || model.len() >= 128
                    || model.contains(&b'\\')
                    || allowed.len() == 32
                {
                    return None;
                }
                allowed.push(model.to_vec());
                rest = &rest[end + 1..];
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_allow_list;

    #[test]
    fn reads_the_allow_list() {
        let got = parse_allow_list(br#"{"allow": ["gpt-4o", "o3"]}"#).unwrap();
        assert_eq!(got, vec![b"gpt-4o".to_vec(), b"o3".to_vec()]);
        assert_eq!(parse_allow_list(br#"{"allow": []}"#).unwrap().len(), 0);
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        assert!(parse_allow_list(b"{}").is_none());
        assert!(parse_allow_list(br#"{"allow": "gpt-4o"}"#).is_none());
        assert!(parse_allow_list(br#"{"allow": ["gpt-4o""#).is_none());
        assert!(parse_allow_list(br#"{"allow": [""]}"#).is_none());
    }
}
