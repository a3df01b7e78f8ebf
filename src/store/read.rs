//! Reading recordings back: summaries for listing, whole exchanges for replay and inference.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rusqlite::{params, Connection, Row};

use super::backend::RecordingRead;
use super::blob_memo::BlobMemo;
use super::codec::{decode_chunks, decode_headers};
use super::{blobs, ExchangeSummary, Selection, StoreError};
use crate::model::{
    Body, BodyChunk, Direction, ErrorKind, Exchange, ExchangeError, MessageKind, Protocol, Request,
    Response, StreamMessage, Timings,
};

/// A recording opened for reading.
pub struct Reader {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
}

pub(super) const EXCHANGE_COLUMNS: &str = "id, connection_id, seq, protocol, started_at_ns, client_addr, server_addr, scheme,
    authority, method, target, req_version, req_headers, req_body, req_body_size, req_body_truncated, req_trailers,
    status, reason, resp_version, resp_headers, resp_body, resp_body_size, resp_body_truncated, resp_trailers,
    request_end_ns, response_first_byte_ns, response_end_ns, error, trace_id, tags, error_kind,
    req_body_chunks, resp_body_chunks";

/// Number of columns in [`EXCHANGE_COLUMNS`]: the joined blob columns of
/// [`Reader::for_each`] start here (a column added to the list moves them along).
const EXCHANGE_COLUMN_COUNT: usize = 34;

