//! A deliberately small HTTP/1.1 client: one `POST` to an `http://` URL,
//! `Connection: close`, answered with the status code.
//!
//! Plain HTTP only: a plugin that needs TLS would link a TLS stack, which the
//! reference plugins keep out to stay small. Point them at a local relay (or
//! the gateway's own egress) for `https` endpoints.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where a webhook lives, parsed once from a plugin's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host[:port]` as written (sent as the `Host` header).
    pub authority: String,
    /// The host name or address.
    pub host: String,
    /// The port (80 when not written).
    pub port: u16,
    /// The path with its query, at least `/`.
    pub path: String,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub &'static str);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Url {
    /// Parses `http://host[:port][/path]`.
    ///
    /// # Errors
    /// [`UrlError`] for another scheme, an empty host, a bad port, or bytes
    /// that have no place in a request line (spaces, CR, LF).
    pub fn parse(url: &str) -> Result<Url, UrlError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or(UrlError("only http:// URLs are supported"))?;
        if rest.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UrlError("the URL holds spaces or control characters"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse()
                    .map_err(|_| UrlError("the port is not a number"))?,
            ),
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError("the URL has no host"));
        }
        Ok(Url {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    fn addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }
}

/// Why a POST did not get a 2xx.
#[derive(Debug)]
pub enum PostError {
    /// Connecting, writing or reading failed (or timed out).
    Io(std::io::Error),
    /// The answer was not HTTP.
    BadAnswer,
    /// The server answered with this non-2xx status.
    Status(u16),
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostError::Io(e) => write!(f, "webhook unreachable: {e}"),
            PostError::BadAnswer => f.write_str("webhook answered something that is not HTTP"),
            PostError::Status(s) => write!(f, "webhook answered {s}"),
        }
    }
}

impl std::error::Error for PostError {}

impl From<std::io::Error> for PostError {
    fn from(e: std::io::Error) -> Self {
        PostError::Io(e)
    }
}

/// POSTs `body` to `url` with these extra headers; `timeout` bounds the
/// connect and each read and write. Returns the 2xx status.
///
/// # Errors
/// [`PostError`]: unreachable, not HTTP, or a status outside 200..=299.
pub fn post(
    url: &Url,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<u16, PostError> {
    let addrs = url.addrs()?;
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = match stream {
        Some(s) => s,
        None => {
            return Err(PostError::Io(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address")
            })));
        }
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: odock-plugin\r\n",
        url.path,
        url.authority,
        content_type,
        body.len()
    );
    for (name, value) in headers {
        if name
            .bytes()
            .chain(value.bytes())
            .any(|b| b == b'\r' || b == b'\n')
        {
            continue;
        }
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    // Only the status line matters: read until its end (or 1 KiB).
    let mut answer = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !answer.contains(&b'\n') && answer.len() < 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let status = status_of(&answer).ok_or(PostError::BadAnswer)?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(PostError::Status(status))
    }
}

/// The status code of an HTTP/1.x status line.
fn status_of(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\n').next()?;
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:8080/hooks/a?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/hooks/a?x=1")
        );
        let u = Url::parse("http://example.test").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = Url::parse("http://[::1]:9/p").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert!(Url::parse("https://x/").is_err());
        assert!(Url::parse("http://:80/").is_err());
        assert!(Url::parse("http://x:y/").is_err());
        assert!(Url::parse("http://x/a b").is_err());
    }

    #[test]
    fn reads_status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_of(b"HTTP/1.0 500 x\r\n"), Some(500));
        assert_eq!(status_of(b"SSH-2.0\r\n"), None);
    }

    #[test]
    fn posts_to_a_local_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"hello") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/in")).unwrap();
        let status = post(
            &url,
            "text/plain",
            &[("x-a", "1")],
            b"hello",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(status, 202);
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /in HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nx-a: 1\r\n"));
    }
}
