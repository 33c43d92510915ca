//! Pinned workers and the submitted gate API.
//!
//! A [`WorkerPool`] starts one worker thread per configured core, pinned to
//! it. Each worker owns a [`GateRunner`] (its plugin instances, arena and
//! index), the consumer of its *submission ring* and the producer of its
//! *completion ring*. Any thread — a tokio task, say — submits a frame to the
//! worker of a core through a [`Submitter`] and gets the verdict back, as a
//! blocking call ([`Submitter::request`]) or as an `async fn`
//! ([`Submitter::request_async`], a hand-written [`Future`] underneath; no
//! runtime is needed).
//!
//! ```no_run
//! use odock_dataplane::runtime::{GateFrame, PoolConfig, RequestFrame, Runtime, Verdict, WorkerPool};
//! # use odock_dataplane::runtime::{DecisionRecord, FollowUpRecord, SkipRecord};
//! # struct Sink;
//! # impl odock_dataplane::plugin::EvidenceSink for Sink {
//! #     fn record(&mut self, _: &odock_dataplane::plugin::Evidence<'_>) {}
//! # }
//! # impl odock_dataplane::runtime::RuntimeSink for Sink {
//! #     fn decision(&mut self, _: &DecisionRecord<'_>) {}
//! #     fn skip(&mut self, _: &SkipRecord<'_>) {}
//! #     fn follow_up(&mut self, _: &FollowUpRecord<'_>) {}
//! # }
//! let runtime = Runtime::new();
//! let pool = WorkerPool::start(&runtime, PoolConfig::default(), |_| Box::new(Sink))?;
//! let submitter = pool.submitter();
//! let frame = GateFrame::new(RequestFrame { request_id: 1, body: b"{}", ..Default::default() });
//! let answer = submitter.request(0, &frame)?;
//! assert_eq!(answer.verdict(), Verdict::Continue);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Shape
//!
//! ```text
//!  submitter threads                      worker w (pinned to core c)
//!  ─────────────────                      ───────────────────────────
//!  claim slot s ─► encode frame in place ─► submission ring (MPSC, L lanes)
//!                                             │ views into ring memory
//!                                             ▼
//!                                          GateRunner::request
//!                                             │ outcome encoded in place
//!  drainer ◄──────────────────────────────── completion ring (SPSC)
//!   │ copies the record into slot s, marks it DONE, wakes its waiter
//!   ▼
//!  waiter reads its Answer from slot s
//! ```
//!
//! The complete gate never runs on a worker: [`Submitter::submit_complete`]
//! writes the finished exchange straight into the ring of a thread of the
//! pool's [`CompletePool`] (started and owned by the [`WorkerPool`], sized
//! by [`PoolConfig::complete`]), fire and forget; a full ring refuses the
//! frame at once, counts it, and the pool leaves a `complete_queue_full`
//! skip record. Its records are the complete pool's (see
//! [`runtime::complete`](super::complete)).
//!
//! # Lanes
//!
//! A worker's submission ring has `L` lanes ([`PoolConfig::submit_lanes`]),
//! each lane's [`Producer`] behind a mutex held for the length of one
//! in-place encode. Lanes `0..S` ([`PoolConfig::shared_lanes`], at least 1)
//! are shared: a submitter try-locks them round robin and blocks on one
//! only if all are taken. Each other lane can be *claimed* by one thread:
//! on its first submission to a worker a thread tries to claim a free lane
//! (a CAS of the lane's `claimed` flag, Acquire) and keeps it in a
//! thread-local list (keyed by a process-unique pool id, so a later pool
//! at the same address matches nothing); from then on it writes to that
//! lane alone, so its lock is never contended and no shared round-robin
//! counter is touched. The claim goes back (a Release store) when the
//! thread exits (or finds the pool gone). A thread that finds every
//! claimable lane taken uses the shared lanes and looks again after 1024
//! submissions. Claims only choose a lane: every write still holds the
//! lane's mutex, so a stale claim could cost contention, never a torn
//! record, and the shutdown record (through lane 0, shared) and the slot
//! protocol below are the same whichever lane a frame took. The worker
//! side takes no lock.
//!
//! # Records (version 2)
//!
//! All integers little-endian. Every length is a `u32`; the record's length
//! is the ring record's length.
//!
//! Submission (written by a submitter, read by the worker):
//!
//! ```text
//! 0   u8   kind: 1 request, 2 response, 5 stream open (status and
//!          response headers, no response body), 15 shutdown (pool only);
//!          4 resume and 6 chunk have their own layouts (below); 3 (once
//!          complete) is refused: the complete gate has its own pool
//! 1   u8   version (2)
//! 2   u8   API kind: 0 unknown, 1 OpenAI chat, 2 OpenAI responses,
//!          3 Anthropic messages, 4 MCP
//! 3   u8   present: bit i set when text field i is given
//! 4   u32  header count (at most 1024)
//! 8   u64  token (routes the answer back; see "Routing")
//! 16  u64  request id
//! 24  u32 × 8  text field lengths: method, path, tenant, virtual key,
//!          environment, model, MCP server, MCP tool (0 when absent)
//! 56  u32  body length
//! 60  u32  status (response and stream open frames; 0 otherwise)
//! 64  header table: count × (name length u32, value length u32)
//! ..  the text fields in order, then each header's name and value, then
//!     the body
//! ```
//!
//! Resume (written by a submitter, read by the worker; see "Pause and
//! resume"):
//!
//! ```text
//! 0   u8   kind: 4
//! 1   u8   version (2)
//! 2   u8   outcome of the integration call: 0 ok, 1 timeout, 2 failed
//! 3   u8   reserved, 0
//! 4   u32  answer length
//! 8   u64  token
//! 16  u64  request id of the parked frame
//! 24  u64  the pause's token
//! 32  the integration's answer
//! ```
//!
//! Chunk (written by a submitter, read by the worker; see "Streams"):
//!
//! ```text
//! 0   u8   kind: 6
//! 1   u8   version (2)
//! 2   u8   flags: bit 0 LAST (no chunk follows)
//! 3   u8   reserved, 0
//! 4   u32  chunk length
//! 8   u64  token
//! 16  u64  stream id (from the open's answer)
//! 24  u64  chunk index (0, 1, ...)
//! 32  the chunk's bytes
//! ```
//!
//! Completion (written by the worker, read by the drainer):
//!
//! ```text
//! 0   u8   kind: 1 answer, 2 error, 3 pause, 4 stream opened
//! 1   u8   version (2)
//! 2   u8   answer: verdict, 0 continue, 1 block; error: the error code
//! 3   u8   flags: bit 0 CHANGED (the header and metadata lists follow),
//!          bit 1 BODY (the transformed body follows; only with CHANGED)
//! 4   u32  block status
//! 8   u64  token
//! 16  u32  reason length (error: detail length)
//! 20  u32  plugin length
//! 24  u32  header count   28 u32 metadata count   32 u32 body length
//! 36  u32  reserved, 0
//! 40  header table, then metadata table: count × (u32, u32)
//! ..  reason, plugin, each header's name and value, each metadata key and
//!     value, body
//! ```
//!
//! A pause (kind 3) keeps the fixed part's positions with other meanings:
//!
//! ```text
//! 2   u8   0            3  u8  0
//! 4   u32  the integration call's timeout, in milliseconds
//! 8   u64  token
//! 16  u32  integration name length     20  u32  plugin length
//! 24  u64  the pause's token (to resume with)
//! 32  u32  payload length              36  u32  reserved, 0
//! 40  integration name, plugin, payload
//! ```
//!
//! A stream opened (kind 4) is the fixed part alone: byte 2 bit 0 set when
//! the stream's chain has whole-body plugins (its chunks are buffered), the
//! stream id at 24; every other byte 0.
//!
//! An unchanged frame (the common, read-only case) costs a 40-byte
//! completion plus the block reason and plugin: the caller keeps its own
//! headers and body. A changed one carries the whole header list as the
//! chain left it, the metadata, and the body only if a plugin rewrote it.
//!
//! **What a reader checks.** Neither side trusts the other's record: the
//! worker checks a submission's version, kind, API kind, counts, that the
//! lengths add up to exactly the record's length (sums in `u64`, so nothing
//! wraps), that absent fields have no length, and that text fields are
//! UTF-8. A record that fails is answered with an error completion
//! ([`GateError::Malformed`]) when it is long enough to carry a token, and
//! counted ([`WorkerStats::malformed`]) either way; it is never followed.
//! The drainer checks completions the same way (plus UTF-8 of reason,
//! plugin and metadata keys, and verdict and status ranges); a bad one is
//! delivered to its waiter as [`GateError::BadCompletion`], and one whose
//! token matches no waiting slot is counted as stray.
//!
//! # Routing
//!
//! Each worker has a table of `slots` slots. A slot's state word is
//! `generation << 2 | state`; the token is `generation << 32 | index`.
//!
//! | transition | by | how |
//! |---|---|---|
//! | FREE → PENDING(g+1) | submitter, on claim | CAS, SeqCst |
//! | PENDING → DONE | drainer, after copying the record into the slot's buffer | CAS, AcqRel (Release publishes the copy; pairs with the waiter's Acquire load) |
//! | PENDING → ABANDONED | submitter dropping an unanswered ticket | CAS |
//! | ABANDONED → FREE | drainer, when the answer comes | CAS |
//! | DONE → FREE | submitter, when its [`Answer`] drops | Release store |
//!
//! The drainer is whoever holds the worker's completion consumer (a mutex):
//! a waiting submitter try-locks it while it busy-polls, and a per-worker
//! *dispatcher* thread takes it while any waiter sleeps. Draining copies each
//! record into its slot, marks it DONE, then takes the slot's registered
//! waiter (a parked thread or a task's [`Waker`](std::task::Waker)) and wakes it.
//!
//! **Waiting.** A waiter busy-polls for [`PoolConfig::waiter_spin`] (checking
//! its slot, try-draining). Then a blocking waiter that can take the
//! completion consumer *leads*: it sleeps on the completion ring's futex
//! itself, drains, and lets the consumer go once its own answer is in (a
//! round trip of two wake-ups, as over a socket; waiters that registered
//! meanwhile kicked the dispatcher, which takes the consumer next). One that
//! cannot, and every async waiter, registers itself in the slot, counts
//! itself in the worker's `sleepers`, issues a SeqCst fence, checks its slot
//! again, unparks the dispatcher and parks (an async waiter returns
//! `Pending`).
//! The drainer marks DONE *before* it locks the waiter cell, and the waiter
//! registers *before* its re-check, both under the same mutex, so either the
//! drainer finds the waiter or the waiter finds DONE: no lost wake-up. The
//! dispatcher parks while `sleepers` is 0 (an unpark before the park is
//! kept as a token, so a kick is never lost); while it is not 0 it holds the
//! completion consumer and sleeps on the completion ring's futex
//! ([`Consumer::wait`]), which the worker's commit wakes only while it sleeps.
//!
//! **The worker** commits answers quietly and calls
//! [`Producer::notify`] once per batch of submissions (and every 16
//! answers within a long one), so a sleeping dispatcher costs one wake-up
//! per batch, not one per frame, and still sees a long batch's answers
//! early. It busy-polls
//! its submission ring for
//! [`PoolConfig::worker_spin`] after its last record, then sleeps on the
//! ring's futex; a submitter's commit wakes it (the ring's protocol: a
//! wake-up syscall only while the consumer sleeps). A full completion ring
//! makes the worker yield and ask the dispatcher to drain, and retry.
//!
//! # Pause and resume
//!
//! A request whose chain pauses (a plugin waits on an integration call) is
//! answered with a pause completion; [`Answer::verdict`] is
//! [`Verdict::Pause`] with the integration to call, the payload, the
//! timeout and the pause's token. The worker does not wait: the frame's
//! submission record lives in ring memory that is released after the
//! batch, so the worker copies the record into its *parked-frame store*
//! (a map by request id; the one allocation of the pause path) and points
//! the runner's parked frame at the copy
//! ([`GateRunner::move_parked`]), which stays in place until the frame
//! leaves the store. The submitter makes the integration call itself and
//! sends its answer with [`Submitter::resume`] (or
//! [`Submitter::resume_async`]) to the same worker: a resume record. The
//! worker runs [`GateRunner::resume`] over the copy and answers like a
//! request.
//!
//! | parked frame | on | then |
//! |---|---|---|
//! | not parked → parked | a pause answer | the copy is stored |
//! | parked → gone | a resume with the pause's token | answered continue or block |
//! | parked → parked | a resume after which a later plugin pauses | a new pause answer |
//! | parked → parked | a resume with another token | [`GateError::WrongToken`] |
//! | parked → gone | its timeout plus the runner's grace passes | [`GateRunner::expire_parked`] records a timeout decision |
//! | parked → gone | the worker stops | expired the same way |
//! | not parked | a resume | [`GateError::NotParked`] |
//!
//! The worker looks for overdue frames every 20 ms while any is parked
//! (sleeping at most that long). The store holds at most
//! [`PoolConfig::max_parked`] frames: a frame that pauses while it is full
//! is resumed at once as if its integration call had failed
//! ([`AnswerOutcome::Failed`](odock_plugin_abi::AnswerOutcome::Failed)),
//! and answered with what its chain then decides. Frames are parked by request id, per
//! worker: a frame is resumed on the worker it paused on.
//!
//! # Streams
//!
//! A streamed (SSE) answer goes through the response gate chunk by chunk
//! ([`GateRunner::response_chunk`]), which keeps per-stream state
//! ([`StreamState`]) between chunks. [`Submitter::open_stream`] sends a
//! stream open record (the request frame, the response's status and
//! headers); the worker takes a free entry of its *stream table*
//! ([`PoolConfig::streams`] entries, owned by the worker thread), copies
//! the record into the entry's buffer (kept between streams: every
//! chunk's frame views it), asks the runner for the stream's state, and
//! answers with the stream id (`generation << 32 | entry`, so a stale or
//! forged id matches nothing). [`Submitter::chunk`] sends each chunk with
//! its index; the answer is the chunk's outcome (verdict, the chunk as the
//! chain left it, and on chunk 0 the response headers).
//!
//! | stream entry | on | then |
//! |---|---|---|
//! | free → open | a stream open | answered with the id |
//! | (none free) | a stream open | [`GateError::StreamsFull`], after reclaiming idle streams |
//! | open → open | the next chunk | its outcome |
//! | open → open | a chunk of another index | [`GateError::ChunkOutOfOrder`] |
//! | open → free | the last chunk, or a chunk that is blocked | its outcome |
//! | open → free | no chunk for [`PoolConfig::stream_idle`] | a `stream_abandoned` skip record |
//! | open → free | the worker stops | a `stream_abandoned` skip record |
//! | free | a chunk | [`GateError::NoSuchStream`] |
//!
//! Chunks of one stream go one at a time: [`Submitter::chunk`] takes the
//! [`Stream`] by `&mut` and returns once the outcome is in. The worker
//! looks for idle streams every 20 ms while any is open.
//!
//! # Shutdown
//!
//! [`WorkerPool::shutdown`] (also run on drop): sets `closed` (SeqCst);
//! pushes a shutdown record to every worker, which answers every record
//! before it and exits; joins the workers; stops and joins the dispatchers
//! (no completion can come any more, and a dispatcher would otherwise keep
//! holding a completion consumer for waiters no worker will answer); drains
//! every completion ring; answers every slot still PENDING with
//! [`GateError::Shutdown`] (frames that raced the shutdown into a lane the
//! worker did not reach) and frees abandoned ones. A submitter checks
//! `closed` *after* claiming its slot, so a claim that the final scan missed
//! sees `closed` and returns [`GateError::Closed`]: every waiter gets an
//! answer.
//!
//! The complete pool stops first: after `closed` is set the shutdown takes
//! (and lets go of) every complete lane, and a complete submitter checks
//! `closed` while it holds its lane, so each complete frame is either in a
//! ring before the pool's stop (the pool runs every record committed before
//! it stops) or refused with [`GateError::Closed`].
//!
//! # Limits (today)
//!
//! - The rings are heap rings inside the gateway's process; the layout and
//!   checks are written for a peer in another process (offsets and lengths
//!   only, every field validated), but no memfd backing is wired yet.
//! - A claimed lane is still written under its (never contended) mutex: a
//!   lock-free owned lane would be a new ownership protocol, wanting a loom
//!   model, which the crate's loom build (ring and sync only) cannot run
//!   over this module yet.
//!
//! # Allocation
//!
//! The worker's per-frame path allocates nothing: it decodes views into the
//! submission record, reuses one header vector, runs the runner (see its
//! zero-allocation test) and encodes the outcome in place in the completion
//! ring. The submitter side allocates nothing per frame either, once warm:
//! the frame is encoded straight into ring memory, and each slot keeps a
//! buffer (preallocated, [`PoolConfig::answer_capacity`]) that the drainer
//! copies the completion into; a larger answer grows that slot's buffer once
//! and it stays grown. Registering a waker clones it (an executor's clone is
//! usually a reference count). Errors carry `'static` text.
//!
//! Off the per-frame path: a thread's first submission to a worker adds
//! its lane claim to a thread-local list (see "Lanes"); a pause copies the
//! frame's record (see "Pause
//! and resume"); a stream open asks the runner for the stream's state
//! (which owns its scope key) and grows its table entry's buffer the first
//! time; a chunk allocates nothing more, but for what the runner buffers
//! for whole-body plugins (up to [`PoolConfig::stream_buffer`]).

