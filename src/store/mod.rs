//! The recording: the only code in mf that touches SQLite or PostgreSQL.
//!
//! A recording is one SQLite database in WAL mode. `PRAGMA user_version` holds the schema
//! version and migrations run forward only; `application_id` marks the file as mf's so that a
//! foreign SQLite file is refused rather than scribbled on. Bodies and stream messages live in a
//! content-addressed `blobs` table (BLAKE3 of the raw bytes, zstd-compressed when that helps), so
//! a body repeated a thousand times is stored once.
//!
//! The rest of mf reads and writes recordings through [`RecordingRead`] and [`RecordingWrite`]
//! (`backend`), opened with [`open_reader`] / [`open_writer`] from a [`Location`]: a file
//! (SQLite) or a `postgres://` URL (`pg`: one recording shared by many recorders and replays).
//! Files: `backend` (the traits), `read` (SQLite reading), `append` (SQLite writing), `writer`
//! (the batching writer thread, over any [`RecordingWrite`]), `lean_read` (the SQLite walk
//! of what a replay indexes, and the pool of readers that loads single exchanges), `schema` (versions and
//! migrations), `blobs` and `codec` (body and header encodings), `fixtures` (the fixtures
//! folder format, which is files rather than SQLite), `select` (the one selection type,
//! turned into SQL), `listing` (listing rows for a selection), `prune` (retention), `sql`
//! and `sqlfn` (read-only queries over documented views, and the SQL functions behind them).
//!
//! Imports: `model` only.

mod append;
mod backend;
mod blob_memo;
mod blobs;
mod codec;
pub mod fixtures;
mod lean_read;
mod listing;
mod match_key;
mod pg;
mod prune;
mod raw_stmt;
mod read;
mod row;
mod schema;
mod select;
mod sql;
mod sqlfn;
mod writer;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

pub use backend::{into_loader, lean, ExchangeLoader, RecordingRead, RecordingWrite};
pub use listing::ExchangeSummary;
pub use match_key::{body_key, canonical_json, short_hash, BodyKey};
pub use prune::{prune, PruneReport, PruneRule};
pub use read::Reader;
pub use select::{InMemory, Selection, SelectionError, StatusRange};
pub use sql::{QueryError, QueryOutput, SqlQuery, SqlValue};
pub use writer::{WhenFull, Writer, WriterConfig, WriterHandle, WriterSummary};

/// Connections are opened without SQLite's per-connection mutex: a rusqlite `Connection` is
/// never shared between threads (it is not `Sync`), and in the default serialized mode every
/// `sqlite3_column_*` call took that mutex — a tenth of an `mf infer` profile.
pub(crate) const NO_MUTEX: OpenFlags = OpenFlags::SQLITE_OPEN_NO_MUTEX;

/// One inferred pattern as kept in the recording's `patterns` table.
#[derive(Clone, Debug, PartialEq)]
pub struct PatternRow {
    /// `ordering`, `transition`, `value_flow`, `retry`…
    pub kind: String,
    /// One human-readable line.
    pub summary: String,
    pub detail: serde_json::Value,
}

/// Where a recording lives: a file, or a PostgreSQL database named by a URL
/// (`postgres://user@host/db?recording=NAME`). Command-line arguments stay paths; this is
/// what the store makes of one.
pub(crate) enum Location {
    File(PathBuf),
    Postgres(Box<pg::PgLocation>),
}

impl Location {
    /// What `path` names.
    ///
    /// # Errors
    /// A URL that is not a valid PostgreSQL location.
    pub(crate) fn of(path: &Path) -> Result<Location, StoreError> {
        if pg::is_postgres_url(path) {
            let url = path.to_str().unwrap_or_default();
            return Ok(Location::Postgres(Box::new(pg::PgLocation::parse(url)?)));
        }
        Ok(Location::File(path.to_path_buf()))
    }
}

