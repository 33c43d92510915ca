//! `odock up`: control, the gateway with its workers, and the mock
//! upstream, with the reference plugins registered and bound by an example
//! policy.
//!
//! Control runs as a separate process (this executable, re-run as
//! `odock control`), as it would in production: it owns the registry and the
//! evidence log, and the gateway attaches to it through the run directory.
//! The gateway and the mock upstream run in this process.

use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use odock_control::client::Client;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::gateway::{Gateway, GatewayConfig, VirtualKey};
use crate::mock::{Mock, MockConfig};

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Where control keeps its state and the evidence log, and where the
    /// audit file and the built plugins go. Kept after the stack stops.
    pub data_dir: PathBuf,
    /// The gateway's address.
    pub listen: SocketAddr,
    /// The mock upstream's address.
    pub mock_listen: SocketAddr,
    /// Gateway threads (0: one per core).
    pub workers: usize,
    /// The executable that runs control when given `control --config FILE`
    /// (the `odock` binary).
    pub control_exe: PathBuf,
    /// Where the reference plugins' shared libraries are, if already built.
    pub plugins_dir: Option<PathBuf>,
    /// Print progress lines to stderr.
    pub verbose: bool,
}

/// A failure while bringing the stack up, or taking it down.
#[derive(Debug)]
pub struct UpError(pub String);

impl fmt::Display for UpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UpError {}

fn fail(what: impl fmt::Display) -> UpError {
    UpError(what.to_string())
}

/// The virtual keys of the example policy: (key, id, tenant, environment).
pub const KEYS: [(&str, &str, &str, &str); 2] = [
    ("sk-odock-acme-demo", "vk-acme", "acme", "prod"),
    ("sk-odock-globex-demo", "vk-globex", "globex", "dev"),
];

/// The reference plugins, by registered name.
pub const PLUGINS: [&str; 6] = [
    "enrich",
    "model-allowlist",
    "dlp-redact",
    "approval",
    "audit-export",
    "notify",
];

/// A running stack.
pub struct Stack {
    control: Option<Child>,
    mock: Option<Mock>,
    gateway: Option<Gateway>,
    socket: PathBuf,
    run_dir: PathBuf,
    storage_dir: PathBuf,
    data_dir: PathBuf,
    policy_version: u64,
    gateway_config: GatewayConfig,
}

/// What is left once the stack stopped.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// Evidence records in the durable log.
    pub evidence_records: u64,
    /// The log's directory.
    pub evidence_dir: PathBuf,
    /// Whether control drained every ring before it stopped.
    pub drained: bool,
}

impl Stack {
    /// Starts control, builds (if needed) and registers the reference
    /// plugins, binds them, starts the mock upstream and the gateway, and
    /// waits until the gateway runs the policy.
    ///
    /// # Errors
    /// [`UpError`] saying which step failed and why.
    pub fn start(opts: &UpOptions) -> Result<Stack, UpError> {
        let data_dir = absolute(&opts.data_dir)?;
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| fail(format!("creating {}: {e}", data_dir.display())))?;
        let run_dir = run_dir_for(&data_dir)?;
        let storage_dir = data_dir.join("control");
        let socket = run_dir.join("control.sock");
        let say = |m: &str| {
            if opts.verbose {
                eprintln!("odock: {m}");
            }
        };

        say("building the reference plugins (once; cached afterwards)");
        let plugins = reference_plugins(&data_dir, opts.plugins_dir.as_deref())?;

