//! The batched writer: one thread owns the write connection; producers hand it exchanges
//! through a bounded queue.
//!
//! Exchanges are committed in one transaction per batch (every [`WriterConfig::max_delay`]
//! or [`WriterConfig::max_batch`] rows, whichever comes first). A process killed with SIGKILL
//! loses at most the batch in flight: WAL makes every committed batch durable against
//! process death.
//!
//! The queue is bounded by count and by bytes, so a producer faster than the disk cannot grow
//! memory without limit. Who builds the writer chooses what a full queue means
//! ([`WhenFull`]): an offline import waits (backpressure), a live proxy or sniffer never
//! waits on disk and counts the exchange as dropped instead.
//!
//! A write that fails (disk full, I/O error, a file gone read-only) is reported once, with
//! its cause and the path; the writer then counts what it cannot store, retries every
//! [`WriterConfig::retry_every`], and says so when storing resumes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backend::RecordingWrite;
use super::{Meta, StoreError};
use crate::model::{Exchange, ExchangeSink};

/// How often the writer looks for more work while a batch is open.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// The least time between two "queue full" warnings.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(1);

/// What a producer does when the writer's queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait until the writer has room: offline imports, whose pace is the disk's.
    Block,
    /// Count the exchange as dropped and go on: the live proxy and live sniffing, whose
    /// request path must never wait on disk.
    Drop,
}

/// Batching and queueing knobs.
#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    pub max_batch: usize,
    pub max_delay: Duration,
    /// Most exchanges waiting to be written (queued or in the batch being written).
    pub queue_exchanges: usize,
    /// Most bytes of bodies and messages waiting to be written; one exchange larger than
    /// this is still taken when the queue is empty.
    pub queue_bytes: usize,
    pub when_full: WhenFull,
    /// After a failed write, how often storing is tried again.
    pub retry_every: Duration,
    /// The producer is an offline import (see [`super::backend::RecordingWrite::bulk_load`]).
    pub bulk_load: bool,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: 1000,
            max_delay: Duration::from_millis(50),
            // A few batches of headroom at the proxy's peak rate (~60k exchanges/s, a batch
            // every 50 ms), so that only a disk that really cannot keep up drops anything.
            queue_exchanges: 8192,
            queue_bytes: 64 << 20,
            when_full: WhenFull::Drop,
            retry_every: Duration::from_secs(1),
            bulk_load: false,
        }
    }
}

impl WriterConfig {
    /// The defaults, with producers that wait for room (offline imports).
    pub fn blocking() -> Self {
        WriterConfig {
            when_full: WhenFull::Block,
            bulk_load: true,
            ..WriterConfig::default()
        }
    }
}

/// What the writer did, for the one-line summary at exit.
#[derive(Clone, Debug, Default)]
pub struct WriterSummary {
    pub path: PathBuf,
    pub exchanges: u64,
    pub messages: u64,
    pub body_bytes: u64,
    pub batches: u64,
    /// Exchanges the recording refused one by one (each was logged).
    pub failed: u64,
    /// Exchanges lost to failed writes (disk full, I/O errors).
    pub lost: u64,
    /// Exchanges dropped because the queue was full (live producers only).
    pub dropped: u64,
}

impl WriterSummary {
    /// Every exchange handed to the writer that is not in the recording.
    pub fn not_stored(&self) -> u64 {
        self.failed + self.lost + self.dropped
    }

    /// One line saying what was not stored and why, or `None` when everything was.
    pub fn not_stored_line(&self) -> Option<String> {
        if self.not_stored() == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if self.lost > 0 {
            parts.push(format!("{} lost to write errors", self.lost));
        }
        if self.dropped > 0 {
            parts.push(format!(
                "{} dropped because the disk could not keep up",
                self.dropped
            ));
        }
        if self.failed > 0 {
            parts.push(format!("{} refused by the recording", self.failed));
        }
        Some(format!(
            "{} exchanges were not stored in {} ({})",
            self.not_stored(),
            self.path.display(),
            parts.join(", ")
        ))
    }
}

enum Msg {
    Exchange(Box<Exchange>),
    Shutdown,
}

