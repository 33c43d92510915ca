use std::cell::Cell;

use proptest::prelude::*;

use super::*;
use crate::ring::{Geometry, Ring};

/// An owned record, for property tests: [`Owned::with`] lends it out as an
/// [`Evidence`].
#[derive(Debug, Clone)]
struct Owned {
    stamp: Stamp,
    kind: u16,
    gate: u8,
    verdict: u8,
    flags: u16,
    status: u16,
    plugin_id: u32,
    duration_ns: u64,
    count: u64,
    /// request_id, plugin, 6 × scope, reason, detail, payload kind.
    texts: Vec<String>,
    changed: Vec<String>,
    attrs: Vec<(String, String)>,
    payload: Vec<u8>,
}

impl Owned {
    fn with<R>(&self, f: impl FnOnce(&Stamp, &Evidence<'_>) -> R) -> R {
        let names: Vec<&str> = self.changed.iter().map(String::as_str).collect();
        let attrs: Vec<(&str, &str)> = self
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let t = |i: usize| self.texts[i].as_str();
        let evidence = Evidence {
            kind: Kind::from_code(self.kind),
            gate: Gate::from_code(self.gate),
            verdict: Verdict::from_code(self.verdict),
            flags: Flags(self.flags),
            status: self.status,
            plugin_id: self.plugin_id,
            duration_ns: self.duration_ns,
            count: self.count,
            request_id: t(0),
            plugin: t(1),
            scope: Scope {
                tenant: t(2),
                virtual_key: t(3),
                environment: t(4),
                model: t(5),
                mcp_server: t(6),
                tool: t(7),
            },
            reason: t(8),
            detail: t(9),
            changed: Names::new(&names),
            attrs: Attrs::new(&attrs),
            payload: Payload {
                kind: t(10),
                data: &self.payload,
            },
        };
        f(&self.stamp, &evidence)
    }

    fn encode(&self) -> Vec<u8> {
        self.with(|stamp, evidence| {
            let mut buf = vec![0; encoded_len(evidence)];
            let n = encode(stamp, evidence, &mut buf).expect("encodes");
            assert_eq!(n, buf.len());
            buf
        })
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "\\PC{0,24}"]
}

fn owned() -> impl Strategy<Value = Owned> {
    (
        (any::<u64>(), any::<u64>(), any::<u32>()),
        (any::<u16>(), any::<u8>(), any::<u8>(), any::<u16>()),
        (any::<u16>(), any::<u32>(), any::<u64>(), any::<u64>()),
        proptest::collection::vec(text(), 11),
        proptest::collection::vec(text(), 0..5),
        proptest::collection::vec((text(), text()), 0..4),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(stamp, (kind, gate, verdict, flags), nums, texts, changed, attrs, payload)| Owned {
                stamp: Stamp {
                    sequence: stamp.0,
                    timestamp_ns: stamp.1,
                    worker: stamp.2,
                },
                kind,
                gate,
                verdict,
                // The encoder sets TRUNCATED itself; these records are short.
                flags: flags & !Flags::TRUNCATED.0,
                status: nums.0,
                plugin_id: nums.1,
                duration_ns: nums.2,
                count: nums.3,
                texts,
                changed,
                attrs,
                payload,
            },
        )
}

fn decision<'a>(request_id: &'a str, reason: &'a str) -> Evidence<'a> {
    Evidence {
        gate: Gate::Request,
        verdict: Verdict::Block,
        status: 403,
        plugin_id: 7,
        duration_ns: 1_234,
        request_id,
        plugin: "tenant-check",
        scope: Scope {
            tenant: "acme",
            model: "gpt-4o",
            ..Scope::NONE
        },
        reason,
        detail: "rule 12",
        ..Evidence::new(Kind::Decision)
    }
}

fn encode_vec(stamp: &Stamp, evidence: &Evidence<'_>) -> Vec<u8> {
    let mut buf = vec![0; encoded_len(evidence)];
    encode(stamp, evidence, &mut buf).expect("encodes");
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_records_round_trip(o in owned()) {
        let bytes = o.encode();
        o.with(|stamp, evidence| {
            let record = decode(&bytes).expect("decodes");
            prop_assert_eq!(record.version, Version { major: MAJOR, minor: MINOR });
            prop_assert_eq!(&record.stamp, stamp);
            prop_assert_eq!(&record.evidence, evidence);
            // A decoded record re-encodes to the same bytes.
            prop_assert_eq!(encode_vec(&record.stamp, &record.evidence), bytes.clone());
            // Laid end to end, records come apart again.
            let mut two = bytes.clone();
            two.extend_from_slice(&bytes);
            let (first, rest) = decode_prefix(&two).expect("first");
            prop_assert_eq!(first, record);
            prop_assert_eq!(rest, &bytes[..]);
            // The JSON rendering is JSON.
            let mut line = Vec::new();
            write_json_line(&record, &mut line).expect("renders");
            prop_assert_eq!(line.last(), Some(&b'\n'));
            let value: serde_json::Value = serde_json::from_slice(&line).expect("parses");
            prop_assert_eq!(value["sequence"].as_u64(), Some(stamp.sequence));
            Ok(())
        })?;
    }

    #[test]
    fn every_truncation_is_an_error(o in owned()) {
        let bytes = o.encode();
        for cut in 0..bytes.len() {
            prop_assert!(decode(&bytes[..cut]).is_err(), "prefix of {cut} decoded");
            prop_assert!(decode_prefix(&bytes[..cut]).is_err(), "prefix of {cut} decoded");
            // Even when total_len is made to agree, the fields run out.
            if cut >= 8 {
                let mut short = bytes[..cut].to_vec();
                short[4..8].copy_from_slice(&(cut as u32).to_le_bytes());
                prop_assert!(decode(&short).is_err(), "patched prefix of {cut} decoded");
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
        let _ = decode_prefix(&bytes);
        // And with a believable frame, so the field parsing is reached.
        if bytes.len() >= 8 {
            let mut framed = bytes.clone();
            framed[0] = MAJOR;
            framed[2..4].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
            let len = framed.len() as u32;
            framed[4..8].copy_from_slice(&len.to_le_bytes());
            if let Ok(record) = decode(&framed) {
                exercise(&record);
            }
        }
    }

    #[test]
    fn mutated_records_never_panic(
        o in owned(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = o.encode();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(record) = decode(&bytes) {
            exercise(&record);
        }
    }
}

/// Reads every part of a record that decoded, as a reader would.
fn exercise(record: &EvidenceRecord<'_>) {
    let _ = record.evidence.changed.iter().count();
    let _ = record.evidence.attrs.iter().count();
    let again = encode_vec(&record.stamp, &record.evidence);
    let back = decode(&again).expect("a decoded record re-encodes");
    assert_eq!(back.evidence, record.evidence);
    let mut line = Vec::new();
    write_json_line(record, &mut line).expect("renders");
    serde_json::from_slice::<serde_json::Value>(&line).expect("JSON");
}

#[test]
fn empty_record_is_the_minimum_length() {
    let bytes = encode_vec(&Stamp::default(), &Evidence::new(Kind::Gap));
    assert_eq!(bytes.len(), MIN_RECORD_LEN);
    assert_eq!(MIN_RECORD_LEN, 86);
    assert_eq!(&bytes[..8], &[1, 0, 56, 0, 86, 0, 0, 0]);
}

#[test]
fn header_layout_is_as_documented() {
    let stamp = Stamp {
        sequence: 0x1122_3344_5566_7788,
        timestamp_ns: 0x0102_0304_0506_0708,
        worker: 0xAABB_CCDD,
    };
    let evidence = Evidence {
        flags: Flags::SHADOW | Flags::STREAM_CHUNK,
        count: 9,
        ..decision("r", "no")
    };
    let b = encode_vec(&stamp, &evidence);
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!((b[0], b[1], u16_at(2)), (1, 0, 56));
    assert_eq!(u32_at(4) as usize, b.len());
    assert_eq!(u16_at(8), 1);
    assert_eq!(u16_at(10), 0b1_0001);
    assert_eq!(u32_at(12), 0xAABB_CCDD);
    assert_eq!(u64_at(16), 0x1122_3344_5566_7788);
    assert_eq!(u64_at(24), 0x0102_0304_0506_0708);
    assert_eq!(u64_at(32), 1_234);
    assert_eq!(u64_at(40), 9);
    assert_eq!(u32_at(48), 7);
    assert_eq!(u16_at(52), 403);
    assert_eq!((b[54], b[55]), (1, 2));
    // Field 1, request_id: length 1, "r".
    assert_eq!(&b[56..59], &[1, 0, b'r']);
}

#[test]
fn a_newer_minor_is_read_and_its_additions_skipped() {
    let base = encode_vec(&Stamp::default(), &decision("req-1", "blocked"));
    // A 1.1 record: 8 more header bytes and a trailing field.
    let mut newer = Vec::new();
    newer.extend_from_slice(&base[..HEADER_LEN]);
    newer.extend_from_slice(&[0xEE; 8]);
    newer.extend_from_slice(&base[HEADER_LEN..]);
    newer.extend_from_slice(&[3, 0, b'n', b'e', b'w']);
    newer[1] = MINOR + 1;
    newer[2..4].copy_from_slice(&(HEADER_LEN as u16 + 8).to_le_bytes());
    let len = newer.len() as u32;
    newer[4..8].copy_from_slice(&len.to_le_bytes());
    let record = decode(&newer).expect("a newer minor decodes");
    assert_eq!(
        record.version,
        Version {
            major: 1,
            minor: MINOR + 1
        }
    );
    assert_eq!(record.evidence, decision("req-1", "blocked"));

    // The same additions in a record of this minor are an error.
    let mut same = newer.clone();
    same[1] = MINOR;
    let err = decode(&same).unwrap_err();
    assert_eq!((err.field, err.offset), ("header_len", 2));
    let mut trailing = base.clone();
    trailing.push(0);
    let len = trailing.len() as u32;
    trailing[4..8].copy_from_slice(&len.to_le_bytes());
    let err = decode(&trailing).unwrap_err();
    assert_eq!(err.field, "end");
    assert_eq!(err.offset, base.len());
    assert_eq!(err.problem, Problem::TrailingBytes { count: 1 });
}

#[test]
fn another_major_is_refused() {
    for major in [0, 2, 255] {
        let mut bytes = encode_vec(&Stamp::default(), &decision("r", ""));
        bytes[0] = major;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err.problem, Problem::UnsupportedMajor { major });
        assert_eq!((err.field, err.offset), ("major", 0));
        assert!(err.to_string().contains("major version"), "{err}");
    }
}

#[test]
fn unknown_codes_pass_through() {
    let evidence = Evidence {
        gate: Gate::from_code(9),
        verdict: Verdict::from_code(200),
        flags: Flags(1 << 9),
        count: 3,
        ..Evidence::new(Kind::from_code(4242))
    };
    let bytes = encode_vec(&Stamp::default(), &evidence);
    let record = decode(&bytes).unwrap();
    assert_eq!(record.evidence.kind, Kind::Other(4242));
    assert_eq!(record.evidence.kind.name(), None);
    assert_eq!(record.evidence.gate, Gate::Other(9));
    assert_eq!(record.evidence.verdict.code(), 200);
    let json: serde_json::Value = serde_json::to_value(record).unwrap();
    assert_eq!(json["kind"], "kind(4242)");
    assert_eq!(json["gate"], "gate(9)");
    assert_eq!(json["verdict"], "verdict(200)");
    assert_eq!(json["flags"], serde_json::json!(["bit_9"]));
    assert_eq!(json["count"], 3);
    // Other(n) of a named code is that name.
    assert_eq!(Kind::Other(6), Kind::Gap);
    assert_eq!(Kind::Other(6).name(), Some("gap"));
}

#[test]
fn text_that_is_not_utf8_is_named() {
    let bytes = encode_vec(&Stamp::default(), &decision("req", "abcd"));
    // reason is field 9: after request_id (2+3), plugin (2+12), 6 empty
    // scope fields but tenant (2+4) and model (2+6).
    let reason_at = HEADER_LEN + (2 + 3) + (2 + 12) + (2 + 4) + 2 + 2 + (2 + 6) + 2 + 2;
    assert_eq!(&bytes[reason_at..reason_at + 6], b"\x04\x00abcd");
    let mut bad = bytes.clone();
    bad[reason_at + 4] = 0xFF;
    let err = decode(&bad).unwrap_err();
    assert_eq!(err.field, "reason");
    assert_eq!(err.offset, reason_at + 2);
    assert_eq!(err.problem, Problem::InvalidUtf8 { valid_up_to: 2 });
    assert!(err.to_string().contains("`reason` at offset"), "{err}");
}

#[test]
fn a_length_past_the_end_is_named() {
    let mut bytes = encode_vec(&Stamp::default(), &Evidence::new(Kind::Decision));
    // request_id's length says 500 bytes.
    bytes[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&500u16.to_le_bytes());
    let err = decode(&bytes).unwrap_err();
    assert_eq!((err.field, err.offset), ("request_id", HEADER_LEN + 2));
    assert!(matches!(
        err.problem,
        Problem::Truncated { needed: 500, .. }
    ));
    // A list count larger than its entries.
    let mut bytes = encode_vec(&Stamp::default(), &Evidence::new(Kind::Decision));
    let changed_at = HEADER_LEN + 10 * 2;
    bytes[changed_at..changed_at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(decode(&bytes).unwrap_err().field, "changed");
    // total_len shorter than a frame, in a stream.
    let mut bytes = encode_vec(&Stamp::default(), &Evidence::new(Kind::Decision));
    bytes[4..8].copy_from_slice(&3u32.to_le_bytes());
    assert!(decode_prefix(&bytes).is_err());
    assert!(decode(&bytes).is_err());
}

#[test]
fn over_long_fields_are_cut_at_a_character_and_flagged() {
    // 'é' is two bytes: 40,000 of them are 80,000 bytes, over the limit.
    let long = "é".repeat(40_000);
    let names: Vec<&str> = vec!["f"; MAX_LIST_LEN + 5];
    let evidence = Evidence {
        reason: &long,
        changed: Names::new(&names),
        ..decision("r", "")
    };
    let bytes = encode_vec(&Stamp::default(), &evidence);
    let record = decode(&bytes).unwrap();
    assert!(record.evidence.flags.contains(Flags::TRUNCATED));
    assert_eq!(record.evidence.reason.len(), MAX_TEXT_LEN - 1);
    assert!(long.starts_with(record.evidence.reason));
    assert_eq!(record.evidence.changed.len(), MAX_LIST_LEN);
    assert_eq!(record.evidence.detail, "rule 12");
    // Nothing cut, nothing flagged.
    let record_bytes = encode_vec(&Stamp::default(), &decision("r", "short"));
    assert!(
        !decode(&record_bytes)
            .unwrap()
            .evidence
            .flags
            .contains(Flags::TRUNCATED)
    );
}

#[test]
fn encode_refuses_a_short_buffer() {
    let evidence = decision("r", "x");
    let mut buf = vec![0; encoded_len(&evidence) - 1];
    assert_eq!(
        encode(&Stamp::default(), &evidence, &mut buf),
        Err(EncodeError::BufferTooSmall {
            needed: buf.len() + 1,
            available: buf.len()
        })
    );
}

#[test]
fn text_prefix_keeps_the_valid_part() {
    assert_eq!(text_prefix(b"slack"), ("slack", true));
    assert_eq!(text_prefix(b"sl\xFFack"), ("sl", false));
    assert_eq!(text_prefix(b""), ("", true));
}

#[test]
fn json_rendering_names_every_field() {
    let changed = ["messages[0].content", "model"];
    let attrs = [(attr::CAUSE, "test")];
    let evidence = Evidence {
        flags: Flags::SHADOW,
        changed: Names::new(&changed),
        attrs: Attrs::new(&attrs),
        payload: Payload {
            kind: "dlp.hit",
            data: b"\x00\xFF",
        },
        ..decision("req-9", "blocked by policy")
    };
    let stamp = Stamp {
        sequence: 5,
        timestamp_ns: 1_735_689_599_000_000_001,
        worker: 2,
    };
    let bytes = encode_vec(&stamp, &evidence);
    let record = decode(&bytes).unwrap();
    let mut line = Vec::new();
    write_json_line(&record, &mut line).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "version": "1.0",
            "kind": "decision",
            "sequence": 5,
            "timestamp_ns": 1_735_689_599_000_000_001u64,
            "time": "2024-12-31T23:59:59.000000001Z",
            "worker": 2,
            "gate": "request",
            "verdict": "block",
            "status": 403,
            "plugin_id": 7,
            "plugin": "tenant-check",
            "request_id": "req-9",
            "scope": {"tenant": "acme", "model": "gpt-4o"},
            "reason": "blocked by policy",
            "detail": "rule 12",
            "changed": ["messages[0].content", "model"],
            "attrs": {"cause": "test"},
            "duration_ns": 1234,
            "flags": ["shadow"],
            "payload": {"kind": "dlp.hit", "data_base64": "AP8="},
        })
    );
    // A gap says `lost`, even of 0; UTF-8 payloads are text.
    let gap = encode_vec(&stamp, &Evidence::gap(0));
    let json = serde_json::to_value(decode(&gap).unwrap()).unwrap();
    assert_eq!(json["lost"], 0);
    let plugin = Evidence {
        payload: Payload {
            kind: "k",
            data: b"{\"a\":1}",
        },
        ..Evidence::new(Kind::Plugin)
    };
    let json = serde_json::to_value(decode(&encode_vec(&stamp, &plugin)).unwrap()).unwrap();
    assert_eq!(json["payload"]["data"], "{\"a\":1}");
}

/// Decodes every record the consumer has.
fn drain_all<M: crate::ring::RingMemory>(
    consumer: &mut crate::ring::Consumer<M>,
) -> Vec<(u64, Kind, u64, Flags, u64)> {
    let mut out = Vec::new();
    while consumer
        .drain(|bytes| {
            let r = decode(&bytes).expect("the writer's records decode");
            out.push((
                r.stamp.sequence,
                r.evidence.kind,
                r.evidence.count,
                r.evidence.flags,
                r.evidence.duration_ns,
            ));
        })
        .expect("ring intact")
        > 0
    {}
    out
}

#[test]
fn overflow_leaves_a_gap_with_the_exact_count() {
    let ring = Ring::heap(Geometry::new(1, 1024).unwrap());
    let mut consumer = ring.consumer().unwrap();
    let now = Cell::new(1_000);
    let clock = || {
        now.set(now.get() + 10);
        now.get()
    };
    let mut writer = EvidenceWriter::with_clock(ring.producer().unwrap(), 3, clock);
    // Records of 256 bytes with the ring's header fill the ring exactly,
    // leaving no room even for a gap record.
    let pad = "x".repeat(130);
    let record = decision("req", &pad);
    assert_eq!(encoded_len(&record) + 8, 256);
    let fits = 4;

    // Fill the ring, then drop 4.
    for i in 0..fits as u64 {
        assert_eq!(writer.write(&record), Ok(i));
    }
    for i in 0..4 {
        let sequence = (fits + i) as u64;
        assert_eq!(writer.write(&record), Err(WriteError::Full { sequence }));
    }
    let c = writer.counters();
    assert_eq!(
        (c.written, c.dropped, c.pending, c.gaps),
        (fits as u64, 4, 4, 0)
    );
    assert_eq!(ring.dropped(), 4);

    let first = drain_all(&mut consumer);
    assert_eq!(first.len(), fits);
    assert!(first[0].3.contains(Flags::WRITER_START));
    assert!(!first[1].3.contains(Flags::WRITER_START));
    let seqs: Vec<u64> = first.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (0..fits as u64).collect::<Vec<_>>());

