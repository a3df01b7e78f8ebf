//! HTTP vocabulary shared by every stage: request-target forms, id-like path segments, JSON
//! leaves, status reason phrases, header-map conversions and volatile value forms.
//!
//! Inference, replay and capture each had their own copy of these, and the copies disagreed
//! (one JSON-leaf walker quoted strings, the other did not; one id test took 8 hex digits,
//! the other 16). Anything that asks "what does this look like in HTTP terms" asks here.
//!
//! Imports: `model` only (and the `http` crate's types).

pub mod curl;
pub mod secrets;
pub mod volatile;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::model::Header;

/// The target in origin form (defined beside the model's `Request`, which needs it too).
pub use crate::model::origin_form;

/// The authority of an absolute-form target (`http://h:1/p` → `h:1`), if it is one.
pub fn absolute_authority(target: &str) -> Option<&str> {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return Some(rest.split('/').next().unwrap_or(rest));
        }
    }
    None
}

/// Path and query of an origin-form target (`/a?b` → (`/a`, Some(`b`))).
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    }
}

/// The value class of a path segment when it looks like an identifier rather than a literal:
/// `int`, `uuid`, `hex`, `date` or `token`; `None` for a literal.
pub fn segment_class(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return None;
    }
    if s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) {
        return Some("int");
    }
    if is_uuid(s) {
        return Some("uuid");
    }
    if s.len() >= 8
        && s.bytes().all(|b| b.is_ascii_hexdigit())
        && s.bytes().any(|b| b.is_ascii_digit())
    {
        return Some("hex");
    }
    if is_date(s) {
        return Some("date");
    }
    let tokenish = s.len() >= 16
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'.'))
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_alphabetic());
    tokenish.then_some("token")
}

/// True when a path segment looks like an identifier (see [`segment_class`]).
pub fn is_id_segment(s: &str) -> bool {
    segment_class(s).is_some()
}

/// `8-4-4-4-12` hex digits.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 4 | 7) {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// A route template guessed from one path, for metric labels and profiles: id-like segments
/// become `{id}` (`/users/42/posts` → `/users/{id}/posts`). Full inference lives in `infer`.
pub fn route_template(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if is_id_segment(seg) { "{id}" } else { seg });
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Parses a body as JSON when it looks like an object or an array.
pub fn parse_json(data: &[u8]) -> Option<Value> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace())?;
    matches!(first, b'{' | b'[')
        .then(|| serde_json::from_slice(data).ok())
        .flatten()
}

/// The scalar leaves of a JSON document as `(dotted.path, text)`, at most `limit` of them.
/// Object keys join with `.`, array elements are `[]` (the first 50 of each array); a string
/// leaf's text is the string itself (unquoted), a number's its JSON text, a boolean's
/// `true`/`false`; `null` leaves are skipped.
pub fn json_leaves(v: &Value, limit: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(v, "", limit, &mut out);
    out
}

fn walk(v: &Value, prefix: &str, limit: usize, out: &mut Vec<(String, String)>) {
    if out.len() >= limit {
        return;
    }
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                walk(item, &join(k), limit, out);
            }
        }
        Value::Array(items) => {
            for item in items.iter().take(50) {
                walk(item, &join("[]"), limit, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Number(n) => out.push((prefix.to_string(), n.to_string())),
        Value::Bool(b) => out.push((prefix.to_string(), b.to_string())),
        Value::Null => {}
    }
}

/// The standard reason phrase of `code` (from the `http` crate's table), or `""` for codes
/// without one.
pub fn reason_phrase(code: u16) -> &'static str {
    http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// An `http` header map as mf's ordered header list.
pub fn headers_from_map(map: &HeaderMap) -> Vec<Header> {
    map.iter()
        .map(|(n, v)| Header {
            name: n.as_str().into(),
            value: crate::model::HeaderValue::from_slice(v.as_bytes()),
        })
        .collect()
}

/// Connection-specific header fields, which HTTP/2 forbids (RFC 9113 §8.2.2).
pub const CONNECTION_SPECIFIC: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// Recorded headers as an HTTP/2 header map: names lowercased, connection-specific fields
/// and pseudo-headers dropped, fields that are not valid HTTP skipped. With `body_len`, a
/// `content-length` is set to it (a body cut at `--max-body` is shorter than recorded).
pub fn header_map(headers: &[Header], body_len: Option<usize>) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = h.name.to_ascii_lowercase();
        if CONNECTION_SPECIFIC.contains(&name.as_str()) || name.starts_with(':') {
            continue;
        }
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&h.value),
        ) else {
            continue;
        };
        if n == http::header::CONTENT_LENGTH {
            if let Some(len) = body_len {
                map.insert(n, HeaderValue::from(len));
                continue;
            }
        }
        map.append(n, v);
    }
    map
}

/// Human-readable byte count (`512 B`, `1.5 KiB`): listings, summaries and the viewer.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_templates() {
        assert_eq!(origin_form("http://a:1/x?y=1"), "/x?y=1");
        assert_eq!(origin_form("https://a"), "/");
        assert_eq!(origin_form("/p"), "/p");
        assert_eq!(absolute_authority("http://a:1/x"), Some("a:1"));
        assert_eq!(absolute_authority("/x"), None);
        assert_eq!(split_target("/a?b=1"), ("/a", Some("b=1")));
        assert_eq!(
            route_template("/users/42/posts/0f8c2d1e-1111-2222-3333-444455556666?x"),
            "/users/{id}/posts/{id}"
        );
        assert_eq!(route_template(""), "/");
        assert_eq!(route_template("/v1/users"), "/v1/users");
    }

    #[test]
    fn leaves_are_unquoted_text() {
        let v: Value =
            serde_json::json!({"a": {"b": "x", "n": 3, "t": true, "z": null}, "l": [1, 2]});
        assert_eq!(
            json_leaves(&v, 100),
            vec![
                ("a.b".to_string(), "x".to_string()),
                ("a.n".to_string(), "3".to_string()),
                ("a.t".to_string(), "true".to_string()),
                ("l.[]".to_string(), "1".to_string()),
                ("l.[]".to_string(), "2".to_string()),
            ]
        );
        assert_eq!(json_leaves(&v, 1).len(), 1);
    }

    #[test]
    fn reasons_and_header_maps() {
        assert_eq!(reason_phrase(503), "Service Unavailable");
        assert_eq!(reason_phrase(299), "");
        let hs = vec![
            Header::new("Content-Length", "88"),
            Header::new("Connection", "keep-alive"),
            Header::new("X-A", "1"),
            Header::new("x-a", "2"),
        ];
        let m = header_map(&hs, Some(10));
        assert_eq!(m.get("content-length").unwrap(), "10");
        assert!(m.get("connection").is_none());
        assert_eq!(m.get_all("x-a").iter().count(), 2);
        assert_eq!(headers_from_map(&m).len(), 3);
    }
}
