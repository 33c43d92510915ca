//! Bad input to a real control process, each its own test: a clear error
//! naming what is wrong, and nothing changed or lost.

mod control_support;
mod plugin_support;

use std::time::Duration;

use control_support::{Setup, maybe_run_role};
use odock_control::client::Client;
use odock_dataplane::plugin::Pin;
use odock_suite::watchdog;
use serde_json::{Value, json};

/// Runs a child role when this binary is re-executed as one.
#[test]
fn role_child() {
    maybe_run_role();
}

fn is_child() -> bool {
    std::env::var("ODOCK_TEST_ROLE").is_ok()
}

fn version(c: &Client) -> u64 {
    c.request("GET", "/v1/status", None).unwrap().json()["version"]
        .as_u64()
        .unwrap()
}

fn post(c: &Client, path: &str, body: &str) -> (u16, Value) {
    let a = c.request("POST", path, Some(body.as_bytes())).unwrap();
    (a.status, a.json())
}

fn probe() -> (std::path::PathBuf, String) {
    let path = plugin_support::c_plugin("probe", "tests/plugin_sources/probe.c", &[]);
    let sha = Pin::of_file(&path).unwrap().to_string();
    (path, sha)
}

#[test]
fn malformed_json_is_400_and_changes_nothing() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        let s = Setup::new();
        let _control = s.control(None);
        let c = s.client();
        let (status, body) = post(&c, "/v1/scopes", "{\"name\": \"acme\", ");
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("invalid request body"),
            "{body}"
        );
        let (status, _) = post(&c, "/v1/bindings", "not json");
        assert_eq!(status, 400);
        assert_eq!(version(&c), 0);
        let scopes = c.request("GET", "/v1/scopes", None).unwrap().json();
        assert_eq!(scopes, json!([]));
    });
}

#[test]
fn unknown_fields_are_400_naming_the_field() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        let s = Setup::new();
        let _control = s.control(None);
        let c = s.client();
        let (status, body) = post(&c, "/v1/scopes", r#"{"name": "acme", "tennant": "acme"}"#);
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["field"], "tennant");
        let (status, body) = post(
            &c,
            "/v1/plugins",
            r#"{"name": "p", "path": "/x", "sha256": "00", "trust": true}"#,
        );
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["field"], "trust");
        // An unknown query parameter too.
        let a = c.request("GET", "/v1/evidence?tennant=acme", None).unwrap();
        assert_eq!(a.status, 400);
        assert_eq!(a.json()["field"], "tennant");
        assert_eq!(version(&c), 0);
    });
}

#[test]
fn a_path_that_is_not_a_plugin_is_422_on_path() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        let s = Setup::new();
        let _control = s.control(None);
        let c = s.client();
        let not_plugin = s.dir.path().join("notes.txt");
        std::fs::write(&not_plugin, b"just some text, not an ELF shared object").unwrap();
        let sha = Pin::of_file(&not_plugin).unwrap().to_string();
        let body = json!({"name": "notes", "path": not_plugin, "sha256": sha}).to_string();
        let (status, body) = post(&c, "/v1/plugins", &body);
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["field"], "path");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("not a loadable plugin"),
            "{body}"
        );
        let missing =
            json!({"name": "gone", "path": "/nonexistent/libgone.so", "sha256": sha}).to_string();
        let (status, body) = post(&c, "/v1/plugins", &missing);
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["field"], "path");
        let relative = json!({"name": "rel", "path": "libx.so", "sha256": sha}).to_string();
        assert_eq!(post(&c, "/v1/plugins", &relative).1["field"], "path");
        assert_eq!(version(&c), 0);
        assert_eq!(
            c.request("GET", "/v1/plugins", None).unwrap().json(),
            json!([])
        );
    });
}

#[test]
fn a_sha256_mismatch_is_422_on_sha256() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(120), || {
        let (path, sha) = probe();
        let s = Setup::new();
        let _control = s.control(None);
        let c = s.client();
        let mut wrong = sha.clone().into_bytes();
        wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
        let body =
            json!({"name": "probe", "path": path, "sha256": String::from_utf8(wrong).unwrap()});
        let (status, answer) = post(&c, "/v1/plugins", &body.to_string());
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["field"], "sha256");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("SHA-256 mismatch"),
            "{answer}"
        );
        // A plugin registered under a name other than its own.
        let body = json!({"name": "not-probe", "path": path, "sha256": sha});
        let (status, answer) = post(&c, "/v1/plugins", &body.to_string());
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["field"], "name");
        assert_eq!(version(&c), 0);
        // The right pin registers, and a binding that misses a grant the
        // plugin asks for is refused naming the field.
        let body = json!({"name": "probe", "path": path, "sha256": sha});
        assert_eq!(post(&c, "/v1/plugins", &body.to_string()).0, 201);
        let binding = json!({"name": "b", "plugin": "probe", "priority": {"request": 1}, "capabilities": ["block"]});
        let (status, answer) = post(&c, "/v1/bindings", &binding.to_string());
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["field"], "capabilities");
        let binding = json!({"name": "b", "plugin": "probe", "priority": {}, "capabilities": []});
        assert_eq!(
            post(&c, "/v1/bindings", &binding.to_string()).1["field"],
            "priority"
        );
        // A gate the plugin does not join, if there is one.
        let info = c.request("GET", "/v1/plugins/probe", None).unwrap().json();
        let joins = |g: &str| {
            info["info"]["gates"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == g)
        };
        if let Some(gate) = ["request", "response", "complete"]
            .into_iter()
            .find(|g| !joins(g))
        {
            let binding =
                json!({"name": "b", "plugin": "probe", "priority": {gate: 1}, "capabilities": []});
            assert_eq!(
                post(&c, "/v1/bindings", &binding.to_string()).1["field"],
                format!("priority.{gate}")
            );
        }
        assert_eq!(version(&c), 1);
    });
}