    // The next write commits the gap first: numbered after the lost ones.
    let after = (fits + 4) as u64;
    assert_eq!(writer.write(&record), Ok(after + 1));
    let second = drain_all(&mut consumer);
    assert_eq!(second.len(), 2);
    let (gap_seq, kind, lost, _, span) = second[0];
    assert_eq!((gap_seq, kind, lost), (after, Kind::Gap, 4));
    // The clock ticks 10 per write: first loss at write fits+1, gap at
    // write fits+5.
    assert_eq!(span, 40);
    assert_eq!(second[1].0, after + 1);
    let c = writer.counters();
    assert_eq!(
        (c.written, c.dropped, c.pending, c.gaps),
        (fits as u64 + 1, 4, 0, 1)
    );

    // A reader proves nothing else went missing.
    let mut check = SequenceCheck::new();
    for bytes in all_bytes(&first, &second) {
        check.observe(&decode(&bytes).unwrap()).unwrap();
    }
    assert_eq!(check.lost(), 4);
}

/// Re-encodes drained summaries as records, so [`SequenceCheck`] can read
/// them.
fn all_bytes(
    first: &[(u64, Kind, u64, Flags, u64)],
    second: &[(u64, Kind, u64, Flags, u64)],
) -> Vec<Vec<u8>> {
    first
        .iter()
        .chain(second)
        .map(|&(sequence, kind, count, flags, _)| {
            let evidence = Evidence {
                count,
                flags,
                ..Evidence::new(kind)
            };
            encode_vec(
                &Stamp {
                    sequence,
                    ..Stamp::default()
                },
                &evidence,
            )
        })
        .collect()
}

