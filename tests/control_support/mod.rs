//! Running a real control process and real dataplanes for the `control_*`
//! tests. Each role is this very test binary re-executed with
//! `ODOCK_TEST_ROLE` set: the test named `role_child` runs the role instead
//! of returning, so every process runs the product code (the daemon's
//! `run`, a `Runtime` with its `ControlLink`) and not a stand-in.

#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use odock_control::client::Client;
use odock_control::config::Config;
use odock_dataplane::evidence::{Evidence, EvidenceWriter, Kind};
use odock_dataplane::ring::Geometry;
use odock_dataplane::runtime::control_link::ControlLink;
use odock_dataplane::runtime::{RequestFrame, RingSink, Runtime, Verdict};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The last few lines, for failure messages.
pub fn tail(lines: &Mutex<Vec<String>>) -> Vec<String> {
    let l = lock(lines);
    l[l.len().saturating_sub(5)..].to_vec()
}

/// Wall-clock now, UNIX epoch ns.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Runs the role `ODOCK_TEST_ROLE` names, if any (never returns then).
pub fn maybe_run_role() {
    let Ok(role) = std::env::var("ODOCK_TEST_ROLE") else {
        return;
    };
    let run = PathBuf::from(std::env::var("ODOCK_TEST_RUN").expect("run dir"));
    match role.as_str() {
        "control" => {
            let storage = PathBuf::from(std::env::var("ODOCK_TEST_STORAGE").expect("storage"));
            let admins = std::env::var("ODOCK_TEST_ADMIN_UIDS").unwrap_or_default();
            let mut text = format!(
                "run_dir = {:?}\nstorage_dir = {:?}\n[log]\nfsync_interval_ms = 5\nsegment_bytes = 65536\n",
                run.display().to_string(),
                storage.display().to_string()
            );
            if !admins.is_empty() {
                text.push_str(&format!("[access]\nadmin_uids = [{admins}]\n"));
            }
            if let Ok(extra) = std::env::var("ODOCK_TEST_EXTRA_CONFIG") {
                text.push_str(&extra);
            }
            // As the odock-control binary does: a config error is a
            // start-up error, exit status 2.
            let cfg = match Config::parse(&text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.resolve().map_err(|e| e.to_string()))
            {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("odock-control: {e}");
                    std::process::exit(2)
                }
            };
            match odock_control::daemon::run(cfg) {
                Ok(()) => std::process::exit(0),
                Err(e) => {
                    eprintln!("control role: {e}");
                    std::process::exit(1)
                }
            }
        }
        "dataplane" => {
            let count: Option<u64> = std::env::var("ODOCK_TEST_COUNT")
                .ok()
                .and_then(|c| c.parse().ok());
            dataplane(&run, count);
            std::process::exit(0)
        }
        other => panic!("unknown role {other}"),
    }
}

