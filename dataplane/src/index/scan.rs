//! The scanner: a cursor over JSON bytes that validates as it goes.
//!
//! It reads `bytes[pos..end]` and nothing else. Every method either moves
//! `pos` forward or fails; none loops without consuming a byte, none
//! recurses. Structured walks (the format walkers in `walk.rs`) enter
//! objects and arrays with [`Scanner::enter_object`] and
//! [`Scanner::enter_array`], which count depth; everything they do not
//! record they hand to [`Scanner::value`], which skips a whole value
//! iteratively with a 128-bit stack of container kinds bounded by the depth
//! still allowed.

use super::{ErrorKind, IndexError, JsonStr, MAX_DEPTH, Span, Value, ValueKind};

pub(super) type Result<T> = core::result::Result<T, IndexError>;

// The skip stack holds one bit per open container.
const _: () = assert!(MAX_DEPTH <= 128);

pub(super) struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
    depth: usize,
}

/// An offset as `u32`: it fits, the entry points refuse longer bodies.
const fn off(at: usize) -> u32 {
    at as u32
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Some byte of `word` is zero. Exact as to whether one is (borrows only
/// run upward from a zero byte), which is all the scanner asks.
const fn has_zero(word: u64) -> bool {
    word.wrapping_sub(ONES) & !word & HIGH != 0
}

/// Some byte of `word` ends or escapes a string's plain run: `"`, `\` or
/// a control character (below 0x20; bytes of 0x80 and up are not, the
/// `!word` excludes them).
const fn special(word: u64) -> bool {
    has_zero(word ^ (ONES * b'"' as u64))
        || has_zero(word ^ (ONES * b'\\' as u64))
        || word.wrapping_sub(ONES * 0x20) & !word & HIGH != 0
}

pub(super) fn fail<T>(at: usize, kind: ErrorKind) -> Result<T> {
    Err(IndexError {
        offset: off(at),
        kind,
    })
}

pub(super) fn span(start: usize, end: usize) -> Span {
    Span::new(off(start), off(end - start))
}

impl<'a> Scanner<'a> {
    /// A scanner of `bytes[start..end]`; spans are offsets into `bytes`.
    pub(super) fn new(bytes: &'a [u8], start: usize, end: usize) -> Scanner<'a> {
        debug_assert!(start <= end && end <= bytes.len());
        Scanner {
            bytes,
            pos: start,
            end,
            depth: 0,
        }
    }

    pub(super) fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    #[inline]
    fn byte(&self, at: usize) -> Option<u8> {
        if at < self.end {
            Some(self.bytes[at])
        } else {
            None
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.byte(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    #[inline]
    pub(super) fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.byte(self.pos)
    }

    /// The current offset (after [`Self::peek`], the next value's start).
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    fn eof<T>(&self) -> Result<T> {
        fail(self.end, ErrorKind::UnexpectedEnd)
    }

    /// Only whitespace remains.
    pub(super) fn finish(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => fail(self.pos, ErrorKind::TrailingBytes),
        }
    }

    /// A string; `pos` is at its opening quote.
    pub(super) fn string(&mut self) -> Result<JsonStr> {
        debug_assert_eq!(self.byte(self.pos), Some(b'"'));
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        let mut non_ascii = false;
        loop {
            // Eight bytes at a time while none of them needs a look.
            while let Some(chunk) = self.bytes[..self.end].get(self.pos..self.pos + 8) {
                let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
                non_ascii |= word & HIGH != 0;
                if special(word) {
                    break;
                }
                self.pos += 8;
            }
            let Some(c) = self.byte(self.pos) else {
                return self.eof();
            };
            match c {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0..=0x1f => return fail(self.pos, ErrorKind::ControlCharacter),
                0x80.. => {
                    non_ascii = true;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
        let end = self.pos;
        self.pos += 1;
        if non_ascii && let Err(e) = core::str::from_utf8(&self.bytes[start..end]) {
            return fail(start + e.valid_up_to(), ErrorKind::InvalidUtf8);
        }
        Ok(JsonStr {
            span: span(start, end),
            escaped,
        })
    }

    /// One escape; `pos` is at its backslash.
    fn escape(&mut self) -> Result<()> {
        let at = self.pos;
        match self.byte(at + 1) {
            None => self.eof(),
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let hi = self.hex4(at + 2)?;
                self.pos = at + 6;
                match hi {
                    0xD800..=0xDBFF => {
                        match (self.byte(self.pos), self.byte(self.pos + 1)) {
                            (Some(b'\\'), Some(b'u')) => {}
                            (None, _) | (Some(b'\\'), None) => return self.eof(),
                            _ => return fail(at, ErrorKind::LoneSurrogate),
                        }
                        let lo = self.hex4(self.pos + 2)?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return fail(at, ErrorKind::LoneSurrogate);
                        }
                        self.pos += 6;
                        Ok(())
                    }
                    0xDC00..=0xDFFF => fail(at, ErrorKind::LoneSurrogate),
                    _ => Ok(()),
                }
            }
            Some(_) => fail(at, ErrorKind::InvalidEscape),
        }
    }

    fn hex4(&self, at: usize) -> Result<u32> {
        let mut n = 0;
        for i in at..at + 4 {
            let Some(c) = self.byte(i) else {
                return self.eof();
            };
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return fail(i, ErrorKind::InvalidEscape),
            };
            n = n << 4 | u32::from(d);
        }
        Ok(n)
    }

    fn digits(&mut self) -> usize {
        let from = self.pos;
        while let Some(b'0'..=b'9') = self.byte(self.pos) {
            self.pos += 1;
        }
        self.pos - from
    }

    /// A number; `pos` is at its first byte (`-` or a digit).
    fn number(&mut self) -> Result<()> {
        if self.byte(self.pos) == Some(b'-') {
            self.pos += 1;
        }
        match self.byte(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            None => return self.eof(),
            Some(_) => return fail(self.pos, ErrorKind::InvalidNumber),
        }
        if self.byte(self.pos) == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.byte(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.byte(self.pos) {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        Ok(())
    }

    fn required_digits(&mut self) -> Result<()> {
        if self.digits() > 0 {
            Ok(())
        } else if self.pos >= self.end {
            self.eof()
        } else {
            fail(self.pos, ErrorKind::InvalidNumber)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        for &w in word {
            match self.byte(self.pos) {
                Some(c) if c == w => self.pos += 1,
                None => return self.eof(),
                Some(_) => return fail(self.pos, ErrorKind::InvalidLiteral),
            }
        }
        Ok(())
    }

    /// A scalar (not an array or object) at `pos`, `c` its first byte.
    fn scalar(&mut self, c: u8) -> Result<(ValueKind, bool)> {
        match c {
            b'"' => self.string().map(|s| (ValueKind::String, s.escaped)),
            b't' => self.literal(b"true").map(|()| (ValueKind::Bool, false)),
            b'f' => self.literal(b"false").map(|()| (ValueKind::Bool, false)),
            b'n' => self.literal(b"null").map(|()| (ValueKind::Null, false)),
            b'-' | b'0'..=b'9' => self.number().map(|()| (ValueKind::Number, false)),
            _ => fail(self.pos, ErrorKind::ExpectedValue),
        }
    }

    /// One whole value of any type, skipped and validated; its span.
    pub(super) fn value(&mut self) -> Result<Value> {
        let Some(c) = self.peek() else {
            return self.eof();
        };
        let start = self.pos;
        let (kind, escaped) = match c {
            b'{' => {
                self.skip_container()?;
                (ValueKind::Object, false)
            }
            b'[' => {
                self.skip_container()?;
                (ValueKind::Array, false)
            }
            _ => self.scalar(c)?,
        };
        Ok(Value {
            span: span(start, self.pos),
            kind,
            escaped,
        })
    }

    /// An object key and its colon, after whitespace.
    fn key(&mut self) -> Result<JsonStr> {
        match self.peek() {
            Some(b'"') => {}
            None => return self.eof(),
            Some(_) => return fail(self.pos, ErrorKind::ExpectedKey),
        }
        let key = self.string()?;
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(key)
            }
            None => self.eof(),
            Some(_) => fail(self.pos, ErrorKind::ExpectedColon),
        }
    }

    /// Skips the array or object at `pos` without recursion.
    ///
    /// `stack` bit `i` is set when the container at local level `i` is an
    /// object; `open` containers are nested below `self.depth` already
    /// entered by the caller, and the sum never passes [`MAX_DEPTH`].
    fn skip_container(&mut self) -> Result<()> {
        let mut stack: u128 = 0;
        let mut open: usize = 0;
        // At the top of the loop `pos` is at a '{' or '[' to open.
        'open: loop {
            if self.depth + open >= MAX_DEPTH {
                return fail(self.pos, ErrorKind::TooDeep);
            }
            let is_object = self.bytes[self.pos] == b'{';
            if is_object {
                stack |= 1 << open;
            } else {
                stack &= !(1 << open);
            }
            open += 1;
            self.pos += 1;
            // The first member or element, or an empty container.
            match self.peek() {
                None => return self.eof(),
                Some(b'}') if is_object => {
                    self.pos += 1;
                    open -= 1;
                }
                Some(b']') if !is_object => {
                    self.pos += 1;
                    open -= 1;
                }
                Some(_) => {
                    if is_object {
                        self.key()?;
                    }
                    if self.element()? {
                        continue 'open;
                    }
                }
            }
            // After a value at level `open`: a comma, or the closing byte.
            loop {
                if open == 0 {
                    return Ok(());
                }
                let is_object = stack >> (open - 1) & 1 == 1;
                match self.peek() {
                    None => return self.eof(),
                    Some(b',') => {
                        self.pos += 1;
                        if is_object {
                            self.key()?;
                        }
                        if self.element()? {
                            continue 'open;
                        }
                    }
                    Some(b'}') if is_object => {
                        self.pos += 1;
                        open -= 1;
                    }
                    Some(b']') if !is_object => {
                        self.pos += 1;
                        open -= 1;
                    }
                    Some(_) if is_object => return fail(self.pos, ErrorKind::ExpectedCommaOrBrace),
                    Some(_) => return fail(self.pos, ErrorKind::ExpectedCommaOrBracket),
                }
            }
        }
    }

    /// A member's value or an element inside [`Self::skip_container`]:
    /// `true` when it is a container to open (left at `pos`), `false` when
    /// a scalar was consumed.
    fn element(&mut self) -> Result<bool> {
        match self.peek() {
            None => self.eof(),
            Some(b'{' | b'[') => Ok(true),
            Some(c) => self.scalar(c).map(|_| false),
        }
    }

    /// Enters the object at `pos` (the caller peeked its `{`).
    pub(super) fn enter_object(&mut self) -> Result<Members> {
        self.enter(b'{')?;
        Ok(Members { first: true })
    }

    /// Enters the array at `pos` (the caller peeked its `[`).
    pub(super) fn enter_array(&mut self) -> Result<Elements> {
        self.enter(b'[')?;
        Ok(Elements { first: true })
    }

    fn enter(&mut self, open: u8) -> Result<()> {
        debug_assert_eq!(self.byte(self.pos), Some(open));
        if self.depth >= MAX_DEPTH {
            return fail(self.pos, ErrorKind::TooDeep);
        }
        self.depth += 1;
        self.pos += 1;
        Ok(())
    }

    /// The next member's key (its colon consumed), or `None` after the
    /// closing `}`.
    pub(super) fn next_key(&mut self, members: &mut Members) -> Result<Option<JsonStr>> {
        let first = core::mem::replace(&mut members.first, false);
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(None);
            }
            Some(b',') if !first => self.pos += 1,
            None => return self.eof(),
            Some(_) if first => {}
            Some(_) => return fail(self.pos, ErrorKind::ExpectedCommaOrBrace),
        }
        self.key().map(Some)
    }

    /// `true` when an element follows (at `pos` after [`Self::peek`]),
    /// `false` after the closing `]`.
    pub(super) fn next_element(&mut self, elements: &mut Elements) -> Result<bool> {
        let first = core::mem::replace(&mut elements.first, false);
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(false);
            }
            Some(b',') if !first => self.pos += 1,
            None => return self.eof(),
            Some(_) if first => {}
            Some(_) => return fail(self.pos, ErrorKind::ExpectedCommaOrBracket),
        }
        match self.peek() {
            None => self.eof(),
            Some(_) => Ok(true),
        }
    }
}

/// The state of a walk over an object's members.
pub(super) struct Members {
    first: bool,
}

/// The state of a walk over an array's elements.
pub(super) struct Elements {
    first: bool,
}

/// A non-negative integer's value, when it is one and fits.
pub(super) fn parse_u64(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    raw.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}
