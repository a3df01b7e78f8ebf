//! Reading recordings back: summaries for listing, whole exchanges for replay and inference.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rusqlite::{params, Connection};

use super::backend::RecordingRead;
use super::blob_memo::BlobMemo;
use super::codec::decode_headers;
use super::row::{self, RowKeys, EXCHANGE_COLUMNS, EXCHANGE_COLUMN_COUNT};
use super::{blobs, ExchangeSummary, Selection, StoreError};
use crate::model::{Direction, Exchange, MessageKind, StreamMessage};

/// Bytes of the file [`Reader::scan`] maps at most: RSS stays bounded on a recording of any
/// size, and beyond the map SQLite reads as usual.
const SCAN_MAP_BYTES: u64 = 256 << 20;

/// A recording opened for reading.
pub struct Reader {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
}

impl Reader {
    /// Opens a recording.
    ///
    /// # Errors
    /// Missing file, not an mf recording, a recording from a newer mf, or a damaged file.
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        Ok(Reader {
            conn: super::open_read(path)?,
            path: path.to_path_buf(),
        })
    }

    /// The file this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for the store's own tests.
    #[cfg(test)]
    pub(super) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Creation metadata as key/value pairs.
    ///
    /// # Errors
    /// Database errors.
    pub fn meta(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM meta ORDER BY key")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Number of exchanges.
    ///
    /// # Errors
    /// Database errors.
    pub fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM exchanges", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Listing rows in recording order.
    ///
    /// # Errors
    /// Database errors.
    pub fn summaries(&self) -> Result<Vec<ExchangeSummary>, StoreError> {
        let mut all = Vec::new();
        self.for_each_summary(&Selection::default(), &mut |s| {
            all.push(s);
            true
        })?;
        Ok(all)
    }

    /// Up to `limit` listing rows with an id above `after_id`, in recording order.
    ///
    /// # Errors
    /// Database errors.
    pub fn summaries_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ExchangeSummary>, StoreError> {
        self.summaries_page(after_id, i64::try_from(limit).unwrap_or(i64::MAX))
    }

    /// One exchange with bodies and stream messages.
    ///
    /// # Errors
    /// [`StoreError::NoSuchExchange`], or a damaged row.
    pub fn load(&self, id: i64) -> Result<Exchange, StoreError> {
        let sql = format!("SELECT {EXCHANGE_COLUMNS} FROM exchanges WHERE id = ?1");
        // Cached: a replay's loader calls this for every answer it has not cached.
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![id])?;
        let Some(row) = rows.next()? else {
            return Err(StoreError::NoSuchExchange(id));
        };
        let (ex, keys) = row::read(row, &self.path, &mut BlobMemo::default())?;
        self.resolve(ex, keys)
    }

    /// Every exchange in recording order, bodies included.
    ///
    /// # Errors
    /// Database errors or a damaged row.
    pub fn load_all(&self) -> Result<Vec<Exchange>, StoreError> {
        let sql = format!("SELECT {EXCHANGE_COLUMNS} FROM exchanges ORDER BY id");
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let (ex, keys) = row::read(row, &self.path, &mut BlobMemo::default())?;
            out.push(self.resolve(ex, keys)?);
        }
        Ok(out)
    }

    /// Calls `f` with every exchange in recording order, bodies included, one at a time: memory
    /// stays flat however large the recording is. `f` returning `false` stops the walk.
    ///
    /// # Errors
    /// Database errors or a damaged row.
    pub fn for_each(&self, f: impl FnMut(Exchange) -> bool) -> Result<(), StoreError> {
        self.for_each_selected(&Selection::default(), f)
    }

    /// As [`Reader::for_each`], over the exchanges `selection` picks (SQLite filters them).
    ///
    /// # Errors
    /// Database errors or a damaged row.
    pub fn for_each_selected(
        &self,
        selection: &Selection,
        mut f: impl FnMut(Exchange) -> bool,
    ) -> Result<(), StoreError> {
        self.walk(selection, |ex| f(std::mem::take(ex)))
    }

    /// Lends every exchange in recording order to `f`, refilled in place from row to row: its
    /// strings and header lists keep their allocations, or those of whatever `f` swaps in.
    /// For a pass that reads the whole recording once, such as inference. `f` returning
    /// `false` stops the walk.
    ///
    /// Maps up to [`SCAN_MAP_BYTES`] of the file for the walk. The response bodies are
    /// looked up by hash all over the file, and each page SQLite reads otherwise is a `pread`
    /// copy: on the 1M-exchange synthetic recording the reading thread took 17.4 s of CPU
    /// without the map and 11.0–11.2 s with it (mapping the whole file gained nothing more).
    /// The mapped pages count in RSS while the walk runs; they are the page cache's, shared and
    /// reclaimable.
    ///
    /// # Errors
    /// Database errors or a damaged row.
    pub fn scan(&self, f: impl FnMut(&mut Exchange) -> bool) -> Result<(), StoreError> {
        self.conn
            .execute_batch(&format!("PRAGMA mmap_size = {SCAN_MAP_BYTES};"))?;
        let walked = self.walk(&Selection::default(), f);
        self.conn.execute_batch("PRAGMA mmap_size = 0;")?;
        walked
    }

    /// The walk behind [`Reader::for_each_selected`] and [`Reader::scan`]: one exchange, lent
    /// to `f` for each row `selection` keeps and refilled in place for the next.
    fn walk(
        &self,
        selection: &Selection,
        mut f: impl FnMut(&mut Exchange) -> bool,
    ) -> Result<(), StoreError> {
        let (clause, params) = selection.where_clause();
        let columns = EXCHANGE_COLUMNS
            .split(',')
            .map(|c| format!("e.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        // Bodies come with the row (a join), not from a lookup per body: half the statements.
        // Request header blocks repeat (one client sends the same headers over and over), so
        // they are looked up only when the memo does not hold them: a join seeks for every row.
        let sql = format!(
            "SELECT {columns}, rb.size, rb.codec, rb.data, sb.size, sb.codec, sb.data
             FROM exchanges e LEFT JOIN blobs rb ON rb.hash = e.req_body
                  LEFT JOIN blobs sb ON sb.hash = e.resp_body
             WHERE {clause}
             ORDER BY e.id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        // Plain HTTP recordings have no stream messages: skip a query per exchange.
        let has_messages: bool =
            self.conn
                .query_row("SELECT EXISTS (SELECT 1 FROM messages)", [], |r| r.get(0))?;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let mut memo = BlobMemo::default();
        let mut ex = Exchange::default();
        let mut keys = RowKeys::default();
        while let Some(row) = rows.next()? {
            row::fill(row, &self.path, &mut memo, &mut ex, &mut keys)?;
            // Each joined blob is (size, codec, data); request body, then response body.
            // Only read when this walk has not decoded the same key already.
            let joined = |base: usize| -> Result<Vec<u8>, StoreError> {
                let blob = |i: usize| {
                    row.get_ref(i)
                        .and_then(|v| v.as_blob_or_null().map_err(rusqlite::Error::from))
                };
                let (size, codec, data): (Option<i64>, Option<i64>, Option<&[u8]>) =
                    (row.get(base)?, row.get(base + 1)?, blob(base + 2)?);
                let (Some(size), Some(codec), Some(data)) = (size, codec, data) else {
                    return Err(corrupt("a body refers to a missing blob".into()));
                };
                blobs::decode_slice(size, codec, data).map_err(|e| match e {
                    StoreError::Corrupt { reason, .. } => corrupt(reason),
                    other => other,
                })
            };
            let mut body_of = |key: &[u8], base: usize| -> Result<Bytes, StoreError> {
                if let Some(data) = memo.body(key) {
                    return Ok(data);
                }
                let data = Bytes::from(joined(base)?);
                memo.keep_body(key, &data);
                Ok(data)
            };
            ex.request.body.data = match &keys.req_body {
                Some(key) => body_of(key, EXCHANGE_COLUMN_COUNT)?,
                None => Bytes::new(),
            };
            if let Some(resp) = ex.response.as_mut() {
                resp.body.data = match &keys.resp_body {
                    Some(key) => body_of(key, EXCHANGE_COLUMN_COUNT + 3)?,
                    None => Bytes::new(),
                };
            }
            if !memo.headers_into(&keys.req_headers, &mut ex.request.headers) {
                let block = self.blob(&keys.req_headers)?;
                let headers = decode_headers(&block);
                memo.keep_headers(&keys.req_headers, block.len(), &headers);
                ex.request.headers = headers;
            }
            if has_messages {
                ex.messages = self.messages(ex.id)?;
            } else {
                ex.messages.clear();
            }
            if selection.needs_grpc_check() && !keeps(selection, &ex) {
                continue;
            }
            if !f(&mut ex) {
                break;
            }
        }
        Ok(())
    }

    /// Calls `f` with `(method, target)` of every exchange in recording order, without loading
    /// headers or bodies: the cheap first pass of inference.
    ///
    /// # Errors
    /// Database errors.
    pub fn for_each_target(&self, mut f: impl FnMut(&str, &str)) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT method, target FROM exchanges ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let text = |i: usize| row.get_ref(i)?.as_str().map_err(rusqlite::Error::from);
            f(text(0)?, text(1)?);
        }
        Ok(())
    }

    /// Inferred patterns stored by `mf infer`, in id order.
    ///
    /// # Errors
    /// Database errors.
    pub fn patterns(&self) -> Result<Vec<super::PatternRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, summary, detail FROM patterns ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let detail: String = r.get(2)?;
            Ok(super::PatternRow {
                kind: r.get(0)?,
                summary: r.get(1)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn resolve(&self, mut ex: Exchange, keys: RowKeys) -> Result<Exchange, StoreError> {
        ex.request.headers = decode_headers(&self.blob(&keys.req_headers)?);
        if let Some(key) = keys.req_body {
            ex.request.body.data = Bytes::from(self.blob(&key)?);
        }
        if let (Some(key), Some(resp)) = (keys.resp_body, ex.response.as_mut()) {
            resp.body.data = Bytes::from(self.blob(&key)?);
        }
        ex.messages = self.messages(ex.id)?;
        Ok(ex)
    }

    pub(super) fn blob(&self, key: &[u8]) -> Result<Vec<u8>, StoreError> {
        blobs::get(&self.conn, key).map_err(|e| match e {
            StoreError::Corrupt { reason, .. } => StoreError::Corrupt {
                path: self.path.clone(),
                reason,
            },
            other => other,
        })
    }

    pub(super) fn messages(&self, id: i64) -> Result<Vec<StreamMessage>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT direction, offset_ns, kind, data FROM messages WHERE exchange_id = ?1 ORDER BY idx",
        )?;
        let mut rows = stmt.query(params![id])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let direction: i64 = r.get(0)?;
            let offset: i64 = r.get(1)?;
            let kind: String = r.get(2)?;
            let data: Option<Vec<u8>> = r.get(3)?;
            let kind: MessageKind =
                serde_json::from_str(&kind).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    reason: format!("stream message kind {kind:?}: {e}"),
                })?;
            let data = match data {
                Some(key) => Bytes::from(self.blob(&key)?),
                None => Bytes::new(),
            };
            out.push(StreamMessage {
                direction: if direction == 0 {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                },
                offset_ns: u64::try_from(offset).unwrap_or(0),
                kind,
                data,
            });
        }
        Ok(out)
    }
}