/// Row fields before blobs are resolved.
struct RawRow {
    ex: Exchange,
    req_headers: Vec<u8>,
    req_body: Option<Vec<u8>>,
    resp_body: Option<Vec<u8>>,
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
        let raw = raw_row(row, &self.path, &mut BlobMemo::default())?;
        self.resolve(raw)
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
            let raw = raw_row(row, &self.path, &mut BlobMemo::default())?;
            out.push(self.resolve(raw)?);
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
        let (clause, params) = selection.where_clause();
        let columns = EXCHANGE_COLUMNS
            .split(',')
            .map(|c| format!("e.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        // Bodies come with the row (a join), not from a lookup per body: half the statements.
        let sql = format!(
            "SELECT {columns}, rb.size, rb.codec, rb.data, sb.size, sb.codec, sb.data,
                    hb.size, hb.codec, hb.data
             FROM exchanges e LEFT JOIN blobs rb ON rb.hash = e.req_body
                  LEFT JOIN blobs sb ON sb.hash = e.resp_body
                  LEFT JOIN blobs hb ON hb.hash = e.req_headers
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
        while let Some(row) = rows.next()? {
            let raw = raw_row(row, &self.path, &mut memo)?;
            let mut ex = raw.ex;
            // Each joined blob is (size, codec, data); request body, response body, headers.
            // Only read when this walk has not decoded the same key already.
            let joined = |base: usize| -> Result<Vec<u8>, StoreError> {
                let (size, codec, data): (Option<i64>, Option<i64>, Option<Vec<u8>>) =
                    (row.get(base)?, row.get(base + 1)?, row.get(base + 2)?);
                let (Some(size), Some(codec), Some(data)) = (size, codec, data) else {
                    return Err(corrupt("a body refers to a missing blob".into()));
                };
                blobs::decode(size, codec, data).map_err(|e| match e {
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
            if let Some(key) = &raw.req_body {
                ex.request.body.data = body_of(key, EXCHANGE_COLUMN_COUNT)?;
            }
            if let Some(key) = &raw.resp_body {
                let data = body_of(key, EXCHANGE_COLUMN_COUNT + 3)?;
                if let Some(resp) = ex.response.as_mut() {
                    resp.body.data = data;
                }
            }
            ex.request.headers = match memo.headers(&raw.req_headers) {
                Some(headers) => headers,
                None => {
                    let block = joined(EXCHANGE_COLUMN_COUNT + 6)?;
                    let headers = decode_headers(&block);
                    memo.keep_headers(&raw.req_headers, block.len(), &headers);
                    headers
                }
            };
            if has_messages {
                ex.messages = self.messages(ex.id)?;
            }
            if selection.needs_grpc_check() && !keeps(selection, &ex) {
                continue;
            }
            if !f(ex) {
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
            let method: String = row.get(0)?;
            let target: String = row.get(1)?;
            f(&method, &target);
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

    fn resolve(&self, raw: RawRow) -> Result<Exchange, StoreError> {
        let mut ex = self.resolve_bodies(raw)?;
        ex.messages = self.messages(ex.id)?;
        Ok(ex)
    }

    fn resolve_bodies(&self, raw: RawRow) -> Result<Exchange, StoreError> {
        let mut ex = raw.ex;
        ex.request.headers = decode_headers(&self.blob(&raw.req_headers)?);
        if let Some(key) = raw.req_body {
            ex.request.body.data = Bytes::from(self.blob(&key)?);
        }
        if let (Some(key), Some(resp)) = (raw.resp_body, ex.response.as_mut()) {
            resp.body.data = Bytes::from(self.blob(&key)?);
        }
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

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|n| u64::try_from(n).ok())
}

/// The chunk table in column `index`: empty when NULL.
fn chunks_at(r: &Row, index: usize, path: &Path) -> Result<Vec<BodyChunk>, StoreError> {
    let table: Option<Vec<u8>> = r.get(index)?;
    table
        .map_or(Ok(Vec::new()), |t| decode_chunks(&t))
        .map_err(|reason| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })
}

/// A row's fields; its inline answer header block decoded through `memo`.
fn raw_row(r: &Row, path: &Path, memo: &mut BlobMemo) -> Result<RawRow, StoreError> {
    let protocol: String = r.get(3)?;
    let req_headers: Vec<u8> = r.get(12)?;
    let req_trailers: Option<Vec<u8>> = r.get(16)?;
    let status: Option<u16> = r.get(17)?;
    let tags: Option<String> = r.get(30)?;
    let request = Request {
        method: r.get(9)?,
        target: r.get(10)?,
        version: r.get(11)?,
        headers: Vec::new(),
        body: Body {
            data: Bytes::new(),
            size: opt_u64(r.get(14)?).unwrap_or(0),
            truncated: r.get(15)?,
            chunks: chunks_at(r, 32, path)?,
        },
        trailers: req_trailers.map(|t| decode_headers(&t)).unwrap_or_default(),
    };
    let response = match status {
        None => None,
        Some(status) => {
            let headers = r
                .get_ref(20)?
                .as_blob_or_null()
                .map_err(rusqlite::Error::from)?;
            let trailers: Option<Vec<u8>> = r.get(24)?;
            Some(Response {
                status,
                reason: r.get::<_, Option<String>>(18)?.unwrap_or_default(),
                version: r.get::<_, Option<String>>(19)?.unwrap_or_default(),
                headers: headers.map(|h| memo.inline(h)).unwrap_or_default(),
                body: Body {
                    data: Bytes::new(),
                    size: opt_u64(r.get(22)?).unwrap_or(0),
                    truncated: r.get(23)?,
                    chunks: chunks_at(r, 33, path)?,
                },
                trailers: trailers.map(|t| decode_headers(&t)).unwrap_or_default(),
            })
        }
    };
    let ex = Exchange {
        id: r.get(0)?,
        connection_id: opt_u64(r.get(1)?).unwrap_or(0),
        seq: r.get(2)?,
        protocol: Protocol::parse(&protocol),
        started_at_ns: r.get(4)?,
        client_addr: r.get(5)?,
        server_addr: r.get(6)?,
        scheme: r.get(7)?,
        authority: r.get(8)?,
        request,
        response,
        timings: Timings {
            request_end_ns: opt_u64(r.get(25)?),
            response_first_byte_ns: opt_u64(r.get(26)?),
            response_end_ns: opt_u64(r.get(27)?),
        },
        error: r.get::<_, Option<String>>(28)?.map(|message| {
            let kind: Option<String> = r.get(31).ok().flatten();
            ExchangeError::new(
                kind.as_deref().map_or(ErrorKind::Other, ErrorKind::parse),
                message,
            )
        }),
        trace_id: r.get(29)?,
        tags: tags
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        messages: Vec::new(),
    };
    Ok(RawRow {
        ex,
        req_headers,
        req_body: r.get(13)?,
        resp_body: r.get(21)?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn column_count_matches_the_column_list() {
        assert_eq!(
            super::EXCHANGE_COLUMNS.split(',').count(),
            super::EXCHANGE_COLUMN_COUNT
        );
    }
}
