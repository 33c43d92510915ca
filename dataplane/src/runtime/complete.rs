//! The complete gate's pool: it runs after the caller has its answer, on
//! threads of its own, fed by rings, so audit export, analytics and
//! notifications never sit on a worker's hot path.
//!
//! A gateway thread (or worker) holds a [`CompleteSubmitter`]: one producer
//! lane in each pool thread's ring. [`CompleteSubmitter::submit`] writes the
//! exchange once, in place, as one record (layout below), to the pool thread
//! chosen by request id, and never blocks: a full ring refuses the record,
//! the ring counts the drop, and the pool thread leaves a `skip` record with
//! the count (`complete_queue_full`), so an overflow never passes silently.
//!
//! Each pool thread owns a [`GateRunner`]: it drains its ring, decodes each
//! record (checking every length: a ring may be shared with another process),
//! runs the complete gate, runs the follow-up work that is due (with retries
//! and backoff), and sleeps on the ring's futex until the next record or the
//! next follow-up is due.
//!
//! # Record layout (little-endian)
//!
//! ```text
//! u32 magic "OCMP" | u64 request_id | u16 status | u8 api | u8 reserved
//! 6 x text: tenant, virtual_key, environment, model, mcp_server, mcp_tool
//!           (u16 length, 0xFFFF for none, then the UTF-8 bytes)
//! headers:  u16 count, then per header u16 name length, u32 value length, bytes
//!           (request headers, then the request body as u32 length + bytes,
//!            then response headers, then the response body likewise)
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use odock_plugin_abi::view::Header;

use super::runner::{GateRunner, RequestFrame, ResponseFrame, Runtime, RuntimeSink, SkipRecord};
use crate::index::ApiKind;
use crate::ring::{ClaimError, Consumer, Geometry, HeapMemory, Producer, ReserveError, Ring};

const MAGIC: u32 = u32::from_le_bytes(*b"OCMP");
const NONE: u16 = u16::MAX;
/// Headers one record may carry per side.
pub const MAX_HEADERS: usize = 256;

/// How a pool is sized.
#[derive(Debug, Clone, Copy)]
pub struct CompleteConfig {
    /// Pool threads.
    pub threads: u32,
    /// Producer lanes per thread's ring: how many submitters may exist.
    pub lanes: u32,
    /// Bytes of each lane.
    pub lane_bytes: u64,
    /// The worker index of the first pool thread's runner (the others
    /// follow), so its evidence is told apart from the workers'.
    pub first_worker: u32,
}

impl Default for CompleteConfig {
    fn default() -> Self {
        CompleteConfig {
            threads: 1,
            lanes: 8,
            lane_bytes: 1 << 20,
            first_worker: 1000,
        }
    }
}

