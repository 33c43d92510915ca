//! The redaction matcher: pure functions over bytes, no host.
//!
//! Three kinds of pattern, each switched on by config:
//!
//! - **email**: `local@domain.tld`, local part `[A-Za-z0-9._%+-]+`, domain
//!   labels `[A-Za-z0-9-]+` joined by dots, a last label of two or more
//!   letters.
//! - **card**: 13 to 19 digits, optionally grouped by single spaces or
//!   dashes, not glued to letters or other digits, passing the Luhn check.
//!   In a longer run of groups (a card after a reference number, or
//!   followed by a year) every group start and end is tried, leftmost and
//!   longest first.
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
    /// with the next piece of a stream: the longest trailing run of bytes
    /// some enabled pattern can contain (for cards, from the first digit
    /// of a trailing group of at most 19 digits), then widened until it
    /// does not start inside such a run (a held email-shaped tail must not
    /// cut a card number in two). Holding this much back is enough for any
    /// pattern no longer than the cap on what is held.
    pub fn open_tail(&self, text: &[u8]) -> usize {
        let run = |pred: fn(u8) -> bool| text.iter().rev().take_while(|&&b| pred(b)).count();
        let word: Option<fn(u8) -> bool> = if self.email {
            Some(is_email_char)
        } else if !self.key_prefixes.is_empty() {
            Some(is_key_char)
        } else {
            None
        };
        let mut tail = word.map_or(0, run);
        if self.card {
            tail = tail.max(card_tail(text));
        }
        let n = text.len();
        let mut split = n - tail;
        loop {
            let at = split;
            if let Some(class) = word
                && split > 0
                && split < n
                && class(text[split - 1])
                && class(text[split])
            {
                while split > 0 && class(text[split - 1]) {
                    split -= 1;
                }
            }
            if self.card && split > 0 && split < n && card_joined(text, split) {
                split = card_run_start(text, split);
            }
            if split == at {
                return n - split;
            }
        }
    }
}

fn is_separator(b: u8) -> bool {
    b == b' ' || b == b'-'
}

/// Whether a card-shaped run (digits, single separators between them)
/// crosses the point between `text[split - 1]` and `text[split]`.
fn card_joined(text: &[u8], split: usize) -> bool {
    let (a, b) = (text[split - 1], text[split]);
    let digit_after = |i: usize| text.get(i).is_none_or(u8::is_ascii_digit);
    (a.is_ascii_digit() && (b.is_ascii_digit() || (is_separator(b) && digit_after(split + 1))))
        || (is_separator(a) && split >= 2 && text[split - 2].is_ascii_digit() && b.is_ascii_digit())
}

/// The first digit of the card-shaped run that crosses `split`.
fn card_run_start(text: &[u8], split: usize) -> usize {
    let mut i = split;
    while i > 0
        && (text[i - 1].is_ascii_digit()
            || (is_separator(text[i - 1]) && i >= 2 && text[i - 2].is_ascii_digit()))
    {
        i -= 1;
    }
    i
}

/// The trailing card-shaped run (digits with single separators, maybe a
/// separator at the very end), from its first digit; 0 without one.
fn card_tail(text: &[u8]) -> usize {
    let mut i = text.len();
    if i >= 2 && is_separator(text[i - 1]) && text[i - 2].is_ascii_digit() {
        i -= 1;
    }
    if i == 0 || !text[i - 1].is_ascii_digit() {
        return 0;
    }
    text.len() - card_run_start(text, i)
}

/// The Luhn check over the digits at these positions of `text`.
fn luhn_at(text: &[u8], positions: &[usize]) -> bool {
    let sum: u32 = positions
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &p)| {
            let d = u32::from(text[p] - b'0');
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

/// Cards: in each card-shaped run, every group start (the run's first
/// digit only on a word boundary) is tried with the longest group end
/// giving 13 to 19 Luhn-valid digits; after a match, the search goes on
/// behind it.
fn cards(text: &[u8], before: u8, found: &mut Vec<Match>) {
    let mut digits = Vec::with_capacity(32);
    let mut group_start = Vec::with_capacity(32);
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let run_start = i;
        digits.clear();
        group_start.clear();
        let mut j = i;
        loop {
            group_start.push(j == run_start || is_separator(text[j - 1]));
            digits.push(j);
            j += 1;
            if j < text.len() && text[j].is_ascii_digit() {
                continue;
            }
            if j + 1 < text.len() && is_separator(text[j]) && text[j + 1].is_ascii_digit() {
                j += 1;
                continue;
            }
            break;
        }
        let prev = if run_start == 0 {
            before
        } else {
            text[run_start - 1]
        };
        let glued_after = j < text.len() && text[j].is_ascii_alphabetic();
        let n = digits.len();
        let mut k = 0;
        'starts: while k < n {
            if group_start[k] && !(k == 0 && prev.is_ascii_alphanumeric()) {
                for e in (k + 12..=(k + 18).min(n - 1)).rev() {
                    let group_end = e + 1 == n || group_start[e + 1];
                    if !group_end || (e + 1 == n && glued_after) {
                        continue;
                    }
                    if luhn_at(text, &digits[k..=e]) {
                        found.push(Match {
                            start: digits[k],
                            end: digits[e] + 1,
                            kind: Kind::Card,
                        });
                        k = e + 1;
                        continue 'starts;
                    }
                }
            }
            k += 1;
        }
        i = j;
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
/// runs of bytes that some pattern could still extend, widened so that it
/// never starts inside such a run) is held back as the new carry; the rest
/// is redacted and emitted now. The emitted part therefore never ends
/// inside anything a pattern could match, and the held part keeps its
/// whole context, so the pieces redact exactly as the whole text would (a
/// property test cuts texts anywhere and checks it). Text is delayed,
/// never dropped: usually by one word, at most by `max_carry` bytes, and
/// the last piece flushes everything.
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
        assert_eq!(redact("ref 1234 4111 1111 1111 1111"), "ref 1234 [card]");
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
