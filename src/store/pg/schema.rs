//! A recording's schema in PostgreSQL: its tables, its version, forward migrations.
//!
//! The version lives in the recording's own `schema_version` table. Creation and migration
//! run under a transaction-scoped advisory lock named after the recording, so recorders
//! starting at the same moment create the schema once and migrate it once.

use postgres::Client;

use super::PgLocation;
use crate::store::{Meta, StoreError};

/// Forward-only migrations; entry `i` takes a recording from version `i` to `i + 1`. Never
/// edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // v1: what a recording file holds (see store::schema), with the recorder of each exchange.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE blobs (
        hash  BYTEA PRIMARY KEY,      -- BLAKE3 of the raw bytes (16 bytes)
        size  BIGINT NOT NULL,        -- raw size
        codec SMALLINT NOT NULL,      -- 0 raw, 1 zstd
        data  BYTEA NOT NULL
    );
    -- Ids are taken before the rows are inserted, so that a batch's messages can point at them.
    CREATE SEQUENCE exchange_ids;
    -- Each writer takes one block: its connection ids start at block << 32.
    CREATE SEQUENCE connection_blocks;
    CREATE TABLE exchanges (
        id              BIGINT PRIMARY KEY,
        recorder        TEXT NOT NULL,
        connection_id   BIGINT NOT NULL,
        seq             BIGINT NOT NULL,
        protocol        TEXT NOT NULL,
        started_at_ns   BIGINT NOT NULL,
        client_addr     TEXT,
        server_addr     TEXT,
        scheme          TEXT NOT NULL,
        authority       TEXT NOT NULL,
        method          TEXT NOT NULL,
        target          TEXT NOT NULL,
        req_version     TEXT NOT NULL,
        req_headers     BYTEA NOT NULL,   -- blobs.hash
        req_body        BYTEA,            -- blobs.hash, NULL when empty
        req_body_size   BIGINT NOT NULL,
        req_body_truncated BOOLEAN NOT NULL,
        req_trailers    BYTEA,
        status          INTEGER,          -- NULL when no response arrived
        reason          TEXT,
        resp_version    TEXT,
        resp_headers    BYTEA,
        resp_body       BYTEA,
        resp_body_size  BIGINT NOT NULL,
        resp_body_truncated BOOLEAN NOT NULL,
        resp_trailers   BYTEA,
        request_end_ns  BIGINT,
        response_first_byte_ns BIGINT,
        response_end_ns BIGINT,
        error           TEXT,
        trace_id        TEXT,
        tags            TEXT,             -- JSON object, NULL when empty
        error_kind      TEXT,
        req_body_chunks BYTEA,
        resp_body_chunks BYTEA
    );
    CREATE INDEX exchanges_started ON exchanges (started_at_ns);
    CREATE TABLE messages (
        exchange_id BIGINT NOT NULL REFERENCES exchanges (id),
        idx         INTEGER NOT NULL,
        direction   SMALLINT NOT NULL,    -- 0 client to server, 1 server to client
        offset_ns   BIGINT NOT NULL,
        kind        TEXT NOT NULL,        -- JSON of model::MessageKind
        size        BIGINT NOT NULL,
        data        BYTEA,                -- blobs.hash, NULL when empty
        PRIMARY KEY (exchange_id, idx)
    );
    CREATE TABLE patterns (
        id      BIGSERIAL PRIMARY KEY,
        kind    TEXT NOT NULL,
        summary TEXT NOT NULL,
        detail  TEXT NOT NULL             -- JSON
    );
    "#,
];

/// The schema version this build writes.
const VERSION: i32 = MIGRATIONS.len() as i32;

/// Checks the recording of `loc` (creating it when `create` is set), migrates it forward and,
/// when `meta` is given, records creation metadata.
pub(super) fn prepare(
    client: &mut Client,
    loc: &PgLocation,
    create: bool,
    meta: Option<&Meta>,
) -> Result<(), StoreError> {
    let schema_name = format!("mf_{}", loc.recording);
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('mf recording ' || $1))",
        &[&schema_name],
    )?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&schema_name],
        )?
        .is_some();
    let version: i32 = if exists {
        let has_version = tx
            .query_opt(
                "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'schema_version'",
                &[&schema_name],
            )?
            .is_some();
        if !has_version {
            return Err(StoreError::NotARecording {
                path: loc.display.clone().into(),
                reason: format!("schema {schema_name} exists but is not an mf recording"),
            });
        }
        tx.query_one("SELECT version FROM schema_version", &[])?
            .try_get(0)?
    } else {
        if !create {
            return Err(StoreError::NotFound {
                path: loc.display.clone().into(),
            });
        }
        tx.batch_execute(&format!(
            "CREATE SCHEMA {0}; CREATE TABLE {0}.schema_version (version INTEGER NOT NULL);
             INSERT INTO {0}.schema_version VALUES (0);",
            loc.schema()
        ))?;
        0
    };
    if version > VERSION {
        return Err(StoreError::TooNew {
            path: loc.display.clone().into(),
            found: version,
            supported: VERSION,
        });
    }
    tx.batch_execute(&format!("SET LOCAL search_path TO {}", loc.schema()))?;
    let from = usize::try_from(version).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        tx.batch_execute(sql)?;
        let next = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("UPDATE schema_version SET version = $1", &[&next])?;
    }
    if let Some(meta) = meta {
        write_meta(&mut tx, meta)?;
    }
    tx.commit()?;
    Ok(())
}

/// Creation metadata (kept from the first writer), and the last mf version that wrote.
fn write_meta(tx: &mut postgres::Transaction<'_>, meta: &Meta) -> Result<(), StoreError> {
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
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&k, &v],
        )?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('last_mf_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&env!("CARGO_PKG_VERSION")],
    )?;
    Ok(())
}
