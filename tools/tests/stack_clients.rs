//! The whole stack as a newcomer runs it (`odock up`: control as its own
//! process, the gateway, the mock upstream, the reference plugins bound by
//! the example policy), driven by real clients as any user installs them:
//! curl, the `openai` and `mcp` Python packages from PyPI, and `odockctl`
//! reading the evidence those requests left.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use odock_tools::up::{KEYS, Stack, UpOptions};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not run: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The venv's python, with the pinned `openai` and `mcp` packages.
fn python() -> PathBuf {
    let out = ok(Command::new("bash")
        .arg(root().join("scripts/pyenv.sh"))
        .current_dir(root()));
    PathBuf::from(
        out.lines()
            .last()
            .expect("pyenv.sh prints the python path")
            .trim(),
    )
}

fn json_line(s: &str) -> Value {
    serde_json::from_str(s.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {s}"))
}

/// curl through the gateway: (status, headers, body).
fn curl(addr: &str, key: &str, body: &str) -> (u16, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("h");
    let out = ok(Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-D"])
        .arg(&headers)
        .arg(format!("http://{addr}/v1/chat/completions"))
        .args(["-H", &format!("authorization: Bearer {key}")])
        .args(["-H", "content-type: application/json", "-d", body]));
    let (body, status) = out.rsplit_once('\n').unwrap();
    (
        status.trim().parse().unwrap(),
        std::fs::read_to_string(headers)
            .unwrap()
            .to_ascii_lowercase(),
        body.to_owned(),
    )
}

fn header<'h>(headers: &'h str, name: &str) -> Option<&'h str> {
    headers
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