impl RecordingRead for Reader {
    fn meta(&self) -> Result<Vec<(String, String)>, StoreError> {
        Reader::meta(self)
    }

    fn count(&self) -> Result<u64, StoreError> {
        Reader::count(self)
    }

    fn summaries_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ExchangeSummary>, StoreError> {
        Reader::summaries_after(self, after_id, limit)
    }

    fn summaries(&self) -> Result<Vec<ExchangeSummary>, StoreError> {
        Reader::summaries(self)
    }

    fn load(&self, id: i64) -> Result<Exchange, StoreError> {
        Reader::load(self, id)
    }

    fn for_each(&self, f: &mut dyn FnMut(Exchange) -> bool) -> Result<(), StoreError> {
        Reader::for_each(self, f)
    }

    fn for_each_selected(
        &self,
        selection: &Selection,
        f: &mut dyn FnMut(Exchange) -> bool,
    ) -> Result<(), StoreError> {
        Reader::for_each_selected(self, selection, f)
    }

    fn scan(&self, f: &mut dyn FnMut(&mut Exchange) -> bool) -> Result<(), StoreError> {
        Reader::scan(self, f)
    }

    fn for_each_summary(
        &self,
        selection: &Selection,
        f: &mut dyn FnMut(ExchangeSummary) -> bool,
    ) -> Result<(), StoreError> {
        Reader::for_each_summary(self, selection, f)
    }

