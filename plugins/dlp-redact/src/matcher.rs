//! The redaction matcher: pure functions over bytes, no host.
//!
//! Three kinds of pattern, each switched on by config:
//!
//! - **email**: `local@domain.tld`, local part `[A-Za-z0-9._%+-]+`, domain
//!   labels `[A-Za-z0-9-]+` joined by dots, a last label of two or more
//!   letters.
//! - **card**: 13 to 19 digits, optionally grouped by single spaces or
//!   dashes, not glued to letters or other digits, passing the Luhn check.
//!   A longer run (a card followed by a year, say) is cut at a group
//!   boundary to find the card in it.
//! - **api key**: one of the configured prefixes (`sk-` by default) at a
//!   word boundary, followed by at least [`MIN_KEY_BODY`] characters of
//!   `[A-Za-z0-9_-]`.
//!
//! Text in raw JSON (a request body, a whole response body) may hold
//! escapes: [`json_mask`] blanks every escape sequence first, so a match
//! never starts or ends inside one (`\nbob@example.com` redacts
//! `bob@example.com`, not the `n` of `\n`). A pattern *written with*
//! escapes (`bob\u0040example.com`) is not found in raw JSON; streamed
//! text, which the plugin decodes first, has no such gap.

/// The shortest body after a key prefix that counts as a key.
pub const MIN_KEY_BODY: usize = 16;

/// What a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An email address.
    Email,
    /// A payment card number (Luhn-valid).
    Card,
    /// An API key with a known prefix.
    ApiKey,
}

impl Kind {
    /// The name used in config, replacements and evidence.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Card => "card",
            Kind::ApiKey => "api_key",
        }
    }

    /// Whether `b` can sit inside a match of this kind (used to carry an
    /// unfinished match over into the next piece of a stream).
    fn continues(self, b: u8) -> bool {
        match self {
            Kind::Email => is_email_char(b),
            Kind::Card => b.is_ascii_digit() || b == b' ' || b == b'-',
            Kind::ApiKey => is_key_char(b),
        }
    }
}

/// One match: `text[start..end]` is of `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// What it is.
    pub kind: Kind,
}

/// Which patterns are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// Emails.
    pub email: bool,
    /// Card numbers.
    pub card: bool,
    /// API key prefixes (none: API keys off).
    pub key_prefixes: Vec<Vec<u8>>,
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

