//! Body comparison: JSON by value with a path to each difference, text by line, anything
//! else by hash. Also used for gRPC messages and WebSocket frames (`stream`).

use std::borrow::Cow;
use std::io::Read;

use serde_json::Value;

use super::scope::{Scope, ABSENT};
use crate::model::{HeaderList, Response};

/// Largest body inflated for comparison; a bigger one is compared as sent.
const MAX_INFLATED: u64 = 64 << 20;
/// Text bodies longer than this many lines are compared by hash, not line by line.
const MAX_LINES: usize = 100_000;

/// Compares the bodies of two answers; true when they compare equal (noise aside).
pub(super) fn compare(scope: &mut Scope<'_>, a: &Response, b: &Response) -> bool {
    let before = scope.differences();
    let (da, db) = (decoded(a), decoded(b));
    if a.body.truncated || b.body.truncated {
        // Only a prefix was recorded: compare what both sides have, and the sizes.
        let n = da.len().min(db.len());
        if a.body.size != b.body.size {
            let (sa, sb) = (
                format!("{} bytes", a.body.size),
                format!("{} bytes", b.body.size),
            );
            scope.differ("body size".into(), &sa, &sb, sa.clone(), sb.clone());
        }
        bytes(scope, "body", &da[..n], &db[..n]);
        return scope.differences() == before;
    }
    if da == db {
        // Equal: no need to look at their types.
        return true;
    }
    let json_type = |r: &Response| {
        r.headers
            .header_str("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().contains("json"))
    };
    payload(scope, "", "body", &da, &db, json_type(a) || json_type(b));
    scope.differences() == before
}

/// One payload (a body, a message, a frame): JSON by value, UTF-8 text by line, else bytes.
/// `prefix` goes before JSON paths (`grpc message 2 `), `name` names the whole payload.
pub(super) fn payload(
    scope: &mut Scope<'_>,
    prefix: &str,
    name: &str,
    a: &[u8],
    b: &[u8],
    json_hint: bool,
) {
    if a == b {
        return;
    }
    if json_hint || looks_json(a) || looks_json(b) {
        match (
            serde_json::from_slice::<Value>(a),
            serde_json::from_slice::<Value>(b),
        ) {
            (Ok(va), Ok(vb)) => {
                let mut path = format!("{prefix}$");
                json(scope, &mut path, &va, &vb);
                return;
            }
            (Ok(_), Err(_)) | (Err(_), Ok(_)) => {
                let (sa, sb) = (snippet(a), snippet(b));
                scope.differ(name.into(), &sa, &sb, sa.clone(), sb.clone());
                return;
            }
            _ => {}
        }
    }
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        (Ok(ta), Ok(tb)) if !has_controls(ta) && !has_controls(tb) => text(scope, name, ta, tb),
        _ => bytes(scope, name, a, b),
    }
}

/// Two protobuf messages (decoded without schema) compared field by field; false when either
/// is not a protobuf message (the caller compares bytes then).
pub(super) fn protobuf(scope: &mut Scope<'_>, prefix: &str, a: &[u8], b: &[u8]) -> bool {
    let (Some(va), Some(vb)) = (super::proto::decode(a), super::proto::decode(b)) else {
        return false;
    };
    let mut path = format!("{prefix}$");
    json(scope, &mut path, &va, &vb);
    true
}

pub(super) fn looks_json(data: &[u8]) -> bool {
    matches!(
        data.iter().find(|c| !c.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

fn has_controls(s: &str) -> bool {
    s.bytes()
        .any(|c| c < 0x20 && !matches!(c, b'\n' | b'\r' | b'\t'))
}

/// The body as the application sent it: gzip and deflate content codings undone.
fn decoded(r: &Response) -> Cow<'_, [u8]> {
    let data = &r.body.data[..];
    let coding = r.headers.header_str("content-encoding").unwrap_or_default();
    let mut out = Vec::new();
    let ok = match coding.to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(data)
            .take(MAX_INFLATED)
            .read_to_end(&mut out)
            .is_ok(),
        "deflate" => flate2::read::ZlibDecoder::new(data)
            .take(MAX_INFLATED)
            .read_to_end(&mut out)
            .is_ok(),
        _ => false,
    };
    if ok {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(data)
    }
}

fn bytes(scope: &mut Scope<'_>, name: &str, a: &[u8], b: &[u8]) {
    if a != b {
        let (sa, sb) = (digest(a), digest(b));
        scope.differ(name.into(), &sa, &sb, sa.clone(), sb.clone());
    }
}

/// `12 bytes, blake3 1a2b3c4d5e6f7a8b`.
fn digest(data: &[u8]) -> String {
    let hash = blake3::hash(data).to_hex();
    format!("{} bytes, blake3 {}", data.len(), &hash[..16])
}

/// A short printable rendering of a payload.
fn snippet(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(t) if !has_controls(t) => format!("{t:?}"),
        _ => digest(data),
    }
}

/// A JSON value as shown in a difference.
fn shown(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A JSON leaf as the rules see it: a string unquoted, anything else as JSON.
fn leaf_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(shown(other)),
    }
}

