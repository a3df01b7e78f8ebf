//! One row of `exchanges` into an [`Exchange`], filled in place so that a walk over millions
//! of rows can reuse one exchange's allocations (strings, header lists) from row to row.

use std::path::Path;

use rusqlite::Row;

use super::blob_memo::BlobMemo;
use super::codec::{decode_chunks, decode_headers};
use super::StoreError;
use crate::model::{
    BodyChunk, ErrorKind, Exchange, ExchangeError, Header, Protocol, Response, Text, Timings,
};

/// The columns [`fill`] reads, in its order.
pub(super) const EXCHANGE_COLUMNS: &str = "id, connection_id, seq, protocol, started_at_ns, client_addr, server_addr, scheme,
    authority, method, target, req_version, req_headers, req_body, req_body_size, req_body_truncated, req_trailers,
    status, reason, resp_version, resp_headers, resp_body, resp_body_size, resp_body_truncated, resp_trailers,
    request_end_ns, response_first_byte_ns, response_end_ns, error, trace_id, tags, error_kind,
    req_body_chunks, resp_body_chunks";

/// Number of columns in [`EXCHANGE_COLUMNS`]: columns a walk joins start here (a column added
/// to the list moves them along).
pub(super) const EXCHANGE_COLUMN_COUNT: usize = 34;

/// The blob keys of a row, resolved by the caller (from a join, a memo or a lookup).
#[derive(Default)]
pub(super) struct RowKeys {
    pub(super) req_headers: Vec<u8>,
    pub(super) req_body: Option<Vec<u8>>,
    pub(super) resp_body: Option<Vec<u8>>,
}

/// Sets every field of `ex` from row `r` except the request headers, the bodies' bytes and
/// the stream messages, whose keys go to `keys`: the caller resolves them, and must set them
/// for every row (a reused `ex` still holds the previous row's). The inline answer header
/// block is decoded through `memo`.
pub(super) fn fill(
    r: &Row,
    path: &Path,
    memo: &mut BlobMemo,
    ex: &mut Exchange,
    keys: &mut RowKeys,
) -> Result<(), StoreError> {
    let text = |i: usize| text(r, i);
    let opt_text = |i: usize| -> Result<Option<&str>, StoreError> {
        Ok(r.get_ref(i)?
            .as_str_or_null()
            .map_err(rusqlite::Error::from)?)
    };
    let blob = |i: usize| -> Result<Option<&[u8]>, StoreError> {
        Ok(r.get_ref(i)?
            .as_blob_or_null()
            .map_err(rusqlite::Error::from)?)
    };
    ex.id = r.get(0)?;
    ex.connection_id = opt_u64(r.get(1)?).unwrap_or(0);
    ex.seq = r.get(2)?;
    ex.protocol = Protocol::parse(text(3)?);
    ex.started_at_ns = r.get(4)?;
    set_opt(&mut ex.client_addr, opt_text(5)?);
    set_opt(&mut ex.server_addr, opt_text(6)?);
    set(&mut ex.scheme, text(7)?);
    set(&mut ex.authority, text(8)?);

    let req = &mut ex.request;
    set(&mut req.method, text(9)?);
    set(&mut req.target, text(10)?);
    set(&mut req.version, text(11)?);
    set_key(&mut keys.req_headers, blob(12)?.unwrap_or_default());
    set_opt_key(&mut keys.req_body, blob(13)?);
    req.body.size = opt_u64(r.get(14)?).unwrap_or(0);
    req.body.truncated = r.get(15)?;
    req.body.chunks = chunks_at(r, 32, path)?;
    set_headers(&mut req.trailers, blob(16)?);

    let status: Option<u16> = r.get(17)?;
    match status {
        None => ex.response = None,
        Some(status) => {
            let resp = ex.response.get_or_insert_with(Response::default);
            resp.status = status;
            set(&mut resp.reason, opt_text(18)?.unwrap_or_default());
            set(&mut resp.version, opt_text(19)?.unwrap_or_default());
            match blob(20)? {
                Some(block) => memo.inline_into(block, &mut resp.headers),
                None => resp.headers.clear(),
            }
            resp.body.size = opt_u64(r.get(22)?).unwrap_or(0);
            resp.body.truncated = r.get(23)?;
            resp.body.chunks = chunks_at(r, 33, path)?;
            set_headers(&mut resp.trailers, blob(24)?);
        }
    }
    set_opt_key(&mut keys.resp_body, blob(21)?);

    ex.timings = Timings {
        request_end_ns: opt_u64(r.get(25)?),
        response_first_byte_ns: opt_u64(r.get(26)?),
        response_end_ns: opt_u64(r.get(27)?),
    };
    ex.error = match opt_text(28)? {
        None => None,
        Some(message) => {
            let kind = opt_text(31).ok().flatten();
            Some(ExchangeError::new(
                kind.map_or(ErrorKind::Other, ErrorKind::parse),
                message.to_string(),
            ))
        }
    };
    match (ex.trace_id.as_mut(), opt_text(29)?) {
        (Some(d), Some(v)) => {
            d.clear();
            d.push_str(v);
        }
        (_, v) => ex.trace_id = v.map(str::to_string),
    }
    ex.tags = opt_text(30)?
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    Ok(())
}

/// A row's fields as a new exchange, and its keys.
pub(super) fn read(
    r: &Row,
    path: &Path,
    memo: &mut BlobMemo,
) -> Result<(Exchange, RowKeys), StoreError> {
    let mut ex = Exchange::default();
    let mut keys = RowKeys::default();
    fill(r, path, memo, &mut ex, &mut keys)?;
    Ok((ex, keys))
}

/// Column `i` of `r` as text, borrowed from SQLite.
pub(super) fn text<'r>(r: &'r Row, i: usize) -> Result<&'r str, StoreError> {
    Ok(r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?)
}

/// `dst` set to `value`, reusing its room.
pub(super) fn set(dst: &mut Text, value: &str) {
    dst.clear();
    dst.push_str(value);
}

fn set_opt(dst: &mut Option<Text>, value: Option<&str>) {
    match (dst.as_mut(), value) {
        (Some(d), Some(v)) => set(d, v),
        (_, v) => *dst = v.map(Text::from),
    }
}

fn set_key(dst: &mut Vec<u8>, value: &[u8]) {
    dst.clear();
    dst.extend_from_slice(value);
}

fn set_opt_key(dst: &mut Option<Vec<u8>>, value: Option<&[u8]>) {
    match (dst.as_mut(), value) {
        (Some(d), Some(v)) => set_key(d, v),
        (_, v) => *dst = v.map(<[u8]>::to_vec),
    }
}

fn set_headers(dst: &mut Vec<Header>, block: Option<&[u8]>) {
    match block {
        Some(b) => *dst = decode_headers(b),
        None => dst.clear(),
    }
}

/// A stored integer as the unsigned count or instant it holds (`None` when NULL or negative).
pub(super) fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|n| u64::try_from(n).ok())
}

/// The chunk table in column `index`: empty when NULL.
fn chunks_at(r: &Row, index: usize, path: &Path) -> Result<Vec<BodyChunk>, StoreError> {
    let table = r
        .get_ref(index)?
        .as_blob_or_null()
        .map_err(rusqlite::Error::from)?;
    table
        .map_or(Ok(Vec::new()), decode_chunks)
        .map_err(|reason| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
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
