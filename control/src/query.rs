//! Evidence queries over the durable log: filters, and the JSON line each
//! matching record becomes.

use std::collections::HashMap;

use odock_dataplane::evidence::{self, EvidenceRecord};

use crate::log::{Entry, LogError, Position, ScanReport, Snapshot, Storage, Summary, key_hash};
use crate::sink::{gate_names, verdict_names};
use crate::state::ApiError;

/// What `GET /v1/evidence` filters on (every given filter must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Records written at or after this time (UNIX epoch ns).
    pub since_ns: Option<u64>,
    /// Records written before this time.
    pub until_ns: Option<u64>,
    /// Request id.
    pub request_id: Option<String>,
    /// Scope tenant.
    pub tenant: Option<String>,
    /// Plugin name.
    pub plugin: Option<String>,
    /// Gate name (`request`, `response`, `complete`, `none`).
    pub gate: Option<String>,
    /// Verdict name (`continue`, `block`, ...).
    pub verdict: Option<String>,
    /// Kind name (`decision`, `gap`, `control_change`, ...).
    pub kind: Option<String>,
    /// Start at this log index.
    pub from_index: u64,
    /// At most this many records (default 1000 unless following).
    pub limit: Option<usize>,
    /// Keep streaming new records.
    pub follow: bool,
}

impl Filter {
    /// Parses a query string.
    ///
    /// # Errors
    /// 400 naming the parameter.
    pub fn parse(query: &str) -> Result<Filter, ApiError> {
        let mut f = Filter::default();
        let params: HashMap<String, String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        for (k, v) in params {
            let num = |v: &str| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::field(
                        400,
                        k.clone(),
                        format!("{v:?} is not a non-negative integer"),
                    )
                })
            };
            match k.as_str() {
                "since_ns" => f.since_ns = Some(num(&v)?),
                "until_ns" => f.until_ns = Some(num(&v)?),
                "from_index" => f.from_index = num(&v)?,
                "limit" => f.limit = Some(num(&v)? as usize),
                "follow" => {
                    f.follow = match v.as_str() {
                        "" | "1" | "true" => true,
                        "0" | "false" => false,
                        _ => {
                            return Err(ApiError::field(
                                400,
                                k.clone(),
                                format!("{v:?}: 1, true, 0 or false"),
                            ));
                        }
                    }
                }
                "request_id" => f.request_id = Some(v),
                "tenant" => f.tenant = Some(v),
                "plugin" => f.plugin = Some(v),
                "gate" => f.gate = Some(known(&k, v, &gate_names())?),
                "verdict" => f.verdict = Some(known(&k, v, &verdict_names())?),
                "kind" => f.kind = Some(known(&k, v, &kind_names())?),
                _ => return Err(ApiError::field(400, k.clone(), "unknown query parameter")),
            }
        }
        Ok(f)
    }

    /// Whether any content filter (request id, tenant, plugin, gate,
    /// verdict, kind) is set.
    pub fn has_content_filter(&self) -> bool {
        self.request_id.is_some()
            || self.tenant.is_some()
            || self.plugin.is_some()
            || self.gate.is_some()
            || self.verdict.is_some()
            || self.kind.is_some()
    }

    /// Whether a segment with summary `s` may hold a record this filter
    /// answers with (false: skip it). A segment with undecodable records
    /// is read when no content filter is set, as those are answered
    /// whatever the time.
    pub fn may_match(&self, s: &Summary) -> bool {
        if s.undecodable > 0 && !self.has_content_filter() {
            return true;
        }
        if !s.may_have_time(self.since_ns, self.until_ns) {
            return false;
        }
        [
            ('r', &self.request_id),
            ('t', &self.tenant),
            ('p', &self.plugin),
            ('g', &self.gate),
            ('v', &self.verdict),
            ('k', &self.kind),
        ]
        .into_iter()
        .all(|(field, v)| {
            v.as_deref()
                .is_none_or(|v| s.may_have_key(key_hash(field, v)))
        })
    }

    /// Whether `r` matches.
    pub fn matches(&self, r: &EvidenceRecord<'_>) -> bool {
        let e = &r.evidence;
        let ts = r.stamp.timestamp_ns;
        self.since_ns.is_none_or(|s| ts >= s)
            && self.until_ns.is_none_or(|u| ts < u)
            && self.request_id.as_deref().is_none_or(|v| e.request_id == v)
            && self.tenant.as_deref().is_none_or(|v| e.scope.tenant == v)
            && self.plugin.as_deref().is_none_or(|v| e.plugin == v)
            && self.gate.as_deref().is_none_or(|v| e.gate.to_string() == v)
            && self
                .verdict
                .as_deref()
                .is_none_or(|v| e.verdict.to_string() == v)
            && self.kind.as_deref().is_none_or(|v| e.kind.to_string() == v)
    }
}

/// The kind names a query may use.
pub fn kind_names() -> Vec<&'static str> {
    (1..=u16::MAX)
        .map_while(|c| evidence::Kind::from_code(c).name())
        .collect()
}

