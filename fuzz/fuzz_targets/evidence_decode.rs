//! Hostile bytes as evidence records: the decoder must return an error or a
//! record, never panic, and a record it accepts must re-encode to one that
//! decodes to the same content and renders as JSON.
//!
//!   cargo +nightly fuzz run evidence_decode -- -max_total_time=60
#![no_main]

use odock_dataplane::evidence::{
    HEADER_LEN, MAJOR, decode, decode_prefix, encode, encoded_len, write_json_line,
};

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    check(input);
    // The same bytes behind a believable frame, so the fields get parsed.
    if input.len() >= 8 {
        let mut framed = input.to_vec();
        framed[0] = MAJOR;
        framed[2..4].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        let len = framed.len() as u32;
        framed[4..8].copy_from_slice(&len.to_le_bytes());
        check(&framed);
    }
    // As a stream of records laid end to end.
    let mut rest = input;
    while let Ok((_, after)) = decode_prefix(rest) {
        assert!(after.len() < rest.len(), "decode_prefix made no progress");
        rest = after;
    }
});

fn check(bytes: &[u8]) {
    let Ok(record) = decode(bytes) else {
        return;
    };
    let _ = record.evidence.changed.iter().count();
    let _ = record.evidence.attrs.iter().count();
    let mut again = vec![0; encoded_len(&record.evidence)];
    encode(&record.stamp, &record.evidence, &mut again).expect("a decoded record encodes");
    let back = decode(&again).expect("a re-encoded record decodes");
    assert_eq!(back.stamp, record.stamp);
    assert_eq!(back.evidence, record.evidence);
    let mut line = Vec::new();
    write_json_line(&record, &mut line).expect("renders");
    serde_json::from_slice::<serde_json::Value>(&line).expect("renders JSON");
}