#[test]
fn real_clients_through_the_stack() {
    let data = tempfile::tempdir().unwrap();
    let stack = Stack::start(&UpOptions {
        data_dir: data.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        mock_listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        control_exe: PathBuf::from(env!("CARGO_BIN_EXE_odock")),
        plugins_dir: None,
        verbose: true,
    })
    .unwrap_or_else(|e| panic!("the stack did not start: {e}"));
    let addr = stack.gateway().addr().to_string();
    let (acme, globex) = (KEYS[0].0, KEYS[1].0);

    // curl: allowed (with a redaction on the way), blocked, unauthorized.
    let (status, headers, body) = curl(
        &addr,
        acme,
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello from jane@example.com"}]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("[REDACTED:email]"), "{content}");
    assert!(!content.contains("jane@example.com"), "{content}");
    let request_id = header(&headers, "x-odock-request-id")
        .expect("the answer carries its request id")
        .to_owned();

    let (status, headers, body) = curl(
        &addr,
        globex,
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        header(&headers, "x-odock-blocked-by"),
        Some("model-allowlist")
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "blocked", "{body}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("gpt-4o"),
        "{body}"
    );

    let (status, _, body) = curl(&addr, "sk-not-a-key-at-all", r#"{"model":"gpt-4o"}"#);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_api_key"), "{body}");

    // What reached the upstream: the request gate's headers, never the
    // caller's key.
    let seen = stack.mock().requests();
    let chat: Vec<_> = seen
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .collect();
    assert_eq!(
        chat.len(),
        1,
        "only the allowed request went upstream: {seen:?}"
    );
    let h = &chat[0].headers;
    assert_eq!(
        h.get("x-odock-tenant").map(String::as_str),
        Some("acme"),
        "{h:?}"
    );
    assert_eq!(
        h.get("x-odock-billing-tag").map(String::as_str),
        Some("acme-prod"),
        "{h:?}"
    );
    assert!(
        h.values().all(|v| !v.contains("sk-odock")),
        "the virtual key leaked upstream: {h:?}"
    );

    // The openai package: plain, streamed (redacted inside the SSE events),
    // a sensitive model held for approval, and a block as an API error.
    let py = python();
    let client = root().join("tests/clients/openai_client.py");
    let base = format!("http://{addr}/v1");
    let out = json_line(&ok(Command::new(&py).arg(&client).args([
        &base,
        acme,
        "plain",
        "--model",
        "gpt-4o",
        "--message",
        "ping",
    ])));
    assert_eq!(out["content"], "Echo: ping", "{out}");

    let out = json_line(&ok(Command::new(&py).arg(&client).args([
        &base,
        acme,
        "stream",
        "--model",
        "gpt-4o-mini",
        "--message",
        "how do I contact support",
    ])));
    let content = out["content"].as_str().unwrap();
    assert!(out["chunks"].as_u64().unwrap() > 3, "{out}");
    assert!(content.contains("[REDACTED:email]"), "{content}");
    assert!(!content.contains("help@example.com"), "{content}");
    assert!(!content.contains("4111 1111 1111 1111"), "{content}");

    let approvals_before = stack.mock().stats().approvals_asked;
    let out = json_line(&ok(Command::new(&py).arg(&client).args([
        &base,
        acme,
        "plain",
        "--model",
        "o1-preview",
        "--message",
        "plan it",
    ])));
    assert_eq!(out["content"], "Echo: plan it", "{out}");
    assert!(stack.mock().stats().approvals_asked > approvals_before);
    let approved = stack
        .mock()
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/v1/chat/completions")
        .unwrap();
    assert_eq!(
        approved.headers.get("x-odock-approval").map(String::as_str),
        Some("approved")
    );

    let out = json_line(&ok(Command::new(&py).arg(&client).args([
        &base,
        globex,
        "expect-block",
        "--model",
        "gpt-4o",
    ])));
    assert_eq!(out["status"], 403, "{out}");

    // The mcp package: list and call through the gateway; a tool the
    // tenant may not use comes back as the call's MCP error.
    let mcp = root().join("tests/clients/mcp_client.py");
    let url = format!("http://{addr}/mcp");
    let out = json_line(&ok(Command::new(&py).arg(&mcp).args([&url, acme, "list"])));
    let names: Vec<&str> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"search") && names.contains(&"delete_repo"),
        "{out}"
    );
    let out = json_line(&ok(Command::new(&py).arg(&mcp).args([
        &url,
        acme,
        "call",
        "search",
        r#"{"query": "ring buffers"}"#,
    ])));
    assert_eq!(out["isError"], false, "{out}");
    assert!(out.to_string().contains("ring buffers"), "{out}");
    let out = json_line(&ok(Command::new(&py).arg(&mcp).args([
        &url,
        globex,
        "call",
        "delete_repo",
        r#"{"repo": "odock/prod"}"#,
        "--expect-error",
    ])));
    assert_eq!(out["error"]["code"], -32003, "{out}");

    // odockctl reads the evidence the first curl request left: a decision
    // by each request-gate plugin, drained by control into its log.
    let socket = stack.socket().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(20);
    let plugins = loop {
        let out = ok(Command::new(env!("CARGO_BIN_EXE_odockctl"))
            .arg("--socket")
            .arg(&socket)
            .args(["--json", "evidence", "query", "--request-id", &request_id]));
        let records: Vec<Value> = out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut plugins: Vec<String> = records
            .iter()
            .filter(|r| r["kind"] == "decision")
            .filter_map(|r| r["plugin"].as_str().map(str::to_owned))
            .collect();
        plugins.sort();
        plugins.dedup();
        if plugins.len() >= 5 || Instant::now() > deadline {
            break plugins;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for p in [
        "enrich",
        "model-allowlist",
        "dlp-redact",
        "approval",
        "audit-export",
    ] {
        assert!(
            plugins.iter().any(|q| q == p),
            "no {p} decision for {request_id}: {plugins:?}"
        );
    }

    let audit = stack.audit_file();
    let stopped = stack.shutdown().unwrap();
    assert!(
        stopped.drained,
        "control drained every ring before stopping"
    );
    assert!(stopped.evidence_records > 20, "{stopped:?}");
    let audit = std::fs::read_to_string(&audit).unwrap();
    assert!(
        audit.lines().any(|l| l.contains(&request_id)),
        "the audit file names the first request"
    );
}
