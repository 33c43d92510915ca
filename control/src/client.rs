//! A small blocking HTTP/1.1 client for control's socket (used by
//! `odockctl` and the tests): one request per connection, `Content-Length`
//! or chunked answers.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A client of one control socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Option<Duration>,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request failed before an answer came.
#[derive(Debug)]
pub enum ClientError {
    /// Connecting to the socket failed (is control running?).
    Connect(PathBuf, io::Error),
    /// Sending or reading failed.
    Io(io::Error),
    /// The answer is not HTTP/1.1 as expected.
    Protocol(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(p, e) => write!(
                f,
                "cannot connect to control at {}: {e} (is odock-control running? set --socket)",
                p.display()
            ),
            ClientError::Io(e) => write!(f, "talking to control: {e}"),
            ClientError::Protocol(m) => write!(f, "control answered oddly: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl Client {
    /// A client of the socket at `socket`, with a 30 s read timeout.
    pub fn new(socket: &Path) -> Client {
        Client {
            socket: socket.to_path_buf(),
            timeout: Some(Duration::from_secs(30)),
        }
    }

    /// Sets the read timeout (`None`: wait forever, for following).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Client {
        self.timeout = timeout;
        self
    }

    /// Sends one request and reads the whole answer.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, ClientError> {
        let mut out = Vec::new();
        let status = self.stream(method, path, body, |chunk| {
            out.extend_from_slice(chunk);
            true
        })?;
        Ok(Answer { status, body: out })
    }

    /// Sends one request and hands the answer's body to `f` as it comes,
    /// until `f` returns false or the answer ends. Returns the status.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn stream(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        mut f: impl FnMut(&[u8]) -> bool,
    ) -> Result<u16, ClientError> {
        let mut s = UnixStream::connect(&self.socket)
            .map_err(|e| ClientError::Connect(self.socket.clone(), e))?;
        s.set_read_timeout(self.timeout).map_err(ClientError::Io)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: control\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(ClientError::Io)?;
        s.write_all(body).map_err(ClientError::Io)?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).map_err(ClientError::Io)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::Protocol(format!("status line {line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            r.read_line(&mut line).map_err(ClientError::Io)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim();
                if k == "content-length" {
                    length = v.parse::<usize>().ok();
                } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
            }
        }
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line).map_err(ClientError::Io)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| ClientError::Protocol(format!("chunk size {line:?}")))?;
                if size == 0 {
                    break;
                }
                let mut buf = vec![0; size];
                r.read_exact(&mut buf).map_err(ClientError::Io)?;
                let mut crlf = [0; 2];
                r.read_exact(&mut crlf).map_err(ClientError::Io)?;
                if !f(&buf) {
                    break;
                }
            }
        } else if let Some(n) = length {
            let mut buf = vec![0; n];
            r.read_exact(&mut buf).map_err(ClientError::Io)?;
            f(&buf);
        } else {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).map_err(ClientError::Io)?;
            f(&buf);
        }
        Ok(status)
    }
}
