//! The batched writer: one thread owns the write connection; producers never wait on disk.
//!
//! Exchanges arrive over an unbounded channel and are committed in one transaction per batch
//! (every [`WriterConfig::max_delay`] or [`WriterConfig::max_batch`] rows, whichever comes
//! first). A process killed with SIGKILL loses at most the batch in flight: WAL makes every
//! committed batch durable against process death.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backend::RecordingWrite;
use super::{Meta, StoreError};
use crate::model::{Exchange, ExchangeSink};

/// How often the writer looks for more work while a batch is open.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Batching knobs.
#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    pub max_batch: usize,
    pub max_delay: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: 1000,
            max_delay: Duration::from_millis(50),
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
    /// Exchanges that could not be written (each was logged).
    pub failed: u64,
}

enum Msg {
    Exchange(Box<Exchange>),
    Shutdown,
}

/// Cheap, cloneable handle producers use to submit exchanges.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
    connection_id_base: u64,
}

impl WriterHandle {
    /// Connection ids handed out by capture should start here, so that a recording appended
    /// to keeps ids unique.
    pub fn connection_id_base(&self) -> u64 {
        self.connection_id_base
    }
}

impl ExchangeSink for WriterHandle {
    fn record(&self, exchange: Exchange) {
        // Fails only after shutdown, when nothing more can be saved anyway.
        if self.tx.send(Msg::Exchange(Box::new(exchange))).is_err() {
            tracing::warn!("recording already closed; exchange dropped");
        }
    }
}

/// Owner of the writer thread; [`Writer::finish`] flushes and joins it.
pub struct Writer {
    tx: mpsc::Sender<Msg>,
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
        let backend = super::open_writer(path, meta)?;
        let base = backend.connection_id_base()?;
        let (tx, rx) = mpsc::channel();
        let summary = WriterSummary {
            path: path.to_path_buf(),
            ..Default::default()
        };
        let thread = std::thread::Builder::new()
            .name("mf-store-writer".into())
            .spawn(move || run(backend, rx, config, summary))
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("cannot start writer: {e}"),
            })?;
        let handle = WriterHandle {
            tx: tx.clone(),
            connection_id_base: base,
        };
        Ok((Writer { tx, thread }, handle))
    }

    /// Writes everything submitted so far and closes the file.
    ///
    /// # Errors
    /// The final commit failed.
    pub fn finish(self) -> Result<WriterSummary, StoreError> {
        let _ = self.tx.send(Msg::Shutdown);
        match self.thread.join() {
            Ok(r) => r,
            Err(_) => Err(StoreError::Corrupt {
                path: PathBuf::new(),
                reason: "writer thread panicked".into(),
            }),
        }
    }
}

fn run(
    mut backend: Box<dyn RecordingWrite>,
    rx: mpsc::Receiver<Msg>,
    config: WriterConfig,
    mut summary: WriterSummary,
) -> Result<WriterSummary, StoreError> {
    let mut batch: Vec<Exchange> = Vec::new();
    let mut shutting_down = false;
    while !shutting_down {
        // Block for the first item of a batch, then gather until the batch is full or old.
        match rx.recv() {
            Ok(Msg::Exchange(e)) => batch.push(*e),
            Ok(Msg::Shutdown) | Err(_) => shutting_down = true,
        }
        // Gather the rest of the batch by polling, not by blocking on the channel: a receiver
        // parked in `recv_timeout` makes every send a futex wake-up and a context switch,
        // which showed as the top cost of the proxy under load. Senders never block.
        let deadline = Instant::now() + config.max_delay;
        while !shutting_down && batch.len() < config.max_batch {
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
            write_batch(backend.as_mut(), &mut batch, &mut summary)?;
        }
    }
    backend.close();
    Ok(summary)
}

fn write_batch(
    backend: &mut dyn RecordingWrite,
    batch: &mut Vec<Exchange>,
    summary: &mut WriterSummary,
) -> Result<(), StoreError> {
    // Rejected exchanges by address in `batch`: they count as failed, not as stored.
    let mut rejected: Vec<*const Exchange> = Vec::new();
    backend.append(batch, &mut |ex, e| {
        rejected.push(ex);
        tracing::error!(error = %e, conn = ex.connection_id, seq = ex.seq, "could not store exchange");
    })?;
    for ex in batch.iter() {
        if rejected.contains(&(ex as *const Exchange)) {
            summary.failed += 1;
            continue;
        }
        summary.exchanges += 1;
        summary.messages += ex.messages.len() as u64;
        summary.body_bytes +=
            ex.request.body.size + ex.response.as_ref().map_or(0, |r| r.body.size);
    }
    batch.clear();
    summary.batches += 1;
    Ok(())
}
