//! `odock-control`: the control daemon. `odock-control [--config FILE]`;
//! with no arguments it runs on the embedded defaults (see
//! `odock_control::config`).

use std::path::PathBuf;
use std::process::ExitCode;

use odock_control::config::Config;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config = Config::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                let Some(path) = args.next() else {
                    eprintln!("odock-control: --config needs a file");
                    return ExitCode::from(2);
                };
                match Config::load(&PathBuf::from(path)) {
                    Ok(c) => config = c,
                    Err(e) => {
                        eprintln!("odock-control: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            "--help" | "-h" => {
                println!(
                    "usage: odock-control [--config FILE]\n\nRuns the Odock control daemon. Without a config file it uses a private run\ndirectory ($XDG_RUNTIME_DIR/odock or /tmp/odock-<uid>), its socket\ncontrol.sock there, and keeps state and the evidence log under <run>/control."
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("odock-control: unknown argument {other:?} (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    let resolved = match config.resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("odock-control: {e}");
            return ExitCode::from(2);
        }
    };
    match odock_control::daemon::run(resolved) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("odock-control: {e}");
            ExitCode::FAILURE
        }
    }
}