mod codec;
mod slots;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use odock_plugin_abi::view::Header;

use self::codec::{
    ChunkView, CompletionView, FrameKind, ResumeView, SubmissionParts, SubmissionView,
};
use self::slots::{ABANDONED, DONE, FREE, PENDING, Slot, Slots, Waiter, lock};
use super::complete::{CompleteConfig, CompletePool, CompleteSubmitter, SubmitError};
use super::{
    ChunkFrame, GateRunner, Outcome, RequestFrame, ResponseFrame, ResumeError, Runtime,
    RuntimeSink, SkipRecord, StreamState, Verdict,
};
use crate::index::ApiKind;
use crate::plugin::IntegrationAnswer;
use crate::ring::{Consumer, CorruptRing, Geometry, GeometryError, Producer, ReserveError, Ring};

pub use self::codec::Malformed;

/// How a pool is set up.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The cores to start a worker on, one worker each; `None`: every core
    /// the process may run on.
    pub cores: Option<Vec<usize>>,
    /// Pin each worker to its core (`sched_setaffinity`).
    pub pin: bool,
    /// Data bytes of each submission lane and of the completion ring
    /// (a power of two).
    pub ring_bytes: u64,
    /// Submission lanes per worker: submitters that write at once without
    /// waiting on each other.
    pub submit_lanes: u32,
    /// How many of those lanes are shared by every submitting thread (at
    /// least 1: the pool's shutdown record goes through lane 0); each of
    /// the others can be claimed by one thread for its own use (see
    /// "Lanes").
    pub shared_lanes: u32,
    /// Frames in flight per worker (the slot table's size).
    pub slots: usize,
    /// Bytes preallocated per slot for its answer.
    pub answer_capacity: usize,
    /// How long a worker busy-polls an empty submission ring before it
    /// sleeps on the ring's futex.
    pub worker_spin: Duration,
    /// How long a waiter busy-polls for its answer before it parks.
    pub waiter_spin: Duration,
    /// The complete gate's pool, which the pool starts and owns (see
    /// [`Submitter::submit_complete`]); `None`: no complete pool, and
    /// complete frames are refused with [`GateError::NoCompletePool`].
    /// The submitter claims `lanes - 1` of each pool thread's lanes (one is
    /// left for the pool's own stop signal), so `lanes` should exceed the
    /// number of threads that submit complete frames at once.
    pub complete: Option<CompleteConfig>,
    /// Streams open at once per worker (see "Streams").
    pub streams: usize,
    /// How long an open stream may go without a chunk before its worker
    /// reclaims it as abandoned.
    pub stream_idle: Duration,
    /// Bytes a stream buffers for whole-body plugins
    /// ([`GateRunner::stream_state`]'s cap).
    pub stream_buffer: usize,
    /// Frames parked per worker at most (see "Pause and resume"): a pause
    /// beyond it is answered at once as a failed integration call.
    pub max_parked: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            cores: None,
            pin: true,
            ring_bytes: 1 << 20,
            submit_lanes: 4,
            shared_lanes: 1,
            slots: 1024,
            answer_capacity: 256,
            worker_spin: Duration::from_micros(50),
            waiter_spin: Duration::from_micros(50),
            complete: Some(CompleteConfig::default()),
            streams: 256,
            stream_idle: Duration::from_secs(60),
            stream_buffer: 1 << 20,
            max_parked: 1024,
        }
    }
}

/// Why a pool could not start.
#[derive(Debug)]
pub enum PoolError {
    /// A ring geometry is out of range.
    Geometry(GeometryError),
    /// No core to start a worker on.
    NoCores,
    /// The slot table is empty or larger than a token can address.
    Slots(usize),
    /// A worker could not be pinned to its core.
    Pin {
        /// The core.
        core: usize,
        /// The error.
        error: std::io::Error,
    },
    /// A thread could not be spawned.
    Spawn(std::io::Error),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Geometry(e) => write!(f, "ring geometry: {e:?}"),
            PoolError::NoCores => write!(f, "no core to start a worker on"),
            PoolError::Slots(n) => write!(f, "{n} slots: need 1 to 2^32"),
            PoolError::Pin { core, error } => {
                write!(f, "cannot pin a worker to core {core}: {error}")
            }
            PoolError::Spawn(e) => write!(f, "cannot spawn a worker thread: {e}"),
        }
    }
}

