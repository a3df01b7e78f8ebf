//! Listing rows: what `mf ls` and `mf stats` need of each exchange, without bodies, for the
//! exchanges a [`Selection`] picks, streamed one row at a time.

use rusqlite::Row;
use serde::Serialize;

use super::codec::decode_headers;
use super::read::Reader;
use super::{Selection, StoreError};

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
    /// The request target as sent (path and query, or absolute form).
    pub target: String,
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

const SUMMARY_SQL: &str = "SELECT e.id, e.connection_id, e.seq, e.protocol, e.started_at_ns, e.method, e.target,
        e.scheme, e.authority, e.status, e.req_body_size, e.resp_body_size, e.response_end_ns, e.error,
        e.trace_id,
        (SELECT count(*) FROM messages m WHERE m.exchange_id = e.id AND m.direction = 0),
        (SELECT count(*) FROM messages m WHERE m.exchange_id = e.id AND m.direction = 1),
        e.resp_trailers, e.resp_headers, e.error_kind
     FROM exchanges e";

impl Reader {
    /// Calls `f` with the listing row of every exchange `selection` picks, in recording
    /// order, one at a time (one statement, rows read as they come: memory stays flat);
    /// `f` returning `false` stops the walk.
    ///
    /// # Errors
    /// Database errors.
    pub fn for_each_summary(
        &self,
        selection: &Selection,
        f: &mut dyn FnMut(ExchangeSummary) -> bool,
    ) -> Result<(), StoreError> {
        let (clause, params) = selection.where_clause();
        let sql = format!("{SUMMARY_SQL} WHERE {clause} ORDER BY e.id");
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            let s = summary(row)?;
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
                break;
            }
        }
        Ok(())
    }

    /// Up to `limit` listing rows with an id above `after_id`, in recording order.
    pub(super) fn summaries_page(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<ExchangeSummary>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{SUMMARY_SQL} WHERE e.id > ?1 ORDER BY e.id LIMIT ?2"
        ))?;
        let mut rows = stmt.query(rusqlite::params![after_id, limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(summary(row)?);
        }
        Ok(out)
    }
}

fn summary(r: &Row) -> Result<ExchangeSummary, rusqlite::Error> {
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
        target,
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
}
