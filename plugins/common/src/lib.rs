//! Pieces the Odock reference plugins share.
//!
//! [`config_object`] and [`init_config`]: reading a config as a JSON object
//! of known fields, and logging a refusal at init.
//!
//! [`http::post`]: the webhook client that `notify` and
//! `audit-export` use from `on_followup`, which runs off the hot path (the
//! complete pool), so a blocking socket with a short timeout is the right
//! tool there, and never on a gate hook.
#![forbid(unsafe_code)]

pub mod http;

use odock_plugin_abi::sdk::InitContext;
use odock_plugin_abi::{Error, LogLevel};
use serde_json::{Map, Value};

/// A plugin config's JSON object, refused (naming the field) when it is not
/// JSON, not an object, or has a key outside `fields`.
///
/// # Errors
/// The message to log.
pub fn config_object(bytes: &[u8], fields: &[&str]) -> Result<Map<String, Value>, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("config is not JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("config must be a JSON object".into());
    };
    if let Some(key) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(format!("unknown field `{key}`"));
    }
    Ok(obj)
}

/// The plugin's config read by `parse` at init; a refusal is logged as
/// `<plugin>: bad config: ...` and answers [`Error::InvalidConfig`].
///
/// # Errors
/// [`Error::InvalidConfig`].
pub fn init_config<T>(
    ctx: &InitContext<'_>,
    plugin: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, Error> {
    parse(ctx.config()).map_err(|e| {
        let _ = ctx
            .host()
            .log(LogLevel::Error, &format!("{plugin}: bad config: {e}"));
        Error::InvalidConfig
    })
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC timestamp
/// (`2026-11-25T14:03:07.123Z`), for records meant for SIEMs.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let (secs, ms) = (unix_ms / 1000, unix_ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days_from_civil, inverted (civil_from_days).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_timestamps() {
        assert_eq!(super::rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339_millis(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            super::rfc3339_millis(1_764_079_387_005),
            "2025-11-25T14:03:07.005Z"
        );
    }
}
