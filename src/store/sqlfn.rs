//! SQL functions mf registers on its connections, so that SQL (the reader's selection, the
//! views of `mf sql`) can see what the binary columns hold: paths of targets, decoded header
//! sets, decompressed bodies.

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Error};

use super::codec::decode_headers;
use super::{blobs, StoreError};

/// `mf_path(target)`: the path of a request target without its query string (absolute-form
/// targets lose scheme and authority), as `Request::path` computes it.
pub(super) fn register_path(conn: &Connection) -> Result<(), StoreError> {
    conn.create_scalar_function("mf_path", 1, deterministic(), |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Text(t) => {
                let t = String::from_utf8_lossy(t);
                let o = crate::model::origin_form(&t);
                Some(o.split_once('?').map_or(o, |(p, _)| p).to_string())
            }
            _ => None,
        })
    })?;
    Ok(())
}

fn deterministic() -> FunctionFlags {
    FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC
}

/// The functions of `mf sql`, reading blobs through `blob_conn` (a second connection to the
/// same file: a function cannot query the connection that is running it):
///
/// - `body(hash)`: the stored bytes of a blob (a body, a message), decompressed;
/// - `body_text(hash)`: the same as text, NULL when it is not UTF-8;
/// - `mf_headers(hash_or_encoded, is_hash)`: a header set as JSON `[[name, value], …]`;
/// - `header(headers_json, name)`: the first value of header `name` (case-insensitive).
pub(super) fn register_query(conn: &Connection, blob_conn: Connection) -> Result<(), StoreError> {
    let blob_conn = std::sync::Arc::new(std::sync::Mutex::new(blob_conn));
    let load = {
        let blob_conn = blob_conn.clone();
        move |ctx: &Context<'_>| -> rusqlite::Result<Option<Vec<u8>>> {
            let ValueRef::Blob(key) = ctx.get_raw(0) else {
                return Ok(None);
            };
            let guard = blob_conn
                .lock()
                .map_err(|_| Error::UserFunctionError("blob connection poisoned".into()))?;
            blobs::get(&guard, key)
                .map(Some)
                .map_err(|e| Error::UserFunctionError(Box::new(e)))
        }
    };
    let load2 = load.clone();
    conn.create_scalar_function("body", 1, deterministic(), move |ctx| load(ctx))?;
    conn.create_scalar_function("body_text", 1, deterministic(), move |ctx| {
        Ok(load2(ctx)?.and_then(|b| String::from_utf8(b).ok()))
    })?;
    let blob_for_headers = blob_conn;
    conn.create_scalar_function("mf_headers", 2, deterministic(), move |ctx| {
        let is_hash: bool = ctx.get(1)?;
        let encoded = match ctx.get_raw(0) {
            ValueRef::Blob(b) if is_hash => {
                let guard = blob_for_headers
                    .lock()
                    .map_err(|_| Error::UserFunctionError("blob connection poisoned".into()))?;
                blobs::get(&guard, b).map_err(|e| Error::UserFunctionError(Box::new(e)))?
            }
            ValueRef::Blob(b) => b.to_vec(),
            _ => return Ok(None),
        };
        Ok(Some(headers_json(&encoded)))
    })?;
    conn.create_scalar_function("header", 2, deterministic(), |ctx| {
        let Value::Text(json) = ctx.get::<Value>(0)? else {
            return Ok(None);
        };
        let name: String = ctx.get(1)?;
        Ok(header_value(&json, &name))
    })?;
    Ok(())
}

/// A header set as `[[name, value], …]` (values that are not UTF-8 are shown lossily).
fn headers_json(encoded: &[u8]) -> String {
    let pairs: Vec<[String; 2]> = decode_headers(encoded)
        .iter()
        .map(|h| [h.name.to_string(), h.value_str().into_owned()])
        .collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

/// The first value of `name` in a header set printed by [`headers_json`].
fn header_value(json: &str, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_json::from_str(json).ok()?;
    pairs
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Header;

    #[test]
    fn headers_print_as_pairs_and_are_found_by_any_case() {
        let encoded = super::super::codec::encode_headers(&[
            Header::new("Content-Type", "text/plain"),
            Header::new("X-A", "1"),
        ]);
        let json = headers_json(&encoded);
        assert_eq!(json, r#"[["Content-Type","text/plain"],["X-A","1"]]"#);
        assert_eq!(
            header_value(&json, "content-type").as_deref(),
            Some("text/plain")
        );
        assert_eq!(header_value(&json, "nope"), None);
    }
}