/// `path` as messages and metadata may show it: a PostgreSQL URL loses its password, a file
/// path is shown as it is.
pub fn display_location(path: &Path) -> String {
    match path.to_str() {
        Some(url) if pg::is_postgres_url(path) => pg::redact(url),
        _ => path.display().to_string(),
    }
}

/// True when `path` names a database rather than a file (it is never a folder).
pub fn is_database_url(path: &Path) -> bool {
    pg::is_postgres_url(path)
}

/// `arg` with any password a PostgreSQL URL in it holds removed: for command lines kept in a
/// recording's metadata.
pub fn redact_argument(arg: &str) -> String {
    if pg::is_postgres_url(Path::new(arg)) {
        pg::redact(arg)
    } else {
        arg.to_string()
    }
}

/// `arg` with the password of a PostgreSQL URL in it taken out and kept for this process
/// only (opening the URL returned still uses it): the command line goes through this first,
/// so that no message, log line or metadata can quote a password.
pub fn hide_password(arg: &str) -> String {
    pg::hide_password(arg)
}

/// The default name a recorder stores with its exchanges: this machine's host name.
pub fn default_recorder() -> String {
    pg::host_name()
}

/// Opens the recording at `path` (a file or a database URL) for reading.
///
/// # Errors
/// Missing file, not an mf recording, a recording from a newer mf, or a damaged file; a bad
/// URL or an unreachable database.
pub fn open_reader(path: &Path) -> Result<Box<dyn RecordingRead>, StoreError> {
    match Location::of(path)? {
        Location::File(p) => Ok(Box::new(Reader::open(&p)?)),
        Location::Postgres(loc) => Ok(Box::new(pg::PgReader::open(*loc)?)),
    }
}

/// Opens the recording at `path` for appending, creating it with `meta` when missing.
///
/// # Errors
/// As [`open_reader`], plus failures to create the file.
pub fn open_writer(path: &Path, meta: &Meta) -> Result<Box<dyn RecordingWrite>, StoreError> {
    match Location::of(path)? {
        Location::File(p) => Ok(Box::new(append::SqliteWriter::create(&p, meta)?)),
        Location::Postgres(loc) => Ok(Box::new(pg::PgWriter::create(*loc, meta)?)),
    }
}

/// Opens an existing recording of this version for adding derived data (patterns), without
/// the integrity check and migration [`open_reader`] did moments before.
///
/// # Errors
/// Missing file, not a recording of this version, or the file cannot be written.
pub fn open_existing_writer(path: &Path) -> Result<Box<dyn RecordingWrite>, StoreError> {
    match Location::of(path)? {
        Location::File(p) => Ok(Box::new(append::SqliteWriter::existing(&p)?)),
        Location::Postgres(loc) => Ok(Box::new(pg::PgWriter::create(*loc, &Meta::default())?)),
    }
}

/// Schema version written by this build.
pub const SCHEMA_VERSION: i32 = schema::MIGRATIONS.len() as i32;

/// `PRAGMA application_id` of mf recordings ("mf01" in ASCII).
pub(crate) const APPLICATION_ID: i32 = 0x6d66_3031;

/// Why a recording cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: no such recording")]
    NotFound { path: PathBuf },
    #[error("{path}: not an mf recording ({reason})")]
    NotARecording { path: PathBuf, reason: String },
    #[error(
        "{path}: recording has schema version {found}, this mf understands up to {supported}; please update mf"
    )]
    TooNew {
        path: PathBuf,
        found: i32,
        supported: i32,
    },
    #[error("{path}: recording is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("no exchange with id {0}")]
    NoSuchExchange(i64),
    #[error(
        "{path}: cannot open the recording read-write: its folder or file is read-only (SQLite keeps its -wal and -shm files beside it); copy it somewhere writable"
    )]
    ReadOnly { path: PathBuf },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{location}: {reason}")]
    BadLocation { location: String, reason: String },
    #[error("{location}: {what} works on recording files only, not on a database")]
    FileOnly {
        location: String,
        what: &'static str,
    },
    #[error("cannot be stored: {reason}")]
    Unstorable { reason: String },
    /// Its message has the library's causes in it already: no `source`, so that error chains
    /// do not repeat them.
    #[error("postgres: {}", pg::describe(.0))]
    Postgres(postgres::Error),
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(e)
    }
}

