//! Segment summaries: what a query needs to know to skip a segment without
//! opening it.
//!
//! A [`Summary`] covers the first `len` committed bytes of one segment:
//! how many records, the range of their evidence timestamps, how many do
//! not decode as evidence, and a Bloom filter of their keys: request id,
//! tenant, plugin, gate, verdict and kind. The open segment's filter has a
//! fixed size (one bit per 32 bytes of `segment_bytes`, so its false
//! positives grow as it fills); a sealed segment's is sized to its keys
//! (16 bits each).
//!
//! Summaries are built off the drain path, by a [`Summarizer`] that the
//! daemon's maintenance thread ticks: it reads what was committed since its
//! last tick (positional reads of the segment file, without the log's
//! lock), and at each tick installs the open segment's summary so far;
//! when a segment is sealed it sizes the Bloom filter to its keys, writes
//! `<first index>.sum` next to the segment (atomically) and installs it.
//! [`super::Log::open`] loads a sealed segment's `.sum` when it matches the
//! segment, and otherwise rebuilds it from the bytes recovery read anyway;
//! the open segment's summary is rebuilt there too.
//!
//! A summary is only trusted for a segment whose committed length it
//! covers: a query reads any segment whose summary lags.
//!
//! # File format (little-endian)
//!
//! ```text
//! magic u32 "ODSS", version u32 = 2, first u64, end u64, len u64,
//! records u64, min_ts u64, max_ts u64, undecodable u64,
//! hashes u32, words u32, bloom [u64; words], crc32c u32 (of all before)
//! ```

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use odock_dataplane::evidence;

use super::{HEADER_LEN, scan, u32_at, u64_at};

const MAGIC: u32 = 0x5353_444f;
/// The format version (2: the CRC32C-based key hash).
const VERSION: u32 = 2;
/// Bloom bits per distinct key (with 8 hashes: about 0.06 % false positives).
const BITS_PER_KEY: usize = 16;
const HASHES: u32 = 8;

/// The keys a record is filed under: `r:` request id, `t:` tenant,
/// `p:` plugin, `g:` gate, `v:` verdict, `k:` kind. The hash is part of
/// the `.sum` format, so it is spelled out here rather than borrowed from a
/// hasher whose output may change: CRC32C of the value (hardware-assisted),
/// its length and the field's tag packed into 64 bits, then the splitmix64
/// finalizer (so both halves are well mixed for the Bloom filter's double
/// hashing).
pub fn key_hash(field: char, value: &str) -> u64 {
    let crc = crc32c::crc32c(value.as_bytes());
    let mut h = (u64::from(crc) << 32)
        ^ ((value.len() as u64 & 0xff_ffff) << 8)
        ^ u64::from(u32::from(field) & 0xff);
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Keys are already well-mixed 64-bit hashes ([`key_hash`]): a set of them
/// needs no second hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b) ^ (self.0 >> 56);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type KeySet = HashSet<u64, BuildHasherDefault<KeyHasher>>;

/// The hash of a coded field (gate, verdict, kind) by its name, without
/// formatting one for the named codes.
fn name_hash(field: char, name: Option<&'static str>, shown: impl FnOnce() -> String) -> u64 {
    match name {
        Some(n) => key_hash(field, n),
        None => key_hash(field, &shown()),
    }
}

/// A Bloom filter of key hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    hashes: u32,
    words: Vec<u64>,
}

impl Bloom {
    fn empty(bits: usize) -> Bloom {
        let bits = bits.max(512).next_power_of_two();
        Bloom {
            hashes: HASHES,
            words: vec![0; bits / 64],
        }
    }

    fn build(keys: &KeySet) -> Bloom {
        let mut b = Bloom::empty(keys.len() * BITS_PER_KEY);
        for &k in keys {
            b.insert(k);
        }
        b
    }

