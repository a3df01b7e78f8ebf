//! Compares a recorded exchange with an observed one: status, headers and trailers here, the
//! body in `body`, gRPC messages and WebSocket frames in `stream`.

use std::collections::BTreeMap;

pub(super) use super::scope::{endpoint_of, Scope, ABSENT};
use super::{body, stream, Rules, Verdict};
use crate::model::{Exchange, Header, HeaderList, Protocol, Response};

/// Headers that describe the connection or the framing, not the answer.
const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "alt-svc",
];

/// Compares exchanges under a set of [`Rules`].
#[derive(Debug)]
pub(crate) struct Judge {
    rules: Rules,
}

impl Judge {
    /// A judge applying `rules`.
    pub(crate) fn new(rules: Rules) -> Judge {
        Judge { rules }
    }

    /// Status, headers, body (JSON by value with paths, text by line, binary by hash),
    /// gRPC messages + trailers, WebSocket frames in order.
    pub(crate) fn compare(&self, recorded: &Exchange, observed: &Exchange) -> Verdict {
        raw_compare(&self.rules, recorded, observed)
    }
}

/// The comparison itself, under any rules (noise learning compares under bare ones).
pub(super) fn raw_compare(rules: &Rules, recorded: &Exchange, observed: &Exchange) -> Verdict {
    let mut scope = Scope::new(
        rules,
        recorded,
        (recorded.started_at_ns, observed.started_at_ns),
    );
    match (&recorded.response, &observed.response) {
        (Some(_), Some(_)) => compare_responses(&mut scope, recorded, observed),
        (None, None) => {}
        (a, b) => {
            let show = |r: Option<&Response>, ex: &Exchange| match r {
                Some(r) => r.status.to_string(),
                None => match &ex.error {
                    Some(e) => format!("(no answer: {e})"),
                    None => "(no answer)".into(),
                },
            };
            let (ra, rb) = (show(a.as_ref(), recorded), show(b.as_ref(), observed));
            scope.differ("status".into(), &ra, &rb, ra.clone(), rb.clone());
        }
    }
    scope.finish()
}

fn compare_responses(scope: &mut Scope<'_>, recorded: &Exchange, observed: &Exchange) {
    let (Some(a), Some(b)) = (&recorded.response, &observed.response) else {
        return;
    };
    if a.status != b.status {
        let (ra, rb) = (a.status.to_string(), b.status.to_string());
        scope.differ("status".into(), &ra, &rb, ra.clone(), rb.clone());
    }
    let grpc = recorded.protocol() == Protocol::Grpc;
    compare_headers(scope, "header", &a.headers, &b.headers, grpc);
    compare_headers(scope, "trailer", &a.trailers, &b.trailers, grpc);
    let body_equal = body::compare(scope, a, b);
    // The same bytes need no text copies to compare equal.
    let same_length = a.headers.header("content-length") == b.headers.header("content-length")
        || vocab_header(&a.headers, "content-length") == vocab_header(&b.headers, "content-length");
    if !same_length {
        // The length follows the body: equal bodies make it noise, and differing ones are
        // already reported where they differ.
        let rule = if body_equal {
            "content-length: the body compares equal"
        } else {
            "content-length: follows the body's differences"
        };
        scope.ignore("header content-length".into(), rule.into());
    }
    if grpc {
        for name in ["grpc-status", "grpc-message"] {
            let value = |r: &Response| {
                vocab_header(&r.trailers, name).or_else(|| vocab_header(&r.headers, name))
            };
            let (va, vb) = (value(a), value(b));
            // A missing grpc-status is status 0 only when the call ended; keep it explicit.
            if va != vb {
                let (ra, rb) = (
                    va.unwrap_or_else(|| ABSENT.into()),
                    vb.unwrap_or_else(|| ABSENT.into()),
                );
                scope.differ(
                    format!("grpc trailer {name}"),
                    &ra,
                    &rb,
                    ra.clone(),
                    rb.clone(),
                );
            }
        }
    }
    stream::compare(scope, recorded, observed);
}

fn vocab_header(headers: &[Header], name: &str) -> Option<String> {
    headers.header_str(name)
}

/// True for a header the comparison skips: framing, pseudo-headers, gRPC's status (compared
/// on its own). `name` is lower-case.
fn skipped(name: &str, grpc: bool) -> bool {
    name.starts_with(':')
        || FRAMING_HEADERS.contains(&name)
        || (grpc && matches!(name, "grpc-status" | "grpc-message"))
}