fn is_email_char(b: u8) -> bool {
    is_local_char(b) || b == b'@'
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

/// The Luhn check over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A copy of raw JSON text with every escape sequence (`\n`, `\"`,
/// `\u00e9`...) replaced by NUL bytes, which no pattern contains: offsets
/// stay the same, and matches cannot touch an escape.
pub fn json_mask(text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    let mut i = 0;
    while i < out.len() {
        if out[i] == b'\\' {
            let len = if out.get(i + 1) == Some(&b'u') { 6 } else { 2 };
            let end = (i + len).min(out.len());
            out[i..end].fill(0);
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

impl Matcher {
    /// Whether any pattern is on.
    pub fn any(&self) -> bool {
        self.email || self.card || !self.key_prefixes.is_empty()
    }

    /// Every match in `text`, sorted, not overlapping. `before` is the byte
    /// just before `text` (0 at the start), for word boundaries.
    pub fn find(&self, text: &[u8], before: u8) -> Vec<Match> {
        let mut found = Vec::new();
        if self.email {
            self.emails(text, &mut found);
        }
        if self.card {
            cards(text, before, &mut found);
        }
        for prefix in &self.key_prefixes {
            keys(text, before, prefix, &mut found);
        }
        // Earliest first; of two that overlap, the longer one wins.
        found.sort_by_key(|m| (m.start, usize::MAX - m.end));
        let mut kept: Vec<Match> = Vec::with_capacity(found.len());
        for m in found {
            match kept.last_mut() {
                Some(last) if m.start < last.end => {
                    if m.end > last.end && m.end - m.start > last.end - last.start {
                        *last = m;
                    }
                }
                _ => kept.push(m),
            }
        }
        kept
    }

    fn emails(&self, text: &[u8], found: &mut Vec<Match>) {
        let mut from = 0;
        while let Some(at) = text[from..]
            .iter()
            .position(|&b| b == b'@')
            .map(|p| p + from)
        {
            from = at + 1;
            let mut start = at;
            while start > 0 && is_local_char(text[start - 1]) {
                start -= 1;
            }
            while start < at && text[start] == b'.' {
                start += 1;
            }
            let mut end = at + 1;
            while end < text.len() && is_domain_char(text[end]) {
                end += 1;
            }
            while end > at + 1 && matches!(text[end - 1], b'.' | b'-') {
                end -= 1;
            }
            let domain = &text[at + 1..end];
            if start == at || domain.first().is_none_or(|b| !b.is_ascii_alphanumeric()) {
                continue;
            }
            let Some(dot) = domain.iter().rposition(|&b| b == b'.') else {
                continue;
            };
            let tld = &domain[dot + 1..];
            if tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) || domain.contains(&b'@') {
                continue;
            }
            found.push(Match {
                start,
                end,
                kind: Kind::Email,
            });
            from = end;
        }
    }

    /// The length of the end of `text` that may still grow into a match
    /// with the next piece of a stream: the trailing run of bytes some
    /// enabled pattern can contain (for cards, from the first digit of a
    /// trailing group of at most 19 digits). Holding this much back is
    /// enough for any pattern no longer than the cap on what is held.
    pub fn open_tail(&self, text: &[u8]) -> usize {
        let run = |pred: fn(u8) -> bool| text.iter().rev().take_while(|&&b| pred(b)).count();
        let mut tail = 0;
        if self.email {
            tail = tail.max(run(is_email_char));
        }
        if !self.key_prefixes.is_empty() {
            tail = tail.max(run(is_key_char));
        }
        if self.card {
            tail = tail.max(card_tail(text));
        }
        tail
    }
}

/// The trailing card-shaped run: digits with single separators, starting at
/// a digit on a word boundary, with at most 19 digits (else 0).
fn card_tail(text: &[u8]) -> usize {
    let mut i = text.len();
    let mut digits = 0;
    let mut first_digit = None;
    while i > 0 {
        let b = text[i - 1];
        if b.is_ascii_digit() {
            digits += 1;
            first_digit = Some(i - 1);
        } else if b == b' ' || b == b'-' {
            // A separator must sit between digits (or trail the text).
            if i >= 2 && !text[i - 2].is_ascii_digit() {
                break;
            }
        } else {
            break;
        }
        i -= 1;
    }
    match first_digit {
        Some(f) if digits <= 19 && (f == 0 || !text[f - 1].is_ascii_alphanumeric()) => {
            text.len() - f
        }
        _ => 0,
    }
}

fn cards(text: &[u8], before: u8, found: &mut Vec<Match>) {
    let mut i = 0;
    while i < text.len() {
        let prev = if i == 0 { before } else { text[i - 1] };
        if !text[i].is_ascii_digit() || prev.is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        // The run: digits, single separators between them. `ends[k]` is
        // the byte after digit k; `cut[k]` whether a group ends there.
        let mut digits = Vec::with_capacity(19);
        let mut ends = Vec::with_capacity(19);
        let mut cut = Vec::with_capacity(19);
        let mut j = i;
        loop {
            digits.push(text[j]);
            ends.push(j + 1);
            j += 1;
            let sep = j < text.len() && matches!(text[j], b' ' | b'-');
            if j < text.len() && text[j].is_ascii_digit() {
                cut.push(false);
                continue;
            }
            if sep && j + 1 < text.len() && text[j + 1].is_ascii_digit() {
                cut.push(true);
                j += 1;
                continue;
            }
            cut.push(true);
            break;
        }
        let run_end = ends[ends.len() - 1];
        let glued = run_end < text.len() && text[run_end].is_ascii_alphabetic();
        let mut matched = None;
        if !glued {
            for n in (13..=digits.len().min(19)).rev() {
                if cut[n - 1] && luhn(&digits[..n]) {
                    matched = Some(ends[n - 1]);
                    break;
                }
            }
        }
        match matched {
            Some(end) => {
                found.push(Match {
                    start: i,
                    end,
                    kind: Kind::Card,
                });
                i = end;
            }
            None => i = run_end,
        }
    }
}

fn keys(text: &[u8], before: u8, prefix: &[u8], found: &mut Vec<Match>) {
    if prefix.is_empty() {
        return;
    }
    let mut from = 0;
    while let Some(at) = text[from..]
        .windows(prefix.len())
        .position(|w| w == prefix)
        .map(|p| p + from)
    {
        from = at + 1;
        let prev = if at == 0 { before } else { text[at - 1] };
        if is_key_char(prev) {
            continue;
        }
        let body_start = at + prefix.len();
        let body = text[body_start..]
            .iter()
            .take_while(|&&b| is_key_char(b))
            .count();
        if body >= MIN_KEY_BODY {
            found.push(Match {
                start: at,
                end: body_start + body,
                kind: Kind::ApiKey,
            });
            from = body_start + body;
        }
    }
}

/// How many matches of each kind one piece of text had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Emails.
    pub email: u32,
    /// Cards.
    pub card: u32,
    /// API keys.
    pub api_key: u32,
}

impl Counts {
    fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Email => self.email += 1,
            Kind::Card => self.card += 1,
            Kind::ApiKey => self.api_key += 1,
        }
    }

    /// All of them.
    pub fn total(&self) -> u32 {
        self.email + self.card + self.api_key
    }

    /// Adds another piece's counts.
    pub fn merge(&mut self, other: Counts) {
        self.email += other.email;
        self.card += other.card;
        self.api_key += other.api_key;
    }
}