fn push_key(path: &mut String, key: &str) {
    // All digits is a protobuf field number (`$.1.3`); other plain keys start with a letter.
    let numeric = !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit());
    let plain = numeric
        || (!key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    if plain {
        path.push('.');
        path.push_str(key);
    } else {
        path.push_str("[\"");
        path.push_str(&key.replace('"', "\\\""));
        path.push_str("\"]");
    }
}

/// JSON by value: objects by key (order does not matter), arrays by index.
fn json(scope: &mut Scope<'_>, path: &mut String, a: &Value, b: &Value) {
    if a == b {
        return;
    }
    let len = path.len();
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            for (k, va) in ma {
                push_key(path, k);
                match mb.get(k) {
                    Some(vb) => json(scope, path, va, vb),
                    None => scope.differ(
                        path.clone(),
                        &leaf_text(va),
                        ABSENT,
                        shown(va),
                        ABSENT.into(),
                    ),
                }
                path.truncate(len);
            }
            for (k, vb) in mb {
                if !ma.contains_key(k) {
                    push_key(path, k);
                    scope.differ(
                        path.clone(),
                        ABSENT,
                        &leaf_text(vb),
                        ABSENT.into(),
                        shown(vb),
                    );
                    path.truncate(len);
                }
            }
        }
        (Value::Array(xa), Value::Array(xb)) => {
            for i in 0..xa.len().max(xb.len()) {
                path.push_str(&format!("[{i}]"));
                match (xa.get(i), xb.get(i)) {
                    (Some(va), Some(vb)) => json(scope, path, va, vb),
                    (Some(va), None) => scope.differ(
                        path.clone(),
                        &leaf_text(va),
                        ABSENT,
                        shown(va),
                        ABSENT.into(),
                    ),
                    (None, Some(vb)) => scope.differ(
                        path.clone(),
                        ABSENT,
                        &leaf_text(vb),
                        ABSENT.into(),
                        shown(vb),
                    ),
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        _ => scope.differ(
            path.clone(),
            &leaf_text(a),
            &leaf_text(b),
            shown(a),
            shown(b),
        ),
    }
}

/// Text by line: common leading and trailing lines are skipped, the lines between compared
/// pairwise (an inserted line shows as the lines after it differing, then one absent line).
/// A line whose differing words all have a volatile form (a timestamp in an HTML footer) is
/// noise.
fn text(scope: &mut Scope<'_>, name: &str, a: &str, b: &str) {
    let la: Vec<&str> = a.lines().collect();
    let lb: Vec<&str> = b.lines().collect();
    if la.len() > MAX_LINES || lb.len() > MAX_LINES {
        return bytes(scope, name, a.as_bytes(), b.as_bytes());
    }
    if la.len() <= 1 && lb.len() <= 1 {
        // One line each (a WebSocket text frame, a short answer): the payload is the line.
        return line(scope, name.to_string(), a, b);
    }
    let head = la.iter().zip(&lb).take_while(|(x, y)| x == y).count();
    let tail = la[head..]
        .iter()
        .rev()
        .zip(lb[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&la[head..la.len() - tail], &lb[head..lb.len() - tail]);
    if ma.is_empty() && mb.is_empty() {
        // Only line endings differ (CRLF vs LF, or a final newline).
        let (sa, sb) = (digest(a.as_bytes()), digest(b.as_bytes()));
        return scope.differ(
            format!("{name} line endings"),
            &sa,
            &sb,
            sa.clone(),
            sb.clone(),
        );
    }
    for i in 0..ma.len().max(mb.len()) {
        let path = format!("{name} line {}", head + i + 1);
        match (ma.get(i), mb.get(i)) {
            (Some(x), Some(y)) => line(scope, path, x, y),
            (Some(x), None) => scope.differ(path, x, ABSENT, format!("{x:?}"), ABSENT.into()),
            (None, Some(y)) => scope.differ(path, ABSENT, y, ABSENT.into(), format!("{y:?}")),
            (None, None) => {}
        }
    }
}

/// Two differing lines: noise when the words that differ are all noise (checked word by
/// word against the rules, through a scratch scope so that only the verdict on the whole
/// line is kept).
fn line(scope: &mut Scope<'_>, path: String, x: &str, y: &str) {
    let split = |s: &'static str| move |c: char| c.is_whitespace() || s.contains(c);
    let wa: Vec<&str> = x.split(split("\"'<>,;()[]{}=&")).collect();
    let wb: Vec<&str> = y.split(split("\"'<>,;()[]{}=&")).collect();
    if wa.len() == wb.len() {
        let mut rule = None;
        let all_noise = wa.iter().zip(&wb).filter(|(p, q)| p != q).all(|(p, q)| {
            match scope.rules_noise(&path, p, q) {
                Some(r) => {
                    rule.get_or_insert(r);
                    true
                }
                None => false,
            }
        });
        if all_noise {
            if let Some(rule) = rule {
                return scope.ignore(path, rule);
            }
        }
    }
    scope.differ(path, x, y, format!("{x:?}"), format!("{y:?}"));
}