/// `v` if it is one of `names`, else a 400 naming `field`.
fn known(field: &str, v: String, names: &[&str]) -> Result<String, ApiError> {
    if names.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(ApiError::field(
            400,
            field,
            format!("unknown {v:?}: one of {}", names.join(", ")),
        ))
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The JSON line for one log entry: the record's JSON (see
/// `odock_dataplane::evidence::write_json_line`) plus `log_index`,
/// `stored_ns`, `ring` and `lane`; `None` when it does not decode or does
/// not match. An entry that does not decode becomes a line with `kind`
/// `undecodable` and the error, so an export never hides one silently,
/// unless a filter is set.
pub fn render(entry: &Entry, filter: &Filter) -> Option<String> {
    render_if(entry, |r| filter.matches(r), !filter.has_content_filter())
}

/// Runs `filter` over `snapshot` from log index `from`: each matching
/// record's line goes to `f` (with the entry's index) until it returns
/// `false`. Segments whose summaries rule out a match are not opened.
///
/// # Errors
/// Reading a segment failed.
pub fn run<S: Storage>(
    snapshot: &Snapshot,
    storage: &S,
    from: u64,
    filter: &Filter,
    f: impl FnMut(u64, String) -> bool,
) -> Result<ScanReport, LogError> {
    run_at(snapshot, storage, None, from, filter, f)
}

/// [`run`], starting at `at` (an earlier snapshot's end) when it is the
/// position of `from`: the segment it names is read from there on.
///
/// # Errors
/// Reading a segment failed.
pub fn run_at<S: Storage>(
    snapshot: &Snapshot,
    storage: &S,
    at: Option<Position>,
    from: u64,
    filter: &Filter,
    mut f: impl FnMut(u64, String) -> bool,
) -> Result<ScanReport, LogError> {
    let may_match = |s: &Summary| filter.may_match(s);
    let each = |entry: Entry| match render(&entry, filter) {
        Some(line) => f(entry.index, line),
        None => true,
    };
    match at.filter(|p| p.index == from) {
        Some(p) => snapshot.scan_at(storage, p, may_match, each),
        None => snapshot.scan_where(storage, from, may_match, each),
    }
}

/// [`render`] with any predicate: `None` when the record decodes and
/// `keep` refuses it, or when it does not decode and `pass_undecodable` is
/// false.
pub fn render_if(
    entry: &Entry,
    keep: impl FnOnce(&EvidenceRecord<'_>) -> bool,
    pass_undecodable: bool,
) -> Option<String> {
    // The record's JSON object is written straight to the line (no
    // intermediate `Value`), then the log's fields go before its `}`.
    let mut out = Vec::with_capacity(entry.payload.len() * 2 + 96);
    match evidence::decode(&entry.payload) {
        Ok(r) => {
            if !keep(&r) {
                return None;
            }
            serde_json::to_writer(&mut out, &r).ok()?;
        }
        Err(e) => {
            if !pass_undecodable {
                return None;
            }
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({"kind": "undecodable", "error": e.to_string()}),
            )
            .ok()?;
        }
    }
    if out.pop() != Some(b'}') {
        return None;
    }
    if out.len() > 1 {
        out.push(b',');
    }
    use std::io::Write as _;
    writeln!(
        out,
        "\"log_index\":{},\"stored_ns\":{},\"ring\":{},\"lane\":{}}}",
        entry.index, entry.stored_ns, entry.origin.ring, entry.origin.lane
    )
    .ok()?;
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn parse_names_the_bad_parameter() {
        let f = Filter::parse("gate=request&verdict=block&kind=gap&follow=0&tenant=a%20b").unwrap();
        assert_eq!(f.gate.as_deref(), Some("request"));
        assert_eq!(f.tenant.as_deref(), Some("a b"));
        assert!(!f.follow);
        for (q, field) in [
            ("gate=lunch", "gate"),
            ("verdict=blocked", "verdict"),
            ("kind=decisions", "kind"),
            ("follow=maybe", "follow"),
            ("limit=-1", "limit"),
            ("since_ns=x", "since_ns"),
            ("colour=red", "colour"),
        ] {
            let e = Filter::parse(q).unwrap_err();
            assert_eq!(
                (e.status, e.field.as_deref()),
                (400, Some(field)),
                "{q}: {e}"
            );
        }
        assert!(kind_names().contains(&"control_change"));
    }

    #[test]
    fn a_line_is_the_record_and_its_place_in_the_log() {
        use crate::log::Origin;
        let e = evidence::Evidence {
            request_id: "r\"1",
            ..evidence::Evidence::new(evidence::Kind::Decision)
        };
        let stamp = evidence::Stamp {
            sequence: 4,
            timestamp_ns: 5,
            worker: 6,
        };
        let mut payload = vec![0; evidence::encoded_len(&e)];
        evidence::encode(&stamp, &e, &mut payload).unwrap();
        let entry = Entry {
            index: 7,
            stored_ns: 8,
            origin: Origin {
                ring: 9,
                lane: 1,
                ring_seq: 0,
            },
            payload,
        };
        let line = render(&entry, &Filter::default()).unwrap();
        assert!(line.ends_with("}\n") && line.lines().count() == 1, "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        let mut want = serde_json::to_value(evidence::decode(&entry.payload).unwrap()).unwrap();
        for (k, n) in [("log_index", 7), ("stored_ns", 8), ("ring", 9), ("lane", 1)] {
            want[k] = n.into();
        }
        assert_eq!(v, want);
        assert_eq!(v["request_id"], "r\"1");
        let bad = Entry {
            payload: b"junk".to_vec(),
            ..entry
        };
        let v: Value = serde_json::from_str(&render(&bad, &Filter::default()).unwrap()).unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["log_index"].as_u64()),
            (Some("undecodable"), Some(7))
        );
        assert!(render(&bad, &Filter::parse("tenant=x").unwrap()).is_none());
    }
}