/// How a match is replaced: `template` with `{kind}` standing for the
/// kind's name (`[REDACTED:{kind}]` by default).
pub fn replacement(template: &str, kind: Kind) -> String {
    template.replace("{kind}", kind.name())
}

/// `text` with `matches` replaced, appended to `out`.
pub fn redact_into(text: &[u8], matches: &[Match], template: &str, out: &mut Vec<u8>) -> Counts {
    let mut counts = Counts::default();
    let mut at = 0;
    for m in matches {
        out.extend_from_slice(&text[at..m.start]);
        out.extend_from_slice(replacement(template, m.kind).as_bytes());
        counts.add(m.kind);
        at = m.end;
    }
    out.extend_from_slice(&text[at..]);
    counts
}

/// One stream's carry: the text held back at the end of the last piece
/// because it may be the start of a pattern that continues in the next.
///
/// # The rule
///
/// Each piece of a stream (the decoded text of one SSE event) is scanned
/// together with the carry: `scan = carry + piece`. Unless the piece is the
/// last, the *open tail* of `scan` ([`Matcher::open_tail`]: the trailing
/// run of bytes that some pattern could still extend, at most `max_carry`)
/// is held back as the new carry; the rest is redacted and emitted now. So
/// text is delayed, never dropped: usually by one word, at most by
/// `max_carry` bytes, and the last piece flushes everything.
///
/// # The limit
///
/// When the open tail is longer than `max_carry`, nothing is held: the
/// whole scan is redacted and emitted. If its last match reaches the end
/// (an API key whose prefix and 16 characters came before the boundary),
/// the match is marked *open*, and the next piece's leading bytes of that
/// kind are dropped as the rest of it: nothing of the key leaks. If the
/// run does not match yet (an email whose `@` comes only after the cap),
/// the part released before the boundary is not redacted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carry {
    held: Vec<u8>,
    /// The last byte emitted (word boundaries of the next scan).
    before: u8,
    /// A match cut by the cap continues into the next piece.
    open: Option<Kind>,
}

impl Carry {
    /// The bytes held back now.
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Scans `piece` after what is held; appends what may be emitted now to
    /// `out`; keeps the new open tail unless `last`.
    pub fn feed(
        &mut self,
        matcher: &Matcher,
        template: &str,
        piece: &[u8],
        last: bool,
        max_carry: usize,
        out: &mut Vec<u8>,
    ) -> Counts {
        let mut piece = piece;
        if self.held.is_empty()
            && let Some(kind) = self.open
        {
            // The rest of a match the cap cut: already replaced.
            let rest = piece.iter().take_while(|&&b| kind.continues(b)).count();
            piece = &piece[rest..];
            if rest > 0 && piece.is_empty() && !last {
                return Counts::default();
            }
        }
        self.open = None;
        let mut scan = std::mem::take(&mut self.held);
        scan.extend_from_slice(piece);
        let tail = if last { 0 } else { matcher.open_tail(&scan) };
        // Past the cap nothing is held: everything is scanned and emitted,
        // and a match reaching the end stays open.
        let capped = tail > max_carry;
        let split = if capped {
            scan.len()
        } else {
            scan.len() - tail
        };
        let matches = matcher.find(&scan[..split], self.before);
        if capped {
            self.open = matches.last().filter(|m| m.end == split).map(|m| m.kind);
        }
        let counts = redact_into(&scan[..split], &matches, template, out);
        if split > 0 {
            self.before = scan[split - 1];
        }
        scan.drain(..split);
        self.held = scan;
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Matcher {
        Matcher {
            email: true,
            card: true,
            key_prefixes: vec![b"sk-".to_vec()],
        }
    }

    fn redact(text: &str) -> String {
        let m = all().find(text.as_bytes(), 0);
        let mut out = Vec::new();
        redact_into(text.as_bytes(), &m, "[{kind}]", &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn luhn_accepts_test_cards_and_refuses_typos() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"5555555555554444"));
        assert!(luhn(b"378282246310005"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b""));
        assert!(!luhn(b"41x1"));
    }

