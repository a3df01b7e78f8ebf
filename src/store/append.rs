//! The SQLite write side: exchanges (bodies and messages into the blob table) and the
//! patterns table, behind [`RecordingWrite`].

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags};

use super::backend::RecordingWrite;
use super::blobs::{self, KnownBlobs};
use super::codec::{encode_chunks, encode_headers, encode_headers_into};
use super::raw_stmt::{RawInsert, Val};
use super::{PatternRow, StoreError, APPLICATION_ID, SCHEMA_VERSION};
use crate::model::{Body, Direction, Exchange};

/// A recording file opened for writing.
pub(super) struct SqliteWriter {
    conn: Connection,
    path: PathBuf,
    /// Blobs already stored by this writer: a repeated body costs a hash, not a query.
    known: KnownBlobs,
    /// Loading a new recording without syncing each checkpoint ([`RecordingWrite::bulk_load`]);
    /// `close` syncs the file once.
    bulk: bool,
    /// During a bulk load, the recording opened a second time to start its writeback early.
    early_writeback: Option<std::fs::File>,
}

impl SqliteWriter {
    /// Opens (or creates) the recording at `path`, recording `meta` when it is new.
    pub(super) fn create(path: &Path, meta: &super::Meta) -> Result<SqliteWriter, StoreError> {
        Ok(SqliteWriter {
            conn: super::open_write(path, meta)?,
            path: path.to_path_buf(),
            known: KnownBlobs::default(),
            bulk: false,
            early_writeback: None,
        })
    }

    /// Opens an existing recording of this schema version without migrating or checking
    /// its integrity (a reader that just read it did that): for adding derived data.
    pub(super) fn existing(path: &Path) -> Result<SqliteWriter, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | super::NO_MUTEX)
                .map_err(|e| super::classify_open_error(path, e))?;
        let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if app_id != APPLICATION_ID || version != SCHEMA_VERSION {
            return Err(StoreError::NotARecording {
                path: path.to_path_buf(),
                reason: "unexpected schema".into(),
            });
        }
        conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
        Ok(SqliteWriter {
            conn,
            path: path.to_path_buf(),
            known: KnownBlobs::default(),
            bulk: false,
            early_writeback: None,
        })
    }
}

impl RecordingWrite for SqliteWriter {
    fn connection_id_base(&self) -> Result<u64, StoreError> {
        let base: i64 = self.conn.query_row(
            "SELECT coalesce(max(connection_id) + 1, 1) FROM exchanges",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(base).unwrap_or(1))
    }

    fn append(
        &mut self,
        batch: &[Exchange],
        rejected: &mut dyn FnMut(&Exchange, StoreError),
    ) -> Result<(), StoreError> {
        let result = (|| {
            let tx = self.conn.transaction()?;
            // Prepared once per batch: looking each up in the statement cache (hashing its
            // text) for every row showed in the writer's profile.
            let mut stmts = Stmts {
                blob: RawInsert::prepare(&tx, blobs::INSERT_BLOB)?,
                exchange: RawInsert::prepare(&tx, INSERT_EXCHANGE)?,
                message: RawInsert::prepare(&tx, INSERT_MESSAGE)?,
                req_headers: Vec::new(),
                resp_headers: Vec::new(),
                last_req: None,
            };
            for ex in batch {
                match insert_exchange(&tx, &mut stmts, &mut self.known, ex) {
                    Ok(()) => {}
                    // The disk, not the exchange: the whole batch fails (and rolls back).
                    Err(e) if e.is_storage_failure() => return Err(e),
                    Err(e) => rejected(ex, e),
                }
            }
            drop(stmts);
            tx.commit()?;
            Ok(())
        })();
        if result.is_err() {
            // Blobs inserted by the rolled-back transaction are not in the file: forget them,
            // or a later exchange would point at a blob nobody stored.
            self.known.clear();
        } else if let Some(file) = &self.early_writeback {
            start_writeback(file);
        }
        result
    }