/// State shared by the handles and the writer thread.
struct Shared {
    /// Bytes of exchanges queued or in the batch being written.
    queued_bytes: AtomicUsize,
    queue_bytes: usize,
    when_full: WhenFull,
    dropped: AtomicU64,
    /// Milliseconds since `started` of the last "queue full" warning; `u64::MAX`: none yet.
    last_warning_ms: AtomicU64,
    started: Instant,
    /// Blocking producers wait here for the writer to free bytes.
    room: Mutex<()>,
    freed: Condvar,
    /// Blocking producers only: the last batch written, for the producer to drop. Freeing an
    /// exchange on the thread that did not allocate it costs mimalloc twice (the free, then
    /// the owner collecting it before it can reuse the memory): on an import, dropping was
    /// ~16% of the writer thread, and collecting showed in the parsing thread's allocations.
    /// At most one batch waits here (beyond the queue bound, until the producer's next
    /// exchange); the writer drops any more itself.
    spent: Mutex<Vec<Exchange>>,
    /// `spent` holds exchanges (read before taking the lock, so producers rarely take it).
    spent_ready: AtomicBool,
}

impl Shared {
    fn release(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if self.when_full == WhenFull::Block {
            self.freed.notify_all();
        }
    }

    /// Hands the written `batch` to the producers to drop (leaving `batch` empty).
    fn give_back(&self, batch: &mut Vec<Exchange>) {
        if self.when_full == WhenFull::Block {
            if let Ok(mut spent) = self.spent.try_lock() {
                if spent.is_empty() {
                    // The empty vector the producer left keeps its capacity for the next batch.
                    std::mem::swap(&mut *spent, batch);
                    self.spent_ready.store(true, Ordering::Release);
                    return;
                }
            }
        }
        batch.clear();
    }

    /// Drops what the writer gave back, on the calling (producing) thread.
    fn drop_spent(&self) {
        if !self.spent_ready.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut guard) = self.spent.lock() else {
            return;
        };
        let mut spent = std::mem::take(&mut *guard);
        self.spent_ready.store(false, Ordering::Release);
        drop(guard);
        spent.clear();
        if let Ok(mut guard) = self.spent.lock() {
            if guard.is_empty() && guard.capacity() == 0 {
                *guard = spent;
            }
        }
    }

    /// Counts a dropped exchange and warns, at most once per [`DROP_WARNING_EVERY`].
    fn dropped_one(&self) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if warning_due(last, now)
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "recording cannot keep up: {total} exchanges dropped so far (forwarding goes on)"
            );
        }
    }
}

/// Whether a "queue full" warning may be given at `now_ms`, the last one having been given at
/// `last_ms` (`u64::MAX`: never).
fn warning_due(last_ms: u64, now_ms: u64) -> bool {
    last_ms == u64::MAX || now_ms.saturating_sub(last_ms) >= DROP_WARNING_EVERY.as_millis() as u64
}

/// The bytes an exchange holds that a queue bound should count: bodies and messages (heads
/// are small next to them, and counting them costs a walk over every header).
fn weight(ex: &Exchange) -> usize {
    ex.request.body.data.len()
        + ex.response.as_ref().map_or(0, |r| r.body.data.len())
        + ex.messages.iter().map(|m| m.data.len()).sum::<usize>()
}

/// Cheap, cloneable handle producers use to submit exchanges.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::SyncSender<Msg>,
    shared: Arc<Shared>,
    connection_id_base: u64,
}

impl WriterHandle {
    /// Connection ids handed out by capture should start here, so that a recording appended
    /// to keeps ids unique.
    pub fn connection_id_base(&self) -> u64 {
        self.connection_id_base
    }

    /// Waits until `bytes` more fit in the queue (always true of an empty queue).
    fn wait_for_room(&self, bytes: usize) {
        let s = &self.shared;
        let fits = || {
            let queued = s.queued_bytes.load(Ordering::Acquire);
            queued == 0 || queued + bytes <= s.queue_bytes
        };
        if fits() {
            return;
        }
        let Ok(mut guard) = s.room.lock() else {
            return;
        };
        while !fits() {
            // Timed, so that a wake-up sent between the check and the wait costs a
            // moment rather than the import.
            match s.freed.wait_timeout(guard, Duration::from_millis(20)) {
                Ok((g, _)) => guard = g,
                Err(_) => return,
            }
        }
    }
}

