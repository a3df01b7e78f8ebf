//! Schema creation, version checks and forward migrations.

use std::path::Path;

use rusqlite::{params, Connection};

use super::{Meta, StoreError, APPLICATION_ID, SCHEMA_VERSION};

/// Forward-only migrations; entry `i` takes a database from version `i` to `i + 1`.
/// Never edit a released entry: append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    // v1: exchanges, stream messages, content-addressed blobs, metadata, inferred patterns.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE blobs (
        hash  BLOB PRIMARY KEY,      -- BLAKE3 of the raw bytes (16 bytes)
        size  INTEGER NOT NULL,      -- raw size
        codec INTEGER NOT NULL,      -- 0 raw, 1 zstd
        data  BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE exchanges (
        id              INTEGER PRIMARY KEY,
        connection_id   INTEGER NOT NULL,
        seq             INTEGER NOT NULL,
        protocol        TEXT NOT NULL,
        started_at_ns   INTEGER NOT NULL,
        client_addr     TEXT,
        server_addr     TEXT,
        scheme          TEXT NOT NULL DEFAULT 'http',
        authority       TEXT NOT NULL DEFAULT '',
        method          TEXT NOT NULL,
        target          TEXT NOT NULL,
        req_version     TEXT NOT NULL,
        req_headers     BLOB NOT NULL, -- blobs.hash: request header sets repeat, so they are stored once
        req_body        BLOB,          -- blobs.hash, NULL when empty
        req_body_size   INTEGER NOT NULL DEFAULT 0,
        req_body_truncated INTEGER NOT NULL DEFAULT 0,
        req_trailers    BLOB,
        status          INTEGER,       -- NULL when no response arrived
        reason          TEXT,
        resp_version    TEXT,
        resp_headers    BLOB,
        resp_body       BLOB,
        resp_body_size  INTEGER NOT NULL DEFAULT 0,
        resp_body_truncated INTEGER NOT NULL DEFAULT 0,
        resp_trailers   BLOB,
        request_end_ns  INTEGER,
        response_first_byte_ns INTEGER,
        response_end_ns INTEGER,
        error           TEXT,
        trace_id        TEXT,
        tags            TEXT           -- JSON object, NULL when empty
    );
    CREATE TABLE messages (
        exchange_id INTEGER NOT NULL REFERENCES exchanges (id),
        idx         INTEGER NOT NULL,
        direction   INTEGER NOT NULL,  -- 0 client to server, 1 server to client
        offset_ns   INTEGER NOT NULL,
        kind        TEXT NOT NULL,     -- JSON of model::MessageKind
        size        INTEGER NOT NULL,
        data        BLOB,              -- blobs.hash, NULL when empty
        PRIMARY KEY (exchange_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE patterns (
        id      INTEGER PRIMARY KEY,
        kind    TEXT NOT NULL,
        summary TEXT NOT NULL,
        detail  TEXT NOT NULL          -- JSON
    );
    "#,
    // v2: `error` gets a kind (`model::ErrorKind`) beside its message. Recordings of v1 kept
    // only the message; the words below are the ones v1's recorders wrote for each kind
    // (proxy: "… within …" for timeouts, "connect …" for refusals; passive capture: "capture
    // hole", "not captured", "HPACK"), so old failures keep their meaning, and anything else
    // becomes `other`.
    r#"
    ALTER TABLE exchanges ADD COLUMN error_kind TEXT;
    UPDATE exchanges SET error_kind = CASE
        WHEN error LIKE '%within%' OR error LIKE '%timed out%' THEN 'upstream_timeout'
        WHEN error LIKE '%refused%' OR error LIKE '%connect%' OR error LIKE '%resolve%' THEN 'upstream_refused'
        WHEN error LIKE '%capture hole%' OR error LIKE '%not captured%' OR error LIKE '%HPACK%'
             OR error LIKE '%capture ended%' THEN 'capture_hole'
        WHEN error LIKE '%tls%' OR error LIKE '%certificate%' THEN 'upstream_tls'
        WHEN error LIKE '%reset%' OR error LIKE '%closed%' THEN 'upstream_reset'
        WHEN error LIKE '%malformed%' OR error LIKE '%invalid%' THEN 'malformed_response'
        ELSE 'other'
    END
    WHERE error IS NOT NULL;
    "#,
    // v3: when a body's pieces arrived (`model::BodyChunk`, encoded by `codec::encode_chunks`),
    // so that replay can send Server-Sent Events and slow downloads at their recorded pace.
    // NULL for a body that arrived at once, which is every body of an older recording.
    r#"
    ALTER TABLE exchanges ADD COLUMN req_body_chunks BLOB;
    ALTER TABLE exchanges ADD COLUMN resp_body_chunks BLOB;
    "#,
    // v4: the key a replay compares each request body by (`match_key`), written with the
    // exchange, so that indexing a recording reads no request body: on a 1M-exchange
    // recording the walk had looked up and decompressed 270k body blobs scattered over the
    // file. NULL in rows written before, whose keys a replay still computes from the body.
    r#"
    ALTER TABLE exchanges ADD COLUMN req_body_key BLOB;
    "#,
];

/// Checks that `conn` is an mf recording this build understands, creating the schema in an
/// empty file when `create` is set, and applies pending migrations. A writer (`create`) also
/// checks the whole file ([`full_check`]) before adding to it; a reader checks only that
/// the file holds all the pages its header counts ([`check_length`]): `quick_check` reads
/// every page, 1.3 s of a replay's start on a 1M-exchange recording, and a damaged page
/// still fails the read that reaches it with a clear error.
pub(super) fn check_and_migrate(
    conn: &Connection,
    path: &Path,
    create: bool,
) -> Result<(), StoreError> {
    let not_rec = |reason: String| StoreError::NotARecording {
        path: path.to_path_buf(),
        reason,
    };
    // The first read of the header is where SQLite notices a file that is not a database.
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| super::classify_open_error(path, e))?;
    let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let table_count: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| super::classify_open_error(path, e))?;

    if app_id == 0 && version == 0 && table_count == 0 {
        if !create {
            return Err(not_rec("the file is an empty database".into()));
        }
    } else if app_id != APPLICATION_ID {
        return Err(not_rec(
            "it is an SQLite database of another program".into(),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    // A new, empty file is set up without syncs: until it holds an exchange, a power cut can
    // cost nothing but the empty file, and the rollback-journal commit that turns WAL on plus
    // the schema's transactions were six fsyncs (~18 ms) at the start of every import. The
    // first checkpoint under `NORMAL` below syncs the WAL before copying any of it back.
    let fresh = app_id == 0 && version == 0 && table_count == 0;
    if fresh {
        conn.execute_batch("PRAGMA synchronous = OFF;")?;
    }
    // WAL: readers never block the writer, and a killed writer loses only its open transaction.
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap_or_default();
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")?;

    if version < SCHEMA_VERSION {
        let from = usize::try_from(version).unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.execute_batch(&format!(
                "PRAGMA user_version = {}; PRAGMA application_id = {APPLICATION_ID};",
                i + 1
            ))?;
            tx.commit()?;
        }
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
    if create {
        full_check(conn, path)
    } else {
        check_length(path)
    }
}

/// SQLite's `quick_check` of the whole file: every page read, the structure of every
/// b-tree checked.
///
/// # Errors
/// [`StoreError::Corrupt`] with SQLite's first finding.
pub(super) fn full_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let quick: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if quick != "ok" {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: quick,
        });
    }
    Ok(())
}

