//! `odockctl`: the operator CLI of the Odock control process, over its
//! local socket. Human tables by default, `--json` for scripts. Exit
//! status: 0 done, 1 control refused the request (the error names the
//! field), 2 control could not be reached or the arguments are wrong.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use odock_control::client::{Answer, Client};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "odockctl",
    about = "Drive the Odock control process through its local socket"
)]
struct Cli {
    /// The control socket (default: $ODOCK_SOCKET, else control.sock in the
    /// default run directory).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print control's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Control's version, log and caller role.
    Status,
    /// The plugin registry.
    #[command(subcommand)]
    Plugins(PluginCmd),
    /// Scopes: which frames a binding applies to.
    #[command(subcommand)]
    Scopes(ScopeCmd),
    /// Bindings: a plugin on a scope, with gates, grants and config.
    #[command(subcommand)]
    Bindings(BindingCmd),
    /// Enable a binding.
    Enable {
        /// The binding.
        name: String,
    },
    /// Disable a binding.
    Disable {
        /// The binding.
        name: String,
    },
    /// Every state version: who changed what, when.
    History,
    /// Make an earlier state version current again (as a new version).
    Rollback {
        /// The version to go back to.
        version: u64,
    },
    /// The attached dataplanes, their rings and health.
    Dataplanes,
    /// The evidence sinks: cursor, lag, delivered, failed.
    Sinks,
    /// Query the durable evidence log.
    #[command(subcommand)]
    Evidence(EvidenceCmd),
    /// Control's metrics (Prometheus text).
    Stats,
}

#[derive(Subcommand)]
enum PluginCmd {
    /// List registered plugins.
    List,
    /// Register a plugin binary, pinned by its SHA-256.
    Add {
        /// Its name (the one it declares).
        name: String,
        /// The shared library (made absolute).
        path: PathBuf,
        /// The SHA-256 you expect (`sha256sum` of the file you vetted).
        #[arg(long)]
        sha256: String,
    },
    /// Show what a plugin asks for: ABI, gates, capabilities, schema.
    Inspect {
        /// The plugin.
        name: String,
    },
    /// Remove a plugin no binding uses.
    Remove {
        /// The plugin.
        name: String,
    },
}

#[derive(Subcommand)]
enum ScopeCmd {
    /// List scopes.
    List,
    /// Add a scope; a dimension left out matches any value.
    Add {
        /// Its name.
        name: String,
        #[command(flatten)]
        dims: Dims,
    },
    /// Show one scope.
    Show {
        /// The scope.
        name: String,
    },
    /// Replace a scope's dimensions (those left out then match any value).
    Replace {
        /// Its name.
        name: String,
        #[command(flatten)]
        dims: Dims,
    },
    /// Remove a scope no binding uses.
    Remove {
        /// The scope.
        name: String,
    },
}

#[derive(Args)]
struct Dims {
    /// Tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Virtual key id.
    #[arg(long)]
    virtual_key: Option<String>,
    /// Environment.
    #[arg(long)]
    environment: Option<String>,
    /// Model.
    #[arg(long)]
    model: Option<String>,
    /// MCP server.
    #[arg(long)]
    mcp_server: Option<String>,
    /// MCP tool.
    #[arg(long)]
    mcp_tool: Option<String>,
}

#[derive(Subcommand)]
enum BindingCmd {
    /// List bindings.
    List,
    /// Show one binding.
    Show {
        /// The binding.
        name: String,
    },
    /// Add a binding (disabled unless --enable).
    Add(BindingArgs),
    /// Replace a binding whole (disabled unless --enable).
    Replace(BindingArgs),
    /// Remove a binding.
    Remove {
        /// The binding.
        name: String,
    },
}