#[test]
fn a_gap_that_finds_no_room_drops_the_record_too() {
    let ring = Ring::heap(Geometry::new(1, 256).unwrap());
    let mut consumer = ring.consumer().unwrap();
    let mut writer = EvidenceWriter::new(ring.producer().unwrap(), 0);
    let small = Evidence::new(Kind::Decision);
    // 86-byte records take 96 bytes: two fit in 256.
    assert_eq!(writer.write(&small), Ok(0));
    assert_eq!(writer.write(&small), Ok(1));
    assert_eq!(writer.write(&small), Err(WriteError::Full { sequence: 2 }));
    // Still full: the gap cannot go in, so this record is lost as well.
    assert_eq!(writer.write(&small), Err(WriteError::Full { sequence: 3 }));
    assert_eq!(writer.counters().pending, 2);
    assert_eq!(writer.flush_gap(), Err(WriteError::Full { sequence: 4 }));
    assert_eq!(drain_all(&mut consumer).len(), 2);
    // Room again: flush commits the gap at 4 reporting 2 and 3.
    assert_eq!(writer.flush_gap(), Ok(true));
    assert_eq!(writer.flush_gap(), Ok(false));
    let got = drain_all(&mut consumer);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1, got[0].2), (4, Kind::Gap, 2));
    assert_eq!(writer.next_sequence(), 5);
}

