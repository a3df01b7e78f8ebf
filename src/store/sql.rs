//! `mf sql`: read-only SQL over documented views of a recording.
//!
//! The tables keep headers encoded and bodies compressed behind hashes; the views give them
//! readable forms through functions registered on the connection (`sqlfn`). The connection is
//! opened read-only and with `PRAGMA query_only`, and a statement SQLite says would write is
//! refused before it runs: a query can never change a recording.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// The views, created in the connection's temporary schema (nothing is added to the file).
/// README.md ("Querying a recording") documents every column; keep the two in step.
const VIEWS: &str = r#"
CREATE TEMP VIEW exchanges_v AS SELECT
    e.id, e.connection_id, e.seq, e.protocol,
    e.started_at_ns,
    strftime('%Y-%m-%dT%H:%M:%fZ', e.started_at_ns / 1e9, 'unixepoch') AS started_at,
    e.client_addr, e.server_addr, e.scheme, e.authority AS host, e.method, e.target,
    mf_path(e.target) AS path,
    e.req_version, mf_headers(e.req_headers, 1) AS req_headers, e.req_body,
    e.req_body_size, e.req_body_truncated,
    e.status, e.reason, e.resp_version, mf_headers(e.resp_headers, 0) AS resp_headers,
    e.resp_body, e.resp_body_size, e.resp_body_truncated,
    e.request_end_ns / 1e6 AS request_end_ms,
    e.response_first_byte_ns / 1e6 AS ttfb_ms,
    e.response_end_ns / 1e6 AS duration_ms,
    e.error, e.error_kind, e.trace_id, e.tags
FROM main.exchanges e;
CREATE TEMP VIEW messages_v AS SELECT
    m.exchange_id, m.idx,
    CASE m.direction WHEN 0 THEN 'client' ELSE 'server' END AS direction,
    m.offset_ns / 1e6 AS offset_ms,
    json_extract(m.kind, '$.kind') AS kind, m.kind AS kind_json,
    m.size, m.data
FROM main.messages m;
"#;

/// One value of a result row.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// What a query produces, in order: the column names once, then each row.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryOutput {
    Columns(Vec<String>),
    Row(Vec<SqlValue>),
}

/// Why a query did not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mf sql is read-only: this statement would change the recording")]
    WriteRefused,
    #[error("SQL error: {0}")]
    Sql(String),
}

impl From<rusqlite::Error> for QueryError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ReadOnly) => QueryError::WriteRefused,
            _ => QueryError::Sql(e.to_string()),
        }
    }
}

/// A recording opened for read-only queries.
pub struct SqlQuery {
    conn: Connection,
}

impl SqlQuery {
    /// Opens the recording at `path` (checked, and migrated when old, like any reader) for
    /// queries.
    ///
    /// # Errors
    /// Not a recording, or SQLite failed.
    pub fn open(path: &Path) -> Result<Self, QueryError> {
        // The usual checks (and a migration of an older recording) first, so that the views
        // see the current schema; then read-only connections for the query itself.
        drop(super::open_read(path)?);
        let open = || {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| super::classify_open_error(path, e))
        };
        let conn = open()?;
        super::sqlfn::register_path(&conn)?;
        super::sqlfn::register_query(&conn, open()?)?;
        conn.execute_batch(VIEWS)?;
        conn.execute_batch("PRAGMA query_only = ON;")?;
        Ok(SqlQuery { conn })
    }

    /// Runs one statement, giving `out` the column names and then each row; `out` returning
    /// `false` stops early.
    ///
    /// # Errors
    /// [`QueryError::WriteRefused`] for a statement that would write; SQL errors.
    pub fn run(
        &self,
        sql: &str,
        out: &mut dyn FnMut(QueryOutput) -> bool,
    ) -> Result<(), QueryError> {
        let mut stmt = self.conn.prepare(sql)?;
        if !stmt.readonly() {
            return Err(QueryError::WriteRefused);
        }
        let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
        let width = names.len();
        if !out(QueryOutput::Columns(names)) {
            return Ok(());
        }
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(match row.get_ref(i)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(n) => SqlValue::Integer(n),
                    ValueRef::Real(f) => SqlValue::Real(f),
                    ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                });
            }
            if !out(QueryOutput::Row(values)) {
                break;
            }
        }
        Ok(())
    }
}