impl ExchangeSink for WriterHandle {
    fn record(&self, exchange: Box<Exchange>) {
        let bytes = weight(&exchange);
        let s = &self.shared;
        let msg = Msg::Exchange(exchange);
        let sent = match s.when_full {
            WhenFull::Block => {
                s.drop_spent();
                self.wait_for_room(bytes);
                s.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
                self.tx.send(msg).is_ok()
            }
            WhenFull::Drop => {
                let queued = s.queued_bytes.load(Ordering::Acquire);
                if queued != 0 && queued + bytes > s.queue_bytes {
                    s.dropped_one();
                    return;
                }
                s.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
                match self.tx.try_send(msg) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => {
                        s.release(bytes);
                        s.dropped_one();
                        return;
                    }
                    Err(TrySendError::Disconnected(_)) => false,
                }
            }
        };
        if !sent {
            // Only after shutdown, when nothing more can be saved anyway.
            s.release(bytes);
            s.dropped_one();
        }
    }
}

/// Owner of the writer thread; [`Writer::finish`] flushes and joins it.
pub struct Writer {
    tx: mpsc::SyncSender<Msg>,
    shared: Arc<Shared>,
    thread: JoinHandle<Result<WriterSummary, StoreError>>,
}

impl Writer {
    /// Opens (or creates) `path` and starts the writer thread.
    ///
    /// # Errors
    /// The file cannot be opened as a recording.
    pub fn spawn(
        path: &Path,
        meta: &Meta,
        config: WriterConfig,
    ) -> Result<(Writer, WriterHandle), StoreError> {
        // A database URL is shown without its password in every message the writer gives.
        let shown = PathBuf::from(super::display_location(path));
        Writer::start(super::open_writer(path, meta)?, &shown, config)
    }

    /// Starts the writer thread over `backend` (which holds `path`).
    pub(super) fn start(
        backend: Box<dyn RecordingWrite>,
        path: &Path,
        config: WriterConfig,
    ) -> Result<(Writer, WriterHandle), StoreError> {
        let mut backend = backend;
        let base = backend.connection_id_base()?;
        if config.bulk_load {
            backend.bulk_load()?;
        }
        // The batch being written counts against the bound too (its exchanges are not freed
        // until written), so the channel holds what is left of it.
        let capacity = config
            .queue_exchanges
            .saturating_sub(config.max_batch)
            .max(1);
        let (tx, rx) = mpsc::sync_channel(capacity);
        let shared = Arc::new(Shared {
            queued_bytes: AtomicUsize::new(0),
            queue_bytes: config.queue_bytes.max(1),
            when_full: config.when_full,
            dropped: AtomicU64::new(0),
            last_warning_ms: AtomicU64::new(u64::MAX),
            started: Instant::now(),
            room: Mutex::new(()),
            freed: Condvar::new(),
            spent: Mutex::new(Vec::new()),
            spent_ready: AtomicBool::new(false),
        });
        let summary = WriterSummary {
            path: path.to_path_buf(),
            ..Default::default()
        };
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("mf-store-writer".into())
            .spawn(move || {
                Ok(Run {
                    backend,
                    config,
                    summary,
                    shared: thread_shared,
                    failing: None,
                }
                .run(rx))
            })
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("cannot start writer: {e}"),
            })?;
        let handle = WriterHandle {
            tx: tx.clone(),
            shared: shared.clone(),
            connection_id_base: base,
        };
        Ok((Writer { tx, shared, thread }, handle))
    }

    /// Writes everything submitted so far and closes the file.
    ///
    /// # Errors
    /// The writer thread died.
    pub fn finish(self) -> Result<WriterSummary, StoreError> {
        // `send` waits for room in a full queue; the writer drains it whatever happens.
        let _ = self.tx.send(Msg::Shutdown);
        let mut summary = match self.thread.join() {
            Ok(r) => r?,
            Err(_) => {
                return Err(StoreError::Corrupt {
                    path: PathBuf::new(),
                    reason: "writer thread panicked".into(),
                })
            }
        };
        summary.dropped = self.shared.dropped.load(Ordering::Relaxed);
        Ok(summary)
    }
}

/// A failed write and what has been lost since.
struct Failing {
    lost_since: u64,
    next_retry: Instant,
}