    fn load_all(&self) -> Result<Vec<Exchange>, StoreError> {
        Reader::load_all(self)
    }

    fn for_each_target(&self, f: &mut dyn FnMut(&str, &str)) -> Result<(), StoreError> {
        Reader::for_each_target(self, f)
    }

    fn for_each_connection_method(&self, f: &mut dyn FnMut(i64, &str)) -> Result<(), StoreError> {
        // Two columns of the row, no allocation: the listing row's two `count(*)` over
        // messages and its answer-header decoding were ~12% of a `replay --to --speed max`
        // run, all of it before the first request was sent.
        let mut stmt = self
            .conn
            .prepare("SELECT connection_id, method FROM exchanges ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let method = row.get_ref(1)?.as_str().unwrap_or("");
            f(id, method);
        }
        Ok(())
    }

    fn patterns(&self) -> Result<Vec<super::PatternRow>, StoreError> {
        Reader::patterns(self)
    }

    fn for_each_lean(&self, f: &mut dyn FnMut(Exchange) -> bool) -> Result<(), StoreError> {
        Reader::for_each_lean(self, f)
    }

    fn for_each_indexed(
        &self,
        f: &mut dyn FnMut(&mut Exchange, Option<super::BodyKey>) -> bool,
    ) -> Result<(), StoreError> {
        Reader::for_each_indexed(self, f)
    }

    fn check(&self) -> Result<(), StoreError> {
        super::schema::full_check(&self.conn, &self.path)
    }

    fn concurrent_loader(
        &self,
    ) -> Result<Option<std::sync::Arc<dyn super::ExchangeLoader>>, StoreError> {
        Ok(Some(self.pool()))
    }
}

/// The selection's last word on an exchange SQL let through (a gRPC status in trailers).
fn keeps(selection: &Selection, ex: &Exchange) -> bool {
    use crate::model::HeaderList;
    let grpc = ex.response.as_ref().and_then(|r| {
        r.trailers
            .header_str("grpc-status")
            .or_else(|| r.headers.header_str("grpc-status"))
    });
    selection.keeps(
        ex.protocol().as_str(),
        ex.response.as_ref().map(|r| r.status),
        ex.error.is_some(),
        grpc.as_deref(),
    )
}
