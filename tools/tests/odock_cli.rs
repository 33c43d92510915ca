//! The `odock` binary as a newcomer runs it: `odock demo` ends with its
//! summary, and `odock up` serves traffic, stops cleanly on Ctrl-C (SIGINT)
//! and leaves an evidence log that opens and holds the requests' records.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use odock_control::log::{FileStorage, IoMode, Log, LogConfig};

fn odock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_odock"))
}

/// Reads a child's stdout lines into a channel as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, prefix: &str) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(l) => {
                seen.push(l.clone());
                if l.trim_start().starts_with(prefix) {
                    return l;
                }
            }
            Err(e) => panic!("no line starting {prefix:?} ({e}); saw {seen:#?}"),
        }
    }
}

fn evidence_records(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let storage = FileStorage::new(dir, IoMode::Pwrite).unwrap();
    let (log, recovery) = Log::open(storage, LogConfig::default()).unwrap();
    assert!(recovery.corrupt.is_empty(), "{:?}", recovery.corrupt);
    let mut out = Vec::new();
    log.snapshot()
        .scan(log.storage(), 0, |entry| {
            out.push(entry.payload.to_vec());
            true
        })
        .unwrap();
    out
}

#[test]
fn up_serves_and_stops_cleanly_on_ctrl_c() {
    let data = tempfile::tempdir().unwrap();
    let mut child = odock()
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--mock-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    wait_for(&rx, &mut seen, "Odock is up");
    let gateway = wait_for(&rx, &mut seen, "gateway");
    let url = gateway
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let curl_line = wait_for(&rx, &mut seen, "curl");
    assert!(
        curl_line.contains(&url),
        "the curl example names the gateway"
    );
    wait_for(&rx, &mut seen, "cargo run -p odock-tools --bin odockctl");

    let out = Command::new("curl")
        .args(["-sS", "-i", &format!("{url}/v1/chat/completions")])
        .args(["-H", "authorization: Bearer sk-odock-acme-demo"])
        .args(["-H", "content-type: application/json"])
        .args([
            "-d",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}"#,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    let request_id = text
        .lines()
        .find_map(|l| l.strip_prefix("x-odock-request-id: "))
        .unwrap()
        .trim()
        .to_owned();

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let summary = wait_for(&rx, &mut seen, "evidence:");
    let status = child.wait().unwrap();
    assert!(status.success(), "odock up exited {status}; {seen:#?}");
    assert!(
        !summary.contains("had not drained"),
        "control drained every ring before it stopped: {summary}"
    );

    // The log opens after the stop, and holds the request's decisions.
    let records = evidence_records(&data.path().join("control/evidence"));
    let decisions = records
        .iter()
        .filter_map(|r| odock_dataplane::evidence::decode(r).ok())
        .filter(|e| e.evidence.request_id == request_id)
        .count();
    assert!(
        decisions >= 5,
        "{decisions} records for request {request_id} in {} records",
        records.len()
    );
}

#[test]
fn demo_ends_with_its_summary() {
    let data = tempfile::tempdir().unwrap();
    let out = odock()
        .args(["demo", "--seconds", "2", "--callers", "4"])
        .args(["--listen", "127.0.0.1:0", "--mock-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("requests/s"), "{stdout}");
    for case in odock_tools::demo::CASES {
        let row = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(case))
            .unwrap_or_else(|| panic!("no row for {case}: {stdout}"));
        let meant: u64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(meant > 0, "no {case} exchange came back as meant: {stdout}");
    }
    for plugin in odock_tools::up::PLUGINS {
        assert!(
            stdout.lines().any(|l| l.starts_with(plugin)),
            "no verdicts for {plugin}: {stdout}"
        );
    }
    assert!(
        stdout.contains("gate overhead per exchange: p50"),
        "{stdout}"
    );
    for baseline in [
        "through the gateway, example policy",
        "through a gateway, empty policy",
        "straight to the upstream",
    ] {
        assert!(
            stdout.contains(baseline),
            "no baseline row {baseline:?}: {stdout}"
        );
    }
    assert!(stdout.contains("records in the durable log at"), "{stdout}");
    assert!(stderr.contains("requests"), "the progress line: {stderr}");
}