impl std::error::Error for PoolError {}

/// Why a submitted frame got no verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateError {
    /// The pool is shut down (or shutting down).
    Closed,
    /// No such worker.
    NoSuchWorker(usize),
    /// Every slot of the worker is in flight, or its submission lane is full:
    /// back off and retry (nothing was submitted).
    Busy,
    /// The frame does not fit a submission record (or the ring).
    TooLarge,
    /// The worker refused the record as malformed.
    Malformed(Malformed),
    /// The worker's answer was too large for its completion ring.
    AnswerTooLarge,
    /// The pool shut down with the frame in flight.
    Shutdown,
    /// A resume named a frame not parked on that worker (never paused,
    /// already resumed, or expired: its answer never came in time).
    NotParked,
    /// A resume's token is not the one its frame's pause returned (the
    /// frame stays parked).
    WrongToken,
    /// The worker's stream table is full ([`PoolConfig::streams`]).
    StreamsFull,
    /// No such stream is open on the worker (it ended with its last chunk
    /// or a block, or was reclaimed as abandoned).
    NoSuchStream,
    /// A chunk's index is not the stream's next (the stream stays open).
    ChunkOutOfOrder,
    /// The pool was started without a complete pool
    /// ([`PoolConfig::complete`] is `None`).
    NoCompletePool,
    /// The complete pool's queue is full: the frame was dropped, counted,
    /// and the pool leaves a `complete_queue_full` skip record for it.
    CompleteQueueFull,
    /// The completion record did not check out.
    BadCompletion(Malformed),
}

impl fmt::Display for GateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateError::Closed => write!(f, "the worker pool is shut down"),
            GateError::NoSuchWorker(w) => write!(f, "no worker {w}"),
            GateError::Busy => write!(f, "the worker has no room for another frame; retry"),
            GateError::TooLarge => write!(f, "the frame is too large for a submission record"),
            GateError::Malformed(m) => write!(f, "the worker refused the record: {}", m.as_str()),
            GateError::AnswerTooLarge => {
                write!(f, "the answer is too large for the completion ring")
            }
            GateError::Shutdown => write!(f, "the pool shut down with the frame in flight"),
            GateError::NotParked => write!(
                f,
                "no such frame is parked on the worker (never paused, already resumed, or expired)"
            ),
            GateError::WrongToken => {
                write!(f, "the resume's token is not the one its pause returned")
            }
            GateError::StreamsFull => write!(f, "the worker's stream table is full"),
            GateError::NoSuchStream => write!(
                f,
                "no such stream is open (ended, or reclaimed as abandoned)"
            ),
            GateError::ChunkOutOfOrder => write!(f, "the chunk is not the stream's next"),
            GateError::BadCompletion(m) => write!(f, "bad completion record: {}", m.as_str()),
            GateError::NoCompletePool => write!(f, "the pool has no complete pool"),
            GateError::CompleteQueueFull => write!(
                f,
                "the complete pool's queue is full: the frame was dropped and counted"
            ),
        }
    }
}

impl std::error::Error for GateError {}

/// A frame to submit: a request frame plus what only the transport carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct GateFrame<'a> {
    /// The request (identity, target, API kind, headers, body, id).
    pub request: RequestFrame<'a>,
    /// The HTTP method, if the gateway has it.
    pub method: Option<&'a str>,
    /// The request path, if the gateway has it; when the API kind is
    /// unknown, the worker derives it from the path.
    pub path: Option<&'a str>,
}

impl<'a> GateFrame<'a> {
    /// A frame with no method or path.
    pub fn new(request: RequestFrame<'a>) -> Self {
        GateFrame {
            request,
            method: None,
            path: None,
        }
    }

    /// The length of this frame's submission record (see "Records" in the
    /// module docs); `None` when it does not fit the layout.
    pub fn encoded_len(&self) -> Option<usize> {
        self.parts(FrameKind::Request, None).encoded_len()
    }

    fn parts(&self, kind: FrameKind, response: Option<&ResponseFrame<'a>>) -> SubmissionParts<'a> {
        let r = &self.request;
        SubmissionParts {
            kind,
            request_id: r.request_id,
            api: r.api,
            response: response.map(|r| (r.status, r.headers, r.body)),
            text: [
                self.method,
                self.path,
                r.tenant,
                r.virtual_key,
                r.environment,
                r.model,
                r.mcp_server,
                r.mcp_tool,
            ],
            headers: r.headers,
            body: r.body,
        }
    }
}

/// One worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Frames run through a gate.
    pub frames: u64,
    /// Submission records refused as malformed.
    pub malformed: u64,
    /// Completions that matched no waiting slot.
    pub stray_completions: u64,
    /// Times the worker found its completion ring full and waited.
    pub completion_full: u64,
    /// Lanes claimed by a submitting thread right now.
    pub claimed_lanes: u64,
}

/// The submitter's half of one worker.
struct Port {
    lanes: Box<[Mutex<Producer>]>,
    /// Lanes `0..shared_lanes` are shared; each later one is used only by
    /// the thread that claimed it (see "Lanes").
    shared_lanes: usize,
    /// Per lane: claimed by a thread (always false for shared lanes).
    claimed: Box<[AtomicBool]>,
    next_lane: AtomicUsize,
    completions: Mutex<Consumer>,
    slots: Slots,
    /// Slots with a registered waiter.
    sleepers: AtomicUsize,
    /// Set by a worker whose completion ring is full.
    drain_wanted: AtomicBool,
    dispatcher: Mutex<Option<std::thread::Thread>>,
    frames: AtomicU64,
    malformed: AtomicU64,
    stray: AtomicU64,
    completion_full: AtomicU64,
    max_record: usize,
}

struct Shared {
    /// Unique in the process: a thread's lane claims name their pool by it.
    id: u64,
    ports: Box<[Port]>,
    /// Lanes into the complete pool's rings (empty without one). A writer
    /// checks `closed` while it holds its lane (see "Shutdown").
    complete: Box<[Mutex<CompleteSubmitter>]>,
    next_complete: AtomicUsize,
    closed: AtomicBool,
    stop_dispatchers: AtomicBool,
    waiter_spin: Duration,
}

/// A pool of pinned workers. Dropping it shuts it down.
pub struct WorkerPool {
    shared: Arc<Shared>,
    cores: Vec<usize>,
    workers: Vec<JoinHandle<()>>,
    dispatchers: Vec<JoinHandle<()>>,
    complete: Option<CompletePool>,
}

/// The cores the calling thread may run on.
fn allowed_cores() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