/// The complete gate's threads and their rings.
pub struct CompletePool {
    rings: Vec<Arc<Ring<HeapMemory>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl CompletePool {
    /// Starts the pool: `config.threads` threads, each with a runner whose
    /// evidence goes to `sink(worker_index)`.
    ///
    /// # Errors
    /// The geometry error when `config` sizes the rings out of range.
    ///
    /// # Panics
    /// When a thread cannot be spawned.
    pub fn start(
        runtime: &Runtime,
        config: CompleteConfig,
        mut sink: impl FnMut(u32) -> Box<dyn RuntimeSink>,
    ) -> Result<CompletePool, crate::ring::GeometryError> {
        let geometry = Geometry::new(config.lanes, config.lane_bytes)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut rings = Vec::new();
        let mut threads = Vec::new();
        for t in 0..config.threads.max(1) {
            let ring = Ring::heap(geometry);
            let consumer = ring.consumer().expect("a new ring has no consumer");
            let worker = config.first_worker + t;
            let runner = runtime.runner(worker, sink(worker));
            let stop = Arc::clone(&stop);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("odock-complete-{t}"))
                    .spawn(move || pool_thread(runner, consumer, &stop))
                    .expect("spawning a complete-pool thread"),
            );
            rings.push(ring);
        }
        Ok(CompletePool {
            rings,
            stop,
            threads,
        })
    }

    /// A submitter: a lane in every pool thread's ring. One per submitting
    /// thread (it is `Send`, not `Sync`).
    ///
    /// # Errors
    /// [`ClaimError::NoFreeLane`] when `lanes` submitters already exist.
    pub fn submitter(&self) -> Result<CompleteSubmitter, ClaimError> {
        let producers = self
            .rings
            .iter()
            .map(|r| r.producer())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompleteSubmitter { producers })
    }

    /// Stops the pool after its threads drain what was submitted (due
    /// follow-ups run; later ones are dropped with their evidence already
    /// saying they were queued).
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Release);
        for ring in &self.rings {
            // Wake a sleeping thread with a discarded record (the consumer
            // skips it). With every lane held by a submitter there is no
            // lane to do that: the thread then sees `stop` within its
            // 100 ms wait.
            if let Ok(p) = ring.producer() {
                drop(p.reserve(0));
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for CompletePool {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

impl fmt::Debug for CompletePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompletePool")
            .field("threads", &self.threads.len())
            .finish()
    }
}

fn pool_thread(mut runner: GateRunner, mut consumer: Consumer<HeapMemory>, stop: &AtomicBool) {
    let mut headers: (Vec<Header<'static>>, Vec<Header<'static>>) = (Vec::new(), Vec::new());
    let mut reported_drops = 0u64;
    loop {
        // Read before the batch: once `stop` is seen, a batch that finds
        // nothing means every record committed before the stop has run
        // (none is dropped unrun).
        let stopping = stop.load(Ordering::Acquire);
        let mut ran = 0usize;
        let mut batch = consumer.batch();
        loop {
            let record = match batch.next() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(_) => return, // a corrupt in-process ring: nothing to follow
            };
            ran += 1;
            let (mut req_h, mut resp_h) = (
                recycle(std::mem::take(&mut headers.0)),
                recycle(std::mem::take(&mut headers.1)),
            );
            match decode(&record, &mut req_h, &mut resp_h) {
                Ok((request, response)) => runner.complete(&request, &response),
                Err(e) => skip(&mut runner, 1, e.cause()),
            }
            headers = (recycle(req_h), recycle(resp_h));
        }
        drop(batch);
        let dropped = consumer.ring().dropped();
        if dropped > reported_drops {
            skip(&mut runner, dropped - reported_drops, "complete_queue_full");
            reported_drops = dropped;
        }
        let now = Instant::now();
        runner.run_followups(now, 64);
        if stopping {
            if ran == 0 {
                return;
            }
            continue;
        }
        let wait = runner
            .next_followup_due()
            .map_or(Duration::from_millis(100), |due| {
                due.saturating_duration_since(now)
            })
            .min(Duration::from_millis(100));
        let _ = consumer.wait(Some(wait));
    }
}

/// Records complete frames the pool could not run: `count` of them (queue
/// overflow), or one that did not decode.
fn skip(runner: &mut GateRunner, count: u64, cause: &'static str) {
    runner.record_skip(&SkipRecord {
        request_id: 0,
        worker: runner.worker(),
        gate: odock_plugin_abi::Gate::Complete,
        plugin: "",
        binding: u32::MAX,
        cause,
        count,
    });
}

/// Turns an empty vector of one lifetime's headers into another's, keeping
/// the allocation.
fn recycle<'a, 'b>(mut v: Vec<Header<'a>>) -> Vec<Header<'b>> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

/// One submitting thread's lanes into the pool.
pub struct CompleteSubmitter {
    producers: Vec<Producer<HeapMemory>>,
}

/// Why a complete frame was not submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The pool thread's ring is full: dropped and counted.
    Full,
    /// The frame does not fit a ring record, or has too many headers.
    TooLarge {
        /// Its encoded length.
        len: usize,
    },
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Full => write!(
                f,
                "the complete pool's queue is full: the frame was dropped and counted"
            ),
            SubmitError::TooLarge { len } => {
                write!(
                    f,
                    "a complete frame of {len} bytes (or over {MAX_HEADERS} headers) does not fit the pool's ring"
                )
            }
        }
    }
}

impl std::error::Error for SubmitError {}