/// A dataplane: a runtime whose policy comes through a `ControlLink`, a
/// frame through its request gate every millisecond (printing each change
/// of verdict with its time), and numbered evidence from a second writer,
/// about 10 records per millisecond, printing the last committed sequence
/// number now and then. With `count`, it stops after that many numbered
/// records and prints `done next_seq=N`.
fn dataplane(run: &Path, count: Option<u64>) {
    let runtime = Runtime::new();
    let link = ControlLink::start(run, runtime.clone()).expect("control link");
    let ring = link
        .evidence_ring(0, Geometry::new(2, 8 << 20).unwrap())
        .expect("evidence ring");
    let sink = RingSink::new(EvidenceWriter::new(ring.producer().unwrap(), 0));
    let mut runner = runtime.runner(0, Box::new(sink));
    let mut numbered = EvidenceWriter::new(ring.producer().unwrap(), 1);
    println!("ready pid={}", std::process::id());
    let mut last_blocked = None;
    let mut last_ok = None;
    for i in 0u64.. {
        for _ in 0..10 {
            let e = Evidence {
                request_id: "numbered",
                plugin: "test-writer",
                ..Evidence::new(Kind::Plugin)
            };
            if let Ok(seq) = numbered.write(&e) {
                last_ok = Some(seq);
            }
        }
        let frame = RequestFrame {
            request_id: i,
            tenant: Some("acme"),
            ..RequestFrame::default()
        };
        let outcome = runner.request(&frame);
        let blocked = matches!(outcome.verdict, Verdict::Block { .. });
        if last_blocked != Some(blocked) {
            println!(
                "verdict {} at_ns={} policy={}",
                if blocked { "block" } else { "continue" },
                now_ns(),
                runner.policy_version()
            );
            last_blocked = Some(blocked);
        }
        if i % 200 == 0
            && let Some(seq) = last_ok
        {
            println!("committed seq={seq}");
        }
        if let Some(n) = count
            && numbered.next_sequence() >= n
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    while numbered.flush_gap().is_err() {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("done next_seq={}", numbered.next_sequence());
    drop(numbered);
    drop(runner);
    drop(link);
}

/// A child process and the lines it printed.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Its stdout lines so far.
    pub lines: Arc<Mutex<Vec<String>>>,
    /// Its stderr lines so far.
    pub errors: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Spawns this test binary in `role` with `env`.
    pub fn spawn(role: &str, env: &[(&str, String)]) -> Proc {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", "role_child", "--nocapture", "--test-threads=1"])
            .env("ODOCK_TEST_ROLE", role)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let l = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lock(&l).push(line);
            }
        });
        let e = Arc::clone(&errors);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lock(&e).push(line);
            }
        });
        Proc {
            child,
            lines,
            errors,
        }
    }

    /// Waits until a printed line starts with `prefix`; returns it.
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.last_line(prefix) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no line {prefix:?} within {timeout:?}; stdout ends {:?} stderr ends {:?}",
                tail(&self.lines),
                tail(&self.errors)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The last printed line starting with `prefix`.
    /// (libtest may print its own words before the first line, so the
    /// prefix is looked for anywhere in the line, and the line is returned
    /// from it.)
    pub fn last_line(&self, prefix: &str) -> Option<String> {
        lock(&self.lines)
            .iter()
            .rev()
            .find_map(|l| l.find(prefix).map(|at| l[at..].to_owned()))
    }

    /// Every printed line holding `prefix`, from it.
    pub fn lines_with(&self, prefix: &str) -> Vec<String> {
        lock(&self.lines)
            .iter()
            .filter_map(|l| l.find(prefix).map(|at| l[at..].to_owned()))
            .collect()
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for the exit.
    pub fn terminate(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A run directory and a storage directory, and control on them.
pub struct Setup {
    /// Keeps the directories.
    pub dir: tempfile::TempDir,
    /// Run directory.
    pub run: PathBuf,
    /// Storage directory.
    pub storage: PathBuf,
}

impl Setup {
    /// Fresh directories.
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let storage = dir.path().join("storage");
        Setup { dir, run, storage }
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.run.join("control.sock")
    }

    /// A client of the socket.
    pub fn client(&self) -> Client {
        Client::new(&self.socket())
    }

    /// Starts control (with `admin_uids`, if given) and waits for its socket.
    pub fn control(&self, admin_uids: Option<&str>) -> Proc {
        self.control_with(admin_uids, "")
    }

    /// Starts control with `extra` TOML appended to its config (after
    /// `[log]`/`[access]`: `[[sinks]]` tables) and waits for its socket.
    pub fn control_with(&self, admin_uids: Option<&str>, extra: &str) -> Proc {
        let p = Proc::spawn("control", &self.control_env(admin_uids, extra));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(a) = self.client().request("GET", "/v1/status", None)
                && (a.status == 200 || a.status == 403)
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "control did not come up: {:?}",
                tail(&p.errors)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The environment of a control role.
    pub fn control_env(
        &self,
        admin_uids: Option<&str>,
        extra: &str,
    ) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("ODOCK_TEST_RUN", self.run.display().to_string()),
            ("ODOCK_TEST_STORAGE", self.storage.display().to_string()),
            ("ODOCK_TEST_EXTRA_CONFIG", extra.to_owned()),
        ];
        if let Some(a) = admin_uids {
            env.push(("ODOCK_TEST_ADMIN_UIDS", a.to_owned()));
        }
        env
    }

    /// Starts a dataplane (stopping after `count` numbered records, if given).
    pub fn dataplane(&self, count: Option<u64>) -> Proc {
        let mut env = vec![("ODOCK_TEST_RUN", self.run.display().to_string())];
        if let Some(c) = count {
            env.push(("ODOCK_TEST_COUNT", c.to_string()));
        }
        let p = Proc::spawn("dataplane", &env);
        p.wait_line("ready", Duration::from_secs(20));
        p
    }
}