        let config_path = run_dir.join("control.toml");
        let config = format!(
            "run_dir = {:?}\nsocket = {:?}\nstorage_dir = {:?}\n[log]\nfsync_interval_ms = 10\n",
            run_dir.display().to_string(),
            socket.display().to_string(),
            storage_dir.display().to_string(),
        );
        std::fs::write(&config_path, config)
            .map_err(|e| fail(format!("writing {}: {e}", config_path.display())))?;
        say(&format!("starting control (socket {})", socket.display()));
        let log_path = data_dir.join("control.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| fail(format!("creating {}: {e}", log_path.display())))?;
        let control = Command::new(&opts.control_exe)
            .arg("control")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(fail)?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                fail(format!(
                    "starting control ({} control): {e}",
                    opts.control_exe.display()
                ))
            })?;
        let mut stack = Stack {
            control: Some(control),
            mock: None,
            gateway: None,
            socket,
            run_dir,
            storage_dir,
            data_dir,
            policy_version: 0,
            gateway_config: GatewayConfig::default(),
        };
        stack.wait_for_control(Duration::from_secs(20), &log_path)?;

        say("starting the mock upstream");
        let mock = Mock::start(opts.mock_listen, MockConfig::default()).map_err(|e| {
            fail(format!(
                "starting the mock upstream on {}: {e}",
                opts.mock_listen
            ))
        })?;
        let mock_addr = mock.addr();
        stack.mock = Some(mock);

        say("registering and binding the reference plugins");
        stack.policy_version = stack.apply_example_policy(&plugins, mock_addr)?;

        say("starting the gateway");
        let gw_config = GatewayConfig {
            listen: opts.listen,
            upstream: format!("http://{mock_addr}"),
            run_dir: Some(stack.run_dir.clone()),
            workers: opts.workers,
            integrations: [(
                "approvals".to_owned(),
                format!("http://{mock_addr}/approvals"),
            )]
            .into_iter()
            .collect(),
            keys: KEYS
                .iter()
                .map(|(key, id, tenant, env)| VirtualKey {
                    key: (*key).to_owned(),
                    id: (*id).to_owned(),
                    tenant: (*tenant).to_owned(),
                    environment: Some((*env).to_owned()),
                })
                .collect(),
            ..GatewayConfig::default()
        };
        stack.gateway_config = gw_config.clone();
        let gateway = Gateway::start(gw_config).map_err(|e| fail(format!("the gateway: {e}")))?;
        if !gateway.wait_for_policy(stack.policy_version, Duration::from_secs(10)) {
            let status = gateway.control_link().status();
            return Err(fail(format!(
                "the gateway did not install policy {} within 10 s (it runs {}; last error: {})",
                stack.policy_version,
                status.policy_version,
                status.last_error.as_deref().unwrap_or("none"),
            )));
        }
        stack.gateway = Some(gateway);
        Ok(stack)
    }

    /// The gateway.
    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().expect("running")
    }

    /// The gateway's configuration.
    pub fn gateway_config(&self) -> &GatewayConfig {
        &self.gateway_config
    }

    /// The mock upstream.
    pub fn mock(&self) -> &Mock {
        self.mock.as_ref().expect("running")
    }

    /// Control's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The shared run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The data directory (state, evidence log, audit file).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The policy version the example policy produced.
    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    /// The audit-export plugin's JSON-lines file.
    pub fn audit_file(&self) -> PathBuf {
        self.data_dir.join("audit.jsonl")
    }

    /// A client of control's socket.
    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    fn wait_for_control(&mut self, timeout: Duration, log: &Path) -> Result<(), UpError> {
        let deadline = Instant::now() + timeout;
        let client = Client::new(&self.socket).timeout(Some(Duration::from_secs(2)));
        loop {
            if let Ok(a) = client.request("GET", "/v1/status", None)
                && a.status == 200
            {
                return Ok(());
            }
            if let Some(c) = self.control.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                return Err(fail(format!(
                    "control exited ({status}) before it answered: {}",
                    text.trim()
                )));
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "control did not answer on {} within {timeout:?}",
                    self.socket.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Registers the plugins and binds them; returns the state version.
    fn apply_example_policy(
        &self,
        plugins: &[(String, PathBuf)],
        mock: SocketAddr,
    ) -> Result<u64, UpError> {
        let client = self.client();
        let call = |method: &str, path: &str, body: Option<Value>| -> Result<Value, UpError> {
            let bytes = body.map(|b| b.to_string().into_bytes());
            let a = client
                .request(method, path, bytes.as_deref())
                .map_err(fail)?;
            if a.status >= 300 && a.status != 409 {
                return Err(fail(format!(
                    "control refused {method} {path} ({}): {}",
                    a.status,
                    a.text()
                )));
            }
            Ok(a.json())
        };
        for (name, path) in plugins {
            let sha = sha256_file(path)?;
            let existing = client
                .request("GET", &format!("/v1/plugins/{name}"), None)
                .map_err(fail)?;
            if existing.status == 200 {
                let e = existing.json();
                if e["sha256"] == sha && e["path"] == path.display().to_string() {
                    continue;
                }
                // A rebuilt library: rebind from scratch.
                let _ = call("DELETE", &format!("/v1/bindings/{name}"), None);
                call("DELETE", &format!("/v1/plugins/{name}"), None)?;
            }
            call(
                "POST",
                "/v1/plugins",
                Some(json!({"name": name, "path": path, "sha256": sha})),
            )?;
        }
        let audit = self.audit_file();
        let hook = format!("http://{mock}/hooks/odock");
        let configs: [(&str, Value, Value); 6] = [
            (
                "enrich",
                json!({"request": 10}),
                json!({"tenants": {
                    "acme": {"metadata": {"tier": "gold"}, "billing_tag": "acme-prod"},
                    "globex": {"metadata": {"tier": "trial"}, "billing_tag": "globex-dev"}},
                    "default": {"billing_tag": "unassigned"}}),
            ),
            (
                "model-allowlist",
                json!({"request": 20}),
                json!({"tenants": {
                    "acme": {"models": ["gpt-4o", "gpt-4o-mini", "o1-preview"],
                             "tools": ["search", "fetch_url", "delete_repo"]},
                    "globex": {"models": ["gpt-4o-mini"], "tools": ["search"]}},
                    "default": {"models": [], "tools": []}}),
            ),
            (
                "dlp-redact",
                json!({"request": 30, "response": 10}),
                json!({"patterns": ["email", "card", "api_key"]}),
            ),
            (
                "approval",
                json!({"request": 40}),
                json!({"models": ["o1-*"], "tools": ["delete_repo"], "timeout_ms": 2000,
                       "on_timeout": "deny", "on_error": "deny"}),
            ),
            (
                "audit-export",
                json!({"complete": 10}),
                json!({"file": audit}),
            ),
            (
                "notify",
                json!({"complete": 20}),
                json!({"webhook": hook, "on": "errors"}),
            ),
        ];
        let mut version = 0;
        for (name, priority, config) in configs {
            // Enrichment and notifications are best effort: an error or an
            // overrun (a preempted thread on a loaded machine) continues,
            // with evidence. The checks fail closed.
            let failure_mode = match name {
                "enrich" | "notify" | "audit-export" => "enforce_ignore_error",
                _ => "enforce",
            };
            let info = call("GET", &format!("/v1/plugins/{name}"), None)?;
            let binding = json!({
                "name": name,
                "plugin": name,
                "enabled": true,
                "priority": priority,
                // What the plugin asks for, reviewed: the example grants it.
                "capabilities": info["info"]["requested"],
                "integrations": info["info"]["integrations"],
                "config": config,
                "failure_mode": failure_mode,
                "time_budget_ms": 50,
            });
            let exists = client
                .request("GET", &format!("/v1/bindings/{name}"), None)
                .map_err(fail)?
                .status
                == 200;
            let a = if exists {
                call("PUT", &format!("/v1/bindings/{name}"), Some(binding))?
            } else {
                call("POST", "/v1/bindings", Some(binding))?
            };
            version = a["version"].as_u64().unwrap_or(version);
        }
        let status = call("GET", "/v1/status", None)?;
        Ok(status["version"].as_u64().unwrap_or(version))
    }

    /// Stops the gateway (its open exchanges finish, the complete pool runs
    /// what it was given), waits (at most 10 s) until control has attached
    /// and drained every evidence ring the gateway wrote, then stops control
    /// with SIGTERM and the mock upstream.
    ///
    /// # Errors
    /// [`UpError`] when control cannot be reached or does not stop.
    pub fn shutdown(mut self) -> Result<Stopped, UpError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<Stopped, UpError> {
        // Stop the traffic, keep the gateway's link to control (its status
        // file names its evidence rings) until control has drained them.
        if let Some(g) = self.gateway.as_mut() {
            g.stop_traffic();
        }
        let pid = std::process::id();
        let client = Client::new(&self.socket).timeout(Some(Duration::from_secs(2)));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut drained = self.gateway.is_none();
        while !drained && Instant::now() < deadline && self.control.is_some() {
            match client.request("GET", "/v1/dataplanes", None) {
                Ok(a) if a.status == 200 => drained = all_drained(&a.json(), pid),
                _ => break,
            }
            if !drained {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        drop(self.gateway.take());
        let records = client
            .request("GET", "/v1/status", None)
            .ok()
            .map(|a| a.json())
            .and_then(|s| s["log"]["next_index"].as_u64())
            .unwrap_or(0);
        if let Some(mut c) = self.control.take() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&c),
                rustix::process::Signal::TERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        return Err(fail("control did not stop within 10 s of SIGTERM"));
                    }
                }
            }
        }
        if let Some(m) = self.mock.take() {
            m.shutdown();
        }
        Ok(Stopped {
            evidence_records: records,
            evidence_dir: self.storage_dir.join("evidence"),
            drained,
        })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.control.is_some() || self.gateway.is_some() {
            let _ = self.stop_inner();
        }
    }
}