impl CompleteSubmitter {
    /// Hands the exchange to the complete pool: written once into the ring
    /// of the thread chosen by request id. Never blocks.
    ///
    /// # Errors
    /// [`SubmitError`]; a full queue is also counted for evidence.
    pub fn submit(
        &self,
        request: &RequestFrame<'_>,
        response: &ResponseFrame<'_>,
    ) -> Result<(), SubmitError> {
        let len = encoded_len(request, response);
        if request.headers.len() > MAX_HEADERS || response.headers.len() > MAX_HEADERS {
            return Err(SubmitError::TooLarge { len });
        }
        let producer = &self.producers[(request.request_id % self.producers.len() as u64) as usize];
        let mut record = producer.reserve(len).map_err(|e| match e {
            ReserveError::Full { .. } => SubmitError::Full,
            ReserveError::TooLarge { len, .. } => SubmitError::TooLarge { len },
        })?;
        encode(request, response, &mut record);
        record.commit();
        Ok(())
    }
}

fn text_len(t: Option<&str>) -> usize {
    2 + t.map_or(0, |t| t.len().min(usize::from(NONE - 1)))
}

fn headers_len(h: &[Header<'_>]) -> usize {
    2 + h
        .iter()
        .map(|h| 6 + h.name().len().min(usize::from(u16::MAX)) + h.value().len())
        .sum::<usize>()
}

fn encoded_len(req: &RequestFrame<'_>, resp: &ResponseFrame<'_>) -> usize {
    16 + [
        req.tenant,
        req.virtual_key,
        req.environment,
        req.model,
        req.mcp_server,
        req.mcp_tool,
    ]
    .iter()
    .map(|t| text_len(*t))
    .sum::<usize>()
        + headers_len(req.headers)
        + 4
        + req.body.len()
        + headers_len(resp.headers)
        + 4
        + resp.body.len()
}

fn encode(req: &RequestFrame<'_>, resp: &ResponseFrame<'_>, out: &mut [u8]) {
    let mut w = Writer { out, at: 0 };
    w.put(&MAGIC.to_le_bytes());
    w.put(&req.request_id.to_le_bytes());
    w.put(&resp.status.to_le_bytes());
    w.put(&[api_code(req.api), 0]);
    for t in [
        req.tenant,
        req.virtual_key,
        req.environment,
        req.model,
        req.mcp_server,
        req.mcp_tool,
    ] {
        match t {
            None => w.put(&NONE.to_le_bytes()),
            Some(t) => {
                // Cut at a char boundary below the u16 limit.
                let mut n = t.len().min(usize::from(NONE - 1));
                while !t.is_char_boundary(n) {
                    n -= 1;
                }
                w.put(&(n as u16).to_le_bytes());
                w.put(&t.as_bytes()[..n]);
            }
        }
    }
    for (headers, body) in [(req.headers, req.body), (resp.headers, resp.body)] {
        w.put(&(headers.len() as u16).to_le_bytes());
        for h in headers {
            let name = &h.name()[..h.name().len().min(usize::from(u16::MAX))];
            w.put(&(name.len() as u16).to_le_bytes());
            w.put(&(h.value().len() as u32).to_le_bytes());
            w.put(name);
            w.put(h.value());
        }
        w.put(&(body.len() as u32).to_le_bytes());
        w.put(body);
    }
    debug_assert_eq!(w.at, w.out.len());
}

struct Writer<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

/// The API kinds a record names, by code.
const APIS: [ApiKind; 5] = [
    ApiKind::Unknown,
    ApiKind::OpenAiChat,
    ApiKind::OpenAiResponses,
    ApiKind::AnthropicMessages,
    ApiKind::Mcp,
];

fn api_code(api: ApiKind) -> u8 {
    APIS.iter().position(|k| *k == api).map_or(0, |i| i as u8)
}

/// Why a complete record did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// It does not start with the magic.
    Magic,
    /// A length runs past the record's end.
    Truncated,
    /// A text field is not UTF-8.
    Text,
    /// More headers than [`MAX_HEADERS`].
    TooManyHeaders,
    /// Bytes are left after the last field.
    Trailing,
}

impl DecodeError {
    fn cause(self) -> &'static str {
        match self {
            DecodeError::Magic => "complete_record_magic",
            DecodeError::Truncated => "complete_record_truncated",
            DecodeError::Text => "complete_record_text",
            DecodeError::TooManyHeaders => "complete_record_headers",
            DecodeError::Trailing => "complete_record_trailing",
        }
    }
}

struct Reader<'r> {
    bytes: &'r [u8],
    at: usize,
}