#[test]
fn a_record_too_large_for_the_ring_is_counted_and_reported() {
    let ring = Ring::heap(Geometry::new(1, 256).unwrap());
    let mut consumer = ring.consumer().unwrap();
    let mut writer = EvidenceWriter::new(ring.producer().unwrap(), 0).starting_at(100);
    let big = "b".repeat(300);
    let huge = decision("r", &big);
    assert!(matches!(
        writer.write(&huge),
        Err(WriteError::TooLarge { sequence: 100, .. })
    ));
    assert_eq!(writer.write(&Evidence::new(Kind::Skip)), Ok(102));
    let got = drain_all(&mut consumer);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0, got[0].1, got[0].2), (101, Kind::Gap, 1));
    // The first committed record, a gap, starts the writer's stream.
    assert!(got[0].3.contains(Flags::WRITER_START));
    let c = writer.counters();
    assert_eq!((c.dropped, c.too_large, c.gaps, c.written), (1, 1, 1, 1));
}

#[test]
fn dropping_the_writer_flushes_its_gap() {
    let ring = Ring::heap(Geometry::new(1, 256).unwrap());
    let mut consumer = ring.consumer().unwrap();
    let mut writer = EvidenceWriter::new(ring.producer().unwrap(), 0);
    let small = Evidence::new(Kind::Decision);
    while writer.write(&small).is_ok() {}
    let _ = writer.write(&small);
    assert_eq!(writer.counters().pending, 2);
    assert_eq!(drain_all(&mut consumer).len(), 2);
    drop(writer);
    let got = drain_all(&mut consumer);
    assert_eq!((got[0].0, got[0].1, got[0].2), (4, Kind::Gap, 2));
}

