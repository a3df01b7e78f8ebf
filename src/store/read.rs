//! Reading recordings back: summaries for listing, whole exchanges for replay and inference.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rusqlite::{params, Connection, Row};
use serde::Serialize;

use super::backend::RecordingRead;
use super::codec::{decode_chunks, decode_headers};
use super::{blobs, StoreError};
use crate::model::{
    Body, BodyChunk, Direction, ErrorKind, Exchange, ExchangeError, MessageKind, Protocol, Request,
    Response, StreamMessage, Timings,
};

/// One line of `mf ls --json`: what a listing needs, without bodies.
#[derive(Clone, Debug, Serialize)]
pub struct ExchangeSummary {
    pub id: i64,
    pub connection_id: i64,
    pub seq: i64,
    pub protocol: String,
    pub started_at_ns: i64,
    pub method: String,
    pub url: String,
    pub status: Option<u16>,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub duration_ms: Option<f64>,
    pub error: Option<String>,
    /// The stable name of the error's kind (`upstream_timeout`, `capture_hole`, …).
    pub error_kind: Option<String>,
    pub trace_id: Option<String>,
    /// Stream messages sent by the client and by the server (gRPC messages, WebSocket frames).
    pub messages_in: i64,
    pub messages_out: i64,
    /// `grpc-status` from the trailers (or headers, for trailers-only answers).
    pub grpc_status: Option<String>,
}

/// A recording opened for reading.
pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