    #[test]
    fn finds_each_kind() {
        assert_eq!(
            redact("mail bob.smith+x@mail.example.com."),
            "mail [email]."
        );
        assert_eq!(redact("card 4111 1111 1111 1111 ok"), "card [card] ok");
        assert_eq!(redact("card 4111-1111-1111-1111"), "card [card]");
        assert_eq!(redact("card 4111111111111111 2025"), "card [card] 2025");
        assert_eq!(
            redact("key=sk-abcdefghijklmnop1234 end"),
            "key=[api_key] end"
        );
    }

    #[test]
    fn leaves_lookalikes_alone() {
        for text in [
            "order 4111 1111 1111 1112",
            "call 1234 5678",
            "x4111111111111111",
            "4111111111111111abc",
            "a@b",
            "a@b.c",
            "@example.com",
            "task-abcdefghijklmnopqrst",
            "sk-short",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn json_escapes_are_boundaries() {
        let raw = br#""line\nbob@example.com and \u0041lice@example.com""#;
        let masked = json_mask(raw);
        let m = all().find(&masked, 0);
        let mut out = Vec::new();
        redact_into(raw, &m, "[{kind}]", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""line\n[email] and \u0041[email]""#
        );
    }

    /// Feeds `pieces` through a carry; returns what came out and the counts.
    fn stream(pieces: &[&str], max_carry: usize) -> (String, Counts) {
        let mut carry = Carry::default();
        let mut out = Vec::new();
        let mut counts = Counts::default();
        for (i, p) in pieces.iter().enumerate() {
            let c = carry.feed(
                &all(),
                "[{kind}]",
                p.as_bytes(),
                i + 1 == pieces.len(),
                max_carry,
                &mut out,
            );
            counts.merge(c);
            assert!(carry.held().len() <= max_carry);
        }
        (String::from_utf8(out).unwrap(), counts)
    }

    #[test]
    fn patterns_split_across_pieces_are_redacted() {
        let (out, n) = stream(
            &[
                "my card is 4111 11",
                "11 1111 1111 and mail bo",
                "b@exam",
                "ple.com",
                " thanks",
            ],
            128,
        );
        assert_eq!(out, "my card is [card] and mail [email] thanks");
        assert_eq!((n.card, n.email), (1, 1));
        let (out, _) = stream(&["token sk-", "abcdefgh", "ijklmnop", "qrst done"], 128);
        assert_eq!(out, "token [api_key] done");
    }

    #[test]
    fn every_split_of_a_text_redacts_the_same() {
        let text = "a 4111 1111 1111 1111, b@example.org; sk-0123456789abcdefXYZ.";
        let want = redact(text);
        for cut in 0..=text.len() {
            for cut2 in cut..=text.len() {
                let (out, _) = stream(&[&text[..cut], &text[cut..cut2], &text[cut2..]], 128);
                assert_eq!(out, want, "cuts at {cut}, {cut2}");
            }
        }
    }

    #[test]
    fn a_key_longer_than_the_cap_does_not_leak() {
        let key = format!("sk-{}", "a".repeat(60));
        let (out, n) = stream(&["key ", &key[..40], &key[40..], " end"], 24);
        assert_eq!(out, "key [api_key] end");
        assert_eq!(n.api_key, 1);
    }

    #[test]
    fn text_is_delayed_not_lost() {
        let (out, n) = stream(&["hello", " world", " again"], 8);
        assert_eq!((out.as_str(), n.total()), ("hello world again", 0));
    }
}
