//! A redacted value matches any value: how replay compares a recorded request holding
//! placeholders with the live request that carries the real secrets.

use serde_json::Value;

use super::{is_placeholder, placeholder_spans};

/// True when the live JSON `live` equals the `recorded` one, a placeholder string in the
/// recording matching any value (object key order does not matter).
pub fn json_matches(recorded: &Value, live: &Value) -> bool {
    match (recorded, live) {
        (Value::String(s), _) if is_placeholder(s) => true,
        (Value::Object(r), Value::Object(l)) => {
            r.len() == l.len()
                && r.iter()
                    .all(|(k, rv)| l.get(k).is_some_and(|lv| json_matches(rv, lv)))
        }
        (Value::Array(r), Value::Array(l)) => {
            r.len() == l.len() && r.iter().zip(l).all(|(a, b)| json_matches(a, b))
        }
        _ => recorded == live,
    }
}

/// True when the live bytes equal the recorded ones, each placeholder in the recording
/// matching any run of bytes (a glob whose only wildcard is the placeholder). The text
/// around a placeholder (`&user=ada`, a multipart boundary) anchors where the value ends.
pub fn raw_matches(recorded: &[u8], live: &[u8]) -> bool {
    let spans = placeholder_spans(recorded);
    if spans.is_empty() {
        return recorded == live;
    }
    let mut literals = Vec::with_capacity(spans.len() + 1);
    let mut from = 0;
    for s in &spans {
        literals.push(&recorded[from..s.start]);
        from = s.end;
    }
    literals.push(&recorded[from..]);
    let Some((first, rest)) = literals.split_first() else {
        return recorded == live;
    };
    let Some((last, middle)) = rest.split_last() else {
        return live.starts_with(first);
    };
    if !live.starts_with(first) || live.len() < first.len() + last.len() {
        return false;
    }
    let end = live.len() - last.len();
    if !live.ends_with(last) {
        return false;
    }
    // Leftmost placement of each middle literal is always the best choice for a glob.
    let mut at = first.len();
    for lit in middle {
        match memchr::memmem::find(&live[at..end], lit) {
            Some(i) => at += i + lit.len(),
            None => return false,
        }
    }
    at <= end
}
