//! `odock-mock`: the built-in mock upstream (OpenAI-compatible chat, MCP
//! over Streamable HTTP, an approval service and webhook receivers) on one
//! local port. See `odock_tools::mock` for the routes.
//!
//! Prints `odock-mock listening on http://ADDR` once it serves (with the
//! port the system chose for `--listen 127.0.0.1:0`), then runs until
//! SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use odock_tools::mock::{Mock, MockConfig};

/// The built-in mock upstream of the Odock demo.
#[derive(Debug, Parser)]
#[command(name = "odock-mock", version)]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// Milliseconds between two SSE chunks of a streamed chat completion.
    #[arg(long, default_value_t = 5)]
    chunk_delay_ms: u64,
    /// Milliseconds the approval service takes to answer.
    #[arg(long, default_value_t = 50)]
    approval_delay_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = MockConfig {
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        approval_delay: Duration::from_millis(args.approval_delay_ms),
    };
    let mock = match Mock::start(args.listen, config) {
        Ok(mock) => mock,
        Err(e) => {
            eprintln!("odock-mock: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("odock-mock listening on http://{}", mock.addr());
    let waited = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .and_then(|rt| rt.block_on(stop_signal()));
    mock.shutdown();
    match waited {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("odock-mock: cannot wait for a stop signal: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