#[test]
fn a_peer_uid_not_on_the_allow_list_is_403() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        let s = Setup::new();
        // Only uid 4242 (nobody here) may use this control.
        let _control = s.control(Some("4242"));
        let c = s.client();
        let a = c.request("GET", "/v1/status", None).unwrap();
        assert_eq!(a.status, 403);
        let me = rustix::process::getuid().as_raw();
        assert!(
            a.json()["error"]
                .as_str()
                .unwrap()
                .contains(&format!("uid {me}")),
            "{}",
            a.text()
        );
        let (status, _) = post(&c, "/v1/scopes", r#"{"name": "acme"}"#);
        assert_eq!(status, 403);
        // Nothing changed: the state file was never written.
        assert!(!s.storage.join("state.json").exists());
        let metrics = c.request("GET", "/metrics", None).unwrap();
        assert_eq!(metrics.status, 403);
    });
}

#[test]
fn a_torn_last_record_is_cut_at_restart_and_earlier_ones_kept() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        let s = Setup::new();
        let mut control = s.control(None);
        let c = s.client();
        for name in ["a", "b", "c"] {
            assert_eq!(
                post(&c, "/v1/scopes", &json!({"name": name}).to_string()).0,
                201
            );
        }
        control.terminate();
        // Tear the last record of the last segment: cut its last 10 bytes.
        let dir = s.storage.join("evidence");
        let mut segs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        segs.sort();
        let last = segs.last().unwrap();
        let bytes = std::fs::read(last).unwrap();
        std::fs::write(last, &bytes[..bytes.len() - 10]).unwrap();

        let control = s.control(None);
        let said = control_support::tail(&control.errors).join("\n");
        assert!(said.contains("2 records recovered"), "{said}");
        assert!(
            said.contains("torn bytes cut") && !said.contains(" 0 torn bytes cut"),
            "{said}"
        );
        let a = c
            .request("GET", "/v1/evidence?kind=control_change", None)
            .unwrap();
        let lines: Vec<Value> = a
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{}", a.text());
        assert_eq!(lines[0]["attrs"]["resource"], "scope/a");
        assert_eq!(lines[1]["attrs"]["resource"], "scope/b");
        // The state itself is intact, and the log goes on.
        assert_eq!(version(&c), 3);
        assert_eq!(
            post(&c, "/v1/scopes", &json!({"name": "d"}).to_string()).0,
            201
        );
        let a = c
            .request("GET", "/v1/evidence?kind=control_change", None)
            .unwrap();
        assert_eq!(a.text().lines().count(), 3);
    });
}

#[test]
fn history_and_rollback() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        let s = Setup::new();
        let _control = s.control(None);
        let c = s.client();
        assert_eq!(
            post(&c, "/v1/scopes", r#"{"name": "a", "tenant": "acme"}"#).0,
            201
        );
        assert_eq!(post(&c, "/v1/scopes", r#"{"name": "b"}"#).0, 201);
        let (status, body) = post(&c, "/v1/rollback", r#"{"version": 1}"#);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["version"], 3);
        let scopes = c.request("GET", "/v1/scopes", None).unwrap().json();
        assert_eq!(scopes, json!([{"name": "a", "tenant": "acme"}]));
        let history = c.request("GET", "/v1/history", None).unwrap().json();
        let actions: Vec<&str> = history
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["scope.add", "scope.add", "state.rollback"]);
        let (status, body) = post(&c, "/v1/rollback", r#"{"version": 99}"#);
        assert_eq!(status, 404, "{body}");
        assert_eq!(version(&c), 3);
        let policy: Value =
            serde_json::from_slice(&std::fs::read(s.run.join("policy.json")).unwrap()).unwrap();
        assert_eq!(policy["version"], 3);
        let metrics = c.request("GET", "/metrics", None).unwrap().text();
        assert!(
            metrics.contains("odock_control_state_version 3"),
            "{metrics}"
        );
    });
}

#[test]
fn evidence_follow_streams_records_as_they_are_committed() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        let s = Setup::new();
        let _control = s.control(None);
        let c = s.client();
        assert_eq!(post(&c, "/v1/scopes", r#"{"name": "a"}"#).0, 201);
        let follower = s.client().timeout(Some(Duration::from_secs(30)));
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut buf = Vec::new();
            let status = follower
                .stream(
                    "GET",
                    "/v1/evidence?follow=1&kind=control_change",
                    None,
                    |chunk| {
                        buf.extend_from_slice(chunk);
                        while let Some(at) = buf.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = buf.drain(..=at).collect();
                            lines.push(serde_json::from_slice::<Value>(&line).unwrap());
                        }
                        lines.len() < 3
                    },
                )
                .unwrap();
            (status, lines)
        });
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(post(&c, "/v1/scopes", r#"{"name": "b"}"#).0, 201);
        assert_eq!(post(&c, "/v1/scopes", r#"{"name": "c"}"#).0, 201);
        let (status, lines) = reader.join().unwrap();
        assert_eq!(status, 200);
        let resources: Vec<&str> = lines
            .iter()
            .map(|l| l["attrs"]["resource"].as_str().unwrap())
            .collect();
        assert_eq!(resources, ["scope/a", "scope/b", "scope/c"]);
        // Time-range and limit filters.
        let a = c
            .request("GET", "/v1/evidence?since_ns=0&until_ns=1", None)
            .unwrap();
        assert_eq!(a.text(), "");
        let a = c.request("GET", "/v1/evidence?limit=2", None).unwrap();
        assert_eq!(a.text().lines().count(), 2);
    });
}
