//! The JSON rendering of a record, for export as JSON lines.
//!
//! One object per record. Always present: `version` (`"1.0"`), `kind`
//! (its name, or `kind(N)` for a code this version does not name),
//! `sequence`, `timestamp_ns`, `time` (the same instant as RFC 3339 UTC with
//! ns), `worker`. Present only when not empty or zero: `gate`, `verdict`,
//! `status`, `plugin_id`, `plugin`, `request_id`, `scope` (an object of its
//! non-empty fields), `reason`, `detail`, `changed` (an array of names),
//! `attrs` (an object; should a key repeat, it repeats in the object),
//! `duration_ns`, `flags` (an array of names; `bit_N` for unnamed bits),
//! `payload` (`{"kind", "data"}` when its bytes are UTF-8, else
//! `{"kind", "data_base64"}`, standard alphabet with padding), and the
//! kind-specific count under a name that says what it counts: `lost`
//! (gap, always present), `attempt` (follow_up), `state_version`
//! (control_change), `count` (any other kind).

use std::fmt::{self, Write as _};
use std::io;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::record::{Attrs, EvidenceRecord, Flags, Gate, Kind, Names, Payload, Scope, Verdict};

/// Writes `record` as one line of JSON (the object, then `\n`).
///
/// # Errors
/// What writing to `out` returns.
pub fn write_json_line<W: io::Write>(record: &EvidenceRecord<'_>, mut out: W) -> io::Result<()> {
    serde_json::to_writer(&mut out, record)?;
    out.write_all(b"\n")
}

impl Serialize for EvidenceRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.evidence;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("version", &Shown(&self.version))?;
        m.serialize_entry("kind", &Shown(&e.kind))?;
        m.serialize_entry("sequence", &self.stamp.sequence)?;
        m.serialize_entry("timestamp_ns", &self.stamp.timestamp_ns)?;
        m.serialize_entry("time", &Shown(&Rfc3339(self.stamp.timestamp_ns)))?;
        m.serialize_entry("worker", &self.stamp.worker)?;
        if e.gate != Gate::None {
            m.serialize_entry("gate", &Shown(&e.gate))?;
        }
        if e.verdict != Verdict::None {
            m.serialize_entry("verdict", &Shown(&e.verdict))?;
        }
        if e.status != 0 {
            m.serialize_entry("status", &e.status)?;
        }
        if e.plugin_id != 0 {
            m.serialize_entry("plugin_id", &e.plugin_id)?;
        }
        for (key, text) in [("plugin", e.plugin), ("request_id", e.request_id)] {
            if !text.is_empty() {
                m.serialize_entry(key, text)?;
            }
        }
        if !e.scope.is_empty() {
            m.serialize_entry("scope", &e.scope)?;
        }
        for (key, text) in [("reason", e.reason), ("detail", e.detail)] {
            if !text.is_empty() {
                m.serialize_entry(key, text)?;
            }
        }
        if !e.changed.is_empty() {
            m.serialize_entry("changed", &e.changed)?;
        }
        if !e.attrs.is_empty() {
            m.serialize_entry("attrs", &e.attrs)?;
        }
        if e.duration_ns != 0 {
            m.serialize_entry("duration_ns", &e.duration_ns)?;
        }
        let count_key = match e.kind {
            Kind::Gap => "lost",
            Kind::FollowUp => "attempt",
            Kind::ControlChange => "state_version",
            _ => "count",
        };
        if e.count != 0 || e.kind == Kind::Gap {
            m.serialize_entry(count_key, &e.count)?;
        }
        if !e.flags.is_empty() {
            m.serialize_entry("flags", &e.flags)?;
        }
        if !e.payload.is_empty() {
            m.serialize_entry("payload", &e.payload)?;
        }
        m.end()
    }
}

impl Serialize for Scope<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (key, value) in self.fields() {
            if !value.is_empty() {
                m.serialize_entry(key, value)?;
            }
        }
        m.end()
    }
}

impl Serialize for Names<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl Serialize for Attrs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for bit in 0..16 {
            let flag = Flags(1 << bit);
            if !self.contains(flag) {
                continue;
            }
            match Flags::NAMED.iter().find(|(f, _)| *f == flag) {
                Some((_, name)) => seq.serialize_element(name)?,
                None => seq.serialize_element(&Shown(&format_args!("bit_{bit}")))?,
            }
        }
        seq.end()
    }
}

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("kind", self.kind)?;
        match std::str::from_utf8(self.data) {
            Ok(text) => m.serialize_entry("data", text)?,
            Err(_) => m.serialize_entry("data_base64", &Shown(&Base64(self.data)))?,
        }
        m.end()
    }
}

/// Serializes a `Display` value as a string, without allocating one.
struct Shown<'a, T: fmt::Display + ?Sized>(&'a T);

impl<T: fmt::Display + ?Sized> Serialize for Shown<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// Standard base64 with padding.
struct Base64<'a>(&'a [u8]);

impl fmt::Display for Base64<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for chunk in self.0.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    let index = (n >> (18 - 6 * i)) & 63;
                    f.write_char(char::from(ALPHABET[index as usize]))?;
                } else {
                    f.write_char('=')?;
                }
            }
        }
        Ok(())
    }
}

/// A UNIX time in ns as RFC 3339 UTC: `2026-05-01T12:00:00.000000000Z`.
struct Rfc3339(u64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000_000;
        let nanos = self.0 % 1_000_000_000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant,
/// "chrono-Compatible Low-Level Date Algorithms", `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (bytes, text) in cases {
            assert_eq!(Base64(bytes).to_string(), text);
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (leap day) 12:34:56.789 UTC = 951827696 s.
        assert_eq!(
            Rfc3339(951_827_696_789_000_000).to_string(),
            "2000-02-29T12:34:56.789000000Z"
        );
        // 2024-12-31T23:59:59Z = 1735689599 s.
        assert_eq!(
            Rfc3339(1_735_689_599_000_000_001).to_string(),
            "2024-12-31T23:59:59.000000001Z"
        );
        // The largest u64 instant must not panic.
        let _ = Rfc3339(u64::MAX).to_string();
    }
}