#[derive(Args)]
struct BindingArgs {
    /// Its name.
    name: String,
    /// The plugin.
    #[arg(long)]
    plugin: String,
    /// The scope (default: every frame).
    #[arg(long)]
    scope: Option<String>,
    /// Priority at the request gate (joins it).
    #[arg(long)]
    request: Option<i32>,
    /// Priority at the response gate (joins it).
    #[arg(long)]
    response: Option<i32>,
    /// Priority at the complete gate (joins it).
    #[arg(long)]
    complete: Option<i32>,
    /// Granted capabilities, comma-separated (`block,emit_evidence`).
    #[arg(long, value_delimiter = ',')]
    grant: Vec<String>,
    /// An integration it may call (repeat).
    #[arg(long)]
    integration: Vec<String>,
    /// Config as JSON (checked against the plugin's schema).
    #[arg(long, conflicts_with = "config_text")]
    config: Option<String>,
    /// Config as raw text (plugins without a schema).
    #[arg(long)]
    config_text: Option<String>,
    /// enforce, enforce_ignore_error, permissive or disabled.
    #[arg(long, default_value = "enforce")]
    failure_mode: String,
    /// Time budget per call, ms.
    #[arg(long, default_value_t = 100)]
    budget_ms: u64,
    /// Enable it at once.
    #[arg(long)]
    enable: bool,
}

#[derive(Subcommand)]
enum EvidenceCmd {
    /// Records matching every filter given, oldest first, as JSON lines.
    Query(EvidenceFilter),
    /// The newest records, then (with -f) new ones as they are committed.
    Tail {
        /// How many to show first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        /// Keep following.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        filter: EvidenceFilter,
    },
    /// Every record matching the filters, as JSON lines on stdout
    /// (streamed; for SIEM import or archives).
    Export(EvidenceFilter),
}

#[derive(Args)]
struct EvidenceFilter {
    /// At or after this time (UNIX epoch ns).
    #[arg(long)]
    since_ns: Option<u64>,
    /// Before this time.
    #[arg(long)]
    until_ns: Option<u64>,
    /// Request id.
    #[arg(long)]
    request_id: Option<String>,
    /// Tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Plugin.
    #[arg(long)]
    plugin: Option<String>,
    /// Gate: request, response, complete.
    #[arg(long)]
    gate: Option<String>,
    /// Verdict: continue, block, error, ...
    #[arg(long)]
    verdict: Option<String>,
    /// Kind: decision, gap, control_change, ...
    #[arg(long)]
    kind: Option<String>,
    /// At most this many (query: default 1000).
    #[arg(long)]
    limit: Option<u64>,
}

