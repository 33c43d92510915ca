//! The real clients against the built-in mock upstream: the `openai` and
//! `mcp` packages from PyPI (pinned in `tests/clients/requirements.txt`,
//! installed by `scripts/pyenv.sh` into `target/pyenv`) run the scripts of
//! `tests/clients/` in every mode against `odock_tools::mock::Mock`. This
//! proves the mock speaks what those clients speak; the gateway's tests
//! run the same scripts through the gateway.
//!
//! Without python or PyPI these tests fail, naming the reason: they never
//! skip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use odock_tools::mock::{CONTACT_SENTENCE, Mock, MockConfig};
use serde_json::{Value, json};

const KEY: &str = "sk-odock-client-test";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, made once per test binary by `scripts/pyenv.sh`.
fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = PYTHON.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("scripts/pyenv.sh"))
            .output()
            .map_err(|e| format!("cannot run bash scripts/pyenv.sh: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!(
                "scripts/pyenv.sh failed ({}):\n{stderr}",
                out.status
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let python = stdout
            .lines()
            .last()
            .map(|l| PathBuf::from(l.trim()))
            .ok_or_else(|| format!("scripts/pyenv.sh printed nothing on stdout:\n{stderr}"))?;
        if python.is_file() {
            Ok(python)
        } else {
            Err(format!(
                "scripts/pyenv.sh's last line {python:?} is not a file:\n{stdout}\n{stderr}"
            ))
        }
    });
    match made {
        Ok(python) => python,
        Err(why) => panic!("no python venv for the real-client tests: {why}"),
    }
}

fn mock() -> Mock {
    Mock::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig {
            chunk_delay: Duration::from_millis(1),
            approval_delay: Duration::from_millis(1),
        },
    )
    .expect("the mock starts")
}