    fn replace_patterns(&mut self, patterns: &[PatternRow]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM patterns", [])?;
        for p in patterns {
            tx.execute(
                "INSERT INTO patterns (kind, summary, detail) VALUES (?1, ?2, ?3)",
                params![p.kind, p.summary, p.detail.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn bulk_load(&mut self) -> Result<(), StoreError> {
        // Only into a recording with nothing in it: a power cut during the load can then
        // cost only what this import was writing (run it again), never what was there
        // before. A process crash (kill -9) is safe either way: the data is in the OS.
        // Why: with `synchronous = NORMAL` every WAL checkpoint waits on two fsyncs; on a
        // 320 MB capture that was 41 fsyncs and 0.13-0.15 s of a 0.56 s import, spent on
        // the writer thread, which is as busy as the parsing thread.
        let empty: bool =
            self.conn
                .query_row("SELECT NOT EXISTS (SELECT 1 FROM exchanges)", [], |r| {
                    r.get(0)
                })?;
        if empty {
            self.conn.execute_batch("PRAGMA synchronous = OFF;")?;
            self.bulk = true;
            self.early_writeback = std::fs::File::open(&self.path).ok();
        }
        Ok(())
    }

    fn close(&mut self) {
        // Fold the WAL back so the recording is a single self-contained file.
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::debug!(path = %self.path.display(), error = %e, "WAL checkpoint failed");
        }
        if self.bulk {
            // What the checkpoint did not sync: the file, and its name in the folder.
            let synced = std::fs::File::open(&self.path).and_then(|f| f.sync_all());
            let folder = match self.path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let synced = synced.and_then(|()| std::fs::File::open(folder)?.sync_all());
            if let Err(e) = synced {
                tracing::warn!(path = %self.path.display(), error = %e, "could not sync the recording");
            }
        }
    }
}

/// Asks the kernel to start writing the recording's dirty pages to disk, without waiting.
///
/// Why: a bulk load syncs once, at `close`; left to itself the kernel kept the whole file
/// dirty until then, and that one fsync took 0.04-0.43 s of a 0.8 s import of a 320 MB
/// capture (the disk's speed, not mf's work). Started after every batch, the writeback runs
/// while the import goes on, and the final sync has little left.
fn start_writeback(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid descriptor; SYNC_FILE_RANGE_WRITE only queues writeback. Errors
        // do not matter: the sync at close is what makes the file durable.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// The statements of one batch's transaction.
struct Stmts<'c> {
    blob: RawInsert<'c>,
    exchange: RawInsert<'c>,
    message: RawInsert<'c>,
    /// Encoded header blocks of the exchange being inserted, reused from row to row: a
    /// fresh pair per exchange was most of the writer's allocations.
    req_headers: Vec<u8>,
    resp_headers: Vec<u8>,
    /// The request headers of the row before and the key of their stored block: a client
    /// sends the same set over and over, and comparing the lists costs under a third of
    /// encoding the block and looking it up again (~480 instructions a row saved, callgrind).
    last_req: Option<(Vec<crate::model::Header>, blobs::BlobKey)>,
}

const INSERT_EXCHANGE: &str = "INSERT INTO exchanges (
            connection_id, seq, protocol, started_at_ns, client_addr, server_addr, scheme, authority,
            method, target, req_version, req_headers, req_body, req_body_size, req_body_truncated, req_trailers,
            status, reason, resp_version, resp_headers, resp_body, resp_body_size, resp_body_truncated, resp_trailers,
            request_end_ns, response_first_byte_ns, response_end_ns, error, trace_id, tags, error_kind,
            req_body_chunks, resp_body_chunks, req_body_key
        ) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                  ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31,
                  ?32, ?33, ?34)";

const INSERT_MESSAGE: &str =
    "INSERT INTO messages (exchange_id, idx, direction, offset_ns, kind, size, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

fn blob_of(
    insert: &mut RawInsert<'_>,
    known: &mut KnownBlobs,
    body: &Body,
) -> Result<Option<blobs::BlobKey>, StoreError> {
    if body.data.is_empty() {
        return Ok(None);
    }
    Ok(Some(blobs::put(insert, known, &body.data)?))
}

fn size(n: u64) -> Val<'static> {
    Val::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn opt_size(n: Option<u64>) -> Val<'static> {
    n.map_or(Val::Null, size)
}

/// Texts that most rows repeat (methods, versions, reasons, schemes): one of these is bound
/// as [`Val::Static`], so a row that repeats the previous row's value does not rebind it.
const COMMON_WORDS: &[&str] = &[
    "GET",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "HEAD",
    "OPTIONS",
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/2",
    "OK",
    "Created",
    "No Content",
    "Not Found",
    "http",
    "https",
];

/// `s` as a [`Val`], the static copy when it is one of [`COMMON_WORDS`].
fn word(s: &str) -> Val<'_> {
    COMMON_WORDS
        .iter()
        .find(|w| **w == s)
        .map_or(Val::Text(s), |w| Val::Static(w))
}

