//! `odock`: the whole stack on one machine.
//!
//! - `odock up`: starts control (a separate process), the gateway with its
//!   workers and the mock upstream; registers and binds the reference
//!   plugins with an example policy; prints where to send traffic; stops
//!   cleanly on Ctrl-C, leaving the evidence log readable.
//! - `odock demo --seconds N`: the same stack, driven by a mixed LLM and MCP
//!   workload, then a summary.
//! - `odock control [--config FILE]`: the control daemon itself (what `up`
//!   runs as its control process; the same as `odock-control`).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use odock_tools::up::{KEYS, Stack, UpOptions};

#[derive(Parser)]
#[command(
    name = "odock",
    about = "Odock: the plugin dataplane, control and a gateway on one machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start control, the gateway and the mock upstream; stop on Ctrl-C.
    Up(Stackopts),
    /// Start the stack, drive a mixed LLM and MCP workload, print a summary.
    Demo {
        #[command(flatten)]
        stack: Stackopts,
        /// How long to drive traffic.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent callers.
        #[arg(long, default_value_t = 8)]
        callers: usize,
    },
    /// Run the control daemon (as `odock-control` does).
    Control {
        /// A TOML config file (default: the embedded defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct Stackopts {
    /// Where control keeps state and the evidence log (kept after exit).
    #[arg(long, default_value = "odock-data")]
    data_dir: PathBuf,
    /// The gateway's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The mock upstream's address.
    #[arg(long, default_value = "127.0.0.1:9090")]
    mock_listen: SocketAddr,
    /// Gateway threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Where the reference plugins' libraries are (default: beside this
    /// executable, else built from the source tree).
    #[arg(long)]
    plugins_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Control { config } => control(config),
        Cmd::Up(opts) => match start(&opts) {
            Ok(stack) => up(stack),
            Err(code) => code,
        },
        Cmd::Demo {
            stack: opts,
            seconds,
            callers,
        } => match start(&opts) {
            Ok(stack) => demo(stack, seconds, callers),
            Err(code) => code,
        },
    }
}

fn start(opts: &Stackopts) -> Result<Stack, ExitCode> {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("odock: cannot find my own executable: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    Stack::start(&UpOptions {
        data_dir: opts.data_dir.clone(),
        listen: opts.listen,
        mock_listen: opts.mock_listen,
        workers: opts.workers,
        control_exe: exe,
        plugins_dir: opts.plugins_dir.clone(),
        verbose: true,
    })
    .map_err(|e| {
        eprintln!("odock: {e}");
        ExitCode::FAILURE
    })
}

fn up(stack: Stack) -> ExitCode {
    let addr = stack.gateway().addr();
    let socket = stack.socket().display().to_string();
    println!(
        "\nOdock is up (policy version {}).\n\n  gateway        http://{addr}  (OpenAI: POST /v1/chat/completions, MCP: POST /mcp)\n  mock upstream  http://{}\n  control        {socket}\n  data           {}\n\nTry:\n  curl -s http://{addr}/v1/chat/completions -H 'authorization: Bearer {}' \\\n       -H 'content-type: application/json' \\\n       -d '{{\"model\":\"gpt-4o\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello from jane@example.com\"}}]}}'\n  (the key of tenant globex, {}, may only use gpt-4o-mini)\n\nControl:\n  cargo run -p odock-tools --bin odockctl -- --socket {socket} bindings list\n  cargo run -p odock-tools --bin odockctl -- --socket {socket} evidence tail\n\nCtrl-C stops everything.",
        stack.policy_version(),
        stack.mock().addr(),
        stack.data_dir().display(),
        KEYS[0].0,
        KEYS[1].0,
    );
    odock_tools::up::wait_for_termination();
    eprintln!("\nodock: stopping");
    finish(stack)
}

fn demo(stack: Stack, seconds: u64, callers: usize) -> ExitCode {
    eprintln!(
        "odock: driving a mixed LLM and MCP workload for {seconds} s with {callers} callers through http://{}",
        stack.gateway().addr()
    );
    let report = odock_tools::demo::run(&stack, seconds, callers, true);
    let summary = odock_tools::demo::summary(&report);
    print!("\n{summary}");
    let unexpected = report.unexpected();
    if unexpected > 0 {
        // Not a failure of the demo: a check that overran its budget on a
        // loaded machine blocks, as its failure mode says. The summary
        // lists the first few.
        println!("{unexpected} exchanges did not come back as their case expects (listed above)");
    }
    finish(stack)
}

fn finish(stack: Stack) -> ExitCode {
    match stack.shutdown() {
        Ok(stopped) => {
            println!(
                "evidence: {} records in the durable log at {}{}",
                stopped.evidence_records,
                stopped.evidence_dir.display(),
                if stopped.drained {
                    ""
                } else {
                    " (control had not drained every ring when it stopped; the rest stay in their rings for the next start)"
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("odock: {e}");
            ExitCode::FAILURE
        }
    }
}

fn control(config: Option<PathBuf>) -> ExitCode {
    let config = match config {
        Some(p) => match odock_control::config::Config::load(&p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("odock control: {e}");
                return ExitCode::from(2);
            }
        },
        None => odock_control::config::Config::default(),
    };
    let resolved = match config.resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("odock control: {e}");
            return ExitCode::from(2);
        }
    };
    match odock_control::daemon::run(resolved) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("odock control: {e}");
            ExitCode::FAILURE
        }
    }
}
