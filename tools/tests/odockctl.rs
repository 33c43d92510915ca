//! `odockctl` against a real control process (this test binary re-executed
//! as the daemon): tables, `--json`, refusals naming the field, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use odock_control::client::Client;
use odock_control::config::Config;

/// Runs the daemon when this binary is re-executed as it.
#[test]
fn role_child() {
    let Ok(run) = std::env::var("ODOCKCTL_TEST_RUN") else {
        return;
    };
    let text = format!("run_dir = {run:?}\nstorage_dir = \"{run}/storage\"\n");
    let cfg = Config::parse(&text).unwrap().resolve().unwrap();
    match odock_control::daemon::run(cfg) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

struct Control {
    child: Child,
    run: PathBuf,
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

fn start() -> Control {
    let run = std::env::temp_dir().join(format!("odockctl-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "role_child", "--nocapture", "--test-threads=1"])
        .env("ODOCKCTL_TEST_RUN", &run)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = Control { child, run };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Client::new(&c.run.join("control.sock"))
        .request("GET", "/v1/status", None)
        .is_err()
    {
        assert!(Instant::now() < deadline, "control did not come up");
        std::thread::sleep(Duration::from_millis(10));
    }
    c
}

fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_odockctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn odockctl_drives_control() {
    if std::env::var("ODOCKCTL_TEST_RUN").is_ok() {
        return;
    }
    let c = start();
    let s = c.run.join("control.sock");

    let o = ctl(&s, &["status"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("state version  0"), "{}", out(&o));

    let o = ctl(&s, &["scopes", "add", "acme", "--tenant", "acme"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "scope.add scope/acme: state version 1");

    let o = ctl(&s, &["scopes", "list"]);
    let table = out(&o);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.lines().nth(1).unwrap().starts_with("acme  acme"),
        "{table}"
    );

    let o = ctl(&s, &["--json", "scopes", "list"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v[0]["tenant"], "acme");

    // Refusals: exit 1, the field named.
    let o = ctl(
        &s,
        &[
            "plugins",
            "add",
            "x",
            "/nonexistent/libx.so",
            "--sha256",
            "00",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("control refused (422): sha256:"),
        "{}",
        err(&o)
    );
    let o = ctl(
        &s,
        &["bindings", "add", "b", "--plugin", "nope", "--request", "1"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("(422): plugin:"), "{}", err(&o));
    let o = ctl(&s, &["scopes", "add", "acme"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("(409): name:"), "{}", err(&o));

    let o = ctl(&s, &["history"]);
    assert!(out(&o).contains("scope.add"), "{}", out(&o));

    let o = ctl(
        &s,
        &["--json", "evidence", "query", "--kind", "control_change"],
    );
    let lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let rec: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(rec["attrs"]["action"], "scope.add");

    // Show and replace one scope.
    let o = ctl(
        &s,
        &[
            "scopes",
            "replace",
            "acme",
            "--tenant",
            "acme",
            "--environment",
            "prod",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "scope.replace scope/acme: state version 2");
    let o = ctl(&s, &["scopes", "show", "acme"]);
    assert!(o.status.success(), "{}", err(&o));
    let shown = out(&o);
    assert!(shown.contains("name             acme"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("environment") && l.ends_with("prod")),
        "{shown}"
    );
    let o = ctl(&s, &["--json", "scopes", "show", "acme"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["environment"], "prod", "{v}");
    let o = ctl(&s, &["scopes", "show", "nobody"]);
    assert_eq!(o.status.code(), Some(1));

    // Evidence export: every record as JSON lines, the same as a query.
    let o = ctl(&s, &["evidence", "export", "--kind", "control_change"]);
    assert!(o.status.success(), "{}", err(&o));
    let actions: Vec<String> = out(&o)
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            r["attrs"]["action"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(actions, ["scope.add", "scope.replace"]);

    // Sinks: none configured here, and the table says so.
    let o = ctl(&s, &["sinks"]);
    assert!(o.status.success(), "{}", err(&o));
    let sinks = out(&o);
    assert!(sinks.starts_with("NAME"), "{sinks}");
    assert_eq!(sinks.lines().nth(1), Some("(none)"), "{sinks}");
    let o = ctl(&s, &["--json", "sinks"]);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["sinks"], serde_json::json!([]), "{v}");

    let o = ctl(&s, &["stats"]);
    assert!(
        out(&o).contains("odock_control_state_version"),
        "{}",
        out(&o)
    );

    // Unreachable: exit 2 and a hint.
    let o = ctl(Path::new("/nonexistent/control.sock"), &["status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("cannot connect"), "{}", err(&o));
}
