//! How a recorded request body is compared when a replay matches requests, and the form of
//! that key the recording keeps beside each exchange (`exchanges.req_body_key`, schema v4):
//! a replay of a 1M-exchange recording then indexes request bodies without reading (and
//! decompressing) one of them.
//!
//! The stored column is NULL when the key must be computed from the body (rows written
//! before v4, and bodies holding redaction placeholders, whose blanked form the replay
//! works out itself), an empty blob when the body compares as bytes (its key is then the
//! body's blob hash, which is the same BLAKE3 prefix), and 16 bytes for JSON (the hash of
//! its canonical text).

use crate::vocab::secrets;

/// How a request body is compared: absent, JSON compared by meaning, or bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyKey {
    Empty,
    /// Hash of the canonical JSON text (object keys sorted), so `{"a":1,"b":2}` equals
    /// `{"b":2,"a":1}`.
    Json([u8; 16]),
    Raw([u8; 16]),
}

/// The first 16 bytes of the BLAKE3 hash of `data`: collisions stay negligible at any
/// recording size, at half the size of the whole hash. The same as a blob's key.
pub fn short_hash(data: &[u8]) -> [u8; 16] {
    super::blobs::key_of(data)
}

/// JSON text with object keys sorted at every level.
pub fn canonical_json(v: &serde_json::Value) -> String {
    super::fixtures::sorted_json(v).to_string()
}

/// The hash of `body`'s canonical JSON text, when it is JSON.
fn json_key(body: &[u8]) -> Option<[u8; 16]> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{') | Some(b'[')) {
        return None;
    }
    let value = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    Some(short_hash(canonical_json(&value).as_bytes()))
}

/// The key of a request body.
pub fn body_key(body: &[u8]) -> BodyKey {
    if body.is_empty() {
        return BodyKey::Empty;
    }
    match json_key(body) {
        Some(key) => BodyKey::Json(key),
        None => BodyKey::Raw(short_hash(body)),
    }
}

/// What the writer stores in `req_body_key` for a request body (see the module doc).
pub(super) fn stored(body: &[u8]) -> Option<Vec<u8>> {
    if body.is_empty() || secrets::contains_placeholder(body) {
        return None;
    }
    Some(json_key(body).map_or_else(Vec::new, |k| k.to_vec()))
}

/// The key a row's `req_body` (blob hash) and `req_body_key` columns give, or `None` when the
/// body must be read to compute it. `Err` for a stored key of a size no writer makes.
pub(super) fn from_stored(
    req_body: Option<&[u8]>,
    stored: Option<&[u8]>,
) -> Result<Option<BodyKey>, String> {
    let Some(hash) = req_body else {
        return Ok(Some(BodyKey::Empty));
    };
    let Some(stored) = stored else {
        return Ok(None);
    };
    let wrong = |what: &str, n: usize| format!("a request {what} of {n} bytes (16 expected)");
    if stored.is_empty() {
        let hash: [u8; 16] = hash
            .try_into()
            .map_err(|_| wrong("body hash", hash.len()))?;
        return Ok(Some(BodyKey::Raw(hash)));
    }
    let key: [u8; 16] = stored
        .try_into()
        .map_err(|_| wrong("body key", stored.len()))?;
    Ok(Some(BodyKey::Json(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_keyed_by_meaning_and_others_by_bytes() {
        assert_eq!(body_key(b""), BodyKey::Empty);
        assert_eq!(
            body_key(br#"{"a":1,"b":2}"#),
            body_key(br#" {"b": 2, "a": 1}"#)
        );
        assert!(matches!(body_key(br#"{"a":1}"#), BodyKey::Json(_)));
        assert!(matches!(body_key(b"{not json"), BodyKey::Raw(_)));
    }

    #[test]
    fn a_stored_key_gives_the_key_computed_from_the_body() {
        let placeholder = format!(
            "{{\"token\":\"{}\"}}",
            secrets::Placeholders::with_key(b"k").of("secret")
        );
        for body in [
            &br#"{"b": 2, "a": [1, {"d": 4, "c": 3}]}"#[..],
            b"plain bytes",
            b"{not json",
            b"",
            placeholder.as_bytes(),
        ] {
            let hash = (!body.is_empty()).then(|| short_hash(body));
            let stored = stored(body);
            let got = from_stored(hash.as_ref().map(|h| &h[..]), stored.as_deref()).unwrap();
            match got {
                Some(key) => assert_eq!(key, body_key(body), "{body:?}"),
                None => assert!(secrets::contains_placeholder(body), "{body:?}"),
            }
        }
        assert!(from_stored(Some(&[1; 16]), Some(&[2; 3])).is_err());
        assert!(from_stored(Some(&[1; 5]), Some(&[])).is_err());
    }
}