impl WorkerPool {
    /// Starts one worker per configured core, each with a runner of
    /// `runtime` writing evidence to `sink(worker)`.
    ///
    /// # Errors
    /// [`PoolError`] when the geometry or slot count is out of range, a
    /// thread cannot be spawned or a worker cannot be pinned (the workers
    /// already started are stopped).
    pub fn start(
        runtime: &Runtime,
        config: PoolConfig,
        mut sink: impl FnMut(u32) -> Box<dyn RuntimeSink>,
    ) -> Result<WorkerPool, PoolError> {
        let cores = config.cores.clone().unwrap_or_else(allowed_cores);
        if cores.is_empty() {
            return Err(PoolError::NoCores);
        }
        if config.slots == 0 || config.slots > u32::MAX as usize {
            return Err(PoolError::Slots(config.slots));
        }
        let mut complete = None;
        let mut complete_lanes = Vec::new();
        if let Some(cc) = config.complete {
            let started =
                CompletePool::start(runtime, cc, &mut sink).map_err(PoolError::Geometry)?;
            // One lane stays free: the pool's stop wakes its threads
            // through it.
            for _ in 0..cc.lanes.saturating_sub(1).max(1) {
                match started.submitter() {
                    Ok(s) => complete_lanes.push(Mutex::new(s)),
                    Err(_) => break,
                }
            }
            complete = Some(started);
        }
        let sub_geometry =
            Geometry::new(config.submit_lanes, config.ring_bytes).map_err(PoolError::Geometry)?;
        let done_geometry = Geometry::new(1, config.ring_bytes).map_err(PoolError::Geometry)?;
        let mut ports = Vec::with_capacity(cores.len());
        let mut ends = Vec::with_capacity(cores.len());
        for _ in &cores {
            let submissions = Ring::heap(sub_geometry);
            let completions = Ring::heap(done_geometry);
            let claim = "a new ring has free lanes and no consumer";
            let lanes = (0..config.submit_lanes)
                .map(|_| submissions.producer().map(Mutex::new).expect(claim))
                .collect();
            ends.push((
                submissions.consumer().expect(claim),
                completions.producer().expect(claim),
            ));
            ports.push(Port {
                lanes,
                shared_lanes: config.shared_lanes.clamp(1, config.submit_lanes) as usize,
                claimed: (0..config.submit_lanes)
                    .map(|_| AtomicBool::new(false))
                    .collect(),
                next_lane: AtomicUsize::new(0),
                completions: Mutex::new(completions.consumer().expect(claim)),
                slots: Slots::new(config.slots, config.answer_capacity),
                sleepers: AtomicUsize::new(0),
                drain_wanted: AtomicBool::new(false),
                dispatcher: Mutex::new(None),
                frames: AtomicU64::new(0),
                malformed: AtomicU64::new(0),
                stray: AtomicU64::new(0),
                completion_full: AtomicU64::new(0),
                max_record: sub_geometry.max_record_len(),
            });
        }
        let shared = Arc::new(Shared {
            id: POOL_IDS.fetch_add(1, Ordering::Relaxed),
            ports: ports.into_boxed_slice(),
            complete: complete_lanes.into_boxed_slice(),
            next_complete: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            stop_dispatchers: AtomicBool::new(false),
            waiter_spin: config.waiter_spin,
        });
        let mut pool = WorkerPool {
            shared: Arc::clone(&shared),
            cores: cores.clone(),
            workers: Vec::new(),
            dispatchers: Vec::new(),
            complete,
        };
        for (w, ((consumer, producer), &core)) in ends.into_iter().zip(&cores).enumerate() {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let worker = Worker {
                index: w,
                shared: Arc::clone(&shared),
                submissions: consumer,
                completions: producer,
                spin: config.worker_spin,
                streams: Streams::new(config.streams, config.stream_idle, config.stream_buffer),
                max_parked: config.max_parked,
            };
            let runtime = runtime.clone();
            let sink = sink(w as u32);
            let pin = config.pin;
            let handle = std::thread::Builder::new()
                .name(format!("odock-worker-{w}"))
                .spawn(move || {
                    if pin {
                        let mut set = rustix::thread::CpuSet::new();
                        set.set(core);
                        if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
                            let _ = ready_tx.send(Err(std::io::Error::from(e)));
                            return;
                        }
                    }
                    let runner = runtime.runner(w as u32, sink);
                    let _ = ready_tx.send(Ok(()));
                    worker.run(runner);
                })
                .map_err(PoolError::Spawn)?;
            pool.workers.push(handle);
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(PoolError::Pin { core, error }),
                Err(_) => {
                    return Err(PoolError::Spawn(std::io::Error::other(
                        "a worker thread died while starting",
                    )));
                }
            }
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("odock-dispatch-{w}"))
                .spawn(move || dispatch(&shared, w))
                .map_err(PoolError::Spawn)?;
            *lock(&pool.shared.ports[w].dispatcher) = Some(handle.thread().clone());
            pool.dispatchers.push(handle);
        }
        Ok(pool)
    }

    /// A handle to submit frames with; cheap to clone, usable from any
    /// thread or task, and still valid (answering [`GateError::Closed`])
    /// after the pool shuts down.
    pub fn submitter(&self) -> Submitter {
        Submitter {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.cores.len()
    }

    /// The core of each worker.
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// Worker `w`'s counters.
    pub fn stats(&self, w: usize) -> Option<WorkerStats> {
        self.shared.ports.get(w).map(Port::stats)
    }

    /// Stops the pool (see "Shutdown" in the module docs); returns every
    /// worker's counters. Frames in flight are answered, by their worker or
    /// with [`GateError::Shutdown`].
    pub fn shutdown(mut self) -> Vec<WorkerStats> {
        self.stop();
        self.shared.ports.iter().map(Port::stats).collect()
    }

    fn stop(&mut self) {
        if self.workers.is_empty() && self.dispatchers.is_empty() && self.complete.is_none() {
            return;
        }
        self.shared.closed.store(true, Ordering::SeqCst);
        // Complete frames: a writer holds its lane while it checks `closed`
        // and writes, so once every lane has been taken here, each record
        // is either in a ring (and the pool's stop runs it) or was refused
        // as `Closed`.
        for lane in self.shared.complete.iter() {
            drop(lock(lane));
        }
        if let Some(complete) = self.complete.take() {
            complete.shutdown();
        }
        for port in self.shared.ports.iter().take(self.workers.len()) {
            let mut record = [0u8; codec::SUBMISSION_FIXED];
            record[0] = FrameKind::Shutdown as u8;
            record[1] = codec::VERSION;
            let producer = lock(&port.lanes[0]);
            // The worker answers everything before the shutdown record; if
            // the lane is full, help drain answers so it can move on.
            while let Err(ReserveError::Full { .. }) = producer.push(&record) {
                port.try_drain();
                std::thread::yield_now();
            }
        }
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
        // No completion will be written any more: the dispatchers go (one
        // may hold a completion consumer in its futex wait, for waiters
        // whose frames no worker will answer), then this thread drains last.
        self.shared.stop_dispatchers.store(true, Ordering::SeqCst);
        for port in self.shared.ports.iter() {
            port.kick_dispatcher();
        }
        for handle in self.dispatchers.drain(..) {
            let _ = handle.join();
        }
        for port in self.shared.ports.iter() {
            let mut consumer = lock(&port.completions);
            port.drain(&mut consumer);
            // Frames that raced the shutdown into a ring nobody reads.
            for slot in port.slots.iter() {
                let w = slot.word.load(Ordering::SeqCst);
                match w & 3 {
                    PENDING => port.deliver_error(slot, w, codec::E_SHUTDOWN, "shutdown"),
                    ABANDONED => slot.word.store(w & !3 | FREE, Ordering::Release),
                    _ => {}
                }
            }
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("cores", &self.cores)
            .finish_non_exhaustive()
    }
}

impl Port {
    fn stats(&self) -> WorkerStats {
        WorkerStats {
            frames: self.frames.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            stray_completions: self.stray.load(Ordering::Relaxed),
            completion_full: self.completion_full.load(Ordering::Relaxed),
            claimed_lanes: self
                .claimed
                .iter()
                .filter(|c| c.load(Ordering::Relaxed))
                .count() as u64,
        }
    }

    /// The lane this thread may use alone, claiming one if none is yet
    /// (see "Lanes"); `None`: every claimable lane is taken.
    fn own_lane(&self, shared: &Arc<Shared>, worker: usize) -> Option<usize> {
        if self.shared_lanes == self.lanes.len() {
            return None;
        }
        CLAIMS
            .try_with(|claims| {
                let mut claims = claims.borrow_mut();
                if let Some(c) = claims
                    .iter_mut()
                    .find(|c| c.pool == shared.id && c.worker == worker)
                {
                    if c.lane.is_some() || c.retry > 0 {
                        c.retry = c.retry.saturating_sub(1);
                        return c.lane;
                    }
                    c.lane = self.claim_lane();
                    c.retry = CLAIM_RETRY;
                    return c.lane;
                }
                // A new pool or worker for this thread: forget claims on
                // pools that are gone (their drop releases nothing).
                claims.retain(|c| c.shared.strong_count() > 0);
                let lane = self.claim_lane();
                claims.push(Claim {
                    pool: shared.id,
                    worker,
                    lane,
                    retry: CLAIM_RETRY,
                    shared: Arc::downgrade(shared),
                });
                lane
            })
            .ok()
            .flatten()
    }

    fn claim_lane(&self) -> Option<usize> {
        (self.shared_lanes..self.lanes.len()).find(|&i| {
            // Acquire pairs with the Release store of the lane's previous
            // claimant in `Claim::drop`: its last use of the lane happens
            // before ours (the lane's mutex orders them as well).
            self.claimed[i]
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
    }

    fn kick_dispatcher(&self) {
        if let Some(t) = lock(&self.dispatcher).as_ref() {
            t.unpark();
        }
    }

    /// Drains the completion ring if no one else is (a busy-polling
    /// waiter's step).
    fn try_drain(&self) {
        if let Ok(mut consumer) = self.completions.try_lock() {
            self.drain(&mut consumer);
        }
    }

    /// Routes every completion ready to its slot (see "Routing").
    fn drain(&self, consumer: &mut MutexGuard<'_, Consumer>) {
        let mut batch = consumer.batch();
        loop {
            let record = match batch.next() {
                Ok(Some(r)) => r,
                Ok(None) => return,
                // An in-process heap ring written only by our worker: a
                // fault here is a bug. The consumer stays poisoned; waiters
                // are answered at shutdown.
                Err(CorruptRing { .. }) => return,
            };
            self.route(&record);
        }
    }

    fn route(&self, record: &[u8]) {
        let Some(token) = codec::peek_token(record) else {
            self.stray.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (generation, index) = slots::split(token);
        let Some(slot) = self.slots.get(index) else {
            self.stray.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let pending = slots::word(generation, PENDING);
        let w = slot.word.load(Ordering::Acquire);
        if w == slots::word(generation, ABANDONED) {
            let _ = slot.word.compare_exchange(
                w,
                slots::word(generation, FREE),
                Ordering::Release,
                Ordering::Relaxed,
            );
            return;
        }
        if w != pending {
            self.stray.fetch_add(1, Ordering::Relaxed);
            return;
        }
        {
            let mut answer = lock(&slot.answer);
            answer.clear();
            match CompletionView::decode(record) {
                Ok(_) => answer.extend_from_slice(record),
                Err(m) => {
                    let detail = m.as_str();
                    answer.resize(codec::error_len(detail), 0);
                    codec::encode_error(token, codec::E_BAD_COMPLETION, detail, &mut answer);
                    answer[3] = m.code();
                }
            }
        }
        self.complete(slot, pending, generation);
    }

    /// Answers a PENDING slot with an error completion (shutdown).
    fn deliver_error(&self, slot: &Slot, w: u64, code: u8, detail: &str) {
        let generation = (w >> 2) as u32;
        {
            let mut answer = lock(&slot.answer);
            answer.clear();
            answer.resize(codec::error_len(detail), 0);
            codec::encode_error(0, code, detail, &mut answer);
        }
        self.complete(slot, w, generation);
    }

    /// PENDING → DONE, then wakes the waiter; an abandoned slot is freed.
    fn complete(&self, slot: &Slot, pending: u64, generation: u32) {
        // Release publishes the answer copy; pairs with the waiter's
        // Acquire load in `Ticket::try_take`.
        if slot
            .word
            .compare_exchange(
                pending,
                slots::word(generation, DONE),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // Abandoned meanwhile: nobody will read it.
            let _ = slot.word.compare_exchange(
                slots::word(generation, ABANDONED),
                slots::word(generation, FREE),
                Ordering::Release,
                Ordering::Relaxed,
            );
            return;
        }
        // DONE is stored before the waiter cell is locked: a waiter that
        // registers after our look finds DONE in its re-check.
        if let Some(waiter) = lock(&slot.waiter).take() {
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            waiter.wake();
        }
    }
}

/// The dispatcher of worker `w`: the drainer of last resort, for waiters
/// that sleep.
fn dispatch(shared: &Shared, w: usize) {
    let port = &shared.ports[w];
    loop {
        if shared.stop_dispatchers.load(Ordering::SeqCst) {
            return;
        }
        let wanted = port.drain_wanted.swap(false, Ordering::AcqRel);
        if port.sleepers.load(Ordering::SeqCst) == 0 && !wanted {
            std::thread::park();
            continue;
        }
        let mut consumer = lock(&port.completions);
        loop {
            port.drain(&mut consumer);
            if port.sleepers.load(Ordering::SeqCst) == 0
                || shared.stop_dispatchers.load(Ordering::Relaxed)
            {
                break;
            }
            // Sleeps on the completion ring's futex: the worker's commit
            // wakes it. The timeout only bounds how late a stop is seen.
            if consumer.wait(Some(Duration::from_millis(20))).is_err() {
                break;
            }
        }
    }
}

/// How long a leading waiter sleeps on the completion futex before it
/// looks at the pool's state again (bounds how late it sees a shutdown).
const LEAD_FOR: Duration = Duration::from_millis(10);

/// Answers a worker commits quietly before it checks for a sleeping
/// drainer in the middle of a long batch.
const NOTIFY_EVERY: usize = 16;

/// A worker thread's state.
struct Worker {
    index: usize,
    shared: Arc<Shared>,
    submissions: Consumer,
    completions: Producer,
    spin: Duration,
    streams: Streams,
    max_parked: usize,
}

/// Storage with the layout of a [`Header`], so the worker's header vector
/// survives between frames of different lifetimes without reallocating.
#[derive(Clone, Copy)]
#[repr(C)]
struct HeaderSlot([usize; 4]);

const _: () = assert!(std::mem::size_of::<HeaderSlot>() == std::mem::size_of::<Header<'static>>());
const _: () =
    assert!(std::mem::align_of::<HeaderSlot>() == std::mem::align_of::<Header<'static>>());

/// An empty vector of one element type as an empty vector of another of the
/// same size and alignment, keeping its allocation (the standard library's
/// in-place collect, as in the runner).
fn recycle<A, B>(mut v: Vec<A>) -> Vec<B> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

impl Worker {
    fn run(self, mut runner: GateRunner) {
        let Worker {
            index,
            shared,
            mut submissions,
            completions,
            spin,
            mut streams,
            max_parked,
        } = self;
        let port = &shared.ports[index];
        let done = &completions;
        let mut headers: Vec<HeaderSlot> = Vec::with_capacity(64);
        let mut response_headers: Vec<HeaderSlot> = Vec::with_capacity(64);
        // Paused frames: a copy of each one's submission record, by request
        // id (see "Pause and resume").
        let mut parked: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut next_expiry = Instant::now();
        let mut idle_since: Option<Instant> = None;
        let mut polls = 0u32;
        loop {
            let mut handled = 0usize;
            let mut stop = false;
            {
                let mut batch = submissions.batch();
                loop {
                    let record = match batch.next() {
                        Ok(Some(r)) => r,
                        Ok(None) => break,
                        Err(_) => {
                            // A heap ring only our submitters write: a bug.
                            stop = true;
                            break;
                        }
                    };
                    handled += 1;
                    if handled.is_multiple_of(NOTIFY_EVERY) {
                        // A long batch: let a sleeping drainer start on
                        // the answers so far.
                        done.notify();
                    }
                    match codec::peek_kind(&record) {
                        Some(FrameKind::Resume) => {
                            match ResumeView::decode(&record) {
                                Err(m) => refuse(done, port, &record, m),
                                Ok(r) => {
                                    resume(&mut runner, &mut parked, &r, done, port, &mut headers);
                                    port.frames.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            continue;
                        }
                        Some(FrameKind::Chunk) => {
                            match ChunkView::decode(&record) {
                                Err(m) => refuse(done, port, &record, m),
                                Ok(c) => {
                                    let h = (&mut headers, &mut response_headers);
                                    streams.chunk(&mut runner, &c, done, port, h);
                                    port.frames.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            continue;
                        }
                        _ => {}
                    }
                    match SubmissionView::decode(&record) {
                        Err(m) => refuse(done, port, &record, m),
                        Ok(view) => match view.kind {
                            FrameKind::Shutdown => {
                                stop = true;
                                break;
                            }
                            FrameKind::StreamOpen => {
                                streams.open(&mut runner, &record, view.token, done, port);
                            }
                            kind => {
                                let mut h: Vec<Header<'_>> = recycle(std::mem::take(&mut headers));
                                let mut rh: Vec<Header<'_>> =
                                    recycle(std::mem::take(&mut response_headers));
                                view.headers_into(&mut h);
                                view.response_headers_into(&mut rh);
                                let frame = request_frame(&view, &h);
                                let response = ResponseFrame {
                                    status: view.status,
                                    headers: &rh,
                                    body: view.response_body,
                                };
                                let token = view.token;
                                let mut paused = false;
                                if kind == FrameKind::Request {
                                    let outcome = runner.request(&frame);
                                    match outcome.verdict {
                                        Verdict::Pause { token: pause, .. }
                                            if parked.len() >= max_parked =>
                                        {
                                            fail_pause(
                                                &mut runner,
                                                &frame,
                                                pause,
                                                done,
                                                port,
                                                token,
                                            );
                                        }
                                        Verdict::Pause { .. } => {
                                            paused = true;
                                            answer(done, port, token, &outcome);
                                        }
                                        _ => answer(done, port, token, &outcome),
                                    }
                                } else {
                                    let outcome = runner.response(&frame, &response);
                                    answer(done, port, token, &outcome);
                                }
                                if paused {
                                    park_copy(&mut runner, &mut parked, &record, view.request_id);
                                }
                                port.frames.fetch_add(1, Ordering::Relaxed);
                                headers = recycle(h);
                                response_headers = recycle(rh);
                            }
                        },
                    }
                }
            }
            // One wake-up check for the batch's quiet commits (before the
            // worker could sleep, as the ring requires).
            done.notify();
            if !parked.is_empty() || streams.open > 0 {
                let now = Instant::now();
                if now >= next_expiry {
                    expire(&mut runner, &mut parked, now);
                    streams.sweep(&mut runner, now);
                    next_expiry = now + EXPIRE_EVERY;
                }
            }
            if stop {
                // Frames still parked get no answer now, and open streams
                // no more chunks: expire them, with their evidence.
                let later = Instant::now() + PARKED_AT_STOP;
                expire(&mut runner, &mut parked, later);
                streams.sweep(&mut runner, later);
                return;
            }
            if handled > 0 {
                idle_since = None;
                continue;
            }
            // The clock is read every 64 empty polls; a zero spin sleeps at
            // once.
            polls = polls.wrapping_add(1);
            let sleep_now = spin.is_zero();
            if !sleep_now && !polls.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if sleep_now || since.elapsed() >= spin {
                // Sleeps on the submission ring's futex; a submitter's
                // commit (or the shutdown record) wakes it. With frames
                // parked it wakes in time to expire them.
                let nap = if parked.is_empty() && streams.open == 0 {
                    Duration::from_secs(1)
                } else {
                    EXPIRE_EVERY
                };
                let _ = submissions.wait(Some(nap));
                idle_since = None;
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// How often a worker with parked frames looks for overdue ones.
const EXPIRE_EVERY: Duration = Duration::from_millis(20);

/// At a worker's stop, parked frames are expired as if this much later.
const PARKED_AT_STOP: Duration = Duration::from_secs(365 * 24 * 3600);

/// Counts a malformed record and answers it when it carries a token.
fn refuse(done: &Producer, port: &Port, record: &[u8], m: Malformed) {
    port.malformed.fetch_add(1, Ordering::Relaxed);
    if let Some(token) = codec::peek_token(record) {
        write_error(done, port, token, m.code(), m.as_str());
    }
}

/// Keeps a copy of a frame that just paused in ring memory (whose space is
/// released after this batch) and points the runner's parked frame at it.
/// The pause path's allocation: one copy of the record per paused frame.
fn park_copy(
    runner: &mut GateRunner,
    parked: &mut HashMap<u64, Vec<u8>>,
    record: &[u8],
    request_id: u64,
) {
    let copy = record.to_vec();
    let body = SubmissionView::decode(&copy)
        .expect("the same bytes checked out a moment ago")
        .body;
    // The copy's heap buffer does not move when the vector moves into the
    // map, so the body the runner now points at stays put.
    if runner.move_parked(request_id, body) {
        parked.insert(request_id, copy);
    }
}

/// The parked-frame store is full: the frame that just paused (still in
/// ring memory, where the runner parked it) is resumed at once as if its
/// integration call failed, as often as its chain pauses, and the final
/// outcome is its answer. The plugin decides what a failed call means, and
/// its decision is the evidence.
fn fail_pause(
    runner: &mut GateRunner,
    frame: &RequestFrame<'_>,
    mut pause: u64,
    done: &Producer,
    port: &Port,
    token: u64,
) {
    loop {
        let failed = IntegrationAnswer {
            token: pause,
            outcome: odock_plugin_abi::AnswerOutcome::Failed,
            body: &[],
        };
        match runner.resume(frame, &failed) {
            Ok(outcome) => match outcome.verdict {
                Verdict::Pause { token: again, .. } => pause = again,
                _ => {
                    answer(done, port, token, &outcome);
                    return;
                }
            },
            Err(_) => {
                write_error(
                    done,
                    port,
                    token,
                    codec::E_NOT_PARKED,
                    "no such frame is parked",
                );
                return;
            }
        }
    }
}

/// Resumes a parked frame with its integration answer and answers like a
/// request.
fn resume(
    runner: &mut GateRunner,
    parked: &mut HashMap<u64, Vec<u8>>,
    r: &ResumeView<'_>,
    done: &Producer,
    port: &Port,
    headers: &mut Vec<HeaderSlot>,
) {
    let Some(copy) = parked.remove(&r.request_id) else {
        write_error(
            done,
            port,
            r.token,
            codec::E_NOT_PARKED,
            "no such frame is parked",
        );
        return;
    };
    let view = SubmissionView::decode(&copy).expect("checked when it was parked");
    let mut h: Vec<Header<'_>> = recycle(std::mem::take(headers));
    view.headers_into(&mut h);
    let frame = request_frame(&view, &h);
    let integration = IntegrationAnswer {
        token: r.pause_token,
        outcome: r.outcome,
        body: r.body,
    };
    let keep = match runner.resume(&frame, &integration) {
        Ok(outcome) => {
            // Paused again by a later plugin: still parked, same copy.
            let again = matches!(outcome.verdict, Verdict::Pause { .. });
            answer(done, port, r.token, &outcome);
            again
        }
        Err(ResumeError::WrongToken { .. }) => {
            write_error(
                done,
                port,
                r.token,
                codec::E_WRONG_TOKEN,
                "wrong pause token",
            );
            true
        }
        Err(ResumeError::NotParked { .. } | ResumeError::OtherFrame { .. }) => {
            write_error(
                done,
                port,
                r.token,
                codec::E_NOT_PARKED,
                "no such frame is parked",
            );
            false
        }
    };
    *headers = recycle(h);
    if keep {
        parked.insert(r.request_id, copy);
    }
}

/// Expires overdue parked frames (the runner records a timeout decision
/// for each) and drops their copies.
fn expire(runner: &mut GateRunner, parked: &mut HashMap<u64, Vec<u8>>, now: Instant) {
    if runner.expire_parked(now) > 0 || runner.parked() != parked.len() {
        parked.retain(|id, _| runner.is_parked(*id));
    }
}

/// One entry of a worker's stream table.
struct StreamSlot {
    /// Bumped at each open; the stream id is `generation << 32 | index`.
    generation: u32,
    /// The runner's state of the open stream; `None` when the entry is
    /// free.
    state: Option<StreamState>,
    /// A copy of the open record (request frame, status, response headers),
    /// which every chunk's frame views. Kept allocated between streams.
    record: Vec<u8>,
    next: u64,
    request_id: u64,
    last_active: Instant,
}

/// A worker's stream table: bounded, owned by the worker thread alone.
struct Streams {
    slots: Vec<StreamSlot>,
    open: usize,
    idle: Duration,
    buffer_cap: usize,
}

impl Streams {
    fn new(n: usize, idle: Duration, buffer_cap: usize) -> Streams {
        let now = Instant::now();
        Streams {
            slots: (0..n.min(u32::MAX as usize))
                .map(|_| StreamSlot {
                    generation: 0,
                    state: None,
                    record: Vec::new(),
                    next: 0,
                    request_id: 0,
                    last_active: now,
                })
                .collect(),
            open: 0,
            idle,
            buffer_cap,
        }
    }

    /// Opens a stream for the open record `record` (already checked) and
    /// answers with its id.
    fn open(
        &mut self,
        runner: &mut GateRunner,
        record: &[u8],
        token: u64,
        done: &Producer,
        port: &Port,
    ) {
        let now = Instant::now();
        let mut free = self.slots.iter().position(|s| s.state.is_none());
        if free.is_none() {
            self.sweep(runner, now);
            free = self.slots.iter().position(|s| s.state.is_none());
        }
        let Some(index) = free else {
            write_error(
                done,
                port,
                token,
                codec::E_STREAMS_FULL,
                "stream table full",
            );
            return;
        };
        let slot = &mut self.slots[index];
        slot.record.clear();
        slot.record.extend_from_slice(record);
        let view = SubmissionView::decode(&slot.record).expect("the same bytes checked out");
        // Only the identity and target matter for the stream's chain: no
        // header views needed.
        let frame = request_frame(&view, &[]);
        slot.state = Some(runner.stream_state(&frame, self.buffer_cap));
        slot.generation = slot.generation.wrapping_add(1);
        slot.next = 0;
        slot.request_id = view.request_id;
        slot.last_active = now;
        self.open += 1;
        let buffers = slot.state.as_ref().is_some_and(StreamState::buffers);
        let id = slots::token(slot.generation, index);
        write_fixed(done, port, |buf| {
            codec::encode_opened(token, id, buffers, buf);
        });
    }

    /// Runs the response gate over one chunk of an open stream and answers
    /// with its outcome; the last chunk, or a block, ends the stream.
    fn chunk(
        &mut self,
        runner: &mut GateRunner,
        c: &ChunkView<'_>,
        done: &Producer,
        port: &Port,
        (headers, response_headers): (&mut Vec<HeaderSlot>, &mut Vec<HeaderSlot>),
    ) {
        let (generation, index) = slots::split(c.stream);
        let Some(slot) = self
            .slots
            .get_mut(index)
            .filter(|s| s.state.is_some() && s.generation == generation)
        else {
            write_error(done, port, c.token, codec::E_NO_STREAM, "no such stream");
            return;
        };
        if c.index != slot.next {
            write_error(
                done,
                port,
                c.token,
                codec::E_CHUNK_ORDER,
                "chunk out of order",
            );
            return;
        }
        let StreamSlot { record, state, .. } = slot;
        let state = state.as_mut().expect("checked open above");
        let view = SubmissionView::decode(record).expect("checked when the stream opened");
        let mut h: Vec<Header<'_>> = recycle(std::mem::take(headers));
        let mut rh: Vec<Header<'_>> = recycle(std::mem::take(response_headers));
        view.headers_into(&mut h);
        view.response_headers_into(&mut rh);
        let frame = request_frame(&view, &h);
        let chunk = ChunkFrame {
            status: view.status,
            headers: &rh,
            chunk: c.chunk,
            index: c.index,
            last: c.last,
        };
        let outcome = runner.response_chunk(&frame, &chunk, state);
        let ended = c.last || matches!(outcome.verdict, Verdict::Block { .. });
        answer(done, port, c.token, &outcome);
        *headers = recycle(h);
        *response_headers = recycle(rh);
        slot.next += 1;
        slot.last_active = Instant::now();
        if ended {
            slot.state = None;
            self.open -= 1;
        }
    }

    /// Reclaims streams idle since before `now - idle` (all of them when
    /// `now` is far ahead), each leaving a `stream_abandoned` skip record:
    /// the rest of its answer was never gated.
    fn sweep(&mut self, runner: &mut GateRunner, now: Instant) {
        if self.open == 0 {
            return;
        }
        for slot in &mut self.slots {
            if slot.state.is_some() && now.saturating_duration_since(slot.last_active) >= self.idle
            {
                slot.state = None;
                self.open -= 1;
                runner.record_skip(&SkipRecord {
                    request_id: slot.request_id,
                    worker: runner.worker(),
                    gate: odock_plugin_abi::Gate::Response,
                    plugin: "",
                    binding: u32::MAX,
                    cause: "stream_abandoned",
                    count: 1,
                });
            }
        }
    }
}

/// Writes a completion of [`codec::COMPLETION_FIXED`] bytes.
fn write_fixed(completions: &Producer, port: &Port, encode: impl Fn(&mut [u8])) {
    loop {
        match completions.reserve(codec::COMPLETION_FIXED) {
            Ok(mut record) => {
                encode(&mut record);
                record.commit_quiet();
                return;
            }
            Err(ReserveError::Full { .. }) => wait_for_room(port),
            Err(ReserveError::TooLarge { .. }) => return,
        }
    }
}

/// The runner's view of a submitted request, borrowing ring memory.
fn request_frame<'a>(view: &SubmissionView<'a>, headers: &'a [Header<'a>]) -> RequestFrame<'a> {
    let path = view.text(codec::PATH);
    let api = match (view.api, path) {
        (ApiKind::Unknown, Some(p)) => ApiKind::from_path(p.as_bytes()),
        (api, _) => api,
    };
    RequestFrame {
        request_id: view.request_id,
        tenant: view.text(codec::TENANT),
        virtual_key: view.text(codec::VIRTUAL_KEY),
        environment: view.text(codec::ENVIRONMENT),
        model: view.text(codec::MODEL),
        mcp_server: view.text(codec::MCP_SERVER),
        mcp_tool: view.text(codec::MCP_TOOL),
        api,
        headers,
        body: view.body,
    }
}

/// Writes the completion of `outcome` (a pause answer for a paused
/// frame), in place.
fn answer(completions: &Producer, port: &Port, token: u64, outcome: &Outcome<'_>) {
    let len = codec::answer_len(outcome);
    let mut full = false;
    loop {
        match completions.reserve(len) {
            Ok(mut record) => {
                codec::encode_answer(token, outcome, &mut record);
                // The worker notifies once per batch (see `Worker::run`).
                record.commit_quiet();
                return;
            }
            Err(ReserveError::TooLarge { .. }) => break,
            Err(ReserveError::Full { .. }) => {
                if !full {
                    port.completion_full.fetch_add(1, Ordering::Relaxed);
                    full = true;
                }
                wait_for_room(port);
            }
        }
    }
    write_error(
        completions,
        port,
        token,
        codec::E_TOO_LARGE,
        "answer too large",
    );
}

/// The completion ring is full: ask the dispatcher to drain, give the core
/// away a moment.
fn wait_for_room(port: &Port) {
    port.drain_wanted.store(true, Ordering::Release);
    port.kick_dispatcher();
    std::thread::yield_now();
}

fn write_error(completions: &Producer, port: &Port, token: u64, code: u8, detail: &str) {
    let len = codec::error_len(detail);
    loop {
        match completions.reserve(len) {
            Ok(mut record) => {
                codec::encode_error(token, code, detail, &mut record);
                record.commit();
                return;
            }
            Err(ReserveError::Full { .. }) => wait_for_room(port),
            Err(ReserveError::TooLarge { .. }) => return,
        }
    }
}

/// Submits frames to a pool's workers. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Submitter {
    shared: Arc<Shared>,
}

impl fmt::Debug for Submitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submitter")
            .field("workers", &self.shared.ports.len())
            .finish()
    }
}

impl Submitter {
    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.shared.ports.len()
    }

    /// Runs the request gate over `frame` on worker `worker` and waits for
    /// the answer (busy-polling, then parked).
    ///
    /// # Errors
    /// [`GateError`]: nothing submitted (`Closed`, `Busy`, `TooLarge`,
    /// `NoSuchWorker`), or the worker's refusal.
    pub fn request(&self, worker: usize, frame: &GateFrame<'_>) -> Result<Answer<'_>, GateError> {
        self.submit(worker, frame)?.wait()
    }

    /// The same as [`Self::request`], for async code: the task is woken when
    /// the answer arrives (no runtime needed).
    ///
    /// # Errors
    /// As for [`Self::request`].
    pub async fn request_async(
        &self,
        worker: usize,
        frame: &GateFrame<'_>,
    ) -> Result<Answer<'_>, GateError> {
        self.submit(worker, frame)?.await
    }

    /// Writes the request frame into worker `worker`'s submission ring and
    /// returns the ticket to wait on ([`Ticket::wait`], or `.await` it).
    ///
    /// # Errors
    /// As for [`Self::request`], for the submission part.
    pub fn submit(&self, worker: usize, frame: &GateFrame<'_>) -> Result<Ticket<'_>, GateError> {
        self.submit_parts(worker, frame.parts(FrameKind::Request, None))
    }

    /// Runs the response gate over the upstream's whole answer `response` to
    /// `request` on worker `worker`, and waits for the answer (whose headers
    /// and body are the response's, as the chain left them).
    ///
    /// # Errors
    /// As for [`Self::request`].
    pub fn response(
        &self,
        worker: usize,
        request: &GateFrame<'_>,
        response: &ResponseFrame<'_>,
    ) -> Result<Answer<'_>, GateError> {
        self.submit_response(worker, request, response)?.wait()
    }

    /// The same as [`Self::response`], for async code.
    ///
    /// # Errors
    /// As for [`Self::request`].
    pub async fn response_async(
        &self,
        worker: usize,
        request: &GateFrame<'_>,
        response: &ResponseFrame<'_>,
    ) -> Result<Answer<'_>, GateError> {
        self.submit_response(worker, request, response)?.await
    }

    /// Submits a response frame; see [`Self::submit`].
    ///
    /// # Errors
    /// As for [`Self::submit`].
    pub fn submit_response(
        &self,
        worker: usize,
        request: &GateFrame<'_>,
        response: &ResponseFrame<'_>,
    ) -> Result<Ticket<'_>, GateError> {
        self.submit_parts(worker, request.parts(FrameKind::Response, Some(response)))
    }

    /// Resumes a frame that paused on worker `worker` (its answer's verdict
    /// was [`Verdict::Pause`]) with the answer to its integration call
    /// (`answer.token` is the pause's token; a call that timed out is
    /// answered with [`AnswerOutcome::Timeout`](odock_plugin_abi::AnswerOutcome::Timeout)),
    /// and waits for the verdict, which is like a request's (and may pause
    /// again).
    ///
    /// # Errors
    /// As for [`Self::request`]; [`GateError::NotParked`] when no frame of
    /// `request_id` is parked on that worker (resumed already, or expired:
    /// its answer came too late); [`GateError::WrongToken`].
    pub fn resume(
        &self,
        worker: usize,
        request_id: u64,
        answer: &IntegrationAnswer<'_>,
    ) -> Result<Answer<'_>, GateError> {
        self.submit_resume(worker, request_id, answer)?.wait()
    }

    /// The same as [`Self::resume`], for async code.
    ///
    /// # Errors
    /// As for [`Self::resume`].
    pub async fn resume_async(
        &self,
        worker: usize,
        request_id: u64,
        answer: &IntegrationAnswer<'_>,
    ) -> Result<Answer<'_>, GateError> {
        self.submit_resume(worker, request_id, answer)?.await
    }

    /// Submits a resume record; see [`Self::resume`] and [`Self::submit`].
    ///
    /// # Errors
    /// As for [`Self::submit`].
    pub fn submit_resume(
        &self,
        worker: usize,
        request_id: u64,
        answer: &IntegrationAnswer<'_>,
    ) -> Result<Ticket<'_>, GateError> {
        let len = ResumeView::encoded_len(answer.body).ok_or(GateError::TooLarge)?;
        self.enqueue(worker, len, |token, buf| {
            ResumeView::encode(
                token,
                request_id,
                answer.token,
                answer.outcome,
                answer.body,
                buf,
            );
        })
    }

    /// Opens a stream on worker `worker` for a streamed (SSE) answer to
    /// `request`: the worker keeps the stream's state (see "Streams" in the
    /// module docs) until its last chunk, a block, or its reclaim as
    /// abandoned ([`PoolConfig::stream_idle`]). Then send the chunks in
    /// order with [`Self::chunk`].
    ///
    /// # Errors
    /// As for [`Self::request`]; [`GateError::StreamsFull`].
    pub fn open_stream(
        &self,
        worker: usize,
        request: &GateFrame<'_>,
        status: u16,
        headers: &[Header<'_>],
    ) -> Result<Stream, GateError> {
        let answer = self.submit_open(worker, request, status, headers)?.wait()?;
        Stream::from_answer(worker, &answer)
    }

    /// The same as [`Self::open_stream`], for async code.
    ///
    /// # Errors
    /// As for [`Self::open_stream`].
    pub async fn open_stream_async(
        &self,
        worker: usize,
        request: &GateFrame<'_>,
        status: u16,
        headers: &[Header<'_>],
    ) -> Result<Stream, GateError> {
        let answer = self.submit_open(worker, request, status, headers)?.await?;
        Stream::from_answer(worker, &answer)
    }

    fn submit_open(
        &self,
        worker: usize,
        request: &GateFrame<'_>,
        status: u16,
        headers: &[Header<'_>],
    ) -> Result<Ticket<'_>, GateError> {
        let head = ResponseFrame {
            status,
            headers,
            body: &[],
        };
        self.submit_parts(worker, request.parts(FrameKind::StreamOpen, Some(&head)))
    }

    /// Runs the response gate over the next chunk of `stream` and waits for
    /// its outcome: the verdict (a block ends the stream: send a final
    /// error event instead of the chunk), the chunk as the chain left it
    /// ([`Answer::body`], `None` when unchanged) and, on chunk 0, the
    /// response headers as the chain left them. `last` ends the stream.
    ///
    /// # Errors
    /// As for [`Self::request`]; [`GateError::NoSuchStream`] when the
    /// stream has ended or was reclaimed as abandoned.
    pub fn chunk(
        &self,
        stream: &mut Stream,
        chunk: &[u8],
        last: bool,
    ) -> Result<Answer<'_>, GateError> {
        let answer = self.submit_chunk(stream, chunk, last)?.wait()?;
        stream.next += 1;
        Ok(answer)
    }

    /// The same as [`Self::chunk`], for async code.
    ///
    /// # Errors
    /// As for [`Self::chunk`].
    pub async fn chunk_async(
        &self,
        stream: &mut Stream,
        chunk: &[u8],
        last: bool,
    ) -> Result<Answer<'_>, GateError> {
        let answer = self.submit_chunk(stream, chunk, last)?.await?;
        stream.next += 1;
        Ok(answer)
    }

    fn submit_chunk(
        &self,
        stream: &Stream,
        chunk: &[u8],
        last: bool,
    ) -> Result<Ticket<'_>, GateError> {
        let len = ChunkView::encoded_len(chunk).ok_or(GateError::TooLarge)?;
        let (id, index) = (stream.id, stream.next);
        self.enqueue(stream.worker, len, |token, buf| {
            ChunkView::encode(token, id, index, last, chunk, buf);
        })
    }

    /// Hands the finished exchange to the complete gate: the frame is
    /// written once into the ring of a complete-pool thread (chosen by
    /// request id), which runs the complete gate off the workers' hot path.
    /// Fire and forget: this never waits for the pool or for ring space (a
    /// lane's lock is held only for the in-place encode).
    ///
    /// # Errors
    /// [`GateError::CompleteQueueFull`] when that thread's ring is full (the
    /// frame is dropped, counted, and the pool leaves a
    /// `complete_queue_full` skip record); [`GateError::TooLarge`];
    /// [`GateError::NoCompletePool`]; [`GateError::Closed`].
    pub fn submit_complete(
        &self,
        request: &GateFrame<'_>,
        response: &ResponseFrame<'_>,
    ) -> Result<(), GateError> {
        let lanes = &self.shared.complete;
        if lanes.is_empty() {
            return Err(GateError::NoCompletePool);
        }
        let start = self.shared.next_complete.fetch_add(1, Ordering::Relaxed);
        let mut guard = None;
        for i in 0..lanes.len() {
            if let Ok(g) = lanes[(start + i) % lanes.len()].try_lock() {
                guard = Some(g);
                break;
            }
        }
        let lane = match guard {
            Some(g) => g,
            None => lock(&lanes[start % lanes.len()]),
        };
        // Checked under the lane: pairs with the shutdown, which stores
        // `closed` and then takes every lane before it stops the pool.
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(GateError::Closed);
        }
        let mut frame = request.request;
        if let (ApiKind::Unknown, Some(p)) = (frame.api, request.path) {
            frame.api = ApiKind::from_path(p.as_bytes());
        }
        lane.submit(&frame, response).map_err(|e| match e {
            SubmitError::Full => GateError::CompleteQueueFull,
            SubmitError::TooLarge { .. } => GateError::TooLarge,
        })
    }

    fn submit_parts(
        &self,
        worker: usize,
        parts: SubmissionParts<'_>,
    ) -> Result<Ticket<'_>, GateError> {
        let len = parts.encoded_len().ok_or(GateError::TooLarge)?;
        self.enqueue(worker, len, |token, buf| parts.encode(token, buf))
    }

    /// Submits a record encoded elsewhere (see "Records" in the module docs),
    /// for a peer that encodes frames itself; bytes 8..16 (the token) are
    /// overwritten. The worker checks it like any other record.
    ///
    /// # Errors
    /// As for [`Self::submit`]; `TooLarge` for a record shorter than 16
    /// bytes (it could not carry a token).
    pub fn submit_record(&self, worker: usize, record: &[u8]) -> Result<Ticket<'_>, GateError> {
        if record.len() < 16 {
            return Err(GateError::TooLarge);
        }
        self.enqueue(worker, record.len(), |token, buf| {
            buf.copy_from_slice(record);
            buf[8..16].copy_from_slice(&token.to_le_bytes());
        })
    }

    fn enqueue(
        &self,
        worker: usize,
        len: usize,
        write: impl FnOnce(u64, &mut [u8]),
    ) -> Result<Ticket<'_>, GateError> {
        let port = self
            .shared
            .ports
            .get(worker)
            .ok_or(GateError::NoSuchWorker(worker))?;
        if len > port.max_record {
            return Err(GateError::TooLarge);
        }
        let (index, generation) = port.slots.claim().ok_or(GateError::Busy)?;
        let slot = port.slots.get(index).expect("claimed slots exist");
        let release = |e: GateError| {
            // Back to FREE whatever happened meanwhile (the shutdown scan
            // may have answered it): no ticket exists for it yet.
            slot.word
                .store(slots::word(generation, FREE), Ordering::Release);
            Err(e)
        };
        // SeqCst, after the claim: pairs with the shutdown's store of
        // `closed` before its scan of the slots.
        if self.shared.closed.load(Ordering::SeqCst) {
            return release(GateError::Closed);
        }
        let token = slots::token(generation, index);
        let producer = match port.own_lane(&self.shared, worker) {
            // Ours alone: the lock is never contended.
            Some(lane) => lock(&port.lanes[lane]),
            None => {
                let lanes = port.shared_lanes;
                let start = port.next_lane.fetch_add(1, Ordering::Relaxed);
                let mut guard = None;
                for i in 0..lanes {
                    if let Ok(g) = port.lanes[(start + i) % lanes].try_lock() {
                        guard = Some(g);
                        break;
                    }
                }
                match guard {
                    Some(g) => g,
                    None => lock(&port.lanes[start % lanes]),
                }
            }
        };
        match producer.reserve(len) {
            Ok(mut record) => {
                write(token, &mut record);
                record.commit();
            }
            Err(ReserveError::Full { .. }) => return release(GateError::Busy),
            Err(ReserveError::TooLarge { .. }) => return release(GateError::TooLarge),
        }
        drop(producer);
        Ok(Ticket {
            shared: &self.shared,
            port,
            slot,
            generation,
            registered: false,
            taken: false,
        })
    }
}

