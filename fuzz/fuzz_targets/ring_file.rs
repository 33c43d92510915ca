//! A hostile peer patches a ring file; attach and the consumer must cope.
//! The harness and its invariants: `odock_suite::fuzzing::ring_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    odock_suite::fuzzing::ring_file(input);
});