impl StoreError {
    /// True when the file or the disk under it failed (full, I/O error, gone read-only),
    /// rather than the data: every later write would fail the same way until it is fixed.
    pub fn is_storage_failure(&self) -> bool {
        use rusqlite::ErrorCode;
        if let StoreError::Postgres(e) = self {
            return pg::is_connection_failure(e);
        }
        let StoreError::Sqlite(e) = self else {
            return matches!(self, StoreError::ReadOnly { .. });
        };
        matches!(
            e.sqlite_error_code(),
            Some(
                ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::ReadOnly
                    | ErrorCode::CannotOpen
                    | ErrorCode::PermissionDenied
                    | ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::OutOfMemory
            )
        )
    }
}

/// Metadata written once when a recording is created.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// What produced the recording: `proxy http://upstream`, `import file.pcap`…
    pub source: String,
    /// The command line that created it.
    pub command_line: String,
    /// The recorder's name, kept with each exchange by backends shared by several recorders
    /// (empty: this machine's host name).
    pub recorder: String,
}

/// What an SQLite error on opening means for the user, by SQLite's error code.
fn classify_open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::NotARecording {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly {
            path: path.to_path_buf(),
        },
        _ => StoreError::Sqlite(e),
    }
}

/// Opens an existing recording, checking that it is one; an older schema is migrated.
fn open_read(path: &Path) -> Result<Connection, StoreError> {
    if pg::is_postgres_url(path) {
        // `mf sql` and `mf prune` speak SQLite; a database has psql and its own tools.
        return Err(StoreError::FileOnly {
            location: display_location(path),
            what: "this command",
        });
    }
    if !path.exists() {
        return Err(StoreError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_dir() {
        return Err(StoreError::NotARecording {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    // Read-write so that an old recording can be migrated and a WAL left by a killed recorder
    // is checkpointed; nothing else is written.
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | NO_MUTEX)
        .or_else(|_| Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | NO_MUTEX))
        .map_err(|e| classify_open_error(path, e))?;
    schema::check_and_migrate(&conn, path, false)?;
    sqlfn::register_path(&conn)?;
    Ok(conn)
}

/// Opens a recording for writing, creating it (and its schema) when missing.
fn open_write(path: &Path, meta: &Meta) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| classify_open_error(path, e))?;
    schema::check_and_migrate(&conn, path, true)?;
    schema::write_meta(&conn, meta)?;
    Ok(conn)
}

/// Writes `exchanges` synchronously, 10,000 per transaction: for bulk producers (generators,
/// importers) that have all their exchanges at hand and need no writer thread.
///
/// # Errors
/// The file cannot be opened as a recording, or a write fails.
pub fn write_exchanges(
    path: &Path,
    meta: &Meta,
    exchanges: impl Iterator<Item = crate::model::Exchange>,
) -> Result<u64, StoreError> {
    const CHUNK: usize = 10_000;
    let mut backend = open_writer(path, meta)?;
    let mut written = 0u64;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut exchanges = exchanges.peekable();
    while exchanges.peek().is_some() {
        chunk.extend(exchanges.by_ref().take(CHUNK));
        let mut first_error = None;
        backend.append(&chunk, &mut |_, e| {
            first_error.get_or_insert(e);
        })?;
        if let Some(e) = first_error {
            return Err(e);
        }
        written += chunk.len() as u64;
        chunk.clear();
    }
    backend.close();
    Ok(written)
}

#[cfg(test)]
mod tests;