    fn insert(&mut self, key: u64) {
        for bit in self.bits(key) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    fn bits(&self, key: u64) -> impl Iterator<Item = usize> + use<> {
        let m = self.words.len() * 64;
        let h1 = key as u32 as usize;
        let h2 = ((key >> 32) as usize) | 1;
        (0..self.hashes as usize).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
    }

    /// Whether `key` may be in the set (false: it is certainly not).
    pub fn may_contain(&self, key: u64) -> bool {
        self.bits(key)
            .all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// What is known of (a prefix of) one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The segment's first index.
    pub first: u64,
    /// The index after the last record covered.
    pub end: u64,
    /// Committed bytes covered.
    pub len: u64,
    /// Records covered.
    pub records: u64,
    /// Smallest evidence `timestamp_ns` (u64::MAX: no decodable record).
    pub min_ts: u64,
    /// Largest evidence `timestamp_ns`.
    pub max_ts: u64,
    /// Records that do not decode as evidence.
    pub undecodable: u64,
    /// The keys (`None`: any key may be there).
    pub keys: Option<Arc<Bloom>>,
    /// Whether this is a sealed segment's final summary.
    pub sealed: bool,
}

/// Builds a summary record by record.
#[derive(Debug, Clone)]
pub struct Builder {
    summary: Summary,
    keys: KeySet,
    /// The open segment's fixed-size filter, shared with the summary last
    /// installed (copied on the next write while that one is in use).
    open_keys: Arc<Bloom>,
}

impl Builder {
    /// An empty builder for the segment starting at `first`, in a log of
    /// `segment_bytes` segments (which sizes the open segment's filter).
    pub fn new(first: u64, segment_bytes: u64) -> Builder {
        let bits = usize::try_from(segment_bytes / 32).unwrap_or(usize::MAX >> 8);
        Builder {
            summary: Summary {
                first,
                end: first,
                len: 0,
                records: 0,
                min_ts: u64::MAX,
                max_ts: 0,
                undecodable: 0,
                keys: None,
                sealed: false,
            },
            keys: KeySet::default(),
            open_keys: Arc::new(Bloom::empty(bits.min(1 << 26))),
        }
    }

    /// Bytes covered so far.
    pub fn len(&self) -> u64 {
        self.summary.len
    }

    /// Whether nothing is covered yet.
    pub fn is_empty(&self) -> bool {
        self.summary.len == 0
    }

    /// Adds `bytes`, the segment's committed bytes from [`Builder::len`]
    /// on, whose first record has index `end` so far. Bytes that do not
    /// scan as records are covered but add nothing (readers skip them too).
    pub fn extend(&mut self, bytes: &[u8]) {
        let found = scan(bytes, self.summary.end);
        // Tenant, plugin, gate, verdict and kind mostly repeat from one
        // record to the next: hash them only when they change.
        let mut prev: Option<(&str, &str, u8, u8, u16)> = None;
        for r in &found.records {
            let payload = &bytes[r.offset + HEADER_LEN..r.offset + r.total];
            self.summary.records += 1;
            self.summary.end = r.index + 1;
            match evidence::decode(payload) {
                Ok(rec) => {
                    let ts = rec.stamp.timestamp_ns;
                    self.summary.min_ts = self.summary.min_ts.min(ts);
                    self.summary.max_ts = self.summary.max_ts.max(ts);
                    let e = &rec.evidence;
                    let open = Arc::make_mut(&mut self.open_keys);
                    let rid = key_hash('r', e.request_id);
                    if self.keys.insert(rid) {
                        open.insert(rid);
                    }
                    let same = (
                        e.scope.tenant,
                        e.plugin,
                        e.gate.code(),
                        e.verdict.code(),
                        e.kind.code(),
                    );
                    if prev != Some(same) {
                        prev = Some(same);
                        for k in [
                            key_hash('t', e.scope.tenant),
                            key_hash('p', e.plugin),
                            name_hash('g', e.gate.name(), || e.gate.to_string()),
                            name_hash('v', e.verdict.name(), || e.verdict.to_string()),
                            name_hash('k', e.kind.name(), || e.kind.to_string()),
                        ] {
                            if self.keys.insert(k) {
                                open.insert(k);
                            }
                        }
                    }
                }
                Err(_) => self.summary.undecodable += 1,
            }
        }
        self.summary.len += bytes.len() as u64;
    }

    /// The summary so far, with the open segment's fixed-size filter.
    pub fn partial(&self) -> Summary {
        Summary {
            keys: Some(Arc::clone(&self.open_keys)),
            ..self.summary.clone()
        }
    }

    /// The summary with its Bloom filter (for a sealed segment).
    pub fn finish(&self) -> Summary {
        Summary {
            keys: Some(Arc::new(Bloom::build(&self.keys))),
            sealed: true,
            ..self.summary.clone()
        }
    }
}

impl Summary {
    /// Builds the summary of a whole sealed segment.
    pub fn of_sealed(first: u64, bytes: &[u8]) -> Summary {
        let mut b = Builder::new(first, 0);
        b.extend(bytes);
        b.finish()
    }

    /// The `.sum` file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (hashes, words): (u32, &[u64]) = match &self.keys {
            Some(b) => (b.hashes, &b.words),
            None => (0, &[]),
        };
        let mut out = Vec::with_capacity(72 + words.len() * 8 + 4);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for v in [
            self.first,
            self.end,
            self.len,
            self.records,
            self.min_ts,
            self.max_ts,
            self.undecodable,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&hashes.to_le_bytes());
        out.extend_from_slice(&(words.len() as u32).to_le_bytes());
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a `.sum` file; `None` when it is not a valid one.
    pub fn decode(b: &[u8]) -> Option<Summary> {
        if b.len() < 72 + 4 || u32_at(b, 0) != MAGIC || u32_at(b, 4) != VERSION {
            return None;
        }
        let body = b.len() - 4;
        if crc32c::crc32c(&b[..body]) != u32_at(b, body) {
            return None;
        }
        let hashes = u32_at(b, 64);
        let words = u32_at(b, 68) as usize;
        if 72 + words * 8 != body || (hashes == 0) != (words == 0) {
            return None;
        }
        let keys = (words > 0).then(|| {
            Arc::new(Bloom {
                hashes,
                words: (0..words).map(|i| u64_at(b, 72 + i * 8)).collect(),
            })
        });
        Some(Summary {
            first: u64_at(b, 8),
            end: u64_at(b, 16),
            len: u64_at(b, 24),
            records: u64_at(b, 32),
            min_ts: u64_at(b, 40),
            max_ts: u64_at(b, 48),
            undecodable: u64_at(b, 56),
            keys,
            sealed: true,
        })
    }

    /// Whether a record with a timestamp in `[since, until)` may be here.
    pub fn may_have_time(&self, since: Option<u64>, until: Option<u64>) -> bool {
        if self.records == self.undecodable {
            return false;
        }
        since.is_none_or(|s| self.max_ts >= s) && until.is_none_or(|u| self.min_ts < u)
    }

    /// Whether a record filed under `key` may be here.
    pub fn may_have_key(&self, key: u64) -> bool {
        self.keys.as_ref().is_none_or(|b| b.may_contain(key))
    }
}

/// The name of the summary file of segment `name`.
pub fn summary_name(segment: &str) -> String {
    let stem = segment.strip_suffix(".seg").unwrap_or(segment);
    format!("{stem}.sum")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_bloom_has_every_key() {
        let mut keys = KeySet::default();
        for i in 0..5000 {
            keys.insert(key_hash('r', &format!("req-{i}")));
        }
        let s = Summary {
            first: 7,
            end: 5007,
            len: 1 << 20,
            records: 5000,
            min_ts: 10,
            max_ts: 20,
            undecodable: 1,
            keys: Some(Arc::new(Bloom::build(&keys))),
            sealed: true,
        };
        let bytes = s.encode();
        assert_eq!(Summary::decode(&bytes), Some(s.clone()));
        let mut torn = bytes.clone();
        torn[30] ^= 1;
        assert_eq!(Summary::decode(&torn), None, "CRC");
        let b = s.keys.as_ref().unwrap();
        assert!((0..5000).all(|i| b.may_contain(key_hash('r', &format!("req-{i}")))));
        let false_pos = (0..10_000)
            .filter(|i| b.may_contain(key_hash('r', &format!("other-{i}"))))
            .count();
        assert!(false_pos < 100, "{false_pos} false positives in 10000");
        assert!(!b.may_contain(key_hash('t', "req-1")), "fields are apart");
    }
}