/// A value as the comparison sees it.
fn shown_value(h: &Header) -> String {
    h.value_str().trim().to_string()
}

/// Header values by lowercase name, in order, skipping framing and pseudo-headers.
fn header_values(headers: &[Header], grpc: bool) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in headers {
        let name = h.name.as_str().to_ascii_lowercase();
        if skipped(&name, grpc) {
            continue;
        }
        out.entry(name).or_default().push(shown_value(h));
    }
    out
}

/// The usual case without building [`header_values`]' maps: both lists name the same
/// headers in the same order. Then a name's values differ exactly when they differ at one
/// of its positions, and the values at those positions are its whole lists. Gives the names
/// (lower-case, sorted, once each) whose values differ, or `None` when the lists are not
/// aligned. (The maps for every answer were ~7% of a `replay --to --speed max` profile.)
fn aligned_differences(a: &[Header], b: &[Header], grpc: bool) -> Option<Vec<String>> {
    if a.len() != b.len() {
        return None;
    }
    let mut names = Vec::new();
    for (ha, hb) in a.iter().zip(b) {
        if !ha.name.eq_ignore_ascii_case(&hb.name) {
            return None;
        }
        if ha.value == hb.value {
            continue;
        }
        let name = ha.name.as_str().to_ascii_lowercase();
        if skipped(&name, grpc) || ha.value_str().trim() == hb.value_str().trim() {
            continue;
        }
        names.push(name);
    }
    names.sort();
    names.dedup();
    Some(names)
}

/// The values of the lower-case `name` in `headers`, as [`header_values`] lists them.
fn values_of(headers: &[Header], name: &str) -> Option<Vec<String>> {
    let values: Vec<String> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(shown_value)
        .collect();
    (!values.is_empty()).then_some(values)
}

/// The cookie names a `Set-Cookie` list sets (the values are session state: volatile).
fn cookie_names(values: &[String]) -> Vec<String> {
    let mut names: Vec<String> = values
        .iter()
        .map(|v| v.split(['=', ';']).next().unwrap_or("").trim().to_string())
        .collect();
    names.sort();
    names
}

fn compare_headers(scope: &mut Scope<'_>, what: &str, a: &[Header], b: &[Header], grpc: bool) {
    if let Some(names) = aligned_differences(a, b, grpc) {
        for name in &names {
            if scope.rules.volatile_header(name) {
                // Noise whatever the values are: no need to gather them.
                scope.ignore(format!("{what} {name}"), format!("volatile header {name}"));
                continue;
            }
            let (va, vb) = (values_of(a, name), values_of(b, name));
            differ_header(scope, what, name, va.as_ref(), vb.as_ref());
        }
        return;
    }
    let (ma, mb) = (header_values(a, grpc), header_values(b, grpc));
    let names: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    for name in names {
        let (va, vb) = (ma.get(name), mb.get(name));
        if va != vb {
            differ_header(scope, what, name, va, vb);
        }
    }
}

/// The values of header `name` differ: noise, new cookie values, or a difference.
fn differ_header(
    scope: &mut Scope<'_>,
    what: &str,
    name: &str,
    va: Option<&Vec<String>>,
    vb: Option<&Vec<String>>,
) {
    let path = format!("{what} {name}");
    if scope.rules.volatile_header(name) {
        scope.ignore(path, format!("volatile header {name}"));
        return;
    }
    if name == "set-cookie" {
        let (ca, cb) = (
            cookie_names(va.map_or(&[][..], |v| v)),
            cookie_names(vb.map_or(&[][..], |v| v)),
        );
        if ca == cb {
            scope.ignore(
                path,
                "volatile header set-cookie: the same cookies, new values".into(),
            );
            return;
        }
        let (ra, rb) = (ca.join(", "), cb.join(", "));
        scope.differ(format!("{path} names"), &ra, &rb, ra.clone(), rb.clone());
        return;
    }
    let join = |v: Option<&Vec<String>>| v.map_or_else(|| ABSENT.to_string(), |v| v.join(", "));
    let (ra, rb) = (join(va), join(vb));
    scope.differ(path, &ra, &rb, ra.clone(), rb.clone());
}