/// A stream open on a worker ([`Submitter::open_stream`]): where its
/// chunks go, and the index of the next one.
#[derive(Debug)]
pub struct Stream {
    worker: usize,
    id: u64,
    next: u64,
    buffers: bool,
}

impl Stream {
    fn from_answer(worker: usize, answer: &Answer<'_>) -> Result<Stream, GateError> {
        match answer.view().stream {
            Some((id, buffers)) => Ok(Stream {
                worker,
                id,
                next: 0,
                buffers,
            }),
            None => Err(GateError::BadCompletion(Malformed::Kind)),
        }
    }

    /// The worker the stream is open on.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The stream's id on its worker.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The index the next chunk goes with.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Whether the stream's chain has whole-body plugins (the worker
    /// buffers the chunks for them, up to [`PoolConfig::stream_buffer`]).
    pub fn buffers(&self) -> bool {
        self.buffers
    }
}

/// Process-unique pool ids (see [`Shared::id`]), so a thread's claim never
/// matches a later pool that happens to sit at the same address.
static POOL_IDS: AtomicU64 = AtomicU64::new(1);

/// Submissions a thread that found no free lane makes on shared lanes
/// before it looks for a free one again.
const CLAIM_RETRY: u32 = 1024;

thread_local! {
    /// This thread's lane claims, one per (pool, worker) it submitted to.
    static CLAIMS: RefCell<Vec<Claim>> = const { RefCell::new(Vec::new()) };
}