impl<'r> Reader<'r> {
    fn take(&mut self, n: usize) -> Result<&'r [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(DecodeError::Truncated)?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn text(&mut self) -> Result<Option<&'r str>, DecodeError> {
        match self.u16()? {
            NONE => Ok(None),
            n => std::str::from_utf8(self.take(usize::from(n))?)
                .map(Some)
                .map_err(|_| DecodeError::Text),
        }
    }
    fn headers(&mut self, out: &mut Vec<Header<'r>>) -> Result<(), DecodeError> {
        let n = usize::from(self.u16()?);
        if n > MAX_HEADERS {
            return Err(DecodeError::TooManyHeaders);
        }
        for _ in 0..n {
            let name_len = usize::from(self.u16()?);
            let value_len = self.u32()? as usize;
            let name = self.take(name_len)?;
            let value = self.take(value_len)?;
            out.push(Header::new(name, value));
        }
        Ok(())
    }
}

/// Decodes a complete record into frames borrowing from it.
///
/// # Errors
/// [`DecodeError`] naming what does not check out.
pub fn decode<'r: 'v, 'v>(
    bytes: &'r [u8],
    request_headers: &'v mut Vec<Header<'r>>,
    response_headers: &'v mut Vec<Header<'r>>,
) -> Result<(RequestFrame<'v>, ResponseFrame<'v>), DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != MAGIC.to_le_bytes() {
        return Err(DecodeError::Magic);
    }
    let request_id = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
    let status = r.u16()?;
    let api_and_reserved = r.take(2)?;
    let api = APIS
        .get(usize::from(api_and_reserved[0]))
        .copied()
        .unwrap_or(ApiKind::Unknown);
    let tenant = r.text()?;
    let virtual_key = r.text()?;
    let environment = r.text()?;
    let model = r.text()?;
    let mcp_server = r.text()?;
    let mcp_tool = r.text()?;
    r.headers(request_headers)?;
    let n = r.u32()? as usize;
    let request_body = r.take(n)?;
    r.headers(response_headers)?;
    let n = r.u32()? as usize;
    let response_body = r.take(n)?;
    if r.at != bytes.len() {
        return Err(DecodeError::Trailing);
    }
    Ok((
        RequestFrame {
            request_id,
            tenant,
            virtual_key,
            environment,
            model,
            mcp_server,
            mcp_tool,
            api,
            headers: &request_headers[..],
            body: request_body,
        },
        ResponseFrame {
            status,
            headers: response_headers,
            body: response_body,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_every_truncation_is_refused() {
        let req_h = [Header::new(b"content-type", b"application/json")];
        let resp_h = [
            Header::new(b"x-upstream", b"mock"),
            Header::new(b"content-length", b"2"),
        ];
        let req = RequestFrame {
            request_id: 99,
            tenant: Some("acme"),
            model: Some("gpt-4o"),
            api: ApiKind::OpenAiChat,
            headers: &req_h,
            body: b"{\"a\":1}",
            ..RequestFrame::default()
        };
        let resp = ResponseFrame {
            status: 201,
            headers: &resp_h,
            body: b"{}",
        };
        let mut buf = vec![0u8; encoded_len(&req, &resp)];
        encode(&req, &resp, &mut buf);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (r, s) = decode(&buf, &mut a, &mut b).unwrap();
        assert_eq!(
            (r.request_id, r.tenant, r.model, r.virtual_key, r.api),
            (99, Some("acme"), Some("gpt-4o"), None, ApiKind::OpenAiChat)
        );
        assert_eq!(
            (r.body, s.status, s.body),
            (&b"{\"a\":1}"[..], 201, &b"{}"[..])
        );
        assert_eq!(s.headers.len(), 2);
        assert_eq!(
            (s.headers[1].name(), s.headers[1].value()),
            (&b"content-length"[..], &b"2"[..])
        );
        for cut in 0..buf.len() {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            assert!(
                decode(&buf[..cut], &mut a, &mut b).is_err(),
                "a record cut at {cut} decoded"
            );
        }
        let mut longer = buf.clone();
        longer.push(0);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert_eq!(
            decode(&longer, &mut a, &mut b).unwrap_err(),
            DecodeError::Trailing
        );
    }
}