impl EvidenceFilter {
    fn query(&self) -> Vec<String> {
        let mut q = Vec::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                q.push(format!("{k}={}", encode(&v)));
            }
        };
        put("since_ns", self.since_ns.map(|v| v.to_string()));
        put("until_ns", self.until_ns.map(|v| v.to_string()));
        put("request_id", self.request_id.clone());
        put("tenant", self.tenant.clone());
        put("plugin", self.plugin.clone());
        put("gate", self.gate.clone());
        put("verdict", self.verdict.clone());
        put("kind", self.kind.clone());
        put("limit", self.limit.map(|v| v.to_string()));
        q
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `println!` that ends the program quietly when stdout is closed (a pipe
/// into `head`), instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// `print!`, likewise.
macro_rules! say_raw {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if write!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// Failed: the exit code and what to say.
struct Fail(u8, String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = cli
        .socket
        .clone()
        .or_else(|| std::env::var_os("ODOCK_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| odock_control::config::default_run_dir().join("control.sock"));
    let client = Client::new(&socket);
    match run(&cli, &client) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("odockctl: {msg}");
            ExitCode::from(code)
        }
    }
}

fn call(client: &Client, method: &str, path: &str, body: Option<Value>) -> Result<Answer, Fail> {
    let body = body.map(|b| b.to_string());
    let a = client
        .request(method, path, body.as_deref().map(str::as_bytes))
        .map_err(|e| Fail(2, e.to_string()))?;
    if a.status >= 300 {
        let v = a.json();
        let msg = match (v["error"].as_str(), v["field"].as_str()) {
            (Some(e), Some(f)) => format!("control refused ({}): {f}: {e}", a.status),
            (Some(e), None) => format!("control refused ({}): {e}", a.status),
            _ => format!("control answered {}: {}", a.status, a.text().trim()),
        };
        return Err(Fail(1, msg));
    }
    Ok(a)
}

fn run(cli: &Cli, c: &Client) -> Result<(), Fail> {
    let show = |a: Answer, table: &dyn Fn(&Value)| {
        if cli.json {
            say_raw!("{}", a.text());
        } else {
            table(&a.json());
        }
    };
    let changed = |v: &Value| {
        say!(
            "{} {}: state version {}",
            v["action"].as_str().unwrap_or("changed"),
            v["resource"].as_str().unwrap_or(""),
            v["version"]
        );
    };
    match &cli.command {
        Cmd::Status => show(call(c, "GET", "/v1/status", None)?, &|v| {
            say!("state version  {}", v["version"]);
            say!(
                "you            uid {} gid {} ({})",
                v["you"]["uid"],
                v["you"]["gid"],
                text(&v["you"]["role"])
            );
            say!("run dir        {}", text(&v["run_dir"]));
            let l = &v["log"];
            say!(
                "evidence log   {} records kept ({}..{}), {} segments, {} bytes, {} write path",
                l["next_index"].as_u64().unwrap_or(0) - l["first_index"].as_u64().unwrap_or(0),
                l["first_index"],
                l["next_index"],
                l["segments"],
                l["bytes"],
                text(&l["backend"])
            );
            say!(
                "queries        {} segments read, {} skipped by their summaries",
                v["queries"]["segments_read"],
                v["queries"]["segments_skipped"]
            );
            let sinks = v["sinks"].as_array().cloned().unwrap_or_default();
            let behind: Vec<String> = sinks
                .iter()
                .filter(|s| s["lag"].as_u64().unwrap_or(0) > 0 || !s["last_error"].is_null())
                .map(|s| format!("{} ({} behind)", text(&s["name"]), s["lag"]))
                .collect();
            say!(
                "sinks          {}{}",
                sinks.len(),
                if behind.is_empty() {
                    String::new()
                } else {
                    format!("; behind: {}", behind.join(", "))
                }
            );
        }),
        Cmd::Sinks => show(call(c, "GET", "/v1/status", None)?, &|v| {
            table(
                &[
                    "NAME",
                    "KIND",
                    "CURSOR",
                    "LAG",
                    "DELIVERED",
                    "FILTERED",
                    "FAILED",
                    "LOST",
                    "LAST ERROR",
                ],
                v["sinks"].as_array().into_iter().flatten().map(|s| {
                    vec![
                        text(&s["name"]),
                        text(&s["kind"]),
                        s["cursor"].to_string(),
                        s["lag"].to_string(),
                        s["delivered"].to_string(),
                        s["filtered"].to_string(),
                        s["failed"].to_string(),
                        s["lost"].to_string(),
                        text_or(&s["last_error"], "-"),
                    ]
                }),
            );
        }),
        Cmd::Plugins(PluginCmd::List) => show(call(c, "GET", "/v1/plugins", None)?, &|v| {
            table(
                &["NAME", "VERSION", "ABI", "GATES", "SHA-256", "PATH"],
                v.as_array().into_iter().flatten().map(|p| {
                    vec![
                        text(&p["name"]),
                        text(&p["info"]["version"]),
                        text(&p["info"]["abi"]),
                        list(&p["info"]["gates"]),
                        text(&p["sha256"]).chars().take(16).collect::<String>() + "…",
                        text(&p["path"]),
                    ]
                }),
            );
        }),
        Cmd::Plugins(PluginCmd::Add { name, path, sha256 }) => {
            let path = std::path::absolute(path)
                .map_err(|e| Fail(2, format!("{}: {e}", path.display())))?;
            let body = json!({"name": name, "path": path, "sha256": sha256});
            show(call(c, "POST", "/v1/plugins", Some(body))?, &changed);
        }
        Cmd::Plugins(PluginCmd::Inspect { name }) => {
            show(
                call(c, "GET", &format!("/v1/plugins/{}", encode(name)), None)?,
                &|p| {
                    let i = &p["info"];
                    say!("name             {}", text(&p["name"]));
                    say!("version          {}", text(&i["version"]));
                    say!("ABI              {}", text(&i["abi"]));
                    say!("path             {}", text(&p["path"]));
                    say!("sha256           {}", text(&p["sha256"]));
                    say!("gates            {}", list(&i["gates"]));
                    say!("asks for         {}", list(&i["requested"]));
                    say!("integrations     {}", list(&i["integrations"]));
                    say!("response mode    {}", text(&i["response_mode"]));
                    say!(
                        "config schema    {}",
                        if i["config_schema"].is_null() {
                            "none".into()
                        } else {
                            i["config_schema"].to_string()
                        }
                    );
                },
            );
        }
        Cmd::Plugins(PluginCmd::Remove { name }) => {
            show(
                call(c, "DELETE", &format!("/v1/plugins/{}", encode(name)), None)?,
                &changed,
            );
        }
        Cmd::Scopes(ScopeCmd::List) => show(call(c, "GET", "/v1/scopes", None)?, &|v| {
            let dims = [
                "tenant",
                "virtual_key",
                "environment",
                "model",
                "mcp_server",
                "mcp_tool",
            ];
            table(
                &[
                    "NAME",
                    "TENANT",
                    "VIRTUAL KEY",
                    "ENVIRONMENT",
                    "MODEL",
                    "MCP SERVER",
                    "MCP TOOL",
                ],
                v.as_array().into_iter().flatten().map(|s| {
                    std::iter::once(text(&s["name"]))
                        .chain(dims.iter().map(|d| {
                            if s[*d].is_null() {
                                "*".into()
                            } else {
                                text(&s[*d])
                            }
                        }))
                        .collect()
                }),
            );
        }),
        Cmd::Scopes(ScopeCmd::Add { name, dims }) => {
            show(
                call(c, "POST", "/v1/scopes", Some(scope_body(name, dims)))?,
                &changed,
            );
        }
        Cmd::Scopes(ScopeCmd::Replace { name, dims }) => {
            show(
                call(
                    c,
                    "PUT",
                    &format!("/v1/scopes/{}", encode(name)),
                    Some(scope_body(name, dims)),
                )?,
                &changed,
            );
        }
        Cmd::Scopes(ScopeCmd::Show { name }) => {
            show(
                call(c, "GET", &format!("/v1/scopes/{}", encode(name)), None)?,
                &|s| {
                    say!("name             {}", text(&s["name"]));
                    for d in [
                        "tenant",
                        "virtual_key",
                        "environment",
                        "model",
                        "mcp_server",
                        "mcp_tool",
                    ] {
                        say!("{d:<16} {}", text_or(&s[d], "* (any)"));
                    }
                },
            );
        }
        Cmd::Scopes(ScopeCmd::Remove { name }) => {
            show(
                call(c, "DELETE", &format!("/v1/scopes/{}", encode(name)), None)?,
                &changed,
            );
        }
        Cmd::Bindings(BindingCmd::List) => show(call(c, "GET", "/v1/bindings", None)?, &|v| {
            table(
                &[
                    "NAME",
                    "PLUGIN",
                    "SCOPE",
                    "ENABLED",
                    "GATES",
                    "FAILURE MODE",
                    "BUDGET",
                    "GRANT",
                ],
                v.as_array().into_iter().flatten().map(binding_row),
            );
        }),
        Cmd::Bindings(BindingCmd::Show { name }) => {
            show(
                call(c, "GET", &format!("/v1/bindings/{}", encode(name)), None)?,
                &|b| {
                    say!("{}", serde_json::to_string_pretty(b).unwrap_or_default());
                },
            );
        }
        Cmd::Bindings(BindingCmd::Add(b)) => {
            show(
                call(c, "POST", "/v1/bindings", Some(binding_body(b)?))?,
                &changed,
            );
        }
        Cmd::Bindings(BindingCmd::Replace(b)) => {
            show(
                call(
                    c,
                    "PUT",
                    &format!("/v1/bindings/{}", encode(&b.name)),
                    Some(binding_body(b)?),
                )?,
                &changed,
            );
        }
        Cmd::Bindings(BindingCmd::Remove { name }) => {
            show(
                call(c, "DELETE", &format!("/v1/bindings/{}", encode(name)), None)?,
                &changed,
            );
        }
        Cmd::Enable { name } => {
            show(
                call(
                    c,
                    "POST",
                    &format!("/v1/bindings/{}/enable", encode(name)),
                    None,
                )?,
                &changed,
            );
        }
        Cmd::Disable { name } => {
            show(
                call(
                    c,
                    "POST",
                    &format!("/v1/bindings/{}/disable", encode(name)),
                    None,
                )?,
                &changed,
            );
        }
        Cmd::History => show(call(c, "GET", "/v1/history", None)?, &|v| {
            table(
                &["VERSION", "TIME (UTC ms)", "ACTION", "RESOURCE", "BY"],
                v.as_array().into_iter().flatten().map(|h| {
                    vec![
                        h["version"].to_string(),
                        h["time_ms"].to_string(),
                        text(&h["action"]),
                        text(&h["resource"]),
                        text(&h["actor"]),
                    ]
                }),
            );
        }),
        Cmd::Rollback { version } => {
            show(
                call(c, "POST", "/v1/rollback", Some(json!({"version": version})))?,
                &|v| {
                    say!(
                        "rolled back to version {}: now state version {}",
                        v["rolled_back_to"],
                        v["version"]
                    );
                },
            );
        }
        Cmd::Dataplanes => show(call(c, "GET", "/v1/dataplanes", None)?, &|v| {
            table(
                &[
                    "PID",
                    "ALIVE",
                    "HEALTHY",
                    "POLICY",
                    "RINGS",
                    "DRAINED",
                    "BACKLOG B",
                    "DROPPED",
                    "ERROR",
                ],
                v.as_array().into_iter().flatten().map(|d| {
                    let rings = d["rings"].as_array().cloned().unwrap_or_default();
                    let sum = |f: &dyn Fn(&Value) -> u64| rings.iter().map(f).sum::<u64>();
                    let lanes = |r: &Value, k: &str| {
                        r["lanes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|l| l[k].as_u64().unwrap_or(0))
                            .sum::<u64>()
                    };
                    vec![
                        d["pid"].to_string(),
                        d["alive"].to_string(),
                        d["healthy"].to_string(),
                        d["policy_version"].to_string(),
                        rings.len().to_string(),
                        sum(&|r| r["drained"].as_u64().unwrap_or(0)).to_string(),
                        sum(&|r| lanes(r, "backlog_bytes")).to_string(),
                        sum(&|r| lanes(r, "dropped")).to_string(),
                        if d["last_error"].is_null() {
                            "-".into()
                        } else {
                            text(&d["last_error"])
                        },
                    ]
                }),
            );
        }),
        Cmd::Evidence(EvidenceCmd::Query(f)) => {
            let q = f.query().join("&");
            let a = call(c, "GET", &format!("/v1/evidence?{q}"), None)?;
            evidence_out(cli.json, &a.body);
        }
        Cmd::Evidence(EvidenceCmd::Tail {
            lines,
            follow,
            filter,
        }) => {
            let status = call(c, "GET", "/v1/status", None)?.json();
            let next = status["log"]["next_index"].as_u64().unwrap_or(0);
            let mut q = filter.query();
            q.push(format!("from_index={}", next.saturating_sub(*lines)));
            if *follow {
                q.push("follow=1".into());
                stream_evidence(c, &q, cli.json)?;
            } else {
                let a = call(c, "GET", &format!("/v1/evidence?{}", q.join("&")), None)?;
                evidence_out(cli.json, &a.body);
            }
        }
        Cmd::Evidence(EvidenceCmd::Export(filter)) => {
            let mut q = filter.query();
            if filter.limit.is_none() {
                q.push(format!("limit={}", u64::MAX));
            }
            stream_evidence(c, &q, true)?;
        }
        Cmd::Stats => {
            let a = call(c, "GET", "/metrics", None)?;
            if cli.json {
                let mut m = serde_json::Map::new();
                for line in a.text().lines().filter(|l| !l.starts_with('#')) {
                    if let Some((k, v)) = line.rsplit_once(' ') {
                        m.insert(
                            k.to_owned(),
                            v.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
                        );
                    }
                }
                say!("{}", Value::Object(m));
            } else {
                for line in a.text().lines().filter(|l| !l.starts_with('#')) {
                    if let Some((k, v)) = line.rsplit_once(' ') {
                        say!("{k:<60} {v}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// The JSON body of a binding from the command line.
fn binding_body(b: &BindingArgs) -> Result<Value, Fail> {
    let mut body = json!({
        "name": b.name,
        "plugin": b.plugin,
        "enabled": b.enable,
        "priority": {},
        "capabilities": b.grant,
        "integrations": b.integration,
        "failure_mode": b.failure_mode,
        "time_budget_ms": b.budget_ms,
    });
    if let Some(s) = &b.scope {
        body["scope"] = json!(s);
    }
    for (gate, p) in [
        ("request", b.request),
        ("response", b.response),
        ("complete", b.complete),
    ] {
        if let Some(p) = p {
            body["priority"][gate] = json!(p);
        }
    }
    if let Some(config) = &b.config {
        let v: Value = serde_json::from_str(config)
            .map_err(|e| Fail(2, format!("--config is not JSON: {e}")))?;
        body["config"] = v;
    }
    if let Some(t) = &b.config_text {
        body["config_text"] = json!(t);
    }
    Ok(body)
}

/// The JSON body of a scope from the command line.
fn scope_body(name: &str, dims: &Dims) -> Value {
    let mut body = json!({"name": name});
    for (k, v) in [
        ("tenant", &dims.tenant),
        ("virtual_key", &dims.virtual_key),
        ("environment", &dims.environment),
        ("model", &dims.model),
        ("mcp_server", &dims.mcp_server),
        ("mcp_tool", &dims.mcp_tool),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    body
}

/// Prints `/v1/evidence?<query>` as it streams (no timeout: a follow never
/// ends on its own).
fn stream_evidence(c: &Client, query: &[String], json: bool) -> Result<(), Fail> {
    let status = c
        .clone()
        .timeout(None)
        .stream(
            "GET",
            &format!("/v1/evidence?{}", query.join("&")),
            None,
            |chunk| {
                evidence_out(json, chunk);
                true
            },
        )
        .map_err(|e| Fail(2, e.to_string()))?;
    if status >= 300 {
        return Err(Fail(1, format!("control answered {status}")));
    }
    Ok(())
}

fn evidence_out(json: bool, bytes: &[u8]) {
    let body = String::from_utf8_lossy(bytes);
    if json {
        say_raw!("{body}");
        return;
    }
    for line in body.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            say!("{line}");
            continue;
        };
        let mut out = format!(
            "#{:<8} {} {:<16} {:<9} {:<9} {:<16}",
            v["log_index"],
            text_or(&v["time"], "-"),
            text_or(&v["kind"], "-"),
            text_or(&v["gate"], "-"),
            text_or(&v["verdict"], "-"),
            text_or(&v["plugin"], "-"),
        );
        if let Some(r) = v["request_id"].as_str() {
            out.push_str(&format!(" req={r}"));
        }
        if let Some(t) = v["scope"]["tenant"].as_str() {
            out.push_str(&format!(" tenant={t}"));
        }
        if let Some(r) = v["reason"].as_str() {
            out.push_str(&format!(" reason={r:?}"));
        }
        if let Some(n) = v["lost"].as_u64() {
            out.push_str(&format!(" lost={n}"));
        }
        if let Some(a) = v["attrs"].as_object() {
            for (k, val) in a {
                out.push_str(&format!(" {k}={}", text(val)));
            }
        }
        say!("{out}");
    }
}

fn binding_row(b: &Value) -> Vec<String> {
    let gates: Vec<String> = ["request", "response", "complete"]
        .iter()
        .filter_map(|g| b["priority"][*g].as_i64().map(|p| format!("{g}:{p}")))
        .collect();
    vec![
        text(&b["name"]),
        text(&b["plugin"]),
        text_or(&b["scope"], "*"),
        if b["enabled"].as_bool() == Some(true) {
            "yes".into()
        } else {
            "no".into()
        },
        gates.join(" "),
        text(&b["failure_mode"]),
        format!("{} ms", b["time_budget_ms"]),
        list(&b["capabilities"]),
    ]
}

fn text(v: &Value) -> String {
    text_or(v, "")
}

fn text_or(v: &Value, none: &str) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => none.to_owned(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(text).collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(",")
    }
}

fn table(head: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        say!("{}", parts.join("  ").trim_end());
    };
    line(head.iter().map(|h| h.to_string()).collect());
    if rows.is_empty() {
        say!("(none)");
    }
    for r in rows {
        line(r);
    }
}
