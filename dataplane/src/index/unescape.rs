//! Decoding a string's raw contents, into a caller's buffer or compared in
//! place: no allocation either way.

use core::fmt;

/// What went wrong decoding a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnescapeErrorKind {
    /// The buffer is shorter than the decoded text.
    BufferTooSmall,
    /// A malformed escape (a `\` at the end, an unknown letter, a `\u`
    /// without four hex digits).
    InvalidEscape,
    /// A `\u` escape of a surrogate that is not one half of a pair.
    LoneSurrogate,
    /// Raw bytes that are not UTF-8.
    InvalidUtf8,
}

/// Why a string could not be decoded, and where in its raw contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnescapeError {
    /// Offset into the raw contents of the escape or byte that failed.
    pub offset: usize,
    /// What failed there.
    pub kind: UnescapeErrorKind,
}

impl fmt::Display for UnescapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            UnescapeErrorKind::BufferTooSmall => "the buffer is too small for the decoded text",
            UnescapeErrorKind::InvalidEscape => "invalid escape",
            UnescapeErrorKind::LoneSurrogate => "a \\u escape of an unpaired surrogate",
            UnescapeErrorKind::InvalidUtf8 => "bytes that are not UTF-8",
        };
        write!(f, "at byte {} of the string: {what}", self.offset)
    }
}

impl std::error::Error for UnescapeError {}

/// One decoded piece of a string: a run of raw bytes or one escaped char.
enum Piece<'r> {
    Raw(&'r [u8]),
    Char(char),
}

/// Walks raw string contents piece by piece.
struct Pieces<'r> {
    raw: &'r [u8],
    pos: usize,
}

fn err<T>(offset: usize, kind: UnescapeErrorKind) -> Result<T, UnescapeError> {
    Err(UnescapeError { offset, kind })
}

impl<'r> Pieces<'r> {
    fn hex4(&self, at: usize) -> Result<u32, UnescapeError> {
        let Some(digits) = self.raw.get(at..at + 4) else {
            return err(at, UnescapeErrorKind::InvalidEscape);
        };
        digits.iter().try_fold(0u32, |n, &c| {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return err(at, UnescapeErrorKind::InvalidEscape),
            };
            Ok(n << 4 | u32::from(d))
        })
    }

    fn next(&mut self) -> Option<Result<Piece<'r>, UnescapeError>> {
        let rest = self.raw.get(self.pos..).filter(|r| !r.is_empty())?;
        let at = self.pos;
        if rest[0] != b'\\' {
            let n = rest.iter().position(|&b| b == b'\\').unwrap_or(rest.len());
            self.pos += n;
            return Some(Ok(Piece::Raw(&rest[..n])));
        }
        let c = match rest.get(1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return Some(self.unicode(at)),
            _ => return Some(err(at, UnescapeErrorKind::InvalidEscape)),
        };
        self.pos += 2;
        Some(Ok(Piece::Char(c)))
    }

    fn unicode(&mut self, at: usize) -> Result<Piece<'r>, UnescapeError> {
        let hi = self.hex4(at + 2)?;
        let code = match hi {
            0xD800..=0xDBFF => {
                if self.raw.get(at + 6..at + 8) != Some(b"\\u") {
                    return err(at, UnescapeErrorKind::LoneSurrogate);
                }
                let lo = self.hex4(at + 8)?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return err(at, UnescapeErrorKind::LoneSurrogate);
                }
                self.pos = at + 12;
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return err(at, UnescapeErrorKind::LoneSurrogate),
            _ => {
                self.pos = at + 6;
                hi
            }
        };
        // Surrogates are excluded above, so every code is a char.
        char::from_u32(code).map(Piece::Char).ok_or(UnescapeError {
            offset: at,
            kind: UnescapeErrorKind::LoneSurrogate,
        })
    }
}

/// Decodes the raw contents of a JSON string (between the quotes) into
/// `buf` and returns the text. `raw.len()` bytes of buffer always suffice.
///
/// # Errors
/// [`UnescapeErrorKind::BufferTooSmall`] when `buf` is too short, the other
/// kinds when `raw` is not the contents of a valid JSON string.
pub fn unescape_into<'b>(raw: &[u8], buf: &'b mut [u8]) -> Result<&'b str, UnescapeError> {
    // A backslash is ASCII, so it never splits a UTF-8 sequence: raw bytes
    // that are UTF-8 decode to UTF-8, and the first bad byte is exact here.
    if let Err(e) = core::str::from_utf8(raw) {
        return err(e.valid_up_to(), UnescapeErrorKind::InvalidUtf8);
    }
    let mut pieces = Pieces { raw, pos: 0 };
    let mut n = 0;
    loop {
        let at = pieces.pos;
        let Some(piece) = pieces.next() else { break };
        let mut utf8 = [0u8; 4];
        let bytes = match piece? {
            Piece::Raw(bytes) => bytes,
            Piece::Char(c) => c.encode_utf8(&mut utf8).as_bytes(),
        };
        let Some(dst) = buf.get_mut(n..n + bytes.len()) else {
            return err(at, UnescapeErrorKind::BufferTooSmall);
        };
        dst.copy_from_slice(bytes);
        n += bytes.len();
    }
    // UTF-8 raw runs and whole chars: this cannot fail.
    core::str::from_utf8(&buf[..n]).map_err(|e| UnescapeError {
        offset: e.valid_up_to(),
        kind: UnescapeErrorKind::InvalidUtf8,
    })
}

/// The decoded contents of `raw` are exactly `text`; `false` too when `raw`
/// is malformed.
pub(super) fn decoded_eq(raw: &[u8], mut text: &[u8]) -> bool {
    let mut pieces = Pieces { raw, pos: 0 };
    while let Some(piece) = pieces.next() {
        let mut utf8 = [0u8; 4];
        let bytes = match piece {
            Ok(Piece::Raw(bytes)) => bytes,
            Ok(Piece::Char(c)) => c.encode_utf8(&mut utf8).as_bytes(),
            Err(_) => return false,
        };
        match text.strip_prefix(bytes) {
            Some(rest) => text = rest,
            None => return false,
        }
    }
    text.is_empty()
}

/// The decoded contents of `raw` in `buf`, or `None` when they do not fit
/// or are malformed. Used to classify keys, roles and methods: anything
/// longer than the longest known name is unknown anyway.
pub(super) fn decoded<'x>(raw: &'x [u8], escaped: bool, buf: &'x mut [u8]) -> Option<&'x [u8]> {
    if !escaped {
        return Some(raw);
    }
    unescape_into(raw, buf).ok().map(str::as_bytes)
}
