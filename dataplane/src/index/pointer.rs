//! RFC 6901 JSON pointers, resolved to the span of the value they name: how
//! the runtime applies a plugin's `replace_body_field` as a byte range.

use core::fmt;

use super::Span;
use super::scan::Scanner;

/// Why a pointer names no value of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointerError {
    /// Not empty and not starting with `/`, or a `~` not followed by 0 or 1.
    Syntax,
    /// A step names a member or element the body does not have (or steps
    /// into a scalar).
    NotFound,
    /// The body is not valid JSON up to the value.
    InvalidBody,
}

impl fmt::Display for PointerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PointerError::Syntax => "not an RFC 6901 JSON pointer",
            PointerError::NotFound => "the pointer names no value of the body",
            PointerError::InvalidBody => "the body is not valid JSON",
        })
    }
}

impl std::error::Error for PointerError {}

/// The span (in `body`) of the whole value `pointer` names: a string with
/// its quotes, an object or array with its brackets. `""` names the whole
/// document. Member names are compared decoded (`"a\u0062"` is `ab`).
///
/// # Errors
/// [`PointerError`].
pub fn locate(body: &[u8], pointer: &str) -> Result<Span, PointerError> {
    let mut sc = Scanner::new(body, 0, body.len());
    let invalid = |_| PointerError::InvalidBody;
    if !pointer.is_empty() {
        let Some(path) = pointer.strip_prefix('/') else {
            return Err(PointerError::Syntax);
        };
        let mut token = String::new();
        for raw in path.split('/') {
            unescape(raw, &mut token)?;
            match sc.peek() {
                Some(b'{') => {
                    let mut members = sc.enter_object().map_err(invalid)?;
                    loop {
                        let Some(key) = sc.next_key(&mut members).map_err(invalid)? else {
                            return Err(PointerError::NotFound);
                        };
                        if key.eq_text(body, &token) {
                            break;
                        }
                        sc.value().map_err(invalid)?;
                    }
                }
                Some(b'[') => {
                    let index = array_index(&token)?;
                    let mut elements = sc.enter_array().map_err(invalid)?;
                    let mut i = 0;
                    loop {
                        if !sc.next_element(&mut elements).map_err(invalid)? {
                            return Err(PointerError::NotFound);
                        }
                        if i == index {
                            break;
                        }
                        sc.value().map_err(invalid)?;
                        i += 1;
                    }
                }
                Some(_) => return Err(PointerError::NotFound),
                None => return Err(PointerError::InvalidBody),
            }
        }
    }
    sc.value().map(|v| v.span).map_err(invalid)
}

/// `~1` is `/`, `~0` is `~`; any other `~` is a syntax error.
fn unescape(raw: &str, out: &mut String) -> Result<(), PointerError> {
    out.clear();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err(PointerError::Syntax),
            }
        } else {
            out.push(c);
        }
    }
    Ok(())
}

/// An array index token: `0`, or digits without a leading zero. `-` (past
/// the end) names no existing value.
fn array_index(token: &str) -> Result<usize, PointerError> {
    let ok = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if !ok {
        return Err(PointerError::NotFound);
    }
    token.parse().map_err(|_| PointerError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'b>(body: &'b [u8], pointer: &str) -> Result<&'b str, PointerError> {
        locate(body, pointer).map(|s| std::str::from_utf8(s.get(body)).unwrap())
    }

    #[test]
    fn pointers_name_values_as_rfc_6901_says() {
        let body = br#" {"model":"gpt-4o","messages":[{"role":"user","content":"hi"},{"role":"tool","content":[1,{"x":null}]}],
            "a/b":1, "m~n": true, "e\u0073c": "yes", "": 0 } "#;
        assert_eq!(text(body, "/model"), Ok(r#""gpt-4o""#));
        assert_eq!(text(body, "/messages/0/content"), Ok(r#""hi""#));
        assert_eq!(text(body, "/messages/1/content/1"), Ok(r#"{"x":null}"#));
        assert_eq!(text(body, "/messages/1/content/1/x"), Ok("null"));
        assert_eq!(text(body, "/a~1b"), Ok("1"));
        assert_eq!(text(body, "/m~0n"), Ok("true"));
        assert_eq!(text(body, "/esc"), Ok(r#""yes""#));
        assert_eq!(text(body, "/"), Ok("0"));
        assert!(text(body, "").unwrap().starts_with("{\"model\""));
        assert_eq!(text(body, "/missing"), Err(PointerError::NotFound));
        assert_eq!(text(body, "/messages/2"), Err(PointerError::NotFound));
        assert_eq!(text(body, "/messages/01"), Err(PointerError::NotFound));
        assert_eq!(text(body, "/messages/-"), Err(PointerError::NotFound));
        assert_eq!(text(body, "/model/x"), Err(PointerError::NotFound));
        assert_eq!(text(body, "model"), Err(PointerError::Syntax));
        assert_eq!(text(body, "/a~2"), Err(PointerError::Syntax));
        assert_eq!(text(br#"{"a":[1,"#, "/a/1"), Err(PointerError::InvalidBody));
    }
}
