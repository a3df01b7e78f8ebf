//! Reading a PostgreSQL recording: keyset pages in id order (memory stays flat however large
//! the recording), bodies joined into each page's rows, messages fetched per page.

use std::cell::RefCell;
use std::collections::HashMap;

use bytes::Bytes;
use postgres::types::ToSql;
use postgres::{Client, Row};

use super::select::{where_clause, Param};
use super::{connect, schema, PgLocation};
use crate::model::{
    Body, Direction, ErrorKind, Exchange, ExchangeError, MessageKind, Protocol, Request, Response,
    StreamMessage, Timings,
};
use crate::store::backend::RecordingRead;
use crate::store::codec::{decode_chunks, decode_headers};
use crate::store::row::{opt_u64, EXCHANGE_COLUMNS};
use crate::store::{blobs, ExchangeSummary, PatternRow, Selection, StoreError};

/// Exchanges per page of a walk: enough to amortise the round trips, few enough that a page
/// of large bodies stays small.
const PAGE: i64 = 256;

/// The column after [`EXCHANGE_COLUMNS`]: where the joined blobs start.
const BLOBS_AT: usize = 34;

/// A PostgreSQL recording opened for reading.
pub(crate) struct PgReader {
    loc: PgLocation,
    /// `RefCell`: the trait reads through `&self`, the client needs `&mut`; one reader is
    /// used by one thread at a time (the trait asks `Send`, not `Sync`).
    client: RefCell<Client>,
}