/// The writer thread's state.
struct Run {
    backend: Box<dyn RecordingWrite>,
    config: WriterConfig,
    summary: WriterSummary,
    shared: Arc<Shared>,
    failing: Option<Failing>,
}

impl Run {
    fn run(mut self, rx: mpsc::Receiver<Msg>) -> WriterSummary {
        let mut batch: Vec<Exchange> = Vec::new();
        let mut shutting_down = false;
        while !shutting_down {
            // Block for the first item of a batch, then gather until the batch is full or old.
            match rx.recv() {
                Ok(Msg::Exchange(e)) => batch.push(*e),
                Ok(Msg::Shutdown) | Err(_) => shutting_down = true,
            }
            // Gather the rest of the batch by polling, not by blocking on the channel: a
            // receiver parked in `recv_timeout` makes every send a futex wake-up and a context
            // switch, which showed as the top cost of the proxy under load.
            let deadline = Instant::now() + self.config.max_delay;
            while !shutting_down && batch.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(Msg::Exchange(e)) => batch.push(*e),
                    Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => shutting_down = true,
                    Err(TryRecvError::Empty) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        std::thread::sleep((deadline - now).min(POLL_INTERVAL));
                    }
                }
            }
            if shutting_down {
                // Take whatever producers managed to send before the shutdown request.
                while let Ok(Msg::Exchange(e)) = rx.try_recv() {
                    batch.push(*e);
                }
            }
            if !batch.is_empty() {
                // At shutdown a failing writer tries once more: space may have come back.
                self.store(&mut batch, shutting_down);
            }
        }
        self.backend.close();
        self.summary
    }

    /// Writes `batch` (or, while failing and before the next retry, counts it as lost) and
    /// frees its room in the queue.
    fn store(&mut self, batch: &mut Vec<Exchange>, force_retry: bool) {
        let bytes: usize = batch.iter().map(weight).sum();
        let now = Instant::now();
        let attempt = match &self.failing {
            None => true,
            Some(f) => force_retry || now >= f.next_retry,
        };
        let result = if attempt {
            write_batch(self.backend.as_mut(), batch, &mut self.summary)
        } else {
            Err(None)
        };
        match result {
            Ok(()) => {
                if let Some(f) = self.failing.take() {
                    tracing::warn!(
                        "recording to {} resumed after {} exchanges lost",
                        self.summary.path.display(),
                        f.lost_since
                    );
                }
            }
            Err(cause) => {
                let n = batch.len() as u64;
                self.summary.lost += n;
                match &mut self.failing {
                    Some(f) => {
                        f.lost_since += n;
                        if attempt {
                            f.next_retry = now + self.config.retry_every;
                        }
                    }
                    None => {
                        let cause = cause.map_or_else(|| "unknown error".into(), |e| e.to_string());
                        tracing::error!(
                            "cannot write to the recording {}: {cause}; exchanges are not stored (counted) until a write succeeds, retrying every {:?}",
                            self.summary.path.display(),
                            self.config.retry_every
                        );
                        self.failing = Some(Failing {
                            lost_since: n,
                            next_retry: now + self.config.retry_every,
                        });
                    }
                }
            }
        }
        self.shared.give_back(batch);
        self.shared.release(bytes);
    }
}

/// Writes `batch` in one transaction. `Err(Some(e))`: the batch as a whole failed.
fn write_batch(
    backend: &mut dyn RecordingWrite,
    batch: &[Exchange],
    summary: &mut WriterSummary,
) -> Result<(), Option<StoreError>> {
    // Rejected exchanges by address in `batch`: they count as failed, not as stored.
    let mut rejected: Vec<*const Exchange> = Vec::new();
    backend
        .append(batch, &mut |ex, e| {
            rejected.push(ex);
            tracing::error!(error = %e, conn = ex.connection_id, seq = ex.seq, "could not store exchange");
        })
        .map_err(Some)?;
    for ex in batch {
        if rejected.contains(&(ex as *const Exchange)) {
            summary.failed += 1;
            continue;
        }
        summary.exchanges += 1;
        summary.messages += ex.messages.len() as u64;
        summary.body_bytes +=
            ex.request.body.size + ex.response.as_ref().map_or(0, |r| r.body.size);
    }
    summary.batches += 1;
    Ok(())
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