#[test]
fn two_writers_on_two_lanes_each_check_out() {
    let ring = Ring::heap(Geometry::new(2, 512).unwrap());
    let mut consumer = ring.consumer().unwrap();
    let mut writers = [
        EvidenceWriter::new(ring.producer().unwrap(), 0),
        EvidenceWriter::new(ring.producer().unwrap(), 1),
    ];
    let mut checks = [SequenceCheck::new(), SequenceCheck::new()];
    let drain = |consumer: &mut crate::ring::Consumer, checks: &mut [SequenceCheck; 2]| {
        while consumer
            .drain(|bytes| {
                let r = decode(&bytes).unwrap();
                checks[r.stamp.worker as usize].observe(&r).unwrap();
            })
            .unwrap()
            > 0
        {}
    };
    for round in 0..200 {
        for w in &mut writers {
            let _ = w.write(&decision("req", ""));
        }
        if round % 7 == 0 {
            drain(&mut consumer, &mut checks);
        }
    }
    drain(&mut consumer, &mut checks);
    for w in &mut writers {
        assert_eq!(w.flush_gap().map(|_| ()), Ok(()));
    }
    drain(&mut consumer, &mut checks);
    let mut dropped = 0;
    for (w, check) in writers.iter().zip(&checks) {
        let c = w.counters();
        assert_eq!(c.written + c.dropped, 200);
        assert_eq!(check.records(), c.written + c.gaps);
        assert_eq!(check.lost(), c.dropped);
        assert_eq!(check.next_expected(), Some(w.next_sequence()));
        dropped += c.dropped;
    }
    assert!(dropped > 0, "the ring was meant to overflow");
}

