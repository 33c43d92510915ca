//! Property: cutting a text into pieces anywhere never lets a pattern
//! through that redacting the whole text would have caught.

use odock_plugin_dlp_redact::matcher::{Carry, Matcher, redact_into};
use proptest::prelude::*;

fn matcher() -> Matcher {
    Matcher {
        email: true,
        card: true,
        key_prefixes: vec![b"sk-".to_vec()],
    }
}

/// Texts made of the pieces patterns are built from, so matches (and near
/// misses) are common.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("4111 1111 1111 1111"),
            Just("5555-5555-5555-4444"),
            Just("378282246310005"),
            Just("bob@example.com"),
            Just("a.b@c.io"),
            Just("sk-"),
            Just("abcdefghijklmnop"),
            Just("@"),
            Just("."),
            Just("-"),
            Just(" "),
            Just(", "),
            Just("x"),
            Just("12"),
            Just("4111"),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn whole(text: &str) -> Vec<u8> {
    let m = matcher().find(text.as_bytes(), 0);
    let mut out = Vec::new();
    redact_into(text.as_bytes(), &m, "#", &mut out);
    out
}

fn streamed(text: &str, cuts: &[usize]) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.push(bytes.len());
    let mut carry = Carry::default();
    let mut out = Vec::new();
    let mut from = 0;
    for (i, &to) in points.iter().enumerate() {
        let last = i + 1 == points.len();
        carry.feed(&matcher(), "#", &bytes[from..to], last, 4096, &mut out);
        from = to;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn streaming_never_lets_more_through(text in text(), cuts in prop::collection::vec(0usize..400, 0..4)) {
        let whole = whole(&text);
        let streamed = streamed(&text, &cuts);
        // Nothing matchable is left that the whole redaction removed.
        if matcher().find(&whole, 0).is_empty() {
            prop_assert!(matcher().find(&streamed, 0).is_empty(), "{:?}", String::from_utf8_lossy(&streamed));
        }
        // Uncut, the stream is the whole redaction exactly.
        if cuts.is_empty() {
            prop_assert_eq!(&streamed, &whole);
        }
    }

    #[test]
    fn streaming_redacts_what_the_whole_text_redacts(text in text(), cuts in prop::collection::vec(0usize..400, 0..4)) {
        prop_assert_eq!(
            String::from_utf8_lossy(&streamed(&text, &cuts)).into_owned(),
            String::from_utf8_lossy(&whole(&text)).into_owned()
        );
    }

    #[test]
    fn find_is_sorted_disjoint_and_in_bounds(bytes in prop::collection::vec(any::<u8>(), 0..300), before in any::<u8>()) {
        let m = matcher().find(&bytes, before);
        let mut at = 0;
        for x in &m {
            prop_assert!(x.start >= at && x.start < x.end && x.end <= bytes.len());
            at = x.end;
        }
    }
}