/// Checks that the file at `path` is as long as its SQLite header says: a recording cut short
/// (a copy interrupted, a full disk) is refused at open, as `quick_check` did, without
/// reading the pages. The header's page count is trusted only when SQLite marked it valid
/// (bytes 92..96 equal to the change counter at 24..28), and not while a WAL holds pages.
fn check_length(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| corrupt(e.to_string()))?;
    let len = file.metadata().map_err(|e| corrupt(e.to_string()))?.len();
    let mut header = [0u8; 100];
    if file.read_exact(&mut header).is_err() {
        return Err(corrupt(format!(
            "the file holds {len} bytes, less than an SQLite header"
        )));
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let pages = u64::from(be32(28));
    if pages == 0 || be32(24) != be32(92) {
        return Ok(());
    }
    let expected = pages * page_size;
    // A checkpoint copies pages from the WAL in page order, page 1 (with the new count)
    // first: while one runs the count may run ahead of the length.
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let checkpointing = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    if len < expected && !checkpointing {
        return Err(corrupt(format!(
            "the file was cut short: it holds {len} bytes of the {expected} its header counts"
        )));
    }
    Ok(())
}

/// Records creation metadata (kept from the first session when the file already existed).
pub(super) fn write_meta(conn: &Connection, meta: &Meta) -> Result<(), StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rows = [
        ("mf_version", env!("CARGO_PKG_VERSION").to_string()),
        ("created_at", now.to_string()),
        ("command_line", meta.command_line.clone()),
        ("source", meta.source.clone()),
    ];
    for (k, v) in rows {
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
            params![k, v],
        )?;
    }
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('last_mf_version', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![env!("CARGO_PKG_VERSION")],
    )?;
    Ok(())
}