#[test]
fn sequence_check_catches_loss_and_repeats() {
    let at = |sequence, evidence: Evidence<'static>| EvidenceRecord {
        version: Version { major: 1, minor: 0 },
        stamp: Stamp {
            sequence,
            ..Stamp::default()
        },
        evidence,
    };
    let plain = Evidence::new(Kind::Decision);
    let start = Evidence {
        flags: Flags::WRITER_START,
        ..plain
    };
    let mut check = SequenceCheck::new();
    check.observe(&at(10, start)).unwrap();
    check.observe(&at(11, plain)).unwrap();
    assert_eq!(
        check.observe(&at(11, plain)),
        Err(SequenceError::Repeated {
            expected: 12,
            found: 11
        })
    );
    assert_eq!(
        check.observe(&at(14, plain)),
        Err(SequenceError::Missing {
            expected: 12,
            found: 14
        })
    );
    // A gap must account for exactly the hole.
    assert_eq!(
        check.observe(&at(17, Evidence::gap(1))),
        Err(SequenceError::Missing {
            expected: 16,
            found: 17
        })
    );
    check.observe(&at(20, Evidence::gap(2))).unwrap();
    // A restart is not a repeat.
    check.observe(&at(0, start)).unwrap();
    assert_eq!(check.restarts(), 1);
    assert_eq!(
        check.observe(&at(
            1,
            Evidence {
                flags: Flags::WRITER_START,
                ..Evidence::gap(5)
            }
        )),
        Err(SequenceError::GapTooLarge { found: 1, lost: 5 })
    );
}