/// A thread's claim on one worker's lane (or the note that none was free).
struct Claim {
    pool: u64,
    worker: usize,
    lane: Option<usize>,
    /// With no lane: submissions left before looking again.
    retry: u32,
    shared: Weak<Shared>,
}

impl Drop for Claim {
    /// The thread exits (or the claim is pruned): the lane goes back.
    fn drop(&mut self) {
        if let (Some(lane), Some(shared)) = (self.lane, self.shared.upgrade()) {
            // Release: pairs with the next claimant's Acquire CAS.
            shared.ports[self.worker].claimed[lane].store(false, Ordering::Release);
        }
    }
}

/// A submitted frame's claim on its answer. Wait with [`Ticket::wait`] or
/// `.await` it; dropping it unanswered gives the slot up once the answer
/// comes.
pub struct Ticket<'s> {
    shared: &'s Shared,
    port: &'s Port,
    slot: &'s Slot,
    generation: u32,
    registered: bool,
    taken: bool,
}

impl fmt::Debug for Ticket<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl<'s> Ticket<'s> {
    /// Blocks until the answer comes: busy-polls (draining completions
    /// itself) for the pool's waiter spin, then parks.
    ///
    /// # Errors
    /// The worker's refusal, or [`GateError::Shutdown`].
    pub fn wait(mut self) -> Result<Answer<'s>, GateError> {
        let spin = self.shared.waiter_spin;
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            if let Some(answer) = self.try_take() {
                return answer;
            }
            self.port.try_drain();
            if let Some(answer) = self.try_take() {
                return answer;
            }
            polls = polls.wrapping_add(1);
            if spin.is_zero() || polls.is_multiple_of(32) && start.elapsed() >= spin {
                break;
            }
            std::hint::spin_loop();
        }
        let mut may_lead = true;
        loop {
            if let Some(answer) = self.try_take() {
                return answer;
            }
            // SeqCst: pairs with the shutdown's store once the workers are
            // gone (the final drain needs the consumer).
            if may_lead
                && !self.shared.stop_dispatchers.load(Ordering::SeqCst)
                && let Ok(mut consumer) = self.port.completions.try_lock()
            {
                // Leader: sleep on the completion ring's futex ourselves
                // (two wake-ups per round trip, not three).
                loop {
                    self.port.drain(&mut consumer);
                    if self.is_done() || self.shared.stop_dispatchers.load(Ordering::SeqCst) {
                        break;
                    }
                    if consumer.wait(Some(LEAD_FOR)).is_err() {
                        may_lead = false;
                        break;
                    }
                }
                drop(consumer);
                // Waiters that registered meanwhile had the dispatcher
                // kicked, and it takes the consumer now we let it go.
                continue;
            }
            if !self.registered {
                self.register(Waiter::Thread(std::thread::current()));
                continue; // the re-check after registering
            }
            std::thread::park();
        }
    }

    /// Whether the answer has come.
    pub fn is_done(&self) -> bool {
        self.slot.word.load(Ordering::Acquire) == slots::word(self.generation, DONE)
    }

    /// Registers `waiter` in the slot (replacing an earlier one), then makes
    /// sure a drainer runs: see "Waiting" in the module docs.
    fn register(&mut self, waiter: Waiter) {
        let previous = lock(&self.slot.waiter).replace(waiter);
        if previous.is_none() {
            self.port.sleepers.fetch_add(1, Ordering::SeqCst);
        }
        self.registered = true;
        // Pairs with the dispatcher's SeqCst load of `sleepers`.
        fence(Ordering::SeqCst);
        self.port.kick_dispatcher();
    }

    /// The answer, if it has come; frees the waiter cell.
    fn try_take(&mut self) -> Option<Result<Answer<'s>, GateError>> {
        // Acquire pairs with the drainer's Release CAS to DONE.
        if !self.is_done() {
            return None;
        }
        if self.registered && lock(&self.slot.waiter).take().is_some() {
            self.port.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        self.registered = false;
        self.taken = true;
        // The slot is DONE and ours: no drainer writes its buffer until we
        // free it, so the buffer moves into the answer (no copy, no
        // allocation) and moves back when the answer drops.
        let answer = Answer {
            buf: std::mem::take(&mut *lock(&self.slot.answer)),
            slot: self.slot,
            generation: self.generation,
        };
        let error = match CompletionView::decode(&answer.buf) {
            Ok(CompletionView::Answer(_)) => None,
            Ok(CompletionView::Error { code }) => Some(match code {
                codec::E_TOO_LARGE => GateError::AnswerTooLarge,
                codec::E_SHUTDOWN => GateError::Shutdown,
                codec::E_NOT_PARKED => GateError::NotParked,
                codec::E_WRONG_TOKEN => GateError::WrongToken,
                codec::E_STREAMS_FULL => GateError::StreamsFull,
                codec::E_NO_STREAM => GateError::NoSuchStream,
                codec::E_CHUNK_ORDER => GateError::ChunkOutOfOrder,
                codec::E_BAD_COMPLETION => GateError::BadCompletion(
                    Malformed::from_code(answer.buf[3]).unwrap_or(Malformed::Kind),
                ),
                c => Malformed::from_code(c).map_or(
                    GateError::BadCompletion(Malformed::Kind),
                    GateError::Malformed,
                ),
            }),
            // Checked by the drainer; kept defensive.
            Err(m) => Some(GateError::BadCompletion(m)),
        };
        match error {
            None => Some(Ok(answer)),
            Some(e) => {
                drop(answer); // frees the slot
                Some(Err(e))
            }
        }
    }
}

