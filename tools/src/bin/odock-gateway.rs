//! `odock-gateway`: the reference gateway. `odock-gateway [--config FILE]`
//! (see `odock_tools::gateway::config` for the keys). It attaches to
//! control's run directory for its policy and writes its evidence rings
//! there; SIGINT or SIGTERM stops it after open exchanges finish.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use odock_tools::gateway::{Gateway, GatewayConfig};

#[derive(Parser)]
#[command(
    name = "odock-gateway",
    about = "The Odock reference gateway (OpenAI-compatible and MCP)"
)]
struct Cli {
    /// A TOML config file (default: the embedded defaults: 127.0.0.1:8080 to
    /// an upstream on 127.0.0.1:9090, control's default run directory, no keys).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(p) => match GatewayConfig::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("odock-gateway: {e}");
                return ExitCode::from(2);
            }
        },
        None => GatewayConfig::default(),
    };
    if config.keys.is_empty() {
        eprintln!(
            "odock-gateway: warning: no [[keys]] configured, every request will be refused (401)"
        );
    }
    let run_dir = config.run_dir();
    let gateway = match Gateway::start(config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("odock-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "odock-gateway: listening on http://{}, policy from {} (version {})",
        gateway.addr(),
        run_dir.display(),
        gateway.control_link().status().policy_version
    );
    odock_tools::up::wait_for_termination();
    eprintln!("odock-gateway: stopping");
    gateway.shutdown();
    ExitCode::SUCCESS
}
