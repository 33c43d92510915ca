//! The watchdog: it notices a worker stuck inside a plugin.
//!
//! An in-process call cannot be preempted: a plugin that loops forever
//! holds its worker. The runner cannot report that itself, so each runner
//! publishes, around every plugin call, when the call started, which plugin
//! it is and its time budget ([`Busy`]: three Relaxed stores before the call,
//! one after, on words only that runner writes). A [`Watchdog`] thread scans
//! every runner's words; a call running past `max(budget, min_stuck)` is
//! reported once per episode: in [`Runtime::health`], in the runner's
//! `stuck` count, and as a `skip` evidence record with cause
//! `worker_stuck` naming the plugin. A call that ends afterwards is
//! handled as an overrun by its failure mode, as any other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use odock_plugin_abi::Gate;

use super::runner::{Runtime, RuntimeSink, SkipRecord};

/// One runner's "inside a plugin" words. Written by the runner only.
#[derive(Debug)]
pub(crate) struct Busy {
    pub(crate) worker: u32,
    /// Nanoseconds since the runtime's epoch when the current call started;
    /// 0 when the runner is not inside a plugin.
    since: AtomicU64,
    /// The metrics slot of the plugin being called.
    slot: AtomicU32,
    /// Its binding's time budget, in ns.
    budget: AtomicU64,
    /// Episodes reported stuck.
    pub(crate) stuck: AtomicU64,
    /// Whether the current episode was reported.
    reported: AtomicBool,
}

impl Busy {
    pub(crate) fn new(worker: u32) -> Busy {
        Busy {
            worker,
            since: AtomicU64::new(0),
            slot: AtomicU32::new(0),
            budget: AtomicU64::new(0),
            stuck: AtomicU64::new(0),
            reported: AtomicBool::new(false),
        }
    }

    /// Before a call. The Release on `since` publishes `slot` and `budget`
    /// to the watchdog's Acquire load of `since`.
    #[inline]
    pub(crate) fn enter(&self, since_epoch_ns: u64, slot: usize, budget: Duration) {
        self.slot.store(slot as u32, Ordering::Relaxed);
        self.budget
            .store(budget.as_nanos() as u64, Ordering::Relaxed);
        let now = since_epoch_ns.max(1);
        self.since.store(now, Ordering::Release);
    }

    /// After a call.
    #[inline]
    pub(crate) fn leave(&self) {
        self.since.store(0, Ordering::Relaxed);
    }
}

/// What a worker is doing, as the watchdog sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    /// Not inside a plugin.
    Idle,
    /// Inside a plugin, within its budget.
    Running {
        /// The plugin.
        plugin: String,
        /// For how long so far.
        for_: Duration,
    },
    /// Inside a plugin past its budget (and the watchdog's floor).
    Stuck {
        /// The plugin.
        plugin: String,
        /// For how long so far.
        for_: Duration,
    },
}

/// One worker's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHealth {
    /// The worker.
    pub worker: u32,
    /// What it is doing.
    pub state: WorkerState,
    /// Episodes it was reported stuck, over its life.
    pub stuck_episodes: u64,
}

impl Runtime {
    /// Every runner's health, for the gateway's health endpoint.
    pub fn health(&self, min_stuck: Duration) -> Vec<WorkerHealth> {
        let now = self.epoch().elapsed().as_nanos() as u64;
        self.busy_handles()
            .iter()
            .map(|b| WorkerHealth {
                worker: b.worker,
                state: self.state_of(b, now, min_stuck),
                stuck_episodes: b.stuck.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn state_of(&self, b: &Busy, now: u64, min_stuck: Duration) -> WorkerState {
        // Acquire pairs with the Release in `Busy::enter`.
        let since = b.since.load(Ordering::Acquire);
        if since == 0 {
            return WorkerState::Idle;
        }
        let for_ = Duration::from_nanos(now.saturating_sub(since));
        let plugin = self.plugin_name(b.slot.load(Ordering::Relaxed) as usize);
        let budget = Duration::from_nanos(b.budget.load(Ordering::Relaxed));
        if for_ > budget.max(min_stuck) {
            WorkerState::Stuck { plugin, for_ }
        } else {
            WorkerState::Running { plugin, for_ }
        }
    }

    /// Starts the watchdog: every `interval` it checks each runner and
    /// reports new stuck episodes to `sink`.
    ///
    /// # Panics
    /// When its thread cannot be spawned.
    pub fn start_watchdog(
        &self,
        interval: Duration,
        min_stuck: Duration,
        mut sink: Box<dyn RuntimeSink>,
    ) -> Watchdog {
        let runtime = self.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("odock-watchdog".into())
            .spawn(move || {
                while !stop_thread.load(Ordering::Acquire) {
                    let now = runtime.epoch().elapsed().as_nanos() as u64;
                    for b in runtime.busy_handles() {
                        match runtime.state_of(&b, now, min_stuck) {
                            WorkerState::Stuck { plugin, .. } => {
                                if !b.reported.swap(true, Ordering::Relaxed) {
                                    b.stuck.fetch_add(1, Ordering::Relaxed);
                                    sink.skip(&SkipRecord {
                                        request_id: 0,
                                        worker: b.worker,
                                        gate: Gate::Request,
                                        plugin: &plugin,
                                        binding: u32::MAX,
                                        cause: "worker_stuck",
                                        count: 1,
                                    });
                                }
                            }
                            _ => b.reported.store(false, Ordering::Relaxed),
                        }
                    }
                    std::thread::park_timeout(interval);
                }
            })
            .expect("spawning the watchdog");
        Watchdog {
            stop,
            thread: Some(thread),
        }
    }
}

/// The running watchdog; dropping it stops it.
#[derive(Debug)]
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