const EXCHANGE_COLUMNS: &str = "id, connection_id, seq, protocol, started_at_ns, client_addr, server_addr, scheme,
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
        self.summaries_where(0, i64::MAX)
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
        self.summaries_where(after_id, i64::try_from(limit).unwrap_or(i64::MAX))
    }

    fn summaries_where(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<ExchangeSummary>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, e.connection_id, e.seq, e.protocol, e.started_at_ns, e.method, e.target, e.scheme,
                    e.authority, e.status, e.req_body_size, e.resp_body_size, e.response_end_ns, e.error, e.trace_id,
                    (SELECT count(*) FROM messages m WHERE m.exchange_id = e.id AND m.direction = 0),
                    (SELECT count(*) FROM messages m WHERE m.exchange_id = e.id AND m.direction = 1),
                    e.resp_trailers, e.resp_headers, e.error_kind
             FROM exchanges e WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after_id, limit], |r| {
            let target: String = r.get(6)?;
            let scheme: String = r.get(7)?;
            let authority: String = r.get(8)?;
            let url = crate::model::url_of(&scheme, &authority, &target);
            let end: Option<i64> = r.get(12)?;
            let trailers: Option<Vec<u8>> = r.get(17)?;
            let headers: Option<Vec<u8>> = r.get(18)?;
            let grpc_status = [trailers, headers].into_iter().flatten().find_map(|h| {
                decode_headers(&h)
                    .into_iter()
                    .find(|h| h.name.eq_ignore_ascii_case("grpc-status"))
                    .map(|h| h.value_str().into_owned())
            });
            Ok(ExchangeSummary {
                id: r.get(0)?,
                connection_id: r.get(1)?,
                seq: r.get(2)?,
                protocol: r.get(3)?,
                started_at_ns: r.get(4)?,
                method: r.get(5)?,
                url,
                status: r.get(9)?,
                request_bytes: r.get(10)?,
                response_bytes: r.get(11)?,
                duration_ms: end.map(|ns| ns as f64 / 1e6),
                error: r.get(13)?,
                error_kind: r.get(19)?,
                trace_id: r.get(14)?,
                messages_in: r.get(15)?,
                messages_out: r.get(16)?,
                grpc_status,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One exchange with bodies and stream messages.
    ///
    /// # Errors
    /// [`StoreError::NoSuchExchange`], or a damaged row.
    pub fn load(&self, id: i64) -> Result<Exchange, StoreError> {
        let sql = format!("SELECT {EXCHANGE_COLUMNS} FROM exchanges WHERE id = ?1");
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(params![id])?;
        let Some(row) = rows.next()? else {
            return Err(StoreError::NoSuchExchange(id));
        };
        let raw = raw_row(row, &self.path)?;
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
            let raw = raw_row(row, &self.path)?;
            out.push(self.resolve(raw)?);
        }
        Ok(out)
    }

    /// Calls `f` with every exchange in recording order, bodies included, one at a time: memory
    /// stays flat however large the recording is. `f` returning `false` stops the walk.
    ///
    /// # Errors
    /// Database errors or a damaged row.
    pub fn for_each(&self, mut f: impl FnMut(Exchange) -> bool) -> Result<(), StoreError> {
        // Bodies come with the row (a join), not from a lookup per body: half the statements.
        let sql = format!(
            "SELECT {EXCHANGE_COLUMNS}, rb.size, rb.codec, rb.data, sb.size, sb.codec, sb.data,
                    hb.size, hb.codec, hb.data
             FROM exchanges LEFT JOIN blobs rb ON rb.hash = req_body LEFT JOIN blobs sb ON sb.hash = resp_body
                  LEFT JOIN blobs hb ON hb.hash = req_headers
             ORDER BY id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        // Plain HTTP recordings have no stream messages: skip a query per exchange.
        let has_messages: bool =
            self.conn
                .query_row("SELECT EXISTS (SELECT 1 FROM messages)", [], |r| r.get(0))?;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        while let Some(row) = rows.next()? {
            let raw = raw_row(row, &self.path)?;
            let mut ex = raw.ex;
            // Each joined blob is (size, codec, data); request body, response body, headers.
            let [req_body, resp_body, headers] =
                [0, 3, 6].map(|offset| EXCHANGE_COLUMN_COUNT + offset);
            for (present, base) in [
                (raw.req_body.is_some(), req_body),
                (raw.resp_body.is_some(), resp_body),
                (true, headers),
            ] {
                if !present {
                    continue;
                }
                let (size, codec, data): (Option<i64>, Option<i64>, Option<Vec<u8>>) =
                    (row.get(base)?, row.get(base + 1)?, row.get(base + 2)?);
                let (Some(size), Some(codec), Some(data)) = (size, codec, data) else {
                    return Err(corrupt("a body refers to a missing blob".into()));
                };
                let bytes = Bytes::from(blobs::decode(size, codec, data).map_err(|e| match e {
                    StoreError::Corrupt { reason, .. } => corrupt(reason),
                    other => other,
                })?);
                if base == headers {
                    ex.request.headers = decode_headers(&bytes);
                } else if base == req_body {
                    ex.request.body.data = bytes;
                } else if let Some(resp) = ex.response.as_mut() {
                    resp.body.data = bytes;
                }
            }
            if has_messages {
                ex.messages = self.messages(ex.id)?;
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

    fn blob(&self, key: &[u8]) -> Result<Vec<u8>, StoreError> {
        blobs::get(&self.conn, key).map_err(|e| match e {
            StoreError::Corrupt { reason, .. } => StoreError::Corrupt {
                path: self.path.clone(),
                reason,
            },
            other => other,
        })
    }

    fn messages(&self, id: i64) -> Result<Vec<StreamMessage>, StoreError> {
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

    fn load_all(&self) -> Result<Vec<Exchange>, StoreError> {
        Reader::load_all(self)
    }

    fn for_each_target(&self, f: &mut dyn FnMut(&str, &str)) -> Result<(), StoreError> {
        Reader::for_each_target(self, f)
    }

    fn patterns(&self) -> Result<Vec<super::PatternRow>, StoreError> {
        Reader::patterns(self)
    }
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

fn raw_row(r: &Row, path: &Path) -> Result<RawRow, StoreError> {
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
            let headers: Option<Vec<u8>> = r.get(20)?;
            let trailers: Option<Vec<u8>> = r.get(24)?;
            Some(Response {
                status,
                reason: r.get::<_, Option<String>>(18)?.unwrap_or_default(),
                version: r.get::<_, Option<String>>(19)?.unwrap_or_default(),
                headers: headers.map(|h| decode_headers(&h)).unwrap_or_default(),
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