impl<'s> Future for Ticket<'s> {
    type Output = Result<Answer<'s>, GateError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(answer) = this.try_take() {
            return Poll::Ready(answer);
        }
        this.port.try_drain();
        if let Some(answer) = this.try_take() {
            return Poll::Ready(answer);
        }
        this.register(Waiter::Task(cx.waker().clone()));
        // The re-check after registering (see "Waiting").
        if let Some(answer) = this.try_take() {
            return Poll::Ready(answer);
        }
        Poll::Pending
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        if self.registered && lock(&self.slot.waiter).take().is_some() {
            self.port.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        let pending = slots::word(self.generation, PENDING);
        if self
            .slot
            .word
            .compare_exchange(
                pending,
                slots::word(self.generation, ABANDONED),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // The answer came first: nobody will read it.
            self.slot
                .word
                .store(slots::word(self.generation, FREE), Ordering::Release);
        }
    }
}

/// A worker's answer, in the buffer of the slot it came back to (moved
/// out, not copied); dropping it gives the buffer back and frees the slot.
pub struct Answer<'s> {
    buf: Vec<u8>,
    slot: &'s Slot,
    generation: u32,
}

impl Answer<'_> {
    fn view(&self) -> codec::AnswerView<'_> {
        match CompletionView::decode(&self.buf) {
            Ok(CompletionView::Answer(a)) => a,
            _ => unreachable!("an Answer holds a checked answer record"),
        }
    }

    /// The verdict.
    pub fn verdict(&self) -> Verdict<'_> {
        self.view().verdict
    }

    /// Whether the chain changed anything (headers, body or metadata).
    pub fn changed(&self) -> bool {
        self.view().changed
    }

    /// The headers as the chain left them; `None` when nothing changed (the
    /// frame's own headers stand).
    pub fn headers(&self) -> Option<impl Iterator<Item = (&[u8], &[u8])>> {
        let view = self.view();
        view.changed.then(|| view.headers())
    }

    /// The body as a plugin rewrote it; `None` when no plugin did.
    pub fn body(&self) -> Option<&[u8]> {
        self.view().body
    }

    /// The metadata the chain set.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.view().metadata()
    }
}

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        *lock(&self.slot.answer) = std::mem::take(&mut self.buf);
        // Release: our use of the buffer happens before the next
        // occupant's drainer writes it (it finds the slot through a claim).
        self.slot
            .word
            .store(slots::word(self.generation, FREE), Ordering::Release);
    }
}

