//! Writing evidence allocates nothing: a counting global allocator watches
//! the writer encode records into a ring, overflow and gap records included,
//! and the decoder read them back.

use odock_dataplane::evidence::{
    Attrs, Evidence, EvidenceWriter, Gate, Kind, Names, Payload, Scope, Verdict, attr, decode,
};
use odock_dataplane::ring::{Geometry, Ring};

mod counting;

use counting::allocations;

#[test]
fn writing_and_reading_evidence_allocates_nothing() {
    let ring = Ring::heap(Geometry::new(1, 4096).unwrap());
    let mut consumer = ring.consumer().unwrap();
    let mut writer = EvidenceWriter::new(ring.producer().unwrap(), 0);
    let changed = ["messages[2].content", "metadata.billing_tag"];
    let attrs = [(attr::CAUSE, "none")];
    let request_id = "req-0001";
    let record = Evidence {
        gate: Gate::Response,
        verdict: Verdict::Continue,
        plugin_id: 4,
        duration_ns: 2_500,
        request_id,
        plugin: "redact-pii",
        scope: Scope {
            tenant: "acme",
            virtual_key: "vk-9",
            environment: "prod",
            model: "gpt-4o",
            ..Scope::NONE
        },
        reason: "",
        detail: "2 matches",
        changed: Names::new(&changed),
        attrs: Attrs::new(&attrs),
        payload: Payload {
            kind: "pii.count",
            data: b"2",
        },
        ..Evidence::new(Kind::Decision)
    };
    // Warm up: the first use of the clock, the ring and thread-locals may
    // set things up once.
    writer.write(&record).unwrap();
    consumer.drain(|_| ()).unwrap();

    let before = allocations();
    let mut written = 0u64;
    let mut read = 0u64;
    let mut lost = 0u64;
    for round in 0..200 {
        // Write until the ring overflows, so drops and gaps are exercised.
        for _ in 0..40 {
            match writer.write(&record) {
                Ok(_) => written += 1,
                Err(_) => lost += 1,
            }
        }
        if round % 3 == 0 {
            consumer
                .drain(|bytes| {
                    let r = decode(&bytes).expect("decodes");
                    // Read the lists too, as a reader would.
                    let names = r.evidence.changed.iter().count();
                    let cause = r.evidence.attrs.get(attr::CAUSE);
                    if r.evidence.kind == Kind::Gap || (names == 2 && cause == Some("none")) {
                        read += 1;
                    }
                })
                .unwrap();
        }
    }
    let after = allocations();
    assert_eq!(after - before, 0, "the evidence path allocated");
    assert!(
        lost > 0 && writer.counters().gaps > 0,
        "overflow was exercised"
    );
    assert!(written > 0 && read > 0);

    // Every record written was read back intact.
    let mut drain_rest = || {
        while consumer
            .drain(|bytes| read += u64::from(decode(&bytes).is_ok()))
            .unwrap()
            > 0
        {}
    };
    drain_rest();
    writer.flush_gap().unwrap();
    drain_rest();
    let c = writer.counters();
    assert_eq!(read, written + c.gaps);
    assert_eq!(c.dropped, lost);
}
