//! The daemon: opens the log and the state, starts the drainer, serves the
//! socket until SIGTERM or SIGINT.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use odock_dataplane::runtime::control_link::{DATAPLANES_DIR, EVIDENCE_DIR};

use crate::api::{Control, serve};
use crate::config::Resolved;
use crate::drain::{Drainer, lock};
use crate::log::{FileStorage, Log, LogError, Storage, Summarizer, now_ns};
use crate::sink::{Sink, SinkError};
use crate::store::{Store, StoreError};

/// Why the daemon stopped with an error.
#[derive(Debug)]
pub enum DaemonError {
    /// A directory or the socket could not be set up.
    Setup(String, io::Error),
    /// Another control serves the socket.
    AlreadyRunning(std::path::PathBuf),
    /// The evidence log could not be opened.
    Log(LogError),
    /// The state could not be opened.
    Store(StoreError),
    /// A sink could not be opened.
    Sink(SinkError),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Setup(what, e) => write!(f, "{what}: {e}"),
            DaemonError::AlreadyRunning(p) => {
                write!(f, "another control answers on {}", p.display())
            }
            DaemonError::Log(e) => write!(f, "{e}"),
            DaemonError::Store(e) => write!(f, "{e}"),
            DaemonError::Sink(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

fn private_dir(path: &Path) -> Result<(), DaemonError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| DaemonError::Setup(format!("create {}", path.display()), e))
}