impl fmt::Debug for Answer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("verdict", &self.verdict())
            .field("changed", &self.changed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{Evidence, EvidenceSink};
    use crate::runtime::{DecisionRecord, FollowUpRecord, SkipRecord};

    struct Null;
    impl EvidenceSink for Null {
        fn record(&mut self, _: &Evidence<'_>) {}
    }
    impl RuntimeSink for Null {
        fn decision(&mut self, _: &DecisionRecord<'_>) {}
        fn skip(&mut self, _: &SkipRecord<'_>) {}
        fn follow_up(&mut self, _: &FollowUpRecord<'_>) {}
    }

    fn pool(slots: usize) -> WorkerPool {
        let config = PoolConfig {
            cores: Some(vec![0]),
            pin: false,
            ring_bytes: 1 << 16,
            slots,
            ..PoolConfig::default()
        };
        WorkerPool::start(&Runtime::new(), config, |_| Box::new(Null)).unwrap()
    }

    #[test]
    fn an_empty_chain_answers_continue_unchanged() {
        let pool = pool(8);
        let s = pool.submitter();
        let headers = [Header::new(b"a", b"b")];
        let frame = GateFrame {
            path: Some("/v1/chat/completions"),
            ..GateFrame::new(RequestFrame {
                request_id: 3,
                headers: &headers,
                body: b"{}",
                ..RequestFrame::default()
            })
        };
        for _ in 0..100 {
            let answer = s.request(0, &frame).unwrap();
            assert_eq!(answer.verdict(), Verdict::Continue);
            assert!(!answer.changed());
            assert!(answer.headers().is_none());
            assert!(answer.body().is_none());
        }
        assert_eq!(pool.shutdown()[0].frames, 100);
    }

    #[test]
    fn slots_run_out_and_come_back() {
        let pool = pool(2);
        let s = pool.submitter();
        let frame = GateFrame::default();
        let a = s.submit(0, &frame).unwrap();
        let b = s.submit(0, &frame).unwrap();
        assert_eq!(s.submit(0, &frame).unwrap_err(), GateError::Busy);
        drop(a.wait().unwrap());
        drop(b); // abandoned: freed when its answer comes
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match s.submit(0, &frame) {
                Ok(t) => {
                    t.wait().unwrap();
                    break;
                }
                Err(GateError::Busy) if Instant::now() < deadline => {
                    pool.shared.ports[0].try_drain();
                }
                Err(e) => panic!("{e}"),
            }
        }
        let c = s.submit(0, &frame).unwrap();
        let d = s.submit(0, &frame).unwrap();
        assert!(c.wait().is_ok() && d.wait().is_ok());
        assert_eq!(s.submit(7, &frame).unwrap_err(), GateError::NoSuchWorker(7));
    }

    #[test]
    fn a_closed_pool_refuses() {
        let pool = pool(4);
        let s = pool.submitter();
        drop(pool);
        assert_eq!(
            s.request(0, &GateFrame::default()).unwrap_err(),
            GateError::Closed
        );
    }
}
