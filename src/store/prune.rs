//! Retention: deleting old exchanges, their stream messages and the blobs nothing refers to
//! any more, then giving the space back.
//!
//! Crash safety comes from SQLite: every delete runs in one transaction (a kill before its
//! commit leaves the recording as it was), and `VACUUM` runs after the commit, itself atomic
//! in WAL mode (a kill during it leaves the pruned recording, only not yet compacted).

use std::path::Path;

use rusqlite::params;

use super::StoreError;

/// Which exchanges a prune removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneRule {
    /// Those that started before this instant (ns since the Unix epoch).
    StartedBefore(i64),
    /// All but the newest `n` (by recording order).
    KeepLast(u64),
}

/// What a prune removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub exchanges: u64,
    pub messages: u64,
    pub blobs: u64,
    /// Exchanges left.
    pub kept: u64,
    /// File size before and after (the main file; the WAL is checkpointed away).
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Applies `rule` to the recording at `path`.
///
/// # Errors
/// The file is not a recording, cannot be written, or SQLite failed; nothing was deleted
/// unless the error came from the final `VACUUM` (then the deletion stands, uncompacted).
pub fn prune(path: &Path, rule: PruneRule) -> Result<PruneReport, StoreError> {
    let bytes_before = std::fs::metadata(path).map_or(0, |m| m.len());
    let mut conn = super::open_read(path)?;
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(StoreError::ReadOnly {
            path: path.to_path_buf(),
        });
    }
    let (condition, param): (&str, i64) = match rule {
        PruneRule::StartedBefore(ns) => ("started_at_ns < ?1", ns),
        // The id of the newest exchange that goes: the (n+1)-th from the end. NULL (fewer
        // exchanges than n+1) deletes nothing.
        PruneRule::KeepLast(n) => (
            "id <= (SELECT id FROM exchanges ORDER BY id DESC LIMIT 1 OFFSET ?1)",
            i64::try_from(n).unwrap_or(i64::MAX),
        ),
    };
    let tx = conn.transaction()?;
    let messages = tx.execute(
        &format!("DELETE FROM messages WHERE exchange_id IN (SELECT id FROM exchanges WHERE {condition})"),
        params![param],
    )?;
    let exchanges = tx.execute(
        &format!("DELETE FROM exchanges WHERE {condition}"),
        params![param],
    )?;
    // Blobs are shared (content-addressed): one goes only when no row left refers to it. The
    // NULL filters matter: `NOT IN` a set holding NULL is never true.
    let blobs = if exchanges > 0 {
        tx.execute(
            "DELETE FROM blobs WHERE hash NOT IN (
                 SELECT req_headers FROM exchanges
                 UNION SELECT req_body FROM exchanges WHERE req_body IS NOT NULL
                 UNION SELECT resp_body FROM exchanges WHERE resp_body IS NOT NULL
                 UNION SELECT data FROM messages WHERE data IS NOT NULL)",
            [],
        )?
    } else {
        0
    };
    let kept: i64 = tx.query_row("SELECT count(*) FROM exchanges", [], |r| r.get(0))?;
    tx.commit()?;
    if exchanges > 0 {
        conn.execute_batch("VACUUM")?;
    }
    // Folds the WAL back into the file, so the size on disk is the size reported.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    Ok(PruneReport {
        exchanges: exchanges as u64,
        messages: messages as u64,
        blobs: blobs as u64,
        kept: u64::try_from(kept).unwrap_or(0),
        bytes_before,
        bytes_after: std::fs::metadata(path).map_or(0, |m| m.len()),
    })
}
