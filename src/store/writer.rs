//! The batched writer: one thread owns the write connection; producers never wait on disk.
//!
//! Exchanges arrive over an unbounded channel and are committed in one transaction per batch
//! (every [`WriterConfig::max_delay`] or [`WriterConfig::max_batch`] rows, whichever comes
//! first). A process killed with SIGKILL loses at most the batch in flight: WAL makes every
//! committed batch durable against process death.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use super::blobs::{self, BlobKey};
use super::codec::encode_headers;
use super::{Meta, StoreError};
use crate::model::{Body, Direction, Exchange, ExchangeSink};

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
        let conn = super::open_write(path, meta)?;
        let base: i64 = conn.query_row(
            "SELECT coalesce(max(connection_id) + 1, 1) FROM exchanges",
            [],
            |r| r.get(0),
        )?;
        let (tx, rx) = mpsc::channel();
        let summary = WriterSummary {
            path: path.to_path_buf(),
            ..Default::default()
        };
        let thread = std::thread::Builder::new()
            .name("mf-store-writer".into())
            .spawn(move || run(conn, rx, config, summary))
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("cannot start writer: {e}"),
            })?;
        let handle = WriterHandle {
            tx: tx.clone(),
            connection_id_base: u64::try_from(base).unwrap_or(1),
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
    mut conn: Connection,
    rx: mpsc::Receiver<Msg>,
    config: WriterConfig,
    mut summary: WriterSummary,
) -> Result<WriterSummary, StoreError> {
    let mut known: HashSet<BlobKey> = HashSet::new();
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
            write_batch(&mut conn, &mut known, &mut batch, &mut summary)?;
        }
    }
    // Fold the WAL back so the recording is a single self-contained file when we exit cleanly.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    Ok(summary)
}

fn write_batch(
    conn: &mut Connection,
    known: &mut HashSet<BlobKey>,
    batch: &mut Vec<Exchange>,
    summary: &mut WriterSummary,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for ex in batch.drain(..) {
        match insert_exchange(&tx, known, &ex) {
            Ok(()) => {
                summary.exchanges += 1;
                summary.messages += ex.messages.len() as u64;
                summary.body_bytes +=
                    ex.request.body.size + ex.response.as_ref().map_or(0, |r| r.body.size);
            }
            Err(e) => {
                summary.failed += 1;
                tracing::error!(error = %e, conn = ex.connection_id, seq = ex.seq, "could not store exchange");
            }
        }
    }
    tx.commit()?;
    summary.batches += 1;
    Ok(())
}

fn blob_of(
    conn: &Connection,
    known: &mut HashSet<BlobKey>,
    body: &Body,
) -> Result<Option<Vec<u8>>, StoreError> {
    if body.data.is_empty() {
        return Ok(None);
    }
    Ok(Some(blobs::put(conn, known, &body.data)?.to_vec()))
}

/// Inserts one exchange and its stream messages; public to the store for tests and import.
pub(super) fn insert_exchange(
    conn: &Connection,
    known: &mut HashSet<BlobKey>,
    ex: &Exchange,
) -> Result<(), StoreError> {
    let req = &ex.request;
    let req_body = blob_of(conn, known, &req.body)?;
    let req_headers = blobs::put(conn, known, &encode_headers(&req.headers))?;
    let resp = ex.response.as_ref();
    let resp_body = match resp {
        Some(r) => blob_of(conn, known, &r.body)?,
        None => None,
    };
    let tags = if ex.tags.is_empty() {
        None
    } else {
        serde_json::to_string(&ex.tags).ok()
    };
    let opt_trailers = |t: &[crate::model::Header]| {
        if t.is_empty() {
            None
        } else {
            Some(encode_headers(t))
        }
    };
    let as_i64 = |v: Option<u64>| v.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    conn.prepare_cached(
        "INSERT INTO exchanges (
            connection_id, seq, protocol, started_at_ns, client_addr, server_addr, scheme, authority,
            method, target, req_version, req_headers, req_body, req_body_size, req_body_truncated, req_trailers,
            status, reason, resp_version, resp_headers, resp_body, resp_body_size, resp_body_truncated, resp_trailers,
            request_end_ns, response_first_byte_ns, response_end_ns, error, trace_id, tags, error_kind
        ) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                  ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31)",
    )?
    .execute(params![
        i64::try_from(ex.connection_id).unwrap_or(i64::MAX),
        ex.seq,
        ex.protocol().as_str(),
        ex.started_at_ns,
        ex.client_addr,
        ex.server_addr,
        if ex.scheme.is_empty() { "http" } else { ex.scheme.as_str() },
        ex.authority,
        req.method,
        req.target,
        req.version,
        &req_headers[..],
        req_body,
        i64::try_from(req.body.size).unwrap_or(i64::MAX),
        req.body.truncated,
        opt_trailers(&req.trailers),
        resp.map(|r| r.status),
        resp.map(|r| r.reason.as_str()),
        resp.map(|r| r.version.as_str()),
        resp.map(|r| encode_headers(&r.headers)),
        resp_body,
        resp.map_or(0, |r| i64::try_from(r.body.size).unwrap_or(i64::MAX)),
        resp.is_some_and(|r| r.body.truncated),
        resp.and_then(|r| opt_trailers(&r.trailers)),
        as_i64(ex.timings.request_end_ns),
        as_i64(ex.timings.response_first_byte_ns),
        as_i64(ex.timings.response_end_ns),
        ex.error.as_ref().map(|e| e.message.as_str()),
        ex.trace_id,
        tags,
        ex.error.as_ref().map(|e| e.kind.as_str()),
    ])?;
    let id = conn.last_insert_rowid();
    for (idx, m) in ex.messages.iter().enumerate() {
        let data = if m.data.is_empty() {
            None
        } else {
            Some(blobs::put(conn, known, &m.data)?.to_vec())
        };
        let kind = serde_json::to_string(&m.kind).unwrap_or_default();
        conn.prepare_cached(
            "INSERT INTO messages (exchange_id, idx, direction, offset_ns, kind, size, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            id,
            idx as i64,
            matches!(m.direction, Direction::ServerToClient) as i64,
            i64::try_from(m.offset_ns).unwrap_or(i64::MAX),
            kind,
            m.data.len() as i64,
            data,
        ])?;
    }
    Ok(())
}