/// Borrowed parameters for a query.
fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl PgReader {
    /// Connects and checks (and migrates) the recording; a missing one is refused.
    pub(crate) fn open(loc: PgLocation) -> Result<PgReader, StoreError> {
        let client = super::outside_runtime(|| -> Result<Client, StoreError> {
            let mut client = connect(&loc)?;
            schema::prepare(&mut client, &loc, false, None)?;
            Ok(client)
        })?;
        Ok(PgReader {
            loc,
            client: RefCell::new(client),
        })
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.loc.display.clone().into(),
            reason,
        }
    }

    fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let mut client = self.client.borrow_mut();
        let client = &mut *client;
        Ok(super::outside_runtime(|| client.query(sql, params))?)
    }

    /// One page of whole exchanges with an id above `after` that `clause` picks.
    fn exchange_page(
        &self,
        clause: &str,
        params: &[Param],
        after: i64,
    ) -> Result<Vec<Exchange>, StoreError> {
        let columns = EXCHANGE_COLUMNS
            .split(',')
            .map(|c| format!("e.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, rb.size, rb.codec, rb.data, sb.size, sb.codec, sb.data,
                    hb.size, hb.codec, hb.data
             FROM exchanges e LEFT JOIN blobs rb ON rb.hash = e.req_body
                  LEFT JOIN blobs sb ON sb.hash = e.resp_body
                  LEFT JOIN blobs hb ON hb.hash = e.req_headers
             WHERE e.id > $1 AND {clause} ORDER BY e.id LIMIT {PAGE}"
        );
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&after];
        all.extend(refs(params));
        let rows = self.query(&sql, &all)?;
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            let (mut ex, has_req_body, has_resp_body) = exchange_of(row)?;
            let blob = |at: usize| -> Result<Option<Bytes>, StoreError> {
                let size: Option<i64> = row.try_get(at)?;
                let codec: Option<i16> = row.try_get(at + 1)?;
                let data: Option<Vec<u8>> = row.try_get(at + 2)?;
                match (size, codec, data) {
                    (Some(s), Some(c), Some(d)) => Ok(Some(Bytes::from(
                        blobs::decode(s, i64::from(c), d)
                            .map_err(|e| self.corrupt(e.to_string()))?,
                    ))),
                    _ => Ok(None),
                }
            };
            let missing = || self.corrupt("a body refers to a missing blob".into());
            if has_req_body {
                ex.request.body.data = blob(BLOBS_AT)?.ok_or_else(missing)?;
            }
            if has_resp_body {
                if let Some(resp) = ex.response.as_mut() {
                    resp.body.data = blob(BLOBS_AT + 3)?.ok_or_else(missing)?;
                }
            }
            let headers = blob(BLOBS_AT + 6)?.ok_or_else(missing)?;
            ex.request.headers = decode_headers(&headers);
            page.push(ex);
        }
        self.attach_messages(&mut page)?;
        Ok(page)
    }

    /// Fills in the stream messages of a page's exchanges, in one query.
    fn attach_messages(&self, page: &mut [Exchange]) -> Result<(), StoreError> {
        if page.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = page.iter().map(|e| e.id).collect();
        let rows = self.query(
            "SELECT m.exchange_id, m.direction, m.offset_ns, m.kind, b.size, b.codec, b.data,
                    m.data IS NOT NULL
             FROM messages m LEFT JOIN blobs b ON b.hash = m.data
             WHERE m.exchange_id = ANY($1) ORDER BY m.exchange_id, m.idx",
            &[&ids],
        )?;
        let mut by_id: HashMap<i64, Vec<StreamMessage>> = HashMap::new();
        for r in &rows {
            let id: i64 = r.try_get(0)?;
            let direction: i16 = r.try_get(1)?;
            let offset: i64 = r.try_get(2)?;
            let kind: String = r.try_get(3)?;
            let kind: MessageKind = serde_json::from_str(&kind)
                .map_err(|e| self.corrupt(format!("stream message kind {kind:?}: {e}")))?;
            let has_data: bool = r.try_get(7)?;
            let data = match (
                r.try_get(4)?,
                r.try_get::<_, Option<i16>>(5)?,
                r.try_get(6)?,
            ) {
                (Some(size), Some(codec), Some(data)) => Bytes::from(
                    blobs::decode(size, i64::from(codec), data)
                        .map_err(|e| self.corrupt(e.to_string()))?,
                ),
                _ if has_data => {
                    return Err(self.corrupt("a message refers to a missing blob".into()))
                }
                _ => Bytes::new(),
            };
            by_id.entry(id).or_default().push(StreamMessage {
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
        for ex in page {
            if let Some(m) = by_id.remove(&ex.id) {
                ex.messages = m;
            }
        }
        Ok(())
    }

    /// One page of listing rows with an id above `after`.
    fn summary_page(
        &self,
        clause: &str,
        params: &[Param],
        after: i64,
        limit: i64,
    ) -> Result<Vec<ExchangeSummary>, StoreError> {
        let sql = format!(
            "SELECT e.id, e.connection_id, e.seq, e.protocol, e.started_at_ns, e.method, e.target,
                e.scheme, e.authority, e.status, e.req_body_size, e.resp_body_size,
                e.response_end_ns, e.error, e.trace_id,
                (SELECT count(*) FROM messages m WHERE m.exchange_id = e.id AND m.direction = 0),
                (SELECT count(*) FROM messages m WHERE m.exchange_id = e.id AND m.direction = 1),
                e.resp_trailers, e.resp_headers, e.error_kind
             FROM exchanges e WHERE e.id > $1 AND {clause} ORDER BY e.id LIMIT {limit}"
        );
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&after];
        all.extend(refs(params));
        let rows = self.query(&sql, &all)?;
        rows.iter().map(summary_of).collect()
    }
}

fn grpc_status(trailers: Option<Vec<u8>>, headers: Option<Vec<u8>>) -> Option<String> {
    [trailers, headers].into_iter().flatten().find_map(|h| {
        decode_headers(&h)
            .into_iter()
            .find(|h| h.name.eq_ignore_ascii_case("grpc-status"))
            .map(|h| h.value_str().into_owned())
    })
}

fn summary_of(r: &Row) -> Result<ExchangeSummary, StoreError> {
    let target: String = r.try_get(6)?;
    let scheme: String = r.try_get(7)?;
    let authority: String = r.try_get(8)?;
    let end: Option<i64> = r.try_get(12)?;
    let status: Option<i32> = r.try_get(9)?;
    Ok(ExchangeSummary {
        id: r.try_get(0)?,
        connection_id: r.try_get(1)?,
        seq: r.try_get(2)?,
        protocol: r.try_get(3)?,
        started_at_ns: r.try_get(4)?,
        method: r.try_get(5)?,
        url: crate::model::url_of(&scheme, &authority, &target),
        target,
        status: status.and_then(|s| u16::try_from(s).ok()),
        request_bytes: r.try_get(10)?,
        response_bytes: r.try_get(11)?,
        duration_ms: end.map(|ns| ns as f64 / 1e6),
        error: r.try_get(13)?,
        error_kind: r.try_get(19)?,
        trace_id: r.try_get(14)?,
        messages_in: r.try_get(15)?,
        messages_out: r.try_get(16)?,
        grpc_status: grpc_status(r.try_get(17)?, r.try_get(18)?),
    })
}

/// The exchange of a row in [`EXCHANGE_COLUMNS`] order, without request headers, bodies or
/// messages; and whether it has a request body and a response body to fill in.
fn exchange_of(r: &Row) -> Result<(Exchange, bool, bool), StoreError> {
    let chunks = |i: usize| -> Result<Vec<crate::model::BodyChunk>, StoreError> {
        let table: Option<Vec<u8>> = r.try_get(i)?;
        table
            .map_or(Ok(Vec::new()), |t| decode_chunks(&t))
            .map_err(|reason| StoreError::Corrupt {
                path: "recording".into(),
                reason,
            })
    };
    let headers_at = |i: usize| -> Result<Vec<crate::model::Header>, StoreError> {
        let h: Option<Vec<u8>> = r.try_get(i)?;
        Ok(h.map(|h| decode_headers(&h)).unwrap_or_default())
    };
    let protocol: String = r.try_get(3)?;
    let seq: i64 = r.try_get(2)?;
    let status: Option<i32> = r.try_get(17)?;
    let req_body: Option<Vec<u8>> = r.try_get(13)?;
    let resp_body: Option<Vec<u8>> = r.try_get(21)?;
    let request = Request {
        method: r.try_get::<_, &str>(9)?.into(),
        target: r.try_get::<_, &str>(10)?.into(),
        version: r.try_get::<_, &str>(11)?.into(),
        headers: Vec::new(),
        body: Body {
            data: Bytes::new(),
            size: opt_u64(r.try_get(14)?).unwrap_or(0),
            truncated: r.try_get(15)?,
            chunks: chunks(32)?,
        },
        trailers: headers_at(16)?,
    };
    let response = match status {
        None => None,
        Some(status) => Some(Response {
            status: u16::try_from(status).unwrap_or(0),
            reason: r.try_get::<_, Option<&str>>(18)?.unwrap_or_default().into(),
            version: r.try_get::<_, Option<&str>>(19)?.unwrap_or_default().into(),
            headers: headers_at(20)?,
            body: Body {
                data: Bytes::new(),
                size: opt_u64(r.try_get(22)?).unwrap_or(0),
                truncated: r.try_get(23)?,
                chunks: chunks(33)?,
            },
            trailers: headers_at(24)?,
        }),
    };
    let error_kind: Option<String> = r.try_get(31)?;
    let tags: Option<String> = r.try_get(30)?;
    let ex = Exchange {
        id: r.try_get(0)?,
        connection_id: opt_u64(r.try_get(1)?).unwrap_or(0),
        seq: u32::try_from(seq).unwrap_or(0),
        protocol: Protocol::parse(&protocol),
        started_at_ns: r.try_get(4)?,
        client_addr: r.try_get::<_, Option<&str>>(5)?.map(Into::into),
        server_addr: r.try_get::<_, Option<&str>>(6)?.map(Into::into),
        scheme: r.try_get::<_, &str>(7)?.into(),
        authority: r.try_get::<_, &str>(8)?.into(),
        request,
        response,
        timings: Timings {
            request_end_ns: opt_u64(r.try_get(25)?),
            response_first_byte_ns: opt_u64(r.try_get(26)?),
            response_end_ns: opt_u64(r.try_get(27)?),
        },
        error: r.try_get::<_, Option<String>>(28)?.map(|message| {
            ExchangeError::new(
                error_kind
                    .as_deref()
                    .map_or(ErrorKind::Other, ErrorKind::parse),
                message,
            )
        }),
        trace_id: r.try_get(29)?,
        tags: tags
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        messages: Vec::new(),
    };
    Ok((ex, req_body.is_some(), resp_body.is_some()))
}

/// The selection's last word on a row the clause let through (a gRPC status in trailers).
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

impl RecordingRead for PgReader {
    fn meta(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.query("SELECT key, value FROM meta ORDER BY key", &[])?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    fn count(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT count(*) FROM exchanges", &[])?;
        let n: i64 = match rows.first() {
            Some(r) => r.try_get(0)?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn summaries_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ExchangeSummary>, StoreError> {
        self.summary_page(
            "TRUE",
            &[],
            after_id,
            i64::try_from(limit).unwrap_or(i64::MAX),
        )
    }

    fn load(&self, id: i64) -> Result<Exchange, StoreError> {
        let params: Vec<Param> = vec![Box::new(id)];
        let mut page = self.exchange_page("e.id = $2", &params, id - 1)?;
        page.pop().ok_or(StoreError::NoSuchExchange(id))
    }

    fn for_each(&self, f: &mut dyn FnMut(Exchange) -> bool) -> Result<(), StoreError> {
        self.for_each_selected(&Selection::default(), f)
    }

    fn for_each_selected(
        &self,
        selection: &Selection,
        f: &mut dyn FnMut(Exchange) -> bool,
    ) -> Result<(), StoreError> {
        let (clause, params) = where_clause(selection, 2);
        let mut after = 0;
        loop {
            let page = self.exchange_page(&clause, &params, after)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.id;
            for ex in page {
                if selection.needs_grpc_check() && !keeps(selection, &ex) {
                    continue;
                }
                if !f(ex) {
                    return Ok(());
                }
            }
        }
    }

    fn for_each_summary(
        &self,
        selection: &Selection,
        f: &mut dyn FnMut(ExchangeSummary) -> bool,
    ) -> Result<(), StoreError> {
        let (clause, params) = where_clause(selection, 2);
        let mut after = 0;
        loop {
            let page = self.summary_page(&clause, &params, after, 5000)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.id;
            for s in page {
                if selection.needs_grpc_check()
                    && !selection.keeps(
                        &s.protocol,
                        s.status,
                        s.error.is_some(),
                        s.grpc_status.as_deref(),
                    )
                {
                    continue;
                }
                if !f(s) {
                    return Ok(());
                }
            }
        }
    }

    fn for_each_target(&self, f: &mut dyn FnMut(&str, &str)) -> Result<(), StoreError> {
        let mut after = 0i64;
        loop {
            let rows = self.query(
                "SELECT id, method, target FROM exchanges WHERE id > $1 ORDER BY id LIMIT 10000",
                &[&after],
            )?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = last.try_get(0)?;
            for r in &rows {
                let method: String = r.try_get(1)?;
                let target: String = r.try_get(2)?;
                f(&method, &target);
            }
        }
    }

    fn patterns(&self) -> Result<Vec<PatternRow>, StoreError> {
        let rows = self.query(
            "SELECT kind, summary, detail FROM patterns ORDER BY id",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get(2)?;
                Ok(PatternRow {
                    kind: r.try_get(0)?,
                    summary: r.try_get(1)?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }
}
