//! A webhook: each batch is one `POST` of JSON lines
//! (`content-type: application/x-ndjson`) over plain HTTP/1.1, with
//! `x-odock-sink`, `x-odock-first-index` and `x-odock-last-index` headers
//! so a receiver can drop a batch it already has (delivery is
//! at-least-once). Any 2xx answer within the timeout is a delivery;
//! anything else is a failure and the batch is offered again.

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use super::Destination;

/// A plain `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (default 80).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http://host[:port][/path]`.
    ///
    /// # Errors
    /// Why it is not such a URL.
    pub fn parse(s: &str) -> Result<Url, String> {
        let rest = s.strip_prefix("http://").ok_or_else(|| {
            if s.starts_with("https://") {
                format!("{s:?}: https is not supported; use http:// (to a local relay)")
            } else {
                format!("{s:?} is not an http:// URL")
            }
        })?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed '[' in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains('@') {
            return Err(format!("{s:?}: no host (user info is not supported)"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("{s:?}: port {p:?} is not 1 to 65535"))?,
        };
        Ok(Url {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// The webhook destination: a small single-threaded runtime of its own
/// for hyper's client, used only by the sink's thread.
pub struct WebhookSink {
    url: Url,
    timeout: Duration,
    name: String,
    rt: tokio::runtime::Runtime,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// A webhook to `url`, each post given `timeout`.
    ///
    /// # Errors
    /// The runtime could not be built.
    pub fn new(url: Url, timeout: Duration, name: &str) -> io::Result<WebhookSink> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        Ok(WebhookSink {
            url,
            timeout,
            name: name.to_owned(),
            rt,
        })
    }

    async fn post(&self, body: Bytes, first: u64, last: u64) -> Result<(), String> {
        let stream = tokio::net::TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .map_err(|e| format!("connect {}: {e}", self.url))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let conn = tokio::spawn(conn);
        let req = Request::post(self.url.path.as_str())
            .header(hyper::header::HOST, self.url.authority())
            .header(hyper::header::CONTENT_TYPE, "application/x-ndjson")
            .header("x-odock-sink", self.name.as_str())
            .header("x-odock-first-index", first)
            .header("x-odock-last-index", last)
            .body(Full::new(body))
            .map_err(|e| format!("{}: {e}", self.url))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("POST {}: {e}", self.url))?;
        let status = resp.status();
        let answer = resp.into_body().collect().await.map(|b| b.to_bytes());
        conn.abort();
        if !status.is_success() {
            let text = answer
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                .unwrap_or_default();
            return Err(format!(
                "POST {} answered {status}: {}",
                self.url,
                text.trim()
            ));
        }
        Ok(())
    }
}

impl Destination for WebhookSink {
    fn deliver(&mut self, lines: &[String], first: u64, last: u64) -> Result<(), String> {
        let mut body = Vec::with_capacity(lines.iter().map(String::len).sum());
        for l in lines {
            body.extend_from_slice(l.as_bytes());
        }
        let body = Bytes::from(body);
        let timeout = self.timeout;
        self.rt.block_on(async {
            match tokio::time::timeout(timeout, self.post(body, first, last)).await {
                Ok(r) => r,
                Err(_) => Err(format!("POST {} timed out after {timeout:?}", self.url)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls_and_refuses_others() {
        let u = Url::parse("http://127.0.0.1:9000/hook?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9000, "/hook?x=1")
        );
        let u = Url::parse("http://siem.local").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = Url::parse("http://[::1]:81/a").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        assert!(Url::parse("https://x/").unwrap_err().contains("https"));
        assert!(Url::parse("ftp://x/").is_err());
        assert!(Url::parse("http://:80/").is_err());
        assert!(Url::parse("http://x:0/").is_err());
        assert!(Url::parse("http://x:99999/").is_err());
    }
}