/// Inserts one exchange and its stream messages.
fn insert_exchange(
    conn: &Connection,
    stmts: &mut Stmts<'_>,
    known: &mut KnownBlobs,
    ex: &Exchange,
) -> Result<(), StoreError> {
    let req = &ex.request;
    let req_body = blob_of(&mut stmts.blob, known, &req.body)?;
    let req_headers = match &mut stmts.last_req {
        Some((headers, key)) if *headers == req.headers => *key,
        last => {
            encode_headers_into(&mut stmts.req_headers, &req.headers);
            let key = blobs::put(&mut stmts.blob, known, &stmts.req_headers)?;
            match last {
                Some((headers, last_key)) => {
                    headers.clone_from(&req.headers);
                    *last_key = key;
                }
                None => *last = Some((req.headers.clone(), key)),
            }
            key
        }
    };
    let resp = ex.response.as_ref();
    let resp_body = match resp {
        Some(r) => blob_of(&mut stmts.blob, known, &r.body)?,
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
    let req_trailers = opt_trailers(&req.trailers);
    let resp_headers = resp.map(|r| {
        encode_headers_into(&mut stmts.resp_headers, &r.headers);
        &stmts.resp_headers[..]
    });
    let resp_trailers = resp.and_then(|r| opt_trailers(&r.trailers));
    let req_chunks = encode_chunks(&req.body.chunks);
    let resp_chunks = resp.and_then(|r| encode_chunks(&r.body.chunks));
    let body_key = super::match_key::stored(&req.body.data);
    let scheme = if ex.scheme.is_empty() {
        Val::Static("http")
    } else {
        word(&ex.scheme)
    };
    stmts.exchange.run(&[
        size(ex.connection_id),
        Val::Int(i64::from(ex.seq)),
        Val::Static(ex.protocol().as_str()),
        Val::Int(ex.started_at_ns),
        Val::opt_text(ex.client_addr.as_deref()),
        Val::opt_text(ex.server_addr.as_deref()),
        scheme,
        Val::Text(&ex.authority),
        word(&req.method),
        Val::Text(&req.target),
        word(&req.version),
        Val::Blob(&req_headers),
        Val::opt_blob(req_body.as_ref().map(|k| &k[..])),
        size(req.body.size),
        Val::Int(i64::from(req.body.truncated)),
        Val::opt_blob(req_trailers.as_deref()),
        Val::opt_int(resp.map(|r| i64::from(r.status))),
        resp.map_or(Val::Null, |r| word(&r.reason)),
        resp.map_or(Val::Null, |r| word(&r.version)),
        Val::opt_blob(resp_headers),
        Val::opt_blob(resp_body.as_ref().map(|k| &k[..])),
        resp.map_or(Val::Int(0), |r| size(r.body.size)),
        Val::Int(i64::from(resp.is_some_and(|r| r.body.truncated))),
        Val::opt_blob(resp_trailers.as_deref()),
        opt_size(ex.timings.request_end_ns),
        opt_size(ex.timings.response_first_byte_ns),
        opt_size(ex.timings.response_end_ns),
        Val::opt_text(ex.error.as_ref().map(|e| e.message.as_str())),
        Val::opt_text(ex.trace_id.as_deref()),
        Val::opt_text(tags.as_deref()),
        ex.error
            .as_ref()
            .map_or(Val::Null, |e| Val::Static(e.kind.as_str())),
        Val::opt_blob(req_chunks.as_deref()),
        Val::opt_blob(resp_chunks.as_deref()),
        Val::opt_blob(body_key.as_deref()),
    ])?;
    let id = conn.last_insert_rowid();
    for (idx, m) in ex.messages.iter().enumerate() {
        let data = if m.data.is_empty() {
            None
        } else {
            Some(blobs::put(&mut stmts.blob, known, &m.data)?)
        };
        let kind = serde_json::to_string(&m.kind).unwrap_or_default();
        stmts.message.run(&[
            Val::Int(id),
            Val::Int(idx as i64),
            Val::Int(i64::from(matches!(m.direction, Direction::ServerToClient))),
            size(m.offset_ns),
            Val::Text(&kind),
            Val::Int(m.data.len() as i64),
            Val::opt_blob(data.as_ref().map(|k| &k[..])),
        ])?;
    }
    Ok(())
}