/// What a script did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The JSON of the last stdout line, after checking the exit code.
    fn json(&self, code: i32) -> Value {
        assert_eq!(self.code, Some(code), "{self:#?}");
        let line = self
            .stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no output: {self:#?}"));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

fn script(name: &str, args: &[&str]) -> Run {
    let out = Command::new(python())
        .arg(root().join("tests/clients").join(name))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn openai(addr: SocketAddr, args: &[&str]) -> Run {
    let base = format!("http://{addr}/v1");
    let mut all = vec![base.as_str(), KEY];
    all.extend_from_slice(args);
    script("openai_client.py", &all)
}

fn mcp(addr: SocketAddr, args: &[&str]) -> Run {
    let url = format!("http://{addr}/mcp");
    let mut all = vec![url.as_str(), KEY];
    all.extend_from_slice(args);
    script("mcp_client.py", &all)
}

#[test]
fn openai_plain_completion() {
    let mock = mock();
    let v = openai(
        mock.addr(),
        &["plain", "--model", "gpt-4o", "--message", "hello mock"],
    )
    .json(0);
    assert_eq!(v["content"], "Echo: hello mock");
    assert_eq!(v["model"], "gpt-4o");

    let v = openai(
        mock.addr(),
        &["plain", "--message", "how do I contact support?"],
    )
    .json(0);
    assert_eq!(
        v["content"],
        format!("Echo: how do I contact support? {CONTACT_SENTENCE}")
    );

    assert_eq!(mock.stats().chat_completions, 2);
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {KEY}"));
}

#[test]
fn openai_streamed_completion() {
    let mock = mock();
    let v = openai(mock.addr(), &["stream", "--message", "one two three four"]).json(0);
    assert_eq!(v["content"], "Echo: one two three four");
    assert_eq!(v["chunks"], 5, "one chunk per word");
    assert_eq!(v["finish_reason"], "stop");
    assert_eq!(v["usage"], Value::Null);

    let v = openai(
        mock.addr(),
        &["stream", "--message", "one two", "--include-usage"],
    )
    .json(0);
    assert_eq!(v["content"], "Echo: one two");
    assert_eq!(v["chunks"], 4, "three words and the usage chunk");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 5);

    let stats = mock.stats();
    assert_eq!((stats.chat_completions, stats.chat_streams), (2, 2));
}

#[test]
fn openai_expect_block() {
    let mock = mock();
    // The mock refuses an empty model with 400: the client sees the error.
    let v = openai(mock.addr(), &["expect-block", "--model", ""]).json(0);
    assert_eq!(v["status"], 400);
    assert!(v["message"].as_str().unwrap().contains("model"), "{v}");
    assert_eq!(v["body"]["type"], "invalid_request_error");
    // A request that goes through is a failure in this mode.
    let run = openai(mock.addr(), &["expect-block", "--message", "fine"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("succeeded"), "{run:#?}");
    // So is an HTTP error in the other modes.
    let run = openai(mock.addr(), &["plain", "--model", ""]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("400"), "{run:#?}");
}

#[test]
fn mcp_lists_tools_in_a_session() {
    let mock = mock();
    let v = mcp(mock.addr(), &["list"]).json(0);
    assert_eq!(v, json!(["search", "fetch_url", "delete_repo"]));

    // The client's traffic: initialize without a session, everything after
    // it with one, every request with the key, and DELETE at the end.
    let seen = mock.requests();
    assert!(seen.len() >= 4, "{seen:#?}");
    assert!(seen.iter().all(|r| r.path == "/mcp"));
    assert!(
        seen.iter()
            .all(|r| r.headers["authorization"] == format!("Bearer {KEY}"))
    );
    assert!(!seen[0].headers.contains_key("mcp-session-id"));
    let session = &seen[1].headers["mcp-session-id"];
    assert!(
        seen[1..]
            .iter()
            .all(|r| &r.headers["mcp-session-id"] == session)
    );
    assert_eq!(seen.last().unwrap().method, "DELETE");
}

#[test]
fn mcp_calls_tools() {
    let mock = mock();
    let v = mcp(mock.addr(), &["call", "search", r#"{"query":"odock"}"#]).json(0);
    assert_eq!(v["isError"], false);
    let hits = v["content"][0].as_str().unwrap();
    assert!(
        hits.contains("odock") && hits.contains("https://example.com/search/1"),
        "{v}"
    );
    let v = mcp(
        mock.addr(),
        &["call", "fetch_url", r#"{"url":"https://example.org/a"}"#],
    )
    .json(0);
    assert!(
        v["content"][0]
            .as_str()
            .unwrap()
            .contains("https://example.org/a")
    );
    let v = mcp(
        mock.addr(),
        &["call", "delete_repo", r#"{"repo":"acme/prod"}"#],
    )
    .json(0);
    assert_eq!(
        v,
        json!({"isError": false, "content": ["deleted acme/prod"]})
    );
}

#[test]
fn mcp_call_errors() {
    let mock = mock();
    let v = mcp(mock.addr(), &["call", "rm_rf", "{}", "--expect-error"]).json(0);
    assert_eq!(v["error"]["code"], -32602);
    assert!(v["error"]["message"].as_str().unwrap().contains("rm_rf"));
    let v = mcp(
        mock.addr(),
        &["call", "search", r#"{"q":1}"#, "--expect-error"],
    )
    .json(0);
    assert_eq!(v["error"]["code"], -32602);

    // An error where none was expected, and none where one was: exit 1.
    let run = mcp(mock.addr(), &["call", "rm_rf", "{}"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("-32602"), "{run:#?}");
    let run = mcp(
        mock.addr(),
        &["call", "search", r#"{"query":"x"}"#, "--expect-error"],
    );
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("expected"), "{run:#?}");
}

#[test]
fn unreachable_endpoints_exit_2() {
    let mock = mock();
    let addr = mock.addr();
    mock.shutdown();
    let run = openai(addr, &["plain"]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("cannot reach"), "{run:#?}");
    let run = mcp(addr, &["list"]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("cannot talk to"), "{run:#?}");
}
