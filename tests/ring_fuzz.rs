//! The ring fuzz harness (`odock_suite::fuzzing::ring_file`) driven by
//! proptest on every test run; `fuzz/` drives the same harness with
//! libFuzzer for longer runs.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn a_patched_ring_file_is_refused_delivered_or_reported(input in proptest::collection::vec(any::<u8>(), 3..200)) {
        odock_suite::fuzzing::ring_file(&input);
    }
}

/// The harness reaches every outcome, so the property above tests something.
#[test]
fn the_harness_reaches_each_outcome() {
    // No patches: a healthy ring delivers its records.
    let healthy = odock_suite::fuzzing::ring_file(&[0, 3, 5]);
    assert!(
        healthy.attached && healthy.records == 5 && !healthy.corrupt,
        "{healthy:?}"
    );
    // Magic overwritten: refused.
    let foreign = odock_suite::fuzzing::ring_file(&[0, 3, 5, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(!foreign.attached, "{foreign:?}");
    // Lane 0's producer_pos (page 1, offset 128) pushed past the data size.
    let mut bad = vec![0, 3, 5];
    bad.extend_from_slice(&(4096u16 + 128).to_le_bytes());
    bad.extend_from_slice(&u64::MAX.to_le_bytes());
    let corrupt = odock_suite::fuzzing::ring_file(&bad);
    assert!(corrupt.attached && corrupt.corrupt, "{corrupt:?}");
}