/// Blocks until SIGINT (Ctrl-C) or SIGTERM arrives.
///
/// # Panics
/// When the signal handlers cannot be installed.
pub fn wait_for_termination() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
}

/// Whether control lists dataplane `pid` with every ring its status file
/// names attached (`workers` of them) and no bytes waiting in any lane: the
/// drainer releases ring space only once the records are durable.
fn all_drained(dataplanes: &Value, pid: u32) -> bool {
    let Some(d) = dataplanes
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["pid"].as_u64() == Some(u64::from(pid)))
    else {
        return false;
    };
    let rings = d["rings"].as_array().cloned().unwrap_or_default();
    let attached = rings.len() as u64 == d["workers"].as_u64().unwrap_or(u64::MAX);
    attached
        && rings
            .iter()
            .flat_map(|r| r["lanes"].as_array().cloned().unwrap_or_default())
            .all(|l| l["backlog_bytes"].as_u64() == Some(0))
}

fn absolute(p: &Path) -> Result<PathBuf, UpError> {
    std::path::absolute(p).map_err(|e| fail(format!("{}: {e}", p.display())))
}

/// A private run directory: `<data>/run`, or, when that path is too long
/// for a Unix socket (108 bytes), one under /tmp named after it.
fn run_dir_for(data_dir: &Path) -> Result<PathBuf, UpError> {
    let mut run = data_dir.join("run");
    if run.join("control.sock").as_os_str().len() > 100 {
        let mut h = Sha256::new();
        h.update(data_dir.as_os_str().as_encoded_bytes());
        let tag: String = h.finalize()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        run = std::env::temp_dir().join(format!("odock-{tag}"));
    }
    std::fs::create_dir_all(&run).map_err(|e| fail(format!("{}: {e}", run.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fail(format!("{}: {e}", run.display())))?;
    Ok(run)
}

fn sha256_file(path: &Path) -> Result<String, UpError> {
    let bytes = std::fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The source tree this binary was built from.
fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tools/ sits in the workspace")
        .to_path_buf()
}

fn library_name(stem: &str) -> String {
    format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The Rust reference plugins: (registered name, cargo package, library stem).
const RUST_PLUGINS: [(&str, &str, &str); 4] = [
    (
        "dlp-redact",
        "odock-plugin-dlp-redact",
        "odock_plugin_dlp_redact",
    ),
    ("approval", "odock-plugin-approval", "odock_plugin_approval"),
    (
        "audit-export",
        "odock-plugin-audit-export",
        "odock_plugin_audit_export",
    ),
    ("notify", "odock-plugin-notify", "odock_plugin_notify"),
];

/// The C reference plugins: (registered name, source, library stem).
const C_PLUGINS: [(&str, &str, &str); 2] = [
    ("enrich", "plugins/enrich/enrich.c", "enrich"),
    (
        "model-allowlist",
        "plugins/model-allowlist/model_allowlist.c",
        "model_allowlist",
    ),
];

/// Finds or builds the six reference plugins; returns (name, library).
///
/// Rust plugins: from `dir` if given, else beside this executable (a
/// `cargo build --workspace` puts them there), else built with cargo into
/// `target/odock-plugins` of the source tree. C plugins: compiled with the
/// system C compiler (`$CC`, else `cc`) into `<data>/plugins`, when their
/// source is newer than the library.
///
/// # Errors
/// [`UpError`] naming the plugin and what failed.
pub fn reference_plugins(
    data_dir: &Path,
    dir: Option<&Path>,
) -> Result<Vec<(String, PathBuf)>, UpError> {
    let root = source_root();
    let mut out = Vec::new();
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let find = |stem: &str| -> Option<PathBuf> {
        let name = library_name(stem);
        dir.into_iter()
            .chain(exe_dir.as_deref())
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
    };
    let mut missing = Vec::new();
    for (name, package, stem) in RUST_PLUGINS {
        match find(stem) {
            Some(p) => out.push((name.to_owned(), p)),
            None => missing.push((name, package, stem)),
        }
    }
    if !missing.is_empty() {
        if let Some(d) = dir {
            return Err(fail(format!(
                "{} is not in {}",
                library_name(missing[0].2),
                d.display()
            )));
        }
        let target = root.join("target").join("odock-plugins");
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(&root)
            .args(["build", "--release", "--target-dir"])
            .arg(&target);
        for (_, package, _) in &missing {
            cmd.args(["-p", package]);
        }
        let status = cmd.status().map_err(|e| {
            fail(format!(
                "the Rust reference plugins are not built and cargo could not run ({e}); \
                 build them with `cargo build --release --workspace`"
            ))
        })?;
        if !status.success() {
            return Err(fail(format!(
                "building the Rust reference plugins failed ({status})"
            )));
        }
        for (name, _, stem) in missing {
            let p = target.join("release").join(library_name(stem));
            if !p.is_file() {
                return Err(fail(format!("cargo built no {}", p.display())));
            }
            out.push((name.to_owned(), p));
        }
    }
    let c_dir = data_dir.join("plugins");
    std::fs::create_dir_all(&c_dir).map_err(|e| fail(format!("{}: {e}", c_dir.display())))?;
    for (name, source, stem) in C_PLUGINS {
        let src = root.join(source);
        let lib = c_dir.join(library_name(stem));
        let fresh = match (std::fs::metadata(&src), std::fs::metadata(&lib)) {
            (Ok(s), Ok(l)) => match (s.modified(), l.modified()) {
                (Ok(s), Ok(l)) => l >= s,
                _ => false,
            },
            (Err(e), _) => return Err(fail(format!("{}: {e}", src.display()))),
            _ => false,
        };
        if !fresh {
            let partial = c_dir.join(format!("{stem}.partial.{}", std::process::id()));
            let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
            let output = Command::new(&cc)
                .args([
                    "-std=c99",
                    "-O2",
                    "-fPIC",
                    "-shared",
                    "-fvisibility=hidden",
                    "-I",
                ])
                .arg(root.join("plugin-abi/include"))
                .arg(&src)
                .arg("-o")
                .arg(&partial)
                .output()
                .map_err(|e| fail(format!("the C compiler ({cc:?}) could not run: {e}")))?;
            if !output.status.success() {
                let _ = std::io::stderr().write_all(&output.stderr);
                return Err(fail(format!("compiling {} failed", src.display())));
            }
            std::fs::rename(&partial, &lib).map_err(|e| fail(format!("{}: {e}", lib.display())))?;
        }
        out.push((name.to_owned(), lib));
    }
    // Registration order: the order the example policy lists them.
    out.sort_by_key(|(n, _)| PLUGINS.iter().position(|p| p == n));
    Ok(out)
}
