//! How a [`Replay`] is set up — from exchanges in memory, from a recording read once into
//! its index, or from a fixtures folder — and how a matched exchange is loaded (from the
//! cache, memory or the recording) when an answer needs it.

use std::sync::Arc;

use super::{Found, Replay, ReplayConfig, ReplayStats};
use crate::model::{Body, Exchange, Header, Protocol, Response};
use crate::replay::cache::{AnswerCache, Recorded};
use crate::replay::grpc_index::GrpcIndexBuilder;
use crate::replay::matcher::MatcherBuilder;
use crate::replay::metrics::Metrics;
use crate::replay::plan::PlannerBuilder;
use crate::replay::source::AnswerSource;
use crate::store::{BodyKey, ExchangeLoader, RecordingRead, StoreError};

/// Why a replay of a recording could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("reading the recording: {0}")]
    Store(#[from] StoreError),
    #[error("setting up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Loads from the store running at once: each holds a blocking thread and a read connection
/// (with its page cache), so a burst of uncached answers must not start one per request.
const MAX_LOADS: usize = 4;

/// The recorded exchanges behind a replay's index.
pub(super) enum Exchanges {
    /// Given whole (tests, small in-memory recordings), in recorded order.
    Memory(Vec<Exchange>),
    /// Loaded by recorded id from the store, at most [`MAX_LOADS`] at once.
    Store(Arc<dyn ExchangeLoader>, tokio::sync::Semaphore),
}

/// The indexes of a recording, built one exchange at a time.
#[derive(Default)]
pub(super) struct Builders {
    matcher: MatcherBuilder,
    grpc: GrpcIndexBuilder,
    planner: PlannerBuilder,
    spoke_h2: bool,
}

impl Builders {
    fn push(&mut self, ex: &Exchange) {
        self.push_keyed(ex, None);
    }

    fn push_keyed(&mut self, ex: &Exchange, body: Option<BodyKey>) {
        self.matcher.push_keyed(ex, body);
        self.grpc.push(ex);
        self.planner.push(ex);
        self.spoke_h2 |= matches!(ex.protocol(), Protocol::H2 | Protocol::Grpc);
    }
}

impl Replay {
    /// Prepares `exchanges` (in recorded order) for serving, all kept in memory.
    ///
    /// # Errors
    /// The metrics registry refused a metric (a bug in mf's metric definitions).
    pub fn new(
        exchanges: &[Exchange],
        config: ReplayConfig,
    ) -> Result<Arc<Replay>, prometheus::Error> {
        let mut b = Builders::default();
        for ex in exchanges {
            b.push(ex);
        }
        Replay::build(b, Exchanges::Memory(exchanges.to_vec()), None, config)
    }

    /// Indexes the recording `reader` reads, keeping only the index in memory: answers are
    /// loaded from the recording when first asked for, and kept in a cache of
    /// [`ReplayConfig::cache_bytes`].
    ///
    /// # Errors
    /// The recording could not be read, or the metrics registry refused a metric.
    pub fn from_recording(
        reader: Box<dyn RecordingRead>,
        config: ReplayConfig,
    ) -> Result<Arc<Replay>, SetupError> {
        let started = std::time::Instant::now();
        let b = index_recording(reader.as_ref())?;
        tracing::info!(
            exchanges = b.matcher.len(),
            seconds = started.elapsed().as_secs_f64(),
            "recording indexed"
        );
        let loader = match reader.concurrent_loader()? {
            Some(loader) => {
                check_in_background(reader);
                loader
            }
            None => crate::store::into_loader(reader)?,
        };
        Ok(Replay::build(
            b,
            Exchanges::Store(loader, tokio::sync::Semaphore::new(MAX_LOADS)),
            None,
            config,
        )?)
    }

    /// A replay whose answers come from `source` (a fixtures folder) rather than a recording.
    ///
    /// # Errors
    /// The metrics registry refused a metric (a bug in mf's metric definitions).
    pub fn from_source(
        source: Arc<dyn AnswerSource>,
        config: ReplayConfig,
    ) -> Result<Arc<Replay>, prometheus::Error> {
        Replay::build(
            Builders::default(),
            Exchanges::Memory(Vec::new()),
            Some(source),
            config,
        )
    }

    fn build(
        b: Builders,
        exchanges: Exchanges,
        source: Option<Arc<dyn AnswerSource>>,
        config: ReplayConfig,
    ) -> Result<Arc<Replay>, prometheus::Error> {
        Ok(Arc::new(Replay {
            matcher: b.matcher.finish(config.repeat),
            grpc: b.grpc.finish(config.repeat),
            planner: b.planner.finish(config.realism.clone(), config.seed),
            spoke_h2: b.spoke_h2,
            exchanges,
            cache: AnswerCache::new(config.cache_bytes),
            metrics: Metrics::new()?,
            source,
            config,
            stats: ReplayStats::default(),
            spans: std::sync::OnceLock::new(),
            misses: std::sync::OnceLock::new(),
        }))
    }

    /// Number of recorded exchanges.
    pub fn len(&self) -> usize {
        self.matcher.len()
    }

    /// True when nothing was recorded (or answers come from a fixtures folder).
    pub fn is_empty(&self) -> bool {
        self.matcher.is_empty()
    }

    /// True when some recorded exchange spoke HTTP/2 or gRPC.
    pub fn spoke_h2(&self) -> bool {
        self.spoke_h2
    }

    /// Bytes of the index (approximately), and bytes and answers in the cache.
    pub fn memory(&self) -> (usize, usize, usize) {
        let (cached, answers) = self.cache.usage();
        (self.matcher.heap_bytes(), cached, answers)
    }

    /// Recorded exchange `index`, from the cache or loaded (off the async threads: the store
    /// blocks) and rendered.
    pub(super) async fn load(&self, index: usize) -> Found {
        if let Some(r) = self.cache.get(index) {
            return Found::Recorded(r);
        }
        let loaded: Result<Recorded, String> = match &self.exchanges {
            Exchanges::Memory(all) => match all.get(index) {
                Some(ex) => Ok(Recorded::new(index, ex.clone())),
                None => Err(format!("no recorded exchange at {index}")),
            },
            Exchanges::Store(loader, permits) => {
                let _permit = permits.acquire().await.map_err(|e| e.to_string());
                let loader = loader.clone();
                let id = self.matcher.id(index).unwrap_or(-1);
                tokio::task::spawn_blocking(move || {
                    loader.load(id).map(|ex| Recorded::new(index, ex))
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            }
        };
        match loaded {
            Ok(r) => {
                let r = Arc::new(r);
                self.cache.insert(r.clone());
                Found::Recorded(r)
            }
            Err(e) => {
                tracing::error!(index, error = %e, "cannot load the recorded answer");
                Found::Sourced(Box::new(unreadable(&e)))
            }
        }
    }
}

/// Reads `reader`'s recording into the indexes. Reading rows and indexing them (strings
/// interned, JSON bodies of old recordings canonicalised) take about as long each: one
/// thread does each, batches passed between them and handed back to be refilled, so that a
/// row's strings are read into allocations made once per slot rather than per row.
fn index_recording(reader: &dyn RecordingRead) -> Result<Builders, StoreError> {
    const BATCH: usize = 4096;
    type Batch = (Vec<(Exchange, Option<BodyKey>)>, usize);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<(Exchange, Option<BodyKey>)>>();
    std::thread::scope(|scope| {
        let indexer = scope.spawn(move || {
            let mut b = Builders::default();
            for (batch, n) in rx {
                for (ex, key) in &batch[..n] {
                    b.push_keyed(ex, *key);
                }
                // The walk may be over: then nobody takes the batch back.
                let _ = back_tx.send(batch);
            }
            b
        });
        let mut batch = Vec::with_capacity(BATCH);
        let mut n = 0;
        let walked = reader.for_each_indexed(&mut |ex, key| {
            if n == batch.len() {
                batch.push((Exchange::default(), None));
            }
            // Swapped, not copied: the slot takes the row, and the walk refills the slot's
            // previous exchange (from a batch handed back) in its allocations. Copying each
            // row's strings and response was a tenth of the walk on a 1M-exchange recording.
            let slot = &mut batch[n];
            std::mem::swap(&mut slot.0, ex);
            slot.1 = key;
            n += 1;
            if n < BATCH {
                return true;
            }
            let next = back_rx.try_recv().unwrap_or_default();
            n = 0;
            tx.send((std::mem::replace(&mut batch, next), BATCH))
                .is_ok()
        });
        if n > 0 {
            let _ = tx.send((batch, n));
        }
        drop(tx);
        let b = indexer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        walked.map(|()| b)
    })
}

/// Runs the recording's whole check, which opening it skipped, on a thread of its own once
/// the replay can serve: damage is reported in the log rather than
/// delaying the first answer by a read of every page (1.3 s on 1M exchanges).
fn check_in_background(reader: Box<dyn RecordingRead>) {
    let spawned = std::thread::Builder::new()
        .name("mf-check".into())
        .spawn(move || {
            lower_priority();
            match reader.check() {
                Ok(()) => tracing::debug!("recording checked"),
                Err(e) => tracing::error!(
                    error = %e,
                    "the recording is damaged: answers stored in its damaged pages will fail"
                ),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the recording check");
    }
}

/// Makes the calling thread the last to run (nice 19): the check must not take CPU from
/// the threads serving answers (a 1M-exchange check reads 330 MB). Nothing else is lost
/// when it fails.
fn lower_priority() {
    // SAFETY: plain integer arguments; on Linux `PRIO_PROCESS` with the thread id sets the
    // nice value of that thread alone, and no memory of ours is touched.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
    if rc != 0 {
        tracing::debug!("cannot lower the priority of the recording check");
    }
}

/// The answer when a matched exchange cannot be read back from the recording (damaged, or
/// its file went away): a 500 saying so, rather than a near miss that would mislead.
fn unreadable(error: &str) -> Response {
    let body = format!("mf: cannot read the recorded answer: {error}\n");
    Response {
        status: 500,
        reason: "Internal Server Error".into(),
        version: "HTTP/1.1".into(),
        headers: vec![
            Header::new("Content-Type", "text/plain; charset=utf-8"),
            Header::new("Content-Length", body.len().to_string()),
        ],
        body: Body::full(body.into_bytes()),
        trailers: vec![],
    }
}