/// Runs the daemon until SIGTERM or SIGINT. Prints one line saying what it
/// opened (and which write path the log uses) to stderr.
///
/// # Errors
/// [`DaemonError`] when start-up fails.
pub fn run(cfg: Resolved) -> Result<(), DaemonError> {
    private_dir(&cfg.run_dir)?;
    private_dir(&cfg.run_dir.join(EVIDENCE_DIR))?;
    private_dir(&cfg.run_dir.join(DATAPLANES_DIR))?;
    private_dir(&cfg.storage_dir)?;
    let log_dir = cfg.storage_dir.join("evidence");
    let storage = FileStorage::new(&log_dir, cfg.io)
        .map_err(|e| DaemonError::Setup(format!("evidence log {}", log_dir.display()), e))?;
    let (log, recovery) = Log::open(storage, cfg.log).map_err(DaemonError::Log)?;
    eprintln!(
        "odock-control: run dir {}, socket {}, storage {}; evidence log: {} write path, {} records recovered in {} segments, {} torn bytes cut, {} corrupt spans{}",
        cfg.run_dir.display(),
        cfg.socket.display(),
        cfg.storage_dir.display(),
        log.storage().backend(),
        recovery.records,
        recovery.segments,
        recovery.truncated_bytes,
        recovery.corrupt.len(),
        recovery
            .corrupt
            .iter()
            .map(|c| format!("; {c}"))
            .collect::<String>(),
    );
    let log = Arc::new(Mutex::new(log));
    let store = Store::open(&cfg.storage_dir, &cfg.run_dir, Arc::clone(&log))
        .map_err(DaemonError::Store)?;

    let mut sinks = Vec::with_capacity(cfg.sinks.len());
    for sc in &cfg.sinks {
        sinks.push(
            Sink::open(sc.clone(), &cfg.storage_dir, Arc::clone(&log))
                .map_err(DaemonError::Sink)?,
        );
    }
    let sink_status = sinks.iter().map(Sink::status).collect();

    let drainer = Drainer::new(&cfg.run_dir, Arc::clone(&log));
    let ctl = Arc::new(Control {
        store: Mutex::new(store),
        log: Arc::clone(&log),
        queries: Arc::default(),
        rings: drainer.health(),
        sinks: sink_status,
        drain: drainer.stats(),
        access: cfg.access.clone(),
        run_dir: cfg.run_dir.clone(),
        started: Instant::now(),
        requests: AtomicU64::new(0),
        denied: AtomicU64::new(0),
        changes: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let drain_thread = std::thread::Builder::new()
        .name("odock-drainer".into())
        .spawn(move || {
            if let Err(e) = drainer.run(&s) {
                // Crash-only: the rings keep every record not committed,
                // and a new control resumes at the durable positions. The
                // process must go so its consumer claims die with it.
                eprintln!("odock-control: evidence log failed, exiting: {e}");
                std::process::exit(70);
            }
        })
        .map_err(|e| DaemonError::Setup("spawn the drainer".into(), e))?;
    let s = Arc::clone(&stop);
    let l = Arc::clone(&log);
    let sink_cursors = ctl.sinks.clone();
    let retention = std::thread::Builder::new()
        .name("odock-retention".into())
        .spawn(move || {
            let mut last = Instant::now() - Duration::from_secs(60);
            // Summaries decode every committed record (about 0.5 us each
            // on the reference VM): run them at a lower priority, so under
            // contention the drainer and the API win and queries just find
            // more segments without a summary yet. A refusal (a sandbox)
            // leaves the default priority.
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
            let mut summarizer = Summarizer::new();
            let mut last_error = String::new();
            while !s.load(Ordering::Relaxed) {
                // Segment summaries, off the drain path (queries skip
                // segments by them). A failure leaves segments without
                // one: queries read them. Said once per distinct error.
                match summarizer.tick(&l) {
                    Ok(_) => last_error.clear(),
                    Err(e) => {
                        let e = e.to_string();
                        if e != last_error {
                            eprintln!("odock-control: segment summaries: {e}");
                            last_error = e;
                        }
                    }
                }
                if last.elapsed() >= Duration::from_secs(10) {
                    last = Instant::now();
                    // Age retention waits for the slowest sink.
                    let hold = sink_cursors
                        .iter()
                        .map(|s| s.cursor.load(Ordering::Relaxed))
                        .min()
                        .unwrap_or(u64::MAX);
                    if let Err(e) = lock(&l).enforce_retention_holding(now_ns(), hold) {
                        eprintln!("odock-control: retention: {e}");
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .map_err(|e| DaemonError::Setup("spawn retention".into(), e))?;

    let mut sink_threads = Vec::with_capacity(sinks.len());
    for sink in sinks {
        let s = Arc::clone(&stop);
        sink_threads.push(
            std::thread::Builder::new()
                .name("odock-sink".into())
                .spawn(move || sink.run(&s))
                .map_err(|e| DaemonError::Setup("spawn a sink".into(), e))?,
        );
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| DaemonError::Setup("tokio runtime".into(), e))?;
    let result = rt.block_on(serve_socket(&cfg, ctl));
    stop.store(true, Ordering::Relaxed);
    let _ = drain_thread.join();
    let _ = retention.join();
    for t in sink_threads {
        let _ = t.join();
    }
    let _ = fs::remove_file(&cfg.socket);
    result
}

async fn serve_socket(cfg: &Resolved, ctl: Arc<Control<FileStorage>>) -> Result<(), DaemonError> {
    if cfg.socket.exists() {
        if std::os::unix::net::UnixStream::connect(&cfg.socket).is_ok() {
            return Err(DaemonError::AlreadyRunning(cfg.socket.clone()));
        }
        let _ = fs::remove_file(&cfg.socket);
    }
    let setup = |what: &str| {
        let what = format!("{what} {}", cfg.socket.display());
        move |e| DaemonError::Setup(what, e)
    };
    let listener = tokio::net::UnixListener::bind(&cfg.socket).map_err(setup("bind"))?;
    fs::set_permissions(&cfg.socket, fs::Permissions::from_mode(0o660)).map_err(setup("chmod"))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(setup("signal handler for"))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(setup("signal handler for"))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Ok(cred) = stream.peer_cred() else { continue };
                let peer = (cred.uid(), cred.gid(), cred.pid().unwrap_or(0));
                let ctl = Arc::clone(&ctl);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(Arc::clone(&ctl), peer, req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}
